//! A whole LSTM layer (all time steps) as one operation on the CPU backend, with a hand-written
//! backward pass (BPTT) registered with burn's autodiff. burn's own `Lstm` records ≈ 14 tensor
//! ops per step (and twice that backward), each with a fixed dispatch + autodiff cost that
//! dominated CPU training (docs/models.md "Speed (CPU)"); here a layer is one node: one input
//! projection for all steps, one fused 4-gate product per step, the cell as a loop over raw f32.
//!
//! [`forward`] takes that path for `Autodiff<Flex>` (training) and `Flex` (inference) tensors and
//! falls back to burn's module everywhere else (Vulkan/CUDA, other layouts), so the parameters,
//! their names and every checkpoint stay burn's `Lstm`. Equations (PyTorch's, burn's):
//! i, f, o = σ(x W + h U + b), g = tanh(…), c' = f c + i g, h' = o tanh(c'); gradients in
//! docs/models.md "The fused LSTM operation".

use std::fmt;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex, TensorMetadata};
use burn::nn::activation::Activation;
use burn::nn::Lstm;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

/// [batch, seq, d_in] → hidden states [batch, seq, hidden], as `lstm.forward(x, None).0`.
pub fn forward(lstm: &Lstm, x: Tensor<3>) -> Tensor<3> {
    match Weights::of(lstm).filter(|_| enabled()) {
        Some(w) => {
            if let Some(y) = autodiff::<NoCheckpointing>(&x, &w).or_else(|| autodiff::<BalancedCheckpointing>(&x, &w)) {
                return y;
            }
            if let Some(y) = inference(&x, &w) {
                return y;
            }
            lstm.forward(x, None).0
        }
        None => lstm.forward(x, None).0,
    }
}

/// `FLOWCAST_FUSED_LSTM=0` in the environment sends every layer through burn's module: the
/// same binary then times both paths (`flowcast bench train`, docs/models.md "Speed (CPU)").
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("FLOWCAST_FUSED_LSTM").map_or(true, |v| v.trim() != "0"))
}

/// The layer's parameters concatenated gate by gate in the order [i | f | g | o]: W [d_in, 4h],
/// U [h, 4h], b_x and b_h [4h] (burn's `Linear` computes x·W + b).
struct Weights {
    w: Tensor<2>,
    u: Tensor<2>,
    bw: Tensor<1>,
    bu: Tensor<1>,
}

impl Weights {
    /// `None` when the layer is anything but the plain forward LSTM the kernel computes.
    fn of(l: &Lstm) -> Option<Self> {
        let plain = !l.reverse
            && l.batch_first
            && l.clip.is_none()
            && !l.input_forget
            && matches!(l.gate_activation, Activation::Sigmoid(_))
            && matches!(l.cell_activation, Activation::Tanh(_))
            && matches!(l.hidden_activation, Activation::Tanh(_));
        if !plain {
            return None;
        }
        let gates = [&l.input_gate, l.forget_gate.as_ref()?, &l.cell_gate, &l.output_gate];
        let mut bw = Vec::with_capacity(4);
        let mut bu = Vec::with_capacity(4);
        for g in gates {
            bw.push(g.input_transform.bias.as_ref()?.val());
            bu.push(g.hidden_transform.bias.as_ref()?.val());
        }
        Some(Weights {
            w: Tensor::cat(gates.iter().map(|g| g.input_transform.weight.val()).collect(), 1),
            u: Tensor::cat(gates.iter().map(|g| g.hidden_transform.weight.val()).collect(), 1),
            bw: Tensor::cat(bw, 0),
            bu: Tensor::cat(bu, 0),
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    seq: usize,
    d_in: usize,
    hidden: usize,
}

impl Dims {
    fn gates(&self) -> usize {
        4 * self.hidden
    }
}

/// Training path: all five inputs on `Autodiff<Flex, C>` (else `None`, nothing consumed).
fn autodiff<C>(x: &Tensor<3>, w: &Weights) -> Option<Tensor<3>>
where
    C: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let x = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let wx = w.w.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let wh = w.u.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let bx = w.bw.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let bh = w.bu.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    if [&x, &wx, &wh, &bx, &bh].iter().any(|t| t.primitive().dtype() != DType::F32) {
        return None;
    }
    let (x, gx) = x.into_parts();
    let (wx, gwx) = wx.into_parts();
    let (wh, gwh) = wh.into_parts();
    let (bx, gbx) = bx.into_parts();
    let (bh, gbh) = bh.into_parts();
    let (x, wx, wh) = (contiguous(x), contiguous(wx), contiguous(wh));
    let dims = dims_of(&x, &wh);
    let bias = summed_bias(&bx, &bh);
    let out = match LstmBackward.prepare::<C>([gx, gwx, gwh, gbx, gbh]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, tape) = run_forward(dims, f32s(&x), f32s(&wx), f32s(&wh), &bias, true);
            let tape = Tape { dims, x, wx, wh, saved: tape.expect("a tape was asked for") };
            prep.finish(Arc::new(tape), flex(out, [dims.batch, dims.seq, dims.hidden]))
        }
        OpsKind::UnTracked(prep) => {
            let (out, _) = run_forward(dims, f32s(&x), f32s(&wx), f32s(&wh), &bias, false);
            prep.finish(flex(out, [dims.batch, dims.seq, dims.hidden]))
        }
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, C>>(out))
}

/// Inference path: all inputs plain `Flex` f32 tensors.
fn inference(x: &Tensor<3>, w: &Weights) -> Option<Tensor<3>> {
    let x = contiguous(x.clone().try_into_primitive::<Flex>().ok()?);
    let wx = contiguous(w.w.clone().try_into_primitive::<Flex>().ok()?);
    let wh = contiguous(w.u.clone().try_into_primitive::<Flex>().ok()?);
    let bx = w.bw.clone().try_into_primitive::<Flex>().ok()?;
    let bh = w.bu.clone().try_into_primitive::<Flex>().ok()?;
    if [&x, &wx, &wh, &bx, &bh].iter().any(|t| t.dtype() != DType::F32) {
        return None;
    }
    let dims = dims_of(&x, &wh);
    let (out, _) = run_forward(dims, f32s(&x), f32s(&wx), f32s(&wh), &summed_bias(&bx, &bh), false);
    Some(Tensor::from_primitive::<Flex>(flex(out, [dims.batch, dims.seq, dims.hidden])))
}

fn dims_of(x: &FlexTensor, wh: &FlexTensor) -> Dims {
    let s = x.shape();
    Dims { batch: s[0], seq: s[1], d_in: s[2], hidden: wh.shape()[0] }
}

fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn summed_bias(bx: &FlexTensor, bh: &FlexTensor) -> Vec<f32> {
    let (bx, bh) = (contiguous(bx.clone()), contiguous(bh.clone()));
    f32s(&bx).iter().zip(f32s(&bh)).map(|(a, b)| a + b).collect()
}

fn flex<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

/// What the backward pass reads: the inputs (shared, not copied) and the forward's buffers.
struct Tape {
    dims: Dims,
    x: FlexTensor,
    wx: FlexTensor,
    wh: FlexTensor,
    saved: Saved,
}

impl fmt::Debug for Tape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LstmTape({:?})", self.dims)
    }
}

/// Per (batch row, step), batch-major like the input: activated gates [i|f|g|o] ([b, t, 4h]),
/// the cell c_t, tanh c_t and the previous hidden state h_{t−1} ([b, t, h]; h_{−1} = c_{−1} = 0).
struct Saved {
    gates: Vec<f32>,
    cell: Vec<f32>,
    tanh_cell: Vec<f32>,
    h_prev: Vec<f32>,
}

#[derive(Debug)]
struct LstmBackward;

impl Backward<Flex, 5> for LstmBackward {
    type State = Arc<Tape>;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [px, pwx, pwh, pbx, pbh] = ops.parents;
        let tape = ops.state;
        let d = tape.dims;
        let dout = contiguous(grads.consume::<Flex>(&ops.node));
        let g = run_backward(&tape, f32s(&dout), px.is_some());
        if let (Some(node), Some(dx)) = (px, g.dx) {
            grads.register::<Flex>(node.id, flex(dx, [d.batch, d.seq, d.d_in]));
        }
        if let Some(node) = pwx {
            grads.register::<Flex>(node.id, flex(g.dwx, [d.d_in, d.gates()]));
        }
        if let Some(node) = pwh {
            grads.register::<Flex>(node.id, flex(g.dwh, [d.hidden, d.gates()]));
        }
        if let Some(node) = pbx {
            grads.register::<Flex>(node.id, flex(g.db.clone(), [d.gates()]));
        }
        if let Some(node) = pbh {
            grads.register::<Flex>(node.id, flex(g.db, [d.gates()]));
        }
    }
}

/// Batch rows per parallel chunk, fixed: every product and sum then runs in the same order
/// whatever the number of threads, so a run reproduces bit for bit under another thread budget
/// (`flowcast reproduce`, sweeps). The recurrences of different rows are independent, so chunks
/// never synchronise inside the time loop; 16 rows keep a per-step product large enough for the
/// gemm kernels and give 4 chunks at batch 64.
const CHUNK_ROWS: usize = 16;

/// One chunk of batch rows: input, pre-activations (activated in place), h, c, tanh c, h_{t−1}.
type ForwardChunk<'a> = (&'a [f32], &'a mut [f32], &'a mut [f32], &'a mut [f32], &'a mut [f32], Option<&'a mut [f32]>);

/// Hidden states [b, t, h], plus the tape when `keep`.
fn run_forward(d: Dims, x: &[f32], wx: &[f32], wh: &[f32], bias: &[f32], keep: bool) -> (Vec<f32>, Option<Saved>) {
    let (b, t, h, g) = (d.batch, d.seq, d.hidden, d.gates());
    let rows = b * t;
    let mut z = vec![0.0f32; rows * g];
    let mut out = vec![0.0f32; rows * h];
    let mut cell = vec![0.0f32; rows * h];
    let mut tanh_cell = vec![0.0f32; rows * h];
    let mut h_prev = if keep { vec![0.0f32; rows * h] } else { Vec::new() };
    let chunk = |(x, z, out, cell, tanh_cell, mut h_prev): ForwardChunk<'_>| {
        let n = out.len() / (t * h);
        // z = x·W + b_x + b_h for every step of these rows at once; each step adds h_{t−1}·U.
        for zr in z.chunks_exact_mut(g) {
            zr.copy_from_slice(bias);
        }
        gemm(Mat { m: n * t, n: g, k: d.d_in }, Out(z, g, 1, true), In(x, d.d_in, 1), In(wx, g, 1));
        for s in 0..t {
            if s > 0 {
                gemm(Mat { m: n, n: g, k: h }, Out(&mut z[s * g..], t * g, 1, true), In(&out[(s - 1) * h..], t * h, 1), In(wh, g, 1));
            }
            for r in 0..n {
                let at = r * t + s;
                let (before, cur) = cell.split_at_mut(at * h);
                let c_prev = if s > 0 { Some(&before[(at - 1) * h..at * h]) } else { None };
                let hv = &mut out[at * h..(at + 1) * h];
                lstm_cell_forward(&mut z[at * g..(at + 1) * g], c_prev, &mut cur[..h], &mut tanh_cell[at * h..(at + 1) * h], hv);
                if let Some(hp) = h_prev.as_deref_mut() {
                    if s + 1 < t {
                        hp[(at + 1) * h..(at + 2) * h].copy_from_slice(&out[at * h..(at + 1) * h]);
                    }
                }
            }
        }
    };
    let rows_per = CHUNK_ROWS * t;
    let xc = x.par_chunks(rows_per * d.d_in);
    let zc = z.par_chunks_mut(rows_per * g);
    let oc = out.par_chunks_mut(rows_per * h);
    let cc = cell.par_chunks_mut(rows_per * h);
    let tc = tanh_cell.par_chunks_mut(rows_per * h);
    if keep {
        (xc, zc, oc, cc, tc, h_prev.par_chunks_mut(rows_per * h))
            .into_par_iter()
            .for_each(|(x, z, o, c, tcl, hp)| chunk((x, z, o, c, tcl, Some(hp))));
    } else {
        (xc, zc, oc, cc, tc).into_par_iter().for_each(|(x, z, o, c, tcl)| chunk((x, z, o, c, tcl, None)));
    }
    let saved = keep.then_some(Saved { gates: z, cell, tanh_cell, h_prev });
    (out, saved)
}

struct Grads {
    dx: Option<Vec<f32>>,
    dwx: Vec<f32>,
    dwh: Vec<f32>,
    /// The same for b_x and b_h (they enter only as their sum).
    db: Vec<f32>,
}

/// Back-propagation through time from dL/dh_t for every step ([b, t, h]). Each chunk of rows
/// yields its share of the weight gradients; the shares are added in chunk order.
fn run_backward(tape: &Tape, dout: &[f32], need_dx: bool) -> Grads {
    let d = tape.dims;
    let (b, t, h, g) = (d.batch, d.seq, d.hidden, d.gates());
    let s = &tape.saved;
    let (x, wx, wh) = (f32s(&tape.x), f32s(&tape.wx), f32s(&tape.wh));
    let mut dx = if need_dx { vec![0.0f32; b * t * d.d_in] } else { Vec::new() };
    let rows_per = CHUNK_ROWS * t;
    let n_chunks = b.div_ceil(CHUNK_ROWS);
    let dx_chunks: Vec<Option<&mut [f32]>> =
        if need_dx { dx.chunks_mut(rows_per * d.d_in).map(Some).collect() } else { (0..n_chunks).map(|_| None).collect() };
    let shares: Vec<Grads> = (
        dx_chunks,
        dout.par_chunks(rows_per * h),
        s.gates.par_chunks(rows_per * g),
        s.cell.par_chunks(rows_per * h),
        s.tanh_cell.par_chunks(rows_per * h),
        s.h_prev.par_chunks(rows_per * h),
        x.par_chunks(rows_per * d.d_in),
    )
        .into_par_iter()
        .map(|(dx, dout, gates, cell, tanh_cell, h_prev, x)| {
            let n = dout.len() / (t * h);
            // dz: the gradient of every pre-activation of these rows, [n, t, 4h].
            let mut dz = vec![0.0f32; n * t * g];
            let mut dh = vec![0.0f32; n * h];
            let mut dc = vec![0.0f32; n * h];
            // dz of step s+1, contiguous, for the recurrent product dh_s += dz_{s+1}·Uᵀ.
            let mut dz_next = vec![0.0f32; n * g];
            for st in (0..t).rev() {
                for r in 0..n {
                    let at = r * t + st;
                    dh[r * h..(r + 1) * h].copy_from_slice(&dout[at * h..(at + 1) * h]);
                }
                if st + 1 < t {
                    gemm(Mat { m: n, n: h, k: g }, Out(&mut dh, h, 1, true), In(&dz_next, g, 1), In(wh, 1, g));
                }
                for r in 0..n {
                    let at = r * t + st;
                    let c_prev = if st > 0 { Some(&cell[(at - 1) * h..at * h]) } else { None };
                    lstm_cell_backward(
                        &gates[at * g..(at + 1) * g],
                        c_prev,
                        &tanh_cell[at * h..(at + 1) * h],
                        &dh[r * h..(r + 1) * h],
                        &mut dc[r * h..(r + 1) * h],
                        &mut dz_next[r * g..(r + 1) * g],
                    );
                    dz[at * g..(at + 1) * g].copy_from_slice(&dz_next[r * g..(r + 1) * g]);
                }
            }
            let rows = n * t;
            // dW = Σ xᵀ dz, dU = Σ h_{t−1}ᵀ dz over these rows (the transposes through strides).
            let mut dwx = vec![0.0f32; d.d_in * g];
            gemm(Mat { m: d.d_in, n: g, k: rows }, Out(&mut dwx, g, 1, false), In(x, 1, d.d_in), In(&dz, g, 1));
            let mut dwh = vec![0.0f32; h * g];
            gemm(Mat { m: h, n: g, k: rows }, Out(&mut dwh, g, 1, false), In(h_prev, 1, h), In(&dz, g, 1));
            let mut db = vec![0.0f32; g];
            for row in dz.chunks_exact(g) {
                for (a, v) in db.iter_mut().zip(row) {
                    *a += v;
                }
            }
            if let Some(dx) = dx {
                gemm(Mat { m: rows, n: d.d_in, k: g }, Out(dx, d.d_in, 1, false), In(&dz, g, 1), In(wx, 1, g));
            }
            Grads { dx: None, dwx, dwh, db }
        })
        .collect();
    let mut shares = shares.into_iter();
    let mut total = shares.next().expect("a batch has at least one row");
    for share in shares {
        for (acc, part) in [(&mut total.dwx, &share.dwx), (&mut total.dwh, &share.dwh), (&mut total.db, &share.db)] {
            for (a, v) in acc.iter_mut().zip(part) {
                *a += v;
            }
        }
    }
    total.dx = need_dx.then_some(dx);
    total
}

/// Product sizes: dst [m, n] = lhs [m, k] · rhs [k, n].
struct Mat {
    m: usize,
    n: usize,
    k: usize,
}
/// A read operand with its (row, column) strides in elements.
struct In<'a>(&'a [f32], usize, usize);
/// The destination with its (row, column) strides and whether to add to it (else overwrite).
struct Out<'a>(&'a mut [f32], usize, usize, bool);

/// `dst (=|+=) lhs · rhs` through the gemm crate (runtime AVX2/AVX-512 dispatch), any strides,
/// on the calling thread (the caller splits the work into fixed chunks).
fn gemm(s: Mat, dst: Out<'_>, lhs: In<'_>, rhs: In<'_>) {
    let Mat { m, n, k } = s;
    if m == 0 || n == 0 {
        return;
    }
    let last = |rs: usize, cs: usize, r: usize, c: usize| (r - 1) * rs + (c - 1) * cs;
    assert!(dst.0.len() > last(dst.1, dst.2, m, n), "gemm: destination too small");
    if k == 0 {
        assert!(!dst.3, "gemm: k = 0 accumulates nothing");
        return;
    }
    assert!(lhs.0.len() > last(lhs.1, lhs.2, m, k), "gemm: left operand too small");
    assert!(rhs.0.len() > last(rhs.1, rhs.2, k, n), "gemm: right operand too small");
    // SAFETY: the asserts bound the last element gemm reads or writes of every operand; strides
    // are positive element counts and `dst` is a unique borrow disjoint from both inputs.
    unsafe {
        gemm_crate::gemm(
            m,
            n,
            k,
            dst.0.as_mut_ptr(),
            dst.2 as isize,
            dst.1 as isize,
            dst.3,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm_crate::Parallelism::None,
        )
    }
}

/// Runs `$body` (a block using only `#[inline(always)]` helpers) compiled with AVX2 + FMA when
/// the CPU has them, else for the baseline target (as serve/src/kernels.rs does).
macro_rules! multiversion {
    (fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) { imp($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                    return unsafe { fast($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

/// e^x to about 2 ulp (Cephes `expf`, the serving kernels' formulation), branch-free so the
/// cell loops vectorise; saturates at e^±88.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
    let y = p * r * r + r + 1.0;
    // SAFETY: x is clamped, so n is an integer in [−126, 127].
    let n = unsafe { n.to_int_unchecked::<i32>() };
    y * f32::from_bits(((n + 127) << 23) as u32)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh x = 1 − 2 / (e^{2x} + 1) (absolute error ~1e-7).
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

multiversion! {
    fn lstm_cell_forward(z: &mut [f32], c_prev: Option<&[f32]>, c: &mut [f32], tanh_c: &mut [f32], hv: &mut [f32]) {
        // z: pre-activations [i|f|g|o] of one row, replaced by the activations.
        let n = hv.len();
        let (zi, rest) = z.split_at_mut(n);
        let (zf, rest) = rest.split_at_mut(n);
        let (zg, zo) = rest.split_at_mut(n);
        let (zo, c, tanh_c) = (&mut zo[..n], &mut c[..n], &mut tanh_c[..n]);
        for j in 0..n {
            let i = sigmoid(zi[j]);
            let f = sigmoid(zf[j]);
            let g = tanh(zg[j]);
            let o = sigmoid(zo[j]);
            let cp = match c_prev {
                Some(cp) => cp[j],
                None => 0.0,
            };
            let cn = f * cp + i * g;
            let tc = tanh(cn);
            (zi[j], zf[j], zg[j], zo[j]) = (i, f, g, o);
            c[j] = cn;
            tanh_c[j] = tc;
            hv[j] = o * tc;
        }
    }
}

multiversion! {
    fn lstm_cell_backward(a: &[f32], c_prev: Option<&[f32]>, tanh_c: &[f32], dh: &[f32], dc: &mut [f32], dz: &mut [f32]) {
        // In: activations a = [i|f|g|o], dL/dh_t (dh), dL/dc_t from step t+1 (dc). Out: dL/dz_t
        // (dz) and dL/dc_{t−1} = dc_t · f (dc).
        let n = dh.len();
        let (ai, rest) = a.split_at(n);
        let (af, rest) = rest.split_at(n);
        let (ag, ao) = rest.split_at(n);
        let (ao, tanh_c, dc) = (&ao[..n], &tanh_c[..n], &mut dc[..n]);
        let (di, rest) = dz.split_at_mut(n);
        let (df, rest) = rest.split_at_mut(n);
        let (dg, dout) = rest.split_at_mut(n);
        let dout = &mut dout[..n];
        for j in 0..n {
            let (i, f, g, o, tc) = (ai[j], af[j], ag[j], ao[j], tanh_c[j]);
            let cp = match c_prev {
                Some(cp) => cp[j],
                None => 0.0,
            };
            let dct = dc[j] + dh[j] * o * (1.0 - tc * tc);
            di[j] = dct * g * i * (1.0 - i);
            df[j] = dct * cp * f * (1.0 - f);
            dg[j] = dct * i * (1.0 - g * g);
            dout[j] = dh[j] * tc * o * (1.0 - o);
            dc[j] = dct * f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::LstmConfig;
    use burn::tensor::Distribution;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Max |a − b| / (1 + |b|): absolute near zero, relative for large values.
    fn close<const D: usize>(a: Tensor<D>, b: Tensor<D>, tol: f32, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let (a, b) = (values(a), values(b));
        let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        assert!(d <= tol, "{what}: max |Δ|/(1+|ref|) = {d} > {tol}");
        assert!(b.iter().any(|v| *v != 0.0), "{what}: the reference is all zeros, nothing was compared");
    }

    fn all_params(l: &Lstm) -> Vec<(String, &Param<Tensor<2>>, &Param<Tensor<1>>)> {
        let gates =
            [("input", &l.input_gate), ("forget", l.forget_gate.as_ref().unwrap()), ("cell", &l.cell_gate), ("output", &l.output_gate)];
        gates
            .into_iter()
            .flat_map(|(name, g)| {
                [
                    (format!("{name}.input_transform"), &g.input_transform.weight, g.input_transform.bias.as_ref().unwrap()),
                    (format!("{name}.hidden_transform"), &g.hidden_transform.weight, g.hidden_transform.bias.as_ref().unwrap()),
                ]
            })
            .collect()
    }

    /// The fused op against burn's `Lstm` on the same weights and batch: outputs, the input
    /// gradient and all 16 parameter gradients (every weight and bias of every gate).
    #[test]
    fn fused_lstm_matches_burns_module_and_all_its_gradients() {
        let ad = Device::flex().autodiff();
        ad.seed(11);
        for (batch, seq, d, h) in [(3, 13, 5, 4), (7, 6, 9, 16), (1, 2, 2, 3)] {
            let l = LstmConfig::new(d, h, true).init(&ad);
            let x0 = Tensor::<3>::random([batch, seq, d], Distribution::Normal(0.0, 1.0), &ad);
            let weights = Tensor::<3>::random([batch, seq, h], Distribution::Normal(0.0, 1.0), &ad);
            let run = |fused: bool| {
                let x = x0.clone().detach().require_grad();
                let y = if fused { forward(&l, x.clone()) } else { l.forward(x.clone(), None).0 };
                let grads = (y.clone() * weights.clone()).sum().backward();
                let gx = x.grad(&grads).expect("input gradient");
                let gp: Vec<(String, Tensor<2>, Tensor<1>)> = all_params(&l)
                    .into_iter()
                    .map(|(n, w, b)| (n, w.val().grad(&grads).expect("weight gradient"), b.val().grad(&grads).expect("bias gradient")))
                    .collect();
                (y.inner(), gx, gp)
            };
            let (y0, gx0, gp0) = run(false);
            let (y1, gx1, gp1) = run(true);
            let at = format!("b{batch} t{seq} d{d} h{h}");
            close(y1, y0, 1e-5, &format!("{at}: outputs"));
            close(gx1, gx0, 1e-5, &format!("{at}: input gradient"));
            assert_eq!(gp0.len(), 8);
            for ((n, w0, b0), (_, w1, b1)) in gp0.into_iter().zip(gp1) {
                close(w1, w0, 1e-5, &format!("{at}: {n}.weight gradient"));
                close(b1, b0, 1e-5, &format!("{at}: {n}.bias gradient"));
            }
        }
    }

    /// Outputs and every gradient are bit-identical under 1, 2 and 3 rayon threads, with a batch
    /// split into uneven chunks (37 rows): what `flowcast reproduce` under another thread
    /// budget relies on.
    #[test]
    fn fused_lstm_is_bit_identical_under_any_thread_count() {
        let ad = Device::flex().autodiff();
        ad.seed(3);
        let l = LstmConfig::new(7, 12, true).init(&ad);
        let x0 = Tensor::<3>::random([37, 9, 7], Distribution::Normal(0.0, 1.0), &ad);
        let weights = Tensor::<3>::random([37, 9, 12], Distribution::Normal(0.0, 1.0), &ad);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let x = x0.clone().detach().require_grad();
                let y = forward(&l, x.clone());
                let grads = (y.clone() * weights.clone()).sum().backward();
                let mut all = vec![values(y.inner()), values(x.grad(&grads).unwrap())];
                for (_, w, b) in all_params(&l) {
                    all.push(values(w.val().grad(&grads).unwrap()));
                    all.push(values(b.val().grad(&grads).unwrap()));
                }
                all.into_iter().map(|v| v.into_iter().map(f32::to_bits).collect::<Vec<_>>()).collect::<Vec<_>>()
            })
        };
        let one = run(1);
        assert_eq!(one.len(), 18);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{threads} threads differ from 1 in some output or gradient bit");
        }
    }

    /// Without autodiff (inference) the fused forward gives burn's outputs too.
    #[test]
    fn fused_lstm_matches_at_inference() {
        let dev = Device::flex();
        dev.seed(5);
        let l = LstmConfig::new(6, 5, true).init(&dev);
        let x = Tensor::<3>::random([4, 9, 6], Distribution::Normal(0.0, 1.0), &dev);
        close(forward(&l, x.clone()), l.forward(x, None).0, 1e-5, "inference outputs");
    }

    /// Layers the kernel does not compute (here: reverse) take burn's module unchanged.
    #[test]
    fn other_layers_fall_back_to_burns_module() {
        let dev = Device::flex();
        let l = LstmConfig::new(3, 4, true).with_reverse(true).init(&dev);
        assert!(Weights::of(&l).is_none());
        let x = Tensor::<3>::random([2, 5, 3], Distribution::Normal(0.0, 1.0), &dev);
        close(forward(&l, x.clone()), l.forward(x, None).0, 0.0, "reverse");
    }

    /// Forward + backward of one LSTM-64 layer at `flowcast bench train`'s shape (batch 64,
    /// window 100 × 40), fused op against burn's module, same process, alternating. A timing,
    /// not a check: `cargo test -p flowcast-models --release lstm_op_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn lstm_op_timing() {
        let ad = Device::flex().autodiff();
        let l = LstmConfig::new(40, 64, true).init(&ad);
        let x = Tensor::<3>::random([64, 100, 40], Distribution::Normal(0.0, 1.0), &ad);
        let step = |fused: bool| {
            let y = if fused { forward(&l, x.clone()) } else { l.forward(x.clone(), None).0 };
            let grads = y.slice(s![.., 99, ..]).sum().backward();
            let _ = l.input_gate.input_transform.weight.val().grad(&grads).expect("gradient");
        };
        for round in 0..3 {
            for fused in [false, true] {
                step(fused);
                let t0 = std::time::Instant::now();
                let n = 5;
                for _ in 0..n {
                    step(fused);
                }
                let per = t0.elapsed().as_secs_f64() / n as f64;
                println!("round {round} {}: {:.1} ms/batch, {:.0} samples/s", if fused { "fused" } else { "burn" }, per * 1e3, 64.0 / per);
            }
        }
    }
}

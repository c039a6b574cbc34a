//! A whole LSTM or GRU layer (all time steps) as one operation on the CPU backend, with a
//! hand-written backward pass (BPTT) registered with burn's autodiff. burn's own modules record
//! ≈ 14 tensor ops per step (and twice that backward), each with a fixed dispatch + autodiff
//! cost that dominated CPU training (docs/models.md "Speed (CPU)"); here a layer is one node: one
//! input projection for all steps, one fused all-gates product per step, the cell as a loop
//! over raw f32 with the serving kernels' activations.
//!
//! [`lstm`] and [`gru`] take that path for `Autodiff<Flex>` (training) and `Flex` (inference)
//! tensors and fall back to burn's module everywhere else (Vulkan/CUDA, other variants), so the
//! parameters, their names and every checkpoint stay burn's. Equations and gradients:
//! docs/models.md "The fused recurrent operations".

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex, TensorMetadata};
use burn::nn::activation::Activation;
use burn::nn::{GateController, Gru, Lstm};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use flowcast_serve::kernels::{sigmoid_f, tanh_f};
use flowcast_serve::multiversion;
use rayon::prelude::*;

/// [batch, seq, d_in] → hidden states [batch, seq, hidden], as `lstm.forward(x, None).0`.
pub fn lstm(l: &Lstm, x: Tensor<3>) -> Tensor<3> {
    match lstm_weights(l).filter(|_| enabled()) {
        Some(w) => fused::<LstmCell>(&x, &w).unwrap_or_else(|| l.forward(x, None).0),
        None => l.forward(x, None).0,
    }
}

/// [batch, seq, d_in] → hidden states [batch, seq, hidden], as `gru.forward(x, None)`.
pub fn gru(g: &Gru, x: Tensor<3>) -> Tensor<3> {
    match gru_weights(g).filter(|_| enabled()) {
        Some(w) => fused::<GruCell>(&x, &w).unwrap_or_else(|| g.forward(x, None)),
        None => g.forward(x, None),
    }
}

fn fused<C: Cell>(x: &Tensor<3>, w: &Weights) -> Option<Tensor<3>> {
    autodiff::<C, NoCheckpointing>(x, w).or_else(|| autodiff::<C, BalancedCheckpointing>(x, w)).or_else(|| inference::<C>(x, w))
}

/// `FLOWCAST_FUSED_RNN=0` in the environment sends every layer through burn's modules: the
/// same binary then times both paths (`flowcast bench train`, docs/models.md "Speed (CPU)").
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("FLOWCAST_FUSED_RNN").map_or(true, |v| v.trim() != "0"))
}

/// A layer's parameters concatenated gate by gate in the cell's order: W [d_in, G·h],
/// U [h, G·h], b_x and b_h [G·h] (burn's `Linear` computes x·W + b).
struct Weights {
    w: Tensor<2>,
    u: Tensor<2>,
    bw: Tensor<1>,
    bu: Tensor<1>,
}

fn concat(gates: &[&GateController]) -> Option<Weights> {
    let mut bw = Vec::with_capacity(gates.len());
    let mut bu = Vec::with_capacity(gates.len());
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

/// `None` when the layer is anything but the plain forward LSTM the kernel computes.
fn lstm_weights(l: &Lstm) -> Option<Weights> {
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
    concat(&[&l.input_gate, l.forget_gate.as_ref()?, &l.cell_gate, &l.output_gate])
}

/// `None` unless the layer is the reset-after GRU (PyTorch's) with sigmoid/tanh and no clip.
fn gru_weights(g: &Gru) -> Option<Weights> {
    let plain = g.reset_after
        && g.clip.is_none()
        && matches!(g.gate_activation, Activation::Sigmoid(_))
        && matches!(g.hidden_activation, Activation::Tanh(_));
    if !plain {
        return None;
    }
    concat(&[&g.update_gate, &g.reset_gate, &g.new_gate])
}

/// One recurrent cell: what it keeps per (row, step) and its forward and backward equations
/// on one row. Every slice is one row: `zx` = x·W + b_x and `hz` = h_{t−1}·U + b_h (G·h each);
/// `prev` = (h_{t−1}, the previous step's saved values), `None` at t = 0 (h_{−1} = 0).
trait Cell: Send + Sync + 'static {
    /// Gates (pre-activation blocks of h).
    const GATES: usize;
    /// Saved blocks of h per (row, step).
    const SAVED: usize;
    /// Whether the x-side and h-side pre-activation gradients are the same (LSTM: z = zx + hz).
    const SAME_DZ: bool;
    fn forward(zx: &[f32], hz: &mut [f32], prev: Option<(&[f32], &[f32])>, saved: &mut [f32], h: &mut [f32]);
    /// dh = ∂L/∂h_t (all of it but `carry`); `carry`: in, what step t+1 passes back; out, what
    /// step t passes to t−1. Writes ∂L/∂zx into `dzx` and ∂L/∂hz into `dzh`.
    fn backward(saved: &[f32], prev: Option<(&[f32], &[f32])>, dh: &[f32], carry: &mut [f32], dzx: &mut [f32], dzh: &mut [f32]);
}

/// LSTM, gates [i | f | g | o]; saved [i, f, g, o, c_t, tanh c_t]; carry = ∂L/∂c.
struct LstmCell;

impl Cell for LstmCell {
    const GATES: usize = 4;
    const SAVED: usize = 6;
    const SAME_DZ: bool = true;
    fn forward(zx: &[f32], hz: &mut [f32], prev: Option<(&[f32], &[f32])>, saved: &mut [f32], h: &mut [f32]) {
        lstm_forward(zx, hz, prev.map(|(_, s)| &s[4 * h.len()..5 * h.len()]), saved, h)
    }
    fn backward(saved: &[f32], prev: Option<(&[f32], &[f32])>, dh: &[f32], carry: &mut [f32], dzx: &mut [f32], dzh: &mut [f32]) {
        let n = dh.len();
        lstm_backward(saved, prev.map(|(_, s)| &s[4 * n..5 * n]), dh, carry, dzx);
        dzh[..4 * n].copy_from_slice(&dzx[..4 * n]);
    }
}

/// GRU (reset after, PyTorch's), gates [u | r | n]; saved [u, r, n, h·U_n + b_hn]; carry =
/// the direct part u⊙∂L/∂h_t of ∂L/∂h_{t−1}.
struct GruCell;

impl Cell for GruCell {
    const GATES: usize = 3;
    const SAVED: usize = 4;
    const SAME_DZ: bool = false;
    fn forward(zx: &[f32], hz: &mut [f32], prev: Option<(&[f32], &[f32])>, saved: &mut [f32], h: &mut [f32]) {
        gru_forward(zx, hz, prev.map(|(hp, _)| hp), saved, h)
    }
    fn backward(saved: &[f32], prev: Option<(&[f32], &[f32])>, dh: &[f32], carry: &mut [f32], dzx: &mut [f32], dzh: &mut [f32]) {
        gru_backward(saved, prev.map(|(hp, _)| hp), dh, carry, dzx, dzh)
    }
}

multiversion! {
    fn lstm_forward(zx: &[f32], hz: &mut [f32], c_prev: Option<&[f32]>, saved: &mut [f32], h: &mut [f32]) {
        // The activations first, each in its own pass over contiguous values (short independent
        // iterations that vectorise), then the state update; as flowcast-serve's `lstm_cell`.
        let n = h.len();
        let (zx, hz, saved) = (&zx[..4 * n], &mut hz[..4 * n], &mut saved[..6 * n]);
        let (a, state) = saved.split_at_mut(4 * n);
        for ((a, x), y) in a.iter_mut().zip(zx).zip(hz.iter()) {
            *a = x + y;
        }
        let (ifg, o) = a.split_at_mut(3 * n);
        let (i_f, g) = ifg.split_at_mut(2 * n);
        // Two loops, not a chained iterator: a chain does not vectorise.
        for v in i_f.iter_mut() {
            *v = sigmoid_f::<FMA>(*v);
        }
        for v in o.iter_mut() {
            *v = sigmoid_f::<FMA>(*v);
        }
        for v in g.iter_mut() {
            *v = tanh_f::<FMA>(*v);
        }
        let (i, f) = i_f.split_at(n);
        let (g, o) = (&g[..n], &o[..n]);
        let (c, tc) = state.split_at_mut(n);
        let tc = &mut tc[..n];
        match c_prev {
            Some(cp) => {
                let cp = &cp[..n];
                for j in 0..n {
                    c[j] = f[j] * cp[j] + i[j] * g[j];
                }
            }
            None => {
                for j in 0..n {
                    c[j] = i[j] * g[j];
                }
            }
        }
        for j in 0..n {
            tc[j] = tanh_f::<FMA>(c[j]);
            h[j] = o[j] * tc[j];
        }
    }
}

multiversion! {
    fn lstm_backward(a: &[f32], c_prev: Option<&[f32]>, dh: &[f32], dc: &mut [f32], dz: &mut [f32]) {
        // In: saved [i|f|g|o|c|tanh c], dL/dh_t (dh), dL/dc_t from step t+1 (dc). Out: dL/dz_t
        // (dz) and dL/dc_{t−1} = dc_t · f (dc).
        let n = dh.len();
        let (ai, rest) = a.split_at(n);
        let (af, rest) = rest.split_at(n);
        let (ag, rest) = rest.split_at(n);
        let (ao, rest) = rest.split_at(n);
        let tanh_c = &rest[n..2 * n];
        let dc = &mut dc[..n];
        let (di, rest) = dz.split_at_mut(n);
        let (df, rest) = rest.split_at_mut(n);
        let (dg, dout) = rest.split_at_mut(n);
        let dout = &mut dout[..n];
        let zeros = [0.0f32; 0];
        let cp = c_prev.map_or(&zeros[..], |c| &c[..n]);
        for j in 0..n {
            let (i, f, g, o, tc) = (ai[j], af[j], ag[j], ao[j], tanh_c[j]);
            let cp = if cp.is_empty() { 0.0 } else { cp[j] };
            let dct = dc[j] + dh[j] * o * (1.0 - tc * tc);
            di[j] = dct * g * i * (1.0 - i);
            df[j] = dct * cp * f * (1.0 - f);
            dg[j] = dct * i * (1.0 - g * g);
            dout[j] = dh[j] * tc * o * (1.0 - o);
            dc[j] = dct * f;
        }
    }
}

multiversion! {
    fn gru_forward(zx: &[f32], hz: &mut [f32], h_prev: Option<&[f32]>, saved: &mut [f32], h: &mut [f32]) {
        // u, r = σ(zx + hz), n = tanh(zx_n + r⊙hz_n), h = (1 − u)⊙n + u⊙h_{t−1}.
        let n = h.len();
        let (zx, hz, saved) = (&zx[..3 * n], &hz[..3 * n], &mut saved[..4 * n]);
        let (ur, rest) = saved.split_at_mut(2 * n);
        let (nn, hn) = rest.split_at_mut(n);
        for ((a, x), y) in ur.iter_mut().zip(&zx[..2 * n]).zip(&hz[..2 * n]) {
            *a = sigmoid_f::<FMA>(x + y);
        }
        hn.copy_from_slice(&hz[2 * n..3 * n]);
        let (u, r) = ur.split_at(n);
        let xn = &zx[2 * n..3 * n];
        for j in 0..n {
            nn[j] = tanh_f::<FMA>(xn[j] + r[j] * hn[j]);
        }
        match h_prev {
            Some(hp) => {
                let hp = &hp[..n];
                for j in 0..n {
                    h[j] = nn[j] * (1.0 - u[j]) + u[j] * hp[j];
                }
            }
            None => {
                for j in 0..n {
                    h[j] = nn[j] * (1.0 - u[j]);
                }
            }
        }
    }
}

multiversion! {
    fn gru_backward(a: &[f32], h_prev: Option<&[f32]>, dh: &[f32], carry: &mut [f32], dzx: &mut [f32], dzh: &mut [f32]) {
        // δh = dh + carry; δu = δh⊙(h_{t−1} − n), δn = δh⊙(1 − u), carry ← δh⊙u;
        // δa_n = δn⊙(1 − n²) (the x side of n), δ(hz_n) = δa_n⊙r, δa_r = δa_n⊙hz_n⊙r(1 − r),
        // δa_u = δu⊙u(1 − u).
        let n = dh.len();
        let (au, rest) = a.split_at(n);
        let (ar, rest) = rest.split_at(n);
        let (an, hn) = rest.split_at(n);
        let hn = &hn[..n];
        let carry = &mut carry[..n];
        let (xu, rest) = dzx.split_at_mut(n);
        let (xr, xn) = rest.split_at_mut(n);
        let xn = &mut xn[..n];
        let (hu, rest) = dzh.split_at_mut(n);
        let (hr, hnn) = rest.split_at_mut(n);
        let hnn = &mut hnn[..n];
        let zeros = [0.0f32; 0];
        let hp = h_prev.map_or(&zeros[..], |h| &h[..n]);
        for j in 0..n {
            let (u, r, nv) = (au[j], ar[j], an[j]);
            let hpj = if hp.is_empty() { 0.0 } else { hp[j] };
            let d = dh[j] + carry[j];
            let du = d * (hpj - nv) * u * (1.0 - u);
            let dan = d * (1.0 - u) * (1.0 - nv * nv);
            let dr = dan * hn[j] * r * (1.0 - r);
            carry[j] = d * u;
            (xu[j], xr[j], xn[j]) = (du, dr, dan);
            (hu[j], hr[j], hnn[j]) = (du, dr, dan * r);
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    seq: usize,
    d_in: usize,
    hidden: usize,
}

/// Training path: all five inputs on `Autodiff<Flex, K>` (else `None`, nothing consumed).
fn autodiff<C: Cell, K>(x: &Tensor<3>, w: &Weights) -> Option<Tensor<3>>
where
    K: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, K>>,
{
    let x = x.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    let wx = w.w.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    let wh = w.u.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    let bx = w.bw.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    let bh = w.bu.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    if [&x, &wx, &wh, &bx, &bh].iter().any(|t| t.primitive().dtype() != DType::F32) {
        return None;
    }
    let (x, gx) = x.into_parts();
    let (wx, gwx) = wx.into_parts();
    let (wh, gwh) = wh.into_parts();
    let (bx, gbx) = bx.into_parts();
    let (bh, gbh) = bh.into_parts();
    let (x, wx, wh, bx, bh) = (contiguous(x), contiguous(wx), contiguous(wh), contiguous(bx), contiguous(bh));
    let dims = dims_of::<C>(&x, &wh);
    let out = match RnnBackward::<C>(PhantomData).prepare::<K>([gx, gwx, gwh, gbx, gbh]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, saved) = run_forward::<C>(dims, f32s(&x), f32s(&wx), f32s(&wh), f32s(&bx), f32s(&bh), true);
            let tape = Tape { dims, x, wx, wh, saved };
            prep.finish(Arc::new(tape), flex(out, [dims.batch, dims.seq, dims.hidden]))
        }
        OpsKind::UnTracked(prep) => {
            let (out, _) = run_forward::<C>(dims, f32s(&x), f32s(&wx), f32s(&wh), f32s(&bx), f32s(&bh), false);
            prep.finish(flex(out, [dims.batch, dims.seq, dims.hidden]))
        }
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, K>>(out))
}

/// Inference path: all inputs plain `Flex` f32 tensors.
fn inference<C: Cell>(x: &Tensor<3>, w: &Weights) -> Option<Tensor<3>> {
    let x = contiguous(x.clone().try_into_primitive::<Flex>().ok()?);
    let wx = contiguous(w.w.clone().try_into_primitive::<Flex>().ok()?);
    let wh = contiguous(w.u.clone().try_into_primitive::<Flex>().ok()?);
    let bx = contiguous(w.bw.clone().try_into_primitive::<Flex>().ok()?);
    let bh = contiguous(w.bu.clone().try_into_primitive::<Flex>().ok()?);
    if [&x, &wx, &wh, &bx, &bh].iter().any(|t| t.dtype() != DType::F32) {
        return None;
    }
    let dims = dims_of::<C>(&x, &wh);
    let (out, _) = run_forward::<C>(dims, f32s(&x), f32s(&wx), f32s(&wh), f32s(&bx), f32s(&bh), false);
    Some(Tensor::from_primitive::<Flex>(flex(out, [dims.batch, dims.seq, dims.hidden])))
}

fn dims_of<C: Cell>(x: &FlexTensor, wh: &FlexTensor) -> Dims {
    let s = x.shape();
    let hidden = wh.shape()[0];
    debug_assert_eq!(wh.shape()[1], C::GATES * hidden);
    Dims { batch: s[0], seq: s[1], d_in: s[2], hidden }
}

pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

pub(crate) fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

pub(crate) fn flex<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> FlexTensor {
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
        write!(f, "RnnTape({:?})", self.dims)
    }
}

/// Per (batch row, step), batch-major like the input: the cell's saved values
/// ([b, t, SAVED·h]) and h_{t−1} ([b, t, h]; h_{−1} = 0).
struct Saved {
    cell: Vec<f32>,
    h_prev: Vec<f32>,
}

struct RnnBackward<C>(PhantomData<C>);

impl<C> fmt::Debug for RnnBackward<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RnnBackward")
    }
}

impl<C: Cell> Backward<Flex, 5> for RnnBackward<C> {
    type State = Arc<Tape>;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [px, pwx, pwh, pbx, pbh] = ops.parents;
        let tape = ops.state;
        let d = tape.dims;
        let g = C::GATES * d.hidden;
        let dout = contiguous(grads.consume::<Flex>(&ops.node));
        let r = run_backward::<C>(&tape, f32s(&dout), px.is_some());
        if let (Some(node), Some(dx)) = (px, r.dx) {
            grads.register::<Flex>(node.id, flex(dx, [d.batch, d.seq, d.d_in]));
        }
        if let Some(node) = pwx {
            grads.register::<Flex>(node.id, flex(r.dwx, [d.d_in, g]));
        }
        if let Some(node) = pwh {
            grads.register::<Flex>(node.id, flex(r.dwh, [d.hidden, g]));
        }
        if let Some(node) = pbx {
            grads.register::<Flex>(node.id, flex(r.dbx, [g]));
        }
        if let Some(node) = pbh {
            grads.register::<Flex>(node.id, flex(r.dbh, [g]));
        }
    }
}

/// Batch rows per parallel chunk, fixed: every product and sum then runs in the same order
/// whatever the number of threads, so a run reproduces bit for bit under another thread budget
/// (`flowcast reproduce`, sweeps). The recurrences of different rows are independent, so chunks
/// never synchronise inside the time loop; 16 rows keep a per-step product large enough for the
/// gemm kernels and give 4 chunks at batch 64.
const CHUNK_ROWS: usize = 16;

/// One chunk of batch rows: input, h, saved values, h_{t−1} (when kept).
type ForwardChunk<'a> = (&'a [f32], &'a mut [f32], &'a mut [f32], Option<&'a mut [f32]>);

#[cfg(test)]
thread_local! {
    /// Fused forward passes run on this thread (tests check the fused path was taken).
    static FUSED_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Hidden states [b, t, h], plus the tape when `keep`.
fn run_forward<C: Cell>(d: Dims, x: &[f32], wx: &[f32], wh: &[f32], bx: &[f32], bh: &[f32], keep: bool) -> (Vec<f32>, Saved) {
    #[cfg(test)]
    FUSED_RUNS.with(|n| n.set(n.get() + 1));
    let (b, t, h) = (d.batch, d.seq, d.hidden);
    let (g, sw) = (C::GATES * h, C::SAVED * h);
    let rows = b * t;
    let mut out = vec![0.0f32; rows * h];
    // The cell's saved values are needed while stepping (the LSTM's c_{t−1}) even untracked.
    let mut cell = vec![0.0f32; rows * sw];
    let mut h_prev = if keep { vec![0.0f32; rows * h] } else { Vec::new() };
    let chunk = |(x, out, cell, mut h_prev): ForwardChunk<'_>| {
        let n = out.len() / (t * h);
        // zx = x·W + b_x for every step of these rows at once; hz = h_{t−1}·U + b_h per step.
        let mut zx = vec![0.0f32; n * t * g];
        for zr in zx.chunks_exact_mut(g) {
            zr.copy_from_slice(bx);
        }
        gemm(Mat { m: n * t, n: g, k: d.d_in }, Out(&mut zx, g, 1, true), In(x, d.d_in, 1), In(wx, g, 1));
        let mut hz = vec![0.0f32; n * g];
        for s in 0..t {
            for zr in hz.chunks_exact_mut(g) {
                zr.copy_from_slice(bh);
            }
            if s > 0 {
                gemm(Mat { m: n, n: g, k: h }, Out(&mut hz, g, 1, true), In(&out[(s - 1) * h..], t * h, 1), In(wh, g, 1));
            }
            for r in 0..n {
                let at = r * t + s;
                let (out_before, out_cur) = out.split_at_mut(at * h);
                let (cell_before, cell_cur) = cell.split_at_mut(at * sw);
                let prev = (s > 0).then(|| (&out_before[(at - 1) * h..], &cell_before[(at - 1) * sw..]));
                C::forward(&zx[at * g..(at + 1) * g], &mut hz[r * g..(r + 1) * g], prev, &mut cell_cur[..sw], &mut out_cur[..h]);
                if let Some(hp) = h_prev.as_deref_mut() {
                    if s + 1 < t {
                        hp[(at + 1) * h..(at + 2) * h].copy_from_slice(&out_cur[..h]);
                    }
                }
            }
        }
    };
    let rows_per = CHUNK_ROWS * t;
    let xc = x.par_chunks(rows_per * d.d_in);
    let oc = out.par_chunks_mut(rows_per * h);
    let cc = cell.par_chunks_mut(rows_per * sw);
    if keep {
        (xc, oc, cc, h_prev.par_chunks_mut(rows_per * h)).into_par_iter().for_each(|(x, o, c, hp)| chunk((x, o, c, Some(hp))));
    } else {
        (xc, oc, cc).into_par_iter().for_each(|(x, o, c)| chunk((x, o, c, None)));
    }
    (out, Saved { cell, h_prev })
}

struct Grads {
    dx: Option<Vec<f32>>,
    dwx: Vec<f32>,
    dwh: Vec<f32>,
    dbx: Vec<f32>,
    dbh: Vec<f32>,
}

fn column_sums(rows: &[f32], g: usize) -> Vec<f32> {
    let mut sum = vec![0.0f32; g];
    for row in rows.chunks_exact(g) {
        for (a, v) in sum.iter_mut().zip(row) {
            *a += v;
        }
    }
    sum
}

/// Back-propagation through time from dL/dh_t for every step ([b, t, h]). Each chunk of rows
/// yields its share of the weight gradients; the shares are added in chunk order.
fn run_backward<C: Cell>(tape: &Tape, dout: &[f32], need_dx: bool) -> Grads {
    let d = tape.dims;
    let (b, t, h) = (d.batch, d.seq, d.hidden);
    let (g, sw) = (C::GATES * h, C::SAVED * h);
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
        s.cell.par_chunks(rows_per * sw),
        s.h_prev.par_chunks(rows_per * h),
        x.par_chunks(rows_per * d.d_in),
    )
        .into_par_iter()
        .map(|(dx, dout, cell, h_prev, x)| {
            let n = dout.len() / (t * h);
            // ∂L/∂zx and (unless the same) ∂L/∂hz of every (row, step) of the chunk, [n, t, G·h].
            let mut dzx = vec![0.0f32; n * t * g];
            let mut dzh = if C::SAME_DZ { Vec::new() } else { vec![0.0f32; n * t * g] };
            let mut dh = vec![0.0f32; n * h];
            let mut carry = vec![0.0f32; n * h];
            // ∂L/∂hz of step s+1, contiguous, for the recurrent product dh_s += dhz_{s+1}·Uᵀ.
            let mut dzh_next = vec![0.0f32; n * g];
            for st in (0..t).rev() {
                for r in 0..n {
                    let at = r * t + st;
                    dh[r * h..(r + 1) * h].copy_from_slice(&dout[at * h..(at + 1) * h]);
                }
                if st + 1 < t {
                    gemm(Mat { m: n, n: h, k: g }, Out(&mut dh, h, 1, true), In(&dzh_next, g, 1), In(wh, 1, g));
                }
                for r in 0..n {
                    let at = r * t + st;
                    let prev = (st > 0).then(|| (&h_prev[at * h..(at + 1) * h], &cell[(at - 1) * sw..at * sw]));
                    let dhz = &mut dzh_next[r * g..(r + 1) * g];
                    C::backward(
                        &cell[at * sw..(at + 1) * sw],
                        prev,
                        &dh[r * h..(r + 1) * h],
                        &mut carry[r * h..(r + 1) * h],
                        &mut dzx[at * g..(at + 1) * g],
                        dhz,
                    );
                    if !C::SAME_DZ {
                        dzh[at * g..(at + 1) * g].copy_from_slice(dhz);
                    }
                }
            }
            let dzh = if C::SAME_DZ { &dzx } else { &dzh };
            let rows = n * t;
            // dW = Σ xᵀ dzx, dU = Σ h_{t−1}ᵀ dzh over these rows (the transposes through strides).
            let mut dwx = vec![0.0f32; d.d_in * g];
            gemm(Mat { m: d.d_in, n: g, k: rows }, Out(&mut dwx, g, 1, false), In(x, 1, d.d_in), In(&dzx, g, 1));
            let mut dwh = vec![0.0f32; h * g];
            gemm(Mat { m: h, n: g, k: rows }, Out(&mut dwh, g, 1, false), In(h_prev, 1, h), In(dzh, g, 1));
            let dbx = column_sums(&dzx, g);
            let dbh = if C::SAME_DZ { dbx.clone() } else { column_sums(dzh, g) };
            if let Some(dx) = dx {
                gemm(Mat { m: rows, n: d.d_in, k: g }, Out(dx, d.d_in, 1, false), In(&dzx, g, 1), In(wx, 1, g));
            }
            Grads { dx: None, dwx, dwh, dbx, dbh }
        })
        .collect();
    let mut shares = shares.into_iter();
    let mut total = shares.next().expect("a batch has at least one row");
    for share in shares {
        for (acc, part) in
            [(&mut total.dwx, &share.dwx), (&mut total.dwh, &share.dwh), (&mut total.dbx, &share.dbx), (&mut total.dbh, &share.dbh)]
        {
            for (a, v) in acc.iter_mut().zip(part) {
                *a += v;
            }
        }
    }
    total.dx = need_dx.then_some(dx);
    total
}

/// Product sizes: dst [m, n] = lhs [m, k] · rhs [k, n].
pub(crate) struct Mat {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
}
/// A read operand with its (row, column) strides in elements.
pub(crate) struct In<'a>(pub(crate) &'a [f32], pub(crate) usize, pub(crate) usize);
/// The destination with its (row, column) strides and whether to add to it (else overwrite).
pub(crate) struct Out<'a>(pub(crate) &'a mut [f32], pub(crate) usize, pub(crate) usize, pub(crate) bool);

/// `dst (=|+=) lhs · rhs` through the gemm crate (runtime AVX2/AVX-512 dispatch), any strides,
/// on the calling thread (the caller splits the work into fixed chunks).
pub(crate) fn gemm(s: Mat, dst: Out<'_>, lhs: In<'_>, rhs: In<'_>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{GruConfig, LstmConfig};
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

    type Params<'a> = Vec<(String, &'a Param<Tensor<2>>, &'a Param<Tensor<1>>)>;

    fn gate_params<'a>(gates: Vec<(&str, &'a GateController)>) -> Params<'a> {
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

    fn lstm_params(l: &Lstm) -> Params<'_> {
        gate_params(vec![
            ("input", &l.input_gate),
            ("forget", l.forget_gate.as_ref().unwrap()),
            ("cell", &l.cell_gate),
            ("output", &l.output_gate),
        ])
    }

    fn gru_params(g: &Gru) -> Params<'_> {
        gate_params(vec![("update", &g.update_gate), ("reset", &g.reset_gate), ("new", &g.new_gate)])
    }

    /// One layer, two ways to run it (fused, burn's module) and its parameters.
    struct Layer<'a> {
        fused: &'a (dyn Fn(Tensor<3>) -> Tensor<3> + Sync),
        burn: &'a (dyn Fn(Tensor<3>) -> Tensor<3> + Sync),
        params: Params<'a>,
    }

    /// Outputs, the input gradient and every parameter gradient, of `run(x)·weights` summed.
    fn outputs_and_grads(layer: &Layer<'_>, fused: bool, x0: &Tensor<3>, weights: &Tensor<3>) -> Vec<(String, Tensor<2>)> {
        let x = x0.clone().detach().require_grad();
        let y = if fused { (layer.fused)(x.clone()) } else { (layer.burn)(x.clone()) };
        let grads = (y.clone() * weights.clone()).sum().backward();
        let [b, t, h] = y.dims();
        let [_, _, d] = x.dims();
        let mut all = vec![
            ("outputs".to_string(), y.inner().reshape([b * t, h])),
            ("input gradient".into(), x.grad(&grads).unwrap().reshape([b * t, d])),
        ];
        for (n, w, bias) in &layer.params {
            all.push((format!("{n}.weight gradient"), w.val().grad(&grads).expect("weight gradient")));
            let bg = bias.val().grad(&grads).expect("bias gradient");
            all.push((format!("{n}.bias gradient"), bg.unsqueeze()));
        }
        all
    }

    fn check_against_burn(layer: &Layer<'_>, x0: &Tensor<3>, weights: &Tensor<3>, at: &str) {
        let runs = || FUSED_RUNS.with(|n| n.get());
        let before = runs();
        let reference = outputs_and_grads(layer, false, x0, weights);
        assert_eq!(runs(), before, "{at}: burn's module ran the fused op");
        let fused = outputs_and_grads(layer, true, x0, weights);
        assert_eq!(runs(), before + 1, "{at}: the fused op was not taken");
        assert_eq!(reference.len(), 2 + 2 * layer.params.len());
        for ((what, r), (_, f)) in reference.into_iter().zip(fused) {
            close(f, r, 1e-5, &format!("{at}: {what}"));
        }
    }

    /// The fused ops against burn's `Lstm` and `Gru` on the same weights and batch: outputs,
    /// the input gradient and every weight and bias gradient of every gate (16 and 12), on
    /// shapes with one and several row chunks.
    #[test]
    fn fused_layers_match_burns_modules_and_all_their_gradients() {
        let ad = Device::flex().autodiff();
        ad.seed(11);
        for (batch, seq, d, h) in [(3, 13, 5, 4), (7, 6, 9, 16), (1, 2, 2, 3), (35, 4, 3, 5)] {
            let x0 = Tensor::<3>::random([batch, seq, d], Distribution::Normal(0.0, 1.0), &ad);
            let weights = Tensor::<3>::random([batch, seq, h], Distribution::Normal(0.0, 1.0), &ad);
            let l = LstmConfig::new(d, h, true).init(&ad);
            let (f, b) = (|x| lstm(&l, x), |x| l.forward(x, None).0);
            check_against_burn(
                &Layer { fused: &f, burn: &b, params: lstm_params(&l) },
                &x0,
                &weights,
                &format!("lstm b{batch} t{seq} d{d} h{h}"),
            );
            let g = GruConfig::new(d, h, true).init(&ad);
            let (f, b) = (|x| gru(&g, x), |x| g.forward(x, None));
            check_against_burn(
                &Layer { fused: &f, burn: &b, params: gru_params(&g) },
                &x0,
                &weights,
                &format!("gru b{batch} t{seq} d{d} h{h}"),
            );
        }
    }

    /// Outputs and every gradient are bit-identical under 1, 2 and 3 rayon threads, with a batch
    /// split into uneven chunks (37 rows): what `flowcast reproduce` under another thread
    /// budget relies on.
    #[test]
    fn fused_layers_are_bit_identical_under_any_thread_count() {
        let ad = Device::flex().autodiff();
        ad.seed(3);
        let x0 = Tensor::<3>::random([37, 9, 7], Distribution::Normal(0.0, 1.0), &ad);
        let weights = Tensor::<3>::random([37, 9, 12], Distribution::Normal(0.0, 1.0), &ad);
        let l = LstmConfig::new(7, 12, true).init(&ad);
        let g = GruConfig::new(7, 12, true).init(&ad);
        let (fl, bl) = (|x| lstm(&l, x), |x| l.forward(x, None).0);
        let (fg, bg) = (|x| gru(&g, x), |x| g.forward(x, None));
        let layers = [
            ("lstm", Layer { fused: &fl, burn: &bl, params: lstm_params(&l) }),
            ("gru", Layer { fused: &fg, burn: &bg, params: gru_params(&g) }),
        ];
        for (name, layer) in &layers {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    outputs_and_grads(layer, true, &x0, &weights)
                        .into_iter()
                        .map(|(_, t)| values(t).into_iter().map(f32::to_bits).collect::<Vec<_>>())
                        .collect::<Vec<_>>()
                })
            };
            let one = run(1);
            assert_eq!(one.len(), 2 + 2 * layer.params.len());
            for threads in [2, 3] {
                assert!(run(threads) == one, "{name}: {threads} threads differ from 1 in some output or gradient bit");
            }
        }
    }

    /// Without autodiff (inference) the fused forward gives burn's outputs too.
    #[test]
    fn fused_layers_match_at_inference() {
        let dev = Device::flex();
        dev.seed(5);
        let x = Tensor::<3>::random([20, 9, 6], Distribution::Normal(0.0, 1.0), &dev);
        let l = LstmConfig::new(6, 5, true).init(&dev);
        let before = FUSED_RUNS.with(|n| n.get());
        close(lstm(&l, x.clone()), l.forward(x.clone(), None).0, 1e-5, "lstm inference outputs");
        let g = GruConfig::new(6, 5, true).init(&dev);
        close(gru(&g, x.clone()), g.forward(x, None), 1e-5, "gru inference outputs");
        assert_eq!(FUSED_RUNS.with(|n| n.get()), before + 2, "the fused inference path was not taken");
    }

    /// Layers the kernels do not compute (a reverse LSTM, a reset-before GRU) take burn's
    /// module unchanged.
    #[test]
    fn other_layers_fall_back_to_burns_modules() {
        let dev = Device::flex();
        let x = Tensor::<3>::random([2, 5, 3], Distribution::Normal(0.0, 1.0), &dev);
        let l = LstmConfig::new(3, 4, true).with_reverse(true).init(&dev);
        assert!(lstm_weights(&l).is_none());
        close(lstm(&l, x.clone()), l.forward(x.clone(), None).0, 0.0, "reverse lstm");
        let g = GruConfig::new(3, 4, true).with_reset_after(false).init(&dev);
        assert!(gru_weights(&g).is_none());
        close(gru(&g, x.clone()), g.forward(x, None), 0.0, "reset-before gru");
    }

    /// Forward + backward of one 64-unit layer at `flowcast bench train`'s shape (batch 64,
    /// window 100 × 40), fused op against burn's module, same process, alternating. A timing,
    /// not a check: `cargo test -p flowcast-models --release rnn_op_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn rnn_op_timing() {
        let ad = Device::flex().autodiff();
        let l = LstmConfig::new(40, 64, true).init(&ad);
        let g = GruConfig::new(40, 64, true).init(&ad);
        let x = Tensor::<3>::random([64, 100, 40], Distribution::Normal(0.0, 1.0), &ad);
        let step = |cell: &str, fused: bool| {
            let y = match (cell, fused) {
                ("lstm", true) => lstm(&l, x.clone()),
                ("lstm", false) => l.forward(x.clone(), None).0,
                (_, true) => gru(&g, x.clone()),
                (_, false) => g.forward(x.clone(), None),
            };
            let grads = y.slice(s![.., 99, ..]).sum().backward();
            let _ = x.grad(&grads);
        };
        for round in 0..2 {
            for cell in ["lstm", "gru"] {
                for fused in [false, true] {
                    step(cell, fused);
                    let t0 = std::time::Instant::now();
                    let n = 5;
                    for _ in 0..n {
                        step(cell, fused);
                    }
                    let per = t0.elapsed().as_secs_f64() / n as f64;
                    println!(
                        "round {round} {cell} {}: {:.1} ms/batch, {:.0} samples/s",
                        if fused { "fused" } else { "burn" },
                        per * 1e3,
                        64.0 / per
                    );
                }
            }
        }
    }
}

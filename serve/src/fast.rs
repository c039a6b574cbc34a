//! The fast inference path of the recurrent models and DeepLOB: the same arithmetic as the candle
//! twins in [`crate::models`] (which stay as the reference the tests compare against), rewritten
//! as matrix products over preallocated, channels-last buffers.
//!
//! * LSTM/GRU: the inputs of all T steps are projected in one product `[T, F]·[F, 4H]` (both
//!   biases folded in), then each step is one fused `[B, H]·[H, 4H]` product written in place
//!   into that step's block, and one cell loop — no per-step allocation, no transposes.
//! * DeepLOB: activations are `[planes, T, C]` with C fastest, one plane per (sample, book
//!   column). A (k×1) temporal convolution is then a single product whose left operand slides
//!   one row (C values) at a time over the buffer (`[rows, k·C]` with row stride C, no im2col
//!   copy); a (1×2, stride 2) or (1×L) convolution is a sum of per-tap products over planes;
//!   bias, activation and inference BatchNorm are one fused pass.
//!
//! A batch is split into one contiguous share per rayon thread (`RAYON_NUM_THREADS`), and each
//! share runs in sub-batches that fit in cache; scratch buffers are per thread and reused.

use crate::error::Result;
use crate::kernels::{causal_softmax, conv_epilogue, gelu_bias, gru_cell, layer_norm, lstm_cell, matmul, relu_bias, Packed};
use crate::layers::{BatchNorm, Conv2d, Gru, Linear, Lstm};
use crate::models::{self, ConvUnit, DeepLob, Recurrent, RnnClassifier};
use candle_core::Tensor;
use std::cell::RefCell;

fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Grows `v` to at least `n` values and returns the first `n` (old contents kept: callers
/// overwrite or zero what they read).
fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// Dense layer, weight `[in, out]` row-major.
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

impl Dense {
    fn of(l: &Linear) -> Result<Self> {
        let (d_in, d_out) = l.w.dims2()?;
        let b = match &l.b {
            Some(b) => host(b)?,
            None => vec![0.0; d_out],
        };
        Ok(Dense { w: host(&l.w)?, b, d_in, d_out })
    }
    /// `out[r] = x[r]·W + b` for `rows` rows of `x` (row stride `ldx`).
    fn forward(&self, x: &[f32], ldx: usize, rows: usize, out: &mut [f32]) {
        dense(&self.w, &self.b, x, ldx, rows, out);
    }
}

/// Per-thread scratch of the recurrent kernels.
#[derive(Default)]
struct RnnScratch {
    xp: Vec<f32>,
    gh: Vec<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
}

/// One direction of an LSTM or GRU layer with its gates concatenated: `wx [d_in, G·H]`,
/// `wh [H, G·H]` (G = 4: i, f, o, c̃; G = 3: z, r, n).
struct Cell {
    gru: bool,
    d_in: usize,
    hidden: usize,
    wx: Vec<f32>,
    /// LSTM: input and hidden biases summed; GRU: the input biases.
    bx: Vec<f32>,
    wh: Vec<f32>,
    /// `wh` tile-packed for the recurrent product of a few sequences (single-window serving).
    wh_packed: Packed,
    /// GRU only: the hidden biases (n's is multiplied by r, so it cannot be folded).
    bh: Vec<f32>,
    reverse: bool,
}

/// Concatenates `[k, n_i]` row-major matrices along columns.
fn hcat(parts: &[Vec<f32>], k: usize) -> Vec<f32> {
    let widths: Vec<usize> = parts.iter().map(|p| p.len() / k).collect();
    let n: usize = widths.iter().sum();
    let mut out = Vec::with_capacity(k * n);
    for r in 0..k {
        for (p, &w) in parts.iter().zip(&widths) {
            out.extend_from_slice(&p[r * w..(r + 1) * w]);
        }
    }
    out
}

impl Cell {
    fn of_gates(gates: &[&crate::layers::Gate], gru: bool, hidden: usize, reverse: bool) -> Result<Self> {
        let d_in = gates[0].x.w.dims2()?.0;
        let wx = hcat(&gates.iter().map(|g| host(&g.x.w)).collect::<Result<Vec<_>>>()?, d_in);
        let wh = hcat(&gates.iter().map(|g| host(&g.h.w)).collect::<Result<Vec<_>>>()?, hidden);
        let bias = |l: &Linear| -> Result<Vec<f32>> { Dense::of(l).map(|d| d.b) };
        let mut bx = Vec::new();
        let mut bh = Vec::new();
        for g in gates {
            bx.extend(bias(&g.x)?);
            bh.extend(bias(&g.h)?);
        }
        if !gru {
            for (x, h) in bx.iter_mut().zip(bh.drain(..)) {
                *x += h;
            }
        }
        let wh_packed = Packed::new(&wh, hidden, wh.len() / hidden);
        Ok(Cell { gru, d_in, hidden, wx, bx, wh, wh_packed, bh, reverse })
    }
    fn lstm(l: &Lstm) -> Result<Self> {
        Cell::of_gates(&[&l.i, &l.f, &l.o, &l.c], false, l.hidden, l.reverse)
    }
    fn gru(g: &Gru) -> Result<Self> {
        Cell::of_gates(&[&g.z, &g.r, &g.n], true, g.hidden, g.reverse)
    }
    fn of(r: &Recurrent) -> Result<Self> {
        match r {
            Recurrent::Lstm(l) => Cell::lstm(l),
            Recurrent::Gru(g) => Cell::gru(g),
        }
    }

    /// `out[b, gw] += h[b, H] · wh`: the tile-packed product for a few sequences, gemm beyond.
    fn recurrent(&self, b: usize, h: &[f32], out: &mut [f32], gw: usize) {
        if b <= 4 {
            self.wh_packed.matmul(b, h, self.hidden, out, gw, true);
        } else {
            matmul(b, self.hidden, gw, h, self.hidden, &self.wh, out, gw, true);
        }
    }

    /// Runs `b` sequences of `t` steps. Sample `i`'s step `s` input is `x[(i·stride + s)·ldx..][..d_in]`.
    /// When `out` is given, step s's hidden state of sample i goes to `out[(i·t + s)·ldo + col..]`.
    /// Returns the final hidden states `[b, H]` (in the scratch).
    #[allow(clippy::too_many_arguments)]
    fn run<'s>(
        &self,
        x: &[f32],
        ldx: usize,
        stride: usize,
        b: usize,
        t: usize,
        mut out: Option<(&mut [f32], usize, usize)>,
        sc: &'s mut RnnScratch,
    ) -> &'s [f32] {
        let (h_n, gw) = (self.hidden, self.wx.len() / self.d_in);
        // Step-major projections: step s of all samples is one contiguous [b, G·H] block.
        let xp = grow(&mut sc.xp, t * b * gw);
        for s in 0..t {
            for i in 0..b {
                xp[(s * b + i) * gw..(s * b + i + 1) * gw].copy_from_slice(&self.bx);
            }
        }
        for i in 0..b {
            matmul(t, self.d_in, gw, &x[i * stride * ldx..], ldx, &self.wx, &mut xp[i * gw..], b * gw, true);
        }
        let h = grow(&mut sc.h, b * h_n);
        h.fill(0.0);
        let c = grow(&mut sc.c, b * h_n);
        c.fill(0.0);
        let gh = grow(&mut sc.gh, if self.gru { b * gw } else { 0 });
        for k in 0..t {
            let s = if self.reverse { t - 1 - k } else { k };
            let blk = &mut xp[s * b * gw..(s + 1) * b * gw];
            if self.gru {
                for i in 0..b {
                    gh[i * gw..(i + 1) * gw].copy_from_slice(&self.bh);
                }
                if k > 0 {
                    self.recurrent(b, h, gh, gw);
                }
                for i in 0..b {
                    gru_cell(&blk[i * gw..(i + 1) * gw], &gh[i * gw..(i + 1) * gw], &mut h[i * h_n..(i + 1) * h_n]);
                }
            } else {
                if k > 0 {
                    self.recurrent(b, h, blk, gw);
                }
                for i in 0..b {
                    lstm_cell(&mut blk[i * gw..(i + 1) * gw], &mut c[i * h_n..(i + 1) * h_n], &mut h[i * h_n..(i + 1) * h_n]);
                }
            }
            if let Some((o, ldo, col)) = out.as_mut() {
                for i in 0..b {
                    let at = (i * t + s) * *ldo + *col;
                    o[at..at + h_n].copy_from_slice(&h[i * h_n..(i + 1) * h_n]);
                }
            }
        }
        &sc.h[..b * h_n]
    }
}

/// The recurrence scratch, two layer-output buffers and the final states.
type RnnChunkScratch = (RnnScratch, Vec<f32>, Vec<f32>, Vec<f32>);

thread_local! {
    static RNN_SCRATCH: RefCell<RnnChunkScratch> = RefCell::default();
    static DEEPLOB_SCRATCH: RefCell<DeepLobScratch> = RefCell::default();
}

/// Splits a batch into one share per rayon thread and runs `f(x_share, rows, logits_share)` on each.
fn split_batch(x: &[f32], batch: usize, row_in: usize, out: &mut [f32], row_out: usize, f: impl Fn(&[f32], usize, &mut [f32]) + Sync) {
    let threads = rayon::current_num_threads().max(1);
    if batch <= 1 || threads == 1 {
        return f(x, batch, out);
    }
    let share = batch.div_ceil(threads.min(batch));
    rayon::scope(|s| {
        let f = &f;
        for (xs, os) in x.chunks(share * row_in).zip(out.chunks_mut(share * row_out)) {
            s.spawn(move |_| f(xs, os.len() / row_out, os));
        }
    });
}

/// [`RnnClassifier`] on the fast kernels.
pub struct FastRnn {
    layers: Vec<(Cell, Option<Cell>)>,
    head: Dense,
    hidden: usize,
    d_input: usize,
}

impl FastRnn {
    pub(crate) fn of(m: &RnnClassifier) -> Result<Self> {
        let layers = m.layers.iter().map(|(f, r)| Ok((Cell::of(f)?, r.as_ref().map(Cell::of).transpose()?))).collect::<Result<Vec<_>>>()?;
        let d_input = layers[0].0.d_in;
        Ok(FastRnn { layers, head: Dense::of(&m.head)?, hidden: m.hidden, d_input })
    }

    /// Logits `[batch, classes]` of `x` `[batch, t, features]`.
    pub fn logits(&self, x: &[f32], batch: usize, t: usize) -> Vec<f32> {
        let classes = self.head.d_out;
        let mut out = vec![0.0; batch * classes];
        split_batch(x, batch, t * self.d_input, &mut out, classes, |x, b, o| self.chunk(x, b, t, o));
        out
    }

    fn chunk(&self, x: &[f32], b: usize, t: usize, logits: &mut [f32]) {
        RNN_SCRATCH.with_borrow_mut(|(sc, seq_a, seq_b, last)| {
            let h = self.hidden;
            let dirs = if self.layers[0].1.is_some() { 2 } else { 1 };
            let n_layers = self.layers.len();
            let width = dirs * h;
            let last = grow(last, b * width);
            let (mut cur, mut nxt) = (seq_a, seq_b);
            for (li, (fwd, rev)) in self.layers.iter().enumerate() {
                let top = li + 1 == n_layers;
                let (input, ldx): (&[f32], usize) = if li == 0 { (x, self.d_input) } else { (&cur[..], width) };
                let seq = grow(nxt, if top { 0 } else { b * t * width });
                let hf = fwd.run(input, ldx, t, b, t, if top { None } else { Some((&mut *seq, width, 0)) }, sc);
                if top {
                    for i in 0..b {
                        last[i * width..i * width + h].copy_from_slice(&hf[i * h..(i + 1) * h]);
                    }
                }
                if let Some(rev) = rev {
                    // The reverse direction's final state is its output at t = 0.
                    let hr = rev.run(input, ldx, t, b, t, if top { None } else { Some((&mut *seq, width, h)) }, sc);
                    if top {
                        for i in 0..b {
                            last[i * width + h..(i + 1) * width].copy_from_slice(&hr[i * h..(i + 1) * h]);
                        }
                    }
                }
                std::mem::swap(&mut cur, &mut nxt);
            }
            self.head.forward(last, width, b, logits);
        })
    }
}

/// A DeepLOB convolution unit: taps `[taps, c_in, c_out]` (tap = kh·kw + kw index), then the
/// fused bias, activation and BatchNorm.
struct Unit {
    w: Vec<f32>,
    taps: usize,
    c_in: usize,
    c_out: usize,
    bias: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
    tanh: bool,
}

impl Unit {
    fn of(u: &ConvUnit) -> Result<Self> {
        Unit::of_parts(&u.conv, &u.bn, matches!(u.act, models::Act::Tanh))
    }
    fn of_parts(conv: &Conv2d, bn: &BatchNorm, tanh: bool) -> Result<Self> {
        let (c_out, c_in, kh, kw) = conv.w.dims4()?;
        let w = host(&conv.w)?;
        let taps = kh * kw;
        let mut t = vec![0.0; taps * c_in * c_out];
        for o in 0..c_out {
            for c in 0..c_in {
                for tap in 0..taps {
                    t[(tap * c_in + c) * c_out + o] = w[(o * c_in + c) * taps + tap];
                }
            }
        }
        let (mean, var, gamma, beta) = (host(&bn.mean)?, host(&bn.inv_std)?, host(&bn.gamma)?, host(&bn.beta)?);
        // `inv_std` holds √(var + ε) (the reference divides by it).
        let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, s)| g / s).collect();
        let shift: Vec<f32> = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        Ok(Unit { w: t, taps, c_in, c_out, bias: host(&conv.b)?, scale, shift, tanh })
    }
    fn tap(&self, i: usize) -> &[f32] {
        &self.w[i * self.c_in * self.c_out..(i + 1) * self.c_in * self.c_out]
    }
    /// Epilogue over `rows` rows (row stride `ld`) starting at `y[0]`.
    fn finish(&self, y: &mut [f32], rows: usize, ld: usize) {
        if rows > 0 {
            conv_epilogue(&mut y[..(rows - 1) * ld + self.c_out], ld, &self.bias, &self.scale, &self.shift, self.tanh);
        }
    }
}

/// Rows of zeros kept before and after every activation buffer, so a sliding window may start
/// up to `MARGIN` rows before the first row or run past the last.
const MARGIN: usize = 4;

/// An activation buffer `[planes, T, C]` (plane stride T rows) with `MARGIN` rows either side.
fn buf(v: &mut Vec<f32>, planes: usize, t: usize, c: usize) -> &mut [f32] {
    let n = (planes * t + 2 * MARGIN) * c;
    let b = grow(v, n);
    b[..MARGIN * c].fill(0.0);
    b[n - MARGIN * c..].fill(0.0);
    b
}

#[derive(Default)]
struct DeepLobScratch {
    a: Vec<f32>,
    b: Vec<f32>,
    y1: Vec<f32>,
    y2: Vec<f32>,
    pool: Vec<f32>,
    z: Vec<f32>,
    rnn: RnnScratch,
}

/// [`DeepLob`] on the fast kernels.
pub struct FastDeepLob {
    /// conv1..3: (1×2 s2 | 1×L), (4×1), (4×1) each.
    conv: Vec<Unit>,
    inp1: [Unit; 2],
    inp2: [Unit; 2],
    inp3: Unit,
    lstm: Cell,
    fc1: Dense,
    levels: usize,
}

/// Samples per sub-batch inside one thread's share: the conv buffers of 8 full-DeepLOB samples
/// (~2 MB each) stay in the last-level cache.
const DEEPLOB_SUB_BATCH: usize = 8;

impl FastDeepLob {
    pub(crate) fn of(m: &DeepLob) -> Result<Self> {
        let conv = m.conv.iter().map(Unit::of).collect::<Result<Vec<_>>>()?;
        let u = |v: &ConvUnit| Unit::of(v);
        Ok(FastDeepLob {
            conv,
            inp1: [u(&m.inp1[0])?, u(&m.inp1[1])?],
            inp2: [u(&m.inp2[0])?, u(&m.inp2[1])?],
            inp3: u(&m.inp3[0])?,
            lstm: Cell::lstm(&m.lstm)?,
            fc1: Dense::of(&m.fc1)?,
            levels: m.levels,
        })
    }

    /// Logits `[batch, classes]` of `x` `[batch, t, 4·levels]` (t > 18, checked by the caller).
    pub fn logits(&self, x: &[f32], batch: usize, t: usize) -> Vec<f32> {
        let classes = self.fc1.d_out;
        let f = 4 * self.levels;
        let mut out = vec![0.0; batch * classes];
        split_batch(x, batch, t * f, &mut out, classes, |x, _, o| {
            DEEPLOB_SCRATCH.with_borrow_mut(|sc| {
                for (xs, os) in x.chunks(DEEPLOB_SUB_BATCH * t * f).zip(o.chunks_mut(DEEPLOB_SUB_BATCH * classes)) {
                    self.chunk(xs, os.len() / classes, t, os, sc);
                }
            })
        });
        out
    }

    /// A temporal (k×1) unit over `planes` planes: `src` → `dst`, both `[planes, t, C]` with
    /// margins; output row s reads input rows s − pad .. s − pad + k − 1. `len` valid output rows
    /// per plane get the epilogue; `dst` may be a column slice of a wider buffer (`ldd`).
    #[allow(clippy::too_many_arguments)]
    fn temporal(u: &Unit, src: &[f32], planes: usize, t: usize, pad: usize, dst: &mut [f32], ldd: usize, col: usize, len: usize) {
        let c = u.c_in;
        let m = planes * t;
        let a = &src[(MARGIN - pad) * c..];
        let d = &mut dst[MARGIN * ldd + col..];
        matmul(m, u.taps * c, u.c_out, a, c, &u.w, d, ldd, false);
        for p in 0..planes {
            u.finish(&mut d[p * t * ldd..], len, ldd);
        }
    }

    fn chunk(&self, x: &[f32], b: usize, t: usize, logits: &mut [f32], sc: &mut DeepLobScratch) {
        let f = 4 * self.levels;
        let ch = self.conv[0].c_out;
        // conv1.0: (1×2) stride 2 from one input channel: planes (sample, price/size pair).
        let mut w = f / 2;
        let a = buf(&mut sc.a, b * w, t, ch);
        {
            let u = &self.conv[0];
            let (w0, w1) = (u.tap(0), u.tap(1));
            for i in 0..b {
                for p in 0..w {
                    let plane = &mut a[(MARGIN + (i * w + p) * t) * ch..];
                    for s in 0..t {
                        let (x0, x1) = (x[(i * t + s) * f + 2 * p], x[(i * t + s) * f + 2 * p + 1]);
                        let row = &mut plane[s * ch..(s + 1) * ch];
                        for o in 0..ch {
                            row[o] = x0 * w0[o] + x1 * w1[o];
                        }
                    }
                    u.finish(plane, t, ch);
                }
            }
        }
        let mut len = t;
        let (mut cur, mut nxt) = (&mut sc.a, &mut sc.b);
        for (k, u) in self.conv.iter().enumerate() {
            let spatial = k % 3 == 0;
            if k == 0 {
                continue;
            }
            if spatial {
                // (1×2) stride 2 or (1×L): out plane (i, q) = Σ_tap in plane (i, q·taps + tap) · W_tap.
                let taps = u.taps;
                let w_out = w / taps;
                let src = &cur[..];
                let dst = buf(nxt, b * w_out, t, ch);
                for i in 0..b {
                    for q in 0..w_out {
                        let o = &mut dst[(MARGIN + (i * w_out + q) * t) * ch..];
                        for tap in 0..taps {
                            let p = i * w + q * taps + tap;
                            matmul(len, ch, ch, &src[(MARGIN + p * t) * ch..], ch, u.tap(tap), o, ch, tap > 0);
                        }
                        u.finish(o, len, ch);
                    }
                }
                w = w_out;
            } else {
                let dst = buf(nxt, b * w, t, ch);
                len -= u.taps - 1;
                Self::temporal(u, cur, b * w, t, 0, dst, ch, 0, len);
            }
            std::mem::swap(&mut cur, &mut nxt);
        }
        debug_assert_eq!(w, 1);
        // Inception over `cur` [b, t, ch], `len` valid rows per sample; branches concatenated
        // channels-last into z [b, t, 3·ci].
        let x3 = &cur[..];
        let ci = self.inp3.c_out;
        let ld = 3 * ci;
        let z = buf(&mut sc.z, b, t, ld);
        for (branch, (units, ybuf)) in [(&self.inp1, &mut sc.y1), (&self.inp2, &mut sc.y2)].into_iter().enumerate() {
            let y = buf(ybuf, b, t, ci);
            Self::temporal(&units[0], x3, b, t, 0, y, ci, 0, len);
            // 'same' padding: the rows after each sample's valid ones (and the leading margin) are zero.
            for i in 0..b {
                y[(MARGIN + i * t + len) * ci..(MARGIN + (i + 1) * t) * ci].fill(0.0);
            }
            let pad = units[1].taps / 2;
            Self::temporal(&units[1], y, b, t, pad, z, ld, branch * ci, len);
        }
        // Branch 3: max-pool (3,1) stride 1 over the valid rows (edges padded with −∞), then 1×1.
        let pool = buf(&mut sc.pool, b, t, ch);
        for i in 0..b {
            let base = (MARGIN + i * t) * ch;
            for s in 0..len {
                let (lo, hi) = (s.saturating_sub(1), (s + 1).min(len - 1));
                for o in 0..ch {
                    let mut v = x3[base + lo * ch + o];
                    for r in lo + 1..=hi {
                        v = v.max(x3[base + r * ch + o]);
                    }
                    pool[base + s * ch + o] = v;
                }
            }
        }
        Self::temporal(&self.inp3, pool, b, t, 0, z, ld, 2 * ci, len);
        let h = self.lstm.run(&z[MARGIN * ld..], ld, t, b, len, None, &mut sc.rnn);
        self.fc1.forward(h, self.lstm.hidden, b, logits);
    }
}

/// A causal dilated convolution: taps `[k, c_in, c_out]`; tap j reads the input `dilation·(k−1−j)`
/// steps back.
struct Causal {
    w: Vec<f32>,
    bias: Vec<f32>,
    k: usize,
    dilation: usize,
    c_in: usize,
    c_out: usize,
}

struct Encoder {
    /// Query, key and value projections side by side: `[d, 3d]`.
    qkv: Dense,
    o: Dense,
    inner: Dense,
    outer: Dense,
    norm_1: (Vec<f32>, Vec<f32>),
    norm_2: (Vec<f32>, Vec<f32>),
}

#[derive(Default)]
struct TransLobScratch {
    a: Vec<f32>,
    b: Vec<f32>,
    h: Vec<f32>,
    enc: EncoderScratch,
    hidden: Vec<f32>,
}

impl Encoder {
    fn view(&self) -> EncoderLayer<'_> {
        fn pair(d: &Dense) -> (&[f32], &[f32]) {
            (&d.w, &d.b)
        }
        fn norm(n: &(Vec<f32>, Vec<f32>)) -> (&[f32], &[f32]) {
            (&n.0, &n.1)
        }
        EncoderLayer {
            qkv: pair(&self.qkv),
            o: pair(&self.o),
            inner: pair(&self.inner),
            outer: pair(&self.outer),
            norm_1: norm(&self.norm_1),
            norm_2: norm(&self.norm_2),
        }
    }
}

/// One post-norm transformer encoder layer (burn's `TransformerEncoderLayer` with
/// `norm_first = false`, GELU, a causal mask, LayerNorm ε = 1e-5, no dropout), borrowed as
/// row-major `(weight [in, out], bias [out])` pairs, so the burn models' inference shares this
/// kernel (models/src/translob.rs).
pub struct EncoderLayer<'a> {
    /// Query, key and value projections side by side: `[d, 3d]`, `[3d]`.
    pub qkv: (&'a [f32], &'a [f32]),
    /// Output projection `[d, d]`, `[d]`.
    pub o: (&'a [f32], &'a [f32]),
    /// Feed-forward `[d, f]`, `[f]` and `[f, d]`, `[d]`.
    pub inner: (&'a [f32], &'a [f32]),
    pub outer: (&'a [f32], &'a [f32]),
    /// LayerNorm (γ, β) after attention and after the feed-forward, `[d]` each.
    pub norm_1: (&'a [f32], &'a [f32]),
    pub norm_2: (&'a [f32], &'a [f32]),
}

/// Reused buffers of [`encoder_layer`].
#[derive(Default)]
pub struct EncoderScratch {
    qkv: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
    scores: Vec<f32>,
    ctx: Vec<f32>,
    x1: Vec<f32>,
    ff: Vec<f32>,
}

/// `out[r] = x[r]·W + b` for `rows` rows of `x` (row stride `ldx`), `W` `[in, out]`.
fn dense(w: &[f32], b: &[f32], x: &[f32], ldx: usize, rows: usize, out: &mut [f32]) {
    let n = b.len();
    for r in 0..rows {
        out[r * n..(r + 1) * n].copy_from_slice(b);
    }
    matmul(rows, w.len() / n, n, x, ldx, w, out, n, true);
}

/// [`EncoderLayer`] in place on `h` `[b·t, d]` (b samples of t steps): attention per sample and
/// head as two products over a `[t, t]` score matrix with the causal mask applied inside the
/// softmax, then x1 = LN1(h + ctx·Wo + bo); h = LN2(x1 + W2·GELU(W1·x1 + b1) + b2).
pub fn encoder_layer(l: &EncoderLayer<'_>, h: &mut [f32], b: usize, t: usize, heads: usize, sc: &mut EncoderScratch) {
    let d = l.norm_1.0.len();
    let f = l.inner.1.len();
    let rows = b * t;
    let dk = d / heads;
    let scale = 1.0 / (dk as f32).sqrt();
    let qkv = grow(&mut sc.qkv, rows * 3 * d);
    dense(l.qkv.0, l.qkv.1, h, d, rows, qkv);
    let ctx = grow(&mut sc.ctx, rows * d);
    let kt = grow(&mut sc.kt, dk * t);
    let v = grow(&mut sc.v, t * dk);
    let s = grow(&mut sc.scores, t * t);
    for i in 0..b {
        let q0 = i * t * 3 * d;
        for hd in 0..heads {
            for r in 0..t {
                for c in 0..dk {
                    kt[c * t + r] = qkv[q0 + r * 3 * d + d + hd * dk + c];
                    v[r * dk + c] = qkv[q0 + r * 3 * d + 2 * d + hd * dk + c];
                }
            }
            matmul(t, dk, t, &qkv[q0 + hd * dk..], 3 * d, kt, s, t, false);
            causal_softmax(s, t, scale);
            matmul(t, t, dk, s, t, v, &mut ctx[i * t * d + hd * dk..], d, false);
        }
    }
    let x1 = grow(&mut sc.x1, rows * d);
    x1.copy_from_slice(&h[..rows * d]);
    matmul(rows, d, d, ctx, d, l.o.0, x1, d, true);
    add_bias(x1, l.o.1);
    layer_norm(x1, d, l.norm_1.0, l.norm_1.1);
    let ff = grow(&mut sc.ff, rows * f);
    matmul(rows, d, f, x1, d, l.inner.0, ff, f, false);
    gelu_bias(ff, l.inner.1);
    let h = &mut h[..rows * d];
    h.copy_from_slice(x1);
    matmul(rows, f, d, ff, f, l.outer.0, h, d, true);
    add_bias(h, l.outer.1);
    layer_norm(h, d, l.norm_2.0, l.norm_2.1);
}

thread_local! {
    static ENCODER_SCRATCH: RefCell<EncoderScratch> = RefCell::default();
}

/// Samples per parallel task of [`encoder_stack`] (fixed, so the split does not depend on the
/// thread count).
const ENCODER_SUB_BATCH: usize = 4;

/// Every layer of `layers` in turn over `h` `[batch·t, d]`, samples split across rayon threads
/// in fixed groups (each sample's arithmetic is independent of the split).
pub fn encoder_stack(layers: &[EncoderLayer<'_>], h: &mut [f32], batch: usize, t: usize, heads: usize) {
    use rayon::prelude::*;
    let Some(first) = layers.first() else { return };
    let row = t * first.norm_1.0.len();
    if batch == 0 || row == 0 {
        return;
    }
    h[..batch * row].par_chunks_mut(ENCODER_SUB_BATCH * row).for_each(|hs| {
        ENCODER_SCRATCH.with_borrow_mut(|sc| {
            for l in layers {
                encoder_layer(l, hs, hs.len() / row, t, heads, sc);
            }
        })
    });
}

thread_local! {
    static TRANSLOB_SCRATCH: RefCell<TransLobScratch> = RefCell::default();
}

/// [`TransLob`](crate::models::TransLob) on the fast kernels: the same layers on `[T, d]`
/// row-major activations per sample; attention per head as two products over `[T, T]` scores
/// with the causal mask applied inside the softmax.
pub struct FastTransLob {
    convs: Vec<Causal>,
    norm: (Vec<f32>, Vec<f32>),
    layers: Vec<Encoder>,
    fc1: Dense,
    fc2: Dense,
    heads: usize,
    d_input: usize,
}

impl FastTransLob {
    pub(crate) fn of(m: &crate::models::TransLob) -> Result<Self> {
        let convs = m
            .convs
            .iter()
            .map(|c| {
                let (c_out, c_in, k) = c.w.dims3()?;
                let w = host(&c.w)?;
                let mut t = vec![0.0; k * c_in * c_out];
                for o in 0..c_out {
                    for i in 0..c_in {
                        for j in 0..k {
                            t[(j * c_in + i) * c_out + o] = w[(o * c_in + i) * k + j];
                        }
                    }
                }
                Ok(Causal { w: t, bias: host(&c.b)?, k, dilation: c.dilation, c_in, c_out })
            })
            .collect::<Result<Vec<_>>>()?;
        let ln = |n: &crate::layers::LayerNorm| -> Result<(Vec<f32>, Vec<f32>)> { Ok((host(&n.gamma)?, host(&n.beta)?)) };
        let layers = m
            .layers
            .iter()
            .map(|l| {
                let (q, k, v) = (Dense::of(&l.mha.q)?, Dense::of(&l.mha.k)?, Dense::of(&l.mha.v)?);
                let d = q.d_in;
                let qkv = Dense { w: hcat(&[q.w, k.w, v.w], d), b: [q.b, k.b, v.b].concat(), d_in: d, d_out: 3 * d };
                Ok(Encoder {
                    qkv,
                    o: Dense::of(&l.mha.o)?,
                    inner: Dense::of(&l.inner)?,
                    outer: Dense::of(&l.outer)?,
                    norm_1: ln(&l.norm_1)?,
                    norm_2: ln(&l.norm_2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let d_input = convs.first().map(|c| c.c_in).unwrap_or(0);
        Ok(FastTransLob { convs, norm: ln(&m.norm)?, layers, fc1: Dense::of(&m.fc1)?, fc2: Dense::of(&m.fc2)?, heads: m.heads, d_input })
    }

    /// Logits `[batch, classes]` of `x` `[batch, window, features]` (window checked by the caller).
    pub fn logits(&self, x: &[f32], batch: usize, t: usize) -> Vec<f32> {
        let classes = self.fc2.d_out;
        let mut out = vec![0.0; batch * classes];
        split_batch(x, batch, t * self.d_input, &mut out, classes, |x, b, o| {
            TRANSLOB_SCRATCH.with_borrow_mut(|sc| self.chunk(x, b, t, o, sc));
        });
        out
    }

    fn chunk(&self, x: &[f32], b: usize, t: usize, logits: &mut [f32], sc: &mut TransLobScratch) {
        let ch = self.norm.0.len();
        let d = ch + 1;
        let h = grow(&mut sc.h, b * t * d);
        let denom = (t.max(2) - 1) as f32;
        for i in 0..b {
            // Causal convolutions + ReLU on [T, C] rows of this sample.
            let (mut cur, mut ld): (&[f32], usize) = (&x[i * t * self.d_input..(i + 1) * t * self.d_input], self.d_input);
            let (mut pa, mut pb) = (&mut sc.a, &mut sc.b);
            for c in &self.convs {
                let y = grow(pa, t * c.c_out);
                for r in 0..t {
                    y[r * c.c_out..(r + 1) * c.c_out].copy_from_slice(&c.bias);
                }
                for j in 0..c.k {
                    let shift = c.dilation * (c.k - 1 - j);
                    if shift < t {
                        let tap = &c.w[j * c.c_in * c.c_out..(j + 1) * c.c_in * c.c_out];
                        matmul(t - shift, c.c_in, c.c_out, cur, ld, tap, &mut y[shift * c.c_out..], c.c_out, true);
                    }
                }
                for v in y.iter_mut() {
                    *v = v.max(0.0);
                }
                std::mem::swap(&mut pa, &mut pb);
                cur = &pb[..t * c.c_out];
                ld = c.c_out;
            }
            // LayerNorm over channels, then the position channel: [T, C + 1].
            let hs = &mut h[i * t * d..(i + 1) * t * d];
            for r in 0..t {
                hs[r * d..r * d + ch].copy_from_slice(&cur[r * ch..(r + 1) * ch]);
                hs[r * d + ch] = -1.0 + 2.0 * r as f32 / denom;
            }
            layer_norm(hs, d, &self.norm.0, &self.norm.1);
        }
        for l in &self.layers {
            encoder_layer(&l.view(), h, b, t, self.heads, &mut sc.enc);
        }
        let hidden = grow(&mut sc.hidden, b * self.fc1.d_out);
        matmul(b, t * d, self.fc1.d_out, h, t * d, &self.fc1.w, hidden, self.fc1.d_out, false);
        relu_bias(hidden, &self.fc1.b);
        self.fc2.forward(hidden, self.fc1.d_out, b, logits);
    }
}

/// Adds a per-column bias to every row.
fn add_bias(y: &mut [f32], bias: &[f32]) {
    for row in y.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Model, ModelSpec};
    use flowcast_contract::spec::{DeepLobSpec, RnnCell, RnnSpec, TransLobSpec};

    fn inputs(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    fn model(spec: ModelSpec, seed: u64) -> Model {
        Model::random(&spec, seed).unwrap()
    }

    /// Fast path == candle reference (itself tested == burn in tests/tests/models_parity.rs).
    fn agree(spec: ModelSpec, batches: &[usize], seq: usize, seed: u64) {
        let m = model(spec, seed);
        for &b in batches {
            let x = inputs(b * seq * m.spec().n_features(), seed + b as u64);
            let fast = m.logits(&x, b, seq).unwrap();
            let reference = m.logits_reference(&x, b, seq).unwrap();
            assert_eq!(fast.len(), reference.len());
            let spread = reference.iter().fold(0f32, |a, v| a.max(v.abs()));
            let diff = fast.iter().zip(&reference).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(spread > 1e-3, "{}: degenerate logits {reference:?}", m.spec().name());
            assert!(diff <= 1e-5, "{} batch {b}: fast and candle differ by {diff}\nfast {fast:?}\nref  {reference:?}", m.spec().name());
        }
    }

    #[test]
    fn translob_fast_equals_candle() {
        let spec = |window, conv_channels, conv_layers, heads, depth, d_ff| TransLobSpec {
            d_input: 10,
            n_classes: 3,
            window,
            conv_channels,
            conv_layers,
            kernel_size: 2,
            heads,
            depth,
            d_ff,
            mlp_hidden: 16,
            dropout: 0.0,
        };
        agree(ModelSpec::Transformer(spec(20, 14, 5, 3, 2, 0)), &[1, 3, 7], 20, 9);
        agree(ModelSpec::Transformer(spec(16, 15, 3, 4, 1, 24)), &[1, 2], 16, 10);
        agree(ModelSpec::Transformer(TransLobSpec { d_input: 40, mlp_hidden: 64, ..spec(100, 14, 5, 3, 2, 0) }), &[2], 100, 11);
    }

    fn rnn(cell: RnnCell, d_input: usize, hidden: usize, layers: usize, bidirectional: bool) -> RnnSpec {
        RnnSpec { cell, d_input, n_classes: 3, hidden, layers, bidirectional, dropout: 0.0 }
    }

    #[test]
    fn lstm_fast_equals_candle() {
        agree(ModelSpec::Lstm(rnn(RnnCell::Lstm, 7, 24, 2, false)), &[1, 5, 9], 12, 1);
        agree(ModelSpec::Lstm(rnn(RnnCell::Lstm, 40, 64, 1, false)), &[1, 6], 30, 2);
    }

    #[test]
    fn bidirectional_lstm_fast_equals_candle() {
        agree(ModelSpec::Lstm(rnn(RnnCell::Lstm, 5, 16, 2, true)), &[1, 3, 7], 9, 3);
    }

    #[test]
    fn gru_fast_equals_candle() {
        agree(ModelSpec::Gru(rnn(RnnCell::Gru, 6, 20, 2, false)), &[1, 4, 8], 11, 4);
        agree(ModelSpec::Gru(rnn(RnnCell::Gru, 4, 12, 1, true)), &[1, 3, 6], 8, 5);
    }

    #[test]
    fn deeplob_fast_equals_candle() {
        let full = DeepLobSpec { levels: 10, n_classes: 3, conv_channels: 32, inception_channels: 64, lstm_hidden: 64 };
        agree(ModelSpec::Deeplob(full), &[1, 3, 11], 30, 6);
        let small = DeepLobSpec { levels: 1, n_classes: 3, conv_channels: 8, inception_channels: 16, lstm_hidden: 16 };
        agree(ModelSpec::Deeplob(small), &[1, 2, 10], 25, 7);
        let quick = DeepLobSpec { levels: 10, n_classes: 3, conv_channels: 16, inception_channels: 16, lstm_hidden: 32 };
        agree(ModelSpec::Deeplob(quick), &[2], 100, 8);
    }
}

//! DeepLOB's repeating unit — Conv2d → LeakyReLU or tanh → BatchNorm — as one operation on the
//! CPU backend with a hand-written backward pass, registered with burn's autodiff. burn's
//! modules spent DeepLOB's training step in a direct convolution loop, scalar libm `tanhf`,
//! masks, transposes and a dozen elementwise ops per BatchNorm (perf, docs/models.md "Speed
//! (CPU)"); here the convolution is im2col + one matrix product per window and the activation
//! and normalisation are two passes over the output.
//!
//! [`unit`] takes that path for `Autodiff<Flex>` (training, batch statistics, running
//! statistics updated exactly as burn's `BatchNorm` does) and `Flex` (inference, running
//! statistics) and falls back to burn's modules elsewhere (Vulkan/CUDA, a frozen BatchNorm,
//! dilation, groups, asymmetric padding). Parameters and checkpoints stay burn's. Equations:
//! docs/models.md "The fused convolution unit".

use std::fmt;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use crate::rnn_op::{contiguous, f32s, flex, gemm, In, Mat, Out};
use flowcast_serve::kernels::tanh_f;
use flowcast_serve::multiversion;

/// Activation following a convolution in a DeepLOB block (the reference uses tanh in block 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAct {
    LeakyRelu,
    Tanh,
}

/// Windows (batch items) per parallel chunk, fixed so that every sum runs in the same order
/// whatever the number of threads (bit-identical reproduction under another thread budget).
const CHUNK_ITEMS: usize = 4;

/// `bn(act(conv(x)))` for x [batch, c_in, H, W] → [batch, c_out, H', W'].
pub fn unit(conv: &Conv2d, act: ConvAct, slope: f32, bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let reference = |x: Tensor<4>| {
        let y = conv.forward(x);
        let y = match act {
            ConvAct::LeakyRelu => burn::tensor::activation::leaky_relu(y, slope as f64),
            ConvAct::Tanh => burn::tensor::activation::tanh(y),
        };
        bn.forward(y)
    };
    let Some(geo) = Geometry::of(conv, &x.dims()).filter(|_| enabled()) else {
        return reference(x);
    };
    let act = Act { tanh: act == ConvAct::Tanh, slope };
    let params = Params {
        w: conv.weight.val(),
        b: match &conv.bias {
            Some(b) => b.val(),
            None => return reference(x),
        },
        gamma: bn.gamma.val(),
        beta: bn.beta.val(),
    };
    if x.device().is_autodiff() {
        if !bn.training.is_enabled() {
            return reference(x);
        }
        let trained = train::<NoCheckpointing>(&x, &params, geo, act, bn.epsilon)
            .or_else(|| train::<BalancedCheckpointing>(&x, &params, geo, act, bn.epsilon));
        return match trained {
            Some((out, mean, var)) => {
                // burn's BatchNorm::forward_train update, on the same tensors' device.
                let device = out.device();
                let mean = Tensor::<1>::from_floats(mean.as_slice(), &device);
                let var = Tensor::<1>::from_floats(var.as_slice(), &device);
                let running_mean = bn.running_mean.value_sync().to_device(&device);
                let running_var = bn.running_var.value_sync().to_device(&device);
                let running_mean = running_mean.mul_scalar(1.0 - bn.momentum).add(mean.mul_scalar(bn.momentum));
                let running_var = running_var.mul_scalar(1.0 - bn.momentum).add(var.mul_scalar(bn.momentum));
                bn.running_mean.update(running_mean.detach());
                bn.running_var.update(running_var.detach());
                out
            }
            None => reference(x),
        };
    }
    let stats = (bn.running_mean.value(), bn.running_var.value());
    infer(&x, &params, geo, act, bn.epsilon, stats).unwrap_or_else(|| reference(x))
}

/// `FLOWCAST_FUSED_CONV=0` sends every unit through burn's modules (one binary times both).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("FLOWCAST_FUSED_CONV").map_or(true, |v| v.trim() != "0"))
}

struct Params {
    w: Tensor<4>,
    b: Tensor<1>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
}

#[derive(Clone, Copy, Debug)]
struct Act {
    tanh: bool,
    slope: f32,
}

// The three passes below keep 8 lane accumulators over chunks of exactly 8 (so they vectorise
// and sum in a fixed order, hence deterministically), then fold the tail into lane 0.

multiversion! {
    fn bias_act_sums(row: &mut [f32], b: f32, tanh: bool, slope: f32, out: &mut [f32; 2]) {
        // y = act(z + b) in place; out = [Σy, Σy²].
        let act = |z: f32| if tanh { tanh_f::<FMA>(z) } else if z >= 0.0 { z } else { z * slope };
        let (mut s1, mut s2) = ([0.0f32; 8], [0.0f32; 8]);
        let mut chunks = row.chunks_exact_mut(8);
        for c in &mut chunks {
            for l in 0..8 {
                let y = act(c[l] + b);
                c[l] = y;
                s1[l] += y;
                s2[l] += y * y;
            }
        }
        for v in chunks.into_remainder() {
            let y = act(*v + b);
            *v = y;
            s1[0] += y;
            s2[0] += y * y;
        }
        *out = [s1.iter().sum(), s2.iter().sum()];
    }
}

multiversion! {
    fn bias_act_affine(row: &mut [f32], b: f32, tanh: bool, slope: f32, scale: f32, shift: f32) {
        // Inference: act(z + b)·scale + shift in place.
        let act = |z: f32| if tanh { tanh_f::<FMA>(z) } else if z >= 0.0 { z } else { z * slope };
        let mut chunks = row.chunks_exact_mut(8);
        for c in &mut chunks {
            for v in c.iter_mut() {
                *v = act(*v + b) * scale + shift;
            }
        }
        for v in chunks.into_remainder() {
            *v = act(*v + b) * scale + shift;
        }
    }
}

multiversion! {
    fn bn_grad_sums(d: &[f32], y: &[f32], m: f32, s: f32, out: &mut [f32; 2]) {
        // out = [Σ δout, Σ δout·x̂], x̂ = (y − m)·s.
        let (mut a, mut b) = ([0.0f32; 8], [0.0f32; 8]);
        let (dc, yc) = (d.chunks_exact(8), y.chunks_exact(8));
        let tail = dc.remainder().iter().zip(yc.remainder());
        for (dc, yc) in dc.zip(yc) {
            for l in 0..8 {
                a[l] += dc[l];
                b[l] += dc[l] * (yc[l] - m) * s;
            }
        }
        for (dv, yv) in tail {
            a[0] += dv;
            b[0] += dv * (yv - m) * s;
        }
        *out = [a.iter().sum(), b.iter().sum()];
    }
}

multiversion! {
    fn bn_act_backward(dz: &mut [f32], d: &[f32], y: &[f32], coef: &[f32; 5], tanh: bool, slope: f32, sum: &mut f32) {
        // δz = γ·s·(δout − mean δout − x̂·mean(δout·x̂))·act'(y), act' from the output:
        // tanh 1 − y², leaky 1 or the slope; `sum` = Σ δz.
        let [m, s, ga, mb, mg] = *coef;
        let f = |dv: f32, yv: f32| {
            let da = if tanh { 1.0 - yv * yv } else if yv >= 0.0 { 1.0 } else { slope };
            ga * s * (dv - mb - (yv - m) * s * mg) * da
        };
        let mut acc = [0.0f32; 8];
        let mut zc = dz.chunks_exact_mut(8);
        let (dc, yc) = (d.chunks_exact(8), y.chunks_exact(8));
        let (dt, yt) = (dc.remainder(), yc.remainder());
        for ((zc, dc), yc) in (&mut zc).zip(dc).zip(yc) {
            for l in 0..8 {
                let v = f(dc[l], yc[l]);
                zc[l] = v;
                acc[l] += v;
            }
        }
        for ((z, dv), yv) in zc.into_remainder().iter_mut().zip(dt).zip(yt) {
            let v = f(*dv, *yv);
            *z = v;
            acc[0] += v;
        }
        *sum = acc.iter().sum();
    }
}

/// Shapes of one convolution: input [b, cin, h, w], kernel [cout, cin, kh, kw], stride,
/// symmetric padding (pt rows above and below, pl columns left and right), output [ho, wo].
#[derive(Clone, Copy, Debug)]
struct Geometry {
    b: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    pt: usize,
    pl: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    fn of(conv: &Conv2d, dims: &[usize; 4]) -> Option<Self> {
        let [cout, cin, kh, kw] = conv.weight.dims();
        let [b, c, h, w] = *dims;
        if c != cin || conv.groups != 1 || conv.dilation != [1, 1] || b == 0 {
            return None;
        }
        let (pt, pl) = match conv.padding {
            PaddingConfig2d::Valid => (0, 0),
            PaddingConfig2d::Explicit(t, l, bo, r) if t == bo && l == r => (t, l),
            _ => return None,
        };
        let [sh, sw] = conv.stride;
        if h + 2 * pt < kh || w + 2 * pl < kw || sh == 0 || sw == 0 {
            return None;
        }
        let (ho, wo) = ((h + 2 * pt - kh) / sh + 1, (w + 2 * pl - kw) / sw + 1);
        Some(Geometry { b, cin, h, w, cout, kh, kw, sh, sw, pt, pl, ho, wo })
    }
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    fn p(&self) -> usize {
        self.ho * self.wo
    }
    fn item_in(&self) -> usize {
        self.cin * self.h * self.w
    }
    fn item_out(&self) -> usize {
        self.cout * self.p()
    }
    /// Without padding, when output position p = (oh, ow) reads input column
    /// off(i, j) + stride·p for every tap (i, j) — the rows line up (sh·w = sw·wo) or there is one
    /// output column — each tap is a [cout, cin]·[cin, P] product reading the input in place
    /// (all of DeepLOB's unpadded convolutions: (1,2) stride 2, (4,1), (1,L), 1×1), so no column
    /// matrix is built. Returns that stride.
    fn tap_stride(&self) -> Option<usize> {
        if self.pt != 0 || self.pl != 0 {
            None
        } else if self.sh * self.w == self.sw * self.wo {
            Some(self.sw)
        } else if self.wo == 1 {
            Some(self.sh * self.w)
        } else {
            None
        }
    }
    /// cols [K, P]: cols[(ci, i, j), (oh, ow)] = x[ci, oh·sh + i − pt, ow·sw + j − pl] (0 outside).
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let p = self.p();
        for ci in 0..self.cin {
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let k = (ci * self.kh + i) * self.kw + j;
                    let row = &mut cols[k * p..(k + 1) * p];
                    for oh in 0..self.ho {
                        let dst = &mut row[oh * self.wo..(oh + 1) * self.wo];
                        let ih = (oh * self.sh + i) as isize - self.pt as isize;
                        if ih < 0 || ih as usize >= self.h {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &x[(ci * self.h + ih as usize) * self.w..][..self.w];
                        if self.pl == 0 && self.sw == 1 {
                            // Unpadded, unit stride: a contiguous run (ow + j < w always).
                            dst.copy_from_slice(&src[j..j + self.wo]);
                        } else if self.pl == 0 {
                            // Unpadded: every column is inside (ow·sw + j < w).
                            for (ow, d) in dst.iter_mut().enumerate() {
                                *d = src[ow * self.sw + j];
                            }
                        } else {
                            for (ow, d) in dst.iter_mut().enumerate() {
                                let iw = (ow * self.sw + j) as isize - self.pl as isize;
                                *d = if iw < 0 || iw as usize >= self.w { 0.0 } else { src[iw as usize] };
                            }
                        }
                    }
                }
            }
        }
    }
    /// The adjoint of [`Self::im2col`]: dx[ci, ih, iw] += dcols[(ci, i, j), (oh, ow)].
    fn col2im(&self, dcols: &[f32], dx: &mut [f32]) {
        let p = self.p();
        dx.fill(0.0);
        for ci in 0..self.cin {
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let k = (ci * self.kh + i) * self.kw + j;
                    let row = &dcols[k * p..(k + 1) * p];
                    for oh in 0..self.ho {
                        let ih = (oh * self.sh + i) as isize - self.pt as isize;
                        if ih < 0 || ih as usize >= self.h {
                            continue;
                        }
                        let dst = &mut dx[(ci * self.h + ih as usize) * self.w..][..self.w];
                        for (ow, v) in row[oh * self.wo..(oh + 1) * self.wo].iter().enumerate() {
                            let iw = (ow * self.sw + j) as isize - self.pl as isize;
                            if iw >= 0 && (iw as usize) < self.w {
                                dst[iw as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }
    /// z = W·cols for one window: [cout, P] (bias and activation left to the caller).
    fn conv(&self, x: &[f32], w: &[f32], cols: &mut Vec<f32>, y: &mut [f32]) {
        let (k, p) = (self.k(), self.p());
        if let Some(st) = self.tap_stride() {
            // W[co, ci, i, j] at co·K + ci·kh·kw + i·kw + j; x[ci, i·w + j + st·p].
            let (taps, hw) = (self.kh * self.kw, self.h * self.w);
            for tap in 0..taps {
                let off = (tap / self.kw) * self.w + tap % self.kw;
                let m = Mat { m: self.cout, n: p, k: self.cin };
                gemm(m, Out(y, p, 1, tap > 0), In(&w[tap..], k, taps), In(&x[off..], hw, st));
            }
        } else if self.w == 1 && self.kw == 1 && self.pl == 0 && self.sh == 1 {
            // A (k×1) 'same' convolution over one column (DeepLOB's inception branches): tap i
            // adds W_i·x[·, oh + i − pt] to the outputs whose input row is inside, reading the
            // input in place (y starts zeroed).
            y.fill(0.0);
            for tap in 0..self.kh {
                let lo = self.pt.saturating_sub(tap);
                let hi = p.min((self.h + self.pt).saturating_sub(tap));
                if lo < hi {
                    let m = Mat { m: self.cout, n: hi - lo, k: self.cin };
                    gemm(m, Out(&mut y[lo..], p, 1, true), In(&w[tap..], k, self.kh), In(&x[lo + tap - self.pt..], self.h, 1));
                }
            }
        } else {
            cols.resize(k * p, 0.0);
            self.im2col(x, cols);
            gemm(Mat { m: self.cout, n: p, k }, Out(y, p, 1, false), In(w, k, 1), In(cols, p, 1));
        }
    }
    /// y = act(W·cols + b) for one window: [cout, P]; adds Σy, Σy² per channel to `stats`
    /// ([cout, 2]).
    #[allow(clippy::too_many_arguments)]
    fn conv_act(&self, x: &[f32], w: &[f32], bias: &[f32], act: Act, cols: &mut Vec<f32>, y: &mut [f32], stats: &mut [f64]) {
        self.conv(x, w, cols, y);
        for ((row, b), st) in y.chunks_exact_mut(self.p()).zip(bias).zip(stats.chunks_exact_mut(2)) {
            let mut out = [0.0f32; 2];
            bias_act_sums(row, *b, act.tanh, act.slope, &mut out);
            st[0] += out[0] as f64;
            st[1] += out[1] as f64;
        }
    }
}

/// The forward of every window in fixed chunks: y = act(conv(x)) [b, cout, P] and, per chunk,
/// Σy and Σy² per channel (f64).
fn forward_conv(g: Geometry, x: &[f32], w: &[f32], bias: &[f32], act: Act) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
    #[cfg(test)]
    FUSED_RUNS.with(|n| n.set(n.get() + 1));
    let cout = g.cout;
    let mut y = vec![0.0f32; g.b * g.item_out()];
    let shares: Vec<(Vec<f64>, Vec<f64>)> = y
        .par_chunks_mut(CHUNK_ITEMS * g.item_out())
        .zip(x.par_chunks(CHUNK_ITEMS * g.item_in()))
        .map(|(y, x)| {
            let mut cols = Vec::new();
            let mut stats = vec![0.0f64; 2 * cout];
            for (y, x) in y.chunks_exact_mut(g.item_out()).zip(x.chunks_exact(g.item_in())) {
                g.conv_act(x, w, bias, act, &mut cols, y, &mut stats);
            }
            (stats.iter().step_by(2).copied().collect(), stats.iter().skip(1).step_by(2).copied().collect())
        })
        .collect();
    let (mut s1, mut s2) = (vec![0.0f64; cout], vec![0.0f64; cout]);
    for (a, b) in shares {
        for c in 0..cout {
            s1[c] += a[c];
            s2[c] += b[c];
        }
    }
    (y, s1, s2)
}

#[cfg(test)]
thread_local! {
    /// Fused forward passes run on this thread (tests check the fused path was taken).
    static FUSED_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// out = (y − mean)·inv_std·γ + β per channel.
fn normalise(g: Geometry, y: &[f32], mean: &[f32], inv_std: &[f32], gamma: &[f32], beta: &[f32]) -> Vec<f32> {
    let p = g.p();
    let mut out = vec![0.0f32; y.len()];
    out.par_chunks_mut(g.item_out()).zip(y.par_chunks(g.item_out())).for_each(|(o, y)| {
        for (c, (o, y)) in o.chunks_exact_mut(p).zip(y.chunks_exact(p)).enumerate() {
            let (m, s, ga, be) = (mean[c], inv_std[c], gamma[c], beta[c]);
            for (o, y) in o.iter_mut().zip(y) {
                *o = (y - m) * s * ga + be;
            }
        }
    });
    out
}

type Inputs = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, FlexTensor);

fn f32_inputs(ts: Inputs) -> Option<Inputs> {
    let (x, w, b, ga, be) = ts;
    if [&x, &w, &b, &ga, &be].iter().any(|t| t.dtype() != DType::F32) {
        return None;
    }
    Some((contiguous(x), contiguous(w), contiguous(b), contiguous(ga), contiguous(be)))
}

/// Training: batch statistics; returns the output and the batch mean and (biased) variance
/// for the running statistics, as burn's `batch_norm_train` does.
fn train<K>(x: &Tensor<4>, p: &Params, g: Geometry, act: Act, eps: f64) -> Option<(Tensor<4>, Vec<f32>, Vec<f32>)>
where
    K: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, K>>,
{
    let x = x.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    let w = p.w.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    let b = p.b.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    let ga = p.gamma.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    let be = p.beta.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    let (x, gx) = x.into_parts();
    let (w, gw) = w.into_parts();
    let (b, gb) = b.into_parts();
    let (ga, gga) = ga.into_parts();
    let (be, gbe) = be.into_parts();
    let (x, w, b, ga, be) = f32_inputs((x, w, b, ga, be))?;
    let (y, s1, s2) = forward_conv(g, f32s(&x), f32s(&w), f32s(&b), act);
    let n = (g.b * g.p()) as f64;
    let mean: Vec<f32> = s1.iter().map(|s| (s / n) as f32).collect();
    let var: Vec<f32> = s1.iter().zip(&s2).map(|(s1, s2)| ((s2 / n) - (s1 / n) * (s1 / n)).max(0.0) as f32).collect();
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps as f32).sqrt()).collect();
    let shape = [g.b, g.cout, g.ho, g.wo];
    let out = match UnitBackward.prepare::<K>([gx, gw, gb, gga, gbe]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let out = normalise(g, &y, &mean, &inv_std, f32s(&ga), f32s(&be));
            let tape = Tape { g, act, x, w, gamma: ga, y, mean: mean.clone(), inv_std };
            prep.finish(Arc::new(tape), flex(out, shape))
        }
        OpsKind::UnTracked(prep) => prep.finish(flex(normalise(g, &y, &mean, &inv_std, f32s(&ga), f32s(&be)), shape)),
    };
    Some((Tensor::from_primitive::<Autodiff<Flex, K>>(out), mean, var))
}

/// Inference: the running statistics, as burn's `batch_norm`.
fn infer(x: &Tensor<4>, p: &Params, g: Geometry, act: Act, eps: f64, stats: (Tensor<1>, Tensor<1>)) -> Option<Tensor<4>> {
    let prim = |t: Tensor<1>| t.try_into_primitive::<Flex>().ok();
    let (x, w, b, ga, be) = f32_inputs((
        x.clone().try_into_primitive::<Flex>().ok()?,
        p.w.clone().try_into_primitive::<Flex>().ok()?,
        prim(p.b.clone())?,
        prim(p.gamma.clone())?,
        prim(p.beta.clone())?,
    ))?;
    let (rm, rv) = (contiguous(prim(stats.0)?), contiguous(prim(stats.1)?));
    if rm.dtype() != DType::F32 || rv.dtype() != DType::F32 {
        return None;
    }
    #[cfg(test)]
    FUSED_RUNS.with(|n| n.set(n.get() + 1));
    // BatchNorm at inference folded into one scale and shift per channel:
    // (y − mean)·γ/√(var + ε) + β = y·scale + shift.
    let scale: Vec<f32> = f32s(&rv).iter().zip(f32s(&ga)).map(|(v, g)| g / (v + eps as f32).sqrt()).collect();
    let shift: Vec<f32> = f32s(&be).iter().zip(f32s(&rm)).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    let (xs, ws, bs) = (f32s(&x), f32s(&w), f32s(&b));
    let p = g.p();
    let mut y = vec![0.0f32; g.b * g.item_out()];
    y.par_chunks_mut(CHUNK_ITEMS * g.item_out()).zip(xs.par_chunks(CHUNK_ITEMS * g.item_in())).for_each(|(y, x)| {
        let mut cols = Vec::new();
        for (y, x) in y.chunks_exact_mut(g.item_out()).zip(x.chunks_exact(g.item_in())) {
            g.conv(x, ws, &mut cols, y);
            for (c, row) in y.chunks_exact_mut(p).enumerate() {
                bias_act_affine(row, bs[c], act.tanh, act.slope, scale[c], shift[c]);
            }
        }
    });
    Some(Tensor::from_primitive::<Flex>(flex(y, [g.b, g.cout, g.ho, g.wo])))
}

/// What the backward pass reads.
struct Tape {
    g: Geometry,
    act: Act,
    x: FlexTensor,
    w: FlexTensor,
    gamma: FlexTensor,
    /// act(conv(x)) before normalisation, [b, cout, P].
    y: Vec<f32>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl fmt::Debug for Tape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConvUnitTape({:?})", self.g)
    }
}

#[derive(Debug)]
struct UnitBackward;

impl Backward<Flex, 5> for UnitBackward {
    type State = Arc<Tape>;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [px, pw, pb, pga, pbe] = ops.parents;
        let t = ops.state;
        let g = t.g;
        let dout = contiguous(grads.consume::<Flex>(&ops.node));
        let r = unit_backward(&t, f32s(&dout), px.is_some());
        if let (Some(node), Some(dx)) = (px, r.dx) {
            grads.register::<Flex>(node.id, flex(dx, [g.b, g.cin, g.h, g.w]));
        }
        if let Some(node) = pw {
            grads.register::<Flex>(node.id, flex(r.dw, [g.cout, g.cin, g.kh, g.kw]));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, flex(r.db, [g.cout]));
        }
        if let Some(node) = pga {
            grads.register::<Flex>(node.id, flex(r.dgamma, [g.cout]));
        }
        if let Some(node) = pbe {
            grads.register::<Flex>(node.id, flex(r.dbeta, [g.cout]));
        }
    }
}

struct UnitGrads {
    dx: Option<Vec<f32>>,
    dw: Vec<f32>,
    db: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
}

/// With x̂ = (y − μ)·s, N = b·P per channel:
/// ∂L/∂β = Σ δout, ∂L/∂γ = Σ δout·x̂, δy = γ·s·(δout − ∂L/∂β/N − x̂·∂L/∂γ/N), δz = δy·act'(y);
/// ∂L/∂b = Σ δz, ∂L/∂W = Σ_windows δz·colsᵀ, ∂L/∂cols = Wᵀ·δz folded back by col2im.
fn unit_backward(t: &Tape, dout: &[f32], need_dx: bool) -> UnitGrads {
    let g = t.g;
    let (cout, p, k) = (g.cout, g.p(), g.k());
    let (x, w, gamma) = (f32s(&t.x), f32s(&t.w), f32s(&t.gamma));
    let (mean, inv_std) = (&t.mean, &t.inv_std);
    let chunk_out = CHUNK_ITEMS * g.item_out();
    // Pass 1: Σ δout and Σ δout·x̂ per channel, per chunk, added in chunk order.
    let sums: Vec<(Vec<f64>, Vec<f64>)> = dout
        .par_chunks(chunk_out)
        .zip(t.y.par_chunks(chunk_out))
        .map(|(d, y)| {
            let (mut sb, mut sg) = (vec![0.0f64; cout], vec![0.0f64; cout]);
            for (d, y) in d.chunks_exact(g.item_out()).zip(y.chunks_exact(g.item_out())) {
                for c in 0..cout {
                    let mut out = [0.0f32; 2];
                    bn_grad_sums(&d[c * p..(c + 1) * p], &y[c * p..(c + 1) * p], mean[c], inv_std[c], &mut out);
                    sb[c] += out[0] as f64;
                    sg[c] += out[1] as f64;
                }
            }
            (sb, sg)
        })
        .collect();
    let (mut dbeta, mut dgamma) = (vec![0.0f64; cout], vec![0.0f64; cout]);
    for (a, b) in sums {
        for c in 0..cout {
            dbeta[c] += a[c];
            dgamma[c] += b[c];
        }
    }
    let n = (g.b * p) as f64;
    let mb: Vec<f32> = dbeta.iter().map(|v| (v / n) as f32).collect();
    let mg: Vec<f32> = dgamma.iter().map(|v| (v / n) as f32).collect();
    // Pass 2: δz per window, then its shares of ∂L/∂W and ∂L/∂b, and ∂L/∂x.
    let mut dx = if need_dx { vec![0.0f32; g.b * g.item_in()] } else { Vec::new() };
    let n_chunks = g.b.div_ceil(CHUNK_ITEMS);
    let dx_chunks: Vec<Option<&mut [f32]>> =
        if need_dx { dx.chunks_mut(CHUNK_ITEMS * g.item_in()).map(Some).collect() } else { (0..n_chunks).map(|_| None).collect() };
    let shares: Vec<(Vec<f32>, Vec<f32>)> =
        (dx_chunks, dout.par_chunks(chunk_out), t.y.par_chunks(chunk_out), x.par_chunks(CHUNK_ITEMS * g.item_in()))
            .into_par_iter()
            .map(|(mut dx, d, y, x)| {
                let (mut dw, mut db) = (vec![0.0f32; cout * k], vec![0.0f32; cout]);
                let mut dz = vec![0.0f32; g.item_out()];
                let mut cols = Vec::new();
                let mut dcols = vec![0.0f32; if g.tap_stride().is_some() { 0 } else { k * p }];
                for (i, ((d, y), x)) in
                    d.chunks_exact(g.item_out()).zip(y.chunks_exact(g.item_out())).zip(x.chunks_exact(g.item_in())).enumerate()
                {
                    for c in 0..cout {
                        let coef = [mean[c], inv_std[c], gamma[c], mb[c], mg[c]];
                        let mut sum = 0.0f32;
                        let (dzc, dc, yc) = (&mut dz[c * p..(c + 1) * p], &d[c * p..(c + 1) * p], &y[c * p..(c + 1) * p]);
                        bn_act_backward(dzc, dc, yc, &coef, t.act.tanh, t.act.slope, &mut sum);
                        db[c] += sum;
                    }
                    if let Some(st) = g.tap_stride() {
                        let (hw, taps) = (g.h * g.w, g.kh * g.kw);
                        let off = |tap: usize| (tap / g.kw) * g.w + tap % g.kw;
                        // Per tap: ∂L/∂W[:, :, i, j] += δz · x_tapᵀ, ∂L/∂x_tap += W_tapᵀ · δz.
                        for tap in 0..taps {
                            let m = Mat { m: cout, n: g.cin, k: p };
                            gemm(m, Out(&mut dw[tap..], k, taps, true), In(&dz, p, 1), In(&x[off(tap)..], st, hw));
                        }
                        if let Some(dx) = dx.as_deref_mut() {
                            let dxi = &mut dx[i * g.item_in()..(i + 1) * g.item_in()];
                            dxi.fill(0.0);
                            for tap in 0..taps {
                                let m = Mat { m: g.cin, n: p, k: cout };
                                gemm(m, Out(&mut dxi[off(tap)..], hw, st, true), In(&w[tap..], taps, k), In(&dz, p, 1));
                            }
                        }
                        continue;
                    }
                    cols.resize(k * p, 0.0);
                    g.im2col(x, &mut cols);
                    // ∂L/∂W += δz [cout, P] · colsᵀ [P, K] (colsᵀ through strides).
                    gemm(Mat { m: cout, n: k, k: p }, Out(&mut dw, k, 1, true), In(&dz, p, 1), In(&cols, 1, p));
                    if let Some(dx) = dx.as_deref_mut() {
                        let dxi = &mut dx[i * g.item_in()..(i + 1) * g.item_in()];
                        // ∂L/∂cols = Wᵀ [K, cout] · δz [cout, P].
                        gemm(Mat { m: k, n: p, k: cout }, Out(&mut dcols, p, 1, false), In(w, 1, k), In(&dz, p, 1));
                        g.col2im(&dcols, dxi);
                    }
                }
                (dw, db)
            })
            .collect();
    let mut shares = shares.into_iter();
    let (mut dw, mut db) = shares.next().expect("a batch has at least one window");
    for (w2, b2) in shares {
        for (a, v) in dw.iter_mut().zip(&w2) {
            *a += v;
        }
        for (a, v) in db.iter_mut().zip(&b2) {
            *a += v;
        }
    }
    UnitGrads {
        dx: need_dx.then_some(dx),
        dw,
        db,
        dgamma: dgamma.iter().map(|v| *v as f32).collect(),
        dbeta: dbeta.iter().map(|v| *v as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::BatchNormConfig;

    /// A fixed input (tests run concurrently and share the device's random generator).
    fn input(shape: [usize; 4], device: &Device) -> Tensor<4> {
        let n: usize = shape.iter().product();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 3.0 - 1.0
            })
            .collect();
        Tensor::<1>::from_floats(v.as_slice(), device).reshape(shape)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Norm-wise: max |Δ| / (1 + max |ref|). A weight gradient sums B·P products through the
    /// BatchNorm's cancelling terms, so its elementwise error scales with the largest entry, not
    /// with each entry (f32 summation in a different order).
    fn close(a: Vec<f32>, b: Vec<f32>, tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = 1.0 + b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale;
        assert!(d <= tol, "{what}: max |Δ|/(1+max |ref|) = {d} > {tol}");
        assert!(b.iter().any(|v| *v != 0.0), "{what}: the reference is all zeros");
    }

    /// c_in, c_out, H, W, kernel, stride, padding rows, activation.
    type Case = (usize, usize, usize, usize, [usize; 2], [usize; 2], usize, ConvAct);

    /// Every DeepLOB unit shape (strided (1,2), (4,1), (1,L), 1×1, 'same' (3,1) and (5,1)) and two more,
    /// both activations: the fused unit against burn's Conv2d → activation → BatchNorm, on
    /// outputs, the input gradient, all four parameter gradients and the running statistics
    /// after the step; then inference with those statistics.
    #[test]
    fn fused_unit_matches_burns_modules_and_all_their_gradients() {
        let ad = Device::flex().autodiff();
        ad.seed(21);
        // (1,2)/2, (4,1), (1,5) on width 5 and 1×1 read the input in place (tap products), and so
        // do the padded (k×1) over one column (one with the kernel taller than the input); the
        // (2,3) and row-strided ones build columns.
        let cases: [Case; 9] = [
            (1, 3, 9, 8, [1, 2], [1, 2], 0, ConvAct::LeakyRelu),
            (3, 4, 9, 4, [4, 1], [1, 1], 0, ConvAct::Tanh),
            (3, 4, 7, 5, [1, 5], [1, 1], 0, ConvAct::LeakyRelu),
            (4, 6, 8, 1, [1, 1], [1, 1], 0, ConvAct::LeakyRelu),
            (4, 5, 8, 1, [3, 1], [1, 1], 1, ConvAct::LeakyRelu),
            (3, 5, 9, 1, [5, 1], [1, 1], 2, ConvAct::Tanh),
            (2, 3, 3, 1, [5, 1], [1, 1], 2, ConvAct::LeakyRelu),
            (2, 3, 6, 7, [2, 3], [1, 1], 0, ConvAct::Tanh),
            (2, 3, 9, 3, [3, 1], [2, 1], 0, ConvAct::LeakyRelu),
        ];
        for (cin, cout, h, w, kernel, stride, pad, act) in cases {
            let at = format!("cin {cin} cout {cout} {h}x{w} kernel {kernel:?} stride {stride:?} pad {pad} {act:?}");
            let padding = if pad == 0 { PaddingConfig2d::Valid } else { PaddingConfig2d::Explicit(pad, 0, pad, 0) };
            let conv = Conv2dConfig::new([cin, cout], kernel).with_stride(stride).with_padding(padding).init(&ad);
            let batch = 6; // two chunks, one partial
            let x0 = input([batch, cin, h, w], &ad);
            let run = |fused: bool| {
                let bn = BatchNormConfig::new(cout).init(&ad);
                let x = x0.clone().detach().require_grad();
                let y = if fused {
                    unit(&conv, act, 0.01, &bn, x.clone())
                } else {
                    let z = conv.forward(x.clone());
                    let z = match act {
                        ConvAct::LeakyRelu => burn::tensor::activation::leaky_relu(z, 0.01),
                        ConvAct::Tanh => burn::tensor::activation::tanh(z),
                    };
                    bn.forward(z)
                };
                // A fixed, position-dependent weighting so every gradient is non-trivial.
                let n = y.dims().iter().product::<usize>();
                let weights: Vec<f32> = (0..n).map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0).collect();
                let weights = Tensor::<1>::from_floats(weights.as_slice(), &ad).reshape(y.dims());
                let grads = (y.clone() * weights).sum().backward();
                let mut all = vec![
                    ("outputs", values(y.inner())),
                    ("input gradient", values(x.grad(&grads).unwrap())),
                    ("weight gradient", values(conv.weight.val().grad(&grads).unwrap())),
                    ("bias gradient", values(conv.bias.as_ref().unwrap().val().grad(&grads).unwrap())),
                    ("gamma gradient", values(bn.gamma.val().grad(&grads).unwrap())),
                    ("beta gradient", values(bn.beta.val().grad(&grads).unwrap())),
                    ("running mean", values(bn.running_mean.value_sync())),
                    ("running var", values(bn.running_var.value_sync())),
                ];
                // Inference with the updated running statistics, through the same path.
                let (conv_i, bn_i) = (conv.valid(), bn.valid());
                let xi = x0.clone().inner();
                let yi = if fused {
                    unit(&conv_i, act, 0.01, &bn_i, xi)
                } else {
                    let z = conv_i.forward(xi);
                    let z = match act {
                        ConvAct::LeakyRelu => burn::tensor::activation::leaky_relu(z, 0.01),
                        ConvAct::Tanh => burn::tensor::activation::tanh(z),
                    };
                    bn_i.forward(z)
                };
                all.push(("inference outputs", values(yi)));
                all
            };
            let runs = || FUSED_RUNS.with(|n| n.get());
            let before = runs();
            let reference = run(false);
            assert_eq!(runs(), before, "{at}: burn's modules ran the fused op");
            let fused = run(true);
            assert_eq!(runs(), before + 2, "{at}: the fused op was not taken for training and inference");
            for ((what, r), (_, f)) in reference.into_iter().zip(fused) {
                close(f, r, 1e-5, &format!("{at}: {what}"));
            }
        }
    }

    /// Outputs and gradients are bit-identical under 1, 2 and 3 rayon threads.
    #[test]
    fn fused_unit_is_bit_identical_under_any_thread_count() {
        let ad = Device::flex().autodiff();
        ad.seed(4);
        let conv = Conv2dConfig::new([3, 5], [4, 1]).init(&ad);
        let x0 = input([11, 3, 12, 3], &ad);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let bn = BatchNormConfig::new(5).init(&ad);
                let x = x0.clone().detach().require_grad();
                let y = unit(&conv, ConvAct::Tanh, 0.01, &bn, x.clone());
                let grads = (y.clone() * y.clone()).sum().backward();
                [
                    values(y.inner()),
                    values(x.grad(&grads).unwrap()),
                    values(conv.weight.val().grad(&grads).unwrap()),
                    values(bn.gamma.val().grad(&grads).unwrap()),
                    values(bn.running_var.value_sync()),
                ]
                .map(|v| v.into_iter().map(f32::to_bits).collect::<Vec<_>>())
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{threads} threads differ from 1");
        }
    }
}

//! Masked softmax over the last axis as one operation on the CPU backend, with a hand-written
//! backward pass. burn's path (`mask_fill` with −1e4, then `softmax`) ran every score through
//! scalar libm `expf`, and the masked ones through its underflow handler: ≈ 25 % of a transformer
//! training step (perf, docs/models.md "Speed (CPU)"). Masked entries are exactly 0 there (their
//! exponential underflows) and here (skipped); their gradient is 0 in both.
//!
//! y_j = e^{x_j − m} / Σ_{k unmasked} e^{x_k − m} over unmasked j (m their maximum), 0 elsewhere;
//! ∂L/∂x = y ⊙ (∂L/∂y − Σ_j y_j ∂L/∂y_j). Exponentials: flowcast-serve's 2-ulp `expf`.

use std::fmt;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex, TensorMetadata};
use burn::prelude::*;
use burn::tensor::DType;
use flowcast_serve::kernels::exp_f;
use flowcast_serve::multiversion;
use rayon::prelude::*;

use crate::rnn_op::{contiguous, f32s, flex};

/// Rows per parallel chunk (rows are independent; fixed so nothing depends on the thread count).
const CHUNK_ROWS: usize = 64;

/// `softmax(scores.mask_fill(mask, −∞), 3)` for scores [b, h, t, s] and mask [b, t, s] (true =
/// masked, broadcast over heads, at least one unmasked entry per row); `None` where the fused
/// path does not apply (another backend), for the caller to take burn's ops.
pub fn masked_softmax(scores: &Tensor<4>, mask: &Tensor<3, Bool>) -> Option<Tensor<4>> {
    let [b, h, t, s] = scores.dims();
    if mask.dims() != [b, t, s] || s == 0 {
        return None;
    }
    let keep = || -> Option<Vec<bool>> {
        let m = mask.clone().into_data().convert::<bool>();
        let m = m.as_slice::<bool>().ok()?;
        Some(m.iter().map(|v| !v).collect())
    };
    let shape = Shape { b, h, t, s };
    if let Some(y) = train::<NoCheckpointing>(scores, shape, &keep).or_else(|| train::<BalancedCheckpointing>(scores, shape, &keep)) {
        return Some(y);
    }
    let x = contiguous(scores.clone().try_into_primitive::<Flex>().ok()?);
    if x.dtype() != DType::F32 {
        return None;
    }
    let y = forward(shape, f32s(&x), &keep()?)?;
    Some(Tensor::from_primitive::<Flex>(flex(y, [b, h, t, s])))
}

#[derive(Clone, Copy, Debug)]
struct Shape {
    b: usize,
    h: usize,
    t: usize,
    s: usize,
}

fn train<K>(scores: &Tensor<4>, sh: Shape, keep: &dyn Fn() -> Option<Vec<bool>>) -> Option<Tensor<4>>
where
    K: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, K>>,
{
    let x = scores.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    if x.primitive().dtype() != DType::F32 {
        return None;
    }
    let (x, node) = x.into_parts();
    let x = contiguous(x);
    let y = forward(sh, f32s(&x), &keep()?)?;
    let dims = [sh.b, sh.h, sh.t, sh.s];
    let out = match SoftmaxBackward.prepare::<K>([node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let tape = Tape { y: y.clone(), s: sh.s };
            prep.finish(Arc::new(tape), flex(y, dims))
        }
        OpsKind::UnTracked(prep) => prep.finish(flex(y, dims)),
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, K>>(out))
}

/// Every row's masked softmax; `None` if a row has no unmasked entry (burn's path then gives
/// its uniform row).
fn forward(sh: Shape, x: &[f32], keep: &[bool]) -> Option<Vec<f32>> {
    let (t, s) = (sh.t, sh.s);
    let row_keep = |r: usize| {
        let (bi, ti) = (r / (sh.h * t), r % t);
        &keep[(bi * t + ti) * s..(bi * t + ti + 1) * s]
    };
    let rows = sh.b * sh.h * t;
    if (0..sh.b * t).any(|r| !keep[r * s..(r + 1) * s].iter().any(|k| *k)) {
        return None;
    }
    let mut y = vec![0.0f32; rows * s];
    y.par_chunks_mut(CHUNK_ROWS * s).zip(x.par_chunks(CHUNK_ROWS * s)).enumerate().for_each(|(c, (y, x))| {
        for (i, (y, x)) in y.chunks_exact_mut(s).zip(x.chunks_exact(s)).enumerate() {
            softmax_row(x, row_keep(c * CHUNK_ROWS + i), y);
        }
    });
    Some(y)
}

multiversion! {
    fn softmax_row(x: &[f32], keep: &[bool], y: &mut [f32]) {
        // Branch-free passes with 8 lanes (they vectorise): the maximum over kept entries, then
        // e^{x − m} selected by the mask (a masked e^{x − m} may saturate; it is discarded), then
        // the sum and the scaling.
        let n = y.len();
        let (x, keep) = (&x[..n], &keep[..n]);
        let mut mx = [f32::NEG_INFINITY; 8];
        let (xc, kc) = (x.chunks_exact(8), keep.chunks_exact(8));
        let tail = xc.remainder().iter().zip(kc.remainder());
        for (xc, kc) in xc.zip(kc) {
            for l in 0..8 {
                let v = if kc[l] { xc[l] } else { f32::NEG_INFINITY };
                mx[l] = if v > mx[l] { v } else { mx[l] };
            }
        }
        for (v, k) in tail {
            if *k && *v > mx[0] {
                mx[0] = *v;
            }
        }
        let m = mx.iter().fold(f32::NEG_INFINITY, |a, b| if *b > a { *b } else { a });
        let mut acc = [0.0f32; 8];
        let mut yc = y.chunks_exact_mut(8);
        let (xc, kc) = (x.chunks_exact(8), keep.chunks_exact(8));
        let (xt, kt) = (xc.remainder(), kc.remainder());
        for ((yc, xc), kc) in (&mut yc).zip(xc).zip(kc) {
            for l in 0..8 {
                let e = exp_f::<FMA>(xc[l] - m);
                let e = if kc[l] { e } else { 0.0 };
                yc[l] = e;
                acc[l] += e;
            }
        }
        for ((y, x), k) in yc.into_remainder().iter_mut().zip(xt).zip(kt) {
            let e = if *k { exp_f::<FMA>(x - m) } else { 0.0 };
            *y = e;
            acc[0] += e;
        }
        let inv = 1.0 / acc.iter().sum::<f32>();
        for v in y.iter_mut() {
            *v *= inv;
        }
    }
}

multiversion! {
    fn softmax_row_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let n = dx.len();
        let (y, dy) = (&y[..n], &dy[..n]);
        let mut dot = 0.0f32;
        for j in 0..n {
            dot += y[j] * dy[j];
        }
        for j in 0..n {
            dx[j] = y[j] * (dy[j] - dot);
        }
    }
}

struct Tape {
    y: Vec<f32>,
    s: usize,
}

impl fmt::Debug for Tape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SoftmaxTape({} rows)", self.y.len() / self.s.max(1))
    }
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = Arc<Tape>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let t = ops.state;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let Some(node) = parent else { return };
        let shape = dy.shape().clone();
        let s = t.s;
        let mut dx = vec![0.0f32; t.y.len()];
        dx.par_chunks_mut(CHUNK_ROWS * s).zip(t.y.par_chunks(CHUNK_ROWS * s)).zip(f32s(&dy).par_chunks(CHUNK_ROWS * s)).for_each(
            |((dx, y), dy)| {
                for ((dx, y), dy) in dx.chunks_exact_mut(s).zip(y.chunks_exact(s)).zip(dy.chunks_exact(s)) {
                    softmax_row_backward(y, dy, dx);
                }
            },
        );
        let dims: [usize; 4] = [shape[0], shape[1], shape[2], shape[3]];
        grads.register::<Flex>(node.id, flex(dx, dims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::attention::generate_autoregressive_mask;
    use burn::tensor::activation::softmax;
    use burn::tensor::Distribution;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn max_diff(a: Vec<f32>, b: Vec<f32>) -> f32 {
        assert_eq!(a.len(), b.len());
        assert!(b.iter().any(|v| *v != 0.0), "the reference is all zeros");
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// Against burn's mask_fill(−1e4) + softmax, causal and random masks: outputs (masked
    /// entries exactly 0) and the input gradient, in training and at inference.
    #[test]
    fn masked_softmax_matches_burns_ops_and_gradient() {
        let ad = Device::flex().autodiff();
        let (b, h, t) = (3, 2, 9);
        let causal = generate_autoregressive_mask(b, t, &ad);
        // Random mask with the diagonal kept (each row keeps at least one entry).
        let bits: Vec<bool> = (0..b * t * t).map(|i| (i * 2_654_435_761usize) % 7 < 3 && (i % t) != (i / t) % t).collect();
        let random = Tensor::<3, Bool>::from_data(TensorData::new(bits, [b, t, t]), &ad);
        for (name, mask) in [("causal", causal), ("random", random)] {
            let x0 = Tensor::<4>::random([b, h, t, t], Distribution::Normal(0.0, 3.0), &ad);
            let w = Tensor::<4>::random([b, h, t, t], Distribution::Normal(0.0, 1.0), &ad);
            let run = |fused: bool| {
                let x = x0.clone().detach().require_grad();
                let y = if fused {
                    masked_softmax(&x, &mask).expect("the fused path")
                } else {
                    let [mb, s1, s2] = mask.dims();
                    softmax(x.clone().mask_fill(mask.clone().reshape([mb, 1, s1, s2]), -1.0e4), 3)
                };
                let g = (y.clone() * w.clone()).sum().backward();
                (values(y.inner()), values(x.grad(&g).unwrap()))
            };
            let ((y0, g0), (y1, g1)) = (run(false), run(true));
            let masked: Vec<bool> = values(mask.clone().float().unsqueeze_dim::<4>(1).repeat_dim(1, h)).iter().map(|v| *v != 0.0).collect();
            assert!(masked.iter().zip(&y1).all(|(m, y)| !m || *y == 0.0), "{name}: masked entries are 0");
            assert!(max_diff(y1, y0) <= 1e-6, "{name}: outputs");
            assert!(max_diff(g1, g0) <= 1e-6, "{name}: input gradient");
        }
        let dev = Device::flex();
        let x = Tensor::<4>::random([b, h, t, t], Distribution::Normal(0.0, 3.0), &dev);
        let mask = generate_autoregressive_mask(b, t, &dev);
        let burns = softmax(x.clone().mask_fill(mask.clone().reshape([b, 1, t, t]), -1.0e4), 3);
        assert!(max_diff(values(masked_softmax(&x, &mask).unwrap()), values(burns)) <= 1e-6, "inference");
    }
}

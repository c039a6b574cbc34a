//! GELU (the exact, erf form burn's `Gelu` computes) as one operation on the CPU backend, with a
//! hand-written backward pass. burn's `gelu` is several element-wise ops, each a fresh tensor and
//! an autodiff record, through scalar libm `erff` (≈ 4 % of a transformer training step, perf:
//! docs/models.md "Speed (CPU)").
//!
//! y = x·Φ(x), Φ(x) = ½(1 + erf(x/√2)); ∂L/∂x = ∂L/∂y · (Φ(x) + x·φ(x)), φ(x) = e^{−x²/2}/√(2π).
//! erf and exp: flowcast-serve's kernels (Abramowitz & Stegun 7.1.26, ≤ 6e-7 absolute; 2-ulp
//! `expf`), vectorised.

use std::fmt;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex, TensorMetadata};
use burn::prelude::*;
use burn::tensor::DType;
use flowcast_serve::kernels::{erf_f, exp_f};
use flowcast_serve::multiversion;
use rayon::prelude::*;

use crate::rnn_op::{contiguous, f32s, flex};

/// Values per parallel chunk (element-wise, so only for load balance; fixed all the same).
const CHUNK: usize = 1 << 14;

/// `gelu(x)` through the fused operation on the CPU backend; `None` elsewhere (another backend,
/// another dtype), for the caller to take burn's `gelu`.
pub fn gelu<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    if let Some(y) = train::<D, NoCheckpointing>(x).or_else(|| train::<D, BalancedCheckpointing>(x)) {
        return Some(y);
    }
    let p = contiguous(x.clone().try_into_primitive::<Flex>().ok()?);
    if p.dtype() != DType::F32 {
        return None;
    }
    Some(Tensor::from_primitive::<Flex>(flex(forward(f32s(&p)), x.dims())))
}

fn train<const D: usize, K>(x: &Tensor<D>) -> Option<Tensor<D>>
where
    K: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, K>>,
{
    let t = x.clone().try_into_primitive::<Autodiff<Flex, K>>().ok()?;
    if t.primitive().dtype() != DType::F32 {
        return None;
    }
    let (p, node) = t.into_parts();
    let p = contiguous(p);
    let y = flex(forward(f32s(&p)), x.dims());
    let out = match GeluBackward.prepare::<K>([node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(Arc::new(Tape(p)), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, K>>(out))
}

fn forward(x: &[f32]) -> Vec<f32> {
    #[cfg(test)]
    FUSED_RUNS.with(|n| n.set(n.get() + 1));
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| gelu_forward(x, y));
    y
}

#[cfg(test)]
thread_local! {
    /// Fused forward passes run on this thread (the test checks the fused path was taken).
    static FUSED_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

multiversion! {
    fn gelu_forward(x: &[f32], y: &mut [f32]) {
        let y = &mut y[..x.len()];
        let mut yc = y.chunks_exact_mut(8);
        let xc = x.chunks_exact(8);
        let xt = xc.remainder();
        let f = |v: f32| 0.5 * v * (1.0 + erf_f::<FMA>(v * std::f32::consts::FRAC_1_SQRT_2));
        for (yc, xc) in (&mut yc).zip(xc) {
            for l in 0..8 {
                yc[l] = f(xc[l]);
            }
        }
        for (y, x) in yc.into_remainder().iter_mut().zip(xt) {
            *y = f(*x);
        }
    }
}

multiversion! {
    fn gelu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        // 1/√(2π)
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let n = dx.len();
        let (x, dy) = (&x[..n], &dy[..n]);
        let d = |v: f32, g: f32| {
            let cdf = 0.5 * (1.0 + erf_f::<FMA>(v * std::f32::consts::FRAC_1_SQRT_2));
            g * (cdf + v * INV_SQRT_2PI * exp_f::<FMA>(-0.5 * v * v))
        };
        let mut dc = dx.chunks_exact_mut(8);
        let (xc, gc) = (x.chunks_exact(8), dy.chunks_exact(8));
        let (xt, gt) = (xc.remainder(), gc.remainder());
        for ((dc, xc), gc) in (&mut dc).zip(xc).zip(gc) {
            for l in 0..8 {
                dc[l] = d(xc[l], gc[l]);
            }
        }
        for ((o, x), g) in dc.into_remainder().iter_mut().zip(xt).zip(gt) {
            *o = d(*x, *g);
        }
    }
}

/// The input (shared with the graph, not copied).
struct Tape(FlexTensor);

impl fmt::Debug for Tape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GeluTape({:?})", self.0.shape())
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = Arc<Tape>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let x = &ops.state.0;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let Some(node) = parent else { return };
        let shape = dy.shape().clone();
        let mut dx = vec![0.0f32; f32s(x).len()];
        dx.par_chunks_mut(CHUNK).zip(f32s(x).par_chunks(CHUNK)).zip(f32s(&dy).par_chunks(CHUNK)).for_each(|((dx, x), dy)| {
            gelu_backward(x, dy, dx);
        });
        grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dx, shape)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation;
    use burn::tensor::Distribution;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn close(a: Vec<f32>, b: Vec<f32>, what: &str) {
        assert_eq!(a.len(), b.len());
        assert!(b.iter().any(|v| *v != 0.0), "{what}: the reference is all zeros");
        let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
        assert!(d <= 1e-5, "{what}: max |Δ|/(1+|ref|) = {d}");
    }

    /// Outputs and the input gradient against burn's `gelu` (odd sizes, so the 8-lane tails and
    /// several chunks run; values out to ±6 where Φ saturates), and inference; the fused path
    /// must be taken.
    #[test]
    fn gelu_matches_burns_and_its_gradient() {
        let ad = Device::flex().autodiff();
        for shape in [[3, 7, 5], [2, 101, 97]] {
            let x0 = Tensor::<3>::random(shape, Distribution::Uniform(-6.0, 6.0), &ad);
            let w = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &ad);
            let before = FUSED_RUNS.with(|n| n.get());
            let run = |fused: bool| {
                let x = x0.clone().detach().require_grad();
                let y = if fused { gelu(&x).expect("the fused path") } else { activation::gelu(x.clone()) };
                let g = (y.clone() * w.clone()).sum().backward();
                (values(y.inner()), values(x.grad(&g).unwrap()))
            };
            let ((y0, g0), (y1, g1)) = (run(false), run(true));
            assert_eq!(FUSED_RUNS.with(|n| n.get()), before + 1, "the fused op ran");
            close(y1, y0, "outputs");
            close(g1, g0, "input gradient");
        }
        let dev = Device::flex();
        let x = Tensor::<2>::random([17, 33], Distribution::Normal(0.0, 2.0), &dev);
        close(values(gelu(&x).unwrap()), values(activation::gelu(x)), "inference");
    }
}

//! Dropout with a fast mask generator. burn's `Dropout` draws its Bernoulli mask one element at a
//! time from the device's ChaCha generator, which took ≈ 23 % of a transformer training step on
//! the CPU (perf, docs/models.md "Speed (CPU)"). Here one 64-bit seed is drawn from the device's
//! generator per call (so the run's seed still decides every mask) and the mask is expanded by
//! SplitMix64, serially (the same mask under any thread count). The mask holds 0 or 1/(1 − p), so
//! the output is x·mask — burn's (x·m)·(1/(1 − p)) to the bit. Where burn's `Dropout` is inactive
//! (no autodiff, frozen, p = 0) this is the identity too.

use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};

/// `dropout.forward(x)` with the fast mask on the CPU backend; burn's `Dropout` elsewhere.
pub fn forward<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !dropout.training.is_enabled() || !device.is_autodiff() || dropout.prob == 0.0 {
        return x;
    }
    if !on_cpu_backend(&x) {
        return dropout.forward(x);
    }
    let keep = 1.0 - dropout.prob;
    // Two 24-bit draws from the device's generator make the seed.
    let draws = Tensor::<1>::random([2], Distribution::Uniform(0.0, 16_777_216.0), &device).into_data();
    let draws = draws.try_to_vec::<f32>().unwrap_or_default();
    let seed = draws.iter().fold(0x5DEE_CE66_D1CE_4E5Bu64, |s, v| (s << 24) ^ (*v as u64));
    let mask = mask(x.shape().num_elements(), keep, seed);
    x.clone() * Tensor::<D>::from_data(TensorData::new(mask, x.shape()), &device)
}

fn on_cpu_backend<const D: usize>(x: &Tensor<D>) -> bool {
    use burn::backend::{Autodiff, Flex};
    x.clone().try_into_primitive::<Autodiff<Flex>>().is_ok()
        || x.clone().try_into_primitive::<Autodiff<Flex, burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing>>().is_ok()
}

/// Mask values per parallel chunk (even, fixed: the mask does not depend on the thread count).
const MASK_CHUNK: usize = 1 << 14;

/// n values: 1/keep with probability `keep`, else 0 (SplitMix64, 24-bit uniforms). SplitMix64 is
/// counter-based — draw j is mix(seed + (j + 1)·γ) — so fixed chunks are filled in parallel and
/// the mask equals the serial stream's.
pub fn mask(n: usize, keep: f64, seed: u64) -> Vec<f32> {
    use rayon::prelude::*;
    let threshold = (keep * (1u64 << 24) as f64) as u64;
    let scale = (1.0 / keep) as f32;
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(MASK_CHUNK).enumerate().for_each(|(c, chunk)| {
        // Two 24-bit uniforms per 64-bit draw; this chunk starts at draw c·MASK_CHUNK/2.
        let first = (c * MASK_CHUNK / 2) as u64;
        for (j, pair) in chunk.chunks_mut(2).enumerate() {
            let r = splitmix(seed.wrapping_add((first + j as u64 + 1).wrapping_mul(GAMMA)));
            pair[0] = if (r >> 40) < threshold { scale } else { 0.0 };
            if let Some(second) = pair.get_mut(1) {
                *second = if ((r >> 16) & 0xFF_FFFF) < threshold { scale } else { 0.0 };
            }
        }
    });
    out
}

/// SplitMix64's increment (Steele, Lea & Flood 2014).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function of a state.
fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;

    /// The mask keeps ≈ 1 − p of the elements, scaled by 1/(1 − p), and is reproducible.
    #[test]
    fn mask_has_the_right_rate_and_scale_and_repeats() {
        let m = mask(200_000, 0.9, 7);
        let kept = m.iter().filter(|v| **v != 0.0).count() as f64 / m.len() as f64;
        assert!((kept - 0.9).abs() < 0.005, "kept {kept}");
        assert!(m.iter().all(|v| *v == 0.0 || *v == (1.0 / 0.9f64) as f32));
        assert_eq!(m, mask(200_000, 0.9, 7));
        assert_ne!(m, mask(200_000, 0.9, 8));
        // The chunked fill is the serial SplitMix64 stream (state += γ, then mix), value for
        // value, odd lengths and chunk edges included.
        for (n, seed) in [(200_001, 7u64), (3, u64::MAX), (2 * MASK_CHUNK + 1, 11)] {
            let t = (0.9 * (1u64 << 24) as f64) as u64;
            let mut state = seed;
            let serial: Vec<f32> = (0..n.div_ceil(2))
                .flat_map(|_| {
                    state = state.wrapping_add(GAMMA);
                    let r = splitmix(state);
                    [(r >> 40) < t, ((r >> 16) & 0xFF_FFFF) < t]
                })
                .take(n)
                .map(|k| if k { (1.0 / 0.9f64) as f32 } else { 0.0 })
                .collect();
            assert_eq!(mask(n, 0.9, seed), serial, "n = {n}");
        }
    }

    /// In training the output is x·mask with a fresh mask per call (its seed drawn from the
    /// device's generator; not checked here: tests share that generator concurrently); the
    /// gradient is the mask; without autodiff or at p = 0 it is the identity.
    #[test]
    fn dropout_trains_like_burns_with_a_fresh_mask_per_call() {
        let ad = Device::flex().autodiff();
        let d = DropoutConfig::new(0.25).init();
        let x = Tensor::<2>::ones([64, 50], &ad).require_grad();
        let run = || {
            let y = forward(&d, x.clone());
            let g = y.clone().sum().backward();
            (y.inner().into_data().try_to_vec::<f32>().unwrap(), x.grad(&g).unwrap().into_data().try_to_vec::<f32>().unwrap())
        };
        let (y1, g1) = run();
        let (y2, _) = run();
        assert_ne!(y1, y2, "a fresh mask per call");
        assert_eq!(y1, g1, "for x = 1 the output and the gradient are the mask");
        let zeros = y1.iter().filter(|v| **v == 0.0).count() as f64 / y1.len() as f64;
        assert!((zeros - 0.25).abs() < 0.03, "dropped {zeros}");
        let dev = Device::flex();
        let xi = Tensor::<2>::ones([4, 5], &dev);
        assert_eq!(forward(&d, xi.clone()).into_data(), xi.into_data());
        let off = DropoutConfig::new(0.0).init();
        assert_eq!(forward(&off, x.clone()).inner().into_data(), x.inner().into_data());
    }
}

//! Allocation-free f32 kernels of the fast inference path ([`crate::fast`]): one matrix product
//! (the `gemm` crate, the one candle-core itself calls, with runtime AVX2/FMA dispatch), and the
//! fused element-wise epilogues (bias, activation, inference BatchNorm, LSTM/GRU cells) as plain
//! loops over slices. Each loop body is `#[inline(always)]` and compiled twice — for the baseline
//! target and, where the CPU has them, with AVX2 + FMA — so it vectorises without a global
//! `target-cpu` flag. candle dispatches every op through a tensor graph with a fixed cost each;
//! at one window per call that fixed cost was most of the time (docs/serve.md "Speed").

/// `c[m×n] (=|+=) a[m×k] · b[k×n]`: row-major, `a` with row stride `lda` (rows may overlap:
/// a stride smaller than `k` reads a sliding window, which is how a temporal convolution runs
/// without an im2col copy), `b` dense, `c` with row stride `ldc`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(m: usize, k: usize, n: usize, a: &[f32], lda: usize, b: &[f32], c: &mut [f32], ldc: usize, acc: bool) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "matmul: destination too small");
    assert!(b.len() >= k * n, "matmul: right operand too small");
    assert!(k == 0 || a.len() >= (m - 1) * lda + k, "matmul: left operand too small");
    if k == 0 {
        if !acc {
            for r in 0..m {
                c[r * ldc..r * ldc + n].fill(0.0);
            }
        }
        return;
    }
    if m <= 4 {
        // Matrix–vector sized: gemm's packing costs more than the product.
        for r in 0..m {
            axpy_rows(&a[r * lda..r * lda + k], b, &mut c[r * ldc..r * ldc + n], acc);
        }
        return;
    }
    // SAFETY: the asserts above bound every element gemm reads ((m−1)·lda + k of a, k·n of b)
    // and writes ((m−1)·ldc + n of c); strides are positive and in elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            acc,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `c (=|+=) Σ_i a[i] · b[i, :]` for one row `a` of length k and `b` `[k, n]`.
fn axpy_rows(a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        return unsafe { axpy_rows_avx2(a, b, c, acc) };
    }
    axpy_rows_impl(a, b, c, acc, |x, y, z| x * y + z)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_rows_avx2(a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    axpy_rows_impl(a, b, c, acc, f32::mul_add)
}

#[inline(always)]
fn axpy_rows_impl(a: &[f32], b: &[f32], c: &mut [f32], acc: bool, fma: impl Fn(f32, f32, f32) -> f32) {
    let n = c.len();
    if !acc {
        c.fill(0.0);
    }
    for (i, &ai) in a.iter().enumerate() {
        let row = &b[i * n..(i + 1) * n];
        for (cj, &bj) in c.iter_mut().zip(row) {
            *cj = fma(ai, bj, *cj);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Runs `$body` (a block using only `#[inline(always)]` helpers) compiled with AVX2 + FMA when
/// the CPU has them, else for the baseline target.
macro_rules! multiversion {
    (fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) { imp($($arg),*) }
                if has_avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                    return unsafe { fast($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

/// e^x to about 2 ulp over the f32 range (Cephes `expf`: x = n·ln2 + r, a degree-6 polynomial in
/// r, times 2^n), branch-free so loops over it vectorise; saturates at e^±88.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    // Round to nearest by the 1.5·2^23 trick (SSE2 has no vector floor).
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
    let y = p * r * r + r + 1.0;
    // SAFETY: x is clamped, so n is an integer in [−126, 127].
    let n = unsafe { n.to_int_unchecked::<i32>() };
    y * f32::from_bits(((n + 127) << 23) as u32)
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh x = 1 − 2 / (e^{2x} + 1): absolute error ~1e-7 (the relative error near 0 is larger,
/// which nothing downstream sees).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// The negative slope of every LeakyReLU (burn's and the reference's 0.01).
pub const LEAKY_SLOPE: f32 = 0.01;

multiversion! {
    fn conv_epilogue(y: &mut [f32], ld: usize, bias: &[f32], scale: &[f32], shift: &[f32], tanh_act: bool) {
        // Per channel (fastest axis) of rows `ld` apart: act(y + bias) · scale + shift (inference
        // BatchNorm folded into one scale and shift).
        let c = bias.len();
        // Equal lengths up front, so the loops below carry no bounds checks and vectorise.
        let (scale, shift) = (&scale[..c], &shift[..c]);
        for row in y.chunks_mut(ld) {
            let row = &mut row[..c];
            if tanh_act {
                for j in 0..c {
                    row[j] = tanh(row[j] + bias[j]) * scale[j] + shift[j];
                }
            } else {
                for j in 0..c {
                    let v = row[j] + bias[j];
                    row[j] = (v.max(0.0) + LEAKY_SLOPE * v.min(0.0)) * scale[j] + shift[j];
                }
            }
        }
    }
}

multiversion! {
    fn lstm_cell(g: &[f32], c: &mut [f32], h: &mut [f32]) {
        // g = [i | f | o | c̃] pre-activations of one row; PyTorch's/burn's LSTM equations.
        let n = h.len();
        let (gi, rest) = g.split_at(n);
        let (gf, rest) = rest.split_at(n);
        let (go, gc) = rest.split_at(n);
        let (gc, c) = (&gc[..n], &mut c[..n]);
        for j in 0..n {
            let i = sigmoid(gi[j]);
            let f = sigmoid(gf[j]);
            let o = sigmoid(go[j]);
            let cc = tanh(gc[j]);
            let cn = f * c[j] + i * cc;
            c[j] = cn;
            h[j] = o * tanh(cn);
        }
    }
}

multiversion! {
    fn gru_cell(gx: &[f32], gh: &[f32], h: &mut [f32]) {
        // gx = x-projections [z | r | n] (with their biases), gh = h·W_h + b_h, reset-after GRU.
        let n = h.len();
        let (gx, gh) = (&gx[..3 * n], &gh[..3 * n]);
        let (xz, rest) = gx.split_at(n);
        let (xr, xn) = rest.split_at(n);
        let (hz, rest) = gh.split_at(n);
        let (hr, hn) = rest.split_at(n);
        for j in 0..n {
            let z = sigmoid(xz[j] + hz[j]);
            let r = sigmoid(xr[j] + hr[j]);
            let nn = tanh(xn[j] + r * hn[j]);
            h[j] = (1.0 - z) * nn + z * h[j];
        }
    }
}

/// erf x to ~5e-7 absolute in f32 (Abramowitz & Stegun 7.1.26: 1.5e-7 in exact arithmetic), branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let p = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6) * t;
    (1.0 - p * exp(-a * a)).copysign(x)
}

multiversion! {
    fn gelu_bias(y: &mut [f32], bias: &[f32]) {
        // GELU(y + bias) in place, exact (erf) form as burn's and candle's `gelu`.
        let c = bias.len();
        for row in y.chunks_exact_mut(c) {
            for j in 0..c {
                let v = row[j] + bias[j];
                row[j] = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
    }
}

multiversion! {
    fn relu_bias(y: &mut [f32], bias: &[f32]) {
        let c = bias.len();
        for row in y.chunks_exact_mut(c) {
            for j in 0..c {
                row[j] = (row[j] + bias[j]).max(0.0);
            }
        }
    }
}

multiversion! {
    fn layer_norm(y: &mut [f32], ld: usize, gamma: &[f32], beta: &[f32]) {
        // Per row (first gamma.len() values of rows `ld` apart): biased variance, ε = 1e-5.
        let d = gamma.len();
        let beta = &beta[..d];
        for row in y.chunks_mut(ld) {
            let row = &mut row[..d];
            let mean = row.iter().sum::<f32>() / d as f32;
            let mut var = 0.0;
            for v in row.iter_mut() {
                *v -= mean;
                var += *v * *v;
            }
            let sd = (var / d as f32 + 1e-5).sqrt();
            for j in 0..d {
                row[j] = row[j] / sd * gamma[j] + beta[j];
            }
        }
    }
}

multiversion! {
    fn causal_softmax(s: &mut [f32], t: usize, scale: f32) {
        // Rows i of a [t, t] score matrix: softmax of scale·s[i, ..=i], zero after (burn masks
        // the future with −1e4, whose exponential is exactly 0 in f32).
        for i in 0..t {
            let row = &mut s[i * t..(i + 1) * t];
            let (live, dead) = row.split_at_mut(i + 1);
            let mut max = f32::NEG_INFINITY;
            for v in live.iter_mut() {
                *v *= scale;
                max = max.max(*v);
            }
            let mut sum = 0.0;
            for v in live.iter_mut() {
                *v = exp(*v - max);
                sum += *v;
            }
            for v in live.iter_mut() {
                *v /= sum;
            }
            dead.fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_sigmoid_tanh_match_std() {
        let mut worst = (0f32, 0f32, 0f32);
        for i in -20_000..=20_000 {
            let x = i as f32 / 1000.0;
            worst.0 = worst.0.max((exp(x) - x.exp()).abs() / x.exp());
            worst.1 = worst.1.max((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs());
            worst.2 = worst.2.max((tanh(x) - x.tanh()).abs());
        }
        let worst_erf = (-4000..=4000).map(|i| i as f32 / 1000.0).map(|x| (erf(x) - erf_ref(x as f64) as f32).abs()).fold(0f32, f32::max);
        assert!(worst_erf < 6e-7, "erf {worst_erf}");
        assert!(worst.0 < 4e-7 && worst.1 < 2e-7 && worst.2 < 3e-7, "{worst:?}");
        assert_eq!(exp(-200.0), (-87.3f32).exp().max(exp(-200.0)));
        assert!(exp(200.0).is_finite() && sigmoid(-200.0) >= 0.0 && tanh(-200.0) == -1.0 && tanh(200.0) == 1.0);
    }

    /// erf by its Maclaurin series in f64 (converges fast for |x| ≤ 4).
    fn erf_ref(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn matmul_matches_naive_with_strides_and_accumulate() {
        for &(m, k, n) in &[(1, 5, 7), (3, 8, 4), (17, 33, 9), (64, 64, 256)] {
            let lda = k + 3;
            let a: Vec<f32> = (0..m * lda).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let ldc = n + 2;
            let mut c = vec![1.0f32; m * ldc];
            matmul(m, k, n, &a, lda, &b, &mut c, ldc, true);
            for r in 0..m {
                for j in 0..n {
                    let want: f32 = 1.0 + (0..k).map(|i| a[r * lda + i] * b[i * n + j]).sum::<f32>();
                    assert!((c[r * ldc + j] - want).abs() < 1e-4, "{m}x{k}x{n} at {r},{j}: {} vs {want}", c[r * ldc + j]);
                }
                assert_eq!(c[r * ldc + n], 1.0, "padding column untouched");
            }
            matmul(m, k, n, &a, lda, &b, &mut c, ldc, false);
            let want: f32 = (0..k).map(|i| a[i] * b[i * n]).sum();
            assert!((c[0] - want).abs() < 1e-4);
        }
    }
}

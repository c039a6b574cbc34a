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

/// Columns per tile of [`Packed`]: 8 AVX2 registers of accumulators.
const TILE: usize = 64;

/// A right operand `b [k, n]` repacked tile-major (`[n/64 tiles][k][64]`, then the remaining
/// columns as one narrower `[k][n mod 64]` tile) for products with few left rows, the recurrent
/// step of a single window. Each tile's 64 accumulators stay in registers over all k while `b`
/// streams once, in order; the row-by-row form ([`matmul`]'s small-m path) reloads and stores
/// all n accumulators for every one of the k rows, which made it most of an LSTM window's time.
pub struct Packed {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl Packed {
    pub fn new(b: &[f32], k: usize, n: usize) -> Packed {
        assert!(b.len() >= k * n, "Packed: operand too small");
        let mut data = Vec::with_capacity(k * n);
        for j0 in (0..n).step_by(TILE) {
            let w = TILE.min(n - j0);
            for i in 0..k {
                data.extend_from_slice(&b[i * n + j0..i * n + j0 + w]);
            }
        }
        Packed { k, n, data }
    }

    /// `c[r] (=|+=) a[r] · b` for `m` rows: `a` with row stride `lda`, `c` with row stride `ldc`.
    pub fn matmul(&self, m: usize, a: &[f32], lda: usize, c: &mut [f32], ldc: usize, acc: bool) {
        let (k, n) = (self.k, self.n);
        if m == 0 || n == 0 {
            return;
        }
        assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "Packed::matmul: destination too small");
        assert!(k == 0 || a.len() >= (m - 1) * lda + k, "Packed::matmul: left operand too small");
        for r in 0..m {
            let (ar, cr) = (&a[r * lda..r * lda + k], &mut c[r * ldc..r * ldc + n]);
            if !acc {
                cr.fill(0.0);
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA (checked at run time); lengths checked above.
                unsafe { self.row_avx2(ar, cr) };
                continue;
            }
            self.row_scalar(ar, cr);
        }
    }

    fn row_scalar(&self, a: &[f32], c: &mut [f32]) {
        let k = self.k;
        let mut base = 0;
        for j0 in (0..self.n).step_by(TILE) {
            let w = TILE.min(self.n - j0);
            let cw = &mut c[j0..j0 + w];
            for (i, &ai) in a.iter().enumerate() {
                for (cj, &bj) in cw.iter_mut().zip(&self.data[base + i * w..base + (i + 1) * w]) {
                    *cj += ai * bj;
                }
            }
            base += k * w;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_avx2(&self, a: &[f32], c: &mut [f32]) {
        use std::arch::x86_64::*;
        let (k, n) = (self.k, self.n);
        let full = n / TILE;
        let p = self.data.as_ptr();
        for t in 0..full {
            let cp = c.as_mut_ptr().add(t * TILE);
            let bp = p.add(t * k * TILE);
            let mut acc = [_mm256_setzero_ps(); 8];
            for (v, r) in acc.iter_mut().enumerate() {
                *r = _mm256_loadu_ps(cp.add(8 * v));
            }
            for (i, &ai) in a.iter().enumerate() {
                let x = _mm256_set1_ps(ai);
                let row = bp.add(i * TILE);
                for (v, r) in acc.iter_mut().enumerate() {
                    *r = _mm256_fmadd_ps(x, _mm256_loadu_ps(row.add(8 * v)), *r);
                }
            }
            for (v, r) in acc.iter().enumerate() {
                _mm256_storeu_ps(cp.add(8 * v), *r);
            }
        }
        // The narrower last tile: 8-wide vectors, then single columns.
        let (j0, w) = (full * TILE, n - full * TILE);
        if w > 0 {
            let bp = p.add(full * k * TILE);
            let vecs = w / 8;
            for v in 0..vecs {
                let cp = c.as_mut_ptr().add(j0 + 8 * v);
                let mut r = _mm256_loadu_ps(cp);
                for (i, &ai) in a.iter().enumerate() {
                    r = _mm256_fmadd_ps(_mm256_set1_ps(ai), _mm256_loadu_ps(bp.add(i * w + 8 * v)), r);
                }
                _mm256_storeu_ps(cp, r);
            }
            for j in 8 * vecs..w {
                let mut s = c[j0 + j];
                for (i, &ai) in a.iter().enumerate() {
                    s = ai.mul_add(*bp.add(i * w + j), s);
                }
                c[j0 + j] = s;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[doc(hidden)]
pub fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Runs `$body` (a block using only `#[inline(always)]` helpers) compiled with AVX2 + FMA when
/// the CPU has them, else for the baseline target. The body sees `const FMA: bool`, true in the
/// AVX2 + FMA copy, to pass to the `*_f` helpers (a fused multiply-add shortens their dependency
/// chains; without the instruction `mul_add` would be a library call). Exported for the burn
/// models' fused training ops (models/src/rnn_op.rs), which share these activations.
#[macro_export]
macro_rules! multiversion {
    (fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn imp<const FMA: bool>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) { imp::<true>($($arg),*) }
                if $crate::kernels::has_avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                    return unsafe { fast($($arg),*) };
                }
            }
            imp::<false>($($arg),*)
        }
    };
}

/// `a·b + c`, fused when `F` (the caller is compiled with FMA), else two roundings.
#[inline(always)]
fn fmadd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// e^x to about 2 ulp over the f32 range (Cephes `expf`: x = n·ln2 + r, a degree-6 polynomial in
/// r, times 2^n), branch-free so loops over it vectorise; saturates at e^±88.
#[inline(always)]
pub fn exp_f<const F: bool>(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    // Round to nearest by the 1.5·2^23 trick (SSE2 has no vector floor).
    let n = fmadd::<F>(x, std::f32::consts::LOG2_E, 12_582_912.0) - 12_582_912.0;
    let r = fmadd::<F>(n, 2.121_944_4e-4, fmadd::<F>(n, -0.693_359_4, x));
    let mut p = 1.987_569_1e-4;
    for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = fmadd::<F>(p, r, c);
    }
    let y = fmadd::<F>(p, r * r, r) + 1.0;
    // SAFETY: x is clamped, so n is an integer in [−126, 127].
    let n = unsafe { n.to_int_unchecked::<i32>() };
    y * f32::from_bits(((n + 127) << 23) as u32)
}

#[inline(always)]
pub fn sigmoid_f<const F: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp_f::<F>(-x))
}

/// tanh x = 1 − 2 / (e^{2x} + 1): absolute error ~1e-7 (the relative error near 0 is larger,
/// which nothing downstream sees).
#[inline(always)]
pub fn tanh_f<const F: bool>(x: f32) -> f32 {
    1.0 - 2.0 / (exp_f::<F>(2.0 * x) + 1.0)
}

/// [`exp_f`] without FMA (any caller).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_f::<false>(x)
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    sigmoid_f::<false>(x)
}

#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    tanh_f::<false>(x)
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
                    row[j] = tanh_f::<FMA>(row[j] + bias[j]) * scale[j] + shift[j];
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
    fn lstm_cell(g: &mut [f32], c: &mut [f32], h: &mut [f32]) {
        // g = [i | f | o | c̃] pre-activations of one row; PyTorch's/burn's LSTM equations. The
        // activations are taken in place in two passes before the state update: short,
        // independent iterations that overlap in the core, where one fused loop was a long
        // dependency chain (exp, divide, exp, divide) per element.
        let n = h.len();
        let g = &mut g[..4 * n];
        let (sig, gc) = g.split_at_mut(3 * n);
        for v in sig.iter_mut() {
            *v = sigmoid_f::<FMA>(*v);
        }
        for v in gc.iter_mut() {
            *v = tanh_f::<FMA>(*v);
        }
        let (gi, rest) = g.split_at(n);
        let (gf, rest) = rest.split_at(n);
        let (go, gc) = rest.split_at(n);
        let (gc, c) = (&gc[..n], &mut c[..n]);
        for j in 0..n {
            let cn = gf[j] * c[j] + gi[j] * gc[j];
            c[j] = cn;
            h[j] = go[j] * tanh_f::<FMA>(cn);
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
            let z = sigmoid_f::<FMA>(xz[j] + hz[j]);
            let r = sigmoid_f::<FMA>(xr[j] + hr[j]);
            let nn = tanh_f::<FMA>(xn[j] + r * hn[j]);
            h[j] = (1.0 - z) * nn + z * h[j];
        }
    }
}

/// erf x to ~5e-7 absolute in f32 (Abramowitz & Stegun 7.1.26: 1.5e-7 in exact arithmetic), branch-free.
#[inline(always)]
pub fn erf_f<const F: bool>(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4;
    for c in [-1.453_152_1, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
        p = fmadd::<F>(p, t, c);
    }
    (1.0 - p * t * exp_f::<F>(-a * a)).copysign(x)
}

#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_f::<false>(x)
}

multiversion! {
    fn gelu_bias(y: &mut [f32], bias: &[f32]) {
        // GELU(y + bias) in place, exact (erf) form as burn's and candle's `gelu`.
        let c = bias.len();
        for row in y.chunks_exact_mut(c) {
            for j in 0..c {
                let v = row[j] + bias[j];
                row[j] = 0.5 * v * (1.0 + erf_f::<FMA>(v * std::f32::consts::FRAC_1_SQRT_2));
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
        // the future with −1e4, whose exponential is exactly 0 in f32). The maximum and the sum
        // run in 8 lane accumulators (a single running float sum would not vectorise).
        for i in 0..t {
            let row = &mut s[i * t..(i + 1) * t];
            let (live, dead) = row.split_at_mut(i + 1);
            let mut mx = [f32::NEG_INFINITY; 8];
            let mut chunks = live.chunks_exact_mut(8);
            for c in &mut chunks {
                for l in 0..8 {
                    let v = c[l] * scale;
                    c[l] = v;
                    mx[l] = if v > mx[l] { v } else { mx[l] };
                }
            }
            let mut max = mx.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
            for v in chunks.into_remainder() {
                *v *= scale;
                max = max.max(*v);
            }
            let mut acc = [0.0f32; 8];
            let mut chunks = live.chunks_exact_mut(8);
            for c in &mut chunks {
                for l in 0..8 {
                    let e = exp_f::<FMA>(c[l] - max);
                    c[l] = e;
                    acc[l] += e;
                }
            }
            let mut sum: f32 = acc.iter().sum();
            for v in chunks.into_remainder() {
                *v = exp_f::<FMA>(*v - max);
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
        // Both copies: without and with fused multiply-adds.
        fn check<const F: bool>() {
            let mut worst = (0f32, 0f32, 0f32);
            for i in -20_000..=20_000 {
                let x = i as f32 / 1000.0;
                worst.0 = worst.0.max((exp_f::<F>(x) - x.exp()).abs() / x.exp());
                worst.1 = worst.1.max((sigmoid_f::<F>(x) - 1.0 / (1.0 + (-x).exp())).abs());
                worst.2 = worst.2.max((tanh_f::<F>(x) - x.tanh()).abs());
            }
            let erf_err = |x: f32| (erf_f::<F>(x) - erf_ref(x as f64) as f32).abs();
            let worst_erf = (-4000..=4000).map(|i| i as f32 / 1000.0).map(erf_err).fold(0f32, f32::max);
            assert!(worst_erf < 6e-7, "erf {worst_erf} (fma {F})");
            assert!(worst.0 < 4e-7 && worst.1 < 2e-7 && worst.2 < 3e-7, "{worst:?} (fma {F})");
            assert_eq!(exp_f::<F>(-200.0), (-87.3f32).exp().max(exp_f::<F>(-200.0)));
            let t = tanh_f::<F>;
            assert!(exp_f::<F>(200.0).is_finite() && sigmoid_f::<F>(-200.0) >= 0.0 && t(-200.0) == -1.0 && t(200.0) == 1.0);
        }
        check::<false>();
        check::<true>();
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

    #[test]
    fn packed_equals_matmul_for_every_tile_shape() {
        // Full 64-column tiles, a narrower tile with 8-wide vectors and single columns, and n < 8.
        for &(m, k, n) in &[(1, 64, 256), (2, 7, 64 + 8 * 3 + 5), (4, 33, 131), (1, 5, 3), (3, 0, 9)] {
            let lda = k + 2;
            let a: Vec<f32> = (0..m * lda).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let p = Packed::new(&b, k, n);
            let ldc = n + 1;
            for acc in [true, false] {
                let mut want = vec![0.5f32; m * ldc];
                let mut got = want.clone();
                for r in 0..m {
                    for j in 0..n {
                        let s: f32 = (0..k).map(|i| a[r * lda + i] * b[i * n + j]).sum();
                        want[r * ldc + j] = if acc { 0.5 + s } else { s };
                    }
                }
                p.matmul(m, &a, lda, &mut got, ldc, acc);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() < 1e-4, "{m}x{k}x{n} acc {acc} at {i}: {g} vs {w}");
                }
            }
        }
    }
}

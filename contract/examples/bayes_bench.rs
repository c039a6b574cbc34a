//! Time per predict + update of `bayes_online` at 90 features, diagonal and full posterior:
//! `cargo run --release -p flowcast-contract --example bayes_bench [features]`.
//!
//! Each iteration predicts one row (a 1-window batch: Student-t probabilities, mean, std) and
//! absorbs one matured label (another row), the prequential step of an online run. Rows are
//! pre-generated (SplitMix64, Irwin–Hall noise) so the loop times the model alone; batches are
//! built field by field, skipping `Batch::new`'s finiteness scan (the caller's cost). Last, the
//! optional changepoint detector on the residuals: ns per observation at `max_run` = 1000.

use flowcast_contract::bayes::{BayesConfig, BayesOnline, ChangepointConfig, Changepoints, Form};
use flowcast_contract::predictor::{Batch, Matured, OnlinePredictor, Outputs, Predictor};
use std::hint::black_box;
use std::time::Instant;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn noise(&mut self) -> f64 {
        let u = |r: &mut Rng| (r.next() >> 11) as f64 / (1u64 << 53) as f64;
        (u(self) + u(self) + u(self) + u(self) - 2.0) * 3f64.sqrt()
    }
}

fn main() {
    let features: usize = std::env::args().nth(1).map(|a| a.parse().expect("features: a number")).unwrap_or(90);
    const ROWS: usize = 4096;
    let mut rng = Rng(42);
    let w: Vec<f64> = (0..features).map(|j| if j % 3 == 0 { 0.5 / (1.0 + j as f64) } else { 0.0 }).collect();
    let x: Vec<f32> = (0..ROWS * features).map(|_| rng.noise() as f32).collect();
    let y: Vec<f32> =
        x.chunks(features).map(|r| (r.iter().zip(&w).map(|(&v, w)| v as f64 * w).sum::<f64>() + rng.noise()) as f32).collect();
    let batch = |i: usize| Batch { x: &x[i * features..(i + 1) * features], batch: 1, window: 1, features, window_ofi: None };

    println!("bayes_online, {features} features (+ intercept), λ = 0.999, one predict + one update per iteration");
    for (form, iters) in [(Form::Diagonal, 2_000_000usize), (Form::Full, 200_000)] {
        let config = BayesConfig { form, alpha_bps: 0.5, ..Default::default() };
        let mut m = BayesOnline::new(config, 1, features).expect("config");
        let mut out = Outputs::new(3);
        out.probs.reserve(3);
        out.regression.reserve(1);
        out.std.reserve(1);
        // Warm up past the prior (ν = 2a grows to ~10³).
        for i in 0..20_000 {
            let k = i % ROWS;
            m.update(&batch(k), &Matured { classes: &[], values: &y[k..k + 1] }).expect("update");
        }
        let time = |m: &mut BayesOnline, out: &mut Outputs, what: u8| {
            let t0 = Instant::now();
            for i in 0..iters {
                let p = i % ROWS;
                let u = (i + 7) % ROWS;
                if what & 1 != 0 {
                    out.clear();
                    m.predict(&batch(p), out).expect("predict");
                    black_box(&out.probs);
                }
                if what & 2 != 0 {
                    m.update(&batch(u), &Matured { classes: &[], values: &y[u..u + 1] }).expect("update");
                }
            }
            t0.elapsed().as_nanos() as f64 / iters as f64
        };
        let both = time(&mut m, &mut out, 3);
        let predict = time(&mut m, &mut out, 1);
        let update = time(&mut m, &mut out, 2);
        println!(
            "{:>8}: {both:>8.0} ns per predict + update ({predict:.0} ns predict, {update:.0} ns update; ν = {:.0}, b/a = {:.3})",
            format!("{form:?}").to_lowercase(),
            2.0 * m.posterior().a,
            m.posterior().b / m.posterior().a
        );
    }
    let mut c = Changepoints::new(ChangepointConfig::default()).expect("config");
    let z: Vec<f64> = (0..ROWS).map(|_| rng.noise()).collect();
    for i in 0..5_000 {
        c.update(z[i % ROWS]).expect("update");
    }
    let iters = 20_000;
    let t0 = Instant::now();
    for i in 0..iters {
        c.update(z[i % ROWS]).expect("update");
    }
    let ns = t0.elapsed().as_nanos() as f64 / iters as f64;
    println!("changepoints (max_run {}): {ns:.0} ns per observation (MAP run length {})", c.run_length_probs().len(), c.map_run_length());
}

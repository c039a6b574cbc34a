//! Serving-path speed without burn or an export: every registry architecture with seeded random
//! weights, batch-64 windows/s and single-window p50/p99 through `Model::logits` (the fast
//! kernels) and `Model::logits_reference` (the candle twins). Threads: RAYON_NUM_THREADS.
//!
//!     cargo run --release -p flowcast-serve --example serve_speed [-- --calls 200 --only LSTM --fast-only]

use flowcast_contract::spec::{DeepLobSpec, ModelSpec, RnnCell, RnnSpec, TransLobSpec};
use flowcast_serve::Model;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let calls: usize = arg("--calls").and_then(|v| v.parse().ok()).unwrap_or(200);
    // `--only LSTM`: the models whose name contains it; `--fast-only`: skip the candle twins.
    let only = arg("--only").unwrap_or_default();
    let fast_only = args.iter().any(|a| a == "--fast-only");
    let (batch, window, features) = (64, 100, 40);
    let rnn = |cell| RnnSpec { cell, d_input: features, n_classes: 3, hidden: 64, layers: 1, bidirectional: false, dropout: 0.0 };
    let deeplob = |ch, ci, h| DeepLobSpec { levels: 10, n_classes: 3, conv_channels: ch, inception_channels: ci, lstm_hidden: h };
    let translob = TransLobSpec {
        d_input: features,
        n_classes: 3,
        window,
        conv_channels: 14,
        conv_layers: 5,
        kernel_size: 2,
        heads: 3,
        depth: 2,
        d_ff: 0,
        mlp_hidden: 64,
        dropout: 0.0,
    };
    let models = [
        ("LSTM-64", ModelSpec::Lstm(rnn(RnnCell::Lstm))),
        ("GRU-64", ModelSpec::Gru(rnn(RnnCell::Gru))),
        ("DeepLOB (quickstart)", ModelSpec::Deeplob(deeplob(16, 16, 32))),
        ("DeepLOB (full)", ModelSpec::Deeplob(deeplob(32, 64, 64))),
        ("TransLOB", ModelSpec::Transformer(translob)),
    ];
    let threads = rayon::current_num_threads();
    println!("batch {batch} × [{window}, {features}] windows/s, single-window µs; {threads} rayon thread(s)");
    println!("{:<22} {:>10} {:>10} {:>9} {:>9} {:>11}", "model", "serve w/s", "candle w/s", "serve p50", "serve p99", "candle p50");
    let x: Vec<f32> = (0..batch * window * features).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
    for (name, spec) in models.into_iter().filter(|(n, _)| n.contains(only.as_str())) {
        let m = Model::random(&spec, 1)?;
        let rate = |reference: bool| -> Result<f64, Box<dyn std::error::Error>> {
            let run = || if reference { m.logits_reference(&x, batch, window) } else { m.logits(&x, batch, window) };
            std::hint::black_box(run()?);
            let (t, mut n) = (Instant::now(), 0);
            while n < 3 || t.elapsed() < Duration::from_secs(1) {
                std::hint::black_box(run()?);
                n += 1;
            }
            Ok((n * batch) as f64 / t.elapsed().as_secs_f64())
        };
        let one = &x[..window * features];
        let lat = |reference: bool, calls: usize| -> Result<Vec<f64>, Box<dyn std::error::Error>> {
            let run = || if reference { m.logits_reference(one, 1, window) } else { m.logits(one, 1, window) };
            for _ in 0..calls.div_ceil(10).max(3) {
                std::hint::black_box(run()?);
            }
            let mut us = Vec::with_capacity(calls);
            for _ in 0..calls {
                let t = Instant::now();
                std::hint::black_box(run()?);
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            us.sort_by(f64::total_cmp);
            Ok(us)
        };
        let pct = |v: &[f64], q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        let fast = lat(false, calls)?;
        let reference = if fast_only { vec![f64::NAN] } else { lat(true, (calls / 4).max(5))? };
        println!(
            "{:<22} {:>10.0} {:>10.0} {:>9.1} {:>9.1} {:>11.1}",
            name,
            rate(false)?,
            if fast_only { f64::NAN } else { rate(true)? },
            pct(&fast, 0.5),
            pct(&fast, 0.99),
            pct(&reference, 0.5)
        );
    }
    Ok(())
}

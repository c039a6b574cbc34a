//! Walk-forward backtests: `flowcast backtest` on a file with `[walk_forward]`. Fold k trains the
//! experiment's model on the segments before segment k+1 and trades it on segment k+1 only, so
//! every traded signal is out of sample and every model sees only the past (docs/backtest.md,
//! "Walk-forward").
//!
//! Run directory `<runs_dir>/<name>-<UTC stamp>/`: `backtest.toml` (as given), `train/` (one
//! ordinary training run per fold), `backtest/` (one ordinary backtest run per fold, each with
//! the `[segment]` and `[signal]` it was run with), `walk_forward.json` and `walk_forward.md`.

use anyhow::{bail, Context, Result};
use flowcast_backtest::config::{BacktestConfig, SegmentSpec, SignalSpec};
use flowcast_backtest::run::run_backtest;
use flowcast_datasets::Dataset;
use flowcast_train::config::{toml_of_json, Experiment, SplitSpec};
use flowcast_train::run::{prepare_experiment, run_prepared, RunOptions};
use serde_json::{json, Value};
use std::path::PathBuf;

pub fn run(cfg: &BacktestConfig, text: &str, ds: &Dataset, quiet: bool) -> Result<Value> {
    let wf = cfg.walk_forward.as_ref().expect("called with [walk_forward]");
    let mut base = Experiment::load(&wf.experiment)?;
    let ids: Vec<String> = base.models.iter().map(|m| m.id().to_string()).collect();
    base.models.retain(|m| m.id() == wf.model);
    if base.models.is_empty() {
        bail!("[walk_forward] model = {:?}: {} has the models {ids:?}", wf.model, wf.experiment.display());
    }
    if base.targets.len() != 1 {
        bail!(
            "[walk_forward] {}: the experiment has {} targets; walk-forward trades one (keep one [label])",
            wf.experiment.display(),
            base.targets.len()
        );
    }
    // The backtest's data is the training data: one dataset, cut into segments.
    base.data = cfg.data.clone();
    let dir = flowcast_backtest::run::unique_dir(&cfg.runs_dir.join(format!("{}-{}", cfg.name, flowcast_datasets::time::now_stamp())))?;
    std::fs::write(dir.join("backtest.toml"), text).with_context(|| format!("writing {}", dir.display()))?;
    let opts = RunOptions {
        runs_dir: Some(dir.join("train")),
        progress: if quiet { flowcast_train::progress::Mode::Quiet } else { flowcast_train::progress::Mode::auto() },
        ..Default::default()
    };
    let folds = wf.folds();
    let mut out = Vec::with_capacity(folds.len());
    for (k, &(start, test_start, end)) in folds.iter().enumerate() {
        let n = k + 1;
        let fit = test_start - start;
        let mut exp = base.clone();
        exp.name = format!("{}-fold{n}", cfg.name);
        exp.splits = SplitSpec { train: fit * (1.0 - wf.validation), validation: fit * wf.validation, start, end };
        let exp_text = format!(
            "# Walk-forward fold {n} of {:?}: {} with [data] from the backtest and [splits] of the fold\n{}",
            cfg.name,
            wf.experiment.display(),
            toml_of_json(serde_json::to_value(&exp)?).map_err(anyhow::Error::msg)?
        );
        let exp = Experiment::from_toml(&exp_text, &format!("fold {n}"))?;
        let t0 = std::time::Instant::now();
        let data = prepare_experiment(&exp, ds).with_context(|| format!("walk-forward fold {n}: preparing its windows"))?;
        let summary = run_prepared(&exp, &exp_text, &opts, &data, t0.elapsed().as_secs_f64(), None)
            .with_context(|| format!("walk-forward fold {n}: training"))?;
        let run_dir = PathBuf::from(summary.json["run_dir"].as_str().unwrap_or_default());
        let model_dir = run_dir.join(&wf.model);
        let s = &data.splits;
        let ev = |row: usize| if row < s.n { data.rows.event_index[row] } else { ds.events.len() as u64 };
        let from_event = ev(s.test.start);
        let to_event = ev(((end * s.n as f64).round() as usize).min(s.n));
        let mut fc = cfg.clone();
        fc.name = format!("{}-fold{n}", cfg.name);
        fc.runs_dir = dir.join("backtest");
        fc.walk_forward = None;
        fc.segment = Some(SegmentSpec { from_event, to_event: Some(to_event) });
        fc.signal = Some(SignalSpec {
            model: Some(model_dir.clone()),
            predictions: None,
            model_latency: wf.model_latency.clone(),
            rule: wf.rule.clone(),
            allow_in_sample: false,
        });
        let fc_text = format!(
            "# Walk-forward fold {n} of {:?}: the backtest with the fold's [segment] and model\n{}",
            cfg.name,
            toml_of_json(serde_json::to_value(&fc)?).map_err(anyhow::Error::msg)?
        );
        BacktestConfig::from_toml(&fc_text, &format!("fold {n}"))?;
        let r = run_backtest(&fc, ds, Some(&fc_text)).with_context(|| format!("walk-forward fold {n}: backtest"))?;
        let ts = |row: usize| data.rows.ts.get(row).copied();
        let model = &summary.json["models"][&wf.model];
        let m = &r.metrics;
        let fold = json!({
            "fold": n,
            "train_rows": [s.train.start, s.validation.end.max(s.train.end)],
            "test_rows": [s.test.start, s.test.end],
            "train_from_ns": ts(s.train.start),
            "test_from_ns": ts(s.test.start),
            "test_to_ns": ts(s.test.end.saturating_sub(1)),
            "events": [from_event, to_event],
            "model": {"accuracy": model["accuracy"], "macro_f1": model["macro_f1"], "mcc": model["mcc"]},
            "baselines": summary.json["baselines"],
            "signal_points": r.summary["signal"]["points"],
            "net_pnl": m.net_pnl, "gross_pnl": m.gross_pnl, "fees": m.fees, "trades": m.trades, "fills": m.fills,
            "sharpe": m.sharpe, "max_drawdown": m.max_drawdown, "win_rate": m.win_rate,
            "signal": m.signal,
            "train_run": run_dir.display().to_string(),
            "backtest_run": r.run_dir.display().to_string(),
        });
        if !quiet {
            eprintln!(
                "fold {n}/{}: model accuracy {} macro F1 {} · net P&L {:+.4} over {} trades · {}",
                folds.len(),
                num(&model["accuracy"]),
                num(&model["macro_f1"]),
                m.net_pnl,
                m.trades,
                r.run_dir.display()
            );
        }
        out.push(fold);
    }
    let sum = |k: &str| out.iter().map(|f| f[k].as_f64().unwrap_or(0.0)).sum::<f64>();
    let nets: Vec<f64> = out.iter().map(|f| f["net_pnl"].as_f64().unwrap_or(0.0)).collect();
    let mean = nets.iter().sum::<f64>() / nets.len().max(1) as f64;
    let sd = (nets.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nets.len().max(2) - 1) as f64).sqrt();
    let total = json!({
        "folds": out.len(),
        "net_pnl": sum("net_pnl"), "gross_pnl": sum("gross_pnl"), "fees": sum("fees"),
        "trades": out.iter().map(|f| f["trades"].as_u64().unwrap_or(0)).sum::<u64>(),
        "fills": out.iter().map(|f| f["fills"].as_u64().unwrap_or(0)).sum::<u64>(),
        "profitable_folds": nets.iter().filter(|&&x| x > 0.0).count(),
        "net_pnl_per_fold": {"mean": mean, "sd": sd},
    });
    let doc = json!({
        "run_dir": dir.display().to_string(),
        "name": cfg.name,
        "experiment": wf.experiment.display().to_string(),
        "model": wf.model,
        "walk_forward": wf,
        "folds": out,
        "total": total,
    });
    std::fs::write(dir.join("walk_forward.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    std::fs::write(dir.join("walk_forward.md"), markdown(&doc))?;
    Ok(doc)
}

fn num(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |x| format!("{x:.3}"))
}

/// The folds as a Markdown table, the totals last.
pub fn markdown(doc: &Value) -> String {
    let mut s = format!(
        "# Walk-forward {}\n\nModel `{}` of {}; each fold trains on the segments before its test segment and trades only the test segment.\n\n\
         | fold | test from (ns) | model acc | model F1 | majority F1 | OFI F1 | signals | trades | gross | fees | net | Sharpe |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        doc["name"].as_str().unwrap_or(""),
        doc["model"].as_str().unwrap_or(""),
        doc["experiment"].as_str().unwrap_or("")
    );
    for f in doc["folds"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:+.4} | {:.4} | {:+.4} | {:.3} |\n",
            f["fold"],
            f["test_from_ns"],
            num(&f["model"]["accuracy"]),
            num(&f["model"]["macro_f1"]),
            num(&f["baselines"]["majority"]["macro_f1"]),
            num(&f["baselines"]["ofi_logistic"]["macro_f1"]),
            f["signal_points"],
            f["trades"],
            f["gross_pnl"].as_f64().unwrap_or(0.0),
            f["fees"].as_f64().unwrap_or(0.0),
            f["net_pnl"].as_f64().unwrap_or(0.0),
            f["sharpe"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    let t = &doc["total"];
    s.push_str(&format!(
        "\nTotal over {} folds: net P&L {:+.4} (gross {:+.4}, fees {:.4}), {} trades; {} profitable folds; net per fold {:+.4} ± {:.4} (sd).\n",
        t["folds"],
        t["net_pnl"].as_f64().unwrap_or(0.0),
        t["gross_pnl"].as_f64().unwrap_or(0.0),
        t["fees"].as_f64().unwrap_or(0.0),
        t["trades"],
        t["profitable_folds"],
        t["net_pnl_per_fold"]["mean"].as_f64().unwrap_or(0.0),
        t["net_pnl_per_fold"]["sd"].as_f64().unwrap_or(0.0),
    ));
    s
}

//! A sweep's results from its journal: the table (CSV and Markdown), the best trial's
//! experiment file, one plot per parameter (plotters, SVG), and the `--json` object.

use super::journal::{State, Trial, TrialState};
use super::spec::SweepSpec;
use crate::error::{Result, TrainError};
use plotters::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The best finished trial: the best value among the complete ones.
pub fn best<'a>(spec: &SweepSpec, st: &'a State) -> Option<&'a Trial> {
    st.trials.values().filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite)).min_by(|a, b| {
        spec.loss(a.value.unwrap_or(f64::NAN)).partial_cmp(&spec.loss(b.value.unwrap_or(f64::NAN))).unwrap_or(std::cmp::Ordering::Equal)
    })
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn fmt_value(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

/// Rows of the table: trial, every parameter, metric, status, epochs, seconds, run dir, test
/// accuracy / macro-F1.
fn rows(spec: &SweepSpec, st: &State) -> (Vec<String>, Vec<Vec<String>>) {
    let mut head = vec!["trial".to_string()];
    head.extend(spec.params.keys().cloned());
    head.extend([spec.metric.name().to_string(), "status".into(), "epochs".into(), "seconds".into(), "run_dir".into()]);
    head.extend(["test_accuracy".into(), "test_macro_f1".into()]);
    let rows = st
        .trials
        .values()
        .map(|t| {
            let mut r = vec![t.number.to_string()];
            r.extend(spec.params.keys().map(|k| t.params.get(k).map(cell).unwrap_or_default()));
            // Pruned trials show their best reported value.
            let v = t.value.or_else(|| {
                let vals = t.reports.values().copied();
                if spec.maximize() {
                    vals.reduce(f64::max)
                } else {
                    vals.reduce(f64::min)
                }
            });
            r.extend([
                fmt_value(v),
                t.state.name().into(),
                t.epochs.max(t.reports.len()).to_string(),
                format!("{:.1}", t.seconds),
                t.run_dir.clone(),
            ]);
            r.extend([cell(&t.test["accuracy"]), cell(&t.test["macro_f1"])]);
            r
        })
        .collect();
    (head, rows)
}

pub fn write_csv(path: &Path, spec: &SweepSpec, st: &State) -> Result<()> {
    let (head, rows) = rows(spec, st);
    let mut s = head.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",") + "\n";
    for r in rows {
        s += &(r.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",") + "\n");
    }
    std::fs::write(path, s).map_err(|e| TrainError::io(path, e))
}

pub fn markdown(spec: &SweepSpec, st: &State) -> String {
    let (head, rows) = rows(spec, st);
    let mut s = format!("| {} |\n|{}|\n", head.join(" | "), head.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        s += &format!("| {} |\n", r.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>().join(" | "));
    }
    s
}

/// One SVG per parameter: the metric of every trial against the parameter's value (complete
/// trials filled, pruned ones hollow at their best reported value, the best one red).
pub fn plot(dir: &Path, spec: &SweepSpec, st: &State) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let best_n = best(spec, st).map(|t| t.number);
    let mut out = Vec::new();
    for (name, d) in &spec.params {
        // (x, y, pruned, best)
        let pts: Vec<(f64, f64, bool, bool)> = st
            .trials
            .values()
            .filter_map(|t| {
                let y = match t.state {
                    TrialState::Complete => t.value,
                    TrialState::Pruned => t.reports.values().copied().reduce(if spec.maximize() { f64::max } else { f64::min }),
                    _ => None,
                }?;
                let v = t.params.get(name)?;
                let x = match d.category(v) {
                    Some(i) => i as f64,
                    None => v.as_f64()?,
                };
                Some((x, y, t.state == TrialState::Pruned, Some(t.number) == best_n))
            })
            .collect();
        let file = dir.join(format!("{}.svg", name.replace(['/', '\\', ' '], "_")));
        draw(&file, name, spec, d, &pts).map_err(|e| TrainError::card(&file, "plot", e))?;
        out.push(file);
    }
    Ok(out)
}

fn draw(
    file: &Path,
    name: &str,
    spec: &SweepSpec,
    d: &super::space::Distribution,
    pts: &[(f64, f64, bool, bool)],
) -> std::result::Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = SVGBackend::new(file, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (ylo, yhi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (ylo, yhi) = if ylo.is_finite() { (ylo, yhi) } else { (0.0, 1.0) };
    let pad = ((yhi - ylo) * 0.1).max(1e-3);
    let y = (ylo - pad)..(yhi + pad);
    let caption = format!("{} vs {name} ({} trials)", spec.metric.name(), pts.len());
    let mut builder = ChartBuilder::on(&root);
    builder.caption(caption, ("sans-serif", 18)).margin(14).x_label_area_size(40).y_label_area_size(60);
    let style = |p: &(f64, f64, bool, bool)| {
        let c = if p.3 {
            RED
        } else if p.2 {
            RGBColor(140, 140, 140)
        } else {
            BLUE
        };
        Circle::new((p.0, p.1), 5, if p.2 { c.stroke_width(2) } else { c.filled() })
    };
    match d {
        super::space::Distribution::Categorical { values } => {
            let labels: Vec<String> = values.iter().map(cell).collect();
            let n = values.len();
            let mut chart = builder.build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y).map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_desc(name)
                .y_desc(spec.metric.name())
                .x_labels(n.min(12))
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                        labels[i as usize].clone()
                    } else {
                        String::new()
                    }
                })
                .draw()
                .map_err(|x| e(&x))?;
            chart.draw_series(pts.iter().map(style)).map_err(|x| e(&x))?;
        }
        _ if d.is_log() => {
            let (a, b) = d.internal_bounds();
            let mut chart = builder.build_cartesian_2d((a.exp()..b.exp()).log_scale(), y).map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_desc(format!("{name} (log scale)"))
                .y_desc(spec.metric.name())
                .x_label_formatter(&|x| short(*x))
                .draw()
                .map_err(|x| e(&x))?;
            chart.draw_series(pts.iter().map(style)).map_err(|x| e(&x))?;
        }
        _ => {
            let (a, b) = d.internal_bounds();
            let mut chart = builder.build_cartesian_2d(a..b, y).map_err(|x| e(&x))?;
            chart.configure_mesh().x_desc(name).y_desc(spec.metric.name()).draw().map_err(|x| e(&x))?;
            chart.draw_series(pts.iter().map(style)).map_err(|x| e(&x))?;
        }
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// A tick label with at most 4 significant digits (0.009, not 0.009000000000000001).
fn short(x: f64) -> String {
    format!("{x:.3e}").parse::<f64>().map(|v| v.to_string()).unwrap_or_else(|_| x.to_string())
}

/// Writes every result file and returns the `--json` object.
pub fn write_all(spec: &SweepSpec, st: &State, backend: &super::backend::BackendReport) -> Result<Value> {
    let csv = spec.dir.join("results.csv");
    write_csv(&csv, spec, st)?;
    let md = spec.dir.join("results.md");
    let table = markdown(spec, st);
    let text = format!(
        "# Sweep {}\n\n{} trials, strategy {:?}, metric {} ({:?}){}.\n\n{table}",
        spec.name,
        st.trials.len(),
        spec.strategy,
        spec.metric.name(),
        spec.direction,
        spec.asha.as_ref().map(|a| format!(", ASHA (min_epochs {}, η = {})", a.min_epochs, a.reduction)).unwrap_or_default()
    );
    std::fs::write(&md, text).map_err(|e| TrainError::io(&md, e))?;
    let plots = plot(&spec.dir.join("plots"), spec, st)?;
    let best_trial = best(spec, st);
    let best_path = spec.dir.join("best.toml");
    let best_json = match best_trial {
        Some(t) => {
            let (_, text) = spec.experiment_named(t.number, &t.params, &format!("{}-best", spec.name))?;
            std::fs::write(&best_path, &text).map_err(|e| TrainError::io(&best_path, e))?;
            Some(trial_json(spec, t))
        }
        None => None,
    };
    let count = |s: TrialState| st.trials.values().filter(|t| t.state == s).count();
    Ok(json!({
        "sweep": spec.name,
        "dir": spec.dir.display().to_string(),
        "journal": spec.journal_path().display().to_string(),
        "strategy": spec.strategy,
        "metric": spec.metric.name(),
        "direction": spec.direction,
        "model": spec.model,
        "trials": st.trials.values().map(|t| trial_json(spec, t)).collect::<Vec<_>>(),
        "counts": {"complete": count(TrialState::Complete), "pruned": count(TrialState::Pruned), "failed": count(TrialState::Failed),
                   "running": count(TrialState::Running), "waiting": count(TrialState::Waiting), "planned": spec.trials},
        "best": best_json,
        "files": {"csv": csv.display().to_string(), "markdown": md.display().to_string(),
                  "best_experiment": best_trial.map(|_| best_path.display().to_string()),
                  "plots": plots.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()},
        "backend": backend,
    }))
}

fn trial_json(spec: &SweepSpec, t: &Trial) -> Value {
    let _ = spec;
    json!({
        "trial": t.number,
        "params": t.params,
        "value": t.value,
        "status": t.state.name(),
        "epochs": t.epochs.max(t.reports.len()),
        "seconds": t.seconds,
        "run_dir": t.run_dir,
        "attempts": t.attempts,
        "reports": t.reports.iter().map(|(e, v)| json!({"epoch": e, "value": v})).collect::<Vec<_>>(),
        "test": t.test,
        "error": t.error,
    })
}

//! `report.html`: the metrics table and the plots (plotters, SVG inline — no scripts, so the
//! page renders offline and headless).

use crate::config::BacktestConfig;
use crate::engine::Outcome;
use crate::error::{BacktestError, Result};
use crate::metrics::Metrics;
use crate::metrics::SweepPoint;
use plotters::prelude::*;
use serde_json::Value;

type Pts = Vec<(f64, f64)>;

fn bounds(series: &[&Pts]) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for &(x, y) in s.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if !x0.is_finite() {
        return (0.0, 1.0, 0.0, 1.0);
    }
    let pad = |a: f64, b: f64| if (b - a).abs() < 1e-12 { (a - 1.0, b + 1.0) } else { (a - (b - a) * 0.05, b + (b - a) * 0.05) };
    let (x0, x1) = pad(x0, x1);
    let (y0, y1) = pad(y0, y1);
    (x0, x1, y0, y1)
}

fn err(e: impl std::fmt::Display) -> BacktestError {
    BacktestError::Config(format!("report plot: {e}"))
}

/// A line chart (`scatter` = points instead) of named series.
fn chart(title: &str, xd: &str, yd: &str, series: &[(&str, &Pts, RGBColor)], scatter: bool) -> Result<String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let all: Vec<&Pts> = series.iter().map(|x| x.1).collect();
        let (x0, x1, y0, y1) = bounds(&all);
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        c.configure_mesh().x_desc(xd).y_desc(yd).draw().map_err(err)?;
        for &(name, pts, color) in series {
            let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            if scatter {
                c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.mix(0.6).filled())))
                    .map_err(err)?
                    .label(name)
                    .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
            } else {
                c.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(err)?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
        }
        c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

/// A bar chart of `(label, value)`.
fn bars(title: &str, yd: &str, data: &[(i32, f64)], xd: &str) -> Result<String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (lo, hi) = data.iter().fold((0f64, 0f64), |a, b| (a.0.min(b.1), a.1.max(b.1)));
        let (lo, hi) = if hi - lo < 1e-12 { (lo - 1.0, hi + 1.0) } else { (lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05) };
        let x0 = data.iter().map(|d| d.0).min().unwrap_or(0);
        let x1 = data.iter().map(|d| d.0).max().unwrap_or(0) + 1;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, lo..hi)
            .map_err(err)?;
        c.configure_mesh().x_desc(xd).y_desc(yd).draw().map_err(err)?;
        c.draw_series(data.iter().map(|&(x, v)| {
            let color = if v >= 0.0 { GREEN } else { RED };
            Rectangle::new([(x, 0.0), (x + 1, v)], color.mix(0.7).filled())
        }))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

/// A histogram of `values` in `n` equal bins.
fn histogram(title: &str, xd: &str, values: &[f64], n: usize) -> Result<String> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, &b| (a.0.min(b), a.1.max(b)));
    let (lo, hi) = if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    let w = (hi - lo) / n as f64;
    let mut counts = vec![0usize; n];
    for x in &v {
        counts[(((x - lo) / w) as usize).min(n - 1)] += 1;
    }
    let pts: Pts = counts.iter().enumerate().map(|(i, &c)| (lo + (i as f64 + 0.5) * w, c as f64)).collect();
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (720, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(err)?;
        c.configure_mesh().x_desc(xd).y_desc("round trips").draw().map_err(err)?;
        c.draw_series(pts.iter().map(|&(x, y)| Rectangle::new([(x - w / 2.0, 0.0), (x + w / 2.0, y)], BLUE.mix(0.6).filled())))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

fn fmt(v: &Value) -> String {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map(|x| if x.fract() == 0.0 && x.abs() < 1e15 { format!("{x:.0}") } else { format!("{x:.6}") })
            .unwrap_or_else(|| n.to_string()),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn render(cfg: &BacktestConfig, o: &Outcome, m: &Metrics, sweep: &[SweepPoint], summary: &Value) -> Result<String> {
    let t0 = o.marks.first().map_or(0, |x| x.ts);
    let minutes = |ts: i64| (ts - t0) as f64 / 60e9;
    let gross: Pts = o.marks.iter().map(|x| (minutes(x.ts), x.gross)).collect();
    let net: Pts = o.marks.iter().map(|x| (minutes(x.ts), x.net)).collect();
    let mut peak = f64::NEG_INFINITY;
    let dd: Pts = o
        .marks
        .iter()
        .map(|x| {
            peak = peak.max(x.net);
            (minutes(x.ts), x.net - peak)
        })
        .collect();
    let trip_net: Vec<f64> = o.trips.iter().map(|t| t.gross - t.fees).collect();
    let hold: Pts = o.trips.iter().map(|t| ((t.exit_ts - t.entry_ts) as f64 / 1e9, t.gross - t.fees)).collect();
    let strength: Pts = o.trips.iter().map(|t| (t.entry_strength as f64 * t.side as f64, t.gross - t.fees)).collect();
    let mut by_hour = std::collections::BTreeMap::<i32, f64>::new();
    for t in &o.trips {
        *by_hour.entry((t.exit_ts.rem_euclid(86_400_000_000_000) / 3_600_000_000_000) as i32).or_default() += t.gross - t.fees;
    }
    let hours: Vec<(i32, f64)> = by_hour.into_iter().collect();
    let mut plots: Vec<(&str, &str, String)> = vec![
        (
            "pnl",
            "Cumulative P&L",
            chart("Cumulative P&L", "minutes", "quote currency", &[("gross", &gross, BLUE), ("net", &net, RED)], false)?,
        ),
        ("drawdown", "Drawdown", chart("Drawdown of net equity", "minutes", "quote currency", &[("drawdown", &dd, RED)], false)?),
        ("distribution", "P&L distribution", histogram("Net P&L per round trip", "quote currency", &trip_net, 30)?),
        (
            "holding",
            "Holding time vs P&L",
            chart("Holding time vs net P&L", "seconds held", "net P&L", &[("round trips", &hold, BLUE)], true)?,
        ),
        (
            "strength",
            "Signal strength vs P&L",
            chart(
                "Signal strength (signed by side) vs net P&L",
                "strength × side",
                "net P&L",
                &[("round trips", &strength, MAGENTA)],
                true,
            )?,
        ),
        ("hour", "P&L by hour", bars("Net P&L by hour of exit (UTC)", "quote currency", &hours, "hour")?),
    ];
    if !sweep.is_empty() {
        let us = |p: &SweepPoint| (p.latency_ns as f64 / 1e3).max(0.0);
        let pnl: Pts = sweep.iter().map(|p| (us(p), p.net_pnl)).collect();
        let fill: Pts = sweep.iter().map(|p| (us(p), p.fill_rate)).collect();
        plots.push((
            "latency",
            "Latency vs net P&L",
            chart("Net P&L against order latency", "latency each way (µs)", "net P&L", &[("net P&L", &pnl, RED)], false)?,
        ));
        plots.push((
            "latency_fill",
            "Latency vs fill rate",
            chart("Fill rate against order latency", "latency each way (µs)", "fill rate", &[("fill rate", &fill, BLUE)], false)?,
        ));
    }
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    html.push_str(&esc(&cfg.name));
    html.push_str(" — flowcast backtest</title><style>body{font-family:sans-serif;margin:2em;max-width:1500px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{text-align:left}figure{display:inline-block;margin:8px}</style></head><body>\n");
    html.push_str(&format!(
        "<h1>Backtest {}</h1>\n<p>strategy <b>{}</b> · {} · queue {} · fill {:?} · latency {} · run <code>{}</code></p>\n",
        esc(&cfg.name),
        o.strategy,
        esc(summary["dataset"]["instrument"].as_str().unwrap_or("")),
        o.queue_model,
        cfg.exchange.fill,
        o.latency_model,
        esc(summary["run_dir"].as_str().unwrap_or(""))
    ));
    html.push_str("<h2>Metrics</h2>\n<table id=\"metrics\">\n");
    let mv = serde_json::to_value(m).expect("json");
    if let Value::Object(map) = &mv {
        for (k, v) in map {
            if matches!(v, Value::Array(_) | Value::Object(_)) {
                continue;
            }
            html.push_str(&format!("<tr><th>{k}</th><td>{}</td></tr>\n", fmt(v)));
        }
    }
    html.push_str(
        "</table>\n<h3>Signal</h3>\n<table id=\"signal\"><tr><th>horizon</th><th>n</th><th>IC</th><th>rank IC</th><th>hit rate</th></tr>\n",
    );
    for s in &m.signal {
        html.push_str(&format!(
            "<tr><th>{}</th><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td></tr>\n",
            s.horizon, s.n, s.ic, s.rank_ic, s.hit_rate
        ));
    }
    html.push_str("</table>\n<h3>Risk-limit hits</h3>\n<table id=\"risk\">\n");
    for (k, v) in &m.risk_hits {
        html.push_str(&format!("<tr><th>{k}</th><td>{v}</td></tr>\n"));
    }
    html.push_str("</table>\n<h2>Plots</h2>\n");
    for (id, caption, svg) in &plots {
        html.push_str(&format!("<figure class=\"plot\" id=\"plot-{id}\">{svg}<figcaption>{caption}</figcaption></figure>\n"));
    }
    html.push_str("</body></html>\n");
    Ok(html)
}

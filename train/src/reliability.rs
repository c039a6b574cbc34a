//! Reliability diagrams (SVG, plotters): per model, the mean top-label confidence against the
//! accuracy of each non-empty calibration bin (`Metrics::reliability`, 15 equal-width bins;
//! docs/metrics.md), with the diagonal of perfect calibration. Written as
//! `<model dir>/reliability.svg` by every run.

use crate::error::{Result, TrainError};
use flowcast_contract::metrics::ReliabilityBin;
use plotters::prelude::*;
use std::path::Path;

/// Draws `series` (name, bins) into `file`.
pub fn write_svg(file: &Path, title: &str, series: &[(&str, Vec<ReliabilityBin>)]) -> Result<()> {
    draw(file, title, series).map_err(|e| TrainError::Invalid(format!("{}: reliability plot: {e}", file.display())))
}

fn draw(file: &Path, title: &str, series: &[(&str, Vec<ReliabilityBin>)]) -> std::result::Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = SVGBackend::new(file, (560, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0f64..1.0, 0.0f64..1.0)
        .map_err(|x| e(&x))?;
    chart.configure_mesh().x_desc("mean confidence (top class)").y_desc("accuracy").draw().map_err(|x| e(&x))?;
    chart.draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.0), (1.0, 1.0)], RGBColor(150, 150, 150)))).map_err(|x| e(&x))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN];
    for (i, (name, bins)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        let pts: Vec<(f64, f64)> = bins.iter().filter_map(|b| Some((b.confidence?, b.accuracy?))).collect();
        chart
            .draw_series(std::iter::once(PathElement::new(pts.clone(), c.stroke_width(2))))
            .map_err(|x| e(&x))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(|x| e(&x))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// The reliability bins stored at `v` (a `Metrics` JSON's `reliability`), if any.
pub fn bins_of(v: &serde_json::Value) -> Option<Vec<ReliabilityBin>> {
    serde_json::from_value::<Vec<ReliabilityBin>>(v.clone()).ok().filter(|b| !b.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_series() {
        let m = flowcast_contract::metrics::Metrics::compute(&[0, 1, 1, 0], &[0.9, 0.1, 0.6, 0.4, 0.3, 0.7, 0.5, 0.5], 2);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.svg");
        write_svg(&p, "t", &[("batch", m.reliability.clone()), ("prequential", m.reliability)]).unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.starts_with("<svg") && s.contains("batch") && s.contains("prequential"), "{}", &s[..200.min(s.len())]);
        assert!(bins_of(&serde_json::json!([])).is_none());
    }
}

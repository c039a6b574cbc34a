//! Prequential ("predictive sequential", Dawid 1984) evaluation of an [`OnlinePredictor`]: walk
//! the windows in time order, predict each one with the state as it is, and hand the model a
//! window's label only once that label has matured — at the first sample row at which its
//! future mid is observable. No prediction ever sees its own label or a later one.
//!
//! Maturity row m(e) of the label of end row e (docs/models.md, "Prequential evaluation"):
//! - row horizons (`smoothed`, `smoothed_past` with k, `events` with h): m(e) = e + h — the label
//!   reads mids up to row e + h;
//! - clock horizons (`clock`, duration h): the first row r > e with τ_r ≥ τ_e + h, τ the running
//!   maximum of the rows' exchange timestamps (the label's own time base, `datasets::labels`).
//!
//! Before predicting window j (end row e_j) every pending label with m(e) ≤ e_j is absorbed, in
//! the order of maturity (ties by end row).

use crate::error::{ContractError, Result};
use crate::predictor::{Batch, Matured, OnlinePredictor, Outputs};
use crate::target::{LabelKind, TargetDef};
use crate::window::WindowSet;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The maturity row of each window's label (`usize::MAX` when it never matures within `ts`,
/// which cannot happen for a labelled row but is kept safe).
pub fn maturity_rows(def: &TargetDef, ts: &[i64], ends: &[u32]) -> Result<Vec<usize>> {
    match def.kind {
        LabelKind::Smoothed | LabelKind::SmoothedPast | LabelKind::Events => {
            let h = def.horizon.ok_or_else(|| ContractError::Invalid(format!("target {}: no horizon", def.id)))?;
            Ok(ends.iter().map(|&e| e as usize + h).collect())
        }
        LabelKind::Clock => {
            let d = def.duration.as_deref().ok_or_else(|| ContractError::Invalid(format!("target {}: no duration", def.id)))?;
            let h = flowcast_datasets::time::parse_duration(d).map_err(|e| ContractError::Invalid(format!("target {}: {e}", def.id)))?;
            let mut tau = Vec::with_capacity(ts.len());
            let mut mx = i64::MIN;
            for &t in ts {
                mx = mx.max(t);
                tau.push(mx);
            }
            Ok(ends
                .iter()
                .map(|&e| {
                    let e = e as usize;
                    let want = tau[e].saturating_add(h);
                    // τ is non-decreasing: the first row at or after `want`, strictly after e.
                    let r = tau.partition_point(|&t| t < want).max(e + 1);
                    if r < tau.len() {
                        r
                    } else {
                        usize::MAX
                    }
                })
                .collect())
        }
    }
}

/// What a prequential pass gives: the outputs of every window (predicted before its label was
/// known) and how many labels were absorbed during the pass.
pub struct PrequentialOutcome {
    pub outputs: Outputs,
    pub updates: usize,
}

/// Runs `model` over the windows of `set` in order (their end rows must increase), absorbing
/// each window's target value (`set.values`, bps) once its label has matured (`mature[i]` is
/// window i's maturity row, [`maturity_rows`]).
pub fn prequential(model: &mut dyn OnlinePredictor, set: &WindowSet, mature: &[usize]) -> Result<PrequentialOutcome> {
    let n = set.len();
    if mature.len() != n || set.values.len() != n {
        return Err(ContractError::Invalid(format!(
            "prequential: {n} windows, {} maturity rows, {} target values",
            mature.len(),
            set.values.len()
        )));
    }
    if let Some(i) = (1..n).find(|&i| set.ends[i] <= set.ends[i - 1]) {
        return Err(ContractError::Invalid(format!("prequential: window {i}'s end row does not increase")));
    }
    let (t, f) = (set.window, set.data.cols());
    let mut out = Outputs::new(model.info().classes.len());
    let mut pending: BinaryHeap<Reverse<(usize, usize)>> = BinaryHeap::new();
    let mut updates = 0;
    for (j, &m_j) in mature.iter().enumerate() {
        let e = set.ends[j] as usize;
        while let Some(&Reverse((m, i))) = pending.peek() {
            if m > e {
                break;
            }
            pending.pop();
            let b = Batch { x: set.view(i), batch: 1, window: t, features: f, window_ofi: None };
            model.update(&b, &Matured { classes: &set.labels[i..i + 1], values: &set.values[i..i + 1] })?;
            updates += 1;
        }
        let b = Batch { x: set.view(j), batch: 1, window: t, features: f, window_ofi: None };
        model.predict(&b, &mut out)?;
        pending.push(Reverse((m_j, j)));
    }
    Ok(PrequentialOutcome { outputs: out, updates })
}

/// Two window sets of one matrix in time order as one (validation then test: the online model
/// keeps learning across the purge gap, where only matured labels arrive).
pub fn concat(a: &WindowSet, b: &WindowSet) -> WindowSet {
    assert!(std::sync::Arc::ptr_eq(&a.data, &b.data) && a.window == b.window, "windows of one matrix");
    let mut ends = a.ends.clone();
    ends.extend(&b.ends);
    let mut labels = a.labels.clone();
    labels.extend(&b.labels);
    let s = WindowSet::new(a.data.clone(), a.window, ends, labels);
    if a.values.len() == a.len() && b.values.len() == b.len() {
        let mut v = a.values.clone();
        v.extend(&b.values);
        s.with_values(v)
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bayes::{BayesConfig, BayesOnline};
    use crate::window::Matrix;
    use std::sync::Arc;

    fn def(kind: LabelKind, horizon: Option<usize>, duration: Option<&str>) -> TargetDef {
        TargetDef {
            id: "t".into(),
            kind,
            horizon,
            duration: duration.map(String::from),
            target: "x".into(),
            definition: "x".into(),
            output: crate::target::OutputKind::Direction,
            alpha: 0.0,
            alpha_rule: "fixed".into(),
            classes: crate::target::DIRECTION_CLASSES.iter().map(|s| s.to_string()).collect(),
            unit: "bps".into(),
        }
    }

    #[test]
    fn maturity_follows_the_horizon_in_rows_or_clock_time() {
        let ts = [0, 10, 20, 20, 35, 50, 60];
        let m = maturity_rows(&def(LabelKind::Smoothed, Some(3), None), &ts, &[0, 2]).unwrap();
        assert_eq!(m, [3, 5]);
        // 20 ns after row 0 (τ 0) is row 2 (τ 20); after row 1 (τ 10): τ ≥ 30 → row 4 (35);
        // after row 2 (20): ≥ 40 → row 5; after row 5: ≥ 70 → never.
        let m = maturity_rows(&def(LabelKind::Clock, None, Some("20ns")), &ts, &[0, 1, 2, 5]).unwrap();
        assert_eq!(m, [2, 4, 5, usize::MAX]);
    }

    /// A linear target on 2 features, 200 rows, window 1.
    fn data() -> WindowSet {
        let n = 200;
        let mut v = Vec::with_capacity(n * 2);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let (a, b) = (((i * 37) % 11) as f32 / 5.0 - 1.0, ((i * 13) % 7) as f32 / 3.0 - 1.0);
            v.extend([a, b]);
            y.push(2.0 * a - b + 0.1 * (((i * 7) % 5) as f32 - 2.0));
        }
        let m = Arc::new(Matrix { names: vec!["a".into(), "b".into()], values: v });
        WindowSet::new(m, 1, (0..n as u32).collect(), vec![1; n]).with_values(y)
    }

    fn run(set: &WindowSet, mature: &[usize]) -> Outputs {
        let mut m = BayesOnline::new(BayesConfig { alpha_bps: 0.5, ..Default::default() }, 1, 2).unwrap();
        prequential(&mut m, set, mature).unwrap().outputs
    }

    #[test]
    fn a_perturbed_label_changes_no_prediction_made_before_it_matured() {
        let set = data();
        let h = 10;
        let mature = maturity_rows(&def(LabelKind::Events, Some(h), None), &[0; 200], &set.ends).unwrap();
        let base = run(&set, &mature);
        assert_eq!(base.len(), set.len());
        for i in [0usize, 57, 150] {
            let mut bad = set.clone();
            bad.values[i] += 1000.0;
            let got = run(&bad, &mature);
            let first_after = mature[i]; // window index = row here
            for j in 0..set.len() {
                let same = got.regression[j] == base.regression[j] && got.std[j] == base.std[j];
                if j < first_after {
                    assert!(same, "label {i} (matures at row {}) changed the prediction at row {j}", mature[i]);
                } else if j == first_after {
                    // The first prediction after maturity has absorbed it: it must differ.
                    assert!(!same, "label {i} never reached the model by row {j}");
                }
            }
        }
    }

    #[test]
    fn the_model_learns_online_and_lags_by_the_horizon() {
        let set = data();
        let mature: Vec<usize> = set.ends.iter().map(|&e| e as usize + 5).collect();
        let mut m = BayesOnline::new(BayesConfig { alpha_bps: 0.5, ..Default::default() }, 1, 2).unwrap();
        let o = prequential(&mut m, &set, &mature).unwrap();
        // 200 windows, the last 5 labels still pending at the end.
        assert_eq!(o.updates, 195);
        assert!(o.outputs.regression[..5].iter().all(|&v| v == 0.0), "the prior predicts 0 until row 5");
        assert!(o.outputs.regression[5] != 0.0, "label 0 matures at row 5");
        let err: f32 = (150..200).map(|j| (o.outputs.regression[j] - set.values[j]).abs()).sum::<f32>() / 50.0;
        assert!(err < 0.2, "mean abs error late in the stream {err}");
        let e = prequential(&mut m, &set, &mature[..3]).err().unwrap().to_string();
        assert!(e.contains("3 maturity rows"), "{e}");
    }
}

//! Early stopping of bad trials: asynchronous successive halving (ASHA, Li et al. 2020, "A
//! System for Massively Parallel Hyperparameter Tuning", MLSys), in its stopping form. Rungs sit
//! at epochs r_k = min_epochs · η^k; a trial reaching a rung continues only while its validation
//! metric ranks in the top ⌊n/η⌋ of the n values recorded at that rung so far (itself included);
//! while a rung holds fewer than η values every trial continues (as Ray Tune's ASHA scheduler
//! does: no cut-off from fewer values than one halving needs). Asynchronous: it compares with
//! whoever reached the rung before, never waits.

use serde::{Deserialize, Serialize};

/// `[asha]` of a sweep file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AshaConfig {
    /// Epochs of the first rung.
    #[serde(default = "one")]
    pub min_epochs: usize,
    /// η: each rung keeps about 1/η of the trials.
    #[serde(default = "three")]
    pub reduction: usize,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}

impl AshaConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.min_epochs == 0 || self.reduction < 2 {
            return Err(format!("[asha] needs min_epochs ≥ 1 and reduction ≥ 2, got {} and {}", self.min_epochs, self.reduction));
        }
        Ok(())
    }

    /// Whether `epoch` (1-based, completed) is a rung.
    pub fn is_rung(&self, epoch: usize) -> bool {
        let mut r = self.min_epochs;
        while r < epoch {
            r = r.saturating_mul(self.reduction);
        }
        r == epoch
    }

    /// Continue (true) or stop the trial whose value at a rung is `value`, given the `others`
    /// recorded at the same rung by other trials. `maximize` says which way is better.
    pub fn promote(&self, value: f64, others: &[f64], maximize: bool) -> bool {
        if !value.is_finite() {
            return false;
        }
        let better = |o: &f64| if maximize { *o > value } else { *o < value };
        let rank = 1 + others.iter().filter(|o| o.is_finite() && better(o)).count();
        let n = others.len() + 1;
        n < self.reduction || rank <= n / self.reduction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_are_geometric() {
        let a = AshaConfig { min_epochs: 1, reduction: 3 };
        let rungs: Vec<usize> = (1..=30).filter(|&e| a.is_rung(e)).collect();
        assert_eq!(rungs, vec![1, 3, 9, 27]);
        let b = AshaConfig { min_epochs: 2, reduction: 2 };
        assert_eq!((1..=20).filter(|&e| b.is_rung(e)).collect::<Vec<_>>(), vec![2, 4, 8, 16]);
    }

    #[test]
    fn promotion_keeps_the_top_share() {
        let a = AshaConfig { min_epochs: 1, reduction: 3 };
        // Fewer than η = 3 values at the rung: everyone continues.
        assert!(a.promote(0.1, &[], true));
        assert!(a.promote(0.3, &[0.4], true));
        // 3 values: the top ⌊3/3⌋ = 1 continues.
        assert!(a.promote(0.5, &[0.4, 0.45], true));
        assert!(!a.promote(0.42, &[0.4, 0.45], true));
        // 6 values: the top 2 continue.
        let others = [0.9, 0.8, 0.7, 0.6, 0.5];
        assert!(a.promote(0.85, &others, true)); // rank 2
        assert!(!a.promote(0.75, &others, true)); // rank 3
                                                  // Minimising (a loss): smaller is better.
        assert!(a.promote(0.1, &[0.2, 0.3], false));
        assert!(!a.promote(0.25, &[0.2, 0.3], false));
        // η = 2: a pair is halved.
        let h = AshaConfig { min_epochs: 1, reduction: 2 };
        assert!(h.promote(0.5, &[0.4], true) && !h.promote(0.3, &[0.4], true));
        // Ties do not push a trial out; NaN never continues.
        assert!(a.promote(0.5, &[0.5, 0.5], true));
        assert!(!a.promote(f64::NAN, &[], true));
    }
}

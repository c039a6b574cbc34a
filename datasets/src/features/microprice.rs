//! Stoikov (2018) micro-price estimator, in ticks.
//!
//! State x = (spread s ∈ 1..=S ticks, imbalance bucket b ∈ 0..n), I = q^b/(q^b + q^a) at the
//! touch. From consecutive quote updates (training rows where the touch changed) count
//! transitions x → y with mid change dM ∈ {0, ±½, ±1} tick (larger moves dropped, as in the
//! paper), symmetrised (b → n−1−b, dM → −dM). With Q the no-move transition matrix, R1 the
//! probabilities of each dM ≠ 0 and R2 the post-move state transitions (rows normalised by all
//! transitions out of x):
//!
//!   G1 = (I − Q)⁻¹ R1 K,   B = (I − Q)⁻¹ R2,   g* = Σ_{i≥0} Bⁱ G1,
//!
//! K = (−1, −½, ½, 1)ᵀ, and the micro-price is mid + g*(x). Imbalance buckets are quantiles of
//! the symmetrised training imbalances (the paper's `qcut`), so bucket(1 − I) = n − 1 − bucket(I).

use crate::error::{DataError, Result};

/// Bucket of imbalance `i`: the number of interior edges strictly below it.
#[inline]
pub(crate) fn imbalance_bucket(edges: &[f64], i: f64) -> usize {
    edges.iter().take_while(|&&e| i > e).count()
}

/// Interior edges of `n` equal-count buckets of the values `xs ∪ (1 − xs)` (linear interpolation
/// between order statistics, as pandas' `quantile`).
pub(crate) fn symmetric_edges(xs: &[f64], n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = xs.iter().flat_map(|&x| [x, 1.0 - x]).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    (1..n)
        .map(|k| {
            if v.is_empty() {
                return k as f64 / n as f64;
            }
            let pos = k as f64 / n as f64 * (v.len() - 1) as f64;
            let (lo, f) = (pos.floor() as usize, pos.fract());
            let hi = (lo + 1).min(v.len() - 1);
            v[lo] + f * (v[hi] - v[lo])
        })
        .collect()
}

/// One quote transition: from state, to state, mid change in half ticks (|dm| ≤ 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: usize,
    pub to: usize,
    pub dm_half: i64,
}

/// g* per state (None where the state was never left in training, or can never reach a mid
/// move), and whether Σ Bⁱ G1 converged. States index `(s − 1) × buckets + b`.
pub fn estimate(trans: &[Transition], buckets: usize, spreads: usize) -> Result<(Vec<Option<f64>>, bool)> {
    let n = buckets * spreads;
    let mirror = |x: usize| (x / buckets) * buckets + (buckets - 1 - x % buckets);
    let mut q = vec![vec![0.0f64; n]; n];
    let mut r1k = vec![0.0f64; n];
    let mut r2 = vec![vec![0.0f64; n]; n];
    let mut tot = vec![0.0f64; n];
    let mut moves = vec![0.0f64; n];
    for t in trans {
        if t.from >= n || t.to >= n || t.dm_half.abs() > 2 {
            return Err(DataError::Invalid(format!("micro-price: bad transition {t:?} for {n} states")));
        }
        for (x, y, dm) in [(t.from, t.to, t.dm_half), (mirror(t.from), mirror(t.to), -t.dm_half)] {
            tot[x] += 1.0;
            if dm == 0 {
                q[x][y] += 1.0;
            } else {
                r1k[x] += dm as f64 / 2.0; // K entry for this move, in ticks
                r2[x][y] += 1.0;
                moves[x] += 1.0;
            }
        }
    }
    // States that cannot reach a mid move through no-move transitions have no finite g*.
    let mut reach: Vec<bool> = moves.iter().map(|&m| m > 0.0).collect();
    loop {
        let mut changed = false;
        for x in 0..n {
            if !reach[x] && (0..n).any(|y| q[x][y] > 0.0 && reach[y]) {
                reach[x] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Augmented system (I − Q) [G1 | B] = [R1K | R2], rows normalised by transitions out of x.
    let w = 1 + n;
    let mut a = vec![vec![0.0f64; n + w]; n];
    for x in 0..n {
        a[x][x] = 1.0;
        if !reach[x] || tot[x] == 0.0 {
            continue;
        }
        for y in 0..n {
            a[x][y] -= q[x][y] / tot[x];
            a[x][n + 1 + y] = r2[x][y] / tot[x];
        }
        a[x][n] = r1k[x] / tot[x];
    }
    gauss_jordan(&mut a, n)?;
    let g1: Vec<f64> = (0..n).map(|x| a[x][n]).collect();
    let b = |x: usize, y: usize| a[x][n + 1 + y];
    let mut g = g1.clone();
    let mut term = g1;
    let mut converged = false;
    for _ in 0..10_000 {
        let next: Vec<f64> = (0..n).map(|x| (0..n).map(|y| b(x, y) * term[y]).sum()).collect();
        let size = next.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for x in 0..n {
            g[x] += next[x];
        }
        term = next;
        if size < 1e-12 {
            converged = true;
            break;
        }
    }
    let out = (0..n).map(|x| (reach[x] && tot[x] > 0.0).then_some(g[x])).collect();
    Ok((out, converged))
}

/// Solve in place: `a` is n × (n + m); on return the left block is I and the right the solution.
fn gauss_jordan(a: &mut [Vec<f64>], n: usize) -> Result<()> {
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap_or(c);
        if a[p][c].abs() < 1e-12 {
            return Err(DataError::Invalid("micro-price: singular transition system (training data too small?)".into()));
        }
        a.swap(c, p);
        let piv = a[c][c];
        for v in a[c].iter_mut() {
            *v /= piv;
        }
        let row = a[c].clone();
        for (i, r) in a.iter_mut().enumerate() {
            if i != c && r[c] != 0.0 {
                let f = r[c];
                for (v, rv) in r.iter_mut().zip(&row) {
                    *v -= f * rv;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two imbalance buckets, one spread. From the high bucket (1): no move and stay, 4/8; up a
    /// tick staying high, 3/8; up a tick landing low, 1/8 (the low bucket mirrors this through the
    /// symmetrisation). By hand: Q = ½ I, so (I − Q)⁻¹ = 2I and G1 = 2·(±½) = (−1, 1);
    /// B = 2·R2 = [[¾, ¼], [¼, ¾]] has B·(−1, 1) = ½·(−1, 1), so g* = Σ 2⁻ⁱ (−1, 1) = (−2, 2).
    #[test]
    fn hand_computed_two_state_chain() {
        let mut t = vec![];
        for _ in 0..4 {
            t.push(Transition { from: 1, to: 1, dm_half: 0 });
        }
        for _ in 0..3 {
            t.push(Transition { from: 1, to: 1, dm_half: 2 });
        }
        t.push(Transition { from: 1, to: 0, dm_half: 2 });
        let (g, conv) = estimate(&t, 2, 1).unwrap();
        assert!(conv);
        assert!((g[1].unwrap() - 2.0).abs() < 1e-9, "{g:?}");
        assert!((g[0].unwrap() + 2.0).abs() < 1e-9, "{g:?}");
    }

    #[test]
    fn periodic_chain_is_reported_and_stays_antisymmetric() {
        // Spreads 1 and 2 ticks, 2 buckets: the mid goes up half a tick from (1 tick, high) into
        // (2 ticks, high) and back down. B is a permutation, so Σ Bⁱ G1 oscillates: reported as
        // not converged; the symmetrisation still makes g* antisymmetric in the bucket.
        let t = vec![Transition { from: 1, to: 3, dm_half: 1 }, Transition { from: 3, to: 1, dm_half: -1 }];
        let (g, conv) = estimate(&t, 2, 2).unwrap();
        assert!(!conv);
        for (x, m) in [(0usize, 1usize), (2, 3)] {
            assert!((g[x].unwrap() + g[m].unwrap()).abs() < 1e-9, "{g:?}");
        }
    }

    #[test]
    fn unvisited_and_moveless_states_are_none() {
        // Only (bucket 1) ↔ (bucket 1) no-move transitions: no state ever reaches a move.
        let t = vec![Transition { from: 1, to: 1, dm_half: 0 }];
        let (g, _) = estimate(&t, 3, 1).unwrap();
        assert_eq!(g, vec![None, None, None]);
    }

    #[test]
    fn symmetric_edges_are_symmetric() {
        let e = symmetric_edges(&[0.1, 0.2, 0.7, 0.9, 0.5], 4);
        assert_eq!(e.len(), 3);
        assert!((e[1] - 0.5).abs() < 1e-12);
        assert!((e[0] + e[2] - 1.0).abs() < 1e-12);
        assert_eq!(imbalance_bucket(&e, 0.0), 0);
        assert_eq!(imbalance_bucket(&e, 1.0), 3);
        assert_eq!(imbalance_bucket(&e, 0.5), 1);
    }
}

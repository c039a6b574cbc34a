//! Queue position of a resting limit order. The replayed market cannot see our order, so where it
//! stands among the visible size at its price has to be modelled (L2 sources) or tracked exactly
//! from order ids (L3 sources). `front` is the quantity (lots) ahead of our order; a trade at our
//! price of size `q` reaches our order only for the part beyond `front` (fill rules:
//! [`crate::exchange::FillRule`]).

use serde::{Deserialize, Serialize};

/// Queue state of one resting order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueuePos {
    /// Lots ahead of our order (negative right after a trade went past our order: the excess is
    /// what reached us).
    pub front: f64,
    /// Event index at which the order joined the queue (exact FIFO: orders added later are behind).
    pub placed_at: u64,
}

/// How the quantity ahead of an order evolves (formulas: docs/backtest.md, "Queue models").
pub trait QueueModel {
    fn name(&self) -> &'static str;
    /// The order joins the back of a level that shows `level_qty` lots.
    fn on_new(&self, q: &mut QueuePos, level_qty: i64) {
        q.front = level_qty as f64;
    }
    /// A trade of `qty` lots at our price against our side: it consumes the queue from the front.
    fn on_trade(&self, q: &mut QueuePos, qty: i64) {
        q.front -= qty as f64;
    }
    /// The visible size at our price changed from `prev` to `new` lots (adds, cancels, and the
    /// book's own reflection of trades).
    fn on_depth(&self, q: &mut QueuePos, prev: i64, new: i64);
    /// True when the model is driven by L3 order events (the exchange then calls
    /// [`QueueModel::on_ahead_removed`] instead of `on_trade`/`on_depth`).
    fn uses_l3(&self) -> bool {
        false
    }
    /// L3: `qty` lots of an order that was ahead of ours left the queue (executed or cancelled).
    fn on_ahead_removed(&self, q: &mut QueuePos, qty: i64) {
        q.front -= qty as f64;
    }
}

/// Risk-averse (hftbacktest's `RiskAverseQueueModel`): cancellations happen behind us, so only
/// trades advance the order: `trade: front ← front − q`; `depth: front ← min(front, new)` (the
/// queue ahead cannot exceed what is visible).
#[derive(Clone, Copy, Debug, Default)]
pub struct RiskAverse;

impl QueueModel for RiskAverse {
    fn name(&self) -> &'static str {
        "risk_averse"
    }
    fn on_depth(&self, q: &mut QueuePos, _prev: i64, new: i64) {
        q.front = q.front.min(new as f64);
    }
}

/// The weighting function of [`Probabilistic`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbFn {
    /// `f(x) = x^n`.
    Power(f64),
    /// `f(x) = ln(1 + x)`.
    Log,
}

impl ProbFn {
    #[inline]
    fn f(self, x: f64) -> f64 {
        match self {
            ProbFn::Power(n) => x.max(0.0).powf(n),
            ProbFn::Log => x.max(0.0).ln_1p(),
        }
    }
}

/// Probabilistic queue (Rigtorp 2013, "Estimating order queue position"; hftbacktest's
/// `ProbQueueModel`): a decrease `Δ = prev − new > 0` of the level not explained by a trade is a
/// cancellation behind our order with probability `p = f(back)/(f(back) + f(front))`, with
/// `back = prev − front`. Then `front ← min(front − (1 − p)·Δ + min(back − p·Δ, 0), new)`: the
/// expected part ahead leaves the front, and whatever exceeds the queue behind us must have come
/// from the front too. Increases join behind us (`front ← min(front, new)`).
#[derive(Clone, Copy, Debug)]
pub struct Probabilistic {
    pub f: ProbFn,
}

impl QueueModel for Probabilistic {
    fn name(&self) -> &'static str {
        "probabilistic"
    }
    fn on_depth(&self, q: &mut QueuePos, prev: i64, new: i64) {
        let chg = (prev - new) as f64;
        if chg <= 0.0 {
            q.front = q.front.min(new as f64);
            return;
        }
        let front = q.front.max(0.0);
        let back = (prev as f64 - front).max(0.0);
        let (fb, ff) = (self.f.f(back), self.f.f(front));
        let p = if fb + ff > 0.0 { fb / (fb + ff) } else { 1.0 };
        let est = front - (1.0 - p) * chg + (back - p * chg).min(0.0);
        q.front = est.min(new as f64);
    }
}

/// Exact FIFO from order ids (L3 sources such as LOBSTER): the orders ahead of ours are exactly
/// those resting at our price when we joined; each of their executions and cancellations (by id)
/// advances us by its size. An execution of an order that joined after us means the queue ahead
/// is empty (price-time priority), so it reaches us first (the exchange fills us from it).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExactFifo;

impl QueueModel for ExactFifo {
    fn name(&self) -> &'static str {
        "exact_fifo"
    }
    fn on_trade(&self, _q: &mut QueuePos, _qty: i64) {}
    fn on_depth(&self, q: &mut QueuePos, _prev: i64, new: i64) {
        // Level sizes only bound the queue (a depth-truncated L3 view may drop a level).
        q.front = q.front.min(new as f64);
    }
    fn uses_l3(&self) -> bool {
        true
    }
}

/// The queue model as the backtest TOML writes it (`[exchange] queue = "risk_averse"` or
/// `queue = { probabilistic = { power = 2 } }` / `{ probabilistic = "log" }`).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueSpec {
    #[default]
    RiskAverse,
    Probabilistic(ProbFn),
    ExactFifo,
}

impl QueueSpec {
    pub fn build(&self) -> Box<dyn QueueModel> {
        match self {
            QueueSpec::RiskAverse => Box::new(RiskAverse),
            QueueSpec::Probabilistic(f) => Box::new(Probabilistic { f: *f }),
            QueueSpec::ExactFifo => Box::new(ExactFifo),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(front: f64) -> QueuePos {
        QueuePos { front, placed_at: 0 }
    }

    #[test]
    fn risk_averse_by_hand() {
        let m = RiskAverse;
        let mut q = pos(0.0);
        m.on_new(&mut q, 10);
        assert_eq!(q.front, 10.0);
        m.on_depth(&mut q, 10, 7); // a cancel: behind us
        assert_eq!(q.front, 7.0, "front capped by the visible size");
        m.on_depth(&mut q, 7, 12); // an add: behind us
        assert_eq!(q.front, 7.0);
        m.on_trade(&mut q, 4);
        assert_eq!(q.front, 3.0);
        m.on_trade(&mut q, 5);
        assert_eq!(q.front, -2.0, "2 lots of that trade reached us");
    }

    #[test]
    fn probabilistic_by_hand() {
        // front 6, back 4 of prev 10, cancel of 2 → new 8. Power(1): p = 4/10.
        let m = Probabilistic { f: ProbFn::Power(1.0) };
        let mut q = pos(6.0);
        m.on_depth(&mut q, 10, 8);
        // est = 6 − 0.6·2 + min(4 − 0.8, 0) = 4.8
        assert!((q.front - 4.8).abs() < 1e-12, "{}", q.front);
        // At the head (front 0) every decrease is behind us.
        let mut q = pos(0.0);
        m.on_depth(&mut q, 10, 5);
        assert_eq!(q.front, 0.0);
        // At the tail (back 0) every decrease is ahead: front 10 → 7.
        let mut q = pos(10.0);
        m.on_depth(&mut q, 10, 7);
        assert!((q.front - 7.0).abs() < 1e-12);
        // Log: p = ln(5)/(ln(5)+ln(7)) for front 6, back 4.
        let m = Probabilistic { f: ProbFn::Log };
        let mut q = pos(6.0);
        m.on_depth(&mut q, 10, 8);
        let p = 5f64.ln() / (5f64.ln() + 7f64.ln());
        assert!((q.front - (6.0 - (1.0 - p) * 2.0)).abs() < 1e-12);
    }

    #[test]
    fn specs_parse() {
        #[derive(Deserialize)]
        struct W {
            queue: QueueSpec,
        }
        let w: W = toml::from_str("queue = \"risk_averse\"").unwrap();
        assert_eq!(w.queue, QueueSpec::RiskAverse);
        let w: W = toml::from_str("queue = { probabilistic = { power = 2.0 } }").unwrap();
        assert_eq!(w.queue, QueueSpec::Probabilistic(ProbFn::Power(2.0)));
        let w: W = toml::from_str("queue = { probabilistic = \"log\" }").unwrap();
        assert_eq!(w.queue, QueueSpec::Probabilistic(ProbFn::Log));
        assert!(toml::from_str::<W>("queue = \"fifo\"").is_err());
    }
}

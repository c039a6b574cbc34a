//! Risk limits (the scalper seed's), enforced between the strategy and the exchange on what the
//! strategy knows (its own view of fills), and every hit recorded:
//! - `max_position`: an order that could take |position + working same-side size| beyond the
//!   limit is dropped;
//! - `max_loss`: once the day's P&L (marked at mid, after fees) falls below −max_loss, open
//!   orders are cancelled, the position flattened, and no new entries until the next UTC day;
//! - `max_trades_per_minute`: orders beyond that many in the last 60 s are dropped;
//! - `position_timeout`: a position older than this is flattened;
//! - `max_spread_ticks`: no new position-increasing orders while the spread is wider;
//! - `flat_before_end`: that long before the day's last event, cancel everything, flatten and
//!   stop (the OFI chapter's "flat by the end of the day").

use crate::error::Result;
use crate::models::latency::duration_ns;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskSpec {
    /// Base units ("0.5", "100").
    pub max_position: Option<String>,
    /// Quote currency.
    pub max_loss: Option<f64>,
    pub max_trades_per_minute: Option<u32>,
    pub position_timeout: Option<String>,
    pub max_spread_ticks: Option<i64>,
    pub flat_before_end: Option<String>,
}

/// Which limit was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    MaxPosition,
    MaxLoss,
    MaxTradesPerMinute,
    PositionTimeout,
    MaxSpread,
    SessionEnd,
}

impl Limit {
    pub const ALL: [Limit; 6] =
        [Limit::MaxPosition, Limit::MaxLoss, Limit::MaxTradesPerMinute, Limit::PositionTimeout, Limit::MaxSpread, Limit::SessionEnd];
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MaxPosition => "max_position",
            Limit::MaxLoss => "max_loss",
            Limit::MaxTradesPerMinute => "max_trades_per_minute",
            Limit::PositionTimeout => "position_timeout",
            Limit::MaxSpread => "max_spread",
            Limit::SessionEnd => "session_end",
        }
    }
}

/// One recorded hit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RiskHit {
    pub ts_local: i64,
    pub limit: Limit,
}

/// Resolved limits (lots and ns).
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub max_position: Option<i64>,
    pub max_loss: Option<f64>,
    pub max_trades_per_minute: Option<u32>,
    pub position_timeout_ns: Option<i64>,
    pub max_spread_ticks: Option<i64>,
    pub flat_before_end_ns: Option<i64>,
}

impl RiskSpec {
    pub fn resolve(&self, inst: &flowcast_datasets::Instrument) -> Result<Limits> {
        let dur = |s: &Option<String>, f: &str| s.as_deref().map(|s| duration_ns(s, f)).transpose();
        Ok(Limits {
            max_position: self.max_position.as_deref().map(|q| crate::strategies::lots(inst, q, "risk.max_position")).transpose()?,
            max_loss: self.max_loss,
            max_trades_per_minute: self.max_trades_per_minute,
            position_timeout_ns: dur(&self.position_timeout, "risk.position_timeout")?,
            max_spread_ticks: self.max_spread_ticks,
            flat_before_end_ns: dur(&self.flat_before_end, "risk.flat_before_end")?,
        })
    }
}

/// Timestamps of recent orders in a fixed ring (allocation-free after construction).
#[derive(Clone, Debug)]
pub struct RateWindow {
    ring: Vec<i64>,
    head: usize,
    len: usize,
}

impl RateWindow {
    pub fn new(cap: usize) -> RateWindow {
        RateWindow { ring: vec![0; cap.max(1)], head: 0, len: 0 }
    }
    /// True if another order at `ts` stays within `cap` orders per `window_ns`; records it then.
    pub fn admit(&mut self, ts: i64, window_ns: i64) -> bool {
        let cap = self.ring.len();
        while self.len > 0 {
            let oldest = self.ring[(self.head + cap - self.len) % cap];
            if ts - oldest >= window_ns {
                self.len -= 1;
            } else {
                break;
            }
        }
        if self.len == cap {
            return false;
        }
        self.ring[self.head] = ts;
        self.head = (self.head + 1) % cap;
        self.len += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_by_hand() {
        let mut w = RateWindow::new(2);
        assert!(w.admit(0, 60));
        assert!(w.admit(10, 60));
        assert!(!w.admit(20, 60), "third order within 60");
        assert!(w.admit(60, 60), "the first left the window");
        assert!(!w.admit(65, 60));
        assert!(w.admit(130, 60));
    }
}

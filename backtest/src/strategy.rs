//! What a strategy sees and does. A strategy reacts at sample points (batch ends of a synced book,
//! the same points the feature engine and the models use), at its own **local** time: the data's
//! receive time plus nothing, or the exchange time plus the configured feed latency. It sees the
//! canonical book, the feature columns it asked for, the latest model signal that had arrived by
//! then, and its account as the exchange's responses have told it (they lag by the response
//! latency). It answers with [`Action`]s, which reach the exchange after the entry latency.

use crate::order::{Action, Fill, Order, OrderKind};
use flowcast_contract::signal::Signal;
use flowcast_datasets::features::spec::FeatureSpec;
use flowcast_datasets::{Instrument, OrderBook, Side};

/// One model output, as the replay delivers it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignalPoint {
    /// Event index of the window's last row (the prediction uses nothing after it).
    pub event_index: u64,
    /// Local time at which the prediction is available (event's local time + model latency).
    pub available_at: i64,
    pub signal: Signal,
    pub p_up: f32,
    pub p_down: f32,
}

/// The market at one sample point.
pub struct MarketView<'a> {
    pub book: &'a OrderBook,
    pub inst: &'a Instrument,
    pub event_index: usize,
    pub ts_exchange: i64,
    pub ts_local: i64,
    /// The strategy's [`Strategy::features`] columns, in that order (NaN while warming up).
    pub features: &'a [f64],
    /// The latest model signal available at `ts_local`, if any.
    pub signal: Option<&'a SignalPoint>,
}

impl MarketView<'_> {
    pub fn best_bid(&self) -> Option<i64> {
        self.book.best_bid().map(|x| x.0)
    }
    pub fn best_ask(&self) -> Option<i64> {
        self.book.best_ask().map(|x| x.0)
    }
    pub fn mid(&self) -> Option<f64> {
        self.book.mid()
    }
    pub fn spread(&self) -> Option<i64> {
        Some(self.best_ask()? - self.best_bid()?)
    }
}

/// Lots working on `side` among `open` orders (pending and resting).
pub fn working(open: &[Order], side: Side) -> i64 {
    open.iter().filter(|o| o.side == side).map(|o| o.leaves).sum()
}

/// The strategy's knowledge of its own account (from responses it has received).
pub struct AccountView<'a> {
    /// Signed position in lots.
    pub position: i64,
    /// Average entry price of the open position (ticks), NaN when flat.
    pub entry_price: f64,
    /// Local time the current position was opened (0 when flat).
    pub entry_ts: i64,
    /// Orders sent and not known to be done (pending ones included).
    pub open: &'a [Order],
    /// True when the risk layer stopped new entries (max loss hit, session end).
    pub halted: bool,
}

impl AccountView<'_> {
    /// Lots the strategy has working on `side` (pending and resting).
    pub fn working(&self, side: Side) -> i64 {
        working(self.open, side)
    }
    /// Unrealised P&L of the position in ticks×lots against `mark` (ticks).
    pub fn unrealised_ticks(&self, mark: f64) -> f64 {
        if self.position == 0 {
            0.0
        } else {
            (mark - self.entry_price) * self.position as f64
        }
    }
}

pub trait Strategy {
    fn name(&self) -> &'static str;
    /// Feature columns the strategy reads (computed by the streaming engine on the replay).
    fn features(&self) -> Vec<FeatureSpec> {
        Vec::new()
    }
    /// Decide at one sample point; push actions into `out` (cleared by the engine).
    fn on_sample(&mut self, m: &MarketView<'_>, a: &AccountView<'_>, out: &mut Vec<Action>);
    /// A fill of one of its orders has reached the strategy.
    fn on_fill(&mut self, _f: &Fill) {}
}

/// Tags the built-in strategies put on their orders (reported per fill).
pub mod tags {
    pub const ENTRY: u16 = 1;
    pub const EXIT: u16 = 2;
    pub const STOP: u16 = 3;
    pub const QUOTE: u16 = 4;
    /// Sent by the risk layer (flatten on a limit or at the session end).
    pub const RISK: u16 = 9;
    pub fn name(t: u16) -> &'static str {
        match t {
            ENTRY => "entry",
            EXIT => "exit",
            STOP => "stop",
            QUOTE => "quote",
            RISK => "risk",
            _ => "other",
        }
    }
}

/// An action that closes `position` at market.
pub fn flatten(position: i64, tag: u16) -> Option<Action> {
    (position != 0).then(|| Action::Submit {
        side: if position > 0 { Side::Ask } else { Side::Bid },
        kind: OrderKind::Market,
        price: 0,
        qty: position.abs(),
        tag,
    })
}

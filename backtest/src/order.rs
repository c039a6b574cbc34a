//! Orders, fills and the requests a strategy sends. Prices in ticks, quantities in lots.

use crate::models::QueuePos;
use flowcast_datasets::Side;
use serde::{Deserialize, Serialize};

/// Order types (time in force folded in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// Limit, good till cancelled: the marketable part takes liquidity, the rest rests.
    Limit,
    /// Limit that must rest: rejected if it would take liquidity on arrival.
    PostOnly,
    /// Immediate or cancel: takes what it can up to its limit, the rest is cancelled.
    Ioc,
    /// Market: takes liquidity at any price; what the visible book cannot fill is cancelled.
    Market,
}

impl OrderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Limit => "limit",
            OrderKind::PostOnly => "post_only",
            OrderKind::Ioc => "ioc",
            OrderKind::Market => "market",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Sent, not yet at the exchange.
    Pending,
    /// Resting in the book.
    Resting,
    Filled,
    Cancelled,
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Resting => "resting",
            Status::Filled => "filled",
            Status::Cancelled => "cancelled",
            Status::Rejected => "rejected",
        }
    }
    pub fn is_done(self) -> bool {
        matches!(self, Status::Filled | Status::Cancelled | Status::Rejected)
    }
}

/// Why an order ended without (complete) execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    None,
    /// The strategy cancelled it.
    UserCancel,
    /// A post-only order would have taken liquidity.
    WouldTake,
    /// IOC/market remainder: the visible book had no more at an acceptable price.
    NoLiquidity,
    /// Zero or negative quantity, or no price.
    Invalid,
    /// Cancel/modify of an order the exchange no longer has.
    UnknownOrder,
    /// The book was not synchronised (gap) when the order arrived.
    Unsynced,
}

/// One order's life.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Order {
    pub id: u64,
    pub side: Side,
    pub kind: OrderKind,
    /// Limit price in ticks (market orders: 0, unused).
    pub price: i64,
    pub qty: i64,
    pub leaves: i64,
    pub filled: i64,
    pub status: Status,
    pub reason: Reason,
    pub queue: QueuePos,
    /// Strategy-defined purpose (entry, exit, stop, ...), carried into fills and reports.
    pub tag: u16,
    /// Local time the strategy sent it, exchange time it arrived, exchange time it ended.
    pub ts_sent: i64,
    pub ts_arrived: i64,
    pub ts_done: i64,
    /// Mid (ticks) the strategy saw when it sent the order: the slippage reference.
    pub arrival_mid: f64,
    /// The strategy has sent a cancel that is not answered yet (its own view).
    pub cancel_pending: bool,
}

impl Order {
    pub fn new(id: u64, side: Side, kind: OrderKind, price: i64, qty: i64, tag: u16) -> Order {
        Order {
            id,
            side,
            kind,
            price,
            qty,
            leaves: qty,
            filled: 0,
            status: Status::Pending,
            reason: Reason::None,
            queue: QueuePos { front: 0.0, placed_at: 0 },
            tag,
            ts_sent: 0,
            ts_arrived: 0,
            ts_done: 0,
            arrival_mid: f64::NAN,
            cancel_pending: false,
        }
    }
}

/// One execution of (part of) an order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fill {
    pub order_id: u64,
    pub side: Side,
    /// Exchange time of the execution; local time the strategy learns of it.
    pub ts_exchange: i64,
    pub ts_local: i64,
    /// Execution price in ticks (×2 to keep LOBSTER's half-tick prints exact is not needed: we
    /// fill at our limit or at visible levels, always on the grid).
    pub price: i64,
    /// Price paid per unit after market impact, in ticks (= `price` without impact).
    pub effective_price: f64,
    pub qty: i64,
    pub maker: bool,
    /// Fee in quote currency (negative: rebate).
    pub fee: f64,
    pub arrival_mid: f64,
    pub tag: u16,
    pub kind: OrderKind,
}

/// What a strategy asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    Submit {
        side: Side,
        kind: OrderKind,
        price: i64,
        qty: i64,
        tag: u16,
    },
    Cancel {
        id: u64,
    },
    /// Change price and/or quantity: a quantity decrease at the same price keeps the queue
    /// position; anything else loses it (cancel-replace), as on most venues.
    Modify {
        id: u64,
        price: i64,
        qty: i64,
    },
}

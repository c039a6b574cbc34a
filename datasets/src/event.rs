//! The canonical event model: one flat, `Copy`, 48-byte record per market-data event.
//!
//! Every loader (LOBSTER, Binance, Coinbase, Kraken, synthetic) maps its source into a stream of
//! [`Event`]s; every consumer (book, store, features, backtest) reads only this stream. Units:
//! - timestamps: `i64` nanoseconds since the Unix epoch, UTC ([`NO_TS`] when unknown);
//! - prices: `i64` integer ticks of the instrument's tick size ([`crate::Instrument::tick`]);
//! - sizes: `i64` integer lots, a lot being `10^-size_scale` units of the base asset (or shares).
//!
//! Book consistency is defined at batch boundaries: a source message that changes several levels
//! (a Binance `depthUpdate`, a LOBSTER message with its orderbook row) becomes several events, and
//! only the last carries [`flags::BATCH_END`]. A book observed between batch ends may be
//! transiently crossed; a book observed at a batch end must not be (for sources that never cross).
//! See `docs/data.md` for every loader's mapping.

/// Sentinel for "timestamp not known" (e.g. local receive time of LOBSTER data).
pub const NO_TS: i64 = i64::MIN;

/// Book side. For trades, `side` is the **aggressor** side: `Bid` = buyer-initiated.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Side {
    Bid = 0,
    Ask = 1,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Bid => Side::Ask,
            Side::Ask => Side::Bid,
        }
    }
    /// +1 for bid/buy, -1 for ask/sell.
    pub fn sign(self) -> i64 {
        match self {
            Side::Bid => 1,
            Side::Ask => -1,
        }
    }
    pub fn from_u8(v: u8) -> Option<Side> {
        match v {
            0 => Some(Side::Bid),
            1 => Some(Side::Ask),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Bid => "bid",
            Side::Ask => "ask",
        }
    }
}

/// What an event is. Stored as its `u8` discriminant; the numbers are part of the store format.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    /// L2: set the aggregate size at (`side`, `price`) to `size` (absolute, > 0).
    LevelSet = 0,
    /// L2: remove the level at (`side`, `price`); `size` is 0.
    LevelDelete = 1,
    /// Start of a full-book snapshot: the book is cleared; the `LevelSet`s that follow (flagged
    /// [`flags::SNAPSHOT`]) rebuild it, the last one carrying [`flags::BATCH_END`].
    /// `seq` is the snapshot's sequence id (Binance `lastUpdateId`).
    Snapshot = 2,
    /// L3: a new limit order `order_id` of `size` lots at `price` on `side` (LOBSTER type 1).
    OrderAdd = 3,
    /// L3: partial cancellation of `size` lots of `order_id` (LOBSTER type 2).
    OrderCancel = 4,
    /// L3: full deletion of the remaining `size` lots of `order_id` (LOBSTER type 3).
    OrderDelete = 5,
    /// L3: execution of `size` lots of the visible resting order `order_id`; `side` is the
    /// **resting** order's side, so the aggressor is `side.opposite()` (LOBSTER type 4).
    OrderExecute = 6,
    /// Execution against a hidden order (LOBSTER type 5): a trade that leaves the visible book
    /// unchanged. `side` is the resting (hidden) order's side.
    HiddenExecute = 7,
    /// A trade print (exchange trade stream); `side` is the aggressor side.
    Trade = 8,
    /// Trading halt state change (LOBSTER type 7). `price` carries LOBSTER's code:
    /// -1 halt, 0 quoting resumes, 1 trading resumes.
    Halt = 9,
    /// The stream lost continuity here (sequence gap, failed checksum, no bridging diff): the book
    /// is invalid until the next [`EventKind::Snapshot`]. `seq` is the first id not received and
    /// `order_id` the id received instead, where the source has ids.
    Gap = 10,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::LevelSet,
        EventKind::LevelDelete,
        EventKind::Snapshot,
        EventKind::OrderAdd,
        EventKind::OrderCancel,
        EventKind::OrderDelete,
        EventKind::OrderExecute,
        EventKind::HiddenExecute,
        EventKind::Trade,
        EventKind::Halt,
        EventKind::Gap,
    ];
    pub fn from_u8(v: u8) -> Option<EventKind> {
        EventKind::ALL.get(v as usize).copied()
    }
    pub fn name(self) -> &'static str {
        match self {
            EventKind::LevelSet => "level_set",
            EventKind::LevelDelete => "level_delete",
            EventKind::Snapshot => "snapshot",
            EventKind::OrderAdd => "order_add",
            EventKind::OrderCancel => "order_cancel",
            EventKind::OrderDelete => "order_delete",
            EventKind::OrderExecute => "order_execute",
            EventKind::HiddenExecute => "hidden_execute",
            EventKind::Trade => "trade",
            EventKind::Halt => "halt",
            EventKind::Gap => "gap",
        }
    }
    /// True for kinds that change the L2 book.
    pub fn is_level_update(self) -> bool {
        matches!(self, EventKind::LevelSet | EventKind::LevelDelete | EventKind::Snapshot)
    }
}

/// Bit flags on [`Event::flags`].
pub mod flags {
    /// Last event of a source message: the book is consistent after applying it.
    pub const BATCH_END: u8 = 1;
    /// A `LevelSet` that belongs to a snapshot (follows an `EventKind::Snapshot`).
    pub const SNAPSHOT: u8 = 2;
    /// The level changed only because it entered/left a depth-truncated view (LOBSTER level-N
    /// files), not because of an order event at that price.
    pub const DEPTH_WINDOW: u8 = 4;
    /// The true price is `price + ½` tick: a trade between two ticks (LOBSTER midpoint executions
    /// of hidden orders at half a cent); `price` is the tick below. Exact: nothing is rounded away.
    pub const HALF_TICK: u8 = 8;
}

/// One canonical event. `Copy`, no heap data: hot paths move these by value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// Exchange (matching-engine or event) time, ns since epoch UTC.
    pub ts_exchange: i64,
    /// Local receive time, ns since epoch UTC, or [`NO_TS`].
    pub ts_local: i64,
    /// Source sequence id (Binance final update id `u`, Coinbase sequence, LOBSTER row number), 0 if none.
    pub seq: u64,
    /// L3 order id, trade id for trades, 0 if none.
    pub order_id: u64,
    /// Price in ticks.
    pub price: i64,
    /// Size in lots: absolute level size for `LevelSet`, the order's/trade's quantity otherwise.
    pub size: i64,
    pub kind: EventKind,
    pub side: Side,
    pub flags: u8,
}

impl Event {
    pub fn new(kind: EventKind, side: Side, price: i64, size: i64, ts_exchange: i64) -> Event {
        Event { ts_exchange, ts_local: NO_TS, seq: 0, order_id: 0, price, size, kind, side, flags: 0 }
    }
    pub fn level(side: Side, price: i64, size: i64, ts_exchange: i64) -> Event {
        let kind = if size == 0 { EventKind::LevelDelete } else { EventKind::LevelSet };
        Event::new(kind, side, price, size, ts_exchange)
    }
    pub fn with_seq(mut self, seq: u64) -> Event {
        self.seq = seq;
        self
    }
    pub fn with_local(mut self, ts_local: i64) -> Event {
        self.ts_local = ts_local;
        self
    }
    pub fn with_order(mut self, order_id: u64) -> Event {
        self.order_id = order_id;
        self
    }
    pub fn with_flags(mut self, flags: u8) -> Event {
        self.flags |= flags;
        self
    }
    #[inline]
    pub fn is_batch_end(&self) -> bool {
        self.flags & flags::BATCH_END != 0
    }
    /// The trade this event represents, if any: `(price ticks, size lots, aggressor side)`.
    /// Exchange trade prints, visible executions and hidden executions all count.
    #[inline]
    pub fn trade(&self) -> Option<(i64, i64, Side)> {
        match self.kind {
            EventKind::Trade => Some((self.price, self.size, self.side)),
            EventKind::OrderExecute | EventKind::HiddenExecute => Some((self.price, self.size, self.side.opposite())),
            _ => None,
        }
    }
}

/// Marks the last event of `events[start..]` as the end of a batch (no-op if the range is empty).
pub fn close_batch(events: &mut [Event], start: usize) {
    if events.len() > start {
        if let Some(last) = events.last_mut() {
            last.flags |= flags::BATCH_END;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_is_small_and_copy() {
        assert!(std::mem::size_of::<Event>() <= 56, "{}", std::mem::size_of::<Event>());
    }

    #[test]
    fn kinds_roundtrip_u8() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_u8(k as u8), Some(k));
        }
        assert_eq!(EventKind::from_u8(200), None);
    }

    #[test]
    fn execution_aggressor_is_opposite_of_resting_side() {
        // LOBSTER: an execution of a sell limit order (direction -1) is a buyer-initiated trade.
        let e = Event::new(EventKind::OrderExecute, Side::Ask, 100, 5, 0);
        assert_eq!(e.trade(), Some((100, 5, Side::Bid)));
        let t = Event::new(EventKind::Trade, Side::Ask, 100, 5, 0);
        assert_eq!(t.trade(), Some((100, 5, Side::Ask)));
        assert_eq!(Event::level(Side::Bid, 1, 0, 0).kind, EventKind::LevelDelete);
    }
}

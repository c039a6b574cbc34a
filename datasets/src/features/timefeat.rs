//! Time features. Time of day is in the venue's local time where that matters for intraday
//! patterns: New York (US DST rule, `time.rs`) for NASDAQ, UTC for 24/7 crypto venues.

use super::bank::Bank;
use super::ctx::Ctx;
use super::node::Node;
use crate::event::NO_TS;
use crate::store::DatasetMeta;
use crate::time::{civil_from_days, new_york_utc_offset_hours, NS_PER_DAY, NS_PER_SEC};

pub(crate) struct TimeOfDay {
    new_york: bool,
    /// (New York standard-time day number, UTC offset in ns) of the last lookup.
    cache: (i64, i64),
}

impl TimeOfDay {
    pub fn new(meta: &DatasetMeta) -> Self {
        let new_york = meta.instrument.venue.eq_ignore_ascii_case("nasdaq") || meta.source_format == "lobster";
        TimeOfDay { new_york, cache: (i64::MIN, 0) }
    }
    fn offset_ns(&mut self, ts: i64) -> i64 {
        if !self.new_york {
            return 0;
        }
        // The local date by standard time (UTC−5); DST switches at 02:00 local on Sundays, far
        // from any session.
        let day = (ts - 5 * 3600 * NS_PER_SEC).div_euclid(NS_PER_DAY);
        if self.cache.0 != day {
            let (y, m, d) = civil_from_days(day);
            self.cache = (day, new_york_utc_offset_hours(y, m, d) * 3600 * NS_PER_SEC);
        }
        self.cache.1
    }
}

impl Node for TimeOfDay {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        let local = ctx.ts + self.offset_ns(ctx.ts);
        local.rem_euclid(NS_PER_DAY) as f64 / NS_PER_DAY as f64
    }
    fn reset(&mut self) {}
}

fn seconds_since(ts: i64, then: i64) -> f64 {
    if then == NO_TS {
        f64::NAN
    } else {
        (ts - then) as f64 / NS_PER_SEC as f64
    }
}

/// Seconds since the last trade (0 at a sample whose message traded).
pub(crate) struct SinceTrade;

impl Node for SinceTrade {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        seconds_since(ctx.ts, ctx.last_trade_ts)
    }
    fn reset(&mut self) {}
}

/// Seconds since the mid last changed (0 at the sample where it changed).
pub(crate) struct SinceMidChange;

impl Node for SinceMidChange {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        seconds_since(ctx.ts, ctx.last_mid_change_ts)
    }
    fn reset(&mut self) {}
}

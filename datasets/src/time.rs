//! Time conversions. Every timestamp in flowcast is `i64` nanoseconds since 1970-01-01T00:00:00 UTC.
//!
//! LOBSTER (NASDAQ) times are seconds after midnight in New York local time; we convert with the
//! US daylight-saving rule in force since 2007 (EDT = UTC−4 from the second Sunday of March 02:00
//! to the first Sunday of November 02:00 local, EST = UTC−5 otherwise). The trading window
//! 09:30–16:00 never touches the 02:00 switch, so no local time is ambiguous there.

pub const NS_PER_SEC: i64 = 1_000_000_000;
pub const NS_PER_DAY: i64 = 86_400 * NS_PER_SEC;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of days since 1970-01-01 (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day of week, 0 = Sunday.
fn weekday(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

/// The n-th (1-based) Sunday of a month, as days since epoch.
fn nth_sunday(y: i64, m: u32, n: i64) -> i64 {
    let first = days_from_civil(y, m, 1);
    let to_sun = (7 - weekday(first)) % 7;
    first + to_sun + 7 * (n - 1)
}

/// UTC offset of New York local time, in hours (−4 or −5), for a local civil date (rule since 2007).
pub fn new_york_utc_offset_hours(y: i64, m: u32, d: u32) -> i64 {
    let day = days_from_civil(y, m, d);
    let dst_start = nth_sunday(y, 3, 2);
    let dst_end = nth_sunday(y, 11, 1);
    if day > dst_start && day < dst_end || day == dst_start || day == dst_end {
        // On the switch days themselves the trading session (after 02:00) is on the new offset
        // at the start and on the old one at the end of DST; sessions are 09:30–16:00, so:
        if day == dst_end {
            -5
        } else {
            -4
        }
    } else {
        -5
    }
}

/// Parse `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<(i64, u32, u32)> {
    let mut it = s.split('-');
    let y = it.next()?.parse().ok()?;
    let m = it.next()?.parse().ok()?;
    let d = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some((y, m, d))
}

/// UTC ns of New York local midnight of the given date (so that
/// `ts = midnight + seconds_after_midnight × 1e9`).
pub fn new_york_midnight_utc_ns(y: i64, m: u32, d: u32) -> i64 {
    days_from_civil(y, m, d) * NS_PER_DAY - new_york_utc_offset_hours(y, m, d) * 3600 * NS_PER_SEC
}

/// Format ns since epoch as RFC 3339 UTC with nanoseconds.
pub fn format_utc(ns: i64) -> String {
    let days = ns.div_euclid(NS_PER_DAY);
    let rem = ns.rem_euclid(NS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let s = rem / NS_PER_SEC;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z", s / 3600, s / 60 % 60, s % 60, rem % NS_PER_SEC)
}

/// The one duration grammar of flowcast (CLI flags, feature `window`/`bar`, label horizons,
/// `ofi-impact`): a positive integer, optional spaces, and one unit of `ns`, `us` (= `µs`), `ms`,
/// `s`, `min` (= `m`), `h`, `d`; surrounding spaces are ignored (`"10s"`, `"500ms"`, `"30m"`,
/// `"5min"`, `"1h"`). Integers only, so that every duration is an exact number of nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    match parse_duration_or_zero(s)? {
        0 => Err(format!("duration {s:?} must be positive")),
        v => Ok(v),
    }
}

/// [`parse_duration`] that also takes zero (`"0"`, `"0ms"`): for quantities where none is a
/// valid value, such as a latency.
pub fn parse_duration_or_zero(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("duration {s:?}: expected a positive integer and a unit, e.g. 10s, 500ms, 5min, 1h"));
    }
    let n: i64 = num.parse().map_err(|_| format!("duration {s:?}: number too large"))?;
    let per = match unit.trim_start() {
        "" if n == 0 => 1,
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => NS_PER_SEC,
        "m" | "min" => 60 * NS_PER_SEC,
        "h" => 3_600 * NS_PER_SEC,
        "d" => NS_PER_DAY,
        u => return Err(format!("duration {s:?}: unknown unit {u:?} (use ns, us, ms, s, min, h, d)")),
    };
    n.checked_mul(per).ok_or_else(|| format!("duration {s:?} overflows i64 nanoseconds"))
}

/// Canonical rendering of a duration: the largest of `h`, `min`, `s`, `ms`, `us`, `ns` that
/// divides it exactly (`300 s` → `"5min"`, `1.5 s` → `"1500ms"`, `24 h` → `"24h"`); parsed back
/// by [`parse_duration`].
///
/// This one form names every duration-derived column: features (`ofi_1min`, `ofi_5min`) and
/// labels (`clock_1min`). Minutes are `min`, not `m`, and there is no `d`, because feature column
/// names are stored: a model card keeps its feature set and its column names and the card check
/// recomputes the names from the set, so the feature form written before the grammar was unified
/// (`min`, hours as the largest unit) must stay. Label names (formerly `clock_1m`, `clock_1d`)
/// are only reported, never checked against a recomputation, so they moved to this form.
pub fn format_duration(ns: i64) -> String {
    for (unit, per) in [("h", 3_600 * NS_PER_SEC), ("min", 60 * NS_PER_SEC), ("s", NS_PER_SEC), ("ms", 1_000_000), ("us", 1_000)] {
        if ns != 0 && ns % per == 0 {
            return format!("{}{unit}", ns / per);
        }
    }
    format!("{ns}ns")
}

/// `YYYYmmddTHHMMSSZ` of now (UTC): the suffix of run directories.
pub fn now_stamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (y, m, d) = civil_from_days(now.div_euclid(86_400));
    let s = now.rem_euclid(86_400);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_roundtrip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2012, 6, 21), 15_512);
        for z in [-1000, 0, 15_512, 19_943, 40_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn new_york_offsets() {
        assert_eq!(new_york_utc_offset_hours(2012, 6, 21), -4);
        assert_eq!(new_york_utc_offset_hours(2012, 1, 10), -5);
        // 2012: DST from Sunday 11 March to Sunday 4 November.
        assert_eq!(new_york_utc_offset_hours(2012, 3, 10), -5);
        assert_eq!(new_york_utc_offset_hours(2012, 3, 11), -4);
        assert_eq!(new_york_utc_offset_hours(2012, 11, 3), -4);
        assert_eq!(new_york_utc_offset_hours(2012, 11, 4), -5);
        // LOBSTER sample: 34200 s after midnight on 2012-06-21 is 09:30 EDT = 13:30 UTC.
        let ts = new_york_midnight_utc_ns(2012, 6, 21) + 34_200 * NS_PER_SEC;
        assert_eq!(format_utc(ts), "2012-06-21T13:30:00.000000000Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(10 * NS_PER_SEC));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600 * NS_PER_SEC));
        assert_eq!(parse_duration("2d"), Ok(2 * NS_PER_DAY));
        // Both spellings of minutes and of microseconds (earlier grammars wrote either).
        assert_eq!(parse_duration("30m"), Ok(1_800 * NS_PER_SEC));
        assert_eq!(parse_duration("30min"), Ok(1_800 * NS_PER_SEC));
        assert_eq!(parse_duration("5min"), Ok(300 * NS_PER_SEC));
        assert_eq!(parse_duration("3us"), Ok(3_000));
        assert_eq!(parse_duration("3µs"), Ok(3_000));
        // Spaces around the number and before the unit.
        assert_eq!(parse_duration(" 10 s "), Ok(10 * NS_PER_SEC));
        for bad in ["", "s", "10", "1.5s", "-1s", "0s", "0min", "10x", "3 parsecs", "1 0s", "99999999999999999999s", "9223372036854775807d"]
        {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(60 * NS_PER_SEC), "1min");
        assert_eq!(format_duration(300 * NS_PER_SEC), "5min");
        assert_eq!(format_duration(1_500_000_000), "1500ms");
        assert_eq!(format_duration(NS_PER_DAY), "24h");
        for s in ["1s", "10s", "5min", "1h", "24h", "500ms", "3us", "7ns"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn duration_format_parses_back() {
        let mut ns = 1i64;
        while ns < i64::MAX / 4 {
            for x in [Some(ns), ns.checked_add(1), ns.checked_mul(7), ns.checked_mul(60 * NS_PER_SEC), ns.checked_add(NS_PER_DAY)]
                .into_iter()
                .flatten()
            {
                assert_eq!(parse_duration(&format_duration(x)), Ok(x), "{x}");
            }
            ns = ns * 3 / 2 + 1;
        }
        // Old spellings render in the canonical form.
        assert_eq!(format_duration(parse_duration("1m").unwrap()), "1min");
        assert_eq!(format_duration(parse_duration("2d").unwrap()), "48h");
        assert_eq!(format_duration(parse_duration("4µs").unwrap()), "4us");
    }
}

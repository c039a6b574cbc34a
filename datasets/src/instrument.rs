//! Instruments and exact decimal ↔ integer conversion.
//!
//! Exchange prices and quantities arrive as decimal strings ("61234.10", "0.00125000"). Parsing them
//! through `f64` drifts; instead a value is parsed exactly into a fixed-point integer with a
//! per-instrument number of decimals (`price_scale`, `size_scale`), and prices are then divided by
//! the tick (also fixed-point at `price_scale`), which must divide them exactly.
//!
//! price_ticks = price_decimal × 10^price_scale / tick;  size_lots = size_decimal × 10^size_scale.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Parse a decimal string exactly into an integer scaled by `10^scale`.
/// Accepts an optional sign, digits, an optional fraction, and an optional exponent (`1e-5`).
/// Errors if the value has more significant decimals than `scale` (after trimming zeros) or
/// overflows `i64`.
pub fn parse_fixed(s: &str, scale: u32) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty number".into());
    }
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => {
            let e: i32 = s[i + 1..].parse().map_err(|_| format!("bad exponent in {s:?}"))?;
            (&s[..i], e)
        }
        None => (s, 0),
    };
    let (neg, digits) = match mantissa.as_bytes().first() {
        Some(b'-') => (true, &mantissa[1..]),
        Some(b'+') => (false, &mantissa[1..]),
        _ => (false, mantissa),
    };
    let (int_part, frac_part) = match digits.find('.') {
        Some(i) => (&digits[..i], &digits[i + 1..]),
        None => (digits, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(format!("not a number: {s:?}"));
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit()) || !frac_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a number: {s:?}"));
    }
    // value = int_part.frac_part × 10^exp; we need value × 10^scale as an integer.
    let frac_trimmed = frac_part.trim_end_matches('0');
    let shift = scale as i32 + exp - frac_trimmed.len() as i32; // power of ten applied to the digit string
    let mut acc: i64 = 0;
    let push = |acc: i64, d: u8| -> Result<i64, String> {
        acc.checked_mul(10).and_then(|a| a.checked_add((d - b'0') as i64)).ok_or_else(|| format!("number too large: {s:?}"))
    };
    for b in int_part.bytes().chain(frac_trimmed.bytes()) {
        acc = push(acc, b)?;
    }
    if shift >= 0 {
        for _ in 0..shift {
            acc = acc.checked_mul(10).ok_or_else(|| format!("number too large: {s:?}"))?;
        }
    } else {
        let div = 10i64.checked_pow((-shift) as u32).ok_or_else(|| format!("too many decimals in {s:?} for scale {scale}"))?;
        if acc % div != 0 {
            return Err(format!("{s:?} has more than {scale} decimals"));
        }
        acc /= div;
    }
    Ok(if neg { -acc } else { acc })
}

/// Format a fixed-point integer back to a decimal string (no trailing zeros beyond one decimal).
pub fn format_fixed(v: i64, scale: u32) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let p = 10i64.pow(scale);
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let int = a / p as u64;
    let frac = a % p as u64;
    let mut f = format!("{frac:0width$}", width = scale as usize);
    while f.len() > 1 && f.ends_with('0') {
        f.pop();
    }
    format!("{sign}{int}.{f}")
}

/// Number of decimals *as written*: every fraction digit counts, trailing zeros included
/// ("14.8020" → 4, "985" → 0).
///
/// For venues that write a fixed number of decimals per product, equal to the product's price or
/// size precision (Coinbase, Kraken via cryptofeed): a trailing zero is a real digit of the grid
/// ("14.8020" means tick 0.0001), and Kraken's CRC32 checksum is computed over the strings with
/// exactly these decimals. Trimming zeros there would infer a too-coarse tick from a snapshot
/// whose levels all happen to end in 0.
pub fn written_decimals(s: &str) -> u32 {
    s.split_once('.').map_or(0, |(_, f)| f.len() as u32)
}

/// Number of *significant* decimals: trailing zeros trimmed ("61837.63000000" → 2, "0.10" → 1,
/// "985" → 0).
///
/// For venues that pad every value to one width unrelated to the product (Binance prints 8
/// decimals for all prices and quantities): the written width says nothing about the tick, so the
/// finest decimal actually used is the best inference (used only for symbols without a built-in
/// instrument and without `--tick-size`/`--size-scale`).
pub fn significant_decimals(s: &str) -> u32 {
    s.split_once('.').map_or(0, |(_, f)| f.trim_end_matches('0').len() as u32)
}

/// An instrument's identity and its integer units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instrument {
    /// Venue name: "NASDAQ", "binance-spot", "binance-usdm", "coinbase", "kraken", "synthetic", ...
    pub venue: String,
    /// Symbol as the venue spells it ("AMZN", "BTCUSDT", "BTC-USD", "XBT/USD").
    pub symbol: String,
    /// Decimals of the fixed-point price representation.
    pub price_scale: u32,
    /// Tick size as an integer at `price_scale` (tick 0.01 with price_scale 2 → 1).
    pub tick: i64,
    /// Decimals of the fixed-point size representation (a lot = 10^-size_scale units).
    pub size_scale: u32,
}

impl Instrument {
    pub fn new(venue: &str, symbol: &str, tick_size: &str, size_scale: u32) -> Result<Instrument, String> {
        let price_scale = tick_size.split('.').nth(1).map(|f| f.len() as u32).unwrap_or(0);
        let tick = parse_fixed(tick_size, price_scale)?;
        if tick <= 0 {
            return Err(format!("tick size must be positive, got {tick_size:?}"));
        }
        Ok(Instrument { venue: venue.into(), symbol: symbol.into(), price_scale, tick, size_scale })
    }

    /// Tick size as a decimal string.
    pub fn tick_size(&self) -> String {
        format_fixed(self.tick, self.price_scale)
    }

    /// Exact decimal price string → ticks. Errors if the price is not on the tick grid.
    pub fn price_to_ticks(&self, s: &str) -> Result<i64, String> {
        let fixed = parse_fixed(s, self.price_scale)?;
        if fixed % self.tick != 0 {
            return Err(format!("price {s} is not a multiple of tick {}", self.tick_size()));
        }
        Ok(fixed / self.tick)
    }

    /// Exact decimal size string → lots.
    pub fn size_to_lots(&self, s: &str) -> Result<i64, String> {
        parse_fixed(s, self.size_scale)
    }

    /// Ticks → price as f64 (for display and for features; never for book keys).
    pub fn ticks_to_f64(&self, ticks: i64) -> f64 {
        (ticks as f64) * (self.tick as f64) / 10f64.powi(self.price_scale as i32)
    }

    /// Lots → size as f64.
    pub fn lots_to_f64(&self, lots: i64) -> f64 {
        lots as f64 / 10f64.powi(self.size_scale as i32)
    }
}

impl fmt::Display for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (tick {}, size 1e-{})", self.venue, self.symbol, self.tick_size(), self.size_scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_fixed_exact() {
        assert_eq!(parse_fixed("61234.10000000", 2), Ok(6123410));
        assert_eq!(parse_fixed("0.00125000", 8), Ok(125000));
        assert_eq!(parse_fixed("-1.5", 1), Ok(-15));
        assert_eq!(parse_fixed("12", 3), Ok(12000));
        assert_eq!(parse_fixed("1e-5", 8), Ok(1000));
        assert_eq!(parse_fixed(".5", 1), Ok(5));
        assert!(parse_fixed("0.001", 2).is_err());
        assert!(parse_fixed("abc", 2).is_err());
        assert!(parse_fixed("1.2.3", 2).is_err());
        assert!(parse_fixed("", 2).is_err());
        assert!(parse_fixed("99999999999999999999", 0).is_err());
        // 0.1 + 0.2 style drift is impossible: every string maps to one integer.
        assert_eq!(parse_fixed("0.3", 8), Ok(30_000_000));
    }

    #[test]
    fn instrument_ticks() {
        let i = Instrument::new("binance-usdm", "BTCUSDT", "0.10", 3).unwrap();
        assert_eq!(i.price_scale, 2);
        assert_eq!(i.tick, 10);
        assert_eq!(i.price_to_ticks("61234.10000000"), Ok(612341));
        assert!(i.price_to_ticks("61234.15").is_err());
        assert_eq!(i.size_to_lots("0.125"), Ok(125));
        assert!((i.ticks_to_f64(612341) - 61234.1).abs() < 1e-9);
        assert_eq!(i.tick_size(), "0.1");
        assert_eq!(format_fixed(-125, 3), "-0.125");
    }

    #[test]
    fn decimals_written_and_significant() {
        for (s, written, significant) in [
            ("14.8020", 4, 3),
            ("985", 0, 0),
            ("61837.63000000", 8, 2),
            ("0.00000000", 8, 0),
            ("0.000022900", 9, 7),
            ("13355.87450757", 8, 8),
            ("1.", 0, 0),
        ] {
            assert_eq!(written_decimals(s), written, "{s}");
            assert_eq!(significant_decimals(s), significant, "{s}");
        }
    }
}

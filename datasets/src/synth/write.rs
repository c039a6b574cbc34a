//! LOBSTER CSV output, exactly as LOBSTER writes it (see its sample-files ReadMe): no header,
//! message `time,type,order_id,size,price,direction` with time in seconds after midnight (up to 9
//! decimals, trailing zeros dropped) and price = USD × 10,000; orderbook `ask px, ask size, bid
//! px, bid size` per level, an empty level being 9999999999 (ask) / -9999999999 (bid) with size 0.

use super::SynthOutput;
use crate::book::NO_PRICE;
use crate::error::{DataError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

const EMPTY_ASK: i64 = 9_999_999_999;
const EMPTY_BID: i64 = -9_999_999_999;
const NS_PER_MS: i64 = 1_000_000;

/// Append the decimal digits of `v` (no allocation; `write!` is several times slower here).
#[inline]
fn push_int(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    let mut u = v.unsigned_abs();
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// ns after midnight → `seconds.fraction` with the fraction's trailing zeros dropped (at least
/// one digit kept), e.g. 34200189607670 → `34200.18960767`, as in LOBSTER's own files.
#[inline]
fn push_time(buf: &mut Vec<u8>, ns: i64) {
    push_int(buf, ns / 1_000_000_000);
    buf.push(b'.');
    let mut frac = ns % 1_000_000_000;
    let mut digits = 9;
    while digits > 1 && frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    let start = buf.len();
    push_int(buf, frac);
    let pad = digits - (buf.len() - start);
    buf.splice(start..start, std::iter::repeat_n(b'0', pad));
}

/// Write `<dir>/<symbol>_<date>_<start ms>_<end ms>_message_<N>.csv` and `..._orderbook_<N>.csv`
/// (creating `dir`) and return their paths.
pub fn write_lobster(dir: &Path, out: &SynthOutput, symbol: &str, date: &str) -> Result<(PathBuf, PathBuf)> {
    if crate::time::parse_date(date).is_none() {
        return Err(DataError::Invalid(format!("synthetic LOBSTER date {date:?} is not YYYY-MM-DD")));
    }
    if symbol.is_empty() || symbol.contains(['_', '/', '\\']) {
        return Err(DataError::Invalid(format!("synthetic LOBSTER symbol {symbol:?} must be non-empty without '_' or path separators")));
    }
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let cfg = &out.config;
    let n = out.levels();
    let stem = format!("{symbol}_{date}_{}_{}", cfg.session_start_ns / NS_PER_MS, cfg.session_end_ns / NS_PER_MS);
    let msg_path = dir.join(format!("{stem}_message_{n}.csv"));
    let book_path = dir.join(format!("{stem}_orderbook_{n}.csv"));
    let tp = cfg.tick_price;

    let mut buf = Vec::with_capacity(1 << 20);
    let mut msg = std::io::BufWriter::new(std::fs::File::create(&msg_path).map_err(|e| DataError::io(&msg_path, e))?);
    for m in &out.messages {
        push_time(&mut buf, m.time_ns);
        buf.push(b',');
        push_int(&mut buf, m.kind as i64);
        buf.push(b',');
        push_int(&mut buf, m.order_id as i64);
        buf.push(b',');
        push_int(&mut buf, m.size);
        buf.push(b',');
        push_int(&mut buf, m.price * tp);
        buf.push(b',');
        push_int(&mut buf, m.direction as i64);
        buf.push(b'\n');
        if buf.len() >= 1 << 20 {
            msg.write_all(&buf).map_err(|e| DataError::io(&msg_path, e))?;
            buf.clear();
        }
    }
    msg.write_all(&buf).and_then(|_| msg.flush()).map_err(|e| DataError::io(&msg_path, e))?;
    buf.clear();

    let mut book = std::io::BufWriter::new(std::fs::File::create(&book_path).map_err(|e| DataError::io(&book_path, e))?);
    for i in 0..out.messages.len() {
        for (j, &v) in out.row(i).iter().enumerate() {
            if j > 0 {
                buf.push(b',');
            }
            let v = match (j % 4, v) {
                (0, NO_PRICE) => EMPTY_ASK,
                (2, NO_PRICE) => EMPTY_BID,
                (0 | 2, p) => p * tp,
                (_, s) => s,
            };
            push_int(&mut buf, v);
        }
        buf.push(b'\n');
        if buf.len() >= 1 << 20 {
            book.write_all(&buf).map_err(|e| DataError::io(&book_path, e))?;
            buf.clear();
        }
    }
    book.write_all(&buf).and_then(|_| book.flush()).map_err(|e| DataError::io(&book_path, e))?;
    Ok((msg_path, book_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_and_int_formatting() {
        let f = |ns| {
            let mut b = Vec::new();
            push_time(&mut b, ns);
            String::from_utf8(b).unwrap()
        };
        assert_eq!(f(34_200_189_607_670), "34200.18960767");
        assert_eq!(f(34_200_017_459_617), "34200.017459617");
        assert_eq!(f(34_200_000_000_000), "34200.0");
        assert_eq!(f(34_200_000_000_001), "34200.000000001");
        assert_eq!(f(57_599_500_000_000), "57599.5");
        let mut b = Vec::new();
        for v in [0, -1, 9_999_999_999, -9_999_999_999, i64::MAX] {
            push_int(&mut b, v);
            b.push(b' ');
        }
        assert_eq!(String::from_utf8(b).unwrap(), format!("0 -1 9999999999 -9999999999 {} ", i64::MAX));
    }
}

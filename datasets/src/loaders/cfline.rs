//! The line format of cryptofeed's raw recordings (its `raw_data_collection` / playback files):
//!
//! ```text
//! <url> <-> <unix_ts>              connection opened
//! <url> <- <unix_ts>: <json>       message sent (subscriptions)
//! <unix_ts>: <json>                message received on the websocket
//! <rest_url> -> <unix_ts>: <json>  REST response
//! ```
//! `unix_ts` is decimal seconds; it is converted exactly to ns (digits past 9 decimals rejected).

use crate::error::{DataError, Result};
use crate::instrument::parse_fixed;

/// One parsed line; `json` borrows from the input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfLine<'a> {
    Connect { url: &'a str, ts_ns: i64 },
    Sent { url: &'a str, ts_ns: i64, json: &'a str },
    Received { ts_ns: i64, json: &'a str },
    Rest { url: &'a str, ts_ns: i64, json: &'a str },
}

fn ts(file: &str, line: u64, s: &str) -> Result<i64> {
    parse_fixed(s, 9).map_err(|e| DataError::parse(file, line, "timestamp", e))
}

/// Parse one line of a cryptofeed recording. `file`/`line` name it in errors.
pub fn parse_cf_line<'a>(file: &str, line: u64, s: &'a str) -> Result<CfLine<'a>> {
    // Received lines start with a digit; the others with a URL.
    if s.as_bytes().first().is_some_and(|b| b.is_ascii_digit()) {
        let (t, json) = s.split_once(": ").ok_or_else(|| DataError::parse(file, line, "line", "expected '<ts>: <json>'"))?;
        return Ok(CfLine::Received { ts_ns: ts(file, line, t)?, json });
    }
    let (url, rest) = s.split_once(' ').ok_or_else(|| DataError::parse(file, line, "line", "expected '<url> <op> <ts>...'"))?;
    let (op, rest) = rest.split_once(' ').ok_or_else(|| DataError::parse(file, line, "line", "truncated line after url"))?;
    match op {
        "<->" => Ok(CfLine::Connect { url, ts_ns: ts(file, line, rest.trim())? }),
        "<-" | "->" => {
            let (t, json) =
                rest.split_once(": ").ok_or_else(|| DataError::parse(file, line, "line", "expected '<ts>: <json>' after direction"))?;
            let ts_ns = ts(file, line, t)?;
            Ok(if op == "<-" { CfLine::Sent { url, ts_ns, json } } else { CfLine::Rest { url, ts_ns, json } })
        }
        other => Err(DataError::parse(file, line, "direction", format!("unknown direction {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_line_forms() {
        assert_eq!(
            parse_cf_line("f", 1, "wss://x <-> 1633998511.159679").unwrap(),
            CfLine::Connect { url: "wss://x", ts_ns: 1_633_998_511_159_679_000 }
        );
        assert_eq!(
            parse_cf_line("f", 2, "1618677817.061845: {\"a\":1}").unwrap(),
            CfLine::Received { ts_ns: 1_618_677_817_061_845_000, json: "{\"a\":1}" }
        );
        assert!(matches!(
            parse_cf_line("f", 3, "https://api/x?y=1 -> 1633998512.320639: {}").unwrap(),
            CfLine::Rest { url: "https://api/x?y=1", json: "{}", .. }
        ));
        assert!(matches!(parse_cf_line("f", 4, "wss://x <- 1.5: {}").unwrap(), CfLine::Sent { ts_ns: 1_500_000_000, .. }));
        let e = parse_cf_line("f", 9, "16186x: {}").unwrap_err().to_string();
        assert!(e.starts_with("f:9: timestamp:"), "{e}");
        assert!(parse_cf_line("f", 9, "wss://x ?? 1").is_err());
    }
}

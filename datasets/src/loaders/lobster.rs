//! LOBSTER (NASDAQ TotalView-ITCH reconstructions, lobsterdata.com): a message file and an
//! orderbook file, row i of the orderbook being the top-N book *after* message i.
//!
//! Each message row becomes one L3 event followed by the L2 events that take the visible book from
//! orderbook row i-1 to row i (row 0 = empty book), the last event of the group flagged
//! `BATCH_END`. The exact mapping, the unit conversions and the `check` rules are documented in
//! docs/data.md, section "Loader: LOBSTER"; the synthetic generator writes files that rely on it.
//!
//! Parsing is streaming and allocation-free per row: lines are read into one reused buffer, split
//! on commas in place, and orderbook rows are parsed into two preallocated [`TopN`]s that swap.

use super::options::{ImportOptions, Imported};
use super::text::open_text;
use crate::book::{BookLayout, TopN, NO_PRICE};
use crate::error::{BadLines, DataError, Result};
use crate::event::{flags, Event, EventKind, Side, NO_TS};
use crate::instrument::{parse_fixed, Instrument};
use crate::report::Report;
use crate::snapshot::{self, level_column, present, touch_key as key};
use crate::store::{Dataset, DatasetMeta, SourceFile};
use crate::time::{format_utc, new_york_midnight_utc_ns, parse_date, NS_PER_DAY, NS_PER_SEC};
use serde_json::{json, Map, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Venue of every LOBSTER instrument.
pub const VENUE: &str = "NASDAQ";
/// Tick size used unless `--tick-size` says otherwise (NASDAQ's minimum increment above $1).
pub const DEFAULT_TICK: &str = "0.01";
/// LOBSTER prices are integers in USD × 10^4, i.e. fixed-point at this many decimals.
pub const LOBSTER_PRICE_SCALE: u32 = 4;
/// Price LOBSTER writes for an unoccupied ask level (its size is 0).
pub const EMPTY_ASK: i64 = 9_999_999_999;
/// Price LOBSTER writes for an unoccupied bid level (its size is 0).
pub const EMPTY_BID: i64 = -9_999_999_999;
/// How many unexplained messages / book mismatches `check` lists.
const KEEP: usize = 10;

const MSG_FIELDS: [&str; 6] = ["time", "type", "order_id", "size", "price", "direction"];

// ---------------------------------------------------------------------------------------------
// File names
// ---------------------------------------------------------------------------------------------

/// Which of the pair a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Message,
    Orderbook,
}

/// The parts of a LOBSTER file name `TICKER_YYYY-MM-DD_STARTMS_ENDMS_{message,orderbook}_N.csv`
/// (`.csv.gz` also accepted). Fields are `None` when the name only partly follows the pattern
/// (the kind must be there: it is how the two files are told apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileName {
    pub kind: FileKind,
    pub ticker: Option<String>,
    pub date: Option<String>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub levels: Option<usize>,
}

/// Parse a LOBSTER file name; `None` if it names neither a message nor an orderbook file.
pub fn parse_file_name(path: &Path) -> Option<FileName> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    let stem = stem.strip_suffix(".csv").unwrap_or(stem);
    let toks: Vec<&str> = stem.split('_').collect();
    let k = toks.iter().rposition(|t| *t == "message" || *t == "orderbook")?;
    let kind = if toks[k] == "message" { FileKind::Message } else { FileKind::Orderbook };
    let levels = if k + 2 == toks.len() { toks[k + 1].parse().ok() } else { None };
    let mut out = FileName { kind, ticker: None, date: None, start_ms: None, end_ms: None, levels };
    if k >= 4 && parse_date(toks[k - 3]).is_some() {
        if let (Ok(s), Ok(e)) = (toks[k - 2].parse(), toks[k - 1].parse()) {
            out.ticker = Some(toks[..k - 3].join("_"));
            out.date = Some(toks[k - 3].to_string());
            out.start_ms = Some(s);
            out.end_ms = Some(e);
        }
    }
    Some(out)
}

/// The two input files of one LOBSTER import and what their names (or the options) say.
#[derive(Clone, Debug)]
pub struct Pair {
    pub message: PathBuf,
    pub orderbook: PathBuf,
    pub symbol: String,
    /// Trading date `YYYY-MM-DD` (New York).
    pub date: String,
    /// Level count stated by the file names, if they state one.
    pub name_levels: Option<usize>,
}

fn disp(p: &Path) -> String {
    p.display().to_string()
}

/// Tell the message file from the orderbook file (by name, in any order) and check that they
/// belong together. The symbol and date come from the names, or from `opts.symbol`/`opts.date`
/// for files not named LOBSTER's way (when both exist they must agree).
pub fn identify(inputs: &[PathBuf], opts: &ImportOptions) -> Result<Pair> {
    let mut msgs = Vec::new();
    let mut books = Vec::new();
    for p in inputs {
        let n = parse_file_name(p).ok_or_else(|| {
            DataError::Invalid(format!(
                "{}: not a LOBSTER file name: expected TICKER_YYYY-MM-DD_START_END_message_N.csv or \
                 ..._orderbook_N.csv (the name tells the two files apart)",
                p.display()
            ))
        })?;
        match n.kind {
            FileKind::Message => msgs.push((p.clone(), n)),
            FileKind::Orderbook => books.push((p.clone(), n)),
        }
    }
    let list = || inputs.iter().map(|p| disp(p)).collect::<Vec<_>>().join(", ");
    match (msgs.len(), books.len()) {
        (1, 1) => {}
        (0, 1) => {
            return Err(DataError::Invalid(format!(
                "{}: an orderbook file without its message file cannot be timestamped (LOBSTER \
                 orderbook rows carry no time; row i is the book after message i): pass the \
                 matching *_message_N.csv too",
                books[0].0.display()
            )))
        }
        (1, 0) => {
            return Err(DataError::Invalid(format!(
                "{}: a message file needs its orderbook file (the book after each message): pass \
                 the matching *_orderbook_N.csv too",
                msgs[0].0.display()
            )))
        }
        (m, b) => {
            return Err(DataError::Invalid(format!(
                "LOBSTER import takes one message file and one orderbook file, got {m} message and \
                 {b} orderbook files: {}",
                list()
            )))
        }
    }
    let (mp, mn) = msgs.pop().expect("one message file");
    let (bp, bn) = books.pop().expect("one orderbook file");
    let not_pair = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
        DataError::Invalid(format!(
            "{} and {} are not a message/orderbook pair: their names differ in {what} ({a:?} vs {b:?})",
            mp.display(),
            bp.display()
        ))
    };
    if let (Some(a), Some(b)) = (&mn.ticker, &bn.ticker) {
        if a != b {
            return Err(not_pair("ticker", a, b));
        }
    }
    if let (Some(a), Some(b)) = (&mn.date, &bn.date) {
        if a != b {
            return Err(not_pair("date", a, b));
        }
    }
    if (mn.start_ms, mn.end_ms) != (bn.start_ms, bn.end_ms) && mn.start_ms.is_some() && bn.start_ms.is_some() {
        return Err(not_pair("time window", &(mn.start_ms, mn.end_ms), &(bn.start_ms, bn.end_ms)));
    }
    if let (Some(a), Some(b)) = (mn.levels, bn.levels) {
        if a != b {
            return Err(not_pair("level count", &a, &b));
        }
    }
    let from_names = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
    let pick = |what: &str, flag: &str, named: Option<String>, opt: &Option<String>| -> Result<String> {
        match (named, opt) {
            (Some(n), Some(o)) if &n != o => {
                Err(DataError::Invalid(format!("{flag} {o} contradicts the {what} {n} in the file name {}", mp.display())))
            }
            (Some(n), _) => Ok(n),
            (None, Some(o)) => Ok(o.clone()),
            (None, None) => Err(DataError::Invalid(format!(
                "{}: the file name does not give the {what} (LOBSTER names: \
                 TICKER_YYYY-MM-DD_START_END_message_N.csv); pass {flag}",
                mp.display()
            ))),
        }
    };
    let symbol = pick("ticker", "--symbol", from_names(&mn.ticker, &bn.ticker), &opts.symbol)?;
    let date = pick("date", "--date", from_names(&mn.date, &bn.date), &opts.date)?;
    if parse_date(&date).is_none() {
        return Err(DataError::Invalid(format!("--date {date:?}: expected YYYY-MM-DD")));
    }
    Ok(Pair { message: mp, orderbook: bp, symbol, date, name_levels: mn.levels.or(bn.levels) })
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

/// LOBSTER message types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// 1: submission of a new limit order.
    Submit = 1,
    /// 2: partial cancellation.
    Cancel = 2,
    /// 3: deletion of the whole remaining order.
    Delete = 3,
    /// 4: execution of a visible order.
    Execute = 4,
    /// 5: execution of a hidden order (no visible book change).
    Hidden = 5,
    /// 7: trading halt indicator (price -1 halt, 0 quoting resumes, 1 trading resumes).
    Halt = 7,
}

impl MsgType {
    pub const ALL: [MsgType; 6] = [MsgType::Submit, MsgType::Cancel, MsgType::Delete, MsgType::Execute, MsgType::Hidden, MsgType::Halt];
    pub fn from_code(c: i64) -> Option<MsgType> {
        MsgType::ALL.into_iter().find(|t| *t as i64 == c)
    }
    pub fn code(self) -> u8 {
        self as u8
    }
    /// The canonical event kind of this message type.
    pub fn event_kind(self) -> EventKind {
        match self {
            MsgType::Submit => EventKind::OrderAdd,
            MsgType::Cancel => EventKind::OrderCancel,
            MsgType::Delete => EventKind::OrderDelete,
            MsgType::Execute => EventKind::OrderExecute,
            MsgType::Hidden => EventKind::HiddenExecute,
            MsgType::Halt => EventKind::Halt,
        }
    }
    /// Change of the visible size at the message's (side, price) that the message implies.
    pub fn implied_change(self, size: i64) -> i64 {
        match self {
            MsgType::Submit => size,
            MsgType::Cancel | MsgType::Delete | MsgType::Execute => -size,
            MsgType::Hidden | MsgType::Halt => 0,
        }
    }
}

/// One parsed message row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// 1-based row (= line) number in both files.
    pub row: u64,
    /// Exchange time, ns since epoch UTC.
    pub ts: i64,
    pub kind: MsgType,
    pub order_id: u64,
    /// Lots (shares × 10^size_scale).
    pub size: i64,
    /// Ticks (rounded down when `half_tick`); for halts LOBSTER's code -1/0/1, unconverted.
    pub price: i64,
    /// The price lies half a tick above `price` (midpoint execution of a hidden order).
    pub half_tick: bool,
    pub side: Side,
}

impl Message {
    /// The visible book level this message acts on; `None` for halts and half-tick executions,
    /// which have no level.
    pub fn level(&self) -> Option<(Side, i64)> {
        (self.kind != MsgType::Halt && !self.half_tick).then_some((self.side, self.price))
    }
}

/// A good row pair: the message and the visible book before (the last good row, or the empty
/// book) and after it.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    pub msg: &'a Message,
    pub before: &'a TopN,
    pub after: &'a TopN,
}

#[inline]
fn side_of(t: &TopN, side: Side) -> (&[i64], &[i64]) {
    match side {
        Side::Bid => (&t.bid_px, &t.bid_sz),
        Side::Ask => (&t.ask_px, &t.ask_sz),
    }
}

/// The comma-separated fields of one line, borrowed. A plain byte loop: LOBSTER fields are a few
/// bytes long, too short for `memchr` to pay off.
struct Fields<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Fields<'a> {
    fn new(s: &'a [u8]) -> Fields<'a> {
        Fields { s, pos: 0, done: false }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let mut i = start;
        while i < self.s.len() && self.s[i] != b',' {
            i += 1;
        }
        if i == self.s.len() {
            self.done = true;
        } else {
            self.pos = i + 1;
        }
        Some(&self.s[start..i])
    }
}

/// A field for error messages.
fn show(f: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(f))
}

/// Seconds with up to 9 decimals → ns, exactly as `parse_fixed(s, 9)`: a fast path for the
/// plain `digits[.digits]` form; anything else (and every error) goes through `parse_fixed`.
#[inline]
fn parse_time_ns(f: &[u8]) -> std::result::Result<i64, String> {
    let dot = f.iter().position(|&c| c == b'.').unwrap_or(f.len());
    let (int, frac) = (&f[..dot], f.get(dot + 1..).unwrap_or(&[]));
    if !int.is_empty() && int.len() <= 9 && frac.len() <= 9 {
        let mut ok = true;
        let mut secs: i64 = 0;
        for &c in int {
            let d = c.wrapping_sub(b'0');
            ok &= d <= 9;
            secs = secs * 10 + d as i64;
        }
        let mut ns: i64 = 0;
        for &c in frac {
            let d = c.wrapping_sub(b'0');
            ok &= d <= 9;
            ns = ns * 10 + d as i64;
        }
        if ok {
            return Ok(secs * NS_PER_SEC + ns * 10i64.pow(9 - frac.len() as u32));
        }
    }
    parse_fixed(&String::from_utf8_lossy(f), 9)
}

/// Integer field: optional sign, ASCII digits, checked (no allocation).
#[inline]
fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as i64)?;
    }
    Some(if neg { -v } else { v })
}

#[inline]
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// Unit conversions of one import (see docs/data.md).
#[derive(Clone, Debug)]
struct Units {
    /// ticks = lobster_price × px_mul / px_den, exact (else off the grid).
    px_mul: i64,
    px_den: i64,
    /// lots = shares × size_mul.
    size_mul: i64,
    /// UTC ns of New York midnight of the trading date.
    midnight: i64,
}

impl Units {
    fn new(inst: &Instrument, date: &str) -> Result<Units> {
        // A LOBSTER price p is fixed-point at scale 4, the tick t at the instrument's price_scale s.
        // Bring both to scale max(4, s): ticks = p·10^(max−4) / (t·10^(max−s)).
        let s = inst.price_scale;
        let pow =
            |e: u32| 10i64.checked_pow(e).ok_or_else(|| DataError::Invalid(format!("tick {} has too many decimals", inst.tick_size())));
        let (px_mul, px_den) = if s >= LOBSTER_PRICE_SCALE {
            (pow(s - LOBSTER_PRICE_SCALE)?, inst.tick)
        } else {
            (1, inst.tick.checked_mul(pow(LOBSTER_PRICE_SCALE - s)?).ok_or_else(|| DataError::Invalid("tick too large".into()))?)
        };
        let size_mul = 10i64
            .checked_pow(inst.size_scale)
            .ok_or_else(|| DataError::Invalid(format!("--size-scale {} is too large", inst.size_scale)))?;
        let (y, m, d) = parse_date(date).ok_or_else(|| DataError::Invalid(format!("bad date {date:?}")))?;
        Ok(Units { px_mul, px_den, size_mul, midnight: new_york_midnight_utc_ns(y, m, d) })
    }

    /// LOBSTER price → ticks, `None` if not on the tick grid.
    #[inline]
    fn ticks(&self, p: i64) -> Option<i64> {
        let v = p.checked_mul(self.px_mul)?;
        (v % self.px_den == 0).then(|| v / self.px_den)
    }

    /// LOBSTER price → (ticks rounded down, half_tick) if on the half-tick grid.
    fn half_ticks(&self, p: i64) -> Option<(i64, bool)> {
        let v = p.checked_mul(self.px_mul)?;
        if v % self.px_den == 0 {
            Some((v / self.px_den, false))
        } else if (v.checked_mul(2)?) % self.px_den == 0 {
            Some((v.div_euclid(self.px_den), true))
        } else {
            None
        }
    }
}

/// One input file read line by line into a reused buffer (no allocation per line).
struct Lines {
    r: Box<dyn BufRead>,
    buf: Vec<u8>,
    /// Line number of the line in `buf` (1-based; 0 before the first).
    line: u64,
    /// The line in `buf` was peeked and not yet handed out.
    held: bool,
    eof: bool,
    name: String,
}

impl Lines {
    fn open(path: &Path) -> Result<Lines> {
        Ok(Lines { r: open_text(path)?, buf: Vec::with_capacity(1024), line: 0, held: false, eof: false, name: disp(path) })
    }

    fn read(&mut self) -> Result<bool> {
        self.buf.clear();
        let n = self.r.read_until(b'\n', &mut self.buf).map_err(|e| DataError::io(Path::new(&self.name), e))?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.line += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(true)
    }

    /// Move to the next line; false at end of file.
    fn advance(&mut self) -> Result<bool> {
        if self.held {
            self.held = false;
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.read()
    }

    /// Number of comma-separated columns of the first line, which stays unconsumed.
    fn peek_columns(&mut self) -> Result<Option<usize>> {
        if !self.read()? {
            return Ok(None);
        }
        self.held = true;
        Ok(Some(self.buf.iter().filter(|&&b| b == b',').count() + 1))
    }

    fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Lines from here to the end (for the row-count error).
    fn count_rest(&mut self) -> Result<u64> {
        let start = self.line;
        while self.advance()? {}
        Ok(self.line - start)
    }
}

/// Streams the good row pairs of a message + orderbook file pair. Under `--lenient`, a bad message
/// line or orderbook row skips the pair (counted in [`PairReader::bad_lines`]) and the next good
/// row is compared with the last good one.
pub struct PairReader {
    pub pair: Pair,
    pub instrument: Instrument,
    levels: usize,
    units: Units,
    msgs: Lines,
    books: Lines,
    bad: BadLines,
    msg: Message,
    before: TopN,
    after: TopN,
    /// `after` holds the row handed out last; it becomes `before` on the next call.
    pending: bool,
    last_ts: i64,
}

/// Open a LOBSTER pair for streaming (see [`PairReader`]).
pub fn read_pair(inputs: &[PathBuf], opts: &ImportOptions) -> Result<PairReader> {
    PairReader::open(inputs, opts)
}

impl PairReader {
    pub fn open(inputs: &[PathBuf], opts: &ImportOptions) -> Result<PairReader> {
        let pair = identify(inputs, opts)?;
        let tick = opts.tick_size.as_deref().unwrap_or(DEFAULT_TICK);
        let instrument = Instrument::new(VENUE, &pair.symbol, tick, opts.size_scale.unwrap_or(0))
            .map_err(|e| DataError::Invalid(format!("--tick-size {tick}: {e}")))?;
        let units = Units::new(&instrument, &pair.date)?;
        let msgs = Lines::open(&pair.message)?;
        let mut books = Lines::open(&pair.orderbook)?;
        // The level count: 4 columns per level in the orderbook rows; the name must agree.
        let cols = books.peek_columns()?;
        let levels = match (cols, pair.name_levels) {
            (Some(c), Some(n)) if c % 4 == 0 && c != 4 * n => {
                return Err(DataError::Invalid(format!(
                    "{}: the file name says {n} levels but its first row has {} ({c} columns, 4 per level)",
                    pair.orderbook.display(),
                    c / 4
                )))
            }
            (_, Some(n)) => n,
            (Some(c), None) if c % 4 == 0 && c > 0 => c / 4,
            (Some(c), None) => {
                return Err(DataError::parse(
                    &books.name,
                    1,
                    "row",
                    format!("{c} columns: an orderbook row has 4 per level (ask price, ask size, bid price, bid size)"),
                ))
            }
            (None, None) => 1,
        };
        if levels == 0 {
            return Err(DataError::Invalid(format!("{}: level count 0", pair.orderbook.display())));
        }
        let msg = Message { row: 0, ts: 0, kind: MsgType::Halt, order_id: 0, size: 0, price: 0, half_tick: false, side: Side::Ask };
        Ok(PairReader {
            pair,
            instrument,
            levels,
            units,
            msgs,
            books,
            bad: BadLines::new(opts.lenient),
            msg,
            before: TopN::new(levels),
            after: TopN::new(levels),
            pending: false,
            last_ts: i64::MIN,
        })
    }

    /// Levels per side in the orderbook file (N).
    pub fn levels(&self) -> usize {
        self.levels
    }

    /// Row pairs skipped so far under `--lenient`.
    pub fn bad_lines(&self) -> &BadLines {
        &self.bad
    }

    /// The next good row pair, `None` at the end of both files. Errors on the first bad row
    /// (strict), on a row-count mismatch and on I/O errors.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>> {
        if self.pending {
            std::mem::swap(&mut self.before, &mut self.after);
            self.pending = false;
        }
        loop {
            let m = self.msgs.advance()?;
            let b = self.books.advance()?;
            if !m && !b {
                return Ok(None);
            }
            if m != b {
                let (mrows, brows) = if m {
                    (self.msgs.line + self.msgs.count_rest()?, self.books.line)
                } else {
                    (self.msgs.line, self.books.line + self.books.count_rest()?)
                };
                return Err(DataError::Invalid(format!(
                    "row count mismatch: {} has {mrows} rows but {} has {brows} (orderbook row i is the \
                     book after message i, so the files must have equal row counts)",
                    self.pair.message.display(),
                    self.pair.orderbook.display()
                )));
            }
            match self.parse_current() {
                Ok(()) => {
                    self.pending = true;
                    self.last_ts = self.msg.ts;
                    return Ok(Some(Row { msg: &self.msg, before: &self.before, after: &self.after }));
                }
                Err(e) => self.bad.handle(e)?,
            }
        }
    }

    fn parse_current(&mut self) -> Result<()> {
        let line = self.msgs.line;
        if self.books.line != line {
            return Err(DataError::Invalid("internal: message and orderbook rows out of step".into()));
        }
        self.msg = parse_message(&self.msgs.name, line, self.msgs.bytes(), &self.units, self.last_ts)?;
        parse_book_row(&self.books.name, line, self.books.bytes(), &self.units, &mut self.after)
    }
}

fn parse_message(file: &str, line: u64, s: &[u8], u: &Units, last_ts: i64) -> Result<Message> {
    let err = |field: &str, reason: String| DataError::parse(file, line, field, reason);
    if s.is_empty() {
        return Err(err("line", "empty line".into()));
    }
    let mut f: [&[u8]; 6] = [&[]; 6];
    let mut k = 0;
    for part in Fields::new(s) {
        if k == 6 {
            return Err(err("line", format!("more than 6 fields (time,type,order_id,size,price,direction): {}", show(s))));
        }
        f[k] = part;
        k += 1;
    }
    if k < 6 {
        return Err(err(MSG_FIELDS[k], format!("truncated line: 6 fields expected, found {k}")));
    }
    // time: seconds after New York midnight, exact to the ns.
    let t = parse_time_ns(f[0]).map_err(|e| err("time", e))?;
    // A New York day lasts up to 25 h (the day DST ends).
    if !(0..NS_PER_DAY + 3_600 * NS_PER_SEC).contains(&t) {
        return Err(err("time", format!("{} is not a time of day in seconds", show(f[0]))));
    }
    let ts = u.midnight + t;
    if ts < last_ts {
        return Err(err("time", format!("{} is earlier than the previous row's time (times must be non-decreasing)", show(f[0]))));
    }
    let kind = parse_int(f[1]).and_then(MsgType::from_code).ok_or_else(|| {
        err(
            "type",
            format!(
                "unknown message type {} (LOBSTER types: 1 submit, 2 cancel, 3 delete, 4 execute, \
                 5 hidden execution, 7 halt)",
                show(f[1])
            ),
        )
    })?;
    let order_id = parse_u64(f[2]).ok_or_else(|| err("order_id", format!("not an order id: {}", show(f[2]))))?;
    let shares = parse_int(f[3]).ok_or_else(|| err("size", format!("not an integer: {}", show(f[3]))))?;
    let side = match parse_int(f[5]) {
        Some(1) => Side::Bid,
        Some(-1) => Side::Ask,
        _ => return Err(err("direction", format!("{} is neither 1 (buy) nor -1 (sell)", show(f[5])))),
    };
    let raw = parse_int(f[4]).ok_or_else(|| err("price", format!("not an integer (USD × 10^4): {}", show(f[4]))))?;
    let (price, half_tick, size) = if kind == MsgType::Halt {
        if !(-1..=1).contains(&raw) {
            return Err(err("price", format!("halt code {raw} is none of -1 (halt), 0 (quoting), 1 (trading)")));
        }
        if shares < 0 {
            return Err(err("size", format!("negative size {shares}")));
        }
        (raw, false, shares)
    } else {
        if shares <= 0 {
            return Err(err("size", format!("size must be positive, got {shares}")));
        }
        let (ticks, half) = if kind == MsgType::Hidden {
            // Hidden (midpoint-pegged) orders execute at half-cent prices: exact as half_tick.
            u.half_ticks(raw)
        } else {
            u.ticks(raw).map(|t| (t, false))
        }
        .ok_or_else(|| err("price", format!("{raw} (USD × 10^4) is not on the tick grid")))?;
        (ticks, half, shares)
    };
    let size = size.checked_mul(u.size_mul).ok_or_else(|| err("size", format!("{shares} overflows in lots")))?;
    Ok(Message { row: line, ts, kind, order_id, size, price, half_tick, side })
}

/// Parse one orderbook row into `out` (ticks and lots; empty levels `NO_PRICE`/0), validating
/// the LOBSTER layout: dummy levels only after occupied ones, prices strictly moving away from the
/// touch, positive sizes, on the tick grid, not crossed.
fn parse_book_row(file: &str, line: u64, s: &[u8], u: &Units, out: &mut TopN) -> Result<()> {
    let n = out.levels();
    let err = |col: usize, reason: String| DataError::parse(file, line, &level_column(col), reason);
    if s.is_empty() {
        return Err(DataError::parse(file, line, "row", "empty line"));
    }
    let mut it = Fields::new(s);
    let mut ended = [false; 2]; // [ask, bid]: an empty level was seen
    let mut raw_best = [0i64; 2];
    for col in (0..4 * n).step_by(2) {
        let (ps, ss) = match (it.next(), it.next()) {
            (Some(p), Some(z)) => (p, z),
            (p, _) => {
                let found = col + p.is_some() as usize;
                return Err(err(found, format!("truncated row: {} columns expected, found {found}", 4 * n)));
            }
        };
        let l = col / 4;
        let ask = col % 4 == 0;
        let (side, empty, sidx) = if ask { (Side::Ask, EMPTY_ASK, 0) } else { (Side::Bid, EMPTY_BID, 1) };
        let raw = parse_int(ps).ok_or_else(|| err(col, format!("not an integer (USD × 10^4): {}", show(ps))))?;
        let size = parse_int(ss).ok_or_else(|| err(col + 1, format!("not an integer: {}", show(ss))))?;
        let (px_col, sz_col) = match side {
            Side::Ask => (&mut out.ask_px, &mut out.ask_sz),
            Side::Bid => (&mut out.bid_px, &mut out.bid_sz),
        };
        if raw == empty {
            if size != 0 {
                return Err(err(col + 1, format!("empty level (price {raw}) with size {size}")));
            }
            ended[sidx] = true;
            px_col[l] = NO_PRICE;
            sz_col[l] = 0;
            continue;
        }
        if ended[sidx] {
            return Err(err(col, format!("occupied level {raw} after an empty level")));
        }
        if size <= 0 {
            return Err(err(col + 1, format!("size must be positive at an occupied level, got {size}")));
        }
        let ticks = u.ticks(raw).ok_or_else(|| err(col, format!("{raw} (USD × 10^4) is not on the tick grid")))?;
        if l > 0 && key(side, ticks) <= key(side, px_col[l - 1]) {
            return Err(err(col, format!("{raw} is not further from the touch than level {l}")));
        }
        if l == 0 {
            raw_best[sidx] = raw;
        }
        px_col[l] = ticks;
        sz_col[l] = size.checked_mul(u.size_mul).ok_or_else(|| err(col + 1, format!("{size} overflows in lots")))?;
    }
    if it.next().is_some() {
        return Err(DataError::parse(file, line, "row", format!("more than {} columns ({n} levels)", 4 * n)));
    }
    if out.ask_px[0] != NO_PRICE && out.bid_px[0] != NO_PRICE && out.bid_px[0] >= out.ask_px[0] {
        return Err(err(2, format!("crossed book: best bid {} ≥ best ask {} (LOBSTER books never cross)", raw_best[1], raw_best[0])));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// The canonical L3 event of a message row (`seq` = its row number).
pub fn message_event(m: &Message) -> Event {
    Event {
        ts_exchange: m.ts,
        ts_local: NO_TS,
        seq: m.row,
        order_id: m.order_id,
        price: m.price,
        size: m.size,
        kind: m.kind.event_kind(),
        side: m.side,
        flags: if m.half_tick { flags::HALF_TICK } else { 0 },
    }
}

/// Append the canonical events of one row pair: the message's L3 event, then the level events
/// that take the visible book from `before` to `after` — [`snapshot::diff`], the one snapshot
/// differ (per side, ask then bid, `LevelDelete`s in `before`'s order then `LevelSet`s in
/// `after`'s order; level events not at the message's (side, price) carry `DEPTH_WINDOW`; the
/// last event `BATCH_END`).
pub fn push_events(row: &Row<'_>, out: &mut Vec<Event>) {
    let m = row.msg;
    let at = snapshot::Stamp { ts_exchange: m.ts, ts_local: NO_TS, seq: m.row };
    snapshot::diff(row.before, row.after, &[message_event(m)], at, out);
}

// ---------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------

/// What a pass over the files produced.
struct Loaded {
    dataset: Dataset,
    report: Report,
    levels: usize,
}

fn by_type_json(counts: &[u64; 8]) -> Value {
    let mut m = Map::new();
    for t in MsgType::ALL {
        m.insert(t.code().to_string(), json!(counts[t.code() as usize]));
    }
    Value::Object(m)
}

/// Read the pair, build the dataset and the import report; `per_row` sees every good row pair
/// (with whether it is the first) before its events are appended.
fn load(inputs: &[PathBuf], opts: &ImportOptions, hash: bool, mut per_row: impl FnMut(&Row<'_>, bool)) -> Result<Loaded> {
    let mut r = PairReader::open(inputs, opts)?;
    // Rough capacity: ~40 bytes per message line, ~2.5 events per message.
    let est = std::fs::metadata(&r.pair.message).map(|m| m.len() as usize / 40 * 5 / 2).unwrap_or(0);
    let mut events = Vec::with_capacity(est.min(1 << 28));
    let mut by_type = [0u64; 8];
    let (mut messages, mut half_ticks) = (0u64, 0u64);
    let (mut start, mut end) = (0i64, 0i64);
    while let Some(row) = r.next_row()? {
        per_row(&row, messages == 0);
        if messages == 0 {
            start = row.msg.ts;
        }
        end = row.msg.ts;
        messages += 1;
        by_type[row.msg.kind.code() as usize] += 1;
        half_ticks += row.msg.half_tick as u64;
        push_events(&row, &mut events);
    }
    if messages == 0 {
        return Err(DataError::Invalid(format!("{} and {}: no usable rows", r.pair.message.display(), r.pair.orderbook.display())));
    }
    let bad = r.bad_lines().clone();
    if bad.count > 0 {
        tracing::warn!(skipped = bad.count, first = ?bad.first.first(), "LOBSTER: skipped bad row pairs");
    }
    let levels = r.levels();
    let mut rep = Report::new(true);
    rep.set("format", "lobster")
        .set("message_file", disp(&r.pair.message))
        .set("orderbook_file", disp(&r.pair.orderbook))
        .set("instrument", &r.instrument)
        .set("date", &r.pair.date)
        .set("messages", messages)
        .set("events", events.len())
        .set("levels", levels)
        .set("store_levels", opts.levels)
        .set("by_type", by_type_json(&by_type))
        .set("half_tick_executions", half_ticks)
        .set("start", format_utc(start))
        .set("end", format_utc(end))
        .set("start_ns", start)
        .set("end_ns", end)
        .set("bad_lines", bad.count)
        .set("first_bad_lines", &bad.first);
    let source_files = if hash { vec![SourceFile::hash(&r.pair.message)?, SourceFile::hash(&r.pair.orderbook)?] } else { Vec::new() };
    let meta = DatasetMeta {
        source_files,
        import_report: serde_json::to_value(&rep).unwrap_or(Value::Null),
        ..DatasetMeta::new("lobster", r.instrument.clone(), opts.levels, true)
    };
    Ok(Loaded { dataset: Dataset { meta, events }, report: rep, levels })
}

/// Import a LOBSTER message + orderbook pair (any order) into one dataset.
///
/// Report keys: `format`, `message_file`, `orderbook_file`, `instrument`, `date`, `messages`,
/// `events`, `levels` (N of the files), `store_levels`, `by_type` (count per LOBSTER type code),
/// `half_tick_executions`, `start`, `end`, `start_ns`, `end_ns`, `bad_lines`, `first_bad_lines`.
pub fn import(inputs: &[PathBuf], opts: &ImportOptions) -> Result<Imported> {
    let l = load(inputs, opts, true, |_, _| {})?;
    Ok(Imported { datasets: vec![l.dataset], report: l.report })
}

// ---------------------------------------------------------------------------------------------
// Check
// ---------------------------------------------------------------------------------------------

/// Named deviations from "the row shows exactly the change the message implies".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// The first row shows the book as it stood when the window opened, which no message built
    /// (LOBSTER starts from the exchange's book, the loader from an empty one).
    InitialBook,
    /// The message's price lies beyond the N visible levels before and after it: it cannot
    /// change the visible book, so its size cannot be verified.
    OutsideTrackedDepth,
}

impl Exception {
    pub const ALL: [Exception; 2] = [Exception::InitialBook, Exception::OutsideTrackedDepth];
    pub fn name(self) -> &'static str {
        match self {
            Exception::InitialBook => "initial_book",
            Exception::OutsideTrackedDepth => "outside_tracked_depth",
        }
    }
}

/// A consistent message's effect on the depth window besides its own level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shift {
    /// Only the message's level changed.
    None,
    /// The message's level vanished and the next level beyond the window entered at level N.
    LevelEnteredDepth,
    /// The message's level appeared inside a full window and pushed level N out.
    LevelLeftDepth,
}

/// The verdict on one message row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Consistent(Shift),
    Exception(Exception),
    Unexplained(String),
}

fn fmt_levels(px: &[i64], sz: &[i64]) -> String {
    let n = present(px);
    let v: Vec<String> = (0..n).map(|i| format!("{}x{}", px[i], sz[i])).collect();
    format!("[{}]", v.join(" "))
}

fn fmt_side(t: &TopN, side: Side) -> String {
    let (p, s) = side_of(t, side);
    fmt_levels(p, s)
}

/// Whether `p` lies within the visible depth of a side: a side showing fewer than N levels shows
/// all of them; a full side shows prices up to its N-th level.
fn in_window(px: &[i64], side: Side, p: i64) -> bool {
    let n = px.len();
    present(px) < n || key(side, p) <= key(side, px[n - 1])
}

/// Compare a message with the book change its row shows (see docs/data.md for the rules).
/// `first`: the row is the first good row (its `before` is the empty book).
pub fn classify(row: &Row<'_>, first: bool) -> Verdict {
    let v = classify_change(row);
    match v {
        Verdict::Unexplained(_) if first && present(&row.before.bid_px) + present(&row.before.ask_px) == 0 => {
            Verdict::Exception(Exception::InitialBook)
        }
        v => v,
    }
}

/// The occupied levels `(price, size)` of a side except the one at `p`.
fn levels_except<'a>(px: &'a [i64], sz: &'a [i64], n: usize, p: i64) -> impl Iterator<Item = (i64, i64)> + Clone + 'a {
    (0..n).filter(move |&i| px[i] != p).map(move |i| (px[i], sz[i]))
}

fn classify_change(row: &Row<'_>) -> Verdict {
    let m = row.msg;
    let (b, a) = (row.before, row.after);
    let Some((side, p)) = m.level() else {
        // Halts and half-tick executions: the visible book must not move.
        return if b == a {
            Verdict::Consistent(Shift::None)
        } else {
            Verdict::Unexplained(format!(
                "a type {} message changed the visible book: bids {} -> {}, asks {} -> {}",
                m.kind.code(),
                fmt_side(b, Side::Bid),
                fmt_side(a, Side::Bid),
                fmt_side(b, Side::Ask),
                fmt_side(a, Side::Ask)
            ))
        };
    };
    let other = side.opposite();
    if side_of(b, other) != side_of(a, other) {
        return Verdict::Unexplained(format!(
            "the other side ({}) changed: {} -> {}",
            other.as_str(),
            fmt_side(b, other),
            fmt_side(a, other)
        ));
    }
    let (bp, bs) = side_of(b, side);
    let (ap, asz) = side_of(a, side);
    let (nb, na) = (present(bp), present(ap));
    let size_at = |px: &[i64], sz: &[i64], n: usize| px[..n].iter().position(|&x| x == p).map(|i| sz[i]).unwrap_or(0);
    let (sb, sa) = (size_at(bp, bs, nb), size_at(ap, asz, na));
    let (vis_b, vis_a) = (in_window(bp, side, p), in_window(ap, side, p));
    let expected = m.kind.implied_change(m.size);
    if !vis_b && !vis_a && bp == ap && bs == asz {
        return if expected == 0 { Verdict::Consistent(Shift::None) } else { Verdict::Exception(Exception::OutsideTrackedDepth) };
    }
    let side_change = || format!("{} {} -> {}", side.as_str(), fmt_levels(bp, bs), fmt_levels(ap, asz));
    if sa - sb != expected {
        return Verdict::Unexplained(format!(
            "expected a size change of {expected:+} at {} {p}, the book shows {:+} ({})",
            side.as_str(),
            sa - sb,
            side_change()
        ));
    }
    // Every other level of the side must be unchanged, or shifted through the window edge.
    let (rb, ra) = (levels_except(bp, bs, nb, p), levels_except(ap, asz, na, p));
    let (cb, ca) = (rb.clone().count(), ra.clone().count());
    let n = bp.len();
    if cb == ca && rb.clone().eq(ra.clone()) {
        return Verdict::Consistent(Shift::None);
    }
    if sb == 0 && sa > 0 && vis_b && nb == n && na == n && ca + 1 == cb && ra.clone().eq(rb.clone().take(ca)) {
        return Verdict::Consistent(Shift::LevelLeftDepth);
    }
    if sb > 0 && sa == 0 && nb == n && cb + 1 == ca && rb.clone().eq(ra.clone().take(cb)) {
        return Verdict::Consistent(Shift::LevelEnteredDepth);
    }
    Verdict::Unexplained(format!("levels other than {} {p} changed: {}", side.as_str(), side_change()))
}

/// Verify every message against the book change it implies, and the book rebuilt from the
/// imported events (through [`Dataset::replay`]) against every orderbook row.
///
/// Report keys (stable): the import keys, plus `consistent`, `consistency_rate`, `exceptions`
/// (rule → count), `depth_window` (`level_entered_depth`, `level_left_depth`: consistent
/// messages that shifted the window), `unexplained`, `first_unexplained`, `book_rows_checked`,
/// `book_rows_equal`, `first_book_mismatches`. `ok`: nothing unexplained, no input rejected, every
/// book row equal.
pub fn check(inputs: &[PathBuf], opts: &ImportOptions) -> Result<Report> {
    let mut consistent = 0u64;
    let mut exceptions = [0u64; Exception::ALL.len()];
    let (mut entered, mut left) = (0u64, 0u64);
    let mut unexplained = 0u64;
    let mut first_unexplained: Vec<String> = Vec::new();
    let loaded = load(inputs, opts, false, |row, first| match classify(row, first) {
        Verdict::Consistent(s) => {
            consistent += 1;
            match s {
                Shift::None => {}
                Shift::LevelEnteredDepth => entered += 1,
                Shift::LevelLeftDepth => left += 1,
            }
        }
        Verdict::Exception(e) => exceptions[e as usize] += 1,
        Verdict::Unexplained(why) => {
            unexplained += 1;
            if first_unexplained.len() < KEEP {
                let m = row.msg;
                first_unexplained.push(format!("row {}: type {} {} {}x{}: {why}", m.row, m.kind.code(), m.side.as_str(), m.price, m.size));
            }
        }
    })?;
    let (book_checked, book_equal, mismatches) = compare_books(inputs, opts, &loaded.dataset, loaded.levels)?;

    let mut rep = loaded.report;
    let messages = rep.get("messages").and_then(Value::as_u64).unwrap_or(0);
    let bad = rep.get("bad_lines").and_then(Value::as_u64).unwrap_or(0);
    let mut ex = Map::new();
    for e in Exception::ALL {
        ex.insert(e.name().into(), json!(exceptions[e as usize]));
    }
    rep.set("consistent", consistent)
        .set("consistency_rate", if messages > 0 { consistent as f64 / messages as f64 } else { 0.0 })
        .set("exceptions", ex)
        .set("depth_window", json!({"level_entered_depth": entered, "level_left_depth": left}))
        .set("unexplained", unexplained)
        .set("first_unexplained", first_unexplained)
        .set("book_rows_checked", book_checked)
        .set("book_rows_equal", book_equal)
        .set("first_book_mismatches", mismatches);
    rep.ok = unexplained == 0 && bad == 0 && book_checked == messages && book_equal == book_checked;
    Ok(rep)
}

/// Replay the dataset through the canonical book and compare it, at every batch end, with the
/// orderbook row of that message (top N, and no level kept beyond what the row shows).
fn compare_books(inputs: &[PathBuf], opts: &ImportOptions, ds: &Dataset, n: usize) -> Result<(u64, u64, Vec<String>)> {
    let mut reader = PairReader::open(inputs, opts)?;
    let mut top = TopN::new(n);
    let (mut checked, mut equal) = (0u64, 0u64);
    let mut mismatches = Vec::new();
    let mut err: Option<DataError> = None;
    ds.replay(|i, book| {
        if err.is_some() {
            return;
        }
        let row = match reader.next_row() {
            Ok(Some(r)) => r,
            Ok(None) => {
                err = Some(DataError::Invalid(format!("more batches than rows at event {i}")));
                return;
            }
            Err(e) => {
                err = Some(e);
                return;
            }
        };
        checked += 1;
        book.top_n(&mut top);
        let a = row.after;
        let same = top == *a
            && ds.events[i].seq == row.msg.row
            && book.layout.depth(Side::Bid) == present(&a.bid_px)
            && book.layout.depth(Side::Ask) == present(&a.ask_px);
        if same {
            equal += 1;
        } else if mismatches.len() < KEEP {
            mismatches.push(format!(
                "row {}: rebuilt bids {} asks {} (depth {}/{}), file bids {} asks {}",
                row.msg.row,
                fmt_side(&top, Side::Bid),
                fmt_side(&top, Side::Ask),
                book.layout.depth(Side::Bid),
                book.layout.depth(Side::Ask),
                fmt_side(a, Side::Bid),
                fmt_side(a, Side::Ask)
            ));
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok((checked, equal, mismatches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let n = parse_file_name(Path::new("/x/AMZN_2012-06-21_34200000_57600000_orderbook_1.csv")).unwrap();
        assert_eq!(n.kind, FileKind::Orderbook);
        assert_eq!(n.ticker.as_deref(), Some("AMZN"));
        assert_eq!(n.date.as_deref(), Some("2012-06-21"));
        assert_eq!((n.start_ms, n.end_ms, n.levels), (Some(34_200_000), Some(57_600_000), Some(1)));
        let n = parse_file_name(Path::new("BRK_A_2012-06-21_0_1_message_10.csv.gz")).unwrap();
        assert_eq!((n.kind, n.ticker.as_deref(), n.levels), (FileKind::Message, Some("BRK_A"), Some(10)));
        let n = parse_file_name(Path::new("my_message.csv")).unwrap();
        assert_eq!((n.kind, n.ticker, n.levels), (FileKind::Message, None, None));
        assert!(parse_file_name(Path::new("book.csv")).is_none());
    }

    #[test]
    fn units_convert_lobster_prices_exactly() {
        let inst = Instrument::new(VENUE, "X", "0.01", 0).unwrap();
        let u = Units::new(&inst, "2012-06-21").unwrap();
        assert_eq!((u.px_mul, u.px_den), (1, 100));
        assert_eq!(u.ticks(2_239_500), Some(22_395));
        assert_eq!(u.ticks(2_239_550), None);
        assert_eq!(u.half_ticks(2_239_550), Some((22_395, true)));
        assert_eq!(u.half_ticks(2_239_551), None);
        let fine = Instrument::new(VENUE, "X", "0.00005", 0).unwrap();
        let u = Units::new(&fine, "2012-06-21").unwrap();
        assert_eq!(u.ticks(2_239_551), Some(4_479_102));
        assert_eq!(parse_int(b"-9999999999"), Some(-9_999_999_999));
        assert_eq!(parse_int(b"1x"), None);
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"-"), None);
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
    }

    #[test]
    fn time_fast_path_equals_parse_fixed() {
        for t in ["34200.017459617", "34200", "34200.", "0.5", "57599.99", ".5", "1e3", "34200.0000000001", "3x", "", "-1.5"] {
            assert_eq!(parse_time_ns(t.as_bytes()), parse_fixed(t, 9), "{t}");
        }
        let f: Vec<&[u8]> = Fields::new(b"a,,b,").collect();
        assert_eq!(f, vec![&b"a"[..], b"", b"b", b""]);
    }

    fn topn(bids: &[(i64, i64)], asks: &[(i64, i64)], n: usize) -> TopN {
        let mut t = TopN::new(n);
        for (i, &(p, s)) in bids.iter().enumerate() {
            t.bid_px[i] = p;
            t.bid_sz[i] = s;
        }
        for (i, &(p, s)) in asks.iter().enumerate() {
            t.ask_px[i] = p;
            t.ask_sz[i] = s;
        }
        t
    }

    #[test]
    fn classify_window_shifts() {
        let msg = |kind, price, size| Message { row: 5, ts: 0, kind, order_id: 1, size, price, half_tick: false, side: Side::Bid };
        let b = topn(&[(100, 5), (99, 3)], &[(101, 1)], 2);
        // A new best bid pushes 99 out of a 2-level window.
        let a = topn(&[(100, 5), (99, 3)], &[(101, 1)], 2);
        let add = msg(MsgType::Submit, 98, 4);
        let row = Row { msg: &add, before: &b, after: &a };
        assert_eq!(classify(&row, false), Verdict::Exception(Exception::OutsideTrackedDepth));
        let a2 = topn(&[(100, 6), (99, 3)], &[(101, 1)], 2);
        let row = Row { msg: &add, before: &b, after: &a2 };
        assert!(matches!(classify(&row, false), Verdict::Unexplained(_)));
        let up = msg(MsgType::Submit, 100, 1);
        let row = Row { msg: &up, before: &b, after: &a2 };
        assert_eq!(classify(&row, false), Verdict::Consistent(Shift::None));
        let a3 = topn(&[(100, 5)], &[(101, 1)], 2);
        let row = Row { msg: &msg(MsgType::Submit, 101, 2), before: &b, after: &a3 };
        assert!(matches!(classify(&row, false), Verdict::Unexplained(_)));
    }
}

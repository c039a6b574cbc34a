//! Recording files: gzip text, one `<local_ts_ns> <json>` line per message (the format of
//! `../shared/data/binance`, read by the Binance loader), one file per symbol and period.

use crate::error::{LiveError, Result};
use flate2::write::GzEncoder;
use flate2::Compression;
use flowcast_datasets::time::{civil_from_days, NS_PER_DAY, NS_PER_SEC};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// `YYYYMMDD-HHMMSS` (UTC) of `ns`.
pub fn utc_stamp(ns: i64) -> String {
    let (y, m, d) = civil_from_days(ns.div_euclid(NS_PER_DAY));
    let s = ns.rem_euclid(NS_PER_DAY) / NS_PER_SEC;
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// One open recording file. Lines are buffered; [`Recorder::finish`] writes the gzip trailer
/// (a file that was not finished, e.g. after a crash, is a truncated gzip stream).
pub struct Recorder {
    path: PathBuf,
    enc: GzEncoder<BufWriter<File>>,
    lines: u64,
    last_ts: i64,
    line_buf: Vec<u8>,
}

impl Recorder {
    /// Create `<dir>/<prefix>_<YYYYMMDD-HHMMSS>.gz` for the period starting at `period_start_ns`;
    /// an existing name (a restart within the period) gets `.1`, `.2`, ... before `.gz`.
    pub fn create(dir: &Path, prefix: &str, period_start_ns: i64) -> Result<Recorder> {
        std::fs::create_dir_all(dir).map_err(|e| LiveError::io(dir, e))?;
        let stamp = utc_stamp(period_start_ns);
        let mut path = dir.join(format!("{prefix}_{stamp}.gz"));
        let mut n = 0;
        while path.exists() {
            n += 1;
            path = dir.join(format!("{prefix}_{stamp}.{n}.gz"));
        }
        let f = File::create(&path).map_err(|e| LiveError::io(&path, e))?;
        Ok(Recorder {
            path,
            enc: GzEncoder::new(BufWriter::new(f), Compression::fast()),
            lines: 0,
            last_ts: i64::MIN,
            line_buf: Vec::with_capacity(4096),
        })
    }

    /// Append one line. `ts_local` is clamped to the previous line's (the loader requires
    /// non-decreasing receive times; the wall clock may step back). Returns the time written.
    pub fn write(&mut self, ts_local: i64, json: &str) -> Result<i64> {
        let ts = ts_local.max(self.last_ts);
        self.line_buf.clear();
        let _ = write!(self.line_buf, "{ts} ");
        self.line_buf.extend_from_slice(json.as_bytes());
        self.line_buf.push(b'\n');
        self.enc.write_all(&self.line_buf).map_err(|e| LiveError::io(&self.path, e))?;
        self.lines += 1;
        self.last_ts = ts;
        Ok(ts)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn lines(&self) -> u64 {
        self.lines
    }
    /// Time of the last line written (`i64::MIN` if none).
    pub fn last_ts(&self) -> i64 {
        self.last_ts
    }

    /// Write the gzip trailer and close the file.
    pub fn finish(self) -> Result<PathBuf> {
        let path = self.path;
        let w = self.enc.finish().map_err(|e| LiveError::io(&path, e))?;
        w.into_inner().map_err(|e| LiveError::io(&path, e.into_error()))?.sync_all().map_err(|e| LiveError::io(&path, e))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writes_gzip_lines_with_monotone_times() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_723_161_253_937_085_768;
        assert_eq!(utc_stamp(t0), "20240808-235413");
        let mut r = Recorder::create(dir.path(), "spot-btcusdt", t0).unwrap();
        r.write(t0, "{\"a\":1}").unwrap();
        assert_eq!(r.write(t0 - 5, "{\"a\":2}").unwrap(), t0);
        let p = r.finish().unwrap();
        assert!(p.ends_with("spot-btcusdt_20240808-235413.gz"));
        let again = Recorder::create(dir.path(), "spot-btcusdt", t0).unwrap();
        assert!(again.path().ends_with("spot-btcusdt_20240808-235413.1.gz"));
        let mut s = String::new();
        flate2::read::GzDecoder::new(File::open(&p).unwrap()).read_to_string(&mut s).unwrap();
        assert_eq!(s, format!("{t0} {{\"a\":1}}\n{t0} {{\"a\":2}}\n"));
    }
}

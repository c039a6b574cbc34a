//! Line reading shared by the text loaders: plain or gzip files, 1-based line numbers, and the
//! file's display name for error messages.

use crate::error::{DataError, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Open a text file, transparently gunzipping `*.gz`.
pub fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let r: Box<dyn Read> =
        if path.extension().is_some_and(|e| e == "gz") { Box::new(flate2::read::MultiGzDecoder::new(f)) } else { Box::new(f) };
    Ok(Box::new(BufReader::with_capacity(1 << 20, r)))
}

/// Call `f(line_number, line)` for every line (1-based, without the newline). Stops at the first
/// error `f` returns.
pub fn for_each_line(path: &Path, mut f: impl FnMut(u64, &str) -> Result<()>) -> Result<()> {
    let mut r = open_text(path)?;
    let mut buf = Vec::with_capacity(4096);
    let mut n = 0u64;
    loop {
        buf.clear();
        let read = r.read_until(b'\n', &mut buf).map_err(|e| DataError::io(path, e))?;
        if read == 0 {
            return Ok(());
        }
        n += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        match std::str::from_utf8(&buf) {
            Ok(s) => f(n, s)?,
            // Hand the loader a lossy copy: its field parser then reports the bad field with file
            // and line (and `--lenient` can skip it) instead of the reader aborting here.
            Err(_) => f(n, &String::from_utf8_lossy(&buf))?,
        }
    }
}

//! TensorBoard event files: scalars only, written directly in TensorBoard's format.
//!
//! A file `events.out.tfevents.<secs>.<host>` is a TFRecord stream of `tensorflow.Event` protobuf
//! messages. Each record: `u64 length (LE) · u32 masked_crc32c(length) · data · u32
//! masked_crc32c(data)`, masked crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (CRC-32C,
//! Castagnoli). The first event carries `file_version = "brain.Event:2"`; every scalar is an Event
//! { wall_time (1, double), step (2, int64), summary (5) { value (1) { tag (1, string),
//! simple_value (2, float) } } }. Not tensorboard-rs: its `<secs>.<host>.<pid>` file names collide
//! when a run is resumed in the same process and second (the first file is truncated), and it
//! panics on I/O errors (docs/training.md has the measurement). Writes go through a `BufWriter` flushed at the
//! end of every epoch and on drop, so the files are complete once the writer is dropped.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = t[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn masked(crc: u32) -> u32 {
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, ((field as u64) << 3) | wire as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// One `Event` message: wall time, step and either the file version or a scalar.
fn event(wall_time: f64, step: i64, body: EventBody<'_>) -> Vec<u8> {
    let mut e = Vec::with_capacity(64);
    key(&mut e, 1, 1);
    e.extend_from_slice(&wall_time.to_le_bytes());
    key(&mut e, 2, 0);
    varint(&mut e, step as u64);
    match body {
        EventBody::Version(v) => bytes_field(&mut e, 3, v.as_bytes()),
        EventBody::Scalar(tag, value) => {
            let mut val = Vec::with_capacity(tag.len() + 8);
            bytes_field(&mut val, 1, tag.as_bytes());
            key(&mut val, 2, 5);
            val.extend_from_slice(&value.to_le_bytes());
            let mut summary = Vec::with_capacity(val.len() + 4);
            bytes_field(&mut summary, 1, &val);
            bytes_field(&mut e, 5, &summary);
        }
    }
    e
}

enum EventBody<'a> {
    Version(&'a str),
    Scalar(&'a str, f32),
}

/// Writes scalar summaries to one event file in `dir`.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl EventWriter {
    /// Create `dir` and a new event file in it.
    pub fn create(dir: &Path) -> std::io::Result<EventWriter> {
        std::fs::create_dir_all(dir)?;
        let t = now();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "flowcast".into());
        // Several writers in one second (a resumed run) each get their own file.
        let mut n = 0;
        let path = loop {
            let name = if n == 0 {
                format!("events.out.tfevents.{}.{host}", t as u64)
            } else {
                format!("events.out.tfevents.{}.{host}.{n}", t as u64)
            };
            let p = dir.join(name);
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let mut w = EventWriter { out: BufWriter::new(File::create(&path)?), path };
        w.record(&event(t, 0, EventBody::Version("brain.Event:2")))?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked(crc32c(&len)).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked(crc32c(data)).to_le_bytes())
    }

    /// One scalar point (`tag` like "train/loss") at `step`.
    pub fn scalar(&mut self, tag: &str, value: f32, step: i64) -> std::io::Result<()> {
        self.record(&event(now(), step, EventBody::Scalar(tag, value)))
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// Read back every `(tag, step, value)` scalar of an event file, checking both CRCs of every
/// record (used by tests and `flowcast` run checks).
pub fn read_scalars(path: &Path) -> std::io::Result<Vec<(String, i64, f32)>> {
    let data = std::fs::read(path)?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {m}", path.display()));
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if i + 12 > data.len() {
            return Err(bad("truncated record header"));
        }
        let len_b = &data[i..i + 8];
        let len = u64::from_le_bytes(len_b.try_into().unwrap()) as usize;
        if u32::from_le_bytes(data[i + 8..i + 12].try_into().unwrap()) != masked(crc32c(len_b)) {
            return Err(bad("length crc mismatch"));
        }
        let body = data.get(i + 12..i + 12 + len).ok_or_else(|| bad("truncated record"))?;
        let crc = data.get(i + 12 + len..i + 16 + len).ok_or_else(|| bad("truncated crc"))?;
        if u32::from_le_bytes(crc.try_into().unwrap()) != masked(crc32c(body)) {
            return Err(bad("data crc mismatch"));
        }
        if let Some(s) = decode_scalar(body) {
            out.push(s);
        }
        i += 16 + len;
    }
    Ok(out)
}

/// Minimal protobuf walk: fields (number, wire type, payload).
fn fields(mut b: &[u8]) -> Vec<(u32, &[u8], u64)> {
    let mut out = Vec::new();
    let rd = |b: &mut &[u8]| -> Option<u64> {
        let mut v = 0u64;
        for s in 0..10 {
            let (&x, rest) = b.split_first()?;
            *b = rest;
            v |= ((x & 0x7f) as u64) << (7 * s);
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    while !b.is_empty() {
        let Some(k) = rd(&mut b) else { break };
        let (f, w) = ((k >> 3) as u32, k & 7);
        match w {
            0 => {
                let Some(v) = rd(&mut b) else { break };
                out.push((f, &[][..], v));
            }
            1 if b.len() >= 8 => {
                out.push((f, &b[..8], 0));
                b = &b[8..];
            }
            5 if b.len() >= 4 => {
                out.push((f, &b[..4], 0));
                b = &b[4..];
            }
            2 => {
                let Some(n) = rd(&mut b) else { break };
                let n = n as usize;
                if n > b.len() {
                    break;
                }
                out.push((f, &b[..n], 0));
                b = &b[n..];
            }
            _ => break,
        }
    }
    out
}

fn decode_scalar(ev: &[u8]) -> Option<(String, i64, f32)> {
    let fs = fields(ev);
    let step = fs.iter().find(|f| f.0 == 2).map(|f| f.2 as i64).unwrap_or(0);
    let summary = fs.iter().find(|f| f.0 == 5)?.1;
    let value = fields(summary).into_iter().find(|f| f.0 == 1)?.1;
    let vf = fields(value);
    let tag = String::from_utf8(vf.iter().find(|f| f.0 == 1)?.1.to_vec()).ok()?;
    let v = f32::from_le_bytes(vf.iter().find(|f| f.0 == 2)?.1.try_into().ok()?);
    Some((tag, step, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_vector() {
        // RFC 3720 (iSCSI) test vector: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn scalars_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let mut w = EventWriter::create(dir.path()).unwrap();
            w.scalar("train/loss", 1.25, 1).unwrap();
            w.scalar("val/macro_f1", 0.5, 2).unwrap();
            w.path().to_path_buf()
        };
        let s = read_scalars(&path).unwrap();
        assert_eq!(s, vec![("train/loss".into(), 1, 1.25), ("val/macro_f1".into(), 2, 0.5)]);
    }

    #[test]
    fn a_second_writer_in_the_same_second_gets_its_own_file() {
        // A run stopped and resumed in one process: neither epoch may be lost.
        let dir = tempfile::tempdir().unwrap();
        let a = {
            let mut w = EventWriter::create(dir.path()).unwrap();
            w.scalar("train/loss", 1.0, 1).unwrap();
            w.path().to_path_buf()
        };
        let b = {
            let mut w = EventWriter::create(dir.path()).unwrap();
            w.scalar("train/loss", 0.5, 2).unwrap();
            w.path().to_path_buf()
        };
        assert_ne!(a, b);
        assert_eq!(read_scalars(&a).unwrap(), vec![("train/loss".into(), 1, 1.0)]);
        assert_eq!(read_scalars(&b).unwrap(), vec![("train/loss".into(), 2, 0.5)]);
        // An unwritable place is an error, not a panic.
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        assert!(EventWriter::create(&file.join("tb")).is_err());
    }
}

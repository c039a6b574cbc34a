//! `serve.toml`: the server's operational settings (listeners, limits, auth, rate limits,
//! timeouts, the inference queue and dynamic batching, per-model overrides). Every key is
//! optional; unknown keys are errors. Command-line flags override the file (docs/serve.md).

use crate::stream::StreamLimits;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file as written. Relative paths are relative to the file's directory.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    /// The model repository (the `--models` flag overrides it).
    pub models: Option<PathBuf>,
    /// REST listen address `HOST:PORT` or `"off"`.
    pub http: Option<String>,
    /// gRPC listen address `HOST:PORT` or `"off"`.
    pub grpc: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// Bearer tokens, one per line (blank lines and `#` comments ignored). Absent: no auth.
    pub auth_tokens_file: Option<PathBuf>,
    /// Longest time an inference request may wait in the queue and compute (504 after).
    pub request_timeout_ms: Option<u64>,
    /// Inference requests admitted at once, all models together (503 beyond).
    pub queue_capacity: Option<usize>,
    pub rate_limit: Option<RateLimit>,
    pub batching: Option<Batching>,
    /// Per-model overrides, keyed by model name: `[model.lstm]`.
    #[serde(default)]
    pub model: BTreeMap<String, ModelOverride>,
    /// Stream mode from the NATS bus: `[[subscribe]]` tables (bus.rs).
    #[serde(default)]
    pub subscribe: Vec<crate::bus::Subscription>,
    /// Stream mode's bounds: `[stream]` (keys of [`StreamLimits`]; absent keys: the defaults).
    pub stream: Option<StreamLimits>,
}

/// Command-line overrides of `[stream]` (`None`: the file's value, else the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamFlags {
    pub max_streams: Option<usize>,
    pub max_book_levels: Option<usize>,
    pub max_events_per_message: Option<usize>,
    pub max_snapshot_levels: Option<usize>,
}

/// A token bucket per client (bearer token when auth is on, else peer IP).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate (tokens refilled per second).
    pub requests_per_second: f64,
    /// Bucket size: the requests a client may send at once after being idle.
    pub burst: u32,
}

/// Dynamic batching (as Triton's dynamic batcher): requests for one model are collected until
/// `max_batch` windows or until the first has waited `max_queue_delay_us`, then run as one batch.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batching {
    /// Most windows per model call; 1 = no batching across requests.
    #[serde(default = "one")]
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch.
    #[serde(default)]
    pub max_queue_delay_us: u64,
    /// Model calls that may run at once per model (Triton's instance count).
    #[serde(default = "one")]
    pub instances: usize,
}

fn one() -> usize {
    1
}

impl Default for Batching {
    fn default() -> Self {
        Batching { max_batch: 1, max_queue_delay_us: 0, instances: 1 }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOverride {
    pub batching: Option<Batching>,
    pub request_timeout_ms: Option<u64>,
}

/// Default inference queue capacity (requests).
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// The resolved operational settings the server runs with.
#[derive(Clone, Debug)]
pub struct Ops {
    /// Accepted bearer tokens; `None`: no authentication.
    pub auth_tokens: Option<Vec<String>>,
    pub rate_limit: Option<RateLimit>,
    pub request_timeout: Option<Duration>,
    pub queue_capacity: usize,
    pub batching: Batching,
    pub models: BTreeMap<String, ModelOverride>,
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            auth_tokens: None,
            rate_limit: None,
            request_timeout: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            batching: Batching::default(),
            models: BTreeMap::new(),
        }
    }
}

impl Ops {
    /// The batching of `model` (its override, else the server's).
    pub fn batching_for(&self, model: &str) -> Batching {
        self.models.get(model).and_then(|o| o.batching).unwrap_or(self.batching)
    }
    pub fn timeout_for(&self, model: &str) -> Option<Duration> {
        self.models.get(model).and_then(|o| o.request_timeout_ms).map(Duration::from_millis).or(self.request_timeout)
    }
}

/// A listen address or `off` (`flag` names the setting in the message).
pub fn parse_addr(flag: &str, v: &str) -> Result<Option<SocketAddr>, String> {
    if v == "off" {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| format!("{flag} {v:?}: expected HOST:PORT (e.g. 127.0.0.1:8000) or off"))
}

/// Bearer tokens from a file: one per line, blank lines and `#` comments ignored.
pub fn read_tokens(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("auth_tokens_file {}: {e}", path.display()))?;
    let tokens: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect();
    if let Some((i, _)) = tokens.iter().enumerate().find(|(_, t)| t.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(format!("auth_tokens_file {}: token {} contains whitespace", path.display(), i + 1));
    }
    if tokens.is_empty() {
        return Err(format!("auth_tokens_file {}: no tokens (every request would be refused)", path.display()));
    }
    Ok(tokens)
}

impl ServeFile {
    /// Reads and parses `path`; errors name the file and the key.
    pub fn read(path: &Path) -> Result<ServeFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut f: ServeFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        f.models = f.models.map(|p| base.join(p));
        f.auth_tokens_file = f.auth_tokens_file.map(|p| base.join(p));
        Ok(f)
    }

    /// Stream mode's bounds: `[stream]` with the flags applied over it, validated.
    pub fn stream_limits(&self, flags: &StreamFlags) -> Result<StreamLimits, String> {
        let mut l = self.stream.clone().unwrap_or_default();
        l.max_streams = flags.max_streams.unwrap_or(l.max_streams);
        l.max_book_levels = flags.max_book_levels.unwrap_or(l.max_book_levels);
        l.max_events_per_message = flags.max_events_per_message.unwrap_or(l.max_events_per_message);
        l.max_snapshot_levels = flags.max_snapshot_levels.unwrap_or(l.max_snapshot_levels);
        l.validate("stream")?;
        Ok(l)
    }

    /// The operational settings, validated (tokens read from their file).
    pub fn ops(&self) -> Result<Ops, String> {
        let check_batching = |field: &str, b: &Batching| -> Result<(), String> {
            if b.max_batch == 0 || b.instances == 0 {
                return Err(format!("{field}: max_batch and instances must be ≥ 1"));
            }
            Ok(())
        };
        if let Some(b) = &self.batching {
            check_batching("batching", b)?;
        }
        for (name, o) in &self.model {
            if let Some(b) = &o.batching {
                check_batching(&format!("model.{name}.batching"), b)?;
            }
        }
        if let Some(r) = &self.rate_limit {
            if !(r.requests_per_second.is_finite() && r.requests_per_second > 0.0) || r.burst == 0 {
                return Err("rate_limit: requests_per_second must be > 0 and burst ≥ 1".into());
            }
        }
        if self.queue_capacity == Some(0) {
            return Err("queue_capacity: must be ≥ 1".into());
        }
        for (i, s) in self.subscribe.iter().enumerate() {
            s.validate(i)?;
        }
        Ok(Ops {
            auth_tokens: self.auth_tokens_file.as_deref().map(read_tokens).transpose()?,
            rate_limit: self.rate_limit,
            request_timeout: self.request_timeout_ms.map(Duration::from_millis),
            queue_capacity: self.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY),
            batching: self.batching.unwrap_or_default(),
            models: self.model.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_and_refuses_unknown_ones() {
        let f: ServeFile = toml::from_str(
            r#"
            models = "runs/x"
            http = "127.0.0.1:9000"
            grpc = "off"
            max_body_bytes = 1024
            request_timeout_ms = 250
            queue_capacity = 8
            rate_limit = { requests_per_second = 5.0, burst = 2 }
            batching = { max_batch = 32, max_queue_delay_us = 500 }
            [model.lstm]
            batching = { max_batch = 4, max_queue_delay_us = 100, instances = 2 }
            request_timeout_ms = 50
            "#,
        )
        .unwrap();
        let ops = f.ops().unwrap();
        assert_eq!(ops.batching_for("lstm"), Batching { max_batch: 4, max_queue_delay_us: 100, instances: 2 });
        assert_eq!(ops.batching_for("other"), Batching { max_batch: 32, max_queue_delay_us: 500, instances: 1 });
        assert_eq!(ops.timeout_for("lstm"), Some(Duration::from_millis(50)));
        assert_eq!(ops.timeout_for("other"), Some(Duration::from_millis(250)));
        assert_eq!(ops.queue_capacity, 8);
        let e = toml::from_str::<ServeFile>("htp = \"x\"").unwrap_err().to_string();
        assert!(e.contains("unknown field `htp`"), "{e}");
        let e = toml::from_str::<ServeFile>("[batching]\nmax_batch = 2\ndelay = 3").unwrap_err().to_string();
        assert!(e.contains("unknown field `delay`"), "{e}");
        let f: ServeFile = toml::from_str("batching = { max_batch = 0 }").unwrap();
        assert!(f.ops().unwrap_err().contains("batching"));
    }

    #[test]
    fn subscriptions_parse_with_defaults_and_are_checked() {
        let f: ServeFile = toml::from_str(
            "[[subscribe]]\nnats = \"nats://127.0.0.1:4222\"\nstream = \"FLOWCAST_BINANCE_SPOT_BTCUSDT\"\nmodel = \"lstm\"\n",
        )
        .unwrap();
        f.ops().unwrap();
        let s = &f.subscribe[0];
        assert_eq!(s.durable_name(), "flowcast-serve-lstm");
        assert_eq!(s.subject(), "flowcast.predictions.lstm.FLOWCAST_BINANCE_SPOT_BTCUSDT");
        let f: ServeFile = toml::from_str("[[subscribe]]\nnats = \"n\"\nstream = \"S\"\nmodel = \"m\"\nbatch = 0\n").unwrap();
        assert!(f.ops().unwrap_err().contains("subscribe[0].batch"));
        let e = toml::from_str::<ServeFile>("[[subscribe]]\nnats = \"n\"\nstream = \"S\"\nmodel = \"m\"\nsubject = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `subject`"), "{e}");
    }

    #[test]
    fn stream_table_parses_flags_override_it_and_bad_values_are_refused() {
        let f: ServeFile =
            toml::from_str("[stream]\nmax_streams = 8\nmax_book_levels = 500\nmax_events_per_message = 100\nmax_snapshot_levels = 50\n")
                .unwrap();
        let l = f.stream_limits(&StreamFlags::default()).unwrap();
        assert_eq!(
            l,
            StreamLimits {
                max_streams: 8,
                max_book_levels: 500,
                max_events_per_message: 100,
                max_snapshot_levels: 50,
                ..Default::default()
            }
        );
        let flags = StreamFlags { max_streams: Some(3), max_snapshot_levels: Some(10), ..Default::default() };
        let l = f.stream_limits(&flags).unwrap();
        assert_eq!(
            l,
            StreamLimits {
                max_streams: 3,
                max_book_levels: 500,
                max_events_per_message: 100,
                max_snapshot_levels: 10,
                ..Default::default()
            }
        );
        // Absent table or keys: the defaults.
        assert_eq!(ServeFile::default().stream_limits(&StreamFlags::default()).unwrap(), StreamLimits::default());
        let f: ServeFile = toml::from_str("[stream]\nmax_streams = 2\n").unwrap();
        assert_eq!(f.stream_limits(&StreamFlags::default()).unwrap(), StreamLimits { max_streams: 2, ..Default::default() });
        let e = toml::from_str::<ServeFile>("[stream]\nmax_stream = 2\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `max_stream`"), "{e}");
        let f: ServeFile = toml::from_str("[stream]\nmax_events_per_message = 0\n").unwrap();
        assert_eq!(f.stream_limits(&StreamFlags::default()).unwrap_err(), "stream.max_events_per_message: must be ≥ 1");
        let f: ServeFile = toml::from_str("[stream]\nmax_book_levels = 10\n").unwrap();
        assert!(f.stream_limits(&StreamFlags::default()).unwrap_err().contains("max_snapshot_levels 1000 exceeds max_book_levels 10"));
        // A flag can repair what the file set.
        let flags = StreamFlags { max_snapshot_levels: Some(10), ..Default::default() };
        assert_eq!(f.stream_limits(&flags).unwrap().max_snapshot_levels, 10);
    }

    #[test]
    fn stream_table_sets_limits_and_online_learning() {
        let f: ServeFile =
            toml::from_str("[stream]\nonline = false\nonline_max_pending = 10\nmax_streams = 3\nfrozen = [\"b\"]\n").unwrap();
        let s = f.stream_limits(&StreamFlags::default()).unwrap();
        assert!(!s.online);
        assert_eq!(s.frozen, ["b"]);
        assert_eq!((s.online_max_pending, s.max_streams), (10, 3));
        assert_eq!(s.online_max_bytes, StreamLimits::default().online_max_bytes);
        let e = toml::from_str::<ServeFile>("[stream]\nonline_max_rows = 1\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `online_max_rows`"), "{e}");
    }

    #[test]
    fn tokens_file_skips_comments_and_refuses_empty() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tokens");
        std::fs::write(&p, "# clients\nabc\n\n  def  \n").unwrap();
        assert_eq!(read_tokens(&p).unwrap(), vec!["abc", "def"]);
        std::fs::write(&p, "# none\n").unwrap();
        assert!(read_tokens(&p).unwrap_err().contains("no tokens"));
    }
}

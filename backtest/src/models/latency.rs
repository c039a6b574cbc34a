//! Order latency: how long an order takes from the strategy to the matching engine (entry) and
//! how long the exchange's answer takes back (response). Feed latency (exchange → strategy) is not
//! a model: it is the data's own `ts_local − ts_exchange` where the source records both (Binance),
//! else the configured constant (`feed_latency`).

use crate::error::{BacktestError, Result};
use flowcast_datasets::time::parse_duration_or_zero;
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

/// Entry and response latency in ns.
pub trait LatencyModel {
    fn name(&self) -> &'static str;
    /// Latency of an order sent at local time `ts_local` until the matching engine sees it.
    fn entry(&mut self, ts_local: i64) -> i64;
    /// Latency of the exchange's response (ack, fill, cancel) issued at exchange time `ts_exchange`.
    fn response(&mut self, ts_exchange: i64) -> i64;
}

/// Constant latencies: `entry(t) = e`, `response(t) = r`.
#[derive(Clone, Debug)]
pub struct ConstantLatency {
    pub entry_ns: i64,
    pub response_ns: i64,
}

impl LatencyModel for ConstantLatency {
    fn name(&self) -> &'static str {
        "constant"
    }
    fn entry(&mut self, _: i64) -> i64 {
        self.entry_ns
    }
    fn response(&mut self, _: i64) -> i64 {
        self.response_ns
    }
}

/// Recorded latencies, linearly interpolated in time between records (as hftbacktest's
/// `IntpOrderLatency`): for records `(t_i, e_i, r_i)` sorted by `t`, `entry(t) = e_i + (e_{i+1} −
/// e_i)·(t − t_i)/(t_{i+1} − t_i)` for `t_i ≤ t < t_{i+1}`, held constant outside the records.
/// The cursor only moves forward for increasing `t` (amortised O(1) per call in a replay).
#[derive(Clone, Debug)]
pub struct InterpolatedLatency {
    ts: Vec<i64>,
    entry: Vec<i64>,
    response: Vec<i64>,
    cursor: usize,
}

impl InterpolatedLatency {
    pub fn new(mut records: Vec<(i64, i64, i64)>) -> Result<InterpolatedLatency> {
        if records.is_empty() {
            return Err(BacktestError::Config("latency: interpolated latency needs at least one record".into()));
        }
        records.sort_by_key(|r| r.0);
        if let Some(r) = records.iter().find(|r| r.1 < 0 || r.2 < 0) {
            return Err(BacktestError::Config(format!("latency: negative latency in the record at ts {}", r.0)));
        }
        Ok(InterpolatedLatency {
            ts: records.iter().map(|r| r.0).collect(),
            entry: records.iter().map(|r| r.1).collect(),
            response: records.iter().map(|r| r.2).collect(),
            cursor: 0,
        })
    }

    /// Reads `ts_ns,entry_ns,response_ns` CSV rows (a header line is allowed).
    pub fn from_csv(path: &std::path::Path) -> Result<InterpolatedLatency> {
        let text = std::fs::read_to_string(path).map_err(|e| BacktestError::io(path, e))?;
        let mut recs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || (i == 0 && line.chars().next().is_some_and(|c| c.is_ascii_alphabetic())) {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let num = |k: usize, name: &str| -> Result<i64> {
                f.get(k).and_then(|s| s.parse::<i64>().ok()).ok_or_else(|| {
                    BacktestError::Config(format!("{}: line {}: field {name}: expected an integer (ns)", path.display(), i + 1))
                })
            };
            recs.push((num(0, "ts_ns")?, num(1, "entry_ns")?, num(2, "response_ns")?));
        }
        InterpolatedLatency::new(recs)
    }

    fn at(&mut self, t: i64, which: bool) -> i64 {
        let n = self.ts.len();
        if t < self.ts[self.cursor] {
            self.cursor = self.ts.partition_point(|&x| x <= t).saturating_sub(1);
        }
        while self.cursor + 1 < n && self.ts[self.cursor + 1] <= t {
            self.cursor += 1;
        }
        let v = if which { &self.entry } else { &self.response };
        let i = self.cursor;
        if i + 1 >= n || t <= self.ts[i] {
            return v[i];
        }
        let (t0, t1) = (self.ts[i], self.ts[i + 1]);
        let w = (t - t0) as f64 / (t1 - t0) as f64;
        (v[i] as f64 + (v[i + 1] - v[i]) as f64 * w).round() as i64
    }
}

impl LatencyModel for InterpolatedLatency {
    fn name(&self) -> &'static str {
        "interpolated"
    }
    fn entry(&mut self, t: i64) -> i64 {
        self.at(t, true)
    }
    fn response(&mut self, t: i64) -> i64 {
        self.at(t, false)
    }
}

/// Latencies drawn i.i.d. from a log-normal distribution, `ln L ~ N(μ, σ²)`, fitted by maximum
/// likelihood (mean and standard deviation of `ln L`) on observed latencies — by default the
/// dataset's own feed latencies (`ts_local − ts_exchange`), a proxy for the order path when no
/// order log exists. Seeded: a replay is reproducible.
#[derive(Clone, Debug)]
pub struct LogNormalLatency {
    pub mu: f64,
    pub sigma: f64,
    /// Response latency = `response_ratio` × a fresh draw.
    pub response_ratio: f64,
    dist: LogNormal<f64>,
    rng: rand_chacha::ChaCha8Rng,
}

impl LogNormalLatency {
    pub fn new(mu: f64, sigma: f64, response_ratio: f64, seed: u64) -> Result<LogNormalLatency> {
        let dist = LogNormal::new(mu, sigma).map_err(|e| BacktestError::Config(format!("latency: log-normal(μ={mu}, σ={sigma}): {e}")))?;
        Ok(LogNormalLatency { mu, sigma, response_ratio, dist, rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed) })
    }
    /// Maximum-likelihood fit on positive samples (ns); non-positive samples are ignored.
    pub fn fit(samples: &[i64], response_ratio: f64, seed: u64) -> Result<LogNormalLatency> {
        let logs: Vec<f64> = samples.iter().filter(|&&x| x > 0).map(|&x| (x as f64).ln()).collect();
        if logs.len() < 2 {
            return Err(BacktestError::Config(format!(
                "latency: a fitted latency needs at least 2 positive samples, the data has {} (no local timestamps?)",
                logs.len()
            )));
        }
        let mu = logs.iter().sum::<f64>() / logs.len() as f64;
        let var = logs.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / logs.len() as f64;
        LogNormalLatency::new(mu, var.sqrt().max(1e-9), response_ratio, seed)
    }
}

impl LatencyModel for LogNormalLatency {
    fn name(&self) -> &'static str {
        "lognormal"
    }
    fn entry(&mut self, _: i64) -> i64 {
        self.dist.sample(&mut self.rng).round() as i64
    }
    fn response(&mut self, _: i64) -> i64 {
        (self.dist.sample(&mut self.rng) * self.response_ratio).round() as i64
    }
}

/// The latency model as the backtest TOML writes it (`[latency] model = "constant" ...`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum LatencySpec {
    /// `entry`/`response` durations ("100us", "1ms", "0").
    Constant {
        #[serde(default = "zero")]
        entry: String,
        #[serde(default = "zero")]
        response: String,
    },
    /// A CSV of `ts_ns,entry_ns,response_ns` records.
    Interpolated { file: std::path::PathBuf },
    /// Log-normal fitted on the dataset's feed latencies (or given `mu`/`sigma` of ln ns).
    Lognormal {
        #[serde(default)]
        mu: Option<f64>,
        #[serde(default)]
        sigma: Option<f64>,
        #[serde(default = "one")]
        response_ratio: f64,
    },
}

fn zero() -> String {
    "0".into()
}
fn one() -> f64 {
    1.0
}

impl Default for LatencySpec {
    fn default() -> Self {
        LatencySpec::Constant { entry: zero(), response: zero() }
    }
}

/// Duration string → ns, zero allowed ("0", "100us"; field named in errors).
pub fn duration_ns(s: &str, field: &str) -> Result<i64> {
    parse_duration_or_zero(s).map_err(|e| BacktestError::Config(format!("{field}: {e}")))
}

impl LatencySpec {
    /// A constant latency of `entry` each way (the latency sweep's points).
    pub fn constant(entry_ns: i64, response_ns: i64) -> LatencySpec {
        LatencySpec::Constant { entry: format!("{entry_ns}ns"), response: format!("{response_ns}ns") }
    }
    /// Builds the model; `feed_latencies` are the dataset's observed feed latencies (ns).
    pub fn build(&self, feed_latencies: &[i64], seed: u64) -> Result<Box<dyn LatencyModel>> {
        Ok(match self {
            LatencySpec::Constant { entry, response } => Box::new(ConstantLatency {
                entry_ns: duration_ns(entry, "latency.entry")?,
                response_ns: duration_ns(response, "latency.response")?,
            }),
            LatencySpec::Interpolated { file } => Box::new(InterpolatedLatency::from_csv(file)?),
            LatencySpec::Lognormal { mu: Some(mu), sigma: Some(sigma), response_ratio } => {
                Box::new(LogNormalLatency::new(*mu, *sigma, *response_ratio, seed)?)
            }
            LatencySpec::Lognormal { mu: None, sigma: None, response_ratio } => {
                Box::new(LogNormalLatency::fit(feed_latencies, *response_ratio, seed)?)
            }
            LatencySpec::Lognormal { .. } => {
                return Err(BacktestError::Config("latency: give both `mu` and `sigma`, or neither (fit)".into()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_by_hand() {
        let mut m = InterpolatedLatency::new(vec![(100, 10, 20), (200, 30, 40)]).unwrap();
        assert_eq!(m.entry(50), 10, "held before the first record");
        assert_eq!(m.entry(150), 20, "10 + (30 − 10)·½");
        assert_eq!(m.response(175), 35, "20 + 20·¾");
        assert_eq!(m.entry(500), 30, "held after the last record");
        assert_eq!(m.entry(100), 10, "cursor moves back when time does");
    }

    #[test]
    fn lognormal_fit_recovers_parameters() {
        let truth = LogNormalLatency::new(10.0, 0.5, 1.0, 7).unwrap();
        let mut t = truth.clone();
        let xs: Vec<i64> = (0..20_000).map(|_| t.entry(0)).collect();
        let f = LogNormalLatency::fit(&xs, 1.0, 1).unwrap();
        assert!((f.mu - 10.0).abs() < 0.02 && (f.sigma - 0.5).abs() < 0.02, "μ {} σ {}", f.mu, f.sigma);
        assert!(LogNormalLatency::fit(&[0, -5], 1.0, 1).is_err());
    }

    #[test]
    fn spec_parses() {
        let s: LatencySpec = toml::from_str("model = \"constant\"\nentry = \"100us\"\nresponse = \"1ms\"").unwrap();
        let mut m = s.build(&[], 0).unwrap();
        assert_eq!((m.entry(0), m.response(0)), (100_000, 1_000_000));
        assert!(toml::from_str::<LatencySpec>("model = \"constant\"\nentty = \"1ms\"").is_err());
        // Zero is a latency; it is still not a window length.
        assert_eq!((duration_ns("0", "x").unwrap(), duration_ns("0ms", "x").unwrap()), (0, 0));
        assert!(duration_ns("5", "x").is_err(), "a non-zero number needs a unit");
        assert!(flowcast_datasets::time::parse_duration("0s").is_err());
    }
}

//! flowcast-live: collecting market data as flowcast's loaders read it.
//!
//! - [`binance`]: the Binance spot / USD-M / COIN-M collector (combined WebSocket streams + REST
//!   snapshot), synchronised by the Binance loader's own code ([`flowcast_datasets::loaders::binance::live`]),
//!   writing the `<local_ts_ns> <json>` gzip recordings `flowcast data import/check` read.
//! - [`poll`]: the REST-polling order-book-imbalance monitor (CSV + JSON summary).
//! - [`bus`]: canonical events on NATS JetStream (a stream per instrument), replay and durable
//!   consumers.
//! - [`coinbase`]: the Coinbase Exchange collector (level2 + matches + ticker, cryptofeed format).
//! - [`mock`], [`mock_coinbase`]: loopback Binance and Coinbase exchanges that replay recordings
//!   with injectable faults.
//!
//! Module layers, bottom to top: `error`, `backoff`, `recorder`; `http`, `bus`, `mock`, `mock_coinbase`;
//! `binance`, `poll`, `coinbase` (which uses `binance`'s `Disconnect`). Commands, recovery rules and formats: docs/live.md.

pub mod backoff;
pub mod binance;
pub mod bus;
pub mod coinbase;
pub mod error;
pub mod http;
pub mod mock;
pub mod mock_coinbase;
pub mod poll;
pub mod recorder;

pub use error::{LiveError, Result};

/// Wall-clock time, ns since epoch UTC.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Install rustls' ring provider as the process default (idempotent): tokio-tungstenite and
/// reqwest then share one TLS stack and no second provider gets compiled in.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A multi-threaded tokio runtime for the CLI's blocking entry points.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| LiveError::Config(format!("tokio runtime: {e}")))
}

/// A stop signal that turns true on Ctrl-C / SIGINT (call inside the runtime).
pub fn stop_on_ctrl_c() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("interrupted: finishing the files");
            let _ = tx.send(true);
        }
    });
    rx
}

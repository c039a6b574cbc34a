//! `flowcast serve`: the Open Inference Protocol (KServe v2) server of flowcast-server over a
//! run directory or a `<name>/<version>/` model repository (docs/serve.md). Settings come from
//! `--config serve.toml` (flowcast_server::config); the flags below override the file.

use anyhow::{Context, Result};
use clap::Args;
use flowcast_server::config::{parse_addr, ServeFile, StreamFlags};
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// A run directory (each model sub-directory is a model, version 1), one model directory, or
    /// a Triton-style repository `<dir>/<name>/<version>/model.json` (else `models` of the config).
    #[arg(long)]
    models: Option<PathBuf>,
    /// REST (HTTP/1.1) listen address, or `off` [default: 127.0.0.1:8000].
    #[arg(long)]
    http: Option<String>,
    /// gRPC listen address, or `off` [default: 127.0.0.1:8001].
    #[arg(long)]
    grpc: Option<String>,
    /// Largest request body (REST) / message (gRPC) in bytes [default: 67108864].
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// serve.toml: auth tokens, rate limits, timeouts, queue, dynamic batching (docs/serve.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Stream mode: streams open at once, over all connections [default: 1024; `[stream]` of --config].
    #[arg(long)]
    max_streams: Option<usize>,
    /// Stream mode: book levels per side one stream may hold (bounds its memory) [default: 20000].
    #[arg(long)]
    max_stream_book_levels: Option<usize>,
    /// Stream mode: events (and snapshot rows) in one message [default: 65536].
    #[arg(long)]
    max_stream_events_per_message: Option<usize>,
    /// Stream mode: levels per side of a SNAPSHOTS row [default: 1000].
    #[arg(long)]
    max_stream_snapshot_levels: Option<usize>,
    /// Stream mode: serve online models frozen (no learning in the streams; `[stream] online`).
    #[arg(long)]
    no_online: bool,
}

/// Serves until SIGTERM or ctrl-c (requests in flight finish); prints one JSON line (bound
/// addresses, repository index) once ready.
pub fn run(a: ServeArgs) -> Result<bool> {
    let file = match &a.config {
        Some(p) => ServeFile::read(p).map_err(anyhow::Error::msg)?,
        None => ServeFile::default(),
    };
    let models = a.models.or(file.models.clone()).context("--models DIR is required (or `models` in --config)")?;
    let http = a.http.or(file.http.clone()).unwrap_or_else(|| "127.0.0.1:8000".into());
    let grpc = a.grpc.or(file.grpc.clone()).unwrap_or_else(|| "127.0.0.1:8001".into());
    let http = parse_addr("--http", &http).map_err(anyhow::Error::msg)?;
    let grpc = parse_addr("--grpc", &grpc).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        http.is_some() || grpc.is_some() || !file.subscribe.is_empty(),
        "--http off and --grpc off and no [[subscribe]]: nothing to serve"
    );
    let ops = file.ops().map_err(|e| anyhow::anyhow!("{}: {e}", a.config.as_deref().unwrap_or("serve.toml".as_ref()).display()))?;
    let max_body_bytes = a.max_body_bytes.or(file.max_body_bytes).unwrap_or(flowcast_server::DEFAULT_MAX_BODY_BYTES);
    let flags = StreamFlags {
        max_streams: a.max_streams,
        max_book_levels: a.max_stream_book_levels,
        max_events_per_message: a.max_stream_events_per_message,
        max_snapshot_levels: a.max_stream_snapshot_levels,
    };
    let mut streams = file.stream_limits(&flags).map_err(|e| anyhow::anyhow!("[stream] / --max-stream-*: {e}"))?;
    streams.online &= !a.no_online;
    flowcast_server::serve_blocking(flowcast_server::Config {
        models,
        http,
        grpc,
        max_body_bytes,
        ops,
        streams,
        subscriptions: file.subscribe.clone(),
    })?;
    Ok(true)
}

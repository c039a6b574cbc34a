//! `flowcast serve`: the Open Inference Protocol (KServe v2) server of flowcast-server over a
//! run directory or a `<name>/<version>/` model repository (docs/serve.md).

use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// A run directory (each model sub-directory is a model, version 1), one model directory, or
    /// a Triton-style repository `<dir>/<name>/<version>/model.json`.
    #[arg(long)]
    models: PathBuf,
    /// REST (HTTP/1.1) listen address, or `off`.
    #[arg(long, default_value = "127.0.0.1:8000")]
    http: String,
    /// gRPC listen address, or `off`.
    #[arg(long, default_value = "127.0.0.1:8001")]
    grpc: String,
    /// Largest request body (REST) / message (gRPC) in bytes.
    #[arg(long, default_value_t = flowcast_server::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Stream mode: streams open at once (over all connections).
    #[arg(long, default_value_t = flowcast_server::stream::StreamLimits::default().max_streams)]
    max_streams: usize,
    /// Stream mode: book levels per side one stream may hold (bounds its memory).
    #[arg(long, default_value_t = flowcast_server::stream::StreamLimits::default().max_book_levels)]
    max_stream_book_levels: usize,
}

fn addr(flag: &str, v: &str) -> Result<Option<SocketAddr>> {
    if v == "off" {
        return Ok(None);
    }
    v.parse().map(Some).with_context(|| format!("--{flag} {v:?}: expected HOST:PORT (e.g. 127.0.0.1:8000) or off"))
}

/// Serves until killed; prints one JSON line (bound addresses, repository index) once ready.
pub fn run(a: ServeArgs) -> Result<bool> {
    let http = addr("http", &a.http)?;
    let grpc = addr("grpc", &a.grpc)?;
    anyhow::ensure!(http.is_some() || grpc.is_some(), "--http off and --grpc off: nothing to serve");
    let streams = flowcast_server::stream::StreamLimits {
        max_streams: a.max_streams,
        max_book_levels: a.max_stream_book_levels,
        ..Default::default()
    };
    flowcast_server::serve_blocking(flowcast_server::Config { models: a.models, http, grpc, max_body_bytes: a.max_body_bytes, streams })?;
    Ok(true)
}

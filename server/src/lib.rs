//! flowcast-server: `flowcast serve`, the Open Inference Protocol (KServe v2) for exported
//! flowcast models, over HTTP/REST (axum) and gRPC (tonic) on one tokio runtime. Tensor mode:
//! the client sends the prepared, normalised input windows `x` `[B, T, F]` (FP32) and gets the
//! class probabilities `probs` `[B, k]` in the card's class order. Endpoints, formats and errors:
//! docs/serve.md. No burn (tests/tests/no_burn.rs).
//!
//! Stream mode ([`stream`]; gRPC `ModelStreamInfer` and a WebSocket): raw book events in,
//! predictions at each sample point out. Every answer carries the execution layer's signal
//! ([`signal`]) and the server-side queue and compute time.
//!
//! Models live in a [`repo::Registry`] (a `RwLock`ed map of `Arc`ed predictors, loaded once);
//! inference runs on tokio's blocking pool ([`infer::run`]), so the async runtime never computes.

pub mod batcher;
pub mod bench;
pub mod bus;
pub mod config;
pub mod error;
pub mod grpc;
pub mod grpc_stream;
pub mod grpc_tensors;
pub mod infer;
pub mod limits;
pub mod metrics;
pub mod online;
pub mod repo;
pub mod rest;
pub mod signal;
pub mod stream;
pub mod ws;

/// The code generated from `proto/grpc_predict_v2.proto` (package `inference`) at build time.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");
}

pub use repo::{candle_loader, Loader, Registry};
pub use {flowcast_contract, flowcast_serve};

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub const SERVER_NAME: &str = "flowcast";
/// The `platform` of every model's metadata.
pub const PLATFORM: &str = "flowcast_candle";
/// Protocol extensions this server implements.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data", "model_repository"];
/// Default request body limit (REST body, gRPC message): 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

pub fn server_metadata() -> serde_json::Value {
    serde_json::json!({ "name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS })
}

/// What the handlers share.
pub struct App {
    pub registry: Arc<Registry>,
    pub max_body_bytes: usize,
    pub metrics: Arc<metrics::Metrics>,
    /// Auth and rate limits (limits.rs).
    pub guard: limits::Guard,
    /// The inference queue and dynamic batcher (batcher.rs).
    pub scheduler: batcher::Scheduler,
    /// Stream mode's open streams and limits.
    pub streams: stream::StreamTable,
}

pub struct Config {
    /// A run directory, a model directory, or a `<name>/<version>/` repository.
    pub models: PathBuf,
    /// REST address; `None`: no REST listener.
    pub http: Option<SocketAddr>,
    /// gRPC address; `None`: no gRPC listener.
    pub grpc: Option<SocketAddr>,
    pub max_body_bytes: usize,
    /// Stream mode's bounds (streams, book depth, events per message).
    pub streams: stream::StreamLimits,
    /// Auth, rate limits, timeouts, queue, batching (`serve.toml`, config.rs).
    pub ops: config::Ops,
    /// NATS JetStream streams to answer (bus.rs).
    pub subscriptions: Vec<bus::Subscription>,
}

impl Default for Config {
    /// No models, both listeners on loopback port 0, the default body limit and ops.
    fn default() -> Self {
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        Config {
            models: PathBuf::new(),
            http: Some(lo),
            grpc: Some(lo),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            ops: config::Ops::default(),
            streams: stream::StreamLimits::default(),
            subscriptions: Vec::new(),
        }
    }
}

/// A started server: its bound addresses (port 0 resolved) and its listener tasks.
pub struct Running {
    pub http: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
    pub app: Arc<App>,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Running {
    /// Graceful shutdown: the listeners stop accepting, requests in flight finish, then
    /// [`Running::wait`] returns.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// A handle that triggers [`Running::shutdown`] from elsewhere (a signal task, a test).
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let s = self.stop.clone();
        move || {
            s.send_replace(true);
        }
    }

    /// Runs until a listener fails.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        while let Some(r) = self.tasks.join_next().await {
            r.context("listener task")??;
        }
        Ok(())
    }
}

/// Loads the repository (models that fail to load are skipped and reported by the index) and
/// binds the listeners. Call on a tokio runtime.
pub async fn start(cfg: Config, loader: Loader) -> anyhow::Result<Running> {
    let root = cfg.models.clone();
    let metrics = Arc::new(metrics::Metrics::new());
    let loader = metrics::counting_loader(loader, metrics.clone());
    let registry = tokio::task::spawn_blocking(move || Registry::open(&root, loader)).await?.map_err(anyhow::Error::msg)?;
    let app = Arc::new(App {
        registry: Arc::new(registry),
        max_body_bytes: cfg.max_body_bytes,
        guard: limits::Guard::new(&cfg.ops),
        scheduler: batcher::Scheduler::new(cfg.ops.clone(), metrics.clone()),
        metrics,
        streams: stream::StreamTable::new(cfg.streams),
    });
    let (stop, _) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let stopped = |stop: &tokio::sync::watch::Sender<bool>| {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut http = None;
    if let Some(addr) = cfg.http {
        let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--http {addr}"))?;
        http = Some(l.local_addr()?);
        let l = axum::serve::ListenerExt::tap_io(l, nodelay);
        let router = rest::router(app.clone());
        let make = router.into_make_service_with_connect_info::<SocketAddr>();
        let stopped = stopped(&stop);
        tasks.spawn(async move { axum::serve(l, make).with_graceful_shutdown(stopped).await.context("http server") });
    }
    let mut grpc = None;
    if let Some(addr) = cfg.grpc {
        let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--grpc {addr}"))?;
        grpc = Some(l.local_addr()?);
        let svc = proto::grpc_inference_service_server::GrpcInferenceServiceServer::new(grpc::Service { app: app.clone() })
            .max_decoding_message_size(cfg.max_body_bytes)
            .max_encoding_message_size(cfg.max_body_bytes);
        // TCP_NODELAY: with Nagle on, a response written in two segments waited for the
        // client's delayed ACK (or its next request on that connection): a gRPC p99.9 of
        // 8 channels / rate (32 ms at 250 req/s, docs/serve.md "Speed").
        let incoming = tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
        let layer = limits::GrpcLayer { app: app.clone() };
        let stopped = stopped(&stop);
        tasks.spawn(async move {
            tonic::transport::Server::builder()
                .layer(layer)
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, stopped)
                .await
                .context("grpc server")
        });
    }
    for sub in cfg.subscriptions {
        let (app, rx, rt) = (app.clone(), stop.subscribe(), tokio::runtime::Handle::current());
        tasks.spawn(async move {
            tokio::task::spawn_blocking(move || bus::run_blocking(app, sub, rx, rt)).await.context("bus subscription task")
        });
    }
    Ok(Running { http, grpc, app, tasks, stop })
}

/// Turns off Nagle's algorithm on an accepted REST connection (see the gRPC listener).
fn nodelay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY on an accepted connection: {e}");
    }
}

/// `flowcast serve`: starts the server on a multi-threaded runtime, prints one JSON line with
/// the bound addresses and the repository index to stdout, and serves until killed.
pub fn serve_blocking(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async move {
        let running = start(cfg, candle_loader()).await?;
        let line = serde_json::json!({
            "http": running.http.map(|a| a.to_string()),
            "grpc": running.grpc.map(|a| a.to_string()),
            "models": running.app.registry.index(false),
        });
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        let stop = running.stopper();
        tokio::spawn(async move {
            let why = shutdown_signal().await;
            tracing::info!("{why}: shutting down (requests in flight finish)");
            stop();
        });
        running.wait().await?;
        tracing::info!("server stopped");
        Ok(())
    })
}

/// Waits for SIGTERM or ctrl-c (SIGINT) and says which.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}

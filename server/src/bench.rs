//! The loopback half of `flowcast bench serve`: an open-loop load generator over REST (binary
//! tensors, HTTP/1.1 keep-alive connections, hyper's client) and gRPC (`raw_input_contents`,
//! tonic's client). Requests are sent at fixed times `start + i / rate` whatever the answers do
//! (open loop), and each latency is measured from the request's *scheduled* send time, so a
//! stalled server shows up as latency instead of silently lowering the rate (the coordinated
//! omission correction of wrk2). Latencies go into HDR histograms (`hdrhistogram`, 3
//! significant digits).

use crate::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::proto::model_infer_request::InferInputTensor;
use crate::proto::ModelInferRequest;
use crate::repo::{Loaded, Loader};
use anyhow::{Context, Result};
use flowcast_contract::{Batch, Outputs, Predictor, PredictorInfo};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A candle model without a card (the benchmark's randomly initialised exports): a predictor
/// with the given classes and window, features from the model's spec.
pub struct BareCandle {
    model: flowcast_serve::Model,
    info: PredictorInfo,
}

impl Predictor for BareCandle {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }
    fn predict(&self, b: &Batch<'_>, out: &mut Outputs) -> flowcast_contract::Result<()> {
        self.info.check(b)?;
        let logits = self.model.logits(b.x, b.batch, b.window).map_err(|e| flowcast_contract::ContractError::input("x", e.to_string()))?;
        out.push_logits(&logits);
        Ok(())
    }
}

/// Loads `model.json`-less exports (`config.json` + weights) as [`BareCandle`]s of `window` steps
/// and 3 classes; the repository finds them by a `model.json` marker the benchmark writes.
pub fn bare_loader(window: usize) -> Loader {
    Arc::new(move |dir: &Path| {
        let model = flowcast_serve::Model::load_dir(dir).map_err(|e| e.to_string())?;
        let classes: Vec<String> = ["down", "stationary", "up"].iter().map(|s| s.to_string()).collect();
        let info = PredictorInfo::classifier(model.spec().name(), &classes, window, model.spec().n_features());
        Ok(Loaded { predictor: Arc::new(BareCandle { model, info }), parameters: vec![], card: None, online: None })
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Grpc,
}

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    pub model: String,
    /// One window `[1, window, features]` per request.
    pub window: usize,
    pub features: usize,
    /// Requests per second.
    pub rate: f64,
    pub duration: Duration,
    /// HTTP/1.1 connections (one request in flight each) / gRPC channels.
    pub connections: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub protocol: Protocol,
    pub rate: f64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// Answers per second over the run.
    pub achieved_rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

enum Client {
    Http(Vec<tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>>),
    Grpc(Vec<GrpcInferenceServiceClient<tonic::transport::Channel>>),
}

async fn http_conn(addr: SocketAddr) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let s = tokio::net::TcpStream::connect(addr).await.context("connect")?;
    s.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s)).await?;
    tokio::spawn(conn);
    Ok(send)
}

struct Shared {
    spec: LoadSpec,
    client: Client,
    /// The REST body (binary tensor extension) and its JSON header length.
    body: Bytes,
    head_len: usize,
    raw: Bytes,
    hist: Mutex<Histogram<u64>>,
    errors: Mutex<(u64, Option<String>)>,
}

impl Shared {
    async fn one(&self, i: usize) -> Result<()> {
        match &self.client {
            Client::Http(conns) => {
                // Request i takes connection i mod n: in open loop a slow answer delays the next
                // request on that connection, which the scheduled-time latency then shows.
                let mut slot = conns[i % conns.len()].lock().await;
                if slot.as_ref().is_none_or(|s| s.is_closed()) {
                    *slot = Some(http_conn(self.spec.addr).await?);
                }
                let send = slot.as_mut().expect("connected");
                send.ready().await?;
                let req = hyper::Request::post(format!("/v2/models/{}/infer", self.spec.model))
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/octet-stream")
                    .header(crate::rest::HEADER_LENGTH, self.head_len)
                    .body(Full::new(self.body.clone()))?;
                let resp = send.send_request(req).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                anyhow::ensure!(status.is_success(), "HTTP {status}: {}", String::from_utf8_lossy(&body));
            }
            Client::Grpc(chans) => {
                let mut c = chans[i % chans.len()].clone();
                let req = ModelInferRequest {
                    model_name: self.spec.model.clone(),
                    inputs: vec![InferInputTensor {
                        name: "x".into(),
                        datatype: "FP32".into(),
                        shape: vec![1, self.spec.window as i64, self.spec.features as i64],
                        ..Default::default()
                    }],
                    raw_input_contents: vec![self.raw.to_vec()],
                    ..Default::default()
                };
                c.model_infer(req).await.map_err(|s| anyhow::anyhow!("gRPC {:?}: {}", s.code(), s.message()))?;
            }
        }
        Ok(())
    }
}

/// Runs one open-loop load at `spec.rate` for `spec.duration`. Call on a multi-threaded
/// runtime: the send schedule is kept by a dedicated thread (tokio's timer has 1 ms ticks,
/// too coarse for 5,000 req/s), which sleeps until ~100 µs before each send time, then spins.
pub async fn open_loop(spec: LoadSpec) -> Result<LoadReport> {
    let n_values = spec.window * spec.features;
    let x: Vec<f32> = (0..n_values).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
    let raw = Bytes::from(crate::infer::f32_to_le(&x));
    let head = serde_json::json!({
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, spec.window, spec.features],
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "probs", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = head.clone().into_bytes();
    body.extend_from_slice(&raw);
    let client = match spec.protocol {
        Protocol::Http => Client::Http((0..spec.connections).map(|_| tokio::sync::Mutex::new(None)).collect()),
        Protocol::Grpc => {
            let mut v = Vec::new();
            for _ in 0..spec.connections.clamp(1, 8) {
                let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", spec.addr))?.tcp_nodelay(true).connect().await?;
                v.push(GrpcInferenceServiceClient::new(ch));
            }
            Client::Grpc(v)
        }
    };
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        client,
        body: Bytes::from(body),
        head_len: head.len(),
        raw,
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        errors: Mutex::new((0, None)),
    });
    // Warm-up: connections opened and the model run once, outside the measurement.
    for i in 0..spec.connections.max(1) {
        shared.one(i).await.context("warm-up request")?;
    }
    let n = (spec.rate * spec.duration.as_secs_f64()).round().max(1.0) as usize;
    let handle = tokio::runtime::Handle::current();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let sh = shared.clone();
    let start = Instant::now() + Duration::from_millis(20);
    let rate = spec.rate;
    let pacer = std::thread::spawn(move || {
        for i in 0..n {
            let at = start + Duration::from_secs_f64(i as f64 / rate);
            loop {
                let now = Instant::now();
                if now >= at {
                    break;
                }
                let left = at - now;
                if left > Duration::from_micros(150) {
                    std::thread::sleep(left - Duration::from_micros(100));
                } else {
                    std::hint::spin_loop();
                }
            }
            let sh = sh.clone();
            let done = done_tx.clone();
            handle.spawn(async move {
                let r = sh.one(i).await;
                let us = at.elapsed().as_micros().max(1) as u64;
                match r {
                    Ok(()) => {
                        let _ = sh.hist.lock().unwrap_or_else(|p| p.into_inner()).record(us.min(60_000_000));
                    }
                    Err(e) => {
                        let mut errs = sh.errors.lock().unwrap_or_else(|p| p.into_inner());
                        errs.0 += 1;
                        errs.1.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                let _ = done.send(());
            });
        }
    });
    for _ in 0..n {
        done_rx.recv().await.context("load task lost")?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    pacer.join().map_err(|_| anyhow::anyhow!("pacer thread panicked"))?;
    let h = shared.hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (errors, first_error) = shared.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(e) = &first_error {
        tracing::warn!("{errors} failed requests at {rate}/s, first: {e}");
    }
    Ok(LoadReport {
        protocol: spec.protocol,
        rate,
        sent: n as u64,
        ok: h.len(),
        errors,
        achieved_rate: h.len() as f64 / elapsed.max(1e-9),
        p50_us: h.value_at_quantile(0.50) as f64,
        p99_us: h.value_at_quantile(0.99) as f64,
        p999_us: h.value_at_quantile(0.999) as f64,
        max_us: h.max() as f64,
    })
}

/// Steps through `rates` (ascending) and returns every report and the highest rate whose p99 stayed
/// under `p99_limit_us` with no errors (stops at the first rate that misses it).
pub async fn highest_rate(base: LoadSpec, rates: &[f64], p99_limit_us: f64) -> Result<(Vec<LoadReport>, Option<f64>)> {
    let mut reports = Vec::new();
    let mut best = None;
    for &rate in rates {
        let r = open_loop(LoadSpec { rate, ..base.clone() }).await?;
        let pass = r.errors == 0 && r.p99_us < p99_limit_us;
        reports.push(r);
        if !pass {
            break;
        }
        best = Some(rate);
    }
    Ok((reports, best))
}

/// The loopback results of one protocol.
#[derive(Clone, Debug, Serialize)]
pub struct ProtocolLoad {
    pub protocol: Protocol,
    pub runs: Vec<LoadReport>,
    /// Highest tested rate with p99 under the limit and no errors.
    pub highest_rate: Option<f64>,
}

/// Serves the models under `models` (loaded with [`bare_loader`]) in this process on loopback
/// ports, with `ops` (e.g. batching), and runs [`highest_rate`] over REST and gRPC against
/// `model`. The server and the load generator run on separate tokio runtimes.
#[allow(clippy::too_many_arguments)]
pub fn loopback(
    models: &Path,
    model: &str,
    window: usize,
    features: usize,
    rates: &[f64],
    duration: Duration,
    connections: usize,
    p99_limit_us: f64,
    ops: crate::config::Ops,
) -> Result<Vec<ProtocolLoad>> {
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("serve").build()?;
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let cfg = crate::Config { models: models.to_path_buf(), http: Some(lo), grpc: Some(lo), ops, ..Default::default() };
    let running = server_rt.block_on(crate::start(cfg, bare_loader(window)))?;
    let (http, grpc) = (running.http.expect("http"), running.grpc.expect("grpc"));
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().thread_name("load").build()?;
    let mut out = Vec::new();
    for (protocol, addr) in [(Protocol::Http, http), (Protocol::Grpc, grpc)] {
        let base = LoadSpec { protocol, addr, model: model.into(), window, features, rate: 0.0, duration, connections };
        let (runs, highest_rate) = client_rt.block_on(highest_rate(base, rates, p99_limit_us))?;
        out.push(ProtocolLoad { protocol, runs, highest_rate });
    }
    running.shutdown();
    server_rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), running.wait()).await }).ok();
    Ok(out)
}

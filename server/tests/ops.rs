//! Operations (docs/serve.md "Operations") on stand-in models: bearer auth, rate limits, request
//! timeouts, the bounded queue, dynamic batching (results equal unbatched ones, the batch-size
//! histogram shows the batch), `/metrics` parsed as Prometheus text, graceful shutdown with a
//! request in flight, and bad input: one test per case api.rs does not cover and a seeded fuzz
//! test over random request bodies on REST and gRPC (never a 5xx, never a dead server).

use flowcast_contract::{Batch, Outputs, Predictor, PredictorInfo};
use flowcast_server::config::{Batching, Ops, RateLimit};
use flowcast_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use flowcast_server::proto::model_infer_request::InferInputTensor;
use flowcast_server::proto::*;
use flowcast_server::repo::Loaded;
use flowcast_server::{Config, Loader, Running};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: usize = 4;
const F: usize = 3;

/// logits per window: [sum, -sum, 0]; sleeps `sleep_ms` per call (a slow model).
struct Fake {
    info: PredictorInfo,
    sleep: Duration,
}

impl Predictor for Fake {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }
    fn predict(&self, b: &Batch<'_>, out: &mut Outputs) -> flowcast_contract::Result<()> {
        self.info.check(b)?;
        std::thread::sleep(self.sleep);
        let logits: Vec<f32> =
            b.x.chunks(b.window * b.features)
                .flat_map(|w| {
                    let s: f32 = w.iter().sum();
                    [s, -s, 0.0]
                })
                .collect();
        out.push_logits(&logits);
        Ok(())
    }
}

fn classes() -> Vec<String> {
    ["down", "flat", "up"].iter().map(|s| s.to_string()).collect()
}

/// The unbatched answer: the predictor called on these windows alone.
fn expected(x: &[f32]) -> Vec<f32> {
    let f = Fake { info: PredictorInfo::classifier("fake", &classes(), T, F), sleep: Duration::ZERO };
    let mut o = Outputs::new(3);
    f.predict(&Batch::new(x, x.len() / (T * F), T, F).unwrap(), &mut o).unwrap();
    o.probs
}

fn loader() -> Loader {
    Arc::new(|dir: &Path| {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        if let Some(r) = v["broken"].as_str() {
            return Err(r.to_string());
        }
        let info = PredictorInfo::classifier("fake", &classes(), T, F);
        let sleep = Duration::from_millis(v["sleep_ms"].as_u64().unwrap_or(0));
        Ok(Loaded { predictor: Arc::new(Fake { info, sleep }), parameters: vec![], card: None, online: None })
    })
}

struct Server {
    rt: tokio::runtime::Runtime,
    http: SocketAddr,
    grpc: SocketAddr,
    running: Option<Running>,
    _dir: tempfile::TempDir,
}

/// A server on `fast` (no delay), `slow` (`slow_ms` per call) and `broken` (fails to load).
fn start(ops: Ops, slow_ms: u64) -> Server {
    let dir = tempfile::tempdir().unwrap();
    for (name, doc) in [("fast", json!({})), ("slow", json!({"sleep_ms": slow_ms})), ("broken", json!({"broken": "bad weights"}))] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("model.json"), doc.to_string()).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cfg = Config { models: dir.path().to_path_buf(), max_body_bytes: 1 << 20, ops, ..Default::default() };
    let running = rt.block_on(flowcast_server::start(cfg, loader())).unwrap();
    Server { http: running.http.unwrap(), grpc: running.grpc.unwrap(), running: Some(running), rt, _dir: dir }
}

struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 client (one request per connection). `Err` when the server cannot be reached.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut w = s.try_clone()?;
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(req.as_bytes()).and_then(|_| w.write_all(&body));
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    let _ = writer.join();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    Ok(Resp { status, headers, body: raw[end + 4..].to_vec() })
}

fn windows(b: usize) -> Vec<f32> {
    (0..b * T * F).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.03).collect()
}

fn infer_body(x: &[f32]) -> Vec<u8> {
    json!({"inputs": [{"name": "x", "shape": [x.len() / (T * F), T, F], "datatype": "FP32", "data": x}]}).to_string().into_bytes()
}

fn infer(s: &Server, model: &str, x: &[f32], headers: &[(&str, &str)]) -> Resp {
    infer_at(s.http, model, x, headers)
}

fn infer_at(addr: SocketAddr, model: &str, x: &[f32], headers: &[(&str, &str)]) -> Resp {
    http(addr, "POST", &format!("/v2/models/{model}/infer"), headers, &infer_body(x)).unwrap()
}

fn probs(v: &Value) -> Vec<f32> {
    v["outputs"][0]["data"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as f32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn grpc_request(model: &str, x: &[f32]) -> tonic::Request<ModelInferRequest> {
    tonic::Request::new(ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![(x.len() / (T * F)) as i64, T as i64, F as i64],
            contents: Some(InferTensorContents { fp32_contents: x.to_vec(), ..Default::default() }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

async fn client(s: &Server) -> GrpcInferenceServiceClient<tonic::transport::Channel> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc))
        .unwrap()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    GrpcInferenceServiceClient::new(ch)
}

fn with_token<T>(mut r: tonic::Request<T>, token: &str) -> tonic::Request<T> {
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Prometheus text exposition parsed strictly: `# HELP`/`# TYPE` lines, then samples
/// `name{label="value",...} number`; returns (name, labels, value) per sample.
fn parse_prometheus(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let mut types = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut p = rest.splitn(3, ' ');
            let (kind, name, v) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap_or(""));
            assert!(kind == "HELP" || kind == "TYPE", "{line}");
            if kind == "TYPE" {
                assert!(["counter", "gauge", "histogram"].contains(&v), "{line}");
                types.insert(name.to_string(), v.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, HashMap::new()),
            Some((n, l)) => {
                let l = l.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let labels = l
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").unwrap_or_else(|| panic!("bad label {kv:?}: {line}"));
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (n, labels)
            }
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "{line}");
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|b| types.contains_key(*b));
        assert!(types.contains_key(name) || base.is_some(), "sample before its # TYPE: {line}");
        out.push((name.to_string(), labels, value));
    }
    out
}

fn sample(samples: &[(String, HashMap<String, String>, f64)], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples.iter().find(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))).map(|s| s.2)
}

fn metrics(s: &Server) -> Vec<(String, HashMap<String, String>, f64)> {
    let r = http(s.http, "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/plain; version=0.0.4"), "{:?}", r.headers);
    parse_prometheus(&r.text())
}

#[test]
fn bearer_auth_on_rest_and_grpc_with_health_and_metrics_open() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# clients\nsecret-1\nsecret-2\n").unwrap();
    let ops = Ops { auth_tokens: Some(flowcast_server::config::read_tokens(&tokens).unwrap()), ..Default::default() };
    let s = start(ops, 0);
    let x = windows(1);
    let r = infer(&s, "fast", &x, &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"flowcast\"");
    assert!(r.json()["error"].as_str().unwrap().contains("authorization"), "{}", r.text());
    let r = infer(&s, "fast", &x, &[("Authorization", "Bearer wrong")]);
    assert_eq!(r.status, 401);
    assert!(r.headers["www-authenticate"].contains("invalid_token"));
    assert_eq!(http(s.http, "GET", "/v2/models/fast", &[], b"").unwrap().status, 401, "metadata needs a token too");
    let r = infer(&s, "fast", &x, &[("Authorization", "Bearer secret-2")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(max_diff(&probs(&r.json()), &expected(&x)) <= 1e-6);
    assert_eq!(http(s.http, "GET", "/v2/health/live", &[], b"").unwrap().status, 200);
    assert_eq!(http(s.http, "GET", "/v2/health/ready", &[], b"").unwrap().status, 200);
    assert_eq!(http(s.http, "GET", "/metrics", &[], b"").unwrap().status, 200);
    s.rt.block_on(async {
        let mut c = client(&s).await;
        let e = c.model_infer(grpc_request("fast", &x)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
        let e = c.model_infer(with_token(grpc_request("fast", &x), "nope")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let r = c.model_infer(with_token(grpc_request("fast", &x), "secret-1")).await.unwrap().into_inner();
        assert!(max_diff(&r.outputs[0].contents.as_ref().unwrap().fp32_contents, &expected(&x)) <= 1e-6);
        assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live, "health is open");
    });
    let m = metrics(&s);
    let unauth =
        sample(&m, "flowcast_requests_total", &[("protocol", "http"), ("endpoint", "infer"), ("model", "fast"), ("status", "401")]);
    assert_eq!(unauth, Some(2.0));
    let g = sample(&m, "flowcast_requests_total", &[("protocol", "grpc"), ("endpoint", "ModelInfer"), ("status", "Unauthenticated")]);
    assert_eq!(g, Some(2.0));
}

#[test]
fn rate_limit_is_429_with_retry_after_and_resource_exhausted() {
    let ops = Ops { rate_limit: Some(RateLimit { requests_per_second: 0.2, burst: 2 }), ..Default::default() };
    let s = start(ops, 0);
    let x = windows(1);
    assert_eq!(infer(&s, "fast", &x, &[]).status, 200);
    assert_eq!(infer(&s, "fast", &x, &[]).status, 200);
    let r = infer(&s, "fast", &x, &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    let after: u64 = r.headers["retry-after"].parse().unwrap();
    assert!((1..=5).contains(&after), "retry-after {after}");
    assert!(r.json()["error"].as_str().unwrap().contains("rate limit"));
    assert_eq!(http(s.http, "GET", "/v2/health/ready", &[], b"").unwrap().status, 200, "health is not limited");
    s.rt.block_on(async {
        // Same peer IP: the bucket is shared across protocols.
        let e = client(&s).await.model_infer(grpc_request("fast", &x)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
        assert!(e.metadata().get("retry-after").is_some());
    });
}

#[test]
fn request_timeout_is_504_and_deadline_exceeded() {
    let ops = Ops { request_timeout: Some(Duration::from_millis(100)), ..Default::default() };
    let s = start(ops, 600);
    let x = windows(1);
    let t = Instant::now();
    let r = infer(&s, "slow", &x, &[]);
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("timeout"), "{}", r.text());
    assert!(t.elapsed() < Duration::from_millis(550), "answered at the deadline, not after the model");
    assert_eq!(infer(&s, "fast", &x, &[]).status, 200);
    s.rt.block_on(async {
        let e = client(&s).await.model_infer(grpc_request("slow", &x)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    });
}

#[test]
fn full_queue_is_503_and_unavailable_then_recovers() {
    let ops = Ops { queue_capacity: 1, ..Default::default() };
    let s = start(ops, 700);
    let x = windows(1);
    let (addr, x2) = (s.http, x.clone());
    let first = std::thread::spawn(move || infer_at(addr, "slow", &x2, &[]).status);
    std::thread::sleep(Duration::from_millis(250));
    let r = infer(&s, "fast", &x, &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("queue full"));
    s.rt.block_on(async {
        let e = client(&s).await.model_infer(grpc_request("fast", &x)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    });
    assert_eq!(first.join().unwrap(), 200, "the admitted request finishes");
    assert_eq!(infer(&s, "fast", &x, &[]).status, 200, "room again once it is done");
    let m = metrics(&s);
    assert_eq!(sample(&m, "flowcast_queue_rejected_total", &[]), Some(2.0));
    assert_eq!(sample(&m, "flowcast_queue_capacity", &[]), Some(1.0));
    assert_eq!(sample(&m, "flowcast_queue_depth", &[("model", "slow")]), Some(0.0));
}

#[test]
fn dynamic_batching_joins_requests_and_equals_unbatched() {
    let ops = Ops { batching: Batching { max_batch: 8, max_queue_delay_us: 300_000, instances: 1 }, ..Default::default() };
    let s = start(ops, 0);
    let addr = s.http;
    // Four clients, 1 + 2 + 1 + 3 windows, within the 300 ms delay: one model call of 7 windows.
    let sizes = [1usize, 2, 1, 3];
    let threads: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            std::thread::spawn(move || {
                let x: Vec<f32> = windows(b).iter().map(|v| v * (i as f32 + 1.0)).collect();
                (x.clone(), infer_at(addr, "fast", &x, &[]))
            })
        })
        .collect();
    // A request with a value beyond FP32 (inf) in the same window fails alone, before batching.
    std::thread::sleep(Duration::from_millis(50));
    let data = format!("1e39{}", ", 0.5".repeat(T * F - 1));
    let body = format!(r#"{{"inputs": [{{"name": "x", "shape": [1, {T}, {F}], "datatype": "FP32", "data": [{data}]}}]}}"#);
    let r = http(s.http, "POST", "/v2/models/fast/infer", &[], body.as_bytes()).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("inputs[0].data"), "{}", r.text());
    for t in threads {
        let (x, r) = t.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert!(max_diff(&probs(&v), &expected(&x)) <= 1e-6, "batched answer differs from the unbatched one");
        assert_eq!(v["parameters"]["batch_windows"], 7, "{v}");
        assert!(v["parameters"]["queue_time_us"].as_u64().is_some());
    }
    let m = metrics(&s);
    let w = [("model", "fast")];
    assert_eq!(sample(&m, "flowcast_batch_size_windows_count", &w), Some(1.0), "one model call");
    assert_eq!(sample(&m, "flowcast_batch_size_windows_sum", &w), Some(7.0));
    assert_eq!(sample(&m, "flowcast_batch_size_requests_sum", &w), Some(4.0));
    assert_eq!(sample(&m, "flowcast_batch_size_windows_bucket", &[("model", "fast"), ("le", "4")]), Some(0.0));
    assert_eq!(sample(&m, "flowcast_batch_size_windows_bucket", &[("model", "fast"), ("le", "8")]), Some(1.0));
}

#[test]
fn metrics_count_requests_latency_states_and_load_failures() {
    let s = start(Ops::default(), 0);
    let x = windows(2);
    for _ in 0..3 {
        assert_eq!(infer(&s, "fast", &x, &[]).status, 200);
    }
    assert_eq!(infer(&s, "nope", &x, &[]).status, 404);
    assert_eq!(http(s.http, "POST", "/v2/models/fast/infer", &[], b"{").unwrap().status, 400);
    s.rt.block_on(async {
        client(&s).await.model_infer(grpc_request("fast", &x)).await.unwrap();
    });
    let m = metrics(&s);
    let ok = [("protocol", "http"), ("endpoint", "infer"), ("model", "fast"), ("status", "200")];
    assert_eq!(sample(&m, "flowcast_requests_total", &ok), Some(3.0));
    assert_eq!(sample(&m, "flowcast_requests_total", &[("endpoint", "infer"), ("model", ""), ("status", "404")]), Some(1.0));
    assert_eq!(sample(&m, "flowcast_requests_total", &[("model", "fast"), ("status", "400")]), Some(1.0));
    let g = [("protocol", "grpc"), ("endpoint", "ModelInfer"), ("model", "fast"), ("status", "Ok")];
    assert_eq!(sample(&m, "flowcast_requests_total", &g), Some(1.0));
    let lat = [("protocol", "http"), ("endpoint", "infer"), ("model", "fast")];
    assert_eq!(sample(&m, "flowcast_request_duration_seconds_count", &lat), Some(4.0));
    assert_eq!(
        sample(&m, "flowcast_request_duration_seconds_bucket", &[("endpoint", "infer"), ("model", "fast"), ("le", "+Inf")]),
        Some(4.0)
    );
    assert_eq!(sample(&m, "flowcast_inference_compute_duration_seconds_count", &[("model", "fast")]), Some(4.0));
    assert_eq!(sample(&m, "flowcast_inference_queue_duration_seconds_count", &[("model", "fast")]), Some(4.0));
    assert_eq!(sample(&m, "flowcast_models", &[("state", "READY")]), Some(2.0));
    assert_eq!(sample(&m, "flowcast_models", &[("state", "UNAVAILABLE")]), Some(1.0));
    assert_eq!(sample(&m, "flowcast_model_load_failures_total", &[]), Some(1.0));
    // A failed reload counts too.
    assert_eq!(http(s.http, "POST", "/v2/repository/models/broken/load", &[], b"").unwrap().status, 503);
    assert_eq!(sample(&metrics(&s), "flowcast_model_load_failures_total", &[]), Some(2.0));
}

#[test]
fn graceful_shutdown_finishes_requests_in_flight() {
    let mut s = start(Ops::default(), 800);
    let addr = s.http;
    let x = windows(1);
    let x2 = x.clone();
    let inflight = std::thread::spawn(move || http(addr, "POST", "/v2/models/slow/infer", &[], &infer_body(&x2)));
    std::thread::sleep(Duration::from_millis(250));
    let running = s.running.take().unwrap();
    running.shutdown();
    let t = Instant::now();
    s.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), running.wait()).await }).expect("stops").unwrap();
    let r = inflight.join().unwrap().expect("the request in flight is answered");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(max_diff(&probs(&r.json()), &expected(&x)) <= 1e-6);
    assert!(t.elapsed() >= Duration::from_millis(300), "waited for the request");
    assert!(http(addr, "GET", "/v2/health/live", &[], b"").is_err(), "no longer accepting");
}

/// Bad input not covered by api.rs: every case is a 400 naming the field, never a 5xx.
#[test]
fn bad_input_cases_name_the_field() {
    let s = start(Ops::default(), 0);
    let post = |body: &[u8], headers: &[(&str, &str)]| http(s.http, "POST", "/v2/models/fast/infer", headers, body).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", vec![], "request JSON"),
        ("random bytes", vec![0xff, 0x00, 0x13, 0x37, 0x80], "request JSON"),
        ("no inputs", br#"{"id": "a"}"#.to_vec(), "inputs"),
        ("no shape", br#"{"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}"#.to_vec(), "shape"),
        ("no datatype", br#"{"inputs": [{"name": "x", "shape": [1, 4, 3], "data": [1]}]}"#.to_vec(), "datatype"),
        ("shape of strings", br#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": ["1"], "data": []}]}"#.to_vec(), "inputs[0].shape"),
        ("negative dim", br#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4, 3], "data": []}]}"#.to_vec(), "inputs[0].shape"),
        (
            "huge batch",
            br#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [4611686018427387904, 4, 3], "data": [1]}]}"#.to_vec(),
            "inputs[0].shape",
        ),
        ("huge batch, fitting", br#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [100000000000, 4, 3], "data": [1]}]}"#.to_vec(), "inputs[0].data"),
        ("dim beyond i64", br#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1e30, 4, 3], "data": [1]}]}"#.to_vec(), "inputs[0].shape"),
        ("data a string", br#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4, 3], "data": "abc"}]}"#.to_vec(), "inputs[0].data"),
        ("data with null", br#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 3], "data": [1, null, 2]}]}"#.to_vec(), "inputs[0]"),
        ("truncated JSON", br#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4"#.to_vec(), "request JSON"),
        ("trailing garbage", br#"{"inputs": []} xyz"#.to_vec(), "request JSON"),
        ("binary_data_size a string", br#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4, 3], "parameters": {"binary_data_size": "12"}}]}"#.to_vec(), "binary_data_size"),
        ("binary_data_output not a bool", br#"{"parameters": {"binary_data_output": 1}, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4, 3], "data": [0,0,0,0,0,0,0,0,0,0,0,0]}]}"#.to_vec(), "binary_data_output"),
    ];
    for (what, body, field) in cases {
        let r = post(&body, &[]);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains(field), "{what}: error does not name {field}: {e}");
    }
    let r = post(b"{}", &[("Inference-Header-Content-Length", "abc")]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Inference-Header-Content-Length"));
    let r = post(b"{}", &[("Inference-Header-Content-Length", "99")]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("exceeds"));
    let r = http(s.http, "POST", "/v2/models/fast/versions/7/infer", &[], &infer_body(&windows(1))).unwrap();
    assert_eq!(r.status, 404, "unknown version on infer");
    s.rt.block_on(async {
        let mut c = client(&s).await;
        let mut req = grpc_request("fast", &windows(1)).into_inner();
        req.inputs[0].shape = vec![i64::MAX, 4, 3];
        let e = c.model_infer(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("inputs[0].shape"), "{}", e.message());
        let mut req = grpc_request("fast", &windows(1)).into_inner();
        req.inputs.clear();
        let e = c.model_infer(req).await.unwrap_err();
        assert!(e.message().contains("inputs"), "{}", e.message());
        let mut req = grpc_request("fast", &windows(1)).into_inner();
        req.inputs[0].contents = None;
        let e = c.model_infer(req).await.unwrap_err();
        assert!(e.message().contains("inputs[0].contents"), "{}", e.message());
        let mut req = grpc_request("fast", &windows(1)).into_inner();
        req.inputs[0].contents.as_mut().unwrap().fp32_contents[3] = f32::INFINITY;
        let e = c.model_infer(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("inputs[0].data"), "{}", e.message());
    });
}

/// A random body: random bytes, a valid request cut short, or a request with random shapes,
/// types, names, NaN and huge dimensions.
fn random_body(rng: &mut impl Rng) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let valid = infer_body(&windows(rng.random_range(1..4)));
    let mut headers = vec![];
    let body = match rng.random_range(0..6) {
        0 => (0..rng.random_range(0..300)).map(|_| rng.random()).collect(),
        1 => valid[..rng.random_range(0..valid.len())].to_vec(),
        2 => {
            let mut b = valid.clone();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            b
        }
        3 => {
            let dim = |rng: &mut dyn rand::RngCore| -> Value {
                match rng.next_u32() % 6 {
                    0 => json!(-1),
                    1 => json!(i64::MAX),
                    2 => json!(rng.next_u64()),
                    3 => json!(1.5),
                    4 => json!("4"),
                    _ => json!(rng.next_u32() % 6),
                }
            };
            let shape: Vec<Value> = (0..rng.random_range(0..5)).map(|_| dim(rng)).collect();
            let vals = [json!(1.0), json!("x"), json!(null), json!([1, [2]]), json!(1e39), json!(-1e300), json!({})];
            let data: Vec<Value> = (0..rng.random_range(0..30)).map(|_| vals[rng.random_range(0..vals.len())].clone()).collect();
            let names = ["x", "y", ""];
            let types = ["FP32", "FP64", "INT8", ""];
            json!({"inputs": [{"name": names[rng.random_range(0..3)], "datatype": types[rng.random_range(0..4)], "shape": shape, "data": data}]})
                .to_string()
                .into_bytes()
        }
        4 => {
            // Binary extension with wrong sizes.
            let n: usize = rng.random_range(0..40);
            let size: i64 = rng.random_range(-2..60);
            let head = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, T, F], "parameters": {"binary_data_size": size}}]})
                .to_string();
            let cut = rng.random_range(0..head.len() + n + 5);
            headers.push(("Inference-Header-Content-Length", cut.to_string()));
            let mut b = head.into_bytes();
            b.extend((0..n).map(|_| rng.random::<u8>()));
            b
        }
        _ => String::from_utf8_lossy(&valid).replacen(",", ",NaN,", rng.random_range(0..3)).replacen("0.", "1e4", 1).into_bytes(),
    };
    (body, headers)
}

#[test]
fn fuzz_random_bodies_never_5xx_and_others_keep_being_served() {
    let s = start(Ops::default(), 0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let good = windows(1);
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for i in 0..400 {
        let (body, headers) = random_body(&mut rng);
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = http(s.http, "POST", "/v2/models/fast/infer", &h, &body).unwrap_or_else(|e| panic!("case {i}: server gone: {e}"));
        assert!(r.status < 500, "case {i}: {} for {:?}: {}", r.status, String::from_utf8_lossy(&body), r.text());
        if r.status != 200 {
            let e = r.json()["error"].as_str().map(str::to_string).unwrap_or_default();
            assert!(!e.is_empty(), "case {i}: no error message");
        }
        *statuses.entry(r.status).or_default() += 1;
        if i % 50 == 0 {
            let r = infer(&s, "fast", &good, &[]);
            assert_eq!(r.status, 200, "a good client after case {i}");
        }
    }
    assert!(statuses[&400] > 300, "mostly refused: {statuses:?}");
    // gRPC: random tensors (shapes, types, names, contents, raw bytes).
    s.rt.block_on(async {
        let mut c = client(&s).await;
        for i in 0..300 {
            let shape: Vec<i64> = (0..rng.random_range(0..5))
                .map(|_| match rng.random_range(0..5) {
                    0 => -1,
                    1 => i64::MAX,
                    2 => rng.random(),
                    _ => rng.random_range(0..6),
                })
                .collect();
            let mut req = grpc_request("fast", &windows(1)).into_inner();
            req.inputs[0].shape = shape;
            req.inputs[0].datatype = ["FP32", "BYTES", "INT64"][rng.random_range(0..3)].into();
            match rng.random_range(0..4) {
                0 => {
                    req.inputs[0].contents = None;
                    req.raw_input_contents = vec![(0..rng.random_range(0..80)).map(|_| rng.random()).collect()];
                }
                1 => {
                    req.inputs[0].contents.as_mut().unwrap().fp32_contents =
                        (0..rng.random_range(0..30)).map(|_| f32::from_bits(rng.random())).collect()
                }
                2 => req.raw_input_contents = vec![vec![0; 48], vec![1]],
                _ => req.inputs.push(req.inputs[0].clone()),
            }
            match c.model_infer(req).await {
                Ok(_) => {}
                Err(e) => assert!(
                    matches!(e.code(), tonic::Code::InvalidArgument | tonic::Code::NotFound),
                    "case {i}: {:?} {}",
                    e.code(),
                    e.message()
                ),
            }
        }
        let r = c.model_infer(grpc_request("fast", &good)).await.unwrap().into_inner();
        assert!(max_diff(&r.outputs[0].contents.as_ref().unwrap().fp32_contents, &expected(&good)) <= 1e-6);
    });
}

//! The server's protocol surface on a repository of stand-in models (a deterministic fake
//! `Predictor` behind the same registry, so no model is trained here): every REST and gRPC
//! endpoint, and one test per kind of bad request (status and the field named). The end-to-end
//! test against real exported models and the Python `tritonclient` is tests/cli/serve.rs.

use flowcast_contract::{Batch, Outputs, Predictor, PredictorInfo};
use flowcast_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use flowcast_server::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use flowcast_server::proto::*;
use flowcast_server::repo::Loaded;
use flowcast_server::{Config, Loader};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const CLASSES: [&str; 3] = ["down", "flat", "up"];
const LIMIT: usize = 256 << 10;

/// logits per window: [sum, -sum, 0] over its values.
struct Fake {
    info: PredictorInfo,
}

impl Predictor for Fake {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }
    fn predict(&self, b: &Batch<'_>, out: &mut Outputs) -> flowcast_contract::Result<()> {
        self.info.check(b)?;
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

fn expected(x: &[f32], window: usize, features: usize) -> Vec<f32> {
    let classes: Vec<String> = CLASSES.iter().map(|s| s.to_string()).collect();
    let f = Fake { info: PredictorInfo::classifier("fake", &classes, window, features) };
    let mut o = Outputs::new(3);
    f.predict(&Batch::new(x, x.len() / (window * features), window, features).unwrap(), &mut o).unwrap();
    o.probs
}

/// model.json of a stand-in: `{"window", "features"}`, or `{"broken": reason}`.
fn fake_loader() -> Loader {
    Arc::new(|dir: &Path| {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        if let Some(r) = v["broken"].as_str() {
            return Err(r.to_string());
        }
        let classes: Vec<String> = CLASSES.iter().map(|s| s.to_string()).collect();
        let info =
            PredictorInfo::classifier("fake", &classes, v["window"].as_u64().unwrap() as usize, v["features"].as_u64().unwrap() as usize);
        Ok(Loaded {
            predictor: Arc::new(Fake { info }),
            parameters: vec![("architecture".into(), "fake".into())],
            card: None,
            online: None,
        })
    })
}

struct Server {
    rt: tokio::runtime::Runtime,
    http: SocketAddr,
    grpc: SocketAddr,
    _dir: tempfile::TempDir,
}

fn write_model(dir: &Path, doc: Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.json"), doc.to_string()).unwrap();
}

/// One server for all tests: alpha (T=4, F=3), broken, gamma (for unload/load), and the
/// Triton-style tri/1 (T=2, F=3) and tri/2 (T=4, F=3).
fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_model(&root.join("alpha"), json!({"window": 4, "features": 3}));
        write_model(&root.join("gamma"), json!({"window": 4, "features": 3}));
        write_model(&root.join("broken"), json!({"broken": "weights.sha256: does not match"}));
        write_model(&root.join("tri/1"), json!({"window": 2, "features": 3}));
        write_model(&root.join("tri/2"), json!({"window": 4, "features": 3}));
        std::fs::create_dir_all(root.join("not_a_model")).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cfg = Config { models: root.to_path_buf(), http: Some(lo), grpc: Some(lo), max_body_bytes: LIMIT, ..Default::default() };
        let running = rt.block_on(flowcast_server::start(cfg, fake_loader())).unwrap();
        let (http, grpc) = (running.http.unwrap(), running.grpc.unwrap());
        rt.spawn(running.wait());
        Server { rt, http, grpc, _dir: dir }
    })
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
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error in {}", self.json())).to_string()
    }
}

/// A minimal HTTP/1.1 client (one request per connection, bounded by timeouts).
fn http(method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(server().http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut w = s.try_clone().unwrap();
    let body = body.to_vec();
    // Written beside the read: the server may answer (413) before it has read the whole body.
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
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
    let _ = writer.join();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    Resp { status, headers, body: raw[end + 4..].to_vec() }
}

fn get(path: &str) -> Resp {
    http("GET", path, &[], b"")
}

fn post_json(path: &str, v: &Value) -> Resp {
    http("POST", path, &[("Content-Type", "application/json".into())], v.to_string().as_bytes())
}

fn windows(b: usize, t: usize, f: usize) -> Vec<f32> {
    (0..b * t * f).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.03).collect()
}

fn infer_json(x: &[f32], shape: [usize; 3]) -> Value {
    json!({"id": "req-1", "inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": x}]})
}

fn probs(v: &Value) -> Vec<f32> {
    v["outputs"][0]["data"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as f32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn bad(r: &Resp, field: &str) {
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.error().contains(field), "error does not name {field}: {}", r.error());
}

#[test]
fn health_and_server_metadata() {
    let r = get("/v2/health/live");
    assert_eq!((r.status, r.json()["live"].clone()), (200, json!(true)));
    let r = get("/v2/health/ready");
    assert_eq!((r.status, r.json()["ready"].clone()), (200, json!(true)));
    let v = get("/v2").json();
    assert_eq!(v["name"], "flowcast");
    assert_eq!(v["extensions"], json!(["binary_tensor_data", "model_repository"]));
    assert!(v["version"].is_string());
    let r = get("/v2/nowhere");
    assert_eq!(r.status, 404);
}

#[test]
fn model_metadata_gives_shapes_classes_and_versions() {
    let v = get("/v2/models/alpha").json();
    assert_eq!(v["name"], "alpha");
    assert_eq!(v["versions"], json!(["1"]));
    assert_eq!(v["inputs"], json!([{"name": "x", "datatype": "FP32", "shape": [-1, 4, 3]}]));
    assert_eq!(v["outputs"][0]["name"], "probs");
    assert_eq!(v["outputs"][0]["shape"], json!([-1, 3]));
    assert_eq!(v["outputs"][0]["parameters"]["classes"], "down,flat,up");
    assert_eq!(v["parameters"]["architecture"], "fake");
    let v = get("/v2/models/tri").json();
    assert_eq!(v["versions"], json!(["1", "2"]));
    assert_eq!(v["inputs"][0]["shape"], json!([-1, 4, 3]), "default version = highest");
    let v = get("/v2/models/tri/versions/1").json();
    assert_eq!(v["inputs"][0]["shape"], json!([-1, 2, 3]));
}

#[test]
fn model_ready_per_state() {
    assert_eq!(get("/v2/models/alpha/ready").status, 200);
    assert_eq!(get("/v2/models/tri/versions/1/ready").status, 200);
    let r = get("/v2/models/broken/ready");
    assert_eq!((r.status, r.json()["ready"].clone()), (400, json!(false)));
    assert_eq!(get("/v2/models/nope/ready").status, 404);
    assert_eq!(get("/v2/models/tri/versions/9/ready").status, 404);
}

#[test]
fn infer_json_matches_the_predictor_and_echoes_the_id() {
    let x = windows(5, 4, 3);
    let r = post_json("/v2/models/alpha/infer", &infer_json(&x, [5, 4, 3]));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["model_name"], "alpha");
    assert_eq!(v["model_version"], "1");
    assert_eq!(v["id"], "req-1");
    assert_eq!(v["outputs"][0]["name"], "probs");
    assert_eq!(v["outputs"][0]["datatype"], "FP32");
    assert_eq!(v["outputs"][0]["shape"], json!([5, 3]));
    assert!(v["parameters"]["compute_time_us"].is_u64(), "{v}");
    assert!(max_diff(&probs(&v), &expected(&x, 4, 3)) <= 1e-6);
}

#[test]
fn infer_accepts_nested_data_and_requested_outputs() {
    let x = windows(2, 4, 3);
    let nested: Vec<Vec<Vec<f32>>> = x.chunks(12).map(|w| w.chunks(3).map(|r| r.to_vec()).collect()).collect();
    let req = json!({"inputs": [{"name": "x", "shape": [2, 4, 3], "datatype": "FP32", "data": nested}], "outputs": [{"name": "probs"}]});
    let r = post_json("/v2/models/alpha/infer", &req);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json().get("id").is_none());
    assert!(max_diff(&probs(&r.json()), &expected(&x, 4, 3)) <= 1e-6);
}

fn binary_body(x: &[f32], shape: [usize; 3], size: usize, out_binary: bool) -> (Vec<u8>, usize) {
    let mut head = json!({"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": size}}]});
    if out_binary {
        head["outputs"] = json!([{"name": "probs", "parameters": {"binary_data": true}}]);
    }
    let mut b = head.to_string().into_bytes();
    let n = b.len();
    b.extend(x.iter().flat_map(|v| v.to_le_bytes()));
    (b, n)
}

fn post_binary(path: &str, body: &[u8], header_len: usize) -> Resp {
    http(
        "POST",
        path,
        &[("Inference-Header-Content-Length", header_len.to_string()), ("Content-Type", "application/octet-stream".into())],
        body,
    )
}

#[test]
fn infer_binary_tensors_in_and_out() {
    let x = windows(3, 4, 3);
    let want = expected(&x, 4, 3);
    // Binary in, JSON out.
    let (b, n) = binary_body(&x, [3, 4, 3], x.len() * 4, false);
    let r = post_binary("/v2/models/alpha/infer", &b, n);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(max_diff(&probs(&r.json()), &want) <= 1e-6);
    // Binary in, binary out.
    let (b, n) = binary_body(&x, [3, 4, 3], x.len() * 4, true);
    let r = post_binary("/v2/models/alpha/infer", &b, n);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let hl: usize = r.headers["inference-header-content-length"].parse().unwrap();
    let head: Value = serde_json::from_slice(&r.body[..hl]).unwrap();
    let out = &head["outputs"][0];
    assert_eq!(out["parameters"]["binary_data_size"], 9 * 4);
    assert!(out.get("data").is_none());
    let got: Vec<f32> = r.body[hl..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert!(max_diff(&got, &want) <= 1e-6);
    // JSON in, binary out for all outputs (what tritonclient asks when it names none).
    let mut req = infer_json(&x, [3, 4, 3]);
    req["parameters"] = json!({"binary_data_output": true});
    let r = post_json("/v2/models/alpha/infer", &req);
    let hl: usize = r.headers["inference-header-content-length"].parse().unwrap();
    // probs (3 × 3 FP32), then the four signal outputs (3 values of 4 bytes each).
    assert_eq!(r.body.len() - hl, 9 * 4 + 4 * 3 * 4);
    let got: Vec<f32> = r.body[hl..hl + 36].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert!(max_diff(&got, &want) <= 1e-6);
}

#[test]
fn infer_on_a_version() {
    let x = windows(2, 2, 3);
    let r = post_json("/v2/models/tri/versions/1/infer", &infer_json(&x, [2, 2, 3]));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["model_version"], "1");
    assert!(max_diff(&probs(&r.json()), &expected(&x, 2, 3)) <= 1e-6);
    // No version: the highest (T = 4).
    let r = post_json("/v2/models/tri/infer", &infer_json(&x, [2, 2, 3]));
    bad(&r, "inputs[0].shape");
}

#[test]
fn unknown_model_is_404() {
    let x = windows(1, 4, 3);
    let r = post_json("/v2/models/nope/infer", &infer_json(&x, [1, 4, 3]));
    assert_eq!(r.status, 404);
    assert!(r.error().contains("\"nope\""), "{}", r.error());
    assert_eq!(get("/v2/models/nope").status, 404);
}

#[test]
fn unknown_version_is_404() {
    let x = windows(1, 4, 3);
    let r = post_json("/v2/models/alpha/versions/7/infer", &infer_json(&x, [1, 4, 3]));
    assert_eq!(r.status, 404);
    assert!(r.error().contains("version \"7\""), "{}", r.error());
}

#[test]
fn model_that_failed_to_load_is_503_with_its_reason() {
    let x = windows(1, 4, 3);
    let r = post_json("/v2/models/broken/infer", &infer_json(&x, [1, 4, 3]));
    assert_eq!(r.status, 503);
    assert!(r.error().contains("weights.sha256"), "{}", r.error());
}

#[test]
fn wrong_input_name_is_400() {
    let mut req = infer_json(&windows(1, 4, 3), [1, 4, 3]);
    req["inputs"][0]["name"] = json!("input0");
    bad(&post_json("/v2/models/alpha/infer", &req), "inputs[0].name");
    let req = json!({"inputs": []});
    bad(&post_json("/v2/models/alpha/infer", &req), "inputs");
}

#[test]
fn wrong_datatype_is_400() {
    let mut req = infer_json(&windows(1, 4, 3), [1, 4, 3]);
    req["inputs"][0]["datatype"] = json!("FP64");
    bad(&post_json("/v2/models/alpha/infer", &req), "inputs[0].datatype");
}

#[test]
fn wrong_shape_is_400() {
    let x = windows(1, 4, 3);
    for shape in [json!([1, 5, 3]), json!([1, 4, 2]), json!([12]), json!([1, 4, 3, 1]), json!([0, 4, 3]), json!([-1, 4, 3])] {
        let mut req = infer_json(&x, [1, 4, 3]);
        req["inputs"][0]["shape"] = shape.clone();
        let r = post_json("/v2/models/alpha/infer", &req);
        bad(&r, "inputs[0].shape");
        assert!(r.error().contains("[B, 4, 3]"), "{shape}: {}", r.error());
    }
}

#[test]
fn data_length_not_matching_the_shape_is_400() {
    let x = windows(2, 4, 3);
    let r = post_json("/v2/models/alpha/infer", &infer_json(&x[..23], [2, 4, 3]));
    bad(&r, "inputs[0].data");
    assert!(r.error().contains("23 values"), "{}", r.error());
    let mut req = infer_json(&x, [2, 4, 3]);
    req["inputs"][0]["data"][5] = json!("a");
    bad(&post_json("/v2/models/alpha/infer", &req), "inputs[0].data");
    let mut req = infer_json(&x, [2, 4, 3]);
    req["inputs"][0].as_object_mut().unwrap().remove("data");
    bad(&post_json("/v2/models/alpha/infer", &req), "inputs[0].data");
}

#[test]
fn non_finite_values_are_400() {
    // JSON cannot hold NaN; 1e39 overflows FP32 to inf.
    let mut req = infer_json(&windows(1, 4, 3), [1, 4, 3]);
    req["inputs"][0]["data"][7] = json!(1e39);
    let r = post_json("/v2/models/alpha/infer", &req);
    bad(&r, "inputs[0].data");
    assert!(r.error().contains("not finite") && r.error().contains("step 2, feature 1"), "{}", r.error());
    let mut x = windows(2, 4, 3);
    x[13] = f32::NAN;
    let (b, n) = binary_body(&x, [2, 4, 3], x.len() * 4, false);
    let r = post_binary("/v2/models/alpha/infer", &b, n);
    bad(&r, "inputs[0].data");
    assert!(r.error().contains("window 1"), "{}", r.error());
}

#[test]
fn malformed_json_is_400() {
    let r = http("POST", "/v2/models/alpha/infer", &[], b"{\"inputs\": [");
    bad(&r, "request JSON");
    let r = post_json("/v2/models/alpha/infer", &json!({"inputs": [{"name": "x", "shape": "1,4,3", "datatype": "FP32", "data": []}]}));
    bad(&r, "inputs[0].shape");
    let r = post_json("/v2/models/alpha/infer", &json!({"id": 5}));
    bad(&r, "request JSON");
    let r = http("POST", "/v2/models/alpha/infer", &[], b"");
    bad(&r, "request JSON");
}

#[test]
fn truncated_binary_is_400() {
    let x = windows(2, 4, 3);
    // The declared size runs past the body.
    let (b, n) = binary_body(&x, [2, 4, 3], x.len() * 4, false);
    let r = post_binary("/v2/models/alpha/infer", &b[..b.len() - 4], n);
    bad(&r, "binary_data_size");
    assert!(r.error().contains("truncated"), "{}", r.error());
    // The size disagrees with the shape.
    let (b, n) = binary_body(&x[..20], [2, 4, 3], 80, false);
    bad(&post_binary("/v2/models/alpha/infer", &b, n), "inputs[0].parameters.binary_data_size");
    // The header length runs past the body.
    let r = post_binary("/v2/models/alpha/infer", &b, b.len() + 1);
    bad(&r, "Inference-Header-Content-Length");
    // Bytes left over.
    let (mut b, n) = binary_body(&x, [2, 4, 3], x.len() * 4, false);
    b.extend_from_slice(&[0, 0]);
    bad(&post_binary("/v2/models/alpha/infer", &b, n), "body");
}

#[test]
fn unknown_output_is_400() {
    let mut req = infer_json(&windows(1, 4, 3), [1, 4, 3]);
    req["outputs"] = json!([{"name": "logits"}]);
    bad(&post_json("/v2/models/alpha/infer", &req), "outputs[0].name");
}

#[test]
fn body_over_the_limit_is_413() {
    let x = windows(LIMIT / 12 + 1, 4, 3);
    let r = post_json("/v2/models/alpha/infer", &infer_json(&x, [x.len() / 12, 4, 3]));
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.error().contains("body"), "{}", r.error());
}

#[test]
fn repository_index_reports_the_skipped_model_and_its_reason() {
    let v = post_json("/v2/repository/index", &json!({})).json();
    let rows = v.as_array().unwrap();
    let names: Vec<(&str, &str)> = rows.iter().map(|r| (r["name"].as_str().unwrap(), r["version"].as_str().unwrap())).collect();
    assert!(names.contains(&("alpha", "1")) && names.contains(&("tri", "1")) && names.contains(&("tri", "2")), "{v}");
    assert!(!names.iter().any(|(n, _)| *n == "not_a_model"));
    let broken = rows.iter().find(|r| r["name"] == "broken").unwrap();
    assert_eq!(broken["state"], "UNAVAILABLE");
    assert!(broken["reason"].as_str().unwrap().contains("weights.sha256"), "{broken}");
    let v = http("POST", "/v2/repository/index", &[], br#"{"ready": true}"#).json();
    assert!(v.as_array().unwrap().iter().all(|r| r["state"] == "READY"), "{v}");
    // Loading a model that still fails: 503 with the reason.
    let r = post_json("/v2/repository/models/broken/load", &json!({}));
    assert_eq!(r.status, 503);
    assert!(r.error().contains("weights.sha256"), "{}", r.error());
    assert_eq!(post_json("/v2/repository/models/nope/load", &json!({})).status, 404);
    assert_eq!(post_json("/v2/repository/models/nope/unload", &json!({})).status, 404);
}

#[test]
fn repository_unload_then_load() {
    let x = windows(1, 4, 3);
    assert_eq!(post_json("/v2/models/gamma/infer", &infer_json(&x, [1, 4, 3])).status, 200);
    assert_eq!(post_json("/v2/repository/models/gamma/unload", &json!({})).status, 200);
    assert_eq!(get("/v2/models/gamma/ready").status, 400);
    let r = post_json("/v2/models/gamma/infer", &infer_json(&x, [1, 4, 3]));
    assert_eq!(r.status, 503);
    assert!(r.error().contains("unloaded"), "{}", r.error());
    let v = post_json("/v2/repository/index", &json!({})).json();
    assert!(v.as_array().unwrap().iter().any(|r| r["name"] == "gamma" && r["state"] == "UNLOADED"), "{v}");
    assert_eq!(post_json("/v2/repository/models/gamma/load", &json!({})).status, 200);
    assert_eq!(post_json("/v2/models/gamma/infer", &infer_json(&x, [1, 4, 3])).status, 200);
}

// ---- gRPC ----

fn grpc<T>(f: impl AsyncFnOnce(GrpcInferenceServiceClient<tonic::transport::Channel>) -> T) -> T {
    let s = server();
    s.rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc))
            .unwrap()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        f(GrpcInferenceServiceClient::new(ch)).await
    })
}

fn grpc_request(x: &[f32], shape: [i64; 3], raw: bool) -> ModelInferRequest {
    let mut input = InferInputTensor { name: "x".into(), datatype: "FP32".into(), shape: shape.to_vec(), ..Default::default() };
    let mut req = ModelInferRequest { model_name: "alpha".into(), id: "g-1".into(), ..Default::default() };
    if raw {
        req.raw_input_contents = vec![x.iter().flat_map(|v| v.to_le_bytes()).collect()];
    } else {
        input.contents = Some(InferTensorContents { fp32_contents: x.to_vec(), ..Default::default() });
    }
    req.inputs = vec![input];
    req
}

#[test]
fn grpc_health_metadata_and_repository() {
    grpc(async |mut c| {
        assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
        assert!(c.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
        let m = c.server_metadata(ServerMetadataRequest {}).await.unwrap().into_inner();
        assert_eq!(m.name, "flowcast");
        assert!(m.extensions.contains(&"binary_tensor_data".to_string()));
        let m = c.model_metadata(ModelMetadataRequest { name: "tri".into(), version: "1".into() }).await.unwrap().into_inner();
        assert_eq!(m.versions, vec!["1", "2"]);
        assert_eq!(m.inputs[0].shape, vec![-1, 2, 3]);
        assert_eq!((m.outputs[0].name.as_str(), m.outputs[0].shape.clone()), ("probs", vec![-1, 3]));
        assert!(c.model_ready(ModelReadyRequest { name: "alpha".into(), version: String::new() }).await.unwrap().into_inner().ready);
        assert!(!c.model_ready(ModelReadyRequest { name: "broken".into(), version: String::new() }).await.unwrap().into_inner().ready);
        let e = c.model_ready(ModelReadyRequest { name: "nope".into(), version: String::new() }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let idx = c.repository_index(RepositoryIndexRequest { repository_name: String::new(), ready: false }).await.unwrap().into_inner();
        let broken = idx.models.iter().find(|m| m.name == "broken").unwrap();
        assert_eq!(broken.state, "UNAVAILABLE");
        assert!(broken.reason.contains("weights.sha256"));
        let e =
            c.repository_model_unload(RepositoryModelUnloadRequest { model_name: "nope".into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
    });
}

#[test]
fn grpc_infer_raw_and_typed_match_the_predictor() {
    let x = windows(4, 4, 3);
    let want = expected(&x, 4, 3);
    grpc(async |mut c| {
        let r = c.model_infer(grpc_request(&x, [4, 4, 3], true)).await.unwrap().into_inner();
        assert_eq!((r.model_name.as_str(), r.model_version.as_str(), r.id.as_str()), ("alpha", "1", "g-1"));
        assert_eq!(r.outputs[0].shape, vec![4, 3]);
        assert!(r.parameters.contains_key("compute_time_us"));
        let got: Vec<f32> = r.raw_output_contents[0].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert!(max_diff(&got, &want) <= 1e-6);
        let mut req = grpc_request(&x, [4, 4, 3], false);
        req.outputs = vec![InferRequestedOutputTensor { name: "probs".into(), ..Default::default() }];
        let r = c.model_infer(req).await.unwrap().into_inner();
        assert!(r.raw_output_contents.is_empty());
        assert!(max_diff(&r.outputs[0].contents.as_ref().unwrap().fp32_contents, &want) <= 1e-6);
    });
}

#[test]
fn grpc_bad_requests_are_invalid_argument_naming_the_field() {
    let x = windows(2, 4, 3);
    let check = |req: ModelInferRequest, code: tonic::Code, field: &'static str| {
        grpc(async move |mut c| {
            let e = c.model_infer(req).await.unwrap_err();
            assert_eq!(e.code(), code, "{}", e.message());
            assert!(e.message().contains(field), "{field}: {}", e.message());
        })
    };
    let mut r = grpc_request(&x, [2, 4, 3], true);
    r.model_name = "nope".into();
    check(r, tonic::Code::NotFound, "\"nope\"");
    let mut r = grpc_request(&x, [2, 4, 3], true);
    r.model_version = "3".into();
    check(r, tonic::Code::NotFound, "version \"3\"");
    let mut r = grpc_request(&x, [2, 4, 3], true);
    r.inputs[0].name = "input0".into();
    check(r, tonic::Code::InvalidArgument, "inputs[0].name");
    let mut r = grpc_request(&x, [2, 4, 3], true);
    r.inputs[0].datatype = "INT32".into();
    check(r, tonic::Code::InvalidArgument, "inputs[0].datatype");
    check(grpc_request(&x, [2, 5, 3], true), tonic::Code::InvalidArgument, "inputs[0].shape");
    let mut r = grpc_request(&x, [2, 4, 3], true);
    r.raw_input_contents[0].truncate(95);
    check(r, tonic::Code::InvalidArgument, "raw_input_contents[0]");
    check(grpc_request(&x[..20], [2, 4, 3], false), tonic::Code::InvalidArgument, "inputs[0].data");
    let mut y = x.clone();
    y[3] = f32::INFINITY;
    check(grpc_request(&y, [2, 4, 3], true), tonic::Code::InvalidArgument, "not finite");
    let mut r = grpc_request(&x, [2, 4, 3], true);
    r.outputs = vec![InferRequestedOutputTensor { name: "logits".into(), ..Default::default() }];
    check(r, tonic::Code::InvalidArgument, "outputs[0].name");
    let mut r = grpc_request(&x, [2, 4, 3], false);
    r.inputs[0].contents = None;
    check(r, tonic::Code::InvalidArgument, "inputs[0].contents");
    let mut r = grpc_request(&x, [2, 4, 3], false);
    r.model_name = "broken".into();
    check(r, tonic::Code::Unavailable, "weights.sha256");
}

#[test]
fn grpc_message_over_the_limit_is_refused() {
    let x = windows(LIMIT / 12 + 1, 4, 3);
    let req = grpc_request(&x, [(x.len() / 12) as i64, 4, 3], true);
    grpc(async move |mut c| {
        let e = c.model_infer(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::OutOfRange, "{}", e.message());
    });
}

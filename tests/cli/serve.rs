//! `flowcast serve` end to end: train a tiny run with `flowcast run`, serve it (run-directory
//! and Triton-style layouts, with a corrupted model beside that must be skipped and reported),
//! and check that REST's probabilities (JSON and binary tensors) equal the candle predictor's
//! on the same windows; then the real Python `tritonclient` (HTTP and gRPC) against it, which
//! skips with a message when Python or tritonclient is missing. Loopback only; every wait is
//! bounded and the server is killed when the test ends (also on failure).

use super::flowcast;
use flowcast_server::flowcast_contract::{Batch, Outputs, Predictor};
use flowcast_server::flowcast_serve::CandlePredictor;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXPERIMENT: &str = r#"
name = "serve"
seed = 3
[data]
synthetic = { levels = 2, events = 4000, seed = 17 }
[columns]
kind = "book"
window = 8
train_stride = 4
[label]
kind = "smoothed"
horizon = 5
[[model]]
name = "lstm"
hidden = 8
[training]
epochs = 1
batch = 32
max_batches = 2
"#;

/// A running `flowcast serve`, killed on drop.
struct Serve {
    child: Child,
    http: String,
    grpc: String,
    models: Value,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(models: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowcast"))
        .args(["serve", "--models", models.to_str().unwrap(), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start flowcast serve");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(120));
    let mut s = Serve { child, http: String::new(), grpc: String::new(), models: Value::Null };
    let line = line.expect("flowcast serve printed no ready line within 120 s");
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("ready line is not JSON ({e}): {line:?}"));
    s.http = v["http"].as_str().unwrap().to_string();
    s.grpc = v["grpc"].as_str().unwrap().to_string();
    s.models = v["models"].clone();
    assert!(s.http.starts_with("127.0.0.1:") && s.grpc.starts_with("127.0.0.1:"), "{v}");
    s
}

/// One HTTP/1.1 request (connection closed after it, 60 s timeouts): status, headers, body.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let hs = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    (status, hs, raw[end + 4..].to_vec())
}

fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (st, _, b) = http(addr, "GET", path, &[], b"");
    (st, serde_json::from_slice(&b).unwrap())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Deterministic windows in about [-2, 2] (normalised inputs).
fn windows(n: usize) -> Vec<f32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 4001) as f32 / 1000.0 - 2.0
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["model.json", "model.safetensors", "model_config.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

/// REST inference with JSON data and with binary tensors in and out; returns both.
fn rest_probs(addr: &str, path: &str, x: &[f32], shape: [usize; 3]) -> (Vec<f32>, Vec<f32>) {
    let req = json!({"id": "e2e", "inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": x}]});
    let (st, _, b) = http(addr, "POST", path, &[("Content-Type", "application/json".into())], req.to_string().as_bytes());
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["id"], "e2e");
    assert!(v["parameters"]["compute_time_us"].is_u64(), "{v}");
    let from_json: Vec<f32> = v["outputs"][0]["data"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as f32).collect();

    let head = json!({
        "inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": x.len() * 4}}],
        "outputs": [{"name": "probs", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = head.clone().into_bytes();
    body.extend(x.iter().flat_map(|v| v.to_le_bytes()));
    let (st, hs, b) = http(addr, "POST", path, &[("Inference-Header-Content-Length", head.len().to_string())], &body);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let hl: usize = hs.iter().find(|(k, _)| k == "inference-header-content-length").expect("binary response header").1.parse().unwrap();
    let from_binary: Vec<f32> = b[hl..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    (from_json, from_binary)
}

fn python_has_tritonclient() -> Result<(), String> {
    match Command::new("python3").args(["-c", "import numpy, tritonclient.http, tritonclient.grpc"]).output() {
        Err(e) => Err(format!("python3 not runnable: {e}")),
        Ok(o) if !o.status.success() => Err(format!("tritonclient[all] not importable: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Ok(_) => Ok(()),
    }
}

/// Runs tests/cli/serve.py (bounded: killed after 180 s) and returns its JSON line.
fn run_python(s: &Serve, case: &Path) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/serve.py");
    let mut child = Command::new("python3")
        .args([script, &s.http, &s.grpc, case.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve.py ran past 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "serve.py failed:\n{so}\n{se}");
    serde_json::from_str(so.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("serve.py output ({e}): {so}\n{se}"))
}

#[test]
fn serve_matches_the_candle_predictor_over_rest_and_tritonclient() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("serve.toml");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let runs = tmp.path().join("runs");
    let (code, out, err) = flowcast(&["run", exp.to_str().unwrap(), "--json", "--quiet", "--runs-dir", runs.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let run: Value = serde_json::from_str(out.trim()).unwrap();
    let run_dir = Path::new(run["run_dir"].as_str().unwrap()).to_path_buf();
    let model_dir = run_dir.join("lstm");
    // A corrupted copy: its weights no longer match the card, so it is skipped with the reason.
    copy_dir(&model_dir, &run_dir.join("corrupt"));
    let mut w = std::fs::read(run_dir.join("corrupt/model.safetensors")).unwrap();
    let last = w.len() - 1;
    w[last] ^= 0x55;
    std::fs::write(run_dir.join("corrupt/model.safetensors"), w).unwrap();

    // The reference: the candle predictor on the same windows.
    let (p, card) = CandlePredictor::load(&model_dir).unwrap();
    let (t, f, k) = (p.info().window, p.info().features, card.classes.len());
    let b = 7;
    let x = windows(b * t * f);
    let mut want = Outputs::new(k);
    p.predict(&Batch::new(&x, b, t, f).unwrap(), &mut want).unwrap();

    let s = serve(&run_dir);
    let idx = s.models.as_array().unwrap();
    let row = |n: &str| idx.iter().find(|r| r["name"] == n).unwrap_or_else(|| panic!("{n} not in {idx:?}")).clone();
    assert_eq!(row("lstm")["state"], "READY");
    assert_eq!(row("corrupt")["state"], "UNAVAILABLE");
    assert!(row("corrupt")["reason"].as_str().unwrap().contains("weights.sha256"), "{}", row("corrupt"));

    assert_eq!(get_json(&s.http, "/v2/health/live").0, 200);
    assert_eq!(get_json(&s.http, "/v2/health/ready").0, 200);
    let (st, md) = get_json(&s.http, "/v2/models/lstm");
    assert_eq!(st, 200, "{md}");
    assert_eq!(md["inputs"][0]["shape"], json!([-1, t, f]));
    assert_eq!(md["outputs"][0]["shape"], json!([-1, k]));
    assert_eq!(md["outputs"][0]["parameters"]["classes"], card.classes.join(","));
    assert_eq!(get_json(&s.http, "/v2/models/corrupt/ready").0, 400);

    let (from_json, from_binary) = rest_probs(&s.http, "/v2/models/lstm/infer", &x, [b, t, f]);
    assert!(max_diff(&from_json, &want.probs) <= 1e-6, "JSON: {from_json:?} vs {:?}", want.probs);
    assert!(max_diff(&from_binary, &want.probs) <= 1e-6, "binary: {from_binary:?} vs {:?}", want.probs);

    // The real Triton clients, when this machine has them.
    match python_has_tritonclient() {
        Err(why) => eprintln!("SKIP tritonclient check: {why} (pip install 'tritonclient[all]')"),
        Ok(()) => {
            let case = tmp.path().join("case.json");
            std::fs::write(&case, json!({"model": "lstm", "shape": [b, t, f], "x": x, "probs": want.probs}).to_string()).unwrap();
            let v = run_python(&s, &case);
            assert_eq!(v["ok"], true, "{v}");
            assert!(v["max_abs_diff"].as_f64().unwrap() <= 1e-6, "{v}");
            eprintln!("tritonclient: {v}");
        }
    }
    drop(s);

    // The same model in a Triton-style repository: <repo>/<name>/<version>/.
    let repo = tmp.path().join("repo");
    copy_dir(&model_dir, &repo.join("book_lstm/3"));
    let s = serve(&repo);
    assert_eq!(s.models, json!([{"name": "book_lstm", "version": "3", "state": "READY"}]));
    let (from_json, _) = rest_probs(&s.http, "/v2/models/book_lstm/versions/3/infer", &x, [b, t, f]);
    assert!(max_diff(&from_json, &want.probs) <= 1e-6);
}

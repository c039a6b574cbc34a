//! `flowcast serve --config serve.toml` end to end on a trained run: bearer auth from a tokens
//! file, dynamic batching (concurrent requests answered from one model call, with the candle
//! predictor's probabilities), `/metrics`, the Python clients (tritonclient with a token,
//! prometheus_client's parser; skipped with a message when missing), and SIGTERM while a request
//! waits in the batcher: it is answered, then the process exits 0.

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
name = "serve_ops"
seed = 5
[data]
synthetic = { levels = 2, events = 4000, seed = 19 }
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

struct Serve {
    child: Child,
    http: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(config: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowcast"))
        .args(["serve", "--config", config.to_str().unwrap(), "--grpc", "127.0.0.1:0"])
        .env("FLOWCAST_LOG", "flowcast::request=info")
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
    let mut s = Serve { child, http: String::new() };
    let line = rx.recv_timeout(Duration::from_secs(120)).expect("flowcast serve printed no ready line within 120 s");
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("ready line is not JSON ({e}): {line:?}"));
    s.http = v["http"].as_str().unwrap().to_string();
    s
}

fn http(addr: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
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

fn infer(addr: &str, token: Option<&str>, x: &[f32], shape: [usize; 3]) -> (u16, Value) {
    let req = json!({"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": x}]});
    let auth: Vec<(&str, String)> = token.map(|t| ("Authorization", format!("Bearer {t}"))).into_iter().collect();
    let (st, _, b) = http(addr, "POST", "/v2/models/lstm/infer", &auth, req.to_string().as_bytes());
    (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn windows(n: usize, seed: u64) -> Vec<f32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 4001) as f32 / 1000.0 - 2.0
        })
        .collect()
}

fn python_has(modules: &str) -> Result<(), String> {
    match Command::new("python3").args(["-c", &format!("import {modules}")]).output() {
        Err(e) => Err(format!("python3 not runnable: {e}")),
        Ok(o) if !o.status.success() => Err(format!("{modules} not importable: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Ok(_) => Ok(()),
    }
}

#[test]
fn serve_config_auth_batching_metrics_and_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp.toml");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let runs = tmp.path().join("runs");
    let (code, out, err) = flowcast(&["run", exp.to_str().unwrap(), "--json", "--quiet", "--runs-dir", runs.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let run: Value = serde_json::from_str(out.trim()).unwrap();
    let run_dir = Path::new(run["run_dir"].as_str().unwrap()).to_path_buf();
    let (p, card) = CandlePredictor::load(&run_dir.join("lstm")).unwrap();
    let (t, f, k) = (p.info().window, p.info().features, card.classes.len());

    std::fs::write(tmp.path().join("tokens.txt"), "# test clients\ntok-a\n").unwrap();
    let config = tmp.path().join("serve.toml");
    let toml = format!(
        "models = {:?}\nhttp = \"127.0.0.1:0\"\nauth_tokens_file = \"tokens.txt\"\nrequest_timeout_ms = 20000\nqueue_capacity = 64\n\
         rate_limit = {{ requests_per_second = 1000.0, burst = 1000 }}\nbatching = {{ max_batch = 16, max_queue_delay_us = 400000 }}\n",
        run_dir.to_str().unwrap()
    );
    std::fs::write(&config, toml).unwrap();
    // An unknown key is refused with the file and the key named.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "modles = \"x\"\n").unwrap();
    let (code, _, err) = flowcast(&["serve", "--config", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("bad.toml") && err.contains("unknown field `modles`"), "{err}");

    let s = serve(&config);
    let x = windows(t * f, 1);
    assert_eq!(infer(&s.http, None, &x, [1, t, f]).0, 401);
    assert_eq!(infer(&s.http, Some("tok-b"), &x, [1, t, f]).0, 401);

    // Three clients within the 400 ms batching delay: one model call, each gets its own rows.
    let threads: Vec<_> = (0..3u64)
        .map(|i| {
            let addr = s.http.clone();
            std::thread::spawn(move || {
                let x = windows(2 * t * f, 10 + i);
                let r = infer(&addr, Some("tok-a"), &x, [2, t, f]);
                (x, r)
            })
        })
        .collect();
    for th in threads {
        let (x, (st, v)) = th.join().unwrap();
        assert_eq!(st, 200, "{v}");
        let mut want = Outputs::new(k);
        p.predict(&Batch::new(&x, 2, t, f).unwrap(), &mut want).unwrap();
        let got: Vec<f32> = v["outputs"][0]["data"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as f32).collect();
        let diff = got.iter().zip(&want.probs).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff <= 1e-6, "batched {got:?} vs alone {:?}", want.probs);
        assert_eq!(v["parameters"]["batch_windows"], 6, "{v}");
    }
    let (st, _, m) = http(&s.http, "GET", "/metrics", &[], b"");
    assert_eq!(st, 200);
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("flowcast_batch_size_windows_count{model=\"lstm\"} 1\n"), "{m}");
    assert!(m.contains("flowcast_requests_total{endpoint=\"infer\",model=\"lstm\",protocol=\"http\",status=\"401\"} 2\n"), "{m}");

    match python_has("numpy, tritonclient.http, prometheus_client") {
        Err(why) => eprintln!("SKIP Python metrics/auth check: {why} (pip install 'tritonclient[all]' prometheus-client)"),
        Ok(()) => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/serve_ops.py");
            let out = Command::new("timeout")
                .args(["180", "python3", script, &s.http, "tok-a", "lstm", &json!([1, t, f]).to_string()])
                .output()
                .expect("run python3");
            let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "serve_ops.py failed:\n{so}\n{se}");
            eprintln!("serve_ops.py: {}", so.trim());
        }
    }

    // SIGTERM while a request waits in the batcher (400 ms delay): it is still answered.
    let addr = s.http.clone();
    let x1 = x.clone();
    let inflight = std::thread::spawn(move || infer(&addr, Some("tok-a"), &x1, [1, t, f]));
    std::thread::sleep(Duration::from_millis(150));
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (st, v) = inflight.join().unwrap();
    assert_eq!(st, 200, "the request in flight at SIGTERM: {v}");
    let mut s = s;
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "flowcast serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

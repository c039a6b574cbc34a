//! Signals and latency in tensor mode, REST and gRPC, on a stand-in model whose probabilities
//! are known in closed form (logits `[s, −s, 0]` for a window summing to s; no card, so the
//! default thresholds: enter 0.55, strong 0.70, α = 0): exact directions and values by hand.
//! Plus stream mode's refusals on such a model (no card) and on unknown models.

use flowcast_contract::{Batch, Outputs, Predictor, PredictorInfo};
use flowcast_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use flowcast_server::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use flowcast_server::proto::*;
use flowcast_server::repo::Loaded;
use flowcast_server::{Config, Loader};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, OnceLock};

struct Fake {
    info: PredictorInfo,
}

impl Predictor for Fake {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }
    fn predict(&self, b: &Batch<'_>, out: &mut Outputs) -> flowcast_contract::Result<()> {
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

fn loader() -> Loader {
    Arc::new(|_: &Path| {
        let classes: Vec<String> = ["down", "flat", "up"].iter().map(|s| s.to_string()).collect();
        Ok(Loaded {
            predictor: Arc::new(Fake { info: PredictorInfo::classifier("fake", &classes, 2, 1) }),
            parameters: vec![],
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

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sig")).unwrap();
        std::fs::write(dir.path().join("sig/model.json"), "{}").unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cfg =
            Config { models: dir.path().to_path_buf(), http: Some(lo), grpc: Some(lo), max_body_bytes: 1 << 20, ..Default::default() };
        let running = rt.block_on(flowcast_server::start(cfg, loader())).unwrap();
        let (http, grpc) = (running.http.unwrap(), running.grpc.unwrap());
        rt.spawn(running.wait());
        Server { rt, http, grpc, _dir: dir }
    })
}

fn post(path: &str, body: &Value) -> (u16, Value) {
    let mut s = TcpStream::connect(server().http).unwrap();
    let b = body.to_string();
    write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{b}", b.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.split_whitespace().nth(1).unwrap().parse().unwrap(), serde_json::from_str(body).unwrap())
}

/// Windows (T = 2, F = 1) summing to 0, 0.7, 3 and 0.5.
const X: [f32; 8] = [0.0, 0.0, 0.35, 0.35, 1.5, 1.5, 0.25, 0.25];
/// By hand: softmax([s, −s, 0]); direction from P(down) against 0.55 / 0.70.
const DIRECTION: [i32; 4] = [0, -1, -2, 0];
const STRENGTH: [f32; 4] = [0.0, -0.2887906, -0.9030161, -0.1992845];
const CONFIDENCE: [f32; 4] = [0.3333333, 0.5736635, 0.9503302, 0.5064804];

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

fn col(v: &Value, name: &str) -> Vec<f64> {
    let o = v["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("{name} missing: {v}"));
    o["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn rest_returns_signals_and_latency() {
    let req = json!({"inputs": [{"name": "x", "shape": [4, 2, 1], "datatype": "FP32", "data": X}]});
    let (st, v) = post("/v2/models/sig/infer", &req);
    assert_eq!(st, 200, "{v}");
    let dir: Vec<i32> = col(&v, "signal_direction").iter().map(|&d| d as i32).collect();
    assert_eq!(dir, DIRECTION);
    let f = |n| col(&v, n).iter().map(|&x| x as f32).collect::<Vec<f32>>();
    assert!(close(&f("signal_strength"), &STRENGTH), "{v}");
    assert!(close(&f("signal_confidence"), &CONFIDENCE), "{v}");
    assert_eq!(f("signal_edge_bps"), vec![0.0; 4], "α = 0: edge α·s = 0");
    let types: Vec<(&str, &str)> =
        v["outputs"].as_array().unwrap().iter().map(|o| (o["name"].as_str().unwrap(), o["datatype"].as_str().unwrap())).collect();
    assert_eq!(
        types,
        [
            ("probs", "FP32"),
            ("signal_direction", "INT32"),
            ("signal_strength", "FP32"),
            ("signal_confidence", "FP32"),
            ("signal_edge_bps", "FP32")
        ]
    );
    assert!(v["parameters"]["queue_time_us"].is_u64() && v["parameters"]["compute_time_us"].is_u64(), "{v}");
    // Only what is asked for.
    let req =
        json!({"inputs": [{"name": "x", "shape": [4, 2, 1], "datatype": "FP32", "data": X}], "outputs": [{"name": "signal_direction"}]});
    let (st, v) = post("/v2/models/sig/infer", &req);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(v["outputs"][0]["data"], json!(DIRECTION));
    let req = json!({"inputs": [{"name": "x", "shape": [4, 2, 1], "datatype": "FP32", "data": X}], "outputs": [{"name": "signal"}]});
    let (st, v) = post("/v2/models/sig/infer", &req);
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().starts_with("outputs[0].name"), "{v}");
}

#[test]
fn metadata_declares_the_signal_outputs() {
    let mut s = TcpStream::connect(server().http).unwrap();
    write!(s, "GET /v2/models/sig HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let v: Value = serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap();
    let outs: Vec<(String, String, Value)> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap().into(), o["datatype"].as_str().unwrap().into(), o["shape"].clone()))
        .collect();
    assert_eq!(outs[1], ("signal_direction".into(), "INT32".into(), json!([-1])));
    assert_eq!(outs.len(), 5);
}

fn grpc<T>(f: impl AsyncFnOnce(GrpcInferenceServiceClient<tonic::transport::Channel>) -> T) -> T {
    let s = server();
    s.rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc)).unwrap().connect().await.unwrap();
        f(GrpcInferenceServiceClient::new(ch)).await
    })
}

#[test]
fn grpc_returns_signals_typed_and_raw() {
    grpc(async |mut c| {
        let input = InferInputTensor { name: "x".into(), datatype: "FP32".into(), shape: vec![4, 2, 1], ..Default::default() };
        let mut typed = input.clone();
        typed.contents = Some(InferTensorContents { fp32_contents: X.to_vec(), ..Default::default() });
        let r = c
            .model_infer(ModelInferRequest { model_name: "sig".into(), inputs: vec![typed], ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let by: HashMap<&str, &model_infer_response::InferOutputTensor> = r.outputs.iter().map(|o| (o.name.as_str(), o)).collect();
        assert_eq!(by["signal_direction"].contents.as_ref().unwrap().int_contents, DIRECTION);
        assert!(close(&by["signal_strength"].contents.as_ref().unwrap().fp32_contents, &STRENGTH));
        assert!(close(&by["signal_confidence"].contents.as_ref().unwrap().fp32_contents, &CONFIDENCE));
        assert!(r.parameters.contains_key("queue_time_us") && r.parameters.contains_key("compute_time_us"));
        // Raw in, raw out, one requested output.
        let req = ModelInferRequest {
            model_name: "sig".into(),
            inputs: vec![input],
            raw_input_contents: vec![X.iter().flat_map(|v| v.to_le_bytes()).collect()],
            outputs: vec![InferRequestedOutputTensor { name: "signal_direction".into(), ..Default::default() }],
            ..Default::default()
        };
        let r = c.model_infer(req).await.unwrap().into_inner();
        assert_eq!(r.outputs.len(), 1);
        let d: Vec<i32> = r.raw_output_contents[0].chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(d, DIRECTION);
        let m = c.model_metadata(ModelMetadataRequest { name: "sig".into(), version: String::new() }).await.unwrap().into_inner();
        assert_eq!(
            m.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            ["probs", "signal_direction", "signal_strength", "signal_confidence", "signal_edge_bps"]
        );
    });
}

#[test]
fn stream_mode_refuses_models_without_a_card_and_bad_messages() {
    grpc(async |mut c| {
        let sid = InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::StringParam("s".into())) };
        let ev = InferInputTensor {
            name: "EVENTS".into(),
            datatype: "INT64".into(),
            shape: vec![1, 9],
            contents: Some(InferTensorContents { int64_contents: vec![1, 1, 0, 0, 100, 5, 0, 0, 1], ..Default::default() }),
            ..Default::default()
        };
        let mut bad_kind = ev.clone();
        bad_kind.contents = Some(InferTensorContents { int64_contents: vec![1, 1, 0, 0, 100, 5, 99, 0, 1], ..Default::default() });
        let mut bad_shape = ev.clone();
        bad_shape.shape = vec![1, 8];
        let snaps = |shape: Vec<i64>, v: Vec<i64>| InferInputTensor {
            name: "SNAPSHOTS".into(),
            datatype: "INT64".into(),
            shape,
            contents: Some(InferTensorContents { int64_contents: v, ..Default::default() }),
            ..Default::default()
        };
        let with = |inputs: Vec<InferInputTensor>| ModelInferRequest {
            model_name: "sig".into(),
            parameters: HashMap::from([("stream_id".into(), sid.clone())]),
            inputs,
            ..Default::default()
        };
        let mut foo = ev.clone();
        foo.name = "FOO".into();
        let mut float_snaps = snaps(vec![1, 8], vec![0; 8]);
        float_snaps.datatype = "FP32".into();
        // Refused while parsing (before any model is looked at): the tensor and field at fault.
        let parse_errors = [
            (with(vec![snaps(vec![1, 7], vec![0; 7])]), "inputs[0].shape: [1, 7]: expected [N, 4 + 4·L]"),
            (with(vec![snaps(vec![2, 8], vec![0; 8])]), "inputs[0].contents: 8 values for shape [2, 8]"),
            (with(vec![ev.clone(), snaps(vec![1, 10], vec![0; 10])]), "inputs[1].shape: [1, 10]"),
            (with(vec![ev.clone(), ev.clone()]), "inputs[1].name: \"EVENTS\" twice"),
            (with(vec![foo]), "inputs[0].name: \"FOO\": stream mode's inputs are \"EVENTS\" and \"SNAPSHOTS\""),
            (with(vec![float_snaps]), "inputs[0].datatype: \"FP32\": SNAPSHOTS is INT64"),
            (with(vec![ev.clone(), ev.clone(), ev.clone()]), "inputs: 3 tensors"),
        ];
        let n_parse = parse_errors.len();
        let (mut msgs, wants): (Vec<_>, Vec<_>) = parse_errors.into_iter().unzip();
        msgs.extend(vec![
            ModelInferRequest {
                model_name: "sig".into(),
                parameters: HashMap::from([("stream_id".into(), sid.clone())]),
                inputs: vec![ev.clone()],
                ..Default::default()
            },
            ModelInferRequest { model_name: "sig".into(), inputs: vec![ev.clone()], ..Default::default() },
            ModelInferRequest {
                model_name: "sig".into(),
                parameters: HashMap::from([("stream_id".into(), sid.clone())]),
                inputs: vec![bad_kind],
                ..Default::default()
            },
            ModelInferRequest {
                model_name: "sig".into(),
                parameters: HashMap::from([("stream_id".into(), sid.clone())]),
                inputs: vec![bad_shape],
                ..Default::default()
            },
            ModelInferRequest {
                model_name: "nope".into(),
                parameters: HashMap::from([("stream_id".into(), sid)]),
                inputs: vec![ev],
                ..Default::default()
            },
        ]);
        let mut r = c.model_stream_infer(tokio_stream::iter(msgs)).await.unwrap().into_inner();
        let mut errs = Vec::new();
        while let Some(m) = r.message().await.unwrap() {
            errs.push(m.error_message);
        }
        assert_eq!(errs.len(), 5 + n_parse, "{errs:?}");
        for (e, want) in errs.iter().zip(&wants) {
            assert!(e.starts_with(want), "{e} vs {want}");
        }
        let errs = &errs[n_parse..];
        assert!(errs[0].contains("has no card"), "{}", errs[0]);
        assert!(errs[1].starts_with("parameters.stream_id"), "{}", errs[1]);
        assert!(errs[2].starts_with("inputs[0][0].kind: 99"), "{}", errs[2]);
        assert!(errs[3].starts_with("inputs[0].shape"), "{}", errs[3]);
        assert!(errs[4].contains("not in the repository"), "{}", errs[4]);
    });
}

#[test]
fn websocket_refuses_unknown_models_and_bad_json() {
    let s = server();
    s.rt.block_on(async {
        let e = tokio_tungstenite::connect_async(format!("ws://{}/v2/models/nope/stream", s.http)).await.unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v2/models/sig/stream", s.http)).await.unwrap();
        use tokio_tungstenite::tungstenite::Message;
        for (m, want) in [
            ("{not json", "message JSON"),
            (r#"{"stream_id": "a", "events": [[1, 2, 3]]}"#, "message JSON at events[0]"),
            (r#"{"stream_id": "a", "events": [[1, 1, 0, 0, 100, 5, 0, 7, 1]]}"#, "events[0].side: 7"),
            (r#"{"stream_id": "a", "events": [[1, 1, 0, 0, 100, 5, 0, 0, 1]]}"#, "has no card"),
        ] {
            ws.send(Message::Text(m.into())).await.unwrap();
            let Message::Text(t) = ws.next().await.unwrap().unwrap() else { panic!("not text") };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert!(v["error"].as_str().unwrap().contains(want), "{m}: {v}");
        }
    });
}

//! Online models learn inside the server, in the prequential order: train a tiny `bayes_online`
//! model (two targets: a row horizon and a clock horizon) and a Hedge ensemble with `flowcast
//! run`, serve the run directory in-process, replay another dataset's events through stream
//! mode over the WebSocket, and compare every served prediction of a labelled window with the
//! offline `prequential` pass (as train/src/bayes.rs runs it) over the windows `prepare_with`
//! builds for the same dataset, starting from the exported state: max |Δp| ≤ 1e-6, and as many
//! updates as labels matured inside the data (over gRPC too, on the synthetic day). The same stream served frozen differs (so the
//! test sees the learning), and `flowcast_online_updates_total` counts the updates. On the
//! synthetic day always; on LOBSTER AMZN when ../shared/data is present.

use super::flowcast;
use flowcast_datasets::loaders::{self, Format, ImportOptions};
use flowcast_datasets::{Dataset, Event};
use flowcast_server::flowcast_contract::bayes::BayesOnline;
use flowcast_server::flowcast_contract::card::Family;
use flowcast_server::flowcast_contract::predictor::predict_set;
use flowcast_server::flowcast_contract::prepare::prepare_with;
use flowcast_server::flowcast_contract::prequential::{maturity_rows, prequential};
use flowcast_server::flowcast_contract::{ModelCard, OnlinePredictor};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const EXPERIMENT: &str = r#"
name = "online"
seed = 3
[data]
synthetic = { levels = 3, events = 12000, seed = 31 }
[columns]
kind = "features"
window = 3
train_stride = 1
feature = [
  { name = "ofi", window_events = 10 },
  { name = "ofi", window_events = 50 },
  { name = "imbalance", levels = 1 },
  { name = "spread_ticks" },
  { name = "realized_vol", window_events = 50 },
]
[[label]]
id = "k10"
kind = "smoothed"
horizon = 10
alpha = 0.00005
[[label]]
id = "c500ms"
kind = "clock"
duration = "500ms"
alpha = 0.00005
[splits]
train = 0.6
validation = 0.2
[[model]]
name = "bayes_online"
id = "bayes"
form = "full"
discount = 0.999
prior_var = 0.01
[[model]]
name = "ensemble"
id = "hedge"
targets = ["k10"]
meta = "hedge"
folds = 2
members = [
  { name = "bayes_online", id = "b_full", form = "full", prior_var = 0.01 },
  { name = "bayes_online", id = "b_diag", form = "diagonal", prior_var = 1.0 },
  { name = "majority" },
]
[training]
importance_rows = 0
"#;

/// Events per stream message.
const CHUNK: usize = 2000;

fn row(e: &Event) -> [i64; 9] {
    [e.ts_exchange, e.ts_local, e.seq as i64, e.order_id as i64, e.price, e.size, e.kind as i64, e.side as i64, e.flags as i64]
}

/// What one stream answered: per window its event index and probabilities; the update counts.
#[derive(Default)]
struct Served {
    index: Vec<i64>,
    probs: Vec<f32>,
    updates: u64,
    stream_updates: u64,
    online: bool,
}

async fn via_ws(addr: SocketAddr, model: &str, ds: &Dataset, stream_id: &str, online: Option<bool>) -> Served {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v2/models/{model}/stream")).await.unwrap();
    let mut got = Served::default();
    for (n, chunk) in ds.events.chunks(CHUNK).enumerate() {
        let events: Vec<[i64; 9]> = chunk.iter().map(row).collect();
        let mut m = json!({"stream_id": stream_id, "events": events});
        if n == 0 {
            m["source_format"] = json!(ds.meta.source_format);
            m["venue"] = json!(ds.meta.instrument.venue);
            m["starts_synced"] = json!(ds.meta.starts_synced);
            if let Some(o) = online {
                m["online"] = json!(o);
            }
        }
        ws.send(tokio_tungstenite::tungstenite::Message::Text(m.to_string().into())).await.unwrap();
        let reply = loop {
            match ws.next().await.expect("a reply").unwrap() {
                tokio_tungstenite::tungstenite::Message::Text(t) => break t,
                _ => continue,
            }
        };
        let v: Value = serde_json::from_str(reply.as_str()).unwrap();
        assert!(v["error"].is_null(), "{model}: {v}");
        for p in v["predictions"].as_array().unwrap() {
            got.index.push(p["event_index"].as_i64().unwrap());
            got.probs.extend(p["probs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32));
        }
        got.updates += v["updates"].as_u64().unwrap();
        got.stream_updates = v["stream_updates"].as_u64().unwrap();
        got.online = v["online"].as_bool().unwrap();
    }
    let _ = ws.close(None).await;
    got
}

/// The same replay over gRPC `ModelStreamInfer` (typed INT64 contents; `online` and the update
/// counts as parameters).
async fn via_grpc(addr: SocketAddr, model: &str, ds: &Dataset, stream_id: &str) -> Served {
    use flowcast_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use flowcast_server::proto::model_infer_request::InferInputTensor;
    use flowcast_server::proto::*;
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut c = GrpcInferenceServiceClient::new(ch).max_decoding_message_size(1 << 30);
    let s = |v: &str| InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::StringParam(v.into())) };
    let b = |v: bool| InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::BoolParam(v)) };
    let reqs: Vec<ModelInferRequest> = ds
        .events
        .chunks(CHUNK)
        .enumerate()
        .map(|(n, chunk)| {
            let mut p = HashMap::from([("stream_id".to_string(), s(stream_id))]);
            if n == 0 {
                p.insert("source_format".into(), s(&ds.meta.source_format));
                p.insert("venue".into(), s(&ds.meta.instrument.venue));
                p.insert("starts_synced".into(), b(ds.meta.starts_synced));
                p.insert("online".into(), b(true));
            }
            let v: Vec<i64> = chunk.iter().flat_map(row).collect();
            let input = InferInputTensor {
                name: "EVENTS".into(),
                datatype: "INT64".into(),
                shape: vec![chunk.len() as i64, 9],
                contents: Some(InferTensorContents { int64_contents: v, ..Default::default() }),
                ..Default::default()
            };
            ModelInferRequest { model_name: model.into(), id: format!("m{n}"), parameters: p, inputs: vec![input], ..Default::default() }
        })
        .collect();
    let mut resp = c.model_stream_infer(tokio_stream::iter(reqs)).await.unwrap().into_inner();
    let mut got = Served::default();
    while let Some(m) = resp.message().await.unwrap() {
        assert!(m.error_message.is_empty(), "{model}: {}", m.error_message);
        let r = m.infer_response.unwrap();
        for o in &r.outputs {
            let c = o.contents.clone().unwrap_or_default();
            match o.name.as_str() {
                "event_index" => got.index.extend(c.int64_contents),
                "probs" => got.probs.extend(c.fp32_contents),
                _ => {}
            }
        }
        let int = |k: &str| match r.parameters[k].parameter_choice {
            Some(infer_parameter::ParameterChoice::Int64Param(v)) => v as u64,
            ref other => panic!("{k}: {other:?}"),
        };
        got.updates += int("updates");
        got.stream_updates = int("stream_updates");
        got.online = r.parameters["online"].parameter_choice == Some(infer_parameter::ParameterChoice::BoolParam(true));
    }
    got
}

/// The offline reference: `prequential` over `prepare_with`'s windows from the exported state,
/// keyed by the event index of each window's end; the labels maturing inside the data; and
/// the frozen model's outputs on the same windows.
struct Offline {
    probs: HashMap<i64, Vec<f32>>,
    frozen: HashMap<i64, Vec<f32>>,
    matured: u64,
    windows: usize,
}

fn online_model(dir: &Path, card: &ModelCard) -> Box<dyn OnlinePredictor> {
    match card.family {
        Family::BayesOnline => Box::new(BayesOnline::load(dir, card).unwrap()),
        Family::Ensemble => Box::new(flowcast_server::flowcast_serve::load_ensemble(dir, card).unwrap()),
        f => panic!("{f:?} is not online"),
    }
}

fn offline(dir: &Path, card: &ModelCard, ds: &Dataset) -> Offline {
    let pre = &card.preprocessing;
    let pw = prepare_with(ds, &pre.inputs, std::slice::from_ref(&pre.target)).unwrap();
    let set = &pw.targets[0].test;
    let mature = maturity_rows(&pre.target, &pw.rows.ts, &set.ends).unwrap();
    let mut m = online_model(dir, card);
    let frozen = predict_set(m.as_ref(), set, &pw.window_ofi, 256).unwrap();
    let pq = prequential(m.as_mut(), set, &mature).unwrap();
    let k = card.classes.len();
    let key = |j: usize| pw.rows.event_index[set.ends[j] as usize] as i64;
    let by =
        |o: &flowcast_server::flowcast_contract::Outputs| (0..set.len()).map(|j| (key(j), o.probs[j * k..(j + 1) * k].to_vec())).collect();
    let n = pw.rows.len();
    Offline { probs: by(&pq.outputs), frozen: by(&frozen), matured: mature.iter().filter(|&&r| r < n).count() as u64, windows: set.len() }
}

/// Max |Δp| between the served labelled windows and `want` (every labelled window must be served).
fn max_diff(what: &str, got: &Served, want: &HashMap<i64, Vec<f32>>, k: usize) -> f32 {
    let at: HashMap<i64, usize> = got.index.iter().enumerate().map(|(i, &e)| (e, i)).collect();
    let mut max = 0f32;
    for (ev, p) in want {
        let i = *at.get(ev).unwrap_or_else(|| panic!("{what}: labelled window at event {ev} not served"));
        for (a, b) in got.probs[i * k..(i + 1) * k].iter().zip(p) {
            max = max.max((a - b).abs());
        }
    }
    max
}

/// The exported model directories of a run, by directory name.
fn models(run: &Path) -> HashMap<String, (PathBuf, ModelCard)> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(run).unwrap() {
        let d = e.unwrap().path();
        if d.join("model.json").is_file() {
            let card = ModelCard::load(&d).unwrap();
            out.insert(d.file_name().unwrap().to_string_lossy().into_owned(), (d, card));
        }
    }
    out
}

#[test]
fn online_models_in_stream_mode_serve_the_prequential_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("online.toml");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let runs = tmp.path().join("runs");
    let (code, out, err) = flowcast(&["run", exp.to_str().unwrap(), "--json", "--quiet", "--runs-dir", runs.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let run: Value = serde_json::from_str(out.trim()).unwrap();
    let run_dir = PathBuf::from(run["run_dir"].as_str().unwrap());
    let models = models(&run_dir);
    let online: Vec<&String> = {
        let mut v: Vec<&String> = models.keys().collect();
        v.sort();
        v
    };
    assert!(
        models.values().filter(|(_, c)| c.family == Family::BayesOnline).count() >= 2
            && models.values().any(|(_, c)| c.family == Family::Ensemble),
        "models in the run: {online:?}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let cfg =
        flowcast_server::Config { models: run_dir.clone(), http: Some(lo), grpc: Some(lo), max_body_bytes: 64 << 20, ..Default::default() };
    let running = rt.block_on(flowcast_server::start(cfg, flowcast_server::candle_loader())).unwrap();
    let (http, grpc) = (running.http.unwrap(), running.grpc.unwrap());
    let app = running.app.clone();
    rt.spawn(running.wait());

    let mut cases: Vec<(String, Dataset)> = vec![("synthetic".into(), flowcast_datasets::synth::synth_dataset(3, 9000, 77).unwrap())];
    let shared = std::env::var_os("FLOWCAST_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let l = shared.join("lobster");
    let msg = l.join("AMZN_2012-06-21_34200000_57600000_message_1.csv");
    if msg.is_file() {
        let ob = l.join("AMZN_2012-06-21_34200000_57600000_orderbook_1.csv");
        let mut imp = loaders::import(Format::Lobster, &[msg, ob], &ImportOptions::default()).unwrap();
        let mut ds = imp.datasets.remove(0);
        ds.events.truncate(60_000); // the first part of the day keeps the debug-build test short
        cases.push(("LOBSTER AMZN".into(), ds));
    } else {
        eprintln!("SKIP: online stream mode on LOBSTER AMZN: {} not found (set FLOWCAST_SHARED_DATA)", msg.display());
    }

    let mut figures = Vec::new();
    for (ci, (label, ds)) in cases.iter().enumerate() {
        for name in &online {
            let (dir, card) = &models[*name];
            if card.family == Family::Ensemble && ci > 0 {
                continue; // the ensemble on the synthetic day only (time)
            }
            let k = card.classes.len();
            let what = format!("{label}, {name} ({})", card.preprocessing.target.id);
            let r = offline(dir, card, ds);
            let before = app.metrics.online_updates.with_label_values(&[name.as_str()]).get();
            let got = rt.block_on(via_ws(http, name, ds, &format!("s{ci}{name}"), None));
            assert!(got.online, "{what}: the stream does not learn online");
            let d = max_diff(&what, &got, &r.probs, k);
            assert!(d <= 1e-6, "{what}: served vs offline prequential max |Δp| = {d:e}");
            let mut grpc_updates = 0;
            if ci == 0 {
                let g = rt.block_on(via_grpc(grpc, name, ds, &format!("g{name}")));
                assert!(g.online && g.stream_updates == r.matured && g.updates == g.stream_updates, "{what} over gRPC");
                let dg = max_diff(&format!("{what} over gRPC"), &g, &r.probs, k);
                assert!(dg <= 1e-6, "{what}: gRPC vs offline prequential max |Δp| = {dg:e}");
                figures.push((format!("{what} over gRPC"), dg));
                grpc_updates = g.updates;
            }
            assert_eq!(got.stream_updates, r.matured, "{what}: updates vs labels that matured inside the data");
            assert_eq!(got.updates, got.stream_updates, "{what}: per-message updates add up");
            let after = app.metrics.online_updates.with_label_values(&[name.as_str()]).get();
            assert_eq!(after - before, got.updates + grpc_updates, "{what}: flowcast_online_updates_total (both streams)");
            // Served frozen (per-stream switch): the exported state's outputs, not the learned ones.
            let frozen = rt.block_on(via_ws(http, name, ds, &format!("f{ci}{name}"), Some(false)));
            assert!(!frozen.online && frozen.stream_updates == 0);
            let df = max_diff(&what, &frozen, &r.frozen, k);
            assert!(df <= 1e-6, "{what}: frozen stream vs predict_set max |Δp| = {df:e}");
            let learned = max_diff(&what, &got, &r.frozen, k);
            assert!(learned > 1e-4, "{what}: learning changed no prediction (max |Δp| vs frozen {learned:e})");
            eprintln!(
                "{what}: {} windows served, {} labelled, {} updates, max |Δp| vs prequential {d:e}, vs frozen {learned:e}",
                got.index.len(),
                r.windows,
                got.stream_updates
            );
            figures.push((what, d));
        }
    }
    eprintln!("online == prequential: {figures:?}");

    // A reset mid-way: the rows and pending labels go, the learned state (and its count) stays.
    let ds = &cases[0].1;
    let name = online.iter().find(|n| models[n.as_str()].1.family == Family::BayesOnline).unwrap();
    let reset = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/v2/models/{name}/stream")).await.unwrap();
        let mut replies = Vec::new();
        for (n, chunk) in ds.events.chunks(ds.events.len() / 2 + 1).enumerate() {
            let events: Vec<[i64; 9]> = chunk.iter().map(row).collect();
            let m = json!({"stream_id": "r", "events": events, "reset": n == 1, "source_format": ds.meta.source_format,
                           "venue": ds.meta.instrument.venue, "starts_synced": ds.meta.starts_synced});
            ws.send(tokio_tungstenite::tungstenite::Message::Text(m.to_string().into())).await.unwrap();
            if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = ws.next().await {
                replies.push(serde_json::from_str::<Value>(t.as_str()).unwrap());
            }
        }
        replies
    });
    assert_eq!(reset.len(), 2, "{reset:?}");
    assert!(reset[1]["updates"].as_u64().unwrap() > 0, "{}", reset[1]);
    assert_eq!(
        reset[1]["stream_updates"].as_u64().unwrap(),
        reset[0]["stream_updates"].as_u64().unwrap() + reset[1]["updates"].as_u64().unwrap(),
        "the learned state (and its count) survives a reset"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(app.streams.open(), 0);

    // Online state counts against the stream limits: a server allowing 1 KiB per stream refuses
    // an online stream naming the limit, and serves the same model frozen when asked.
    let limits = flowcast_server::stream::StreamLimits { online_max_bytes: 1024, ..Default::default() };
    let cfg = flowcast_server::Config { models: run_dir.clone(), http: Some(lo), grpc: None, streams: limits, ..Default::default() };
    let small = rt.block_on(flowcast_server::start(cfg, flowcast_server::candle_loader())).unwrap();
    let http2 = small.http.unwrap();
    rt.spawn(small.wait());
    let answers = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http2}/v2/models/{name}/stream")).await.unwrap();
        let mut out = Vec::new();
        for online in [None, Some(false)] {
            let events: Vec<[i64; 9]> = ds.events[..100].iter().map(row).collect();
            let mut m = json!({"stream_id": format!("{online:?}"), "events": events});
            if let Some(o) = online {
                m["online"] = json!(o);
            }
            ws.send(tokio_tungstenite::tungstenite::Message::Text(m.to_string().into())).await.unwrap();
            if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = ws.next().await {
                out.push(serde_json::from_str::<Value>(t.as_str()).unwrap());
            }
        }
        out
    });
    let e = answers[0]["error"].as_str().unwrap_or_default();
    assert!(e.contains("online_max_bytes") && e.contains("1024"), "{}", answers[0]);
    assert!(answers[1]["error"].is_null() && answers[1]["online"] == false, "{}", answers[1]);
}

//! Serve == train, end to end: train a tiny model (book levels + engineered features) with
//! `flowcast run`, serve it in-process, replay a dataset's events through stream mode over the
//! wire — gRPC `ModelStreamInfer` and the WebSocket — and compare every prediction with the
//! candle predictor on the windows `prepare_with` builds for the same dataset and model (what
//! `flowcast` evaluates): the stream answers exactly the complete windows, every labelled window
//! among them, with max |Δp| ≤ 1e-6 and the card's signal. On synthetic data always; on the
//! LOBSTER AMZN sample and a Binance recording when ../shared/data is present (skipped with a
//! message otherwise). Also: an out-of-order event is refused naming its index and the stream
//! goes on; gaps are reported.

use super::flowcast;
use flowcast_datasets::loaders::{self, Format, ImportOptions};
use flowcast_datasets::{Dataset, Event};
use flowcast_server::flowcast_contract::predictor::predict_set;
use flowcast_server::flowcast_contract::prepare::{prepare_with, PreparedData};
use flowcast_server::flowcast_contract::signal::SignalRule;
use flowcast_server::flowcast_contract::{ModelCard, Predictor};
use flowcast_server::flowcast_serve::CandlePredictor;
use flowcast_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use flowcast_server::proto::model_infer_request::InferInputTensor;
use flowcast_server::proto::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const EXPERIMENT: &str = r#"
name = "stream"
seed = 5
[data]
synthetic = { levels = 3, events = 6000, seed = 23 }
[columns]
kind = "both"
levels = 1
window = 8
train_stride = 4
[[columns.feature]]
name = "ofi"
window_events = 20
[[columns.feature]]
name = "imbalance"
levels = 1
[[columns.feature]]
name = "spread_ticks"
[[columns.feature]]
name = "trade_imbalance"
classification = "aggressor"
window = "2s"
[[columns.feature]]
name = "realized_vol"
window_events = 50
[[columns.feature]]
name = "time_of_day"
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

/// Events per stream message.
const CHUNK: usize = 4096;

fn row(e: &Event) -> [i64; 9] {
    [e.ts_exchange, e.ts_local, e.seq as i64, e.order_id as i64, e.price, e.size, e.kind as i64, e.side as i64, e.flags as i64]
}

/// What came back for one stream: per window its event index and probabilities, plus signal
/// directions, gaps and errors.
#[derive(Default)]
struct Got {
    index: Vec<i64>,
    probs: Vec<f32>,
    direction: Vec<i32>,
    strength: Vec<f32>,
    gaps: Vec<i64>,
    errors: Vec<String>,
}

/// The reference: the candle predictor on every complete window of `prepare_with`'s matrix
/// (rows of one segment, all finite), keyed by the event index of the window's last row, and
/// the labelled windows `prepare_with` scores.
struct Reference {
    pw: PreparedData,
    /// (event index, probabilities) of every complete window.
    complete: HashMap<i64, Vec<f32>>,
}

fn reference(ds: &Dataset, p: &CandlePredictor, card: &ModelCard) -> Reference {
    let pre = &card.preprocessing;
    let pw = prepare_with(ds, &pre.inputs, std::slice::from_ref(&pre.target)).unwrap();
    let (t, f, k) = (pre.inputs.window, pw.matrix.cols(), card.classes.len());
    let valid: Vec<bool> = pw.matrix.values.chunks(f).map(|r| r.iter().all(|v| v.is_finite())).collect();
    let seg = &pw.rows.segment;
    let ends: Vec<usize> = (t - 1..valid.len()).filter(|&e| valid[e + 1 - t..=e].iter().all(|&v| v) && seg[e + 1 - t] == seg[e]).collect();
    let mut complete = HashMap::with_capacity(ends.len());
    let mut x = Vec::new();
    for c in ends.chunks(512) {
        x.clear();
        for &e in c {
            x.extend_from_slice(&pw.matrix.values[(e + 1 - t) * f..(e + 1) * f]);
        }
        let mut o = flowcast_server::flowcast_contract::Outputs::new(k);
        p.predict(&flowcast_server::flowcast_contract::Batch::new(&x, c.len(), t, f).unwrap(), &mut o).unwrap();
        for (j, &e) in c.iter().enumerate() {
            complete.insert(pw.rows.event_index[e] as i64, o.probs[j * k..(j + 1) * k].to_vec());
        }
    }
    Reference { pw, complete }
}

/// Compares a stream's answers with the reference: same windows, |Δp| ≤ 1e-6, every labelled
/// window of `prepare_with` (scored as `flowcast` scores it, `predict_set`) among them, and
/// the card's signal. Returns max |Δp|.
fn compare(label: &str, got: &Got, r: &Reference, p: &CandlePredictor, card: &ModelCard) -> f32 {
    let k = card.classes.len();
    assert!(got.errors.is_empty(), "{label}: {:?}", got.errors);
    assert_eq!(got.index.len(), r.complete.len(), "{label}: windows answered vs complete windows");
    let rule = SignalRule::of_card(card);
    let mut max = 0f32;
    let mut by_index = HashMap::with_capacity(got.index.len());
    for (i, &ev) in got.index.iter().enumerate() {
        let gp = &got.probs[i * k..(i + 1) * k];
        let want = r.complete.get(&ev).unwrap_or_else(|| panic!("{label}: window at event {ev} is not a complete window"));
        for (a, b) in gp.iter().zip(want) {
            max = max.max((a - b).abs());
        }
        let s = rule.decide(gp, None);
        assert_eq!(got.direction[i], s.direction.level() as i32, "{label}: signal at event {ev}");
        assert_eq!(got.strength[i], s.strength, "{label}: strength at event {ev}");
        by_index.insert(ev, i);
    }
    // The labelled windows, scored the way evaluation scores them.
    let test = &r.pw.targets[0].test;
    let o = predict_set(p, test, &r.pw.window_ofi, 256).unwrap();
    for (j, &e) in test.ends.iter().enumerate() {
        let ev = r.pw.rows.event_index[e as usize] as i64;
        let i = *by_index.get(&ev).unwrap_or_else(|| panic!("{label}: labelled window at row {e} (event {ev}) not answered"));
        for (a, b) in got.probs[i * k..(i + 1) * k].iter().zip(&o.probs[j * k..(j + 1) * k]) {
            max = max.max((a - b).abs());
        }
    }
    assert!(max <= 1e-6, "{label}: max |Δp| = {max:e}");
    eprintln!(
        "{label}: {} events, {} windows answered ({} labelled), {} gaps, max |Δp| = {max:e}",
        r.pw.info.events,
        got.index.len(),
        test.len(),
        got.gaps.len()
    );
    max
}

fn f32s(o: &model_infer_response::InferOutputTensor) -> &[f32] {
    &o.contents.as_ref().unwrap().fp32_contents
}

/// The stream options for `ds` (its venue, source format and book start).
fn open_params(ds: &Dataset) -> HashMap<String, InferParameter> {
    let s = |v: &str| InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::StringParam(v.into())) };
    HashMap::from([
        ("source_format".to_string(), s(&ds.meta.source_format)),
        ("venue".to_string(), s(&ds.meta.instrument.venue)),
        (
            "starts_synced".to_string(),
            InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::BoolParam(ds.meta.starts_synced)) },
        ),
    ])
}

/// Replays `ds` over gRPC `ModelStreamInfer` (typed INT64 contents; raw bytes every other message).
async fn via_grpc(addr: SocketAddr, model: &str, ds: &Dataset, stream_id: &str, out_of_order_at: Option<usize>) -> Got {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut c = GrpcInferenceServiceClient::new(ch).max_decoding_message_size(1 << 30);
    let mut reqs = Vec::new();
    let sid = InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::StringParam(stream_id.into())) };
    let msg = |events: &[Event], n: usize| {
        let mut p = if n == 0 { open_params(ds) } else { HashMap::new() };
        p.insert("stream_id".into(), sid.clone());
        let v: Vec<i64> = events.iter().flat_map(row).collect();
        let mut input =
            InferInputTensor { name: "EVENTS".into(), datatype: "INT64".into(), shape: vec![events.len() as i64, 9], ..Default::default() };
        let mut r = ModelInferRequest { model_name: model.into(), id: format!("m{n}"), parameters: p, ..Default::default() };
        if n % 2 == 1 {
            r.raw_input_contents = vec![v.iter().flat_map(|x| x.to_le_bytes()).collect()];
        } else {
            input.contents = Some(InferTensorContents { int64_contents: v, ..Default::default() });
        }
        r.inputs = vec![input];
        r
    };
    for (n, chunk) in ds.events.chunks(CHUNK).enumerate() {
        reqs.push(msg(chunk, n));
        if n == 0 {
            if let Some(at) = out_of_order_at {
                let mut e = ds.events[at];
                e.ts_exchange = chunk.last().unwrap().ts_exchange - 1_000_000_000; // synthetic: no ts_local
                reqs.push(msg(&[e], n + 1000));
            }
        }
    }
    let n_req = reqs.len();
    let mut resp = c.model_stream_infer(tokio_stream::iter(reqs)).await.unwrap().into_inner();
    let mut got = Got::default();
    let mut seen = 0;
    while let Some(m) = resp.message().await.unwrap() {
        seen += 1;
        if !m.error_message.is_empty() {
            got.errors.push(m.error_message.clone());
        }
        let Some(r) = m.infer_response else { continue };
        let raw = !r.raw_output_contents.is_empty();
        for (i, o) in r.outputs.iter().enumerate() {
            let (i64s, f32v, i32v): (Vec<i64>, Vec<f32>, Vec<i32>) = if raw {
                let b = &r.raw_output_contents[i];
                match o.datatype.as_str() {
                    "INT64" => (b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(), vec![], vec![]),
                    "INT32" => (vec![], vec![], b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect()),
                    _ => (vec![], b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), vec![]),
                }
            } else {
                let c = o.contents.clone().unwrap_or_default();
                (c.int64_contents, if o.datatype == "FP32" { f32s(o).to_vec() } else { vec![] }, c.int_contents)
            };
            match o.name.as_str() {
                "event_index" => got.index.extend(i64s),
                "probs" => got.probs.extend(f32v),
                "signal_direction" => got.direction.extend(i32v),
                "signal_strength" => got.strength.extend(f32v),
                "gap_event_index" => got.gaps.extend(i64s),
                _ => {}
            }
        }
        for k in ["queue_time_us", "compute_time_us", "stream_events"] {
            assert!(r.parameters.contains_key(k), "{k} missing from {:?}", r.parameters);
        }
    }
    assert_eq!(seen, n_req, "one response per request");
    got
}

/// Replays `ds` over the WebSocket endpoint (JSON messages).
async fn via_ws(addr: SocketAddr, model: &str, ds: &Dataset, stream_id: &str) -> Got {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v2/models/{model}/stream")).await.unwrap();
    let mut got = Got::default();
    for (n, chunk) in ds.events.chunks(CHUNK).enumerate() {
        let events: Vec<[i64; 9]> = chunk.iter().map(row).collect();
        let mut m = json!({"stream_id": stream_id, "events": events});
        if n == 0 {
            m["source_format"] = json!(ds.meta.source_format);
            m["venue"] = json!(ds.meta.instrument.venue);
            m["starts_synced"] = json!(ds.meta.starts_synced);
        }
        ws.send(tokio_tungstenite::tungstenite::Message::Text(m.to_string().into())).await.unwrap();
        let reply = loop {
            match ws.next().await.expect("a reply").unwrap() {
                tokio_tungstenite::tungstenite::Message::Text(t) => break t,
                _ => continue,
            }
        };
        let v: Value = serde_json::from_str(reply.as_str()).unwrap();
        if let Some(e) = v["error"].as_str() {
            got.errors.push(e.to_string());
            continue;
        }
        assert_eq!(v["accepted"], chunk.len(), "{v}");
        assert!(v["queue_time_us"].is_u64() && v["compute_time_us"].is_u64());
        for p in v["predictions"].as_array().unwrap() {
            got.index.push(p["event_index"].as_i64().unwrap());
            got.probs.extend(p["probs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32));
            got.direction.push(p["signal"]["level"].as_i64().unwrap() as i32);
            got.strength.push(p["signal"]["strength"].as_f64().unwrap() as f32);
            assert!(p["signal"]["direction"].is_string());
        }
        got.gaps.extend(v["gaps"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()));
    }
    let _ = ws.close(None).await;
    got
}

fn shared_data() -> Option<PathBuf> {
    let p = std::env::var_os("FLOWCAST_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIP: stream mode on real data: {} not found (set FLOWCAST_SHARED_DATA)", p.display());
        None
    }
}

/// Trains the tiny experiment under `tmp`; returns its LSTM's model directory.
fn train_tiny(tmp: &Path) -> PathBuf {
    let exp = tmp.join("stream.toml");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let runs = tmp.join("runs");
    let (code, out, err) = flowcast(&["run", exp.to_str().unwrap(), "--json", "--quiet", "--runs-dir", runs.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let run: Value = serde_json::from_str(out.trim()).unwrap();
    Path::new(run["run_dir"].as_str().unwrap()).join("lstm")
}

#[test]
fn stream_mode_over_grpc_and_websocket_equals_prepare_with() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = train_tiny(tmp.path());
    let (p, card) = CandlePredictor::load(&model_dir).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let cfg = flowcast_server::Config {
        models: model_dir.clone(),
        http: Some(lo),
        grpc: Some(lo),
        max_body_bytes: 64 << 20,
        ..Default::default()
    };
    let running = rt.block_on(flowcast_server::start(cfg, flowcast_server::candle_loader())).unwrap();
    let (http, grpc) = (running.http.unwrap(), running.grpc.unwrap());
    let app = running.app.clone();
    rt.spawn(running.wait());

    // Another synthetic day than the training one.
    let mut cases: Vec<(String, Dataset)> = vec![("synthetic".into(), flowcast_datasets::synth::synth_dataset(3, 8000, 99).unwrap())];
    if let Some(d) = shared_data() {
        let l = d.join("lobster");
        let inputs =
            vec![l.join("AMZN_2012-06-21_34200000_57600000_message_1.csv"), l.join("AMZN_2012-06-21_34200000_57600000_orderbook_1.csv")];
        let mut imp = loaders::import(Format::Lobster, &inputs, &ImportOptions::default()).unwrap();
        cases.push(("LOBSTER AMZN".into(), imp.datasets.remove(0)));
        let b = d.join("binance/spot-ethusdt_20240808.gz");
        let mut imp = loaders::import(Format::Binance, &[b], &ImportOptions::default()).unwrap();
        cases.push(("Binance spot ETHUSDT".into(), imp.datasets.remove(0)));
    }
    let mut figures = Vec::new();
    for (i, (label, ds)) in cases.iter().enumerate() {
        let r = reference(ds, &p, &card);
        let g = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(600), via_grpc(grpc, "lstm", ds, &format!("g{i}"), None)).await })
            .unwrap();
        let dg = compare(&format!("{label} over gRPC"), &g, &r, &p, &card);
        let w = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(600), via_ws(http, "lstm", ds, &format!("w{i}"))).await })
            .unwrap();
        let dw = compare(&format!("{label} over WebSocket"), &w, &r, &p, &card);
        figures.push((label.clone(), r.complete.len(), dg, dw));
    }
    eprintln!("serve == train: {figures:?}");

    // An out-of-order event: refused with its index, the stream keeps its state and goes on.
    let ds = &cases[0].1;
    let g = rt.block_on(via_grpc(grpc, "lstm", ds, "ooo", Some(10)));
    assert_eq!(g.errors.len(), 1, "{:?}", g.errors);
    let idx = CHUNK;
    assert!(g.errors[0].contains(&format!("event {idx}:")) && g.errors[0].contains("before the previous event"), "{}", g.errors[0]);
    let r = reference(ds, &p, &card);
    let ok = Got { errors: vec![], ..g };
    compare("synthetic with a refused out-of-order event", &ok, &r, &p, &card);
    // Every stream was dropped with its connection.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(app.streams.open(), 0);
}

/// Collects the answers published on `sub` until `want` windows came back (or `wait` passes).
async fn from_bus(sub: &mut flowcast_live::bus::async_nats::Subscriber, want: usize, wait: Duration) -> (Got, usize) {
    let mut got = Got::default();
    let mut messages = 0;
    let deadline = tokio::time::Instant::now() + wait;
    while got.index.len() < want {
        let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await else { break };
        messages += 1;
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        if let Some(e) = v["error"].as_str() {
            got.errors.push(e.to_string());
            continue;
        }
        for p in v["predictions"].as_array().unwrap() {
            got.index.push(p["event_index"].as_i64().unwrap());
            got.probs.extend(p["probs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32));
            got.direction.push(p["signal"]["level"].as_i64().unwrap() as i32);
            got.strength.push(p["signal"]["strength"].as_f64().unwrap() as f32);
        }
        got.gaps.extend(v["gaps"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()));
    }
    (got, messages)
}

/// The server subscribed to a JetStream stream of canonical events (as `flowcast collect --nats`
/// publishes them) answers every complete window exactly as stream mode and `prepare_with` do,
/// on the predictions subject; a restarted server resumes at the first message it had not
/// answered (durable consumer), neither skipping nor repeating one.
#[test]
fn bus_subscription_answers_like_stream_mode_and_resumes() {
    let Some(nats) = flowcast_live::bus::LocalNats::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = train_tiny(tmp.path());
    let (p, card) = CandlePredictor::load(&model_dir).unwrap();
    let ds = flowcast_datasets::synth::synth_dataset(3, 8000, 99).unwrap();
    let r = reference(&ds, &p, &card);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_rt = rt.enter(); // the NATS client and subscriber are dropped inside the runtime
    let bus = rt.block_on(flowcast_live::bus::Bus::connect(&nats.url)).unwrap();
    let stream = rt.block_on(bus.ensure_stream(&ds.meta.instrument)).unwrap();
    let subject = flowcast_live::bus::subject(&ds.meta.instrument);
    let sub_cfg = flowcast_server::bus::Subscription {
        nats: nats.url.clone(),
        stream: stream.clone(),
        model: "lstm".into(),
        version: None,
        durable: None,
        publish: None,
        batch: Some(16),
        source_format: Some(ds.meta.source_format.clone()),
        starts_synced: Some(ds.meta.starts_synced),
    };
    let mut answers = rt.block_on(bus.client.subscribe(sub_cfg.subject())).unwrap();
    let start = |rt: &tokio::runtime::Runtime| {
        let cfg = flowcast_server::Config {
            models: model_dir.clone(),
            http: None,
            grpc: None,
            subscriptions: vec![sub_cfg.clone()],
            ..Default::default()
        };
        rt.block_on(flowcast_server::start(cfg, flowcast_server::candle_loader())).unwrap()
    };
    // Messages of 500 events (a message is one source message on a live feed; any cut works).
    let chunks: Vec<&[Event]> = ds.events.chunks(500).collect();
    for c in &chunks {
        rt.block_on(bus.publish(&subject, c, None)).unwrap();
    }
    let running = start(&rt);
    let app = running.app.clone();
    let (got, _) = rt.block_on(from_bus(&mut answers, r.complete.len(), Duration::from_secs(300)));
    compare("synthetic over the bus", &got, &r, &p, &card);
    let count = |app: &flowcast_server::App| app.metrics.bus_messages.with_label_values(&["lstm", &stream]).get();
    assert_eq!(count(&app), chunks.len() as u64, "every message answered once");

    // Stop; publish more while down; a new server answers exactly those (its stream state starts
    // afresh there: the windows it answers are the ones complete after the restart).
    running.shutdown();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), running.wait()).await }).expect("stops").unwrap();
    let more = flowcast_datasets::synth::synth_dataset(3, 3000, 7).unwrap();
    let t_shift = ds.events.last().unwrap().ts_exchange + 1_000_000_000 - more.events[0].ts_exchange;
    let shifted: Vec<Event> =
        more.events.iter().map(|e| Event { ts_exchange: e.ts_exchange + t_shift, ts_local: e.ts_local + t_shift, ..*e }).collect();
    let later: Vec<&[Event]> = shifted.chunks(500).collect();
    for c in &later {
        rt.block_on(bus.publish(&subject, c, None)).unwrap();
    }
    let running = start(&rt);
    let app = running.app.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while count(&app) < later.len() as u64 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500)); // nothing beyond: no message repeated
    assert_eq!(count(&app), later.len() as u64, "the restarted server answers only the messages it had not acknowledged");
    let mut more_ds = more.clone();
    more_ds.events = shifted;
    let want = reference(&more_ds, &p, &card).complete.len();
    let (got, _) = rt.block_on(from_bus(&mut answers, want, Duration::from_secs(60)));
    assert_eq!(got.index.len(), want, "windows answered after the restart");
    running.shutdown();
}

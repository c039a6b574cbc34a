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
use flowcast_datasets::{Dataset, Event, NO_PRICE, NO_TS};
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
        collect_grpc(m, &mut got);
    }
    assert_eq!(seen, n_req, "one response per request");
    got
}

/// Adds one `ModelStreamInfer` response to `got`.
fn collect_grpc(m: ModelStreamInferResponse, got: &mut Got) {
    if !m.error_message.is_empty() {
        got.errors.push(m.error_message.clone());
    }
    let Some(r) = m.infer_response else { return };
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

/// A client holding LOBSTER files: per message row its L3 event (an `EVENTS` row) and the
/// orderbook row after it as a `SNAPSHOTS` row `[ts, NO_TS, seq, 1, ask_price_1, ask_size_1,
/// bid_price_1, bid_size_1, …]` in ticks and lots (an empty level: price 0, size 0).
struct SnapshotFeed {
    events: Vec<[i64; 9]>,
    snapshots: Vec<Vec<i64>>,
}

fn lobster_feed(inputs: &[PathBuf]) -> SnapshotFeed {
    let mut r = loaders::lobster::read_pair(inputs, &ImportOptions::default()).unwrap();
    let mut feed = SnapshotFeed { events: Vec::new(), snapshots: Vec::new() };
    while let Some(x) = r.next_row().unwrap() {
        let e = loaders::lobster::message_event(x.msg);
        feed.events.push(row(&e));
        let mut s = vec![e.ts_exchange, NO_TS, e.seq as i64, 1];
        let a = x.after;
        for l in 0..a.levels() {
            let lv = |p: i64, z: i64| if p == NO_PRICE { [0, 0] } else { [p, z] };
            s.extend(lv(a.ask_px[l], a.ask_sz[l]));
            s.extend(lv(a.bid_px[l], a.bid_sz[l]));
        }
        feed.snapshots.push(s);
    }
    feed
}

/// One WebSocket message and its reply.
async fn ws_call(ws: &mut WsConn, m: &Value) -> Value {
    ws.send(tokio_tungstenite::tungstenite::Message::Text(m.to_string().into())).await.unwrap();
    loop {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = ws.next().await.expect("a reply").unwrap() {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

type WsConn = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(addr: SocketAddr, model: &str) -> WsConn {
    tokio_tungstenite::connect_async(format!("ws://{addr}/v2/models/{model}/stream")).await.unwrap().0
}

/// Adds a WebSocket reply's predictions and gaps to `got`.
fn collect_ws(v: &Value, got: &mut Got) {
    for p in v["predictions"].as_array().unwrap() {
        got.index.push(p["event_index"].as_i64().unwrap());
        got.probs.extend(p["probs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32));
        got.direction.push(p["signal"]["level"].as_i64().unwrap() as i32);
        got.strength.push(p["signal"]["strength"].as_f64().unwrap() as f32);
    }
    got.gaps.extend(v["gaps"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()));
}

/// Replays a snapshot feed over the WebSocket, `CHUNK` message rows per message. `bad_at`: first
/// send a copy of the chunk holding that row with the row crossed, check that exactly the rows
/// before it were applied, then go on from the bad row with the good rows (the stream's state
/// must be exactly as if the bad row had never been sent).
async fn snapshots_via_ws(addr: SocketAddr, model: &str, ds: &Dataset, feed: &SnapshotFeed, stream_id: &str, bad_at: Option<usize>) -> Got {
    let mut ws = ws_connect(addr, model).await;
    let mut got = Got::default();
    let mut start = 0;
    let mut first = true;
    let mut bad_at = bad_at;
    while start < feed.events.len() {
        let end = (start + CHUNK).min(feed.events.len());
        let mut snaps = feed.snapshots[start..end].to_vec();
        let bad = bad_at.filter(|&b| (start..end).contains(&b));
        if let Some(b) = bad {
            let r = &mut snaps[b - start];
            r[6] = r[4]; // bid_price_1 = ask_price_1: crossed
            r[5] = r[5].max(1);
            r[7] = r[7].max(1);
        }
        let mut m = json!({"stream_id": stream_id, "events": &feed.events[start..end], "snapshots": snaps});
        if first {
            m["source_format"] = json!(ds.meta.source_format);
            m["venue"] = json!(ds.meta.instrument.venue);
            m["starts_synced"] = json!(ds.meta.starts_synced);
            first = false;
        }
        let v = ws_call(&mut ws, &m).await;
        assert!(v["queue_time_us"].is_u64(), "{v}");
        collect_ws(&v, &mut got);
        if let Some(b) = bad {
            let e = v["error"].as_str().unwrap_or_default();
            assert!(e.starts_with(&format!("SNAPSHOTS[{}].bid_price_1: crossed snapshot", b - start)), "{e}");
            assert!(e.ends_with("the stream keeps its state"), "{e}");
            assert_eq!(v["accepted_snapshots"], b - start, "{v}");
            assert_eq!(v["accepted"], b - start, "{v}");
            assert_eq!(v["closed"], false);
            bad_at = None;
            start = b;
            continue;
        }
        if let Some(e) = v["error"].as_str() {
            got.errors.push(e.to_string());
            break;
        }
        assert_eq!(v["accepted_snapshots"], end - start, "{v}");
        assert_eq!(v["accepted"], end - start, "{v}");
        start = end;
    }
    let _ = ws.close(None).await;
    got
}

/// Replays a snapshot feed over gRPC `ModelStreamInfer`: `EVENTS` and `SNAPSHOTS` in one request,
/// typed contents and raw bytes alternately, the two tensors in either order.
async fn snapshots_via_grpc(addr: SocketAddr, model: &str, ds: &Dataset, feed: &SnapshotFeed, stream_id: &str) -> Got {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut c = GrpcInferenceServiceClient::new(ch).max_decoding_message_size(1 << 30);
    let sid = InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::StringParam(stream_id.into())) };
    let width = feed.snapshots[0].len() as i64;
    let mut reqs = Vec::new();
    for (n, (ev, sn)) in feed.events.chunks(CHUNK).zip(feed.snapshots.chunks(CHUNK)).enumerate() {
        let mut p = if n == 0 { open_params(ds) } else { HashMap::new() };
        p.insert("stream_id".into(), sid.clone());
        let e: Vec<i64> = ev.iter().flatten().copied().collect();
        let s: Vec<i64> = sn.iter().flatten().copied().collect();
        let t = |name: &str, w: i64, v: &[i64], raw: bool| InferInputTensor {
            name: name.into(),
            datatype: "INT64".into(),
            shape: vec![ev.len() as i64, w],
            contents: (!raw).then(|| InferTensorContents { int64_contents: v.to_vec(), ..Default::default() }),
            ..Default::default()
        };
        let raw = n % 2 == 1;
        let mut r = ModelInferRequest { model_name: model.into(), id: format!("m{n}"), parameters: p, ..Default::default() };
        r.inputs = vec![t("EVENTS", 9, &e, raw), t("SNAPSHOTS", width, &s, raw)];
        if raw {
            r.raw_input_contents = vec![e.iter().flat_map(|x| x.to_le_bytes()).collect(), s.iter().flat_map(|x| x.to_le_bytes()).collect()];
        }
        if n % 3 == 2 {
            r.inputs.reverse();
            r.raw_input_contents.reverse();
        }
        reqs.push(r);
    }
    let n_req = reqs.len();
    let mut resp = c.model_stream_infer(tokio_stream::iter(reqs)).await.unwrap().into_inner();
    let mut got = Got::default();
    let mut seen = 0;
    while let Some(m) = resp.message().await.unwrap() {
        seen += 1;
        if let Some(r) = &m.infer_response {
            let acc = r.parameters.get("accepted_snapshots").and_then(|p| p.parameter_choice.clone());
            assert!(matches!(acc, Some(infer_parameter::ParameterChoice::Int64Param(_))), "{:?}", r.parameters);
        }
        collect_grpc(m, &mut got);
    }
    assert_eq!(seen, n_req, "one response per request");
    got
}

/// Bad snapshot input over the WebSocket, one case each: refused naming the row and column (or
/// the tensor), never a dropped connection, and the stream's state exactly what the accepted
/// rows left (its event count; the next good message goes on from there).
async fn snapshot_bad_inputs(addr: SocketAddr, model: &str) {
    let mut ws = ws_connect(addr, model).await;
    // Two levels per side, ticks and lots; row = [ts, ts_local, seq, events, a1, as1, b1, bs1, a2, as2, b2, bs2].
    let snap = |ts: i64, lv: [i64; 8]| {
        let mut r = vec![ts, NO_TS, ts, 0];
        r.extend(lv);
        r
    };
    let good = |ts: i64| snap(ts, [101, 5, 100, 4, 102, 3, 99, 2]);
    let open = json!({"stream_id": "", "source_format": "lobster", "venue": "NASDAQ", "starts_synced": true});
    let msg = |sid: &str, snaps: Vec<Vec<i64>>, events: Vec<[i64; 9]>| {
        let mut m = open.clone();
        m["stream_id"] = json!(sid);
        m["snapshots"] = json!(snaps);
        m["events"] = json!(events);
        m
    };
    let add = |ts: i64, side: i64, price: i64| [ts, NO_TS, ts, 7, price, 1, 3, side, 0];
    let level_set = [5, NO_TS, 5, 0, 100, 9, 0, 0, 0];
    struct Case {
        name: &'static str,
        bad: Value,
        error: &'static str,
        applied: usize,
    }
    let cases = vec![
        Case {
            name: "wrong column count",
            bad: msg("s", vec![vec![10, NO_TS, 10, 0, 101, 5, 100]], vec![]),
            error: "snapshots.shape: [1, 7]: expected [N, 4 + 4·L]",
            applied: 0,
        },
        Case {
            name: "rows of different widths",
            bad: msg("s", vec![good(10), vec![11, NO_TS, 11, 0, 101, 5, 100, 4]], vec![]),
            error: "message JSON at snapshots: row 1 has 8 columns, row 0 has 12",
            applied: 0,
        },
        Case {
            name: "unsorted levels",
            bad: msg("s", vec![good(10), snap(11, [101, 5, 100, 4, 102, 3, 100, 2])], vec![]),
            error: "SNAPSHOTS[1].bid_price_2: 100 is not further from the touch than level 1 (100)",
            applied: 1,
        },
        Case {
            name: "crossed snapshot",
            bad: msg("s", vec![snap(10, [101, 5, 101, 4, 102, 3, 99, 2])], vec![]),
            error: "SNAPSHOTS[0].bid_price_1: crossed snapshot: best bid 101 ≥ best ask 101",
            applied: 0,
        },
        Case {
            name: "time going back",
            bad: msg("s", vec![good(10), good(3)], vec![]),
            error: "SNAPSHOTS[1].ts_exchange: 3 is before the previous snapshot's 10",
            applied: 1,
        },
        Case {
            name: "causing event before the previous event",
            bad: msg(
                "s",
                vec![{
                    let mut r = good(10);
                    r[3] = 1;
                    r
                }],
                vec![add(4, 0, 100)],
            ),
            error: "EVENTS[0].ts_exchange: event ",
            applied: 0,
        },
        Case {
            name: "negative size",
            bad: msg("s", vec![good(10), snap(11, [101, 5, 100, 4, 102, -3, 99, 2])], vec![]),
            error: "SNAPSHOTS[1].ask_size_2: size must be positive at an occupied level, got -3",
            applied: 1,
        },
        Case {
            name: "occupied level after an empty one",
            bad: msg("s", vec![snap(10, [101, 5, 0, 0, 102, 3, 99, 2])], vec![]),
            error: "SNAPSHOTS[0].bid_price_2: occupied level 99 after an empty level",
            applied: 0,
        },
        Case {
            name: "negative events count",
            bad: msg(
                "s",
                vec![{
                    let mut r = good(10);
                    r[3] = -1;
                    r
                }],
                vec![],
            ),
            error: "SNAPSHOTS[0].events: -1 is negative",
            applied: 0,
        },
        Case {
            name: "more causing events claimed than sent",
            bad: msg(
                "s",
                vec![{
                    let mut r = good(10);
                    r[3] = 2;
                    r
                }],
                vec![add(10, 0, 100)],
            ),
            error: "SNAPSHOTS[0].events: the rows up to this one claim 2 causing events; the message has 1",
            applied: 0,
        },
        Case {
            name: "causing events left over",
            bad: msg("s", vec![good(10)], vec![add(10, 0, 100)]),
            error: "SNAPSHOTS.events: the snapshots claim 0 causing events; the message has 1",
            applied: 0,
        },
        Case {
            name: "a book event as a cause",
            bad: msg(
                "s",
                vec![{
                    let mut r = good(10);
                    r[3] = 1;
                    r
                }],
                vec![level_set],
            ),
            error: "EVENTS[0].kind: level_set is a book event",
            applied: 0,
        },
        Case {
            name: "another depth than the stream's",
            bad: msg("s", vec![vec![10, NO_TS, 10, 0, 101, 5, 100, 4]], vec![]),
            error: "SNAPSHOTS.shape: 1 levels per side, but this stream's snapshots have 2",
            applied: 0,
        },
        Case {
            name: "canonical level events on a snapshot stream",
            bad: {
                let mut m = open.clone();
                m["stream_id"] = json!("s");
                m["events"] = json!([level_set]);
                m
            },
            error: "EVENTS[0].kind: a level_set event on stream_id",
            applied: 0,
        },
        Case {
            name: "deeper than max_snapshot_levels",
            bad: msg(
                "s",
                vec![{
                    let mut r = vec![10, NO_TS, 10, 0];
                    r.extend(std::iter::repeat_n(0, 4 * 1001));
                    r
                }],
                vec![],
            ),
            error: "SNAPSHOTS.shape: 1001 levels per side; the limit is 1000",
            applied: 0,
        },
    ];
    for (k, c) in cases.into_iter().enumerate() {
        let sid = format!("bad{k}");
        let with_sid = |mut m: Value| {
            m["stream_id"] = json!(sid);
            m
        };
        // One good snapshot first (2 bid + 2 ask levels: 4 level events, the last a batch end).
        let v = ws_call(&mut ws, &with_sid(msg("", vec![good(5)], vec![]))).await;
        assert_eq!(v["stream_events"], 4, "{}: {v}", c.name);
        let v = ws_call(&mut ws, &with_sid(c.bad)).await;
        let e = v["error"].as_str().unwrap_or_else(|| panic!("{}: no error: {v}", c.name));
        assert!(e.contains(c.error), "{}: {e}", c.name);
        assert_ne!(v["closed"], true, "{}: {v}", c.name);
        if v.get("accepted_snapshots").is_some() {
            assert_eq!(v["accepted_snapshots"], c.applied, "{}: {v}", c.name);
        } else {
            assert_eq!(c.applied, 0, "{}: refused whole: {v}", c.name);
        }
        // The state is what the accepted rows left: a good row changing one level adds exactly
        // one event (plus its cause) — the differ's previous snapshot is the last accepted one.
        // (Every accepted bad-case row repeats the first snapshot without a cause: no events.)
        let applied_events = 4;
        let next = {
            let mut r = snap(20, [101, 6, 100, 4, 102, 3, 99, 2]);
            r[3] = 1;
            r
        };
        let v = ws_call(&mut ws, &with_sid(msg("", vec![next], vec![add(20, 1, 101)]))).await;
        assert!(v["error"].is_null(), "{}: after the refusal: {v}", c.name);
        assert_eq!(v["stream_events"], applied_events + 2, "{}: {v}", c.name);
    }
    let _ = ws.close(None).await;
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
    let mut grpc_secs = Vec::new();
    for (i, (label, ds)) in cases.iter().enumerate() {
        let r = reference(ds, &p, &card);
        let t0 = std::time::Instant::now();
        let g = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(600), via_grpc(grpc, "lstm", ds, &format!("g{i}"), None)).await })
            .unwrap();
        grpc_secs.push(t0.elapsed().as_secs_f64());
        let dg = compare(&format!("{label} over gRPC"), &g, &r, &p, &card);
        let w = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(600), via_ws(http, "lstm", ds, &format!("w{i}"))).await })
            .unwrap();
        let dw = compare(&format!("{label} over WebSocket"), &w, &r, &p, &card);
        figures.push((label.clone(), r.complete.len(), dg, dw));
    }
    eprintln!("serve == train: {figures:?}");

    // Snapshot input: the LOBSTER pair as message + orderbook rows (what a client holding
    // LOBSTER-shaped data sends) answers exactly like the loader's events offline.
    if let Some(d) = shared_data() {
        let l = d.join("lobster");
        let inputs =
            vec![l.join("AMZN_2012-06-21_34200000_57600000_message_1.csv"), l.join("AMZN_2012-06-21_34200000_57600000_orderbook_1.csv")];
        let feed = lobster_feed(&inputs);
        let k = cases.iter().position(|c| c.0 == "LOBSTER AMZN").unwrap();
        let ds = &cases[k].1;
        let r = reference(ds, &p, &card);
        let t0 = std::time::Instant::now();
        let g = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(600), snapshots_via_grpc(grpc, "lstm", ds, &feed, "sg")).await })
            .unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let dg = compare("LOBSTER AMZN snapshots over gRPC", &g, &r, &p, &card);
        let w = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(600), snapshots_via_ws(http, "lstm", ds, &feed, "sw", Some(CHUNK + 17))).await
            })
            .unwrap();
        let dw = compare("LOBSTER AMZN snapshots over WebSocket (a crossed row refused mid-way)", &w, &r, &p, &card);
        eprintln!(
            "snapshot stream == loader offline: {} messages, {} windows, max |Δp| gRPC {dg:e} WebSocket {dw:e}; gRPC replay \
             {secs:.2} s = {:.2} µs per message row (canonical events: {:.2} s = {:.2} µs per event, {} events)",
            feed.events.len(),
            r.complete.len(),
            secs * 1e6 / feed.events.len() as f64,
            grpc_secs[k],
            grpc_secs[k] * 1e6 / ds.events.len() as f64,
            ds.events.len()
        );
    }
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(120), snapshot_bad_inputs(http, "lstm")).await }).unwrap();

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

/// `[stream]` of serve.toml reaches `flowcast serve`, checked before anything is served, and the
/// `--max-stream*` flags override its keys.
#[test]
fn stream_limits_come_from_serve_toml_and_flags_override_them() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("serve.toml");
    let missing = tmp.path().join("no-models");
    let serve = |extra: &[&str]| {
        let mut a = vec![
            "serve",
            "--models",
            missing.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--http",
            "off",
            "--grpc",
            "127.0.0.1:0",
        ];
        a.extend_from_slice(extra);
        flowcast(&a)
    };
    std::fs::write(&cfg, "[stream]\nmax_streams = 0\n").unwrap();
    let (code, _, err) = serve(&[]);
    assert_ne!(code, 0);
    assert!(err.contains("stream.max_streams: must be ≥ 1"), "{err}");
    // The flag overrides the file's bad value: the server gets past the limits (and stops at the
    // missing model repository instead).
    let (code, _, err) = serve(&["--max-streams", "4"]);
    assert_ne!(code, 0);
    assert!(!err.contains("max_streams") && err.contains("no-models"), "{err}");
    std::fs::write(&cfg, "[stream]\nmax_book_levels = 100\n").unwrap();
    let (_, _, err) = serve(&[]);
    assert!(err.contains("max_snapshot_levels 1000 exceeds max_book_levels 100"), "{err}");
    let (_, _, err) = serve(&["--max-stream-snapshot-levels", "50"]);
    assert!(!err.contains("max_snapshot_levels") && err.contains("no-models"), "{err}");
    std::fs::write(&cfg, "[stream]\nmax_snapshots = 1\n").unwrap();
    let (code, _, err) = serve(&[]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown field `max_snapshots`"), "{err}");
}

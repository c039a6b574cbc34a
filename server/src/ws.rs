//! Stream mode over a WebSocket: `GET /v2/models/{name}[/versions/{v}]/stream` upgrades to a
//! WebSocket carrying JSON text messages, one reply per message (formats: docs/serve.md,
//! "Stream mode"). A connection may carry several streams (`stream_id`); they close with it.

use crate::error::ApiError;
use crate::signal::{Data, Tensor, PROBS, REGRESSION, SIGNAL_CONFIDENCE, SIGNAL_DIRECTION, SIGNAL_EDGE_BPS, SIGNAL_STRENGTH, STD};
use crate::stream::{event_from_row, OpenOptions, Session, Snapshots, StreamReply, StreamRequest};
use crate::App;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use flowcast_contract::signal::Direction;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A client message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WsRequest {
    #[serde(default)]
    id: Option<String>,
    stream_id: String,
    /// Rows `[ts_exchange, ts_local, seq, order_id, price, size, kind, side, flags]`.
    #[serde(default)]
    events: Vec<[i64; 9]>,
    /// Rows `[ts_exchange, ts_local, seq, events, ask_price_1, ask_size_1, bid_price_1, bid_size_1, …]`.
    #[serde(default)]
    snapshots: Option<FlatRows>,
    #[serde(default)]
    reset: bool,
    #[serde(default)]
    close: bool,
    #[serde(default)]
    source_format: Option<String>,
    #[serde(default)]
    venue: Option<String>,
    #[serde(default)]
    starts_synced: Option<bool>,
    /// Learn online in this stream (default: the server's `[stream] online`).
    #[serde(default)]
    online: Option<bool>,
}

/// An array of equally long integer arrays, read into one flat vector (no allocation per row).
struct FlatRows {
    width: usize,
    values: Vec<i64>,
}

impl<'de> Deserialize<'de> for FlatRows {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FlatRows, D::Error> {
        struct Outer;
        struct Row<'a> {
            values: &'a mut Vec<i64>,
        }
        impl<'de> serde::de::DeserializeSeed<'de> for Row<'_> {
            type Value = usize;
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
                d.deserialize_seq(self)
            }
        }
        impl<'de> serde::de::Visitor<'de> for Row<'_> {
            type Value = usize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of integers")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<usize, A::Error> {
                let mut n = 0;
                while let Some(v) = a.next_element::<i64>()? {
                    self.values.push(v);
                    n += 1;
                }
                Ok(n)
            }
        }
        impl<'de> serde::de::Visitor<'de> for Outer {
            type Value = FlatRows;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of rows (arrays of integers)")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<FlatRows, A::Error> {
                let mut values = Vec::new();
                let mut width = None;
                let mut i = 0usize;
                while let Some(n) = a.next_element_seed(Row { values: &mut values })? {
                    match width {
                        None => width = Some(n),
                        Some(w) if w != n => {
                            return Err(serde::de::Error::custom(format!("row {i} has {n} columns, row 0 has {w}")));
                        }
                        _ => {}
                    }
                    i += 1;
                }
                Ok(FlatRows { width: width.unwrap_or(0), values })
            }
        }
        d.deserialize_seq(Outer)
    }
}

#[derive(Serialize)]
struct WsSignal {
    direction: Direction,
    level: i32,
    strength: f32,
    confidence: f32,
    edge_bps: f32,
}

#[derive(Serialize)]
struct WsPrediction<'a> {
    event_index: i64,
    ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    probs: Option<&'a [f32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regression: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    std: Option<f32>,
    signal: WsSignal,
}

#[derive(Serialize)]
struct WsReply<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    stream_id: &'a str,
    model_name: &'a str,
    model_version: &'a str,
    accepted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    accepted_snapshots: Option<usize>,
    stream_events: u64,
    stream_samples: u64,
    predictions: Vec<WsPrediction<'a>>,
    gaps: &'a [i64],
    crossed: &'a [i64],
    queue_time_us: u64,
    compute_time_us: u64,
    closed: bool,
    /// Online learning: whether the stream learns, labels absorbed in this message and in all.
    online: bool,
    updates: u64,
    stream_updates: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn f32s<'a>(ts: &'a [Tensor], name: &str) -> Option<&'a [f32]> {
    ts.iter().find(|t| t.name == name).and_then(|t| if let Data::F32(v) = &t.data { Some(&v[..]) } else { None })
}

fn direction(level: i32) -> Direction {
    match level {
        2 => Direction::StrongBuy,
        1 => Direction::Buy,
        -1 => Direction::Sell,
        -2 => Direction::StrongSell,
        _ => Direction::None,
    }
}

/// The reply as JSON: one prediction object per window.
pub(crate) fn reply_json(r: &StreamReply) -> String {
    let n = r.event_index.len();
    let probs = f32s(&r.outputs, PROBS);
    let k = probs.map_or(0, |p| p.len().checked_div(n).unwrap_or(0));
    let (reg, std) = (f32s(&r.outputs, REGRESSION), f32s(&r.outputs, STD));
    let (st, conf, edge) = (f32s(&r.outputs, SIGNAL_STRENGTH), f32s(&r.outputs, SIGNAL_CONFIDENCE), f32s(&r.outputs, SIGNAL_EDGE_BPS));
    let dir = r.outputs.iter().find(|t| t.name == SIGNAL_DIRECTION).and_then(|t| if let Data::I32(v) = &t.data { Some(v) } else { None });
    let predictions = (0..n)
        .map(|i| {
            let level = dir.map_or(0, |d| d[i]);
            WsPrediction {
                event_index: r.event_index[i],
                ts: r.ts[i],
                probs: probs.map(|p| &p[i * k..(i + 1) * k]),
                regression: reg.map(|v| v[i]),
                std: std.map(|v| v[i]),
                signal: WsSignal {
                    direction: direction(level),
                    level,
                    strength: st.map_or(f32::NAN, |v| v[i]),
                    confidence: conf.map_or(f32::NAN, |v| v[i]),
                    edge_bps: edge.map_or(f32::NAN, |v| v[i]),
                },
            }
        })
        .collect();
    let w = WsReply {
        id: &r.id,
        stream_id: &r.stream_id,
        model_name: &r.model_name,
        model_version: &r.model_version,
        accepted: r.accepted,
        accepted_snapshots: r.snapshots.then_some(r.accepted_snapshots),
        stream_events: r.stream_events,
        stream_samples: r.stream_samples,
        predictions,
        gaps: &r.gaps,
        crossed: &r.crossed,
        queue_time_us: r.queue_us,
        compute_time_us: r.compute_us,
        closed: r.closed,
        online: r.online,
        updates: r.updates,
        stream_updates: r.stream_updates,
        error: r.error.as_deref(),
    };
    serde_json::to_string(&w).unwrap_or_else(|e| serde_json::json!({ "error": format!("reply: {e}") }).to_string())
}

fn error_json(e: &ApiError, stream_id: Option<&str>) -> String {
    serde_json::json!({ "error": e.message, "stream_id": stream_id }).to_string()
}

fn parse(text: &str, model: &str, version: Option<&str>) -> Result<StreamRequest, ApiError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let m: WsRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "message JSON".to_string() } else { format!("message JSON at {path}") };
        ApiError::bad(&field, e.into_inner())
    })?;
    let events = m.events.iter().enumerate().map(|(i, r)| event_from_row(r, &format!("events[{i}]"))).collect::<Result<_, _>>()?;
    let snapshots = match m.snapshots {
        None => None,
        Some(r) => {
            let n = r.values.len().checked_div(r.width).unwrap_or(0);
            Some(Snapshots::from_i64(r.values, &[n as i64, r.width as i64], "snapshots")?)
        }
    };
    Ok(StreamRequest {
        model: model.to_string(),
        version: version.map(str::to_string),
        id: m.id.unwrap_or_default(),
        stream_id: m.stream_id,
        events,
        snapshots,
        open: OpenOptions { source_format: m.source_format, venue: m.venue, starts_synced: m.starts_synced, online: m.online },
        reset: m.reset,
        close: m.close,
    })
}

pub async fn stream(ws: WebSocketUpgrade, State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    upgrade(ws, app, name, None)
}

pub async fn stream_v(ws: WebSocketUpgrade, State(app): State<Arc<App>>, Path((name, version)): Path<(String, String)>) -> Response {
    upgrade(ws, app, name, Some(version))
}

fn upgrade(ws: WebSocketUpgrade, app: Arc<App>, name: String, version: Option<String>) -> Response {
    // Unknown or unready models are refused before the upgrade, with the usual HTTP status.
    if let Err(e) = app.registry.get(&name, version.as_deref()) {
        return e.into_response();
    }
    let limit = app.max_body_bytes;
    ws.max_message_size(limit).on_upgrade(move |socket| serve(socket, app, name, version))
}

async fn serve(mut socket: WebSocket, app: Arc<App>, name: String, version: Option<String>) {
    let session = Arc::new(Mutex::new(Session::new(app)));
    while let Some(msg) = socket.recv().await {
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(_)) => {
                let e = ApiError::bad("message", "binary frames are not accepted: send JSON text");
                if socket.send(Message::Text(error_json(&e, None).into())).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue, // ping/pong: answered by the library
        };
        let queued = Instant::now();
        let out = match parse(text.as_str(), &name, version.as_deref()) {
            Err(e) => error_json(&e, None),
            Ok(req) => {
                let sid = req.stream_id.clone();
                let s = session.clone();
                match tokio::task::spawn_blocking(move || s.lock().expect("stream session").handle(req, queued)).await {
                    Ok(Ok(r)) => reply_json(&r),
                    Ok(Err(e)) => error_json(&e, Some(&sid)),
                    Err(e) => error_json(&ApiError::internal(format!("stream task failed: {e}")), Some(&sid)),
                }
            }
        };
        if socket.send(Message::Text(out.into())).await.is_err() {
            break;
        }
    }
}

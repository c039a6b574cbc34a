//! Stream mode over gRPC: Triton's bidirectional `ModelStreamInfer`. Each request carries a
//! batch of events for one stream (`parameters["stream_id"]`) as the `EVENTS` tensor (INT64
//! `[N, 9]`, typed `int64_contents` or little-endian `raw_input_contents`) and/or top-N book
//! snapshots as the `SNAPSHOTS` tensor (INT64 `[N, 4 + 4·L]`, stream.rs); each gets one
//! `ModelStreamInferResponse`. A bad message is answered with `error_message` and the stream
//! goes on. Formats: docs/serve.md, "Stream mode".

use crate::error::ApiError;
use crate::grpc_tensors::{int_param, latency_parameters, output_tensors};
use crate::proto::*;
use crate::signal::{Data, Tensor};
use crate::stream::{events_from_i64, OpenOptions, Session, Snapshots, StreamReply, StreamRequest, EVENTS, SNAPSHOTS};
use crate::App;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tonic::Status;

pub type ResponseStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

fn param<'a>(p: &'a HashMap<String, InferParameter>, key: &str) -> Option<&'a infer_parameter::ParameterChoice> {
    p.get(key).and_then(|v| v.parameter_choice.as_ref())
}

fn string_param(p: &HashMap<String, InferParameter>, key: &str) -> Result<Option<String>, ApiError> {
    match param(p, key) {
        None => Ok(None),
        Some(infer_parameter::ParameterChoice::StringParam(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::bad(&format!("parameters.{key}"), format!("{other:?} is not a string"))),
    }
}

fn bool_param(p: &HashMap<String, InferParameter>, key: &str) -> Result<Option<bool>, ApiError> {
    match param(p, key) {
        None => Ok(None),
        Some(infer_parameter::ParameterChoice::BoolParam(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad(&format!("parameters.{key}"), format!("{other:?} is not a boolean"))),
    }
}

/// A `ModelInferRequest` of stream mode, parsed; the flag says whether its events came raw.
pub fn parse(r: ModelInferRequest) -> Result<(StreamRequest, bool), ApiError> {
    let p = &r.parameters;
    let stream_id = string_param(p, "stream_id")?.ok_or_else(|| ApiError::bad("parameters.stream_id", "missing"))?;
    let open = OpenOptions {
        source_format: string_param(p, "source_format")?,
        venue: string_param(p, "venue")?,
        starts_synced: bool_param(p, "starts_synced")?,
        online: bool_param(p, "online")?,
    };
    if r.inputs.len() > 2 {
        return Err(ApiError::bad("inputs", format!("{} tensors: stream mode takes {EVENTS:?} and/or {SNAPSHOTS:?}", r.inputs.len())));
    }
    let raw = !r.raw_input_contents.is_empty();
    if raw && r.raw_input_contents.len() != r.inputs.len() {
        return Err(ApiError::bad("raw_input_contents", format!("{} entries for {} inputs", r.raw_input_contents.len(), r.inputs.len())));
    }
    let (mut events, mut snapshots) = (None, None);
    for (i, t) in r.inputs.into_iter().enumerate() {
        let field = format!("inputs[{i}]");
        if t.name != EVENTS && t.name != SNAPSHOTS {
            return Err(ApiError::bad(
                &format!("{field}.name"),
                format!("{:?}: stream mode's inputs are {EVENTS:?} and {SNAPSHOTS:?}", t.name),
            ));
        }
        if t.datatype != "INT64" {
            return Err(ApiError::bad(&format!("{field}.datatype"), format!("{:?}: {} is INT64", t.datatype, t.name)));
        }
        let v: Vec<i64> = if raw {
            let b = &r.raw_input_contents[i];
            if !b.len().is_multiple_of(8) {
                return Err(ApiError::bad(
                    &format!("raw_input_contents[{i}]"),
                    format!("{} bytes is not a whole number of INT64 values", b.len()),
                ));
            }
            b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
        } else {
            t.contents.map(|c| c.int64_contents).unwrap_or_default()
        };
        let twice = || ApiError::bad(&format!("{field}.name"), format!("{:?} twice", t.name));
        if t.name == EVENTS {
            if events.replace(events_from_i64(&v, &t.shape, &field)?).is_some() {
                return Err(twice());
            }
        } else if snapshots.replace(Snapshots::from_i64(v, &t.shape, &field)?).is_some() {
            return Err(twice());
        }
    }
    let events = events.unwrap_or_default();
    let req = StreamRequest {
        model: r.model_name,
        version: (!r.model_version.is_empty()).then_some(r.model_version),
        id: r.id,
        stream_id,
        events,
        snapshots,
        open,
        reset: bool_param(p, "reset")?.unwrap_or(false),
        close: bool_param(p, "close")?.unwrap_or(false),
    };
    Ok((req, raw))
}

fn i64_tensor(name: &'static str, v: Vec<i64>) -> Tensor {
    Tensor { name, shape: vec![v.len()], data: Data::I64(v) }
}

/// The reply as a `ModelInferResponse`: `event_index`, `ts`, the model's outputs and signals,
/// `gap_event_index`, `crossed_event_index`; counts and latency in `parameters`.
pub fn response(r: StreamReply, raw: bool) -> ModelStreamInferResponse {
    let mut ts = vec![i64_tensor("event_index", r.event_index), i64_tensor("ts", r.ts)];
    ts.extend(r.outputs);
    ts.push(i64_tensor("gap_event_index", r.gaps));
    ts.push(i64_tensor("crossed_event_index", r.crossed));
    let (outputs, raw_output_contents) = output_tensors(ts, raw);
    let mut parameters = latency_parameters(r.queue_us, r.compute_us);
    parameters
        .insert("stream_id".into(), InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::StringParam(r.stream_id)) });
    parameters.insert("accepted".into(), int_param(r.accepted as i64));
    if r.snapshots {
        parameters.insert("accepted_snapshots".into(), int_param(r.accepted_snapshots as i64));
    }
    parameters.insert("stream_events".into(), int_param(r.stream_events as i64));
    parameters.insert("stream_samples".into(), int_param(r.stream_samples as i64));
    parameters.insert("online".into(), InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::BoolParam(r.online)) });
    parameters.insert("updates".into(), int_param(r.updates as i64));
    parameters.insert("stream_updates".into(), int_param(r.stream_updates as i64));
    parameters.insert("closed".into(), InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::BoolParam(r.closed)) });
    ModelStreamInferResponse {
        error_message: r.error.unwrap_or_default(),
        infer_response: Some(ModelInferResponse {
            model_name: r.model_name,
            model_version: r.model_version,
            id: r.id,
            parameters,
            outputs,
            raw_output_contents,
        }),
    }
}

fn error(e: ApiError) -> ModelStreamInferResponse {
    ModelStreamInferResponse { error_message: e.message, infer_response: None }
}

/// Serves one `ModelStreamInfer` call: its messages in order, each on the blocking pool.
pub fn run(app: Arc<App>, mut incoming: tonic::Streaming<ModelInferRequest>) -> ResponseStream {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let session = Arc::new(Mutex::new(Session::new(app)));
        loop {
            let msg = match incoming.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    break;
                }
            };
            let queued = Instant::now();
            let resp = match parse(msg) {
                Err(e) => error(e),
                Ok((req, raw)) => {
                    let s = session.clone();
                    match tokio::task::spawn_blocking(move || s.lock().expect("stream session").handle(req, queued)).await {
                        Ok(Ok(r)) => response(r, raw),
                        Ok(Err(e)) => error(e),
                        Err(e) => error(ApiError::internal(format!("stream task failed: {e}"))),
                    }
                }
            };
            if tx.send(Ok(resp)).await.is_err() {
                break;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

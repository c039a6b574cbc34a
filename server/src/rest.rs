//! The Open Inference Protocol over HTTP/REST (axum): health, metadata, inference with JSON
//! tensors and the binary-tensor extension, and Triton's model-repository extension.

use crate::infer::{self, ApiError, ErrorKind, DATATYPE, INPUT};
use crate::repo::State;
use crate::signal::{self, Data, PROBS};
use crate::App;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The binary-tensor extension's header: the length of the JSON part of a body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        };
        (status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

type R = Result<Response, ApiError>;

pub fn router(app: Arc<App>) -> Router {
    let limit = app.max_body_bytes;
    Router::new()
        .route("/v2/health/live", get(|| async { axum::Json(json!({ "live": true })) }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata_v))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready_v))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
        .route("/v2/models/{name}/stream", get(crate::ws::stream))
        .route("/v2/models/{name}/versions/{version}/stream", get(crate::ws::stream_v))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{name}/load", post(repository_load))
        .route("/v2/repository/models/{name}/unload", post(repository_unload))
        .route("/metrics", get(crate::metrics::rest_metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint (see docs/serve.md)") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(app.clone(), crate::limits::rest_layer))
        .with_state(app)
}

/// The body, or the extractor's rejection (413 over the size limit) as a JSON error.
fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        let kind = if e.status() == StatusCode::PAYLOAD_TOO_LARGE { ErrorKind::TooLarge } else { ErrorKind::BadRequest };
        ApiError { kind, message: format!("body: {}", e.body_text()) }
    })
}

async fn server_ready(AxState(app): AxState<Arc<App>>) -> Response {
    let ready = app.registry.any_ready();
    let status = if ready { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    (status, axum::Json(json!({ "ready": ready }))).into_response()
}

async fn server_metadata() -> Response {
    axum::Json(crate::server_metadata()).into_response()
}

async fn model_metadata(AxState(app): AxState<Arc<App>>, Path(name): Path<String>) -> R {
    metadata(&app, &name, None)
}
async fn model_metadata_v(AxState(app): AxState<Arc<App>>, Path((name, version)): Path<(String, String)>) -> R {
    metadata(&app, &name, Some(&version))
}

fn metadata(app: &App, name: &str, version: Option<&str>) -> R {
    let m = app.registry.get(name, version)?;
    let versions = app.registry.versions(name)?;
    let info = m.info();
    let params: Map<String, Value> = m.parameters.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    Ok(axum::Json(json!({
        "name": m.name,
        "versions": versions,
        "platform": crate::PLATFORM,
        "inputs": [{ "name": INPUT, "datatype": DATATYPE, "shape": [-1, info.window as i64, info.features as i64] }],
        "outputs": signal::output_metadata(info).into_iter().map(|(name, datatype, shape)| {
            let mut o = json!({ "name": name, "datatype": datatype, "shape": shape });
            if name == PROBS {
                o["parameters"] = json!({ "classes": info.classes.join(",") });
            }
            o
        }).collect::<Vec<_>>(),
        "parameters": params,
    }))
    .into_response())
}

async fn model_ready(AxState(app): AxState<Arc<App>>, Path(name): Path<String>) -> R {
    ready(&app, &name, None)
}
async fn model_ready_v(AxState(app): AxState<Arc<App>>, Path((name, version)): Path<(String, String)>) -> R {
    ready(&app, &name, Some(&version))
}

fn ready(app: &App, name: &str, version: Option<&str>) -> R {
    let (v, state) = app.registry.state(name, version)?;
    let ready = matches!(state, State::Ready(_));
    let status = if ready { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((status, axum::Json(json!({ "name": name, "version": v, "ready": ready }))).into_response())
}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Vec<RequestedOutput>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

async fn infer(AxState(app): AxState<Arc<App>>, Path(name): Path<String>, headers: HeaderMap, b: Result<Bytes, BytesRejection>) -> R {
    run_infer(app, name, None, headers, body(b)?).await
}
async fn infer_v(
    AxState(app): AxState<Arc<App>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> R {
    run_infer(app, name, Some(version), headers, body(b)?).await
}

/// Appends the numbers of a (possibly nested) JSON array to `out`.
fn flatten(v: &Value, out: &mut Vec<f32>, field: &str) -> Result<(), ApiError> {
    match v {
        Value::Array(a) => a.iter().try_for_each(|e| flatten(e, out, field)),
        Value::Number(n) => {
            out.push(n.as_f64().unwrap_or(f64::NAN) as f32);
            Ok(())
        }
        other => Err(ApiError::bad(field, format!("element {} is {other}, not a number", out.len()))),
    }
}

fn flag(params: &Map<String, Value>, key: &str, field: &str) -> Result<Option<bool>, ApiError> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::bad(&format!("{field}.parameters.{key}"), format!("{v} is not a boolean"))),
    }
}

async fn run_infer(app: Arc<App>, name: String, version: Option<String>, headers: HeaderMap, body: Bytes) -> R {
    let model = app.registry.get(&name, version.as_deref())?;
    // The binary-tensor extension: the JSON header first, then the binary tensors.
    let (head, mut binary) = match headers.get(HEADER_LENGTH) {
        None => (&body[..], &body[body.len()..]),
        Some(h) => {
            let n: usize = h
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| ApiError::bad("Inference-Header-Content-Length", format!("{h:?} is not a byte count")))?;
            if n > body.len() {
                return Err(ApiError::bad("Inference-Header-Content-Length", format!("{n} exceeds the body's {} bytes", body.len())));
            }
            body.split_at(n)
        }
    };
    let mut de = serde_json::Deserializer::from_slice(head);
    let req: InferRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "request JSON".to_string() } else { format!("request JSON at {path}") };
        ApiError::bad(&field, e.into_inner())
    })?;
    de.end().map_err(|e| ApiError::bad("request JSON", e))?;
    if req.inputs.len() != 1 {
        return Err(ApiError::bad("inputs", format!("{} tensors: the model takes exactly one, {INPUT:?}", req.inputs.len())));
    }
    let input = &req.inputs[0];
    let shape = infer::check_input(&model, "inputs[0]", &input.name, &input.datatype, &input.shape)?;
    let n = shape[0] * shape[1] * shape[2];
    let x = match input.parameters.get("binary_data_size") {
        Some(size) => {
            let field = "inputs[0].parameters.binary_data_size";
            let size = size.as_u64().ok_or_else(|| ApiError::bad(field, format!("{size} is not a byte count")))? as usize;
            if input.data.is_some() {
                return Err(ApiError::bad("inputs[0].data", "given together with binary_data_size"));
            }
            if size > binary.len() {
                return Err(ApiError::bad(field, format!("{size} bytes, but the body has only {} binary bytes (truncated)", binary.len())));
            }
            let (mine, rest) = binary.split_at(size);
            binary = rest;
            infer::f32_from_le(mine, n, field)?
        }
        None => {
            let data = input.data.as_ref().ok_or_else(|| ApiError::bad("inputs[0].data", "missing (and no binary_data_size)"))?;
            let mut x = Vec::with_capacity(n.min(head.len()));
            flatten(data, &mut x, "inputs[0].data")?;
            x
        }
    };
    if !binary.is_empty() {
        return Err(ApiError::bad("body", format!("{} bytes after the binary inputs", binary.len())));
    }
    infer::check_outputs(&model, req.outputs.iter().map(|o| o.name.as_str()))?;
    let default_binary = flag(&req.parameters, "binary_data_output", "request")?.unwrap_or(false);
    // (name, binary) of each output to return: the requested ones, else all.
    let mut wanted: Vec<(String, bool)> = Vec::with_capacity(req.outputs.len());
    for (i, o) in req.outputs.iter().enumerate() {
        wanted.push((o.name.clone(), flag(&o.parameters, "binary_data", &format!("outputs[{i}]"))?.unwrap_or(default_binary)));
    }

    let r = app.scheduler.run(model.clone(), x, shape, "inputs[0]".into()).await?;
    let all = signal::tensors(&model, r.probs, r.regression, r.std, r.batch);
    let chosen: Vec<(&signal::Tensor, bool)> = if wanted.is_empty() {
        all.iter().map(|t| (t, default_binary)).collect()
    } else {
        wanted.iter().filter_map(|(n, b)| all.iter().find(|t| t.name == n).map(|t| (t, *b))).collect()
    };
    let mut raw = Vec::new();
    let mut outputs = Vec::with_capacity(chosen.len());
    for (t, binary) in chosen {
        let (parameters, data) = if binary {
            let b = t.data.to_le();
            let p = json!({ "binary_data_size": b.len() });
            raw.extend_from_slice(&b);
            (Some(p), None)
        } else {
            (None, Some(DataRef::of(&t.data)))
        };
        outputs.push(OutputTensor { name: t.name, datatype: t.data.datatype(), shape: &t.shape, parameters, data });
    }
    let resp = InferResponse {
        model_name: &model.name,
        model_version: &model.version,
        id: req.id.as_deref(),
        outputs,
        parameters: json!({ "queue_time_us": r.queue_us, "compute_time_us": r.compute_us, "batch_windows": r.batch_windows }),
    };
    let head = serde_json::to_vec(&resp).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(match (!raw.is_empty()).then_some(raw) {
        None => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], head).into_response(),
        Some(raw) => {
            let len = head.len();
            let mut b = head;
            b.extend_from_slice(&raw);
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
                    (header::HeaderName::from_static(HEADER_LENGTH), HeaderValue::from(len)),
                ],
                b,
            )
                .into_response()
        }
    })
}

/// The response header, serialised directly so FP32 values print as FP32 (shortest round trip).
#[derive(serde::Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor<'a>>,
    parameters: Value,
}

#[derive(serde::Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'a str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataRef<'a>>,
}

/// A tensor's values as JSON numbers (FP32 printed as FP32).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum DataRef<'a> {
    F32(&'a [f32]),
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl<'a> DataRef<'a> {
    fn of(d: &'a Data) -> DataRef<'a> {
        match d {
            Data::F32(v) => DataRef::F32(v),
            Data::I32(v) => DataRef::I32(v),
            Data::I64(v) => DataRef::I64(v),
        }
    }
}

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

async fn repository_index(AxState(app): AxState<Arc<App>>, b: Result<Bytes, BytesRejection>) -> R {
    let b = body(b)?;
    let req: IndexRequest = if b.iter().all(|c| c.is_ascii_whitespace()) {
        IndexRequest::default()
    } else {
        serde_json::from_slice(&b).map_err(|e| ApiError::bad("request JSON", e))?
    };
    Ok(axum::Json(app.registry.index(req.ready)).into_response())
}

async fn repository_load(AxState(app): AxState<Arc<App>>, Path(name): Path<String>) -> R {
    let reg = app.registry.clone();
    tokio::task::spawn_blocking(move || reg.load(&name)).await.map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(axum::Json(json!({})).into_response())
}

async fn repository_unload(AxState(app): AxState<Arc<App>>, Path(name): Path<String>) -> R {
    app.registry.unload(&name)?;
    Ok(axum::Json(json!({})).into_response())
}

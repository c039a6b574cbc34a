//! What every request passes before its handler, on both protocols: bearer-token auth, a
//! per-client token-bucket rate limit, then — after the handler — the request metrics and one
//! structured `tracing` line. REST: an axum middleware; gRPC: a tower layer on tonic's server.
//! Health endpoints and `/metrics` are open (a load balancer or Prometheus needs no token).

use crate::config::RateLimit;
use crate::App;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

/// Why a request was refused before its handler.
pub enum Refusal {
    /// No or wrong bearer token: 401 / UNAUTHENTICATED.
    Unauthenticated(&'static str),
    /// Over the client's rate: 429 / RESOURCE_EXHAUSTED, retry after this many seconds.
    RateLimited(u64),
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per client key. The map is bounded: past `MAX_CLIENTS` keys, buckets that have
/// refilled (idle clients) are dropped, so random peers cannot grow it without bound.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

const MAX_CLIENTS: usize = 10_000;

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token from `key`'s bucket, or says how many seconds until one is there.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        let (rate, burst) = (self.limit.requests_per_second, self.limit.burst as f64);
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CLIENTS && !map.contains_key(key) {
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(key.to_string()).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// Auth and rate limit, shared by both protocols.
pub struct Guard {
    tokens: Option<Vec<String>>,
    rate: Option<RateLimiter>,
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Guard {
    pub fn new(ops: &crate::config::Ops) -> Guard {
        Guard { tokens: ops.auth_tokens.clone(), rate: ops.rate_limit.map(RateLimiter::new) }
    }

    /// Checks the `authorization` header (`Bearer <token>`), then the client's bucket (keyed by
    /// its token when auth is on, else by peer IP).
    pub fn admit(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<(), Refusal> {
        let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
            let (scheme, t) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| t.trim())
        });
        let key = match &self.tokens {
            None => None,
            Some(valid) => {
                let t = token.ok_or(Refusal::Unauthenticated("missing bearer token (Authorization: Bearer <token>)"))?;
                if !valid.iter().any(|v| same(v.as_bytes(), t.as_bytes())) {
                    return Err(Refusal::Unauthenticated("invalid bearer token"));
                }
                Some(format!("token:{t}"))
            }
        };
        if let Some(rate) = &self.rate {
            let key = key.unwrap_or_else(|| format!("ip:{}", peer.map(|p| p.ip().to_string()).unwrap_or_default()));
            rate.take(&key, Instant::now()).map_err(Refusal::RateLimited)?;
        }
        Ok(())
    }
}

/// Paths that need no token and are not rate limited.
fn open_rest(path: &str) -> bool {
    matches!(path, "/v2/health/live" | "/v2/health/ready" | "/metrics")
}

/// `(endpoint, model name)` of a REST path, from a fixed set of endpoint names.
fn rest_endpoint(path: &str) -> (&'static str, Option<&str>) {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match seg.as_slice() {
        ["v2", "health", "live"] => ("health_live", None),
        ["v2", "health", "ready"] => ("health_ready", None),
        ["metrics"] => ("metrics", None),
        ["v2"] => ("server_metadata", None),
        ["v2", "models", m] | ["v2", "models", m, "versions", _] => ("model_metadata", Some(m)),
        ["v2", "models", m, "ready"] | ["v2", "models", m, "versions", _, "ready"] => ("model_ready", Some(m)),
        ["v2", "models", m, "infer"] | ["v2", "models", m, "versions", _, "infer"] => ("infer", Some(m)),
        ["v2", "repository", "index"] => ("repository_index", None),
        ["v2", "repository", "models", m, "load"] => ("repository_load", Some(m)),
        ["v2", "repository", "models", m, "unload"] => ("repository_unload", Some(m)),
        _ => ("other", None),
    }
}

/// A model name as a metric label: only names the repository knows (bounded cardinality).
fn model_label(app: &App, name: Option<&str>) -> String {
    match name {
        Some(n) if app.registry.versions(n).is_ok() => n.to_string(),
        _ => String::new(),
    }
}

/// Where a request came in: for its metrics and log line.
struct Seen<'a> {
    protocol: &'a str,
    endpoint: &'a str,
    path: &'a str,
    peer: Option<SocketAddr>,
    t0: Instant,
}

fn record(app: &App, seen: Seen<'_>, model: &str, status: &str) {
    let Seen { protocol, endpoint, path, peer, t0 } = seen;
    let secs = t0.elapsed().as_secs_f64();
    app.metrics.requests.with_label_values(&[protocol, endpoint, model, status]).inc();
    app.metrics.request_seconds.with_label_values(&[protocol, endpoint, model]).observe(secs);
    tracing::info!(
        target: "flowcast::request",
        protocol,
        endpoint,
        path,
        model,
        status,
        latency_us = (secs * 1e6) as u64,
        peer = peer.map(|p| p.to_string()).unwrap_or_default(),
        "request"
    );
}

/// The REST middleware: guard, handler, metrics and log.
pub async fn rest_layer(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let path = req.uri().path().to_string();
    let (endpoint, model) = rest_endpoint(&path);
    let model = model_label(&app, model);
    let resp = if open_rest(&path) {
        next.run(req).await
    } else {
        match app.guard.admit(req.headers(), peer) {
            Ok(()) => next.run(req).await,
            Err(r) => refusal_response(r),
        }
    };
    record(&app, Seen { protocol: "http", endpoint, path: &path, peer, t0 }, &model, resp.status().as_str());
    resp
}

fn refusal_response(r: Refusal) -> Response {
    match r {
        Refusal::Unauthenticated(why) => {
            let challenge =
                if why.starts_with("invalid") { "Bearer realm=\"flowcast\", error=\"invalid_token\"" } else { "Bearer realm=\"flowcast\"" };
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge))],
                axum::Json(serde_json::json!({ "error": format!("authorization: {why}") })),
            )
                .into_response()
        }
        Refusal::RateLimited(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from(secs))],
            axum::Json(serde_json::json!({ "error": format!("rate limit: over the client's rate, retry after {secs} s") })),
        )
            .into_response(),
    }
}

/// The gRPC methods (the label `endpoint`); anything else is `other`.
const GRPC_METHODS: &[&str] = &[
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "ModelStreamInfer",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
];

/// Where a gRPC handler notes the model a request names (the path does not say), so the
/// layer can label its metrics: [`note_model`].
#[derive(Clone, Default)]
pub struct ModelSlot(Arc<OnceLock<String>>);

/// Called by a gRPC handler with the request's model name.
pub fn note_model(ext: &tonic::Extensions, name: &str) {
    if let Some(s) = ext.get::<ModelSlot>() {
        let _ = s.0.set(name.to_string());
    }
}

/// The tower layer in front of tonic's router.
#[derive(Clone)]
pub struct GrpcLayer {
    pub app: Arc<App>,
}

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcGuard<S>;
    fn layer(&self, inner: S) -> GrpcGuard<S> {
        GrpcGuard { inner, app: self.app.clone() }
    }
}

#[derive(Clone)]
pub struct GrpcGuard<S> {
    inner: S,
    app: Arc<App>,
}

type HttpReq<B> = axum::http::Request<B>;
type GrpcResp = axum::http::Response<tonic::body::Body>;

impl<S, B> tower::Service<HttpReq<B>> for GrpcGuard<S>
where
    S: tower::Service<HttpReq<B>, Response = GrpcResp> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = GrpcResp;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<GrpcResp, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpReq<B>) -> Self::Future {
        let t0 = Instant::now();
        let app = self.app.clone();
        let path = req.uri().path().to_string();
        let method = path.rsplit('/').next().unwrap_or("");
        let endpoint = GRPC_METHODS.iter().find(|m| **m == method).copied().unwrap_or("other");
        let peer = req.extensions().get::<tonic::transport::server::TcpConnectInfo>().and_then(|c| c.remote_addr());
        let open = matches!(endpoint, "ServerLive" | "ServerReady");
        let slot = ModelSlot::default();
        req.extensions_mut().insert(slot.clone());
        let refused = if open { Ok(()) } else { app.guard.admit(req.headers(), peer) };
        // The service polled ready is the one called; a clone takes its place (tower's idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let resp = match refused {
                Ok(()) => inner.call(req).await?,
                Err(Refusal::Unauthenticated(why)) => tonic::Status::unauthenticated(format!("authorization: {why}")).into_http(),
                Err(Refusal::RateLimited(secs)) => {
                    let mut st = tonic::Status::resource_exhausted(format!("rate limit: over the client's rate, retry after {secs} s"));
                    st.metadata_mut().insert("retry-after", secs.into());
                    st.into_http()
                }
            };
            // Errors come trailers-only (grpc-status in the headers); success in the trailers.
            let code = resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map(tonic::Code::from_i32)
                .unwrap_or(tonic::Code::Ok);
            let model = model_label(&app, slot.0.get().map(String::as_str));
            record(&app, Seen { protocol: "grpc", endpoint, path: &path, peer, t0 }, &model, &format!("{code:?}"));
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refills_at_the_rate() {
        let r = RateLimiter::new(RateLimit { requests_per_second: 2.0, burst: 3 });
        let t = Instant::now();
        for _ in 0..3 {
            assert!(r.take("a", t).is_ok());
        }
        assert_eq!(r.take("a", t), Err(1));
        assert!(r.take("b", t).is_ok(), "buckets are per client");
        assert!(r.take("a", t + Duration::from_millis(600)).is_ok(), "0.6 s at 2/s refills one token");
        assert!(r.take("a", t + Duration::from_millis(600)).is_err());
    }

    #[test]
    fn endpoints_are_a_fixed_set() {
        assert_eq!(rest_endpoint("/v2/models/lstm/versions/1/infer"), ("infer", Some("lstm")));
        assert_eq!(rest_endpoint("/v2/models/lstm"), ("model_metadata", Some("lstm")));
        assert_eq!(rest_endpoint("/v2/whatever/x"), ("other", None));
    }
}

//! Prometheus metrics (text exposition format 0.0.4, `GET /metrics` on the REST listener), with
//! the `prometheus` crate. Names and labels: docs/serve.md "Metrics". Label values are bounded:
//! a model label is set only for models in the repository, endpoints come from a fixed list.

use crate::repo::Registry;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, TextEncoder};

/// Latency buckets (seconds): 50 µs … 10 s, for requests, queue waits and model calls.
const LATENCY_BUCKETS: &[f64] =
    &[50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0, 2.5, 10.0];
/// Batch-size buckets (windows or requests per model call).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

pub struct Metrics {
    registry: prometheus::Registry,
    /// Requests by protocol, endpoint, model and status (HTTP code or gRPC code name).
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    /// Time a request waited in the inference queue before its batch ran.
    pub queue_seconds: HistogramVec,
    /// Time of one model call (one batch).
    pub compute_seconds: HistogramVec,
    /// Windows per model call.
    pub batch_windows: HistogramVec,
    /// Requests per model call.
    pub batch_requests: HistogramVec,
    /// Inference requests admitted and not finished, per model.
    pub queue_depth: IntGaugeVec,
    pub queue_capacity: IntGauge,
    /// Requests refused because the queue was full.
    pub queue_rejected: IntCounter,
    pub load_failures: IntCounter,
    /// Model versions per state (`READY`, `UNAVAILABLE`, `UNLOADED`), refreshed at each scrape.
    pub models: IntGaugeVec,
    /// Bus subscriptions (bus.rs), by model and JetStream stream: messages answered, windows
    /// predicted, connection or fetch failures (each followed by a retry).
    pub bus_messages: IntCounterVec,
    pub bus_predictions: IntCounterVec,
    pub bus_errors: IntCounterVec,
    /// Matured labels absorbed by online models in stream mode (online.rs), by model.
    pub online_updates: IntCounterVec,
}

fn hist(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("valid histogram")
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: prometheus::Registry::new(),
            requests: IntCounterVec::new(
                Opts::new("flowcast_requests_total", "Requests by protocol, endpoint, model and status"),
                &["protocol", "endpoint", "model", "status"],
            )
            .expect("valid counter"),
            request_seconds: hist(
                "flowcast_request_duration_seconds",
                "Request latency inside the server (receipt of the request to the response)",
                &["protocol", "endpoint", "model"],
                LATENCY_BUCKETS,
            ),
            queue_seconds: hist(
                "flowcast_inference_queue_duration_seconds",
                "Time an inference request waited in the queue",
                &["model"],
                LATENCY_BUCKETS,
            ),
            compute_seconds: hist(
                "flowcast_inference_compute_duration_seconds",
                "Time of one model call (one batch)",
                &["model"],
                LATENCY_BUCKETS,
            ),
            batch_windows: hist("flowcast_batch_size_windows", "Windows per model call", &["model"], BATCH_BUCKETS),
            batch_requests: hist("flowcast_batch_size_requests", "Requests per model call", &["model"], BATCH_BUCKETS),
            queue_depth: IntGaugeVec::new(Opts::new("flowcast_queue_depth", "Inference requests admitted and not finished"), &["model"])
                .expect("valid gauge"),
            queue_capacity: IntGauge::new("flowcast_queue_capacity", "Inference requests admitted at once (all models)")
                .expect("valid gauge"),
            queue_rejected: IntCounter::new("flowcast_queue_rejected_total", "Inference requests refused because the queue was full")
                .expect("valid counter"),
            load_failures: IntCounter::new("flowcast_model_load_failures_total", "Model versions that failed to load")
                .expect("valid counter"),
            models: IntGaugeVec::new(Opts::new("flowcast_models", "Model versions in the repository by state"), &["state"])
                .expect("valid gauge"),
            bus_messages: IntCounterVec::new(Opts::new("flowcast_bus_messages_total", "Bus messages answered"), &["model", "stream"])
                .expect("valid counter"),
            bus_predictions: IntCounterVec::new(
                Opts::new("flowcast_bus_predictions_total", "Windows predicted from bus messages"),
                &["model", "stream"],
            )
            .expect("valid counter"),
            bus_errors: IntCounterVec::new(
                Opts::new("flowcast_bus_errors_total", "Bus connection or fetch failures (retried)"),
                &["model", "stream"],
            )
            .expect("valid counter"),
            online_updates: IntCounterVec::new(
                Opts::new("flowcast_online_updates_total", "Matured labels absorbed by online models in stream mode"),
                &["model"],
            )
            .expect("valid counter"),
        };
        let r = &m.registry;
        let all: [Box<dyn prometheus::core::Collector>; 15] = [
            Box::new(m.requests.clone()),
            Box::new(m.request_seconds.clone()),
            Box::new(m.queue_seconds.clone()),
            Box::new(m.compute_seconds.clone()),
            Box::new(m.batch_windows.clone()),
            Box::new(m.batch_requests.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.queue_capacity.clone()),
            Box::new(m.queue_rejected.clone()),
            Box::new(m.load_failures.clone()),
            Box::new(m.models.clone()),
            Box::new(m.bus_messages.clone()),
            Box::new(m.bus_predictions.clone()),
            Box::new(m.bus_errors.clone()),
            Box::new(m.online_updates.clone()),
        ];
        for c in all {
            r.register(c).expect("unique metric names");
        }
        m
    }

    /// The text exposition of every metric, model states refreshed from `registry`.
    pub fn render(&self, registry: &Registry) -> String {
        for s in ["READY", "UNAVAILABLE", "UNLOADED"] {
            self.models.with_label_values(&[s]).set(0);
        }
        for e in registry.index(false) {
            self.models.with_label_values(&[e.state.as_str()]).inc();
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
pub async fn rest_metrics(axum::extract::State(app): axum::extract::State<std::sync::Arc<crate::App>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], app.metrics.render(&app.registry)).into_response()
}

/// Wraps a loader so that every failed load counts in `flowcast_model_load_failures_total`.
pub fn counting_loader(inner: crate::Loader, metrics: std::sync::Arc<Metrics>) -> crate::Loader {
    std::sync::Arc::new(move |dir: &std::path::Path| {
        let r = inner(dir);
        if r.is_err() {
            metrics.load_failures.inc();
        }
        r
    })
}

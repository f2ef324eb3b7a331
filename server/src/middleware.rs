//! Per-request plumbing: request ids, the request's log span, HTTP metrics, the timeout and the
//! panic guard. Paths are logged by route template, never with query strings (they may carry
//! tokens).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::http::Code;
use crate::http::error::{ApiError, REQUEST_ID};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Accepts a caller's request id if it is short and plain, else makes one.
fn request_id_for(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Outermost layer: request id, span, access log line, metrics.
pub async fn request_context(req: Request, next: Next) -> Response {
    let request_id = request_id_for(&req);
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let started = Instant::now();

    let mut response = REQUEST_ID.scope(request_id.clone(), next.run(req)).instrument(span.clone()).await;

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| tracing::info!(status, latency_ms = elapsed.as_secs_f64() * 1e3, "request"));
    let labels = [("method", method.to_string()), ("route", route), ("status", status.to_string())];
    metrics::counter!("countersign_http_requests_total", &labels).increment(1);
    metrics::histogram!("countersign_http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// How long a request may run, by route: long-polls wait on purpose, so they get their own
/// limit; every other route gets the configured `[http] request_timeout_secs`.
#[derive(Debug, Clone, Default)]
pub struct RouteTimeouts {
    default: Duration,
    /// (method, route template, limit) for routes that may legitimately run longer.
    slow_routes: Vec<(Method, &'static str, Duration)>,
}

impl RouteTimeouts {
    /// Every route gets `default`.
    pub fn uniform(default: Duration) -> Self {
        Self { default, slow_routes: Vec::new() }
    }

    /// `method route` gets `limit` instead (never less than the default).
    #[must_use]
    pub fn with_route(mut self, method: Method, route: &'static str, limit: Duration) -> Self {
        self.slow_routes.push((method, route, limit.max(self.default)));
        self
    }

    /// The limit for a request to `route` (its template, e.g. `/v1/challenges/{id}`).
    pub fn limit_for(&self, method: &Method, route: Option<&str>) -> Duration {
        self.slow_routes
            .iter()
            .find(|(m, r, _)| m == method && Some(*r) == route)
            .map_or(self.default, |(_, _, limit)| *limit)
    }
}

/// Answers `503 timeout` when a request runs longer than its route's limit.
pub async fn timeout(State(limits): State<Arc<RouteTimeouts>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let limit = limits.limit_for(req.method(), route);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(Code::Timeout, "the request took too long").into_response(),
    }
}

/// Turns a panic in a handler into an opaque 500 with the usual error body.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::opaque().into_response()
}

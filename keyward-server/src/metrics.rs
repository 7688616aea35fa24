//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    pub grant_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub tokens_issued: Family<GrantLabels, Counter>,
    pub token_errors: Family<ErrorLabels, Counter>,
    /// Refreshes of external connections' tokens done at the external server.
    pub external_refreshes: Counter,
    /// Handles into `latency` and `requests` for `POST /oauth2/token`, made once: the token
    /// route is served outside the metrics middleware (see `crate::router`) and records
    /// itself without building label strings per request.
    token_latency: Histogram,
    token_ok: Counter,
}

const TOKEN_ROUTE: &str = "/oauth2/token";

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keyward");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let tokens_issued = Family::<GrantLabels, Counter>::default();
        let token_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "tokens_issued",
            "Access tokens issued by grant type",
            tokens_issued.clone(),
        );
        registry.register(
            "token_errors",
            "Token endpoint errors by OAuth error code",
            token_errors.clone(),
        );
        let external_refreshes = Counter::default();
        registry.register(
            "external_token_refreshes",
            "Refreshes of external connections' tokens at the external server",
            external_refreshes.clone(),
        );
        let token_latency = latency
            .get_or_create(&RouteLabels {
                route: TOKEN_ROUTE.to_owned(),
            })
            .clone();
        let token_ok = requests
            .get_or_create(&RequestLabels {
                method: "POST".to_owned(),
                route: TOKEN_ROUTE.to_owned(),
                status: 200,
            })
            .clone();
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            tokens_issued,
            token_errors,
            external_refreshes,
            token_latency,
            token_ok,
        }
    }
}

impl Metrics {
    /// Records one token-endpoint request in the same series the middleware keeps for
    /// every other route.
    pub fn token_request(&self, status: StatusCode, started: Instant) {
        self.token_latency.observe(started.elapsed().as_secs_f64());
        if status == StatusCode::OK {
            self.token_ok.inc();
        } else {
            self.requests
                .get_or_create(&RequestLabels {
                    method: "POST".to_owned(),
                    route: TOKEN_ROUTE.to_owned(),
                    status: status.as_u16(),
                })
                .inc();
        }
    }

    pub fn render(&self) -> Option<String> {
        let registry = self.registry.lock().ok()?;
        let mut out = String::new();
        encode(&mut out, &registry).ok()?;
        Some(out)
    }
}

/// Middleware: counts every request by matched route (never by raw path, which would let
/// clients create unbounded label sets) and records its latency.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

pub async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    match state.metrics.render() {
        Some(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            body,
        )
            .into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

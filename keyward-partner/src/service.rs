//! The partner service: router, state, `POST /create`, `GET /regions`, the response
//! headers every answer gets, and the client address.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyward_client::proto::provisioning::{CreateProject, Project};
use keyward_client::proto::Problem;
use keyward_client::{Error as ClientError, OAuthClient, ProvisioningClient};
use serde_json::json;
use tokio::net::TcpListener;

use crate::claim::{self, ClaimStore};
use crate::config::{PartnerConfig, PartnerServeArgs};
use crate::names::friendly_name;
use crate::pages::{Pages, STYLESHEET};
use crate::rate_limit::{retry_after_secs, RateLimiter};
use crate::wire::{CreateRequest, CreatedDatabase};

/// Timeout of each call to Keyward.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
const RATE_WINDOW: Duration = Duration::from_secs(60);

pub(crate) struct AppState {
    pub config: PartnerConfig,
    pub oauth: Arc<OAuthClient>,
    /// The provisioning API with the integration token.
    pub api: ProvisioningClient,
    pub limiter: RateLimiter,
    pub claims: ClaimStore,
    pub pages: Pages,
    csp: HeaderValue,
}

pub(crate) type Shared = Arc<AppState>;

/// The partner service's routes. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that the rate limit sees the
/// client address (without it every client shares one window).
pub fn router(config: PartnerConfig) -> Router {
    let http = reqwest::Client::builder()
        .timeout(UPSTREAM_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let oauth = Arc::new(
        OAuthClient::new(
            config.token_url(),
            config.client_id.clone(),
            &config.client_secret,
        )
        .with_http(http),
    );
    let api = ProvisioningClient::with_oauth(&config.issuer, oauth.clone(), &config.audience);
    let csp = format!(
        "default-src 'none'; style-src 'self'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        config.issuer_origin()
    );
    let pages = match Pages::new() {
        Ok(pages) => pages,
        // The templates are compiled in and covered by tests; this cannot fail at run time
        // unless they are broken, in which case every page is a plain 500.
        Err(error) => {
            tracing::error!(%error, "the page templates do not parse");
            return Router::new().fallback(|| async { StatusCode::INTERNAL_SERVER_ERROR });
        }
    };
    let state = Arc::new(AppState {
        limiter: RateLimiter::new(config.create_limit, RATE_WINDOW),
        claims: ClaimStore::new(),
        csp: HeaderValue::from_str(&csp)
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
        config,
        oauth,
        api,
        pages,
    });
    Router::new()
        .route("/create", post(create))
        .route("/regions", get(regions))
        .route("/claim", get(claim::page))
        .route("/claim/start", post(claim::start))
        .route("/claim/callback", get(claim::callback))
        .route("/static/partner.css", get(stylesheet))
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

/// Runs the service on `listener` until Ctrl-C.
pub async fn serve_listener(listener: TcpListener, config: PartnerConfig) -> anyhow::Result<()> {
    let app = router(config).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the partner service stopped")
}

/// `keyward partner serve`: binds `--listen` and runs the service until Ctrl-C.
pub async fn serve(args: PartnerServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        listen = %args.listen,
        public_url = %config.public_url,
        issuer = %config.issuer,
        claim_uri = %config.claim_uri(),
        redirect_uri = %config.redirect_uri(),
        "partner service listening"
    );
    serve_listener(listener, config).await
}

async fn security_headers(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: HeaderValue| {
        headers.entry(name).or_insert(value);
    };
    set(header::CONTENT_SECURITY_POLICY, state.csp.clone());
    set(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    set(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    set(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    set(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// The socket peer, when the service runs with connect info.
pub(crate) struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr),
        ))
    }
}

/// The client address the rate limit counts: the first `X-Forwarded-For` entry when
/// trusted and valid, else the socket peer.
pub(crate) fn client_address(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trust_forwarded_for: bool,
) -> String {
    if trust_forwarded_for {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip.to_string();
        }
    }
    peer.map(|p| p.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// An RFC 9457 problem answer.
pub(crate) fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    let body = Problem {
        type_uri: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: Some(detail.into()),
        code: code.to_owned(),
        request_id: None,
    };
    problem_response(status, &body)
}

fn problem_response(status: StatusCode, body: &Problem) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        bytes,
    )
        .into_response()
}

/// Keyward's error as this service's answer: its problems pass through with their status;
/// trouble reaching Keyward or getting the integration token is a 502.
pub(crate) fn upstream_problem(error: &ClientError) -> Response {
    match error {
        ClientError::Api { status, problem } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            problem_response(status, problem)
        }
        ClientError::OAuth { body, .. } => {
            tracing::error!(error = %error, "Keyward refused the integration token request");
            problem(
                StatusCode::BAD_GATEWAY,
                "partner_unauthorized",
                format!(
                    "the partner could not get an integration token from Keyward ({})",
                    body.error
                ),
            )
        }
        other => {
            tracing::error!(error = %other, "call to Keyward failed");
            problem(
                StatusCode::BAD_GATEWAY,
                "keyward_unavailable",
                "Keyward did not answer as expected; try again shortly",
            )
        }
    }
}

async fn regions(State(state): State<Shared>) -> Response {
    match state.api.regions().await {
        Ok(regions) => Json(json!({ "data": regions })).into_response(),
        Err(error) => upstream_problem(&error),
    }
}

async fn create(
    State(state): State<Shared>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = client_address(peer, &headers, state.config.trust_forwarded_for);
    if let Err(wait) = state.limiter.check(&client, Instant::now()) {
        let secs = retry_after_secs(wait);
        let mut response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "at most {} databases per minute may be created from one address; retry in {secs} seconds",
                state.config.create_limit
            ),
        );
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let request: CreateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CreateRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("the body must be a JSON object {{region?, ttlSeconds?, name?}}: {e}"),
                )
            }
        }
    };
    let body = CreateProject {
        name: request
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(friendly_name),
        region: request.region.filter(|r| !r.is_empty()),
        ttl_seconds: request.ttl_seconds,
    };
    match state.api.create_project(&body).await {
        Ok(project) => match flatten(project) {
            Some(created) => {
                tracing::info!(project = %created.project_id, %client, "database created");
                (StatusCode::CREATED, Json(created)).into_response()
            }
            None => problem(
                StatusCode::BAD_GATEWAY,
                "incomplete_response",
                "Keyward created the project but did not return its connection string or claim URL",
            ),
        },
        Err(error) => upstream_problem(&error),
    }
}

/// The flat answer of `POST /create`, when Keyward returned everything it should.
fn flatten(project: Project) -> Option<CreatedDatabase> {
    let database = project.database?;
    Some(CreatedDatabase {
        connection_string: database.connection_string?,
        claim_url: project.claim_url?,
        database_id: database.id,
        project_id: project.id,
        project_name: project.name,
        region: project.region.id,
        region_name: project.region.name,
        expires_at: project.expires_at,
        workspace: project.workspace.name,
        workspace_id: project.workspace.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_when_trusted() {
        let peer: Option<SocketAddr> = "10.0.0.1:5000".parse().ok();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.2"),
        );
        assert_eq!(client_address(peer, &headers, false), "10.0.0.1");
        assert_eq!(client_address(peer, &headers, true), "203.0.113.7");
        headers.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_address(peer, &headers, true), "10.0.0.1");
        assert_eq!(client_address(None, &HeaderMap::new(), true), "unknown");
    }
}

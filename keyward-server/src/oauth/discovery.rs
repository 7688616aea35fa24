//! Discovery documents (RFC 8414, OpenID Connect Discovery 1.0) and the JWKS (RFC 7517).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::state::AppState;

fn metadata(state: &AppState) -> Value {
    let issuer = state.settings.issuer();
    let algorithms: Vec<String> = {
        let keys = state.keys.snapshot();
        let mut algs: Vec<String> = keys.jwks(OffsetDateTime::now_utc())["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k["alg"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        algs.sort();
        algs.dedup();
        algs
    };
    json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": keyward_core::scope::MANAGEMENT_SCOPES.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "access_token_signing_alg_values_supported": algorithms,
        "authorization_response_iss_parameter_supported": true,
        "service_documentation": format!("{issuer}/api/openapi.json"),
    })
}

fn cached_json(value: Value, max_age: u32) -> Response {
    let mut response = axum::Json(value).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response
}

/// RFC 8414 authorization server metadata.
pub async fn oauth_authorization_server(State(state): State<AppState>) -> Response {
    cached_json(metadata(&state), 300)
}

/// OpenID Connect discovery. Only what this server does today is advertised.
pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    cached_json(metadata(&state), 300)
}

/// The published signing keys: the active one, the next one, and superseded ones until
/// their tokens expire.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let keys = state.keys.snapshot();
    cached_json(keys.jwks(OffsetDateTime::now_utc()), 60)
}

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
    let mut scopes: Vec<&str> = keyward_core::authz::IDENTITY_SCOPES.to_vec();
    scopes.extend(
        keyward_core::scope::MANAGEMENT_SCOPES
            .iter()
            .map(|(name, _)| *name),
    );
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "userinfo_endpoint": format!("{issuer}/oauth2/userinfo"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "end_session_endpoint": format!("{issuer}/oauth2/end-session"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash", "sid",
            "name", "preferred_username", "picture", "email", "email_verified", "phone_number", "updated_at", "acc", "role"],
        "id_token_signing_alg_values_supported": algorithms.clone(),
        "access_token_signing_alg_values_supported": algorithms,
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
        "resource_indicators_supported": true,
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

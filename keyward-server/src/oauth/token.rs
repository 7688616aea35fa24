//! `POST /oauth2/token` (RFC 6749 §3.2). One function per grant; this module parses the
//! body, authenticates the client and dispatches.
//!
//! The client-credentials path does no database write: the client and resource come from
//! the node cache, the token is a self-contained JWT.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use keyward_core::scope::{grant_scopes, is_valid_scope_token};
use keyward_core::token::{mint_access_token, TokenGrant};
use keyward_proto::{TokenRequest, TokenResponse};
use time::OffsetDateTime;

use crate::error::OAuthError;
use crate::extract::RequestId;
use crate::metrics::{ErrorLabels, GrantLabels};
use crate::oauth::client_auth::{authenticate, presented_client};
use crate::state::AppState;

/// Token request bodies are a handful of short parameters.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// Token endpoint.
#[utoipa::path(operation_id = "token_token", 
    post,
    path = "/oauth2/token",
    tag = "oauth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded",
        description = "Form-encoded per RFC 6749; `application/json` with the same fields is accepted too."),
    responses(
        (status = 200, description = "Token issued", body = TokenResponse),
        (status = 400, description = "RFC 6749 §5.2 error", body = keyward_proto::OAuthErrorBody),
        (status = 401, description = "Client authentication failed", body = keyward_proto::OAuthErrorBody),
    )
)]
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    let started = std::time::Instant::now();
    // The request taken whole: headers are read in place rather than copied out.
    let (parts, body) = request.into_parts();
    let mut response = match axum::body::to_bytes(body, MAX_TOKEN_BODY).await {
        Ok(body) => {
            let request_id = RequestId(
                parts
                    .headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            );
            respond(&state, &request_id, &parts.headers, &body).await
        }
        Err(_) => OAuthError::invalid_request("the request body is too large or unreadable")
            .into_response(),
    };
    // This route runs outside the shared middleware (see `crate::router`): it sets the
    // headers and records the metrics that the middleware would.
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    state.metrics.token_request(response.status(), started);
    response
}

async fn respond(
    state: &AppState,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    match issue(state, request_id, headers, body).await {
        Ok((grant_type, response)) => {
            state
                .metrics
                .tokens_issued
                .get_or_create(&GrantLabels { grant_type })
                .inc();
            let mut response = axum::Json(response).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => {
            state
                .metrics
                .token_errors
                .get_or_create(&ErrorLabels {
                    error: error.error.to_owned(),
                })
                .inc();
            error.into_response()
        }
    }
}

async fn issue(
    state: &AppState,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, TokenResponse), OAuthError> {
    let request = parse_body(headers, body)?;
    let presented = presented_client(
        headers,
        request.client_id.as_deref(),
        request.client_secret.as_deref(),
    )?;
    let client = authenticate(state, &presented).await?;
    let response = match request.grant_type.as_str() {
        "client_credentials" => client_credentials(state, &client, &request).await?,
        "authorization_code" => {
            super::authorization_code::exchange(state, request_id, &client, &request).await?
        }
        "refresh_token" => super::refresh::refresh(state, request_id, &client, &request).await?,
        "" => return Err(OAuthError::invalid_request("grant_type is required")),
        other => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("unsupported grant_type {other:?}"),
            ))
        }
    };
    Ok((request.grant_type, response))
}

/// Accepts `application/x-www-form-urlencoded` (RFC 6749 §4.4.2) and `application/json`.
/// A parameter sent twice is an error (RFC 6749 §3.2).
pub(crate) fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<TokenRequest, OAuthError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes(body)
            .map_err(|e| OAuthError::invalid_request(format!("malformed form body: {e}"))),
        "application/json" => serde_json::from_slice(body)
            .map_err(|e| OAuthError::invalid_request(format!("malformed JSON body: {e}"))),
        _ => Err(OAuthError::invalid_request(
            "send the request as application/x-www-form-urlencoded or application/json",
        )),
    }
}

/// Client credentials grant (RFC 6749 §4.4) for an API resource selected by `audience` or
/// `resource` (RFC 8707).
async fn client_credentials(
    state: &AppState,
    client: &keyward_core::model::Application,
    request: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    // Public clients can never hold machine-to-machine tokens (RFC 6749 §4.4: confidential
    // clients only).
    if !client.kind.is_confidential() || !client.allows_grant_type("client_credentials") {
        return Err(OAuthError::new(
            "unauthorized_client",
            "this client may not use the client_credentials grant",
        ));
    }
    let audience = match (request.audience.as_deref(), request.resource.as_deref()) {
        (Some(a), Some(r)) if a != r => {
            return Err(OAuthError::invalid_request(
                "audience and resource name different APIs",
            ))
        }
        (Some(a), _) | (None, Some(a)) if !a.is_empty() => a,
        _ => {
            return Err(OAuthError::invalid_request(
                "audience (or resource) is required for client_credentials",
            ))
        }
    };
    if let Some(scope) = &request.scope {
        if let Some(bad) = scope
            .split(' ')
            .find(|s| !s.is_empty() && !is_valid_scope_token(s))
        {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("malformed scope {bad:?}"),
            ));
        }
    }
    let resource = state
        .resource(audience)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "resource lookup failed");
            OAuthError::server_error()
        })?
        .ok_or_else(|| OAuthError::new("invalid_target", "unknown audience"))?;
    let allowed = client.scopes_for(&resource.identifier).ok_or_else(|| {
        OAuthError::new("invalid_target", "this client is not allowed this audience")
    })?;
    // Scopes the resource no longer defines are not granted even if the grant lists them.
    let allowed: Vec<String> = allowed
        .iter()
        .filter(|s| resource.scopes.iter().any(|d| &d.name == *s))
        .cloned()
        .collect();
    let scopes = grant_scopes(request.scope.as_deref(), &allowed).map_err(|missing| {
        OAuthError::new(
            "invalid_scope",
            format!("scope {missing:?} is not granted to this client"),
        )
    })?;
    let ttl_secs = client
        .access_token_ttl_secs
        .unwrap_or(resource.access_token_ttl_secs);
    let keys = state.keys.snapshot();
    let scope = scopes.join(" ");
    let (access_token, _claims) = mint_access_token(
        &keys,
        TokenGrant {
            issuer: state.settings.issuer(),
            subject: &client.client_id,
            audience: &resource.identifier,
            client_id: &client.client_id,
            scope: scope.clone(),
            ttl_secs,
            user_id: None,
            application_id: Some(client.id.clone()),
            account_id: None,
            role: None,
            grant_id: None,
        },
        OffsetDateTime::now_utc(),
    )
    .map_err(|e| {
        tracing::error!(error = %e, "could not sign access token");
        OAuthError::server_error()
    })?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: u64::try_from(ttl_secs).unwrap_or(0),
        scope: Some(scope),
        refresh_token: None,
        id_token: None,
    })
}

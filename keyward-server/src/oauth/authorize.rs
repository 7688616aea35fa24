//! `GET|POST /oauth2/authorize` (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2).
//!
//! Until the client and its redirect URI are known to be genuine, errors are shown on an
//! error page and never redirected (RFC 6749 §4.1.2.1); after that they go back to the
//! client with `state` and `iss`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use keyward_core::authz::{trusted_redirect_uri, validate_request, AuthorizeParams};
use keyward_core::scope::{is_user_delegable, MANAGEMENT_SCOPES};

use crate::extract::RequestId;
use crate::state::AppState;
use crate::web::flow;
use crate::web::templates::error_page;

pub async fn authorize_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(
        &state,
        &headers,
        &request_id,
        query.unwrap_or_default().as_bytes(),
    )
    .await
}

/// OpenID Connect Core §3.1.2.1: the authorization endpoint also accepts form posts.
pub async fn authorize_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    body: Bytes,
) -> Response {
    authorize(&state, &headers, &request_id, &body).await
}

fn bad_request(message: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, "This link does not work", message)
}

/// Parameters must not repeat (RFC 6749 §3.1).
fn parse_params(raw: &[u8]) -> Result<AuthorizeParams, String> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw).into_owned().collect();
    let mut seen = std::collections::HashSet::new();
    for (key, _) in &pairs {
        if !seen.insert(key.as_str()) {
            return Err(format!("The parameter {key} appears more than once."));
        }
    }
    serde_urlencoded::from_bytes(raw).map_err(|_| "The request is malformed.".to_owned())
}

async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    request_id: &RequestId,
    raw: &[u8],
) -> Response {
    let params = match parse_params(raw) {
        Ok(p) => p,
        Err(message) => return bad_request(&message),
    };
    let Some(client_id) = params.client_id.as_deref().filter(|c| !c.is_empty()) else {
        return bad_request("The request does not name an application (client_id is missing).");
    };
    let client = match state.client(client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return bad_request("The application is not known to this server."),
        Err(e) => {
            tracing::error!(error = %e, "client lookup failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Please try again.",
            );
        }
    };
    let redirect_uri = match trusted_redirect_uri(&client, &params) {
        Ok(uri) => uri,
        Err(untrusted) => return bad_request(&untrusted.0),
    };
    // From here on, errors go back to the client.
    let fallback = keyward_core::authz::AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        scopes: Vec::new(),
        resource: None,
        state: params
            .state
            .clone()
            .filter(|s| !s.is_empty() && s.len() <= 2048),
        nonce: None,
        code_challenge: None,
        prompt: Vec::new(),
        max_age: None,
        login_hint: None,
        claim_project_id: None,
    };
    let resource_name = match (params.resource.as_deref(), params.audience.as_deref()) {
        (Some(r), Some(a)) if r != a => {
            return flow::error_redirect(
                state,
                &fallback,
                "invalid_target",
                "resource and audience differ",
            )
        }
        (Some(r), _) | (None, Some(r)) if !r.is_empty() => Some(r.to_owned()),
        _ => None,
    };
    let resource = match resource_name {
        Some(name) => match state.resource(&name).await {
            Ok(Some(resource)) => Some(resource),
            Ok(_) => {
                return flow::error_redirect(state, &fallback, "invalid_target", "unknown resource")
            }
            Err(e) => {
                tracing::error!(error = %e, "resource lookup failed");
                return flow::error_redirect(state, &fallback, "server_error", "try again later");
            }
        },
        None => None,
    };
    let mut request = match validate_request(&client, &params, redirect_uri, resource.as_deref()) {
        Ok(request) => request,
        Err(e) => return flow::error_redirect(state, &fallback, e.error, &e.description),
    };
    // The management API as the resource: a user's token for their own connections and
    // their accounts' external applications, never the server-wide management scopes.
    if resource.as_ref().is_some_and(|r| r.management) {
        if let Some(scope) = request
            .scopes
            .iter()
            .find(|s| MANAGEMENT_SCOPES.iter().any(|(name, _)| name == s) && !is_user_delegable(s))
        {
            let description = format!("scope {scope:?} cannot be granted to a user's token");
            return flow::error_redirect(state, &request, "invalid_scope", &description);
        }
    }
    if let Some(token) = params.claim_token.as_deref() {
        // Only the partner that created the project may start its claim.
        match crate::provisioning::api::claimable_project(state, token, &client.id).await {
            Ok(project) => request.claim_project_id = Some(project.id),
            Err(e) => {
                let description = match e.code() {
                    "claim_expired" => "the claim link has expired",
                    "internal_error" => "the server could not check the claim link",
                    _ => "the claim link is not valid",
                };
                return flow::error_redirect(state, &fallback, "invalid_request", description);
            }
        }
    }
    let result = async {
        let id = flow::create(state, &request).await?;
        let pending = flow::load(state, &id)
            .await?
            .ok_or_else(|| crate::error::ApiError::Internal("interaction vanished".into()))?;
        flow::advance(state, headers, request_id, pending).await
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::error!(request_id = request_id.0.as_deref().unwrap_or("-"), error = ?e, "authorize failed");
        flow::error_redirect(state, &fallback, "server_error", "the server could not complete the request")
    })
}

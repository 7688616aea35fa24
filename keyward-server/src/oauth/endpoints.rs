//! UserInfo (OpenID Connect Core §5.3), revocation (RFC 7009), introspection (RFC 7662)
//! and RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::authz::{redirect_uri_matches, EMAIL, OPENID, PHONE, PROFILE};
use keyward_core::model::{Application, Grant};
use keyward_core::secret::secret_digest;
use keyward_core::token::{verify_access_token_any_audience, verify_id_token_hint};
use keyward_core::{AuditOutcome, UserStatus};
use keyward_proto::{AccessTokenClaims, IntrospectionResponse, UserInfo};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use time::OffsetDateTime;

use super::client_auth::{authenticate, presented_client};
use crate::audit::{self, Actor};
use crate::error::OAuthError;
use crate::extract::RequestId;
use crate::state::AppState;
use crate::web::templates::{error_page, info_page};
use crate::web::{enc, see_other, session};

/// A bearer-token error on a protected resource (RFC 6750 §3).
fn bearer_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        r#"Bearer realm="keyward", error="{error}", error_description="{description}""#
    )) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Verifies a user access token we issued whose grant is still active.
pub async fn active_user_token(
    state: &AppState,
    token: &str,
) -> Result<Option<(AccessTokenClaims, Option<Grant>)>, keyward_core::StoreError> {
    let keys = state.keys.snapshot();
    let Ok(claims) = verify_access_token_any_audience(&keys, token, state.settings.issuer()) else {
        return Ok(None);
    };
    match claims.gid.as_deref() {
        Some(gid) => {
            let now = OffsetDateTime::now_utc();
            match state.store.get_grant(gid).await? {
                Some(grant) if grant.revoked_at.is_none() && grant.user_id == claims.sub => {
                    let _ = now;
                    Ok(Some((claims, Some(grant))))
                }
                _ => Ok(None),
            }
        }
        None => Ok(Some((claims, None))),
    }
}

/// `GET|POST /oauth2/userinfo`.
pub async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = bearer_token(&headers) else {
        return bearer_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "a bearer token is required",
        );
    };
    let found = match active_user_token(&state, token).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "userinfo lookup failed");
            return OAuthError::server_error().into_response();
        }
    };
    let Some((claims, Some(_grant))) = found else {
        return bearer_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is invalid, expired or revoked",
        );
    };
    let scopes: Vec<&str> = claims.scope.split(' ').collect();
    if !scopes.contains(&OPENID) {
        return bearer_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the token lacks the openid scope",
        );
    }
    let user = match state.store.get_user(&claims.sub).await {
        Ok(Some(user)) if user.status == UserStatus::Active => user,
        Ok(_) => {
            return bearer_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the user no longer exists",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "userinfo lookup failed");
            return OAuthError::server_error().into_response();
        }
    };
    let mut info = UserInfo {
        sub: user.id.clone(),
        acc: claims.acc.clone(),
        role: claims.role.clone(),
        ..UserInfo::default()
    };
    if scopes.contains(&PROFILE) {
        info.name = user.name.clone();
        info.preferred_username = user.username.clone();
        info.picture = user.avatar.clone();
        info.updated_at = Some(user.updated_at.unix_timestamp());
    }
    if scopes.contains(&EMAIL) {
        info.email = user.primary_email.clone();
        // Keyward does not verify addresses yet; say so rather than claim it.
        info.email_verified = user.primary_email.as_ref().map(|_| false);
    }
    if scopes.contains(&PHONE) {
        info.phone_number = user.primary_phone.clone();
    }
    let mut response = axum::Json(info).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Default, Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_type_hint: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

async fn authenticated_form(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Arc<Application>, String), OAuthError> {
    let form: TokenForm = serde_urlencoded::from_bytes(body)
        .map_err(|_| OAuthError::invalid_request("malformed form body"))?;
    let presented = presented_client(
        headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    let client = authenticate(state, &presented).await?;
    let token = form
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let _ = form.token_type_hint;
    Ok((client, token))
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /oauth2/revoke` (RFC 7009). Revoking an access or refresh token revokes its grant
/// (every token issued from the same authorization, RFC 7009 §2.1). Unknown tokens and
/// tokens of other clients answer 200 as well (§2.2), and change nothing.
pub async fn revoke(
    State(state): State<AppState>,
    request_id: RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (client, token) = match authenticated_form(&state, &headers, &body).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let now = OffsetDateTime::now_utc();
    let grant_id = if token.contains('.') {
        let keys = state.keys.snapshot();
        verify_access_token_any_audience(&keys, &token, state.settings.issuer())
            .ok()
            .filter(|c| c.client_id == client.client_id)
            .and_then(|c| c.gid)
    } else {
        match state.store.find_refresh_token(&secret_digest(&token)).await {
            Ok(found) => found
                .filter(|(_, g)| g.client_id == client.client_id)
                .map(|(_, g)| g.id),
            Err(e) => {
                tracing::error!(error = %e, "revocation lookup failed");
                return OAuthError::server_error().into_response();
            }
        }
    };
    if let Some(grant_id) = grant_id {
        if let Err(e) = state.store.revoke_grant(&grant_id, now).await {
            tracing::error!(error = %e, "revocation failed");
            return OAuthError::server_error().into_response();
        }
        audit::record(
            &state,
            &request_id,
            Actor {
                kind: "client",
                id: Some(&client.client_id),
            },
            "oauth.revoke",
            "grant",
            Some(&grant_id),
            AuditOutcome::Success,
            None,
            json!({}),
        )
        .await;
    }
    no_store(StatusCode::OK.into_response())
}

/// `POST /oauth2/introspect` (RFC 7662), for authenticated confidential clients.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (client, token) = match authenticated_form(&state, &headers, &body).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    if !client.kind.is_confidential() {
        return OAuthError::new(
            "unauthorized_client",
            "introspection needs a confidential client",
        )
        .into_response();
    }
    let inactive = || no_store(axum::Json(IntrospectionResponse::default()).into_response());
    if token.contains('.') {
        return match active_user_token(&state, &token).await {
            Ok(Some((claims, _))) => no_store(
                axum::Json(IntrospectionResponse {
                    active: true,
                    scope: Some(claims.scope),
                    client_id: Some(claims.client_id),
                    sub: Some(claims.sub),
                    aud: Some(claims.aud),
                    iss: Some(claims.iss),
                    exp: Some(claims.exp),
                    iat: Some(claims.iat),
                    jti: Some(claims.jti),
                    token_type: Some("Bearer".into()),
                    acc: claims.acc,
                    role: claims.role,
                })
                .into_response(),
            ),
            Ok(None) => inactive(),
            Err(e) => {
                tracing::error!(error = %e, "introspection failed");
                OAuthError::server_error().into_response()
            }
        };
    }
    let now = OffsetDateTime::now_utc();
    match state.store.find_refresh_token(&secret_digest(&token)).await {
        Ok(Some((refresh, grant)))
            if refresh.used_at.is_none() && refresh.expires_at > now && grant.is_active(now) =>
        {
            no_store(
                axum::Json(IntrospectionResponse {
                    active: true,
                    scope: Some(grant.scopes.join(" ")),
                    client_id: Some(grant.client_id),
                    sub: Some(grant.user_id),
                    iss: Some(state.settings.issuer().to_owned()),
                    exp: Some(refresh.expires_at.unix_timestamp()),
                    iat: Some(refresh.created_at.unix_timestamp()),
                    token_type: Some("refresh_token".into()),
                    acc: grant.account_id,
                    role: grant.role.map(|r| r.as_str().to_owned()),
                    ..IntrospectionResponse::default()
                })
                .into_response(),
            )
        }
        Ok(_) => inactive(),
        Err(e) => {
            tracing::error!(error = %e, "introspection failed");
            OAuthError::server_error().into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct EndSessionParams {
    #[serde(default)]
    id_token_hint: Option<String>,
    #[serde(default)]
    post_logout_redirect_uri: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

/// `GET|POST /oauth2/end-session`. With a valid `id_token_hint` for this browser's session
/// the user is signed out at once; otherwise they confirm on the sign-out page (a link
/// from anywhere must not sign people out). `post_logout_redirect_uri` must exactly match
/// one registered for the client.
pub async fn end_session(
    State(state): State<AppState>,
    request_id: RequestId,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let raw = if body.is_empty() {
        query.unwrap_or_default().into_bytes()
    } else {
        body.to_vec()
    };
    let Ok(params) = serde_urlencoded::from_bytes::<EndSessionParams>(&raw) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Sign-out failed",
            "The request is malformed.",
        );
    };
    let keys = state.keys.snapshot();
    let hint = match params.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
        Some(hint) => match verify_id_token_hint(&keys, hint, state.settings.issuer()) {
            Ok(claims) => Some(claims),
            Err(_) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Sign-out failed",
                    "The id_token_hint is not valid.",
                )
            }
        },
        None => None,
    };
    let client_id = match (&hint, params.client_id.as_deref()) {
        (Some(h), Some(c)) if h.aud != c => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Sign-out failed",
                "client_id does not match the id_token_hint.",
            )
        }
        (Some(h), _) => Some(h.aud.clone()),
        (None, c) => c.map(str::to_owned),
    };
    let redirect = match params
        .post_logout_redirect_uri
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        Some(uri) => {
            let client = match &client_id {
                Some(id) => state.client(id).await.ok().flatten(),
                None => None,
            };
            match client {
                Some(c) if redirect_uri_matches(&c.post_logout_redirect_uris, uri) => {
                    let mut location = uri.to_owned();
                    if let Some(s) = params.state.as_deref().filter(|s| !s.is_empty()) {
                        location.push(if location.contains('?') { '&' } else { '?' });
                        location.push_str("state=");
                        location.push_str(&enc(s));
                    }
                    Some(location)
                }
                _ => {
                    return error_page(
                        StatusCode::BAD_REQUEST,
                        "Sign-out failed",
                        "The post_logout_redirect_uri is not registered for this application.",
                    )
                }
            }
        }
        None => None,
    };
    let current: Option<keyward_core::model::Session> =
        session::current(&state, &headers).await.unwrap_or_default();
    let hint_matches_session = match (&hint, &current) {
        (Some(h), Some(s)) => h.sid.as_deref() == Some(s.id.as_str()) || h.sub == s.user_id,
        _ => false,
    };
    if current.is_some() && !hint_matches_session {
        // Ask first; the form posts back to /sign-out and continues to the redirect.
        // Back here after confirming, without a session: the redirect is validated again.
        let continue_to = match (&redirect, &client_id, &params.post_logout_redirect_uri) {
            (Some(_), Some(client_id), Some(uri)) => format!(
                "/oauth2/end-session?client_id={}&post_logout_redirect_uri={}&state={}",
                enc(client_id),
                enc(uri),
                enc(params.state.as_deref().unwrap_or(""))
            ),
            _ => "/signed-out".to_owned(),
        };
        return see_other(&format!("/sign-out?continue={}", enc(&continue_to)));
    }
    let cookie = match session::end(&state, &headers).await {
        Ok(cookie) => cookie,
        Err(_) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-out failed",
                "Please try again.",
            )
        }
    };
    if let Some(s) = &current {
        audit::record(
            &state,
            &request_id,
            Actor {
                kind: "user",
                id: Some(&s.user_id),
            },
            "auth.sign_out",
            "user",
            Some(&s.user_id),
            AuditOutcome::Success,
            None,
            json!({ "client_id": client_id }),
        )
        .await;
    }
    let mut response = match redirect {
        Some(location) => see_other(&location),
        None => info_page("You are signed out", "You can close this window.", None),
    };
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

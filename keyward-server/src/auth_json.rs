//! JSON sign-up / sign-in for first-party apps (their own UI instead of the hosted pages)
//! and account-scoped tokens.
//!
//! These endpoints set or use the session cookie, so each request must prove it comes from
//! the app's own origin: the client must be first-party, `Origin` must be one of the
//! client's origins (taken from its redirect URIs), and the double-submit CSRF token must
//! be sent in `X-CSRF-Token`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyward_core::model::Application;
use keyward_core::scope::grant_scopes;
use keyward_core::token::{mint_access_token, TokenGrant};
use keyward_core::{AuditOutcome, Role};
use keyward_proto as proto;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use time::OffsetDateTime;

use crate::audit::{self, Actor};
use crate::error::ApiError;
use crate::extract::{ApiJson, RequestId};
use crate::oauth::endpoints::active_user_token;
use crate::state::AppState;
use crate::web::session::{self, SignIn};
use crate::web::{ClientAddr, Csrf};

/// `GET /auth/csrf`: a CSRF token (and its cookie) for the JSON endpoints.
pub async fn csrf(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let csrf = Csrf::for_request(&state, &headers);
    let mut response = Json(json!({ "csrf_token": csrf.token })).into_response();
    csrf.apply(&mut response);
    response
}

/// The origins (`scheme://host[:port]`) of the client's redirect URIs.
fn client_origins(client: &Application) -> Vec<String> {
    client
        .redirect_uris
        .iter()
        .chain(client.post_logout_redirect_uris.iter())
        .filter_map(|u| url::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .collect()
}

/// Checks client (first-party), Origin and CSRF for a cookie-based JSON call.
async fn first_party_call(
    state: &AppState,
    headers: &HeaderMap,
    client_id: &str,
) -> Result<Arc<Application>, ApiError> {
    let client = state
        .client(client_id)
        .await?
        .filter(|c| c.first_party)
        .ok_or(ApiError::Forbidden {
            code: "not_first_party",
            detail: "only first-party applications may use this endpoint".into(),
        })?;
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if origin.is_empty() || !client_origins(&client).iter().any(|o| o == origin) {
        return Err(ApiError::Forbidden {
            code: "origin_not_allowed",
            detail: "the request's Origin is not one of the application's origins".into(),
        });
    }
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !Csrf::verify(headers, token) {
        return Err(ApiError::Forbidden {
            code: "csrf_failed",
            detail: "send the token from GET /auth/csrf in X-CSRF-Token".into(),
        });
    }
    Ok(client)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInBody {
    pub client_id: String,
    /// Username, email or phone.
    pub login: String,
    pub password: String,
}

/// `POST /auth/sign-in`.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    ClientAddr(addr): ClientAddr,
    body: Result<ApiJson<SignInBody>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    first_party_call(&state, &headers, &body.client_id).await?;
    let outcome = session::verify_credentials(&state, &body.login, &body.password, &addr).await?;
    let user = match outcome {
        SignIn::Success(user) => user,
        other => {
            let error = match other {
                SignIn::Throttled => ApiError::TooManyRequests,
                SignIn::Suspended => ApiError::Forbidden {
                    code: "user_suspended",
                    detail: "the account is suspended".into(),
                },
                _ => ApiError::Unauthenticated("wrong login or password"),
            };
            audit::record(
                &state,
                &request_id,
                Actor {
                    kind: "anonymous",
                    id: None,
                },
                "auth.sign_in",
                "user",
                None,
                AuditOutcome::Denied,
                Some(error.code()),
                json!({ "client_id": body.client_id, "client_address": addr }),
            )
            .await;
            return Err(error.with_request_id(request_id.0.as_deref()));
        }
    };
    let (_session, cookie) = session::start(&state, &headers, &user.id).await?;
    audit::record(
        &state,
        &request_id,
        Actor {
            kind: "user",
            id: Some(&user.id),
        },
        "auth.sign_in",
        "user",
        Some(&user.id),
        AuditOutcome::Success,
        None,
        json!({ "client_id": body.client_id }),
    )
    .await;
    let mut response = Json(proto::User::from(*user)).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignUpBody {
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub password: String,
}

/// `POST /auth/sign-up`: creates the user and signs them in.
pub async fn sign_up(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    body: Result<ApiJson<SignUpBody>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    let client = first_party_call(&state, &headers, &body.client_id).await?;
    let user = crate::web::pages::register_user(
        &state,
        body.username,
        body.email,
        body.name,
        body.password,
        Some(client.id.clone()),
    )
    .await?;
    let (_session, cookie) = session::start(&state, &headers, &user.id).await?;
    audit::record(
        &state,
        &request_id,
        Actor {
            kind: "user",
            id: Some(&user.id),
        },
        "auth.sign_up",
        "user",
        Some(&user.id),
        AuditOutcome::Success,
        None,
        json!({ "client_id": client.client_id }),
    )
    .await;
    let mut response = (StatusCode::CREATED, Json(proto::User::from(user))).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountTokenBody {
    /// The API the token is for (`resource` is accepted too).
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    /// The first-party app asking (cookie sessions); bearer calls use the token's client.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// `POST /api/accounts/{account_id}/token`: an access token for `audience` scoped to one
/// account (`acc`, `role`), for a signed-in member of that account. The caller is a
/// browser session of a first-party app (Origin + CSRF checked) or a user access token.
pub async fn account_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Path(account_id): Path<String>,
    body: Result<ApiJson<AccountTokenBody>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let (user_id, client) = match bearer {
        Some(token) => {
            let (claims, grant) =
                active_user_token(&state, &token)
                    .await?
                    .ok_or(ApiError::Unauthenticated(
                        "the access token is invalid or expired",
                    ))?;
            if grant.is_none() || claims.uid.is_none() {
                return Err(ApiError::Unauthenticated("a user access token is required"));
            }
            let client =
                state
                    .client(&claims.client_id)
                    .await?
                    .ok_or(ApiError::Unauthenticated(
                        "the token's client no longer exists",
                    ))?;
            (claims.sub, client)
        }
        None => {
            let client_id = body.client_id.as_deref().ok_or(ApiError::validation(
                "client_id",
                "client_id is required with a session cookie",
            ))?;
            let client = first_party_call(&state, &headers, client_id).await?;
            let session = session::current(&state, &headers)
                .await?
                .ok_or(ApiError::Unauthenticated("sign in first"))?;
            // A user signed in with an emailed code sets a password before anything else
            // (`/auth/set-password`), here as in the authorization flow.
            let user = state.store.get_user(&session.user_id).await?;
            if user.is_some_and(|u| u.password_digest.is_none()) {
                return Err(ApiError::Forbidden {
                    code: "password_required",
                    detail: "set a password first at /auth/set-password".into(),
                });
            }
            (session.user_id, client)
        }
    };
    let membership =
        if keyward_core::id::is_valid_id(keyward_core::id::IdKind::Account, &account_id) {
            state.store.get_member(&account_id, &user_id).await?
        } else {
            None
        };
    let Some(membership) = membership else {
        audit::record(
            &state,
            &request_id,
            Actor {
                kind: "user",
                id: Some(&user_id),
            },
            "account.token",
            "account",
            Some(&account_id),
            AuditOutcome::Denied,
            Some("not_a_member"),
            json!({}),
        )
        .await;
        return Err(ApiError::Forbidden {
            code: "not_a_member",
            detail: "you are not a member of this account".into(),
        });
    };
    let audience = body
        .audience
        .or(body.resource)
        .filter(|a| !a.is_empty())
        .ok_or(ApiError::validation("audience", "audience is required"))?;
    let resource = state
        .resource(&audience)
        .await?
        .filter(|r| !r.management)
        .ok_or(ApiError::validation("audience", "unknown audience"))?;
    let allowed: Vec<String> = client
        .scopes_for(&resource.identifier)
        .ok_or(ApiError::Forbidden {
            code: "audience_not_allowed",
            detail: "the application has no access to this audience".into(),
        })?
        .iter()
        .filter(|s| resource.scopes.iter().any(|d| &d.name == *s))
        .cloned()
        .collect();
    let scopes = grant_scopes(body.scope.as_deref(), &allowed).map_err(|missing| {
        ApiError::validation("scope", format!("scope {missing:?} is not available"))
    })?;
    let ttl_secs = client
        .access_token_ttl_secs
        .unwrap_or(resource.access_token_ttl_secs);
    let keys = state.keys.snapshot();
    let scope = scopes.join(" ");
    let role: Role = membership.role;
    let (access_token, _) = mint_access_token(
        &keys,
        TokenGrant {
            issuer: state.settings.issuer(),
            subject: &user_id,
            audience: &resource.identifier,
            client_id: &client.client_id,
            scope: scope.clone(),
            ttl_secs,
            user_id: Some(user_id.clone()),
            application_id: Some(client.id.clone()),
            account_id: Some(account_id.clone()),
            role: Some(role.as_str().to_owned()),
            grant_id: None,
        },
        OffsetDateTime::now_utc(),
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    audit::record(
        &state,
        &request_id,
        Actor {
            kind: "user",
            id: Some(&user_id),
        },
        "account.token",
        "account",
        Some(&account_id),
        AuditOutcome::Success,
        None,
        json!({ "audience": resource.identifier, "client_id": client.client_id }),
    )
    .await;
    let mut response = Json(proto::TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: u64::try_from(ttl_secs).unwrap_or(0),
        scope: Some(scope),
        refresh_token: None,
        id_token: None,
    })
    .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

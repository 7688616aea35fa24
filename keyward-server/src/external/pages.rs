//! The interactive authorization of an external application: the approval prompt
//! (`GET /external-applications/{id}/authorize`), the redirect to the server's
//! authorization page (`POST` of the prompt), and the application's own callback
//! (`GET /external-applications/{id}/callback`).
//!
//! `state` is single-use, bound to the Keyward session that started it and to the
//! application (RFC 9700 §4.7); PKCE S256 unless the application turns it off (RFC 7636);
//! a response arriving at another application's callback is refused (mix-up defence,
//! RFC 9700 §4.4), and so is an `iss` that is not the configured issuer (RFC 9207 §2.4).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use base64::Engine;
use keyward_core::external::{
    expiry, verifier_aad, ConnectionState, ConnectionTokens, ExternalApplication,
    ExternalAuthorization, ExternalConnection,
};
use keyward_core::id::{is_valid_id, new_id, IdKind};
use keyward_core::model::Session;
use keyward_core::secret::{random_token, secret_digest};
use keyward_core::AuditOutcome;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::{callback_url, exchange_code, seal_tokens, ExternalError};
use crate::audit::{self, Actor};
use crate::error::ApiError;
use crate::extract::RequestId;
use crate::state::AppState;
use crate::web::pages::local_path;
use crate::web::session;
use crate::web::templates::{error_page, info_page, page};
use crate::web::{enc, see_other, Csrf};

/// How long the user has at the external server to approve.
const AUTHORIZATION_TTL: Duration = Duration::minutes(10);

fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "This external application does not exist, or you are not a member of its account.",
    )
}

fn disabled() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Application disabled",
        "An administrator has disabled this external application. Ask them to enable it.",
    )
}

fn failed(e: ApiError, request_id: &RequestId) -> Response {
    tracing::error!(request_id = request_id.0.as_deref().unwrap_or("-"), error = ?e, "external authorization page failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Please try again in a moment.",
    )
}

/// The signed-in member and the application, or the page to answer instead.
async fn context(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    return_here: &str,
) -> Result<Result<(Session, ExternalApplication), Response>, ApiError> {
    if !is_valid_id(IdKind::ExternalApplication, id) {
        return Ok(Err(not_found()));
    }
    let Some(session) = session::current(state, headers).await? else {
        return Ok(Err(see_other(&format!(
            "/sign-in?return_to={}",
            enc(return_here)
        ))));
    };
    let Some(app) = state.store.get_external_application(id).await? else {
        return Ok(Err(not_found()));
    };
    if state
        .store
        .get_member(&app.account_id, &session.user_id)
        .await?
        .is_none()
    {
        return Ok(Err(not_found()));
    }
    if !app.enabled {
        return Ok(Err(disabled()));
    }
    Ok(Ok((session, app)))
}

#[derive(Debug, Deserialize)]
pub struct PromptQuery {
    #[serde(default)]
    return_to: Option<String>,
}

#[derive(Serialize)]
struct PromptPage<'a> {
    id: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    approval_prompt: &'a str,
    scopes: &'a [String],
    user_label: String,
    connected: bool,
    csrf_token: &'a str,
    return_to: &'a str,
    authorization_host: String,
}

/// `GET /external-applications/{id}/authorize`: the approval prompt.
pub async fn prompt(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Path(id): Path<String>,
    Query(query): Query<PromptQuery>,
) -> Response {
    let return_to = local_path(query.return_to.as_deref()).unwrap_or_default();
    let here = match return_to {
        "" => format!("/external-applications/{id}/authorize"),
        r => format!("/external-applications/{id}/authorize?return_to={}", enc(r)),
    };
    let result = async {
        let (session, app) = match context(&state, &headers, &id, &here).await? {
            Ok(c) => c,
            Err(page) => return Ok(page),
        };
        let user = state.store.get_user(&session.user_id).await?;
        let user_label = user
            .as_ref()
            .and_then(|u| {
                u.primary_email
                    .clone()
                    .or(u.username.clone())
                    .or(u.name.clone())
            })
            .unwrap_or_else(|| session.user_id.clone());
        let connected = state
            .store
            .find_external_connection(&app.id, &session.user_id)
            .await?
            .is_some();
        let csrf = Csrf::for_request(&state, &headers);
        let authorization_host = url::Url::parse(&app.authorization_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let mut response = page(
            StatusCode::OK,
            "external_authorize.html",
            PromptPage {
                id: &app.id,
                name: &app.name,
                description: app.description.as_deref(),
                approval_prompt: &app.approval_prompt,
                scopes: &app.scopes,
                user_label,
                connected,
                csrf_token: &csrf.token,
                return_to,
                authorization_host,
            },
        );
        csrf.apply(&mut response);
        Ok::<_, ApiError>(response)
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

#[derive(Debug, Deserialize)]
pub struct PromptForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    return_to: Option<String>,
    #[serde(default)]
    decision: String,
}

/// `POST /external-applications/{id}/authorize`: the user continues; off to the server.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Path(id): Path<String>,
    Form(form): Form<PromptForm>,
) -> Response {
    if !Csrf::verify(&headers, &form.csrf_token) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "The form expired or did not come from this site. Go back and try again.",
        );
    }
    let return_to = local_path(form.return_to.as_deref()).map(str::to_owned);
    if form.decision != "continue" {
        return match &return_to {
            Some(path) => see_other(path),
            None => info_page("Not connected", "Nothing was connected.", None),
        };
    }
    let result = async {
        let here = format!("/external-applications/{id}/authorize");
        let (session, app) = match context(&state, &headers, &id, &here).await? {
            Ok(c) => c,
            Err(page) => return Ok(page),
        };
        let state_value = random_token(32);
        let state_digest = secret_digest(&state_value);
        let now = OffsetDateTime::now_utc();
        let (verifier_sealed, challenge) = if app.use_pkce {
            // RFC 7636 §4.1: 32 random octets, base64url — 43 characters.
            let verifier = random_token(32);
            let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()));
            let (sealed, _) =
                crate::vault::seal(&state, verifier.as_bytes(), &verifier_aad(&state_digest))?;
            (Some(sealed), Some(challenge))
        } else {
            (None, None)
        };
        state
            .store
            .create_external_authorization(&ExternalAuthorization {
                state_digest,
                external_application_id: app.id.clone(),
                user_id: session.user_id.clone(),
                session_id: session.id.clone(),
                code_verifier_sealed: verifier_sealed,
                return_to,
                created_at: now,
                expires_at: now + AUTHORIZATION_TTL,
            })
            .await?;
        let mut url = url::Url::parse(&app.authorization_url)
            .map_err(|e| ApiError::Internal(format!("stored authorization_url: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &app.client_id)
                .append_pair("redirect_uri", &callback_url(&state, &app.id))
                .append_pair("state", &state_value);
            if !app.scopes.is_empty() {
                query.append_pair("scope", &app.scopes.join(" "));
            }
            if let Some(challenge) = &challenge {
                query
                    .append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok::<_, ApiError>(see_other(url.as_str()))
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn refused(message: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, "Connection failed", message)
}

/// `GET /external-applications/{id}/callback`: the server's authorization response.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Path(id): Path<String>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let result = async {
        let Some(state_value) = query.state.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(refused("The response carries no state. Start again from the application."));
        };
        let now = OffsetDateTime::now_utc();
        let Some(pending) = state
            .store
            .take_external_authorization(&secret_digest(state_value), now)
            .await?
        else {
            return Ok(refused(
                "This authorization expired or was already used. Start again from the application.",
            ));
        };
        // Bound to the application whose callback this is, and to the browser session
        // that started it.
        if pending.external_application_id != id {
            return Ok(refused("The response arrived at another application's address."));
        }
        let session = session::current(&state, &headers).await?;
        if session.as_ref().map(|s| s.id.as_str()) != Some(pending.session_id.as_str()) {
            return Ok(refused(
                "This authorization was started in another session. Sign in and start again.",
            ));
        }
        let Some(app) = state.store.get_external_application(&id).await? else {
            return Ok(not_found());
        };
        if !app.enabled {
            return Ok(disabled());
        }
        let audit_failure = |reason: String| {
            let state = state.clone();
            let request_id = request_id.clone();
            let user_id = pending.user_id.clone();
            let app_id = app.id.clone();
            async move {
                audit::record(
                    &state,
                    &request_id,
                    Actor {
                        kind: "user",
                        id: Some(&user_id),
                    },
                    "connection.create",
                    "external_application",
                    Some(&app_id),
                    AuditOutcome::Failure,
                    Some(&reason),
                    json!({}),
                )
                .await;
            }
        };
        // RFC 9207 §2.4: an `iss` that is not the server we sent the user to is a mix-up.
        if let (Some(expected), Some(iss)) = (&app.issuer, &query.iss) {
            if expected.trim_end_matches('/') != iss.trim_end_matches('/') {
                audit_failure("issuer_mismatch".into()).await;
                return Ok(refused(
                    "The response names another authorization server (iss). Nothing was connected.",
                ));
            }
        }
        if let Some(error) = &query.error {
            audit_failure(error.clone()).await;
            let message = match error.as_str() {
                "access_denied" => "You declined at the external server. Nothing was connected.".to_owned(),
                other => format!(
                    "The external server refused: {other}{}",
                    query
                        .error_description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            };
            return Ok(refused(&message));
        }
        let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(refused("The response carries no authorization code."));
        };
        let verifier = match &pending.code_verifier_sealed {
            Some(sealed) => Some(
                String::from_utf8(
                    crate::vault::open(&state, sealed, &verifier_aad(&pending.state_digest))
                        .await
                        .map_err(|e| ApiError::Internal(format!("PKCE verifier: {e}")))?,
                )
                .map_err(|_| ApiError::Internal("PKCE verifier is not UTF-8".into()))?,
            ),
            None => None,
        };
        let fields = match exchange_code(&state, &app, code, verifier.as_deref()).await {
            Ok(fields) => fields,
            Err(e) => {
                let reason = match &e {
                    ExternalError::InvalidGrant(_) => "invalid_grant",
                    ExternalError::Egress(_) => "egress_refused",
                    _ => "provider_error",
                };
                tracing::warn!(application = %app.id, error = ?e, "code exchange failed");
                audit_failure(reason.into()).await;
                return Ok(error_page(
                    StatusCode::BAD_GATEWAY,
                    "Connection failed",
                    "The external server did not complete the connection. Try again; if it keeps failing, tell an administrator.",
                ));
            }
        };
        let connection_id = new_id(IdKind::Connection);
        let tokens = ConnectionTokens {
            access_token: fields.access_token,
            refresh_token: fields.refresh_token,
            token_type: fields.token_type,
        };
        let (sealed, key_id) =
            seal_tokens(&state, &connection_id, &app.id, &pending.user_id, &tokens)?;
        let connection = ExternalConnection {
            id: connection_id.clone(),
            external_application_id: app.id.clone(),
            user_id: pending.user_id.clone(),
            state: ConnectionState::Active,
            tokens_sealed: sealed,
            key_id,
            scope: fields.scope,
            expires_at: expiry(now, fields.expires_in, app.default_expires_in_secs),
            created_at: now,
            updated_at: now,
            last_refreshed_at: None,
        };
        state.store.save_external_connection(&connection).await?;
        audit::record(
            &state,
            &request_id,
            Actor {
                kind: "user",
                id: Some(&pending.user_id),
            },
            "connection.create",
            "connection",
            Some(&connection_id),
            AuditOutcome::Success,
            None,
            json!({ "external_application_id": app.id, "scope": connection.scope }),
        )
        .await;
        Ok::<_, ApiError>(match pending.return_to.as_deref() {
            Some(path) => see_other(path),
            None => info_page(
                &format!("Connected to {}", app.name),
                "Your workflows can now use this connection. You can close this window.",
                None,
            ),
        })
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

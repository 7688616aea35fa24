//! The authorization flow between `/oauth2/authorize` and the redirect back to the client:
//! which step the user is at (sign in, set a password, pick a workspace, consent), and
//! issuing the code.
//!
//! The pending request lives in the database as an `Interaction`, so any node can serve
//! any step. Every step ends by calling [`advance`], which decides what comes next.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use keyward_core::authz::{AuthorizationRequest, WORKSPACE_ADMIN};
use keyward_core::id::{new_id, IdKind};
use keyward_core::model::{AuthorizationCode, Grant, Interaction, Session};
use keyward_core::secret::{random_token, secret_digest};
use keyward_core::{AuditOutcome, Role, UserStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::templates::error_page;
use super::{enc, see_other};
use crate::audit::{self, Actor};
use crate::error::ApiError;
use crate::extract::RequestId;
use crate::state::AppState;

/// The forced set-password step (a user without a password who signed in with an emailed
/// code).
pub const SET_PASSWORD_PATH: &str = "/auth/set-password";

/// What has happened so far in one interaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// The user who signed in *during* this interaction (for `prompt=login`, `max_age`).
    #[serde(default)]
    pub signed_in_user: Option<String>,
    /// The user the steps below were done for.
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub consented: bool,
}

/// A loaded interaction.
pub struct Pending {
    pub interaction: Interaction,
    pub request: AuthorizationRequest,
    pub progress: Progress,
}

impl Pending {
    pub async fn save(&self, state: &AppState) -> Result<(), ApiError> {
        let value =
            serde_json::to_value(&self.progress).map_err(|e| ApiError::Internal(e.to_string()))?;
        state
            .store
            .update_interaction_state(&self.interaction.id, &value)
            .await?;
        Ok(())
    }
}

/// The page shown for a missing or expired interaction.
pub fn expired_page() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-in has expired",
        "Go back to the application and start again.",
    )
}

/// Loads a live interaction; `None` when it is unknown or expired.
pub async fn load(state: &AppState, id: &str) -> Result<Option<Pending>, ApiError> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    let now = OffsetDateTime::now_utc();
    let Some(interaction) = state.store.get_interaction(id, now).await? else {
        return Ok(None);
    };
    let request: AuthorizationRequest = serde_json::from_value(interaction.request.clone())
        .map_err(|e| ApiError::Internal(format!("stored interaction: {e}")))?;
    let progress: Progress = serde_json::from_value(interaction.state.clone()).unwrap_or_default();
    Ok(Some(Pending {
        interaction,
        request,
        progress,
    }))
}

/// Stores a new interaction for a validated request and returns its id.
pub async fn create(state: &AppState, request: &AuthorizationRequest) -> Result<String, ApiError> {
    let now = OffsetDateTime::now_utc();
    let interaction = Interaction {
        id: random_token(24),
        client_id: request.client_id.clone(),
        request: serde_json::to_value(request).map_err(|e| ApiError::Internal(e.to_string()))?,
        state: json!({}),
        created_at: now,
        expires_at: now + Duration::seconds(state.settings.interaction_ttl_secs),
    };
    state.store.create_interaction(&interaction).await?;
    Ok(interaction.id)
}

/// `redirect_uri` with `params` appended to its query (RFC 6749 §4.1.2), always with `iss`
/// (RFC 9207) and `state` when the request had one.
pub fn client_redirect(
    state: &AppState,
    request: &AuthorizationRequest,
    params: &[(&str, &str)],
) -> Response {
    let mut location = request.redirect_uri.clone();
    let mut separator = if location.contains('?') { '&' } else { '?' };
    let issuer = state.settings.issuer().to_owned();
    let mut all: Vec<(&str, &str)> = params.to_vec();
    if let Some(s) = request.state.as_deref() {
        all.push(("state", s));
    }
    all.push(("iss", &issuer));
    for (key, value) in all {
        location.push(separator);
        location.push_str(key);
        location.push('=');
        location.push_str(&enc(value));
        separator = '&';
    }
    see_other(&location)
}

/// An error sent to the client's redirect URI.
pub fn error_redirect(
    state: &AppState,
    request: &AuthorizationRequest,
    error: &str,
    description: &str,
) -> Response {
    client_redirect(
        state,
        request,
        &[("error", error), ("error_description", description)],
    )
}

/// Decides the next step of the interaction and answers with the redirect to it: a hosted
/// page, or the client's redirect URI with a code or an error.
pub async fn advance(
    state: &AppState,
    headers: &HeaderMap,
    request_id: &RequestId,
    mut pending: Pending,
) -> Result<Response, ApiError> {
    let id = enc(&pending.interaction.id);
    let request = pending.request.clone();
    let prompt_none = request.has_prompt("none");
    let Some(client) = state.client(&request.client_id).await? else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "The application that sent you here no longer exists.",
        ));
    };
    let session = super::session::current(state, headers).await?;

    // 1. Who is the user? (prompt=login and max_age force a sign-in in this interaction.)
    let signed_in_here =
        |s: &Session| pending.progress.signed_in_user.as_deref() == Some(&s.user_id);
    let now = OffsetDateTime::now_utc();
    let session = match session {
        Some(s) if request.has_prompt("login") && !signed_in_here(&s) => None,
        Some(s)
            if request
                .max_age
                .is_some_and(|max| (now - s.auth_time).whole_seconds() > max)
                && !signed_in_here(&s) =>
        {
            None
        }
        other => other,
    };
    let Some(session) = session else {
        if prompt_none {
            return Ok(error_redirect(
                state,
                &request,
                "login_required",
                "the user is not signed in",
            ));
        }
        return Ok(see_other(&format!("/sign-in?interaction={id}")));
    };
    if pending.progress.user_id.as_deref() != Some(&session.user_id) {
        // Another user signed in meanwhile: nothing chosen for the previous one carries over.
        pending.progress = Progress {
            signed_in_user: pending.progress.signed_in_user.clone(),
            user_id: Some(session.user_id.clone()),
            ..Progress::default()
        };
        pending.save(state).await?;
    }
    let Some(user) = state.store.get_user(&session.user_id).await? else {
        return Ok(see_other(&format!("/sign-in?interaction={id}")));
    };
    if user.status != UserStatus::Active {
        return Ok(error_redirect(
            state,
            &request,
            "access_denied",
            "the account is suspended",
        ));
    }

    // 2. A user without a password (imported without one, signed in with an emailed code)
    //    sets one before anything else. The rule is the user's, not the interaction's: a
    //    new authorization request lands here again until the password is set.
    if user.password_digest.is_none() {
        if prompt_none {
            return Ok(error_redirect(
                state,
                &request,
                "interaction_required",
                "the user must set a password",
            ));
        }
        return Ok(see_other(&format!("{SET_PASSWORD_PATH}?interaction={id}")));
    }

    // 3. Which workspace? (`workspace:admin`: one where the user is owner or admin.)
    let mut role = None;
    if request.has_scope(WORKSPACE_ADMIN) {
        let membership = match pending.progress.account_id.as_deref() {
            Some(account_id) => state.store.get_member(account_id, &user.id).await?,
            None => None,
        };
        match membership {
            Some(m) if matches!(m.role, Role::Owner | Role::Admin) => role = Some(m.role),
            _ if prompt_none => {
                return Ok(error_redirect(
                    state,
                    &request,
                    "interaction_required",
                    "the user must choose a workspace",
                ))
            }
            _ => return Ok(see_other(&format!("/workspace?interaction={id}"))),
        }
    }

    // 4. Consent: not for first-party applications; remembered per user, client, resource.
    let consent_needed = if pending.progress.consented {
        false
    } else if request.has_prompt("consent") || request.claim_project_id.is_some() {
        // A claim moves a project between workspaces: always asked, never remembered.
        true
    } else if client.first_party {
        false
    } else {
        let stored = state
            .store
            .get_consent(
                &user.id,
                &client.client_id,
                request.resource.as_deref().unwrap_or(""),
            )
            .await?;
        !stored.is_some_and(|c| request.scopes.iter().all(|s| c.scopes.contains(s)))
    };
    if consent_needed {
        if prompt_none {
            return Ok(error_redirect(
                state,
                &request,
                "consent_required",
                "the user must consent",
            ));
        }
        return Ok(see_other(&format!("/consent?interaction={id}")));
    }

    // 5. Done: a grant and its single-use code.
    let code = random_token(32);
    let grant = Grant {
        id: new_id(IdKind::Grant),
        user_id: user.id.clone(),
        client_id: client.client_id.clone(),
        scopes: request.scopes.clone(),
        resource: request.resource.clone(),
        account_id: role.and(pending.progress.account_id.clone()),
        role,
        session_id: Some(session.id.clone()),
        auth_time: session.auth_time,
        created_at: now,
        expires_at: now + Duration::seconds(state.settings.refresh_token_absolute_secs),
        revoked_at: None,
    };
    let authorization_code = AuthorizationCode {
        digest: secret_digest(&code),
        grant_id: grant.id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        created_at: now,
        expires_at: now + Duration::seconds(state.settings.authorization_code_ttl_secs),
        redeemed_at: None,
    };
    state
        .store
        .create_grant_with_code(&grant, &authorization_code)
        .await?;
    state
        .store
        .delete_interaction(&pending.interaction.id)
        .await?;
    audit::record(
        state,
        request_id,
        Actor {
            kind: "user",
            id: Some(&user.id),
        },
        "oauth.authorize",
        "grant",
        Some(&grant.id),
        AuditOutcome::Success,
        None,
        json!({ "client_id": client.client_id, "scope": request.scopes.join(" "),
                "account_id": grant.account_id }),
    )
    .await;
    let mut params: Vec<(&str, &str)> = vec![("code", &code)];
    if let Some(project_id) = request.claim_project_id.as_deref() {
        params.push(("project_id", project_id));
    }
    Ok(client_redirect(state, &request, &params))
}

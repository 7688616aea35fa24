//! The refresh token grant (RFC 6749 §6) with rotation on every use. Presenting a token
//! that was already rotated revokes the whole family (RFC 9700 §4.14.2): one of the two
//! parties holding it is an attacker, and the server cannot tell which.

use keyward_core::model::Application;
use keyward_core::scope::parse_scopes;
use keyward_core::secret::secret_digest;
use keyward_core::store::RefreshRotation;
use keyward_core::{AuditOutcome, Role};
use keyward_proto::{TokenRequest, TokenResponse};
use serde_json::json;
use time::OffsetDateTime;

use super::user_tokens;
use crate::audit::{self, Actor};
use crate::error::OAuthError;
use crate::extract::RequestId;
use crate::state::AppState;

fn store_failed(e: keyward_core::StoreError) -> OAuthError {
    tracing::error!(error = %e, "store failure in the refresh grant");
    OAuthError::server_error()
}

fn invalid() -> OAuthError {
    OAuthError::new(
        "invalid_grant",
        "the refresh token is invalid, expired or revoked",
    )
}

pub async fn refresh(
    state: &AppState,
    request_id: &RequestId,
    client: &Application,
    request: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    if !client.allows_grant_type("refresh_token") {
        return Err(OAuthError::new(
            "unauthorized_client",
            "this client may not use the refresh_token grant",
        ));
    }
    let presented = request
        .refresh_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let digest = secret_digest(presented);
    // The token must belong to this client before anything changes (RFC 6749 §6).
    let (_, owner) = state
        .store
        .find_refresh_token(&digest)
        .await
        .map_err(store_failed)?
        .ok_or_else(invalid)?;
    if owner.client_id != client.client_id {
        return Err(invalid());
    }
    let now = OffsetDateTime::now_utc();
    let (value, record) = user_tokens::new_refresh_token(state, &owner.id, now);
    let grant = match state
        .store
        .rotate_refresh_token(&digest, &record, now)
        .await
        .map_err(store_failed)?
    {
        RefreshRotation::Rotated(grant) => grant,
        RefreshRotation::Replayed { grant_id } => {
            audit::record(
                state,
                request_id,
                Actor {
                    kind: "client",
                    id: Some(&client.client_id),
                },
                "oauth.refresh_reuse",
                "grant",
                Some(&grant_id),
                AuditOutcome::Denied,
                Some("refresh_token_reused"),
                json!({ "revoked": true }),
            )
            .await;
            return Err(invalid());
        }
        RefreshRotation::Invalid => return Err(invalid()),
    };
    // A narrower scope may be asked for; never a wider one (RFC 6749 §6).
    let scopes = match request.scope.as_deref() {
        Some(scope) => {
            let asked = parse_scopes(scope);
            if let Some(extra) = asked.iter().find(|s| !grant.scopes.contains(s)) {
                return Err(OAuthError::new(
                    "invalid_scope",
                    format!("scope {extra:?} was not granted"),
                ));
            }
            asked
        }
        None => grant.scopes.clone(),
    };
    // The workspace role is re-read: a user demoted or removed since the grant does not
    // keep administering the workspace through an old refresh token.
    let mut grant = *grant;
    if let Some(account_id) = grant.account_id.clone() {
        let member = state
            .store
            .get_member(&account_id, &grant.user_id)
            .await
            .map_err(store_failed)?;
        match member {
            Some(m) if matches!(m.role, Role::Owner | Role::Admin) => grant.role = Some(m.role),
            _ => {
                let _ = state.store.revoke_grant(&grant.id, now).await;
                return Err(OAuthError::new(
                    "invalid_grant",
                    "the user no longer administers the workspace",
                ));
            }
        }
    }
    // The user must still exist and be active.
    match state
        .store
        .get_user(&grant.user_id)
        .await
        .map_err(store_failed)?
    {
        Some(user) if user.status == keyward_core::UserStatus::Active => {}
        _ => return Err(invalid()),
    }
    user_tokens::mint(state, client, &grant, &scopes, None, Some(value)).await
}

//! The authorization code grant at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.5).
//!
//! A code is single use. A second redemption fails with `invalid_grant` and revokes the
//! grant, so every token issued from the code stops working (RFC 9700 §4.5.3); of two
//! concurrent redemptions exactly one wins (the store spends the code atomically).

use keyward_core::authz::verify_pkce_s256;
use keyward_core::model::Application;
use keyward_core::secret::secret_digest;
use keyward_core::store::CodeRedemption;
use keyward_core::AuditOutcome;
use keyward_proto::{TokenRequest, TokenResponse};
use serde_json::json;
use time::OffsetDateTime;

use super::user_tokens;
use crate::audit::{self, Actor};
use crate::error::OAuthError;
use crate::extract::RequestId;
use crate::state::AppState;

fn store_failed(e: keyward_core::StoreError) -> OAuthError {
    tracing::error!(error = %e, "store failure in the code grant");
    OAuthError::server_error()
}

pub async fn exchange(
    state: &AppState,
    request_id: &RequestId,
    client: &Application,
    request: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    if !client.allows_grant_type("authorization_code") {
        return Err(OAuthError::new(
            "unauthorized_client",
            "this client may not use the authorization_code grant",
        ));
    }
    let code = request
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let now = OffsetDateTime::now_utc();
    let redemption = state
        .store
        .redeem_code(&secret_digest(code), now)
        .await
        .map_err(store_failed)?;
    let (code, grant) = match redemption {
        CodeRedemption::Redeemed { code, grant } => (code, grant),
        CodeRedemption::Replayed { grant_id } => {
            audit::record(
                state,
                request_id,
                Actor {
                    kind: "client",
                    id: Some(&client.client_id),
                },
                "oauth.code_replay",
                "grant",
                Some(&grant_id),
                AuditOutcome::Denied,
                Some("code_reused"),
                json!({ "revoked": true }),
            )
            .await;
            return Err(OAuthError::new(
                "invalid_grant",
                "the authorization code was already used; tokens issued from it are revoked",
            ));
        }
        CodeRedemption::Invalid => {
            return Err(OAuthError::new(
                "invalid_grant",
                "the authorization code is invalid or expired",
            ))
        }
    };
    // The code is spent now. Anything wrong from here on may be an attack with a stolen
    // code, so the grant is revoked as well.
    let grant_id = grant.id.clone();
    let refuse = |description: &'static str| async move {
        if let Err(e) = state.store.revoke_grant(&grant_id, now).await {
            tracing::error!(error = %e, "could not revoke grant");
        }
        Err::<TokenResponse, _>(OAuthError::new("invalid_grant", description))
    };
    if grant.client_id != client.client_id {
        return refuse("the code was issued to another client").await;
    }
    // RFC 6749 §4.1.3: the redirect_uri must be identical to the one used in the request.
    if let Some(uri) = request.redirect_uri.as_deref() {
        if uri != code.redirect_uri {
            return refuse("redirect_uri does not match the authorization request").await;
        }
    }
    match (&code.code_challenge, request.code_verifier.as_deref()) {
        (Some(challenge), Some(verifier)) if verify_pkce_s256(verifier, challenge) => {}
        (Some(_), Some(_)) => return refuse("the code_verifier does not match").await,
        (Some(_), None) => return refuse("code_verifier is required").await,
        // A verifier for a code issued without a challenge: refused, so that an attacker
        // cannot inject a code obtained without PKCE (PKCE downgrade, RFC 9700 §4.8.2).
        (None, Some(_)) => {
            return refuse("code_verifier sent for a code issued without code_challenge").await
        }
        (None, None) => {}
    }
    let refresh_token = if user_tokens::wants_refresh_token(client, &grant) {
        let (value, record) = user_tokens::new_refresh_token(state, &grant.id, now);
        state
            .store
            .add_refresh_token(&record)
            .await
            .map_err(store_failed)?;
        Some(value)
    } else {
        None
    };
    user_tokens::mint(
        state,
        client,
        &grant,
        &grant.scopes,
        code.nonce.clone(),
        refresh_token,
    )
    .await
}

//! Tokens issued for a user grant: the access token (and ID token, refresh token) that the
//! authorization-code and refresh-token grants answer with.

use keyward_core::authz::{OFFLINE_ACCESS, OPENID};
use keyward_core::model::{Application, Grant, RefreshToken};
use keyward_core::secret::{random_token, secret_digest};
use keyward_core::token::{mint_access_token, mint_id_token, IdTokenGrant, TokenGrant};
use keyward_proto::TokenResponse;
use time::{Duration, OffsetDateTime};

use crate::error::OAuthError;
use crate::state::AppState;

fn internal(context: &'static str) -> impl Fn(String) -> OAuthError {
    move |e| {
        tracing::error!(error = %e, context, "token issuance failed");
        OAuthError::server_error()
    }
}

/// The audience of a user access token: the API resource, or this server itself (tokens
/// for the userinfo endpoint) when the request named no resource.
pub fn audience(state: &AppState, grant: &Grant) -> String {
    grant
        .resource
        .clone()
        .unwrap_or_else(|| state.settings.issuer().to_owned())
}

/// A fresh refresh token for `grant` (not stored yet): the plain value and the record.
pub fn new_refresh_token(
    state: &AppState,
    grant_id: &str,
    now: OffsetDateTime,
) -> (String, RefreshToken) {
    let value = random_token(32);
    let record = RefreshToken {
        digest: secret_digest(&value),
        grant_id: grant_id.to_owned(),
        created_at: now,
        expires_at: now + Duration::seconds(state.settings.refresh_token_idle_secs),
        used_at: None,
    };
    (value, record)
}

/// Mints the access token (and, with `openid`, an ID token) for `grant`, granting
/// `scopes` (the grant's, or a narrower set on refresh).
pub async fn mint(
    state: &AppState,
    client: &Application,
    grant: &Grant,
    scopes: &[String],
    nonce: Option<String>,
    refresh_token: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let now = OffsetDateTime::now_utc();
    let audience = audience(state, grant);
    let resource_ttl = match &grant.resource {
        Some(id) => state
            .resource(id)
            .await
            .map_err(|e| internal("resource")(e.to_string()))?
            .map(|r| r.access_token_ttl_secs),
        None => None,
    };
    let ttl_secs = client
        .access_token_ttl_secs
        .or(resource_ttl)
        .unwrap_or(state.settings.access_token_ttl_secs);
    let keys = state.keys.snapshot();
    let scope = scopes.join(" ");
    let role = grant.role.map(|r| r.as_str().to_owned());
    let (access_token, _) = mint_access_token(
        &keys,
        TokenGrant {
            issuer: state.settings.issuer(),
            subject: &grant.user_id,
            audience: &audience,
            client_id: &client.client_id,
            scope: scope.clone(),
            ttl_secs,
            user_id: Some(grant.user_id.clone()),
            application_id: Some(client.id.clone()),
            account_id: grant.account_id.clone(),
            role: role.clone(),
            grant_id: Some(grant.id.clone()),
        },
        now,
    )
    .map_err(|e| internal("access token")(e.to_string()))?;
    let id_token = if scopes.iter().any(|s| s == OPENID) {
        Some(
            mint_id_token(
                &keys,
                IdTokenGrant {
                    issuer: state.settings.issuer(),
                    subject: &grant.user_id,
                    client_id: &client.client_id,
                    auth_time: grant.auth_time.unix_timestamp(),
                    nonce,
                    access_token: Some(&access_token),
                    session_id: grant.session_id.clone(),
                    account_id: grant.account_id.clone(),
                    role,
                    ttl_secs: state.settings.id_token_ttl_secs,
                },
                now,
            )
            .map_err(|e| internal("id token")(e.to_string()))?,
        )
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: u64::try_from(ttl_secs).unwrap_or(0),
        scope: Some(scope),
        refresh_token,
        id_token,
    })
}

/// Whether this grant gets refresh tokens: `offline_access` and the client allows the grant.
pub fn wants_refresh_token(client: &Application, grant: &Grant) -> bool {
    grant.scopes.iter().any(|s| s == OFFLINE_ACCESS) && client.allows_grant_type("refresh_token")
}

//! Callers of the provisioning API and the workspace they act in.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use keyward_core::authz::WORKSPACE_ADMIN;
use keyward_core::model::Application;
use keyward_core::Role;
use keyward_proto::AccessTokenClaims;

use crate::error::ApiError;
use crate::extract::verified_bearer;
use crate::state::AppState;

pub const PROJECTS_READ: &str = "projects:read";
pub const PROJECTS_WRITE: &str = "projects:write";

/// A verified access token for the provisioning audience, and the workspace it acts in:
/// a partner application's own account (integration tokens, client credentials), or the
/// workspace a user picked when granting `workspace:admin`, where they are still an owner
/// or admin.
#[derive(Debug, Clone)]
pub struct WorkspaceCaller {
    pub claims: AccessTokenClaims,
    pub account_id: String,
    /// The partner application, for integration tokens.
    pub partner: Option<Arc<Application>>,
    scopes: Vec<String>,
}

impl WorkspaceCaller {
    pub fn actor_type(&self) -> &'static str {
        if self.claims.uid.is_some() {
            "user"
        } else {
            "client"
        }
    }

    pub fn actor_id(&self) -> &str {
        self.claims.uid.as_deref().unwrap_or(&self.claims.client_id)
    }

    /// 403 unless the token carries `scope`. A workspace admin's `workspace:admin` covers
    /// every provisioning scope in that workspace.
    pub fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        let held = self
            .scopes
            .iter()
            .any(|s| s == scope || (self.partner.is_none() && s == WORKSPACE_ADMIN));
        if held {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope(scope))
        }
    }

    /// The partner application, or 403 for user tokens (transfer and claim lookups are
    /// partner operations).
    pub fn require_partner(&self) -> Result<&Arc<Application>, ApiError> {
        self.partner.as_ref().ok_or_else(|| ApiError::Forbidden {
            code: "partner_only",
            detail: "only a partner application's integration token may do this".into(),
        })
    }
}

impl FromRequestParts<AppState> for WorkspaceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let claims = verified_bearer(parts, state, &state.provisioning_audience)?;
        let scopes = keyward_core::scope::parse_scopes(&claims.scope);
        match claims.uid.clone() {
            None => {
                let app =
                    state
                        .client(&claims.client_id)
                        .await?
                        .ok_or(ApiError::Unauthenticated(
                            "the application no longer exists",
                        ))?;
                let account_id = match (&app.account_id, app.partner) {
                    (Some(account), true) => account.clone(),
                    _ => {
                        return Err(ApiError::Forbidden {
                            code: "not_a_partner",
                            detail: "this application is not a partner with a workspace".into(),
                        })
                    }
                };
                Ok(Self {
                    claims,
                    account_id,
                    partner: Some(app),
                    scopes,
                })
            }
            Some(user_id) => {
                let account_id = claims
                    .acc
                    .clone()
                    .filter(|_| scopes.iter().any(|s| s == WORKSPACE_ADMIN));
                let Some(account_id) = account_id else {
                    return Err(ApiError::Forbidden {
                        code: "workspace_token_required",
                        detail: "a user token needs the workspace:admin scope for a workspace"
                            .into(),
                    });
                };
                require_workspace_admin(state, &account_id, &user_id).await?;
                Ok(Self {
                    claims,
                    account_id,
                    partner: None,
                    scopes,
                })
            }
        }
    }
}

/// 403 unless the user is an owner or admin of the account now (a role in a token may be
/// stale).
pub async fn require_workspace_admin(
    state: &AppState,
    account_id: &str,
    user_id: &str,
) -> Result<(), ApiError> {
    let membership = state.store.get_member(account_id, user_id).await?;
    match membership.map(|m| m.role) {
        Some(Role::Owner | Role::Admin) => Ok(()),
        _ => Err(ApiError::Forbidden {
            code: "not_workspace_admin",
            detail: "the user is not an owner or admin of the workspace".into(),
        }),
    }
}

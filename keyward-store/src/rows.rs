//! Row types shared by both backends and their conversion into the domain model.
//!
//! Every row derives `sqlx::FromRow` generically, so the same struct decodes a SQLite and a
//! PostgreSQL row. Enums are stored as their `as_str` text; JSON values through
//! [`Json`] (JSONB on PostgreSQL, TEXT on SQLite). Timestamps are normalised to UTC on the
//! way in and out, so both backends hand back identical values.

use keyward_core::model::{
    Account, ApiResource, Application, AuditEvent, AuthorizationCode, ClientSecret, Consent, Grant,
    Interaction, Membership, RefreshToken, ResourceGrant, ScopeDefinition, Session, SigningKey,
    User,
};
use keyward_core::store::StoreResult;
use keyward_core::{ApplicationKind, AuditOutcome, Role, StoreError, UserStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use time::{OffsetDateTime, UtcOffset};

pub(crate) fn utc(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(UtcOffset::UTC)
}

fn utc_opt(at: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    at.map(utc)
}

fn bad_value(table: &str, column: &str, id: &str, value: &str) -> StoreError {
    StoreError::Internal(format!(
        "unrecognised {column} {value:?} in {table} row {id}"
    ))
}

// ---- JSON payloads ------------------------------------------------------------------------

/// A `ResourceGrant` as stored in `applications.grants`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GrantJson {
    pub resource: String,
    pub scopes: Vec<String>,
}

pub(crate) fn grants_json(grants: &[ResourceGrant]) -> Json<Vec<GrantJson>> {
    Json(
        grants
            .iter()
            .map(|g| GrantJson {
                resource: g.resource.clone(),
                scopes: g.scopes.clone(),
            })
            .collect(),
    )
}

/// A `ScopeDefinition` as stored in `api_resources.scopes`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ScopeJson {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

pub(crate) fn scopes_json(scopes: &[ScopeDefinition]) -> Json<Vec<ScopeJson>> {
    Json(
        scopes
            .iter()
            .map(|s| ScopeJson {
                name: s.name.clone(),
                description: s.description.clone(),
            })
            .collect(),
    )
}

// ---- rows ---------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
pub(crate) struct AccountRow {
    id: String,
    name: String,
    parent_account_id: Option<String>,
    custom_data: Json<Value>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<AccountRow> for Account {
    fn from(r: AccountRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            parent_account_id: r.parent_account_id,
            custom_data: r.custom_data.0,
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    username: Option<String>,
    primary_email: Option<String>,
    primary_phone: Option<String>,
    name: Option<String>,
    avatar: Option<String>,
    profile: Json<Value>,
    custom_data: Json<Value>,
    identities: Json<Value>,
    status: String,
    application_id: Option<String>,
    external_id: Option<String>,
    external_source: Option<String>,
    password_digest: Option<String>,
    password_algorithm: Option<String>,
    last_sign_in_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(r: UserRow) -> StoreResult<Self> {
        let status = UserStatus::parse(&r.status)
            .ok_or_else(|| bad_value("users", "status", &r.id, &r.status))?;
        Ok(Self {
            id: r.id,
            username: r.username,
            primary_email: r.primary_email,
            primary_phone: r.primary_phone,
            name: r.name,
            avatar: r.avatar,
            profile: r.profile.0,
            custom_data: r.custom_data.0,
            identities: r.identities.0,
            status,
            application_id: r.application_id,
            external_id: r.external_id,
            external_source: r.external_source,
            password_digest: r.password_digest,
            password_algorithm: r.password_algorithm,
            last_sign_in_at: utc_opt(r.last_sign_in_at),
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    id: String,
    account_id: String,
    user_id: String,
    role: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<MembershipRow> for Membership {
    type Error = StoreError;

    fn try_from(r: MembershipRow) -> StoreResult<Self> {
        let role =
            Role::parse(&r.role).ok_or_else(|| bad_value("memberships", "role", &r.id, &r.role))?;
        Ok(Self {
            id: r.id,
            account_id: r.account_id,
            user_id: r.user_id,
            role,
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApplicationRow {
    pub id: String,
    client_id: String,
    name: String,
    description: Option<String>,
    kind: String,
    redirect_uris: Json<Vec<String>>,
    post_logout_redirect_uris: Json<Vec<String>>,
    grant_types: Json<Vec<String>>,
    grants: Json<Vec<GrantJson>>,
    first_party: bool,
    partner: bool,
    claim_uri: Option<String>,
    account_id: Option<String>,
    access_token_ttl_secs: Option<i64>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl ApplicationRow {
    /// The application with `secrets` (already in the order to return).
    pub(crate) fn into_model(self, secrets: Vec<ClientSecret>) -> StoreResult<Application> {
        let kind = ApplicationKind::parse(&self.kind)
            .ok_or_else(|| bad_value("applications", "kind", &self.id, &self.kind))?;
        Ok(Application {
            id: self.id,
            client_id: self.client_id,
            name: self.name,
            description: self.description,
            kind,
            redirect_uris: self.redirect_uris.0,
            post_logout_redirect_uris: self.post_logout_redirect_uris.0,
            grant_types: self.grant_types.0,
            grants: self
                .grants
                .0
                .into_iter()
                .map(|g| ResourceGrant {
                    resource: g.resource,
                    scopes: g.scopes,
                })
                .collect(),
            first_party: self.first_party,
            partner: self.partner,
            claim_uri: self.claim_uri,
            account_id: self.account_id,
            access_token_ttl_secs: self.access_token_ttl_secs,
            secrets,
            created_at: utc(self.created_at),
            updated_at: utc(self.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SecretRow {
    id: String,
    application_id: String,
    digest: Vec<u8>,
    hint: String,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
}

impl From<SecretRow> for ClientSecret {
    fn from(r: SecretRow) -> Self {
        Self {
            id: r.id,
            application_id: r.application_id,
            digest: r.digest,
            hint: r.hint,
            created_at: utc(r.created_at),
            expires_at: utc_opt(r.expires_at),
        }
    }
}

/// Newest first (by creation time, then id). Sorted here rather than in SQL because SQLite
/// keeps timestamps as text, which does not always sort chronologically.
pub(crate) fn sort_secrets_newest_first(secrets: &mut [ClientSecret]) {
    secrets.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
}

#[derive(sqlx::FromRow)]
pub(crate) struct ResourceRow {
    id: String,
    identifier: String,
    name: String,
    scopes: Json<Vec<ScopeJson>>,
    access_token_ttl_secs: i64,
    management: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<ResourceRow> for ApiResource {
    fn from(r: ResourceRow) -> Self {
        Self {
            id: r.id,
            identifier: r.identifier,
            name: r.name,
            scopes: r
                .scopes
                .0
                .into_iter()
                .map(|s| ScopeDefinition {
                    name: s.name,
                    description: s.description,
                })
                .collect(),
            access_token_ttl_secs: r.access_token_ttl_secs,
            management: r.management,
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SigningKeyRow {
    id: String,
    algorithm: String,
    sealed_private_key: Vec<u8>,
    public_jwk: Json<Value>,
    created_at: OffsetDateTime,
    activates_at: OffsetDateTime,
    retires_at: Option<OffsetDateTime>,
}

impl From<SigningKeyRow> for SigningKey {
    fn from(r: SigningKeyRow) -> Self {
        Self {
            id: r.id,
            algorithm: r.algorithm,
            sealed_private_key: r.sealed_private_key,
            public_jwk: r.public_jwk.0,
            created_at: utc(r.created_at),
            activates_at: utc(r.activates_at),
            retires_at: utc_opt(r.retires_at),
        }
    }
}

/// Oldest first (by creation time, then id); see [`sort_secrets_newest_first`] for why this
/// is not done in SQL.
pub(crate) fn sort_keys_oldest_first(keys: &mut [SigningKey]) {
    keys.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: String,
    occurred_at: OffsetDateTime,
    actor_type: String,
    actor_id: Option<String>,
    action: String,
    target_type: String,
    target_id: Option<String>,
    outcome: String,
    reason: Option<String>,
    request_id: Option<String>,
    details: Json<Value>,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;

    fn try_from(r: AuditRow) -> StoreResult<Self> {
        let outcome = AuditOutcome::parse(&r.outcome)
            .ok_or_else(|| bad_value("audit_events", "outcome", &r.id, &r.outcome))?;
        Ok(Self {
            id: r.id,
            occurred_at: utc(r.occurred_at),
            actor_type: r.actor_type,
            actor_id: r.actor_id,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            outcome,
            reason: r.reason,
            request_id: r.request_id,
            details: r.details.0,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: String,
    handle_digest: Vec<u8>,
    user_id: String,
    auth_time: OffsetDateTime,
    created_at: OffsetDateTime,
    last_seen_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Self {
        Self {
            id: r.id,
            handle_digest: r.handle_digest,
            user_id: r.user_id,
            auth_time: utc(r.auth_time),
            created_at: utc(r.created_at),
            last_seen_at: utc(r.last_seen_at),
            expires_at: utc(r.expires_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct InteractionRow {
    id: String,
    client_id: String,
    request: Json<Value>,
    state: Json<Value>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl From<InteractionRow> for Interaction {
    fn from(r: InteractionRow) -> Self {
        Self {
            id: r.id,
            client_id: r.client_id,
            request: r.request.0,
            state: r.state.0,
            created_at: utc(r.created_at),
            expires_at: utc(r.expires_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct GrantRow {
    id: String,
    user_id: String,
    client_id: String,
    scopes: Json<Vec<String>>,
    resource: Option<String>,
    account_id: Option<String>,
    role: Option<String>,
    session_id: Option<String>,
    auth_time: OffsetDateTime,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    revoked_at: Option<OffsetDateTime>,
}

impl TryFrom<GrantRow> for Grant {
    type Error = StoreError;

    fn try_from(r: GrantRow) -> StoreResult<Self> {
        let role = match &r.role {
            None => None,
            Some(role) => {
                Some(Role::parse(role).ok_or_else(|| bad_value("grants", "role", &r.id, role))?)
            }
        };
        Ok(Self {
            id: r.id,
            user_id: r.user_id,
            client_id: r.client_id,
            scopes: r.scopes.0,
            resource: r.resource,
            account_id: r.account_id,
            role,
            session_id: r.session_id,
            auth_time: utc(r.auth_time),
            created_at: utc(r.created_at),
            expires_at: utc(r.expires_at),
            revoked_at: utc_opt(r.revoked_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CodeRow {
    digest: Vec<u8>,
    grant_id: String,
    redirect_uri: String,
    code_challenge: Option<String>,
    nonce: Option<String>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    redeemed_at: Option<OffsetDateTime>,
}

impl From<CodeRow> for AuthorizationCode {
    fn from(r: CodeRow) -> Self {
        Self {
            digest: r.digest,
            grant_id: r.grant_id,
            redirect_uri: r.redirect_uri,
            code_challenge: r.code_challenge,
            nonce: r.nonce,
            created_at: utc(r.created_at),
            expires_at: utc(r.expires_at),
            redeemed_at: utc_opt(r.redeemed_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RefreshTokenRow {
    digest: Vec<u8>,
    grant_id: String,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    used_at: Option<OffsetDateTime>,
}

impl From<RefreshTokenRow> for RefreshToken {
    fn from(r: RefreshTokenRow) -> Self {
        Self {
            digest: r.digest,
            grant_id: r.grant_id,
            created_at: utc(r.created_at),
            expires_at: utc(r.expires_at),
            used_at: utc_opt(r.used_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ConsentRow {
    user_id: String,
    client_id: String,
    resource: String,
    scopes: Json<Vec<String>>,
    updated_at: OffsetDateTime,
}

impl From<ConsentRow> for Consent {
    fn from(r: ConsentRow) -> Self {
        Self {
            user_id: r.user_id,
            client_id: r.client_id,
            resource: r.resource,
            scopes: r.scopes.0,
            updated_at: utc(r.updated_at),
        }
    }
}

/// Converts every row, failing on the first bad one.
pub(crate) fn convert_all<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

//! Domain entities as the store keeps them. Secrets appear here only as digests or sealed
//! bytes; conversion to wire types (`keyward_proto`) drops them.

use serde_json::Value;
use time::OffsetDateTime;

use crate::{ApplicationKind, AuditOutcome, Role, UserStatus};
use keyward_proto as proto;

#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub parent_account_id: Option<String>,
    pub custom_data: Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub username: Option<String>,
    pub primary_email: Option<String>,
    /// Always E.164 (see [`crate::validate::normalize_phone`]).
    pub primary_phone: Option<String>,
    pub name: Option<String>,
    pub avatar: Option<String>,
    pub profile: Value,
    pub custom_data: Value,
    pub identities: Value,
    pub status: UserStatus,
    pub application_id: Option<String>,
    pub external_id: Option<String>,
    /// The system `external_id` belongs to (an import's `source`, e.g. `auth0`); the pair
    /// is unique, so two sources may reuse the same id.
    pub external_source: Option<String>,
    /// PHC string or legacy digest; never leaves the server.
    pub password_digest: Option<String>,
    pub password_algorithm: Option<String>,
    pub last_sign_in_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    pub id: String,
    pub account_id: String,
    pub user_id: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceGrant {
    pub resource: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub description: Option<String>,
    pub kind: ApplicationKind,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub grants: Vec<ResourceGrant>,
    pub first_party: bool,
    pub partner: bool,
    /// Partner applications: the claim page that `claimUrl` links to (the claim token is
    /// appended as `?token=`).
    pub claim_uri: Option<String>,
    pub account_id: Option<String>,
    pub access_token_ttl_secs: Option<i64>,
    /// Filled by the store on reads; ignored by `update_application`.
    pub secrets: Vec<ClientSecret>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Application {
    /// Scopes this application holds on `resource`, or `None` when it has no grant there.
    pub fn scopes_for(&self, resource: &str) -> Option<&[String]> {
        self.grants
            .iter()
            .find(|grant| grant.resource == resource)
            .map(|grant| grant.scopes.as_slice())
    }

    pub fn allows_grant_type(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientSecret {
    pub id: String,
    pub application_id: String,
    /// SHA-256 of the secret.
    pub digest: Vec<u8>,
    pub hint: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

impl ClientSecret {
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScopeDefinition {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResource {
    pub id: String,
    pub identifier: String,
    pub name: String,
    pub scopes: Vec<ScopeDefinition>,
    pub access_token_ttl_secs: i64,
    pub management: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A token-signing key. The private key is sealed under the master key.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKey {
    /// Also the JWT `kid`.
    pub id: String,
    /// `EdDSA` or `ES256`.
    pub algorithm: String,
    pub sealed_private_key: Vec<u8>,
    /// The public JWK as published in the JWKS.
    pub public_jwk: Value,
    pub created_at: OffsetDateTime,
    /// Published from creation; used for signing from this time on.
    pub activates_at: OffsetDateTime,
    /// Unpublished after this time (set when a newer key supersedes it).
    pub retires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: String,
    pub occurred_at: OffsetDateTime,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: AuditOutcome,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub details: Value,
}

// ---- conversions to wire types ----------------------------------------------------------

impl From<Account> for proto::Account {
    fn from(a: Account) -> Self {
        Self {
            id: a.id,
            name: a.name,
            parent_account_id: a.parent_account_id,
            custom_data: a.custom_data,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

impl From<User> for proto::User {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            primary_email: u.primary_email,
            primary_phone: u.primary_phone,
            name: u.name,
            avatar: u.avatar,
            profile: u.profile,
            custom_data: u.custom_data,
            identities: u.identities,
            status: u.status,
            application_id: u.application_id,
            external_id: u.external_id,
            external_source: u.external_source,
            has_password: u.password_digest.is_some(),
            last_sign_in_at: u.last_sign_in_at,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

impl From<Membership> for proto::Membership {
    fn from(m: Membership) -> Self {
        Self {
            id: m.id,
            account_id: m.account_id,
            user_id: m.user_id,
            role: m.role,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

impl From<ClientSecret> for proto::ClientSecretInfo {
    fn from(s: ClientSecret) -> Self {
        Self {
            id: s.id,
            hint: s.hint,
            created_at: s.created_at,
            expires_at: s.expires_at,
        }
    }
}

impl From<ResourceGrant> for proto::ResourceGrant {
    fn from(g: ResourceGrant) -> Self {
        Self {
            resource: g.resource,
            scopes: g.scopes,
        }
    }
}

impl From<proto::ResourceGrant> for ResourceGrant {
    fn from(g: proto::ResourceGrant) -> Self {
        Self {
            resource: g.resource,
            scopes: g.scopes,
        }
    }
}

impl From<Application> for proto::Application {
    fn from(a: Application) -> Self {
        Self {
            id: a.id,
            client_id: a.client_id,
            name: a.name,
            description: a.description,
            kind: a.kind,
            redirect_uris: a.redirect_uris,
            post_logout_redirect_uris: a.post_logout_redirect_uris,
            grant_types: a.grant_types,
            grants: a.grants.into_iter().map(Into::into).collect(),
            first_party: a.first_party,
            partner: a.partner,
            claim_uri: a.claim_uri,
            account_id: a.account_id,
            access_token_ttl_secs: a.access_token_ttl_secs,
            secrets: a.secrets.into_iter().map(Into::into).collect(),
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

impl From<ScopeDefinition> for proto::ScopeDefinition {
    fn from(s: ScopeDefinition) -> Self {
        Self {
            name: s.name,
            description: s.description,
        }
    }
}

impl From<proto::ScopeDefinition> for ScopeDefinition {
    fn from(s: proto::ScopeDefinition) -> Self {
        Self {
            name: s.name,
            description: s.description,
        }
    }
}

impl From<ApiResource> for proto::ApiResource {
    fn from(r: ApiResource) -> Self {
        Self {
            id: r.id,
            identifier: r.identifier,
            name: r.name,
            scopes: r.scopes.into_iter().map(Into::into).collect(),
            access_token_ttl_secs: r.access_token_ttl_secs,
            management: r.management,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl From<AuditEvent> for proto::AuditEvent {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            occurred_at: e.occurred_at,
            actor_type: e.actor_type,
            actor_id: e.actor_id,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            outcome: e.outcome,
            reason: e.reason,
            request_id: e.request_id,
            details: e.details,
        }
    }
}

// ---- interactive sign-in and the authorization-code flow --------------------------------

/// A signed-in browser. The cookie carries a random handle; the store keeps only its
/// SHA-256 digest, so a database leak does not yield usable sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub handle_digest: Vec<u8>,
    pub user_id: String,
    /// When the user last proved who they are (OIDC `auth_time`).
    pub auth_time: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// Absolute end of the session; the idle limit is checked against `last_seen_at`.
    pub expires_at: OffsetDateTime,
}

/// A one-time code sent to a user (an emailed sign-in code). The store keeps one per
/// (user, purpose): issuing a new one replaces the earlier. Only the SHA-256 digest of the
/// code is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OneTimeCode {
    pub id: String,
    pub user_id: String,
    /// What the code is for, e.g. `sign_in`.
    pub purpose: String,
    pub digest: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Wrong codes presented so far.
    pub attempts: u32,
    pub consumed_at: Option<OffsetDateTime>,
}

/// A pending authorization request while the user signs in, picks a workspace and
/// consents. `id` is a random, unguessable handle carried in the page URLs; `request` holds
/// the validated authorization parameters and `state` the progress (both JSON, owned by the
/// server).
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub id: String,
    pub client_id: String,
    pub request: Value,
    pub state: Value,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What a user allowed a client: the root of a code and its refresh-token family. Revoking
/// the grant invalidates every token issued from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// The API audience (RFC 8707 resource) the access tokens are for, if any.
    pub resource: Option<String>,
    /// The workspace picked for `workspace:admin`, with the user's role there.
    pub account_id: Option<String>,
    pub role: Option<Role>,
    pub session_id: Option<String>,
    pub auth_time: OffsetDateTime,
    pub created_at: OffsetDateTime,
    /// Absolute lifetime of the refresh-token family.
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl Grant {
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// An authorization code (stored as a SHA-256 digest), single use.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationCode {
    pub digest: Vec<u8>,
    pub grant_id: String,
    pub redirect_uri: String,
    /// PKCE S256 challenge (RFC 7636), when the request carried one.
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub redeemed_at: Option<OffsetDateTime>,
}

/// A refresh token (stored as a SHA-256 digest). Each use rotates it: the old one is marked
/// used and a new one takes its place in the same grant family.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshToken {
    pub digest: Vec<u8>,
    pub grant_id: String,
    pub created_at: OffsetDateTime,
    /// Idle limit, never later than the grant's absolute `expires_at`.
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

/// Scopes a user has approved for a client on a resource ("" when none).
#[derive(Debug, Clone, PartialEq)]
pub struct Consent {
    pub user_id: String,
    pub client_id: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub updated_at: OffsetDateTime,
}

/// A data-encryption key of the token vault (external applications' client secrets and
/// users' connection tokens), itself sealed under the master key with associated data
/// [`crate::crypto::data_key_aad`]. The newest key that is not retired seals; every key
/// still opens, so rotation never strands a row.
#[derive(Debug, Clone, PartialEq)]
pub struct DataKey {
    /// Hex key id, as in the header of everything it sealed.
    pub id: String,
    pub sealed_key: Vec<u8>,
    pub created_at: OffsetDateTime,
    /// Set when a newer key took over sealing.
    pub retired_at: Option<OffsetDateTime>,
}

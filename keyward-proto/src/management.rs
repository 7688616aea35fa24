//! Management API (`/api/...`) request and response bodies.
//!
//! Request bodies reject unknown fields so that a typo is a 422, not a silently ignored
//! setting.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// A page of a list endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Pagination {
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

// ---------------------------------------------------------------------------------------
// Applications
// ---------------------------------------------------------------------------------------

/// `m2m` and `web` are confidential clients (they hold secrets); `spa` and `native` are
/// public clients and can never obtain machine-to-machine tokens.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationKind {
    M2m,
    Web,
    Spa,
    Native,
}

impl ApplicationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::M2m => "m2m",
            Self::Web => "web",
            Self::Spa => "spa",
            Self::Native => "native",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "m2m" => Some(Self::M2m),
            "web" => Some(Self::Web),
            "spa" => Some(Self::Spa),
            "native" => Some(Self::Native),
            _ => None,
        }
    }

    /// Confidential clients can keep a secret (RFC 6749 §2.1).
    pub fn is_confidential(self) -> bool {
        matches!(self, Self::M2m | Self::Web)
    }
}

/// Scopes an application may request on one API resource.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceGrant {
    /// The resource identifier (its audience URI).
    pub resource: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApplication {
    pub name: String,
    pub kind: ApplicationKind,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Defaults by kind: `client_credentials` for m2m, `authorization_code` and
    /// `refresh_token` for the others.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub grants: Vec<ResourceGrant>,
    /// First-party applications skip the consent screen.
    #[serde(default)]
    pub first_party: bool,
    /// Partner applications may provision projects.
    #[serde(default)]
    pub partner: bool,
    /// Partner applications: the claim page the provisioning API's `claimUrl` links to
    /// (the claim token is appended as `?token=`).
    #[serde(default)]
    pub claim_uri: Option<String>,
    /// The account (workspace) the application belongs to, if any.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Access-token lifetime in seconds; defaults to the resource's.
    #[serde(default)]
    pub access_token_ttl_secs: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApplication {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub grants: Option<Vec<ResourceGrant>>,
    #[serde(default)]
    pub first_party: Option<bool>,
    #[serde(default)]
    pub partner: Option<bool>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub claim_uri: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub access_token_ttl_secs: Option<Option<i64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
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
    pub claim_uri: Option<String>,
    pub account_id: Option<String>,
    pub access_token_ttl_secs: Option<i64>,
    /// Metadata of the client secrets (never the secrets themselves).
    pub secrets: Vec<ClientSecretInfo>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ClientSecretInfo {
    pub id: String,
    /// The last four characters, to tell secrets apart.
    pub hint: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// Returned once, when an application or a new secret is created. The secret cannot be
/// read back later.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ApplicationWithSecret {
    pub application: Application,
    /// Absent for public clients.
    pub client_secret: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// Keep the existing secrets valid for this many seconds (0 = revoke now). Absent means
    /// keep them until deleted, so clients can be redeployed before the old one is removed.
    #[serde(default)]
    pub expire_existing_after_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CreatedSecret {
    pub secret: ClientSecretInfo,
    pub client_secret: String,
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    #[default]
    Active,
    Suspended,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub primary_email: Option<String>,
    /// E.164, or a number that normalizes to it (spaces, dashes and brackets are removed).
    #[serde(default)]
    pub primary_phone: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub profile: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub custom_data: Option<Value>,
    #[serde(default)]
    pub status: Option<UserStatus>,
    /// The user's id in a source system (unique per `external_source`).
    #[serde(default)]
    pub external_id: Option<String>,
    /// The system `external_id` belongs to (e.g. `auth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_source: Option<String>,
    /// Social identities: provider → `{ "user_id": …, "details": {…} }`. Each
    /// (provider, user_id) pair belongs to one user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub identities: Option<Value>,
    /// A plain password, hashed with Argon2id before it is stored.
    #[serde(default)]
    pub password: Option<String>,
    /// Instead of `password`: a digest from another system (user migration), kept as is
    /// and verified at sign-in, where a correct password replaces it with Argon2id.
    /// Self-describing (`$2b$…`, `$argon2id$…`, `pbkdf2_sha256$…`, `pbkdf2:sha256:…`,
    /// `{SSHA}…`, `$P$…`, `$6$…`, …) or a JSON legacy digest for salted/HMAC hashes and
    /// Firebase scrypt (see `keyward-digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_digest: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub primary_email: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub primary_phone: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub avatar: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub profile: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub custom_data: Option<Value>,
    #[serde(default)]
    pub status: Option<UserStatus>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub external_id: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "crate::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub external_source: Option<Option<String>>,
    /// Replaces the identities (provider → `{ "user_id": …, "details": {…} }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub identities: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct User {
    pub id: String,
    pub username: Option<String>,
    pub primary_email: Option<String>,
    pub primary_phone: Option<String>,
    pub name: Option<String>,
    pub avatar: Option<String>,
    #[schema(value_type = Object)]
    pub profile: Value,
    #[schema(value_type = Object)]
    pub custom_data: Value,
    /// provider → `{ "user_id": …, "details": … }`
    #[schema(value_type = Object)]
    pub identities: Value,
    pub status: UserStatus,
    pub application_id: Option<String>,
    pub external_id: Option<String>,
    #[serde(default)]
    pub external_source: Option<String>,
    pub has_password: bool,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_sign_in_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

// ---------------------------------------------------------------------------------------
// Accounts and memberships
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub name: String,
    /// Makes the new account a child of this one.
    #[serde(default)]
    pub parent_account_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub custom_data: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChildAccount {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub custom_data: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub custom_data: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub parent_account_id: Option<String>,
    #[schema(value_type = Object)]
    pub custom_data: Value,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// `owner` > `admin` > `member` > `viewer`.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "viewer" => Some(Self::Viewer),
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user_id: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Membership {
    pub id: String,
    pub account_id: String,
    pub user_id: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

// ---------------------------------------------------------------------------------------
// API resources
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScopeDefinition {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiResource {
    /// The audience URI, for example `https://api.example.com`.
    pub identifier: String,
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<ScopeDefinition>,
    /// Access-token lifetime in seconds (default 3600).
    #[serde(default)]
    pub access_token_ttl_secs: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApiResource {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<ScopeDefinition>>,
    #[serde(default)]
    pub access_token_ttl_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ApiResource {
    pub id: String,
    pub identifier: String,
    pub name: String,
    pub scopes: Vec<ScopeDefinition>,
    pub access_token_ttl_secs: i64,
    /// The management API itself; it cannot be deleted.
    pub management: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

// ---------------------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    /// Refused by a rule or validation.
    Failure,
    /// Refused for lack of permission.
    Denied,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            "denied" => Some(Self::Denied),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AuditEvent {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: OffsetDateTime,
    /// `client`, `user` or `system`.
    pub actor_type: String,
    pub actor_id: Option<String>,
    /// For example `user.create`, `account.delete`, `member.update`.
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: AuditOutcome,
    /// The error code of a refused action.
    pub reason: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
}

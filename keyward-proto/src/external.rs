//! External applications (SPEC §3): Keyward as an OAuth 2.0 client of other servers, the
//! users' connections to them, and the tokens handed to the users' workflows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// How Keyward authenticates to a direct-mode token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    Json,
    Form,
}

/// `direct`: a standard OAuth 2.0 server. `private`: a server reached through request
/// templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExternalApplicationMode {
    Direct,
    Private,
}

/// A request to a non-standard token endpoint. URL, header values and body values may hold
/// the placeholders `{{client_id}}`, `{{client_secret}}`, `{{redirect_uri}}`,
/// `{{authorization_code}}`, `{{refresh_token}}` and `{{code_verifier}}`; body members that
/// render empty are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestTemplate {
    /// `POST` (default), `PUT`, `PATCH` or `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `form` (default) or `json`.
    #[serde(default = "default_body_format")]
    pub body_format: BodyFormat,
    #[serde(default)]
    pub body: BTreeMap<String, String>,
}

fn default_method() -> String {
    "POST".to_owned()
}

fn default_body_format() -> BodyFormat {
    BodyFormat::Form
}

/// Where the token fields are in a private server's JSON response: member names or dotted
/// paths (`data.token`). Defaults are the standard names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseMapping {
    #[serde(default = "m_access_token")]
    pub access_token: String,
    #[serde(default = "m_scope")]
    pub scope: String,
    #[serde(default = "m_refresh_token")]
    pub refresh_token: String,
    #[serde(default = "m_expires_in")]
    pub expires_in: String,
}

fn m_access_token() -> String {
    "access_token".into()
}
fn m_scope() -> String {
    "scope".into()
}
fn m_refresh_token() -> String {
    "refresh_token".into()
}
fn m_expires_in() -> String {
    "expires_in".into()
}

impl Default for ResponseMapping {
    fn default() -> Self {
        Self {
            access_token: m_access_token(),
            scope: m_scope(),
            refresh_token: m_refresh_token(),
            expires_in: m_expires_in(),
        }
    }
}

fn yes() -> bool {
    true
}

/// `POST /api/accounts/{account_id}/external-applications`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateExternalApplication {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Shown to users before they are sent to the server's authorization page.
    pub approval_prompt: String,
    pub client_id: String,
    /// Stored encrypted; never returned.
    pub client_secret: String,
    /// May be empty.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Seconds; used only when the server's token response has no `expires_in`.
    #[serde(default)]
    pub default_expires_in: Option<i64>,
    /// PKCE S256 on the authorization request (default true).
    #[serde(default = "yes")]
    pub use_pkce: bool,
    /// The server's issuer identifier: when set, an `iss` in the authorization response
    /// must equal it (RFC 9207).
    #[serde(default)]
    pub issuer: Option<String>,
    pub mode: ExternalApplicationMode,
    /// The server's authorization endpoint (the user's browser goes there).
    pub authorization_url: String,
    /// Direct mode: the token endpoint.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Direct mode: RFC 7009 revocation endpoint, used best-effort on reset and delete.
    #[serde(default)]
    pub revocation_url: Option<String>,
    /// Direct mode (default `client_secret_basic`).
    #[serde(default)]
    pub token_endpoint_auth_method: Option<TokenAuthMethod>,
    /// Hosts Keyward may call for this application: `host`, `host:port`, `*.domain`, an IP
    /// address or a CIDR block. Private, loopback and link-local addresses are reachable
    /// only when named by IP or CIDR (or `localhost`).
    #[serde(default)]
    pub egress_hosts: Vec<String>,
    /// Private mode: exchanges the authorization code.
    #[serde(default)]
    pub token_request: Option<RequestTemplate>,
    /// Private mode: refreshes; without it users re-authorize when the token expires.
    #[serde(default)]
    pub refresh_request: Option<RequestTemplate>,
    /// Private mode: where the token fields are in the response.
    #[serde(default)]
    pub response_mapping: Option<ResponseMapping>,
}

/// `PATCH /api/external-applications/{id}`: only the fields present change; `null` clears
/// an optional one. The result is validated as a whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpdateExternalApplication {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub approval_prompt: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::double_option")]
    #[schema(value_type = Option<i64>)]
    pub default_expires_in: Option<Option<i64>>,
    pub use_pkce: Option<bool>,
    #[serde(default, deserialize_with = "crate::double_option")]
    #[schema(value_type = Option<String>)]
    pub issuer: Option<Option<String>>,
    pub mode: Option<ExternalApplicationMode>,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    #[serde(default, deserialize_with = "crate::double_option")]
    #[schema(value_type = Option<String>)]
    pub revocation_url: Option<Option<String>>,
    pub token_endpoint_auth_method: Option<TokenAuthMethod>,
    pub egress_hosts: Option<Vec<String>>,
    pub token_request: Option<RequestTemplate>,
    #[serde(default, deserialize_with = "crate::double_option")]
    #[schema(value_type = Option<RequestTemplate>)]
    pub refresh_request: Option<Option<RequestTemplate>>,
    pub response_mapping: Option<ResponseMapping>,
}

/// An external application as the API shows it (never its client secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ExternalApplication {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub description: Option<String>,
    pub approval_prompt: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub default_expires_in: Option<i64>,
    pub use_pkce: bool,
    pub issuer: Option<String>,
    pub mode: ExternalApplicationMode,
    pub authorization_url: String,
    pub token_url: Option<String>,
    pub revocation_url: Option<String>,
    pub token_endpoint_auth_method: Option<TokenAuthMethod>,
    pub egress_hosts: Vec<String>,
    pub token_request: Option<RequestTemplate>,
    pub refresh_request: Option<RequestTemplate>,
    pub response_mapping: Option<ResponseMapping>,
    pub enabled: bool,
    /// The redirect URI to register at the server (one per application: a response
    /// arriving at another application's callback is refused — mix-up defence).
    pub callback_url: String,
    /// Where a user goes to connect (the approval prompt page).
    pub authorize_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Active,
    /// The server refused the refresh token; the user must connect again at
    /// `authorize_url`.
    NeedsReauthorization,
}

/// A user's connection to an external application (tokens are never shown here).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ExternalConnection {
    pub id: String,
    pub external_application_id: String,
    pub user_id: String,
    pub state: ConnectionState,
    pub scope: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// Where the user reconnects.
    pub authorize_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_refreshed_at: Option<OffsetDateTime>,
}

/// `POST /api/external-applications/{id}/token`. A user's token names nobody (it is for
/// the caller); a machine caller names the user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalTokenRequest {
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A valid access token of the external server, for the caller's workflow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ExternalAccessToken {
    pub access_token: String,
    /// As the server said (usually `Bearer`).
    pub token_type: String,
    /// Seconds left; absent when the server and the application give no lifetime.
    pub expires_in: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub scope: Option<String>,
    pub connection_id: String,
}

/// A member's extra permissions in an account (beyond their role).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct MemberPermissions {
    pub account_id: String,
    pub user_id: String,
    /// For example `manage_external_applications`.
    pub permissions: Vec<String>,
}

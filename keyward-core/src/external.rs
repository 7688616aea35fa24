//! External applications: Keyward as an OAuth 2.0 *client* of other servers (SPEC §3).
//!
//! An administrator configures an [`ExternalApplication`] for an account; each user who
//! authorizes it gets one [`ExternalConnection`] holding their tokens, sealed with the
//! master key ([`crate::crypto::MasterKey`]) and bound to the connection's identity as
//! associated data. This module holds the entities and the pure protocol pieces: request
//! templates for "private" servers, reading token responses whose `expires_in` may be a
//! string and whose scopes may be comma-separated, and the refresh-timing rule.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

pub use keyward_proto::external::{BodyFormat, RequestTemplate, ResponseMapping, TokenAuthMethod};

/// The permission that lets a member below admin manage an account's external
/// applications (owners and admins hold it by role).
pub const MANAGE_EXTERNAL_APPLICATIONS: &str = "manage_external_applications";

/// Refresh this long before the access token expires, so a caller never gets a token
/// that dies in flight.
pub const REFRESH_MARGIN: Duration = Duration::seconds(60);

/// How long one node may hold a connection's refresh lease before another may take over
/// (a crashed node's lease simply runs out).
pub const REFRESH_LEASE: Duration = Duration::seconds(30);

/// How Keyward talks to the server's token endpoint.
// A configuration value loaded once per request and never held in bulk: boxing the
// private variant would only add indirection to every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ExternalProtocol {
    /// A standard RFC 6749 server.
    Direct {
        token_url: String,
        #[serde(default)]
        revocation_url: Option<String>,
        token_auth_method: TokenAuthMethod,
    },
    /// A server reached through request templates (the seed's "webhooks").
    Private {
        token_request: RequestTemplate,
        #[serde(default)]
        refresh_request: Option<RequestTemplate>,
        #[serde(default)]
        response_mapping: ResponseMapping,
    },
}

impl ExternalProtocol {
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Direct { .. } => "direct",
            Self::Private { .. } => "private",
        }
    }

    /// Whether tokens can be refreshed at all.
    pub fn can_refresh(&self) -> bool {
        match self {
            Self::Direct { .. } => true,
            Self::Private {
                refresh_request, ..
            } => refresh_request.is_some(),
        }
    }

    /// Every URL Keyward itself calls (the egress policy must allow each).
    pub fn outbound_urls(&self) -> Vec<&str> {
        match self {
            Self::Direct {
                token_url,
                revocation_url,
                ..
            } => std::iter::once(token_url.as_str())
                .chain(revocation_url.as_deref())
                .collect(),
            Self::Private {
                token_request,
                refresh_request,
                ..
            } => std::iter::once(token_request.url.as_str())
                .chain(refresh_request.as_ref().map(|r| r.url.as_str()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExternalApplication {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub description: Option<String>,
    /// Shown to the user before they are sent to the server's authorization page.
    pub approval_prompt: String,
    pub client_id: String,
    /// Sealed with the master key, associated data [`client_secret_aad`].
    pub client_secret_sealed: Vec<u8>,
    /// Hex id of the master key that sealed the secret (rotation finds stale rows by it).
    pub client_secret_key_id: String,
    /// May be empty: the server then gets an empty scope list.
    pub scopes: Vec<String>,
    /// Used only when the server's token response has no `expires_in`.
    pub default_expires_in_secs: Option<i64>,
    pub use_pkce: bool,
    /// The server's issuer identifier; when set, an `iss` in the authorization response
    /// must equal it (RFC 9207).
    pub issuer: Option<String>,
    pub authorization_url: String,
    /// Hosts Keyward may reach for this application (see `keyward-server::egress`).
    pub egress_hosts: Vec<String>,
    pub protocol: ExternalProtocol,
    pub enabled: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Active,
    /// The server refused the refresh token (`invalid_grant`): the user must authorize
    /// again.
    NeedsReauthorization,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauthorization => "needs_reauthorization",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "needs_reauthorization" => Some(Self::NeedsReauthorization),
            _ => None,
        }
    }
}

/// One user's authorization of one external application. One per (application, user).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalConnection {
    pub id: String,
    pub external_application_id: String,
    pub user_id: String,
    pub state: ConnectionState,
    /// [`ConnectionTokens`] as JSON, sealed with associated data [`connection_aad`].
    pub tokens_sealed: Vec<u8>,
    pub key_id: String,
    /// Scopes the server granted, space-separated.
    pub scope: Option<String>,
    /// When the access token expires; `None` when neither the server nor the application
    /// says (the token is then used until the server refuses it).
    pub expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_refreshed_at: Option<OffsetDateTime>,
}

impl ExternalConnection {
    /// Whether the access token must be refreshed before use at `now`.
    pub fn needs_refresh(&self, now: OffsetDateTime) -> bool {
        self.expires_at
            .is_some_and(|expires_at| expires_at - REFRESH_MARGIN <= now)
    }
}

/// The plaintext inside [`ExternalConnection::tokens_sealed`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionTokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

impl std::fmt::Debug for ConnectionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTokens")
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// An authorization in progress: created when the user approves the prompt, spent once
/// by the callback. Keyed by the SHA-256 digest of `state`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalAuthorization {
    pub state_digest: Vec<u8>,
    pub external_application_id: String,
    pub user_id: String,
    /// The Keyward session that started it: the callback must arrive in the same one.
    pub session_id: String,
    /// The PKCE verifier, sealed (associated data: `state_digest`), when PKCE is used.
    pub code_verifier_sealed: Option<Vec<u8>>,
    /// Where to send the user afterwards (a local path), if anywhere.
    pub return_to: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Associated data of an application's sealed client secret.
pub fn client_secret_aad(application_id: &str) -> Vec<u8> {
    format!("keyward/external-application/v1|{application_id}|client_secret").into_bytes()
}

/// Associated data of a connection's sealed tokens: the connection's identity, so sealed
/// tokens copied to another row (another user, another application) fail to open.
pub fn connection_aad(connection_id: &str, application_id: &str, user_id: &str) -> Vec<u8> {
    format!("keyward/connection/v1|{connection_id}|{application_id}|{user_id}").into_bytes()
}

/// Associated data of a sealed PKCE verifier.
pub fn verifier_aad(state_digest: &[u8]) -> Vec<u8> {
    let mut aad = b"keyward/external-authorization/v1|".to_vec();
    aad.extend_from_slice(state_digest);
    aad
}

// ---- token responses --------------------------------------------------------------------

/// A token response read with the application's mapping.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponseFields {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub token_type: Option<String>,
    /// Normalized to space-separated (RFC 6749 §3.3), whatever the server used.
    pub scope: Option<String>,
    pub expires_in: Option<i64>,
}

impl std::fmt::Debug for TokenResponseFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponseFields")
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenResponseError {
    #[error("the token response is not a JSON object")]
    NotAnObject,
    #[error("the token response has no {0}")]
    Missing(&'static str),
    #[error("the token response's {0} has the wrong type")]
    WrongType(&'static str),
}

fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(value, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

fn string_field(
    value: &Value,
    path: &str,
    name: &'static str,
) -> Result<Option<String>, TokenResponseError> {
    match lookup(value, path) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenResponseError::WrongType(name)),
    }
}

/// Scopes as a server wrote them — space- or comma-separated, or a JSON array — as one
/// space-separated string.
pub fn normalize_scope(value: &Value) -> Option<String> {
    let parts: Vec<String> = match value {
        Value::String(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => return None,
    };
    Some(parts.join(" "))
}

/// `expires_in` as a number or a numeric string (the seed's server sends `"3600"`).
/// Negative or absurd values are treated as absent.
pub fn parse_expires_in(value: &Value) -> Result<Option<i64>, TokenResponseError> {
    let secs = match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or(TokenResponseError::WrongType("expires_in"))?,
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| TokenResponseError::WrongType("expires_in"))?,
        Value::Null => return Ok(None),
        _ => return Err(TokenResponseError::WrongType("expires_in")),
    };
    // Ten years is longer than any access token; beyond it the value is nonsense.
    Ok((0..=315_360_000).contains(&secs).then_some(secs))
}

/// Reads a successful token response with `mapping` (the standard names for direct mode).
pub fn read_token_response(
    body: &Value,
    mapping: &ResponseMapping,
) -> Result<TokenResponseFields, TokenResponseError> {
    if !body.is_object() {
        return Err(TokenResponseError::NotAnObject);
    }
    let access_token = string_field(body, &mapping.access_token, "access_token")?
        .ok_or(TokenResponseError::Missing("access_token"))?;
    let refresh_token = string_field(body, &mapping.refresh_token, "refresh_token")?;
    let token_type = string_field(body, "token_type", "token_type")?;
    let scope = lookup(body, &mapping.scope).and_then(normalize_scope);
    let expires_in = match lookup(body, &mapping.expires_in) {
        Some(v) => parse_expires_in(v)?,
        None => None,
    };
    Ok(TokenResponseFields {
        access_token,
        refresh_token,
        token_type,
        scope,
        expires_in,
    })
}

/// When a token received at `now` expires: the server's `expires_in`, else the
/// application's default, else unknown.
pub fn expiry(
    now: OffsetDateTime,
    expires_in: Option<i64>,
    default_expires_in_secs: Option<i64>,
) -> Option<OffsetDateTime> {
    expires_in
        .or(default_expires_in_secs)
        .map(|secs| now + Duration::seconds(secs))
}

// ---- request templates --------------------------------------------------------------------

/// Values for a template's placeholders. Absent values render as empty strings.
#[derive(Default)]
pub struct TemplateValues<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub redirect_uri: &'a str,
    pub authorization_code: Option<&'a str>,
    pub refresh_token: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

pub const PLACEHOLDERS: [&str; 6] = [
    "client_id",
    "client_secret",
    "redirect_uri",
    "authorization_code",
    "refresh_token",
    "code_verifier",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown placeholder {{{{{0}}}}}")]
pub struct UnknownPlaceholder(pub String);

/// Replaces `{{name}}` placeholders (whitespace inside the braces allowed). Unknown names
/// are an error, so a typo in a template is caught when the application is saved.
pub fn render(template: &str, values: &TemplateValues<'_>) -> Result<String, UnknownPlaceholder> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = after[..end].trim();
        let value = match name {
            "client_id" => Some(values.client_id),
            "client_secret" => Some(values.client_secret),
            "redirect_uri" => Some(values.redirect_uri),
            "authorization_code" => values.authorization_code.or(Some("")),
            "refresh_token" => values.refresh_token.or(Some("")),
            "code_verifier" => values.code_verifier.or(Some("")),
            _ => None,
        }
        .ok_or_else(|| UnknownPlaceholder(name.to_owned()))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A rendered template, ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Renders every part of `template`. Body members whose value renders empty are dropped
/// (a refresh template may name `code_verifier` that a refresh does not have).
pub fn render_request(
    template: &RequestTemplate,
    values: &TemplateValues<'_>,
) -> Result<RenderedRequest, UnknownPlaceholder> {
    let url = render(&template.url, values)?;
    let headers = template
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), render(v, values)?)))
        .collect::<Result<Vec<_>, UnknownPlaceholder>>()?;
    let mut fields = Vec::with_capacity(template.body.len());
    for (key, value) in &template.body {
        let rendered = render(value, values)?;
        if !rendered.is_empty() {
            fields.push((key.clone(), rendered));
        }
    }
    let (content_type, body) = match template.body_format {
        BodyFormat::Json => {
            let object: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            (
                "application/json",
                serde_json::to_vec(&Value::Object(object)).unwrap_or_default(),
            )
        }
        BodyFormat::Form => (
            "application/x-www-form-urlencoded",
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish()
                .into_bytes(),
        ),
    };
    Ok(RenderedRequest {
        method: template.method.to_ascii_uppercase(),
        url,
        headers,
        content_type,
        body,
    })
}

/// Checks a template's placeholders and method without values (when it is saved).
pub fn check_template(template: &RequestTemplate) -> Result<(), String> {
    let probe = TemplateValues {
        client_id: "x",
        client_secret: "x",
        redirect_uri: "x",
        authorization_code: Some("x"),
        refresh_token: Some("x"),
        code_verifier: Some("x"),
    };
    render_request(template, &probe).map_err(|e| e.to_string())?;
    match template.method.to_ascii_uppercase().as_str() {
        "POST" | "PUT" | "GET" | "PATCH" => Ok(()),
        other => Err(format!("method {other} is not supported")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn expires_in_as_number_or_string() {
        assert_eq!(parse_expires_in(&json!(3600)).unwrap(), Some(3600));
        assert_eq!(parse_expires_in(&json!("3600")).unwrap(), Some(3600));
        assert_eq!(parse_expires_in(&json!(" 60 ")).unwrap(), Some(60));
        assert_eq!(parse_expires_in(&json!("")).unwrap(), None);
        assert_eq!(parse_expires_in(&json!(-5)).unwrap(), None);
        assert!(parse_expires_in(&json!("soon")).is_err());
        assert!(parse_expires_in(&json!(true)).is_err());
    }

    #[test]
    fn scopes_separated_by_spaces_commas_or_arrays() {
        assert_eq!(normalize_scope(&json!("read,write")).unwrap(), "read write");
        assert_eq!(normalize_scope(&json!("read write")).unwrap(), "read write");
        assert_eq!(
            normalize_scope(&json!("read, write")).unwrap(),
            "read write"
        );
        assert_eq!(normalize_scope(&json!(["a", "b"])).unwrap(), "a b");
        assert_eq!(normalize_scope(&json!("")).unwrap(), "");
    }

    #[test]
    fn reads_the_seeds_quirky_response() {
        let body = json!({
            "access_token": "1846149cf5774c3d8eaeb18b75f7178d",
            "refresh_token": "r1",
            "token_type": "bearer",
            "scope": "session,offline",
            "expires_in": "3600"
        });
        let fields = read_token_response(&body, &ResponseMapping::default()).unwrap();
        assert_eq!(fields.access_token, "1846149cf5774c3d8eaeb18b75f7178d");
        assert_eq!(fields.refresh_token.as_deref(), Some("r1"));
        assert_eq!(fields.scope.as_deref(), Some("session offline"));
        assert_eq!(fields.expires_in, Some(3600));
    }

    #[test]
    fn mapping_with_dotted_paths_and_missing_fields() {
        let body = json!({"data": {"token": "t", "ttl": 60}});
        let mapping = ResponseMapping {
            access_token: "data.token".into(),
            expires_in: "data.ttl".into(),
            ..ResponseMapping::default()
        };
        let fields = read_token_response(&body, &mapping).unwrap();
        assert_eq!(fields.access_token, "t");
        assert_eq!(fields.expires_in, Some(60));
        assert_eq!(fields.refresh_token, None);
        assert_eq!(
            read_token_response(&json!({"x": 1}), &ResponseMapping::default()),
            Err(TokenResponseError::Missing("access_token"))
        );
        assert_eq!(
            read_token_response(&json!([1]), &ResponseMapping::default()),
            Err(TokenResponseError::NotAnObject)
        );
    }

    #[test]
    fn templates_render_placeholders_and_drop_empty_members() {
        let template = RequestTemplate {
            method: "post".into(),
            url: "https://h/refresh_token".into(),
            headers: BTreeMap::from([("X-Client".into(), "{{ client_id }}".into())]),
            body_format: BodyFormat::Json,
            body: BTreeMap::from([
                ("client_id".into(), "{{client_id}}".into()),
                ("client_secret".into(), "{{client_secret}}".into()),
                ("refresh_token".into(), "{{refresh_token}}".into()),
                ("code_verifier".into(), "{{code_verifier}}".into()),
            ]),
        };
        let values = TemplateValues {
            client_id: "cid",
            client_secret: "sec",
            redirect_uri: "https://k/cb",
            refresh_token: Some("rt"),
            ..TemplateValues::default()
        };
        let request = render_request(&template, &values).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.headers, vec![("X-Client".into(), "cid".into())]);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({"client_id": "cid", "client_secret": "sec", "refresh_token": "rt"})
        );
        let form = RequestTemplate {
            body_format: BodyFormat::Form,
            ..template.clone()
        };
        let request = render_request(&form, &values).unwrap();
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            "client_id=cid&client_secret=sec&refresh_token=rt"
        );
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        let template = RequestTemplate {
            method: "POST".into(),
            url: "https://h/{{tenant}}/token".into(),
            headers: BTreeMap::new(),
            body_format: BodyFormat::Form,
            body: BTreeMap::new(),
        };
        assert!(check_template(&template).is_err());
        assert_eq!(
            render("a {{ x", &TemplateValues::default()).unwrap(),
            "a {{ x"
        );
    }

    #[test]
    fn refresh_margin_and_expiry() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1);
        let mut conn = ExternalConnection {
            id: "con_1".into(),
            external_application_id: "xap_1".into(),
            user_id: "usr_1".into(),
            state: ConnectionState::Active,
            tokens_sealed: vec![],
            key_id: String::new(),
            scope: None,
            expires_at: expiry(now, Some(3600), Some(60)),
            created_at: now,
            updated_at: now,
            last_refreshed_at: None,
        };
        assert!(!conn.needs_refresh(now));
        assert!(conn.needs_refresh(now + Duration::seconds(3541)));
        conn.expires_at = expiry(now, None, None);
        assert!(!conn.needs_refresh(now + Duration::days(365)));
        assert_eq!(
            expiry(now, None, Some(60)),
            Some(now + Duration::seconds(60))
        );
    }
}

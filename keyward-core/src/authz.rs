//! The authorization request (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2.1) as pure
//! logic: redirect-URI matching, PKCE (RFC 7636) and request validation. The HTTP layer
//! turns the outcome into an error page (the client or redirect URI cannot be trusted) or
//! an error redirect.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::{ApiResource, Application};
use crate::scope::{is_valid_scope_token, parse_scopes};

/// Scopes the server itself understands (not tied to an API resource).
pub const OPENID: &str = "openid";
pub const PROFILE: &str = "profile";
pub const EMAIL: &str = "email";
pub const PHONE: &str = "phone";
pub const OFFLINE_ACCESS: &str = "offline_access";
/// Makes the user pick a workspace where they are owner or admin; the token then carries
/// `acc` and `role`.
pub const WORKSPACE_ADMIN: &str = "workspace:admin";
pub const IDENTITY_SCOPES: &[&str] = &[
    OPENID,
    PROFILE,
    EMAIL,
    PHONE,
    OFFLINE_ACCESS,
    WORKSPACE_ADMIN,
];

/// True when `presented` is exactly a registered redirect URI (RFC 9700 §4.1.3: simple
/// string comparison), except that for loopback IP literals on `http` any port is accepted
/// (RFC 8252 §7.3): native apps get an ephemeral port from the OS.
pub fn redirect_uri_matches(registered: &[String], presented: &str) -> bool {
    registered.iter().any(|r| {
        r == presented
            || match (strip_loopback_port(r), strip_loopback_port(presented)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            }
    })
}

/// For `http://127.0.0.1[:port]…` and `http://[::1][:port]…` (exact lowercase prefix), the
/// URI without its port. Anything else — other hosts, `localhost`, odd spellings — is
/// compared as a plain string.
fn strip_loopback_port(uri: &str) -> Option<String> {
    for prefix in ["http://127.0.0.1", "http://[::1]"] {
        if let Some(rest) = uri.strip_prefix(prefix) {
            let rest = match rest.strip_prefix(':') {
                Some(after_colon) => {
                    let digits = after_colon.bytes().take_while(u8::is_ascii_digit).count();
                    let port = &after_colon[..digits];
                    if port.is_empty() || port.parse::<u16>().is_err() {
                        return None;
                    }
                    &after_colon[digits..]
                }
                None => rest,
            };
            // The authority must end here: a path, a query, or nothing.
            if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
                return None;
            }
            return Some(format!("{prefix}{rest}"));
        }
    }
    None
}

/// A code verifier is 43–128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`
/// (RFC 7636 §4.1).
pub fn is_valid_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge is the base64url SHA-256 of a verifier: exactly 43 characters.
pub fn is_valid_code_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time (RFC 7636 §4.6).
pub fn verify_pkce_s256(verifier: &str, challenge: &str) -> bool {
    if !is_valid_code_verifier(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// The query parameters of `GET /oauth2/authorize`, as received.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub resource: Option<String>,
    pub audience: Option<String>,
    pub response_mode: Option<String>,
    pub login_hint: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
    /// Keyward extension: the claim token of a partner project being claimed; the project
    /// is shown on the consent page and its id echoed on the redirect (`project_id`).
    pub claim_token: Option<String>,
}

/// A validated authorization request, kept with the interaction while the user signs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub resource: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// The project a partner's claim link names (resolved from `claim_token`).
    #[serde(default)]
    pub claim_project_id: Option<String>,
}

impl AuthorizationRequest {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn has_prompt(&self, prompt: &str) -> bool {
        self.prompt.iter().any(|p| p == prompt)
    }

    /// Scopes that belong to the API resource (everything that is not an identity scope).
    pub fn resource_scopes(&self) -> Vec<String> {
        self.scopes
            .iter()
            .filter(|s| !IDENTITY_SCOPES.contains(&s.as_str()))
            .cloned()
            .collect()
    }
}

/// Why a request is refused before the client and redirect URI are trusted: shown on an
/// error page, never sent to the redirect URI (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntrustedRequest(pub String);

/// An error sent back to the client's redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub error: &'static str,
    pub description: String,
}

impl RedirectError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }
}

/// Step one: the redirect URI, once the client is known. `Err` means an error page.
pub fn trusted_redirect_uri(
    client: &Application,
    params: &AuthorizeParams,
) -> Result<String, UntrustedRequest> {
    match params.redirect_uri.as_deref() {
        Some(uri) if redirect_uri_matches(&client.redirect_uris, uri) => Ok(uri.to_owned()),
        Some(_) => Err(UntrustedRequest(
            "The redirect_uri is not registered for this application.".into(),
        )),
        // OAuth 2.0 allows omitting it when exactly one is registered (RFC 6749 §3.1.2.3).
        None if client.redirect_uris.len() == 1 => Ok(client.redirect_uris[0].clone()),
        None => Err(UntrustedRequest("redirect_uri is required.".into())),
    }
}

/// Step two: everything else, with errors that may be redirected to the client.
/// `resource` is the API resource named by `resource`/`audience`, looked up by the caller.
pub fn validate_request(
    client: &Application,
    params: &AuthorizeParams,
    redirect_uri: String,
    resource: Option<&ApiResource>,
) -> Result<AuthorizationRequest, RedirectError> {
    if params.request.is_some() || params.request_uri.is_some() {
        return Err(RedirectError::new(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    match params.response_type.as_deref() {
        Some("code") => {}
        None | Some("") => {
            return Err(RedirectError::new(
                "invalid_request",
                "response_type is required",
            ))
        }
        Some(_) => {
            return Err(RedirectError::new(
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
    }
    if params
        .response_mode
        .as_deref()
        .is_some_and(|m| m != "query")
    {
        return Err(RedirectError::new(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    if !client.allows_grant_type("authorization_code") {
        return Err(RedirectError::new(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        ));
    }
    // PKCE (RFC 7636; RFC 9700 §2.1.1): S256 only, required for public clients.
    let code_challenge = match (
        params.code_challenge.as_deref(),
        params.code_challenge_method.as_deref(),
    ) {
        (Some(challenge), Some("S256")) if is_valid_code_challenge(challenge) => {
            Some(challenge.to_owned())
        }
        (Some(_), Some("S256")) => {
            return Err(RedirectError::new(
                "invalid_request",
                "malformed code_challenge",
            ))
        }
        (Some(_), Some(_) | None) => {
            return Err(RedirectError::new(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not allowed)",
            ))
        }
        (None, Some(_)) => {
            return Err(RedirectError::new(
                "invalid_request",
                "code_challenge_method without code_challenge",
            ))
        }
        (None, None) if !client.kind.is_confidential() => {
            return Err(RedirectError::new(
                "invalid_request",
                "PKCE (code_challenge with S256) is required for public clients",
            ))
        }
        (None, None) => None,
    };
    let scopes = parse_scopes(params.scope.as_deref().unwrap_or(""));
    if let Some(bad) = scopes.iter().find(|s| !is_valid_scope_token(s)) {
        return Err(RedirectError::new(
            "invalid_scope",
            format!("malformed scope {bad:?}"),
        ));
    }
    let resource_scopes: Vec<&String> = scopes
        .iter()
        .filter(|s| !IDENTITY_SCOPES.contains(&s.as_str()))
        .collect();
    let resource_id = match resource {
        Some(resource) => {
            let allowed = client.scopes_for(&resource.identifier).ok_or_else(|| {
                RedirectError::new("invalid_target", "this client is not allowed this resource")
            })?;
            for scope in &resource_scopes {
                let defined = resource.scopes.iter().any(|d| &d.name == *scope);
                if !defined || !allowed.iter().any(|a| a == *scope) {
                    return Err(RedirectError::new(
                        "invalid_scope",
                        format!("scope {scope:?} is not available to this client"),
                    ));
                }
            }
            Some(resource.identifier.clone())
        }
        None => {
            if let Some(scope) = resource_scopes.first() {
                return Err(RedirectError::new(
                    "invalid_scope",
                    format!("unknown scope {scope:?} (API scopes need a resource or audience)"),
                ));
            }
            None
        }
    };
    if scopes.iter().any(|s| s == OFFLINE_ACCESS) && !client.allows_grant_type("refresh_token") {
        return Err(RedirectError::new(
            "invalid_scope",
            "offline_access needs the refresh_token grant, which this client does not have",
        ));
    }
    let prompt = parse_scopes(params.prompt.as_deref().unwrap_or(""));
    for p in &prompt {
        if !matches!(p.as_str(), "none" | "login" | "consent" | "select_account") {
            return Err(RedirectError::new(
                "invalid_request",
                format!("unsupported prompt {p:?}"),
            ));
        }
    }
    if prompt.len() > 1 && prompt.iter().any(|p| p == "none") {
        return Err(RedirectError::new(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    let max_age =
        match params.max_age.as_deref() {
            None | Some("") => None,
            Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                RedirectError::new("invalid_request", "max_age must be a number")
            })?),
        };
    let bounded = |field: &str, value: &Option<String>| -> Result<Option<String>, RedirectError> {
        match value {
            Some(v) if v.len() > 2048 => Err(RedirectError::new(
                "invalid_request",
                format!("{field} is too long"),
            )),
            Some(v) if !v.is_empty() => Ok(Some(v.clone())),
            _ => Ok(None),
        }
    };
    Ok(AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri,
        scopes,
        resource: resource_id,
        state: bounded("state", &params.state)?,
        nonce: bounded("nonce", &params.nonce)?,
        code_challenge,
        prompt,
        max_age,
        login_hint: bounded("login_hint", &params.login_hint)?,
        claim_project_id: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn uris(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let reg = uris(&["https://app.example.com/cb", "com.example.app:/oauth"]);
        assert!(redirect_uri_matches(&reg, "https://app.example.com/cb"));
        assert!(redirect_uri_matches(&reg, "com.example.app:/oauth"));
        for bad in [
            "https://APP.example.com/cb",
            "https://app.example.com/CB",
            "https://app.example.com/cb/",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#x",
            "https://app.example.com:443/cb",
            "https://app.example.com:8443/cb",
            "https://app.example.com@evil.com/cb",
            "https://evil.com@app.example.com/cb",
            "https://app.example.com/cb/..;/evil",
            "https://app.example.com/x/../cb",
            "javascript:alert(1)//https://app.example.com/cb",
            "JaVaScRiPt:alert(1)",
            "http://app.example.com/cb",
        ] {
            assert!(!redirect_uri_matches(&reg, bad), "{bad} must not match");
        }
    }

    #[test]
    fn loopback_redirects_accept_any_port_only() {
        let reg = uris(&["http://127.0.0.1/callback", "http://[::1]:1234/cb?x=1"]);
        assert!(redirect_uri_matches(&reg, "http://127.0.0.1/callback"));
        assert!(redirect_uri_matches(
            &reg,
            "http://127.0.0.1:53121/callback"
        ));
        assert!(redirect_uri_matches(&reg, "http://[::1]:9/cb?x=1"));
        for bad in [
            "http://127.0.0.1:53121/callback/",
            "http://127.0.0.1:53121/Callback",
            "http://127.0.0.1:99999/callback",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:80@evil.com/callback",
            "http://127.0.0.1.evil.com/callback",
            "https://127.0.0.1:8443/callback",
            "http://localhost:8080/callback",
            "http://[::1]:9/cb?x=2",
        ] {
            assert!(!redirect_uri_matches(&reg, bad), "{bad} must not match");
        }
        // A registered non-loopback host with a port never matches another port.
        let reg = uris(&["http://app.test:8080/cb"]);
        assert!(!redirect_uri_matches(&reg, "http://app.test:8081/cb"));
    }

    #[test]
    fn pkce_s256() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_valid_code_challenge(challenge));
        assert!(verify_pkce_s256(verifier, challenge));
        assert!(!verify_pkce_s256(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(!verify_pkce_s256(challenge, challenge));
        assert!(!verify_pkce_s256("short", challenge));
    }
}

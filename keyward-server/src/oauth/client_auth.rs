//! Client authentication at the token endpoint (RFC 6749 §2.3): `client_secret_basic`,
//! `client_secret_post` (form or JSON body), and `none` for public clients.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keyward_core::model::Application;
use keyward_core::secret::verify_secret;
use time::OffsetDateTime;

use crate::error::OAuthError;
use crate::state::AppState;

/// The credentials a request presented.
pub struct PresentedClient {
    pub client_id: String,
    pub secret: Option<String>,
    pub via_basic: bool,
}

/// Reads client credentials from the Authorization header or the body; using both is an
/// error (RFC 6749 §2.3: one method per request).
pub fn presented_client(
    headers: &HeaderMap,
    body_client_id: Option<&str>,
    body_secret: Option<&str>,
) -> Result<PresentedClient, OAuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
        if let Some(encoded) = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, rest)| rest.trim())
        {
            if body_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "use exactly one client authentication method",
                ));
            }
            let decoded = STANDARD
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| OAuthError::invalid_request("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_request("malformed Basic credentials"))?;
            // Both parts are form-urlencoded before base64 (RFC 6749 §2.3.1).
            let id = form_decode(id)?;
            let secret = form_decode(secret)?;
            if body_client_id.is_some_and(|body_id| body_id != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the authenticated client",
                ));
            }
            return Ok(PresentedClient {
                client_id: id,
                secret: Some(secret),
                via_basic: true,
            });
        }
    }
    let client_id = body_client_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| OAuthError::new("invalid_client", "client authentication is required"))?;
    Ok(PresentedClient {
        client_id: client_id.to_owned(),
        secret: body_secret.map(str::to_owned),
        via_basic: false,
    })
}

fn form_decode(value: &str) -> Result<String, OAuthError> {
    percent_encoding::percent_decode_str(&value.replace('+', " "))
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| OAuthError::invalid_request("malformed Basic credentials"))
}

/// Authenticates the presented client. Unknown clients, wrong secrets and a secret-less
/// attempt on a confidential client all answer the same `invalid_client`.
pub async fn authenticate(
    state: &AppState,
    presented: &PresentedClient,
) -> Result<Arc<Application>, OAuthError> {
    let fail = || {
        let mut e = OAuthError::invalid_client();
        e.basic_challenge = presented.via_basic;
        e
    };
    let app = state
        .client(&presented.client_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "client lookup failed");
            OAuthError::server_error()
        })?
        .ok_or_else(fail)?;
    match (&presented.secret, app.kind.is_confidential()) {
        (Some(secret), true) => {
            let now = OffsetDateTime::now_utc();
            let live = app
                .secrets
                .iter()
                .filter(|s| s.is_live(now))
                .map(|s| s.digest.as_slice());
            if verify_secret(secret, live) {
                Ok(app)
            } else {
                Err(fail())
            }
        }
        // A public client authenticates with its id alone ("none"); sending a secret it
        // cannot have is a client error.
        (None, false) => Ok(app),
        (Some(_), false) => Err(fail()),
        (None, true) => Err(fail()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let encoded = STANDARD.encode("my%20client:s%3Acret+x");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        let p = presented_client(&headers, None, None).unwrap();
        assert_eq!(p.client_id, "my client");
        assert_eq!(p.secret.as_deref(), Some("s:cret x"));
        assert!(p.via_basic);
    }

    #[test]
    fn two_methods_at_once_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("a:b"))).unwrap(),
        );
        assert!(presented_client(&headers, Some("a"), Some("b")).is_err());
        assert!(presented_client(&HeaderMap::new(), None, None).is_err());
    }
}

//! OAuth 2.0 client credentials (RFC 6749 §4.4) with a per-(audience, scope) token cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use keyward_proto::TokenResponse;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::error::error_from_response;
use crate::urls::basic_authorization;
use crate::Error;

/// A token is refreshed when less than this remains of it...
const MIN_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// ...or less than this fraction (1/10) of its lifetime, whichever is more.
const REFRESH_FRACTION: u32 = 10;

/// An access token and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub access_token: String,
    pub token_type: String,
    pub scope: Option<String>,
    pub expires_at: Instant,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AccessToken {
    /// Time left before expiry (zero once expired).
    pub fn remaining(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }
}

/// A cached token and the instant from which it is refreshed instead of reused.
#[derive(Clone)]
struct CachedToken {
    token: AccessToken,
    refresh_at: Instant,
}

/// When a token obtained at `obtained_at` with `lifetime` should be replaced: once less
/// than `max(30 s, lifetime / 10)` of it remains. Tokens living 30 s or less are never
/// reused.
pub(crate) fn refresh_at(obtained_at: Instant, lifetime: Duration) -> Instant {
    let margin = MIN_REFRESH_MARGIN.max(lifetime / REFRESH_FRACTION);
    obtained_at + lifetime.saturating_sub(margin)
}

impl CachedToken {
    fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

type CacheKey = (String, Option<String>);
type Slot = Arc<Mutex<Option<CachedToken>>>;

/// Obtains client-credentials tokens from a Keyward token endpoint and caches them.
///
/// Authenticates with `client_secret_basic`. Tokens are cached per (audience, scope) and
/// reused until shortly before they expire; concurrent callers asking for the same token
/// share a single request.
pub struct OAuthClient {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    /// Kept for `client_secret_post` (the authorization-code exchange); never printed.
    client_secret: String,
    authorization: String,
    cache: SyncMutex<HashMap<CacheKey, Slot>>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The authorization-code token request (RFC 6749 §4.1.3, RFC 7636 §4.5) with
/// `client_secret_post` client authentication.
#[derive(Serialize)]
struct CodeForm<'a> {
    grant_type: &'static str,
    code: &'a str,
    redirect_uri: &'a str,
    client_id: &'a str,
    client_secret: &'a str,
    code_verifier: &'a str,
}

#[derive(Serialize)]
struct TokenForm<'a> {
    grant_type: &'static str,
    audience: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

impl OAuthClient {
    /// `token_url` is the full endpoint, for example `https://auth.example.com/oauth2/token`.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl AsRef<str>,
    ) -> Self {
        let client_id = client_id.into();
        Self {
            http: reqwest::Client::new(),
            token_url: token_url.into(),
            authorization: basic_authorization(&client_id, client_secret.as_ref()),
            client_secret: client_secret.as_ref().to_owned(),
            client_id,
            cache: SyncMutex::new(HashMap::new()),
        }
    }

    /// Uses this HTTP client (timeouts, proxies, TLS roots) instead of a default one.
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A token for `audience` with every scope the client holds on it.
    pub async fn client_credentials(&self, audience: &str) -> Result<AccessToken, Error> {
        self.client_credentials_with_scope(audience, None).await
    }

    /// A token for `audience`, limited to `scope` (space-separated) when given.
    pub async fn client_credentials_with_scope(
        &self,
        audience: &str,
        scope: Option<&str>,
    ) -> Result<AccessToken, Error> {
        let slot = self.slot(audience, scope);
        // Held across the request: concurrent callers for the same key wait for this
        // fetch and then find the fresh token in the cache.
        let mut cached = slot.lock().await;
        if let Some(entry) = cached.as_ref().filter(|c| c.is_fresh(Instant::now())) {
            return Ok(entry.token.clone());
        }
        let obtained_at = Instant::now();
        let response = self.request_token(audience, scope).await?;
        let lifetime = Duration::from_secs(response.expires_in);
        let token = AccessToken {
            access_token: response.access_token,
            token_type: response.token_type,
            scope: response.scope,
            expires_at: obtained_at + lifetime,
        };
        *cached = Some(CachedToken {
            token: token.clone(),
            refresh_at: refresh_at(obtained_at, lifetime),
        });
        Ok(token)
    }

    /// Exchanges an authorization code (RFC 6749 §4.1.3) for the user's tokens, with the
    /// PKCE `code_verifier` (RFC 7636 §4.5). The client authenticates with
    /// `client_secret_post` (id and secret in the form body). The result is not cached:
    /// it belongs to the user who approved the request.
    pub async fn exchange_authorization_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<TokenResponse, Error> {
        if code.is_empty() {
            return Err(Error::InvalidArgument(
                "the authorization code is empty".to_owned(),
            ));
        }
        let form = CodeForm {
            grant_type: "authorization_code",
            code,
            redirect_uri,
            client_id: &self.client_id,
            client_secret: &self.client_secret,
            code_verifier,
        };
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode the token request: {e}")))?;
        self.post_token_form(body, None).await
    }

    /// Forgets the cached token for (audience, scope), for example after the API refused
    /// it with 401.
    pub async fn invalidate(&self, audience: &str, scope: Option<&str>) {
        let slot = self.slot(audience, scope);
        *slot.lock().await = None;
    }

    /// Forgets only if the cached token is still `stale`, so that a token another caller
    /// has just fetched is kept.
    pub(crate) async fn invalidate_if(&self, audience: &str, scope: Option<&str>, stale: &str) {
        let slot = self.slot(audience, scope);
        let mut cached = slot.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.token.access_token == stale)
        {
            *cached = None;
        }
    }

    fn slot(&self, audience: &str, scope: Option<&str>) -> Slot {
        let key = (audience.to_owned(), scope.map(str::to_owned));
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.entry(key).or_default().clone()
    }

    async fn request_token(
        &self,
        audience: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse, Error> {
        let form = TokenForm {
            grant_type: "client_credentials",
            audience,
            scope,
        };
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode the token request: {e}")))?;
        self.post_token_form(body, Some(&self.authorization)).await
    }

    /// POSTs a form to the token endpoint, with `authorization` as the `Authorization`
    /// header when given (`client_secret_basic`).
    async fn post_token_form(
        &self,
        body: String,
        authorization: Option<&str>,
    ) -> Result<TokenResponse, Error> {
        let mut request = self
            .http
            .post(&self.token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        let response = request.body(body).send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await?;
        if !(200..300).contains(&status) {
            return Err(error_from_response(status, content_type.as_deref(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            status,
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cached(obtained_at: Instant, lifetime: Duration) -> CachedToken {
        CachedToken {
            token: AccessToken {
                access_token: "t".into(),
                token_type: "Bearer".into(),
                scope: None,
                expires_at: obtained_at + lifetime,
            },
            refresh_at: refresh_at(obtained_at, lifetime),
        }
    }

    #[test]
    fn long_tokens_refresh_when_ten_percent_remains() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        // 10% of an hour is 6 minutes (> 30 s).
        assert_eq!(refresh_at(t0, hour), t0 + Duration::from_secs(3240));
        let token = cached(t0, hour);
        assert!(token.is_fresh(t0));
        assert!(token.is_fresh(t0 + Duration::from_secs(3239)));
        assert!(!token.is_fresh(t0 + Duration::from_secs(3240)));
        assert!(!token.is_fresh(t0 + Duration::from_secs(4000)));
    }

    #[test]
    fn short_tokens_keep_a_thirty_second_margin() {
        let t0 = Instant::now();
        // 10% of 120 s is 12 s, so the 30 s floor applies.
        assert_eq!(
            refresh_at(t0, Duration::from_secs(120)),
            t0 + Duration::from_secs(90)
        );
        assert_eq!(
            refresh_at(t0, Duration::from_secs(300)),
            t0 + Duration::from_secs(270)
        );
        // Exactly at the crossover (300 s) both rules give 30 s.
        assert_eq!(
            refresh_at(t0, Duration::from_secs(600)),
            t0 + Duration::from_secs(540)
        );
    }

    #[test]
    fn tokens_of_thirty_seconds_or_less_are_never_reused() {
        let t0 = Instant::now();
        for secs in [0, 1, 29, 30] {
            let token = cached(t0, Duration::from_secs(secs));
            assert!(!token.is_fresh(t0), "lifetime {secs}s");
        }
        assert!(cached(t0, Duration::from_secs(31)).is_fresh(t0));
    }

    #[test]
    fn slots_are_per_audience_and_scope() {
        let client = OAuthClient::new("http://h/oauth2/token", "id", "secret");
        let a = client.slot("https://api", None);
        let b = client.slot("https://api", None);
        let c = client.slot("https://api", Some("users:read"));
        let d = client.slot("https://other", None);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(!Arc::ptr_eq(&a, &d));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let client = OAuthClient::new("http://h/oauth2/token", "id", "top-secret");
        assert!(!format!("{client:?}").contains("top-secret"));
        let token = cached(Instant::now(), Duration::from_secs(60)).token;
        assert!(!format!("{token:?}").contains("\"t\""));
    }

    #[test]
    fn code_form_carries_client_secret_post_and_verifier() {
        let form = CodeForm {
            grant_type: "authorization_code",
            code: "c 1",
            redirect_uri: "http://127.0.0.1:8787/claim/callback",
            client_id: "partner",
            client_secret: "s+/",
            code_verifier: "v",
        };
        assert_eq!(
            serde_urlencoded::to_string(&form).unwrap(),
            "grant_type=authorization_code&code=c+1\
             &redirect_uri=http%3A%2F%2F127.0.0.1%3A8787%2Fclaim%2Fcallback\
             &client_id=partner&client_secret=s%2B%2F&code_verifier=v"
        );
    }

    #[test]
    fn token_form_omits_absent_scope() {
        let form = TokenForm {
            grant_type: "client_credentials",
            audience: "http://127.0.0.1:8080/api",
            scope: None,
        };
        assert_eq!(
            serde_urlencoded::to_string(&form).unwrap(),
            "grant_type=client_credentials&audience=http%3A%2F%2F127.0.0.1%3A8080%2Fapi"
        );
        let form = TokenForm {
            scope: Some("users:read users:write"),
            ..form
        };
        assert!(serde_urlencoded::to_string(&form)
            .unwrap()
            .ends_with("&scope=users%3Aread+users%3Awrite"));
    }
}

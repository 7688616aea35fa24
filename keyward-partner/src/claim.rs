//! The claim flow: the claim page, `POST /claim/start` (CSRF check, state and PKCE, the
//! redirect to Keyward) and `GET /claim/callback` (state, browser binding, `iss` and
//! project checks, the code exchange and the transfer).
//!
//! Pending claims live in memory for 10 minutes, at most [`MAX_PENDING`] of them. That is
//! enough for one instance of the reference partner; a partner running several instances
//! keeps them in its database (keyed by a digest of `state`), since the callback may reach
//! another instance than the one that started the claim.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use cookie::{Cookie, SameSite};
use keyward_client::proto::provisioning::ClaimInfo;
use keyward_client::{random_token, Error as ClientError, Pkce};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use crate::pages::{format_time, Link, Message};
use crate::service::Shared;

/// How long a started claim may take to come back through the callback.
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(600);
/// Most claims in progress at once.
pub(crate) const MAX_PENDING: usize = 10_000;

/// The double-submit CSRF cookie of the claim form.
const CSRF_COOKIE: &str = "kwp_csrf";
/// The cookie that binds pending claims to the browser that started them.
const BINDING_COOKIE: &str = "kwp_claim";
const COOKIE_PATH: &str = "/claim";
/// Random cookie values: 32 bytes, base64url.
const COOKIE_VALUE_LEN: usize = 43;

/// A claim between `POST /claim/start` and its callback.
pub(crate) struct PendingClaim {
    code_verifier: String,
    project_id: String,
    project_name: String,
    /// For the "start over" link of the callback's error pages.
    claim_token: String,
    /// SHA-256 of the browser's binding cookie.
    binding: [u8; 32],
    created_at: Instant,
}

pub(crate) struct ClaimStore {
    pending: Mutex<HashMap<String, PendingClaim>>,
}

impl ClaimStore {
    pub(crate) fn new() -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Stores a pending claim under `state`; `false` when [`MAX_PENDING`] unexpired
    /// claims are already waiting.
    fn insert(&self, state: String, claim: PendingClaim) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING {
            let now = Instant::now();
            pending.retain(|_, c| now.duration_since(c.created_at) < CLAIM_TTL);
            if pending.len() >= MAX_PENDING {
                return false;
            }
        }
        pending.insert(state, claim);
        true
    }

    /// Removes and returns the claim of `state`: each state is used once, whatever the
    /// outcome of the callback.
    fn take(&self, state: &str) -> Option<PendingClaim> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
    }
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    token: Option<String>,
}

/// `GET /claim?token=…`: what the link refers to, and the Claim button.
pub(crate) async fn page(
    State(state): State<Shared>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = query.token.filter(|t| !t.is_empty()) else {
        return state.pages.error(
            StatusCode::BAD_REQUEST,
            "Incomplete claim link",
            "This link has no claim token. Copy the whole claim URL that create-db printed.",
        );
    };
    let info = match state.api.lookup_claim(&token).await {
        Ok(info) => info,
        Err(error) => return lookup_error_page(&state, &error),
    };
    let (csrf, set_cookie) = match read_cookie(&headers, CSRF_COOKIE).filter(|v| well_formed(v)) {
        Some(existing) => (existing, None),
        None => {
            let fresh = random_token(32);
            let cookie = build_cookie(
                CSRF_COOKIE,
                &fresh,
                SameSite::Strict,
                3600,
                state.config.secure_cookies(),
            );
            (fresh, Some(cookie))
        }
    };
    let mut response = state.pages.claim(
        &info.project_name,
        &info.partner_name,
        &info.region.name,
        info.expires_at,
        &token,
        &csrf,
    );
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct StartForm {
    token: String,
    csrf: String,
}

/// `POST /claim/start`: checks the CSRF token, records the pending claim and sends the
/// browser to Keyward's authorization endpoint.
pub(crate) async fn start(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<StartForm>,
) -> Response {
    let csrf_ok = read_cookie(&headers, CSRF_COOKIE)
        .is_some_and(|cookie| !cookie.is_empty() && ct_eq(cookie.as_bytes(), form.csrf.as_bytes()));
    if !csrf_ok {
        return state.pages.error(
            StatusCode::FORBIDDEN,
            "Please try again",
            "This request did not come from the claim page in this browser (the form's check \
             token is missing or does not match). Open the claim link again and press Claim.",
        );
    }
    // A fresh lookup: the project id comes from Keyward, never from the form.
    let info: ClaimInfo = match state.api.lookup_claim(&form.token).await {
        Ok(info) => info,
        Err(error) => return lookup_error_page(&state, &error),
    };
    let binding = read_cookie(&headers, BINDING_COOKIE)
        .filter(|v| well_formed(v))
        .unwrap_or_else(|| random_token(32));
    let oauth_state = random_token(32);
    let pkce = Pkce::generate();
    let stored = state.claims.insert(
        oauth_state.clone(),
        PendingClaim {
            code_verifier: pkce.verifier.clone(),
            project_id: info.project_id.clone(),
            project_name: info.project_name.clone(),
            claim_token: form.token.clone(),
            binding: digest(&binding),
            created_at: Instant::now(),
        },
    );
    if !stored {
        return state.pages.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many claims in progress",
            "Please try again in a few minutes.",
        );
    }
    let location = match authorize_url(&state, &oauth_state, &pkce, &form.token) {
        Ok(url) => url,
        Err(error) => {
            tracing::error!(%error, "cannot build the authorization URL");
            return state.pages.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The partner is misconfigured (its Keyward URL).",
            );
        }
    };
    let cookie = build_cookie(
        BINDING_COOKIE,
        &binding,
        SameSite::Lax,
        CLAIM_TTL.as_secs(),
        state.config.secure_cookies(),
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

fn authorize_url(
    state: &Shared,
    oauth_state: &str,
    pkce: &Pkce,
    claim_token: &str,
) -> Result<String, url::ParseError> {
    let mut url = Url::parse(&state.config.authorize_url())?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &state.config.client_id)
        .append_pair("redirect_uri", &state.config.redirect_uri())
        .append_pair("scope", "workspace:admin")
        .append_pair("state", oauth_state)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", Pkce::METHOD)
        .append_pair("claim_token", claim_token);
    Ok(url.into())
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    project_id: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /claim/callback`: Keyward's redirect back.
pub(crate) async fn callback(
    State(state): State<Shared>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let pages = &state.pages;
    let start_again = "Open the claim link again to start over.";
    let refuse = |title: &str, why: &str, link: Option<Link>| {
        pages.message(
            StatusCode::BAD_REQUEST,
            &Message {
                kind: "error",
                title,
                paragraphs: vec![why.to_owned(), start_again.to_owned()],
                detail: None,
                link,
            },
        )
    };
    let Some(oauth_state) = query.state.filter(|s| !s.is_empty()) else {
        return refuse(
            "Invalid sign-in response",
            "The response has no state.",
            None,
        );
    };
    // Single use: removed now, whatever happens next.
    let Some(pending) = state.claims.take(&oauth_state) else {
        return refuse(
            "Invalid sign-in response",
            "This sign-in response is unknown or was already used.",
            None,
        );
    };
    if pending.created_at.elapsed() >= CLAIM_TTL {
        return refuse(
            "The claim took too long",
            "More than 10 minutes passed between pressing Claim and coming back.",
            claim_link(&pending),
        );
    }
    let same_browser = read_cookie(&headers, BINDING_COOKIE)
        .is_some_and(|cookie| ct_eq(&digest(&cookie), &pending.binding));
    if !same_browser {
        return refuse(
            "Invalid sign-in response",
            "This sign-in response belongs to a claim started in another browser.",
            None,
        );
    }
    // RFC 9207: the response must come from the issuer the request went to.
    if let Some(iss) = &query.iss {
        if iss.trim_end_matches('/') != state.config.issuer {
            return refuse(
                "Invalid sign-in response",
                "The response came from another authorization server than the one the claim was sent to.",
                None,
            );
        }
    }
    if let Some(error) = query.error.filter(|e| !e.is_empty()) {
        let (status, title, text) = if error == "access_denied" {
            (
                StatusCode::FORBIDDEN,
                "Claim cancelled",
                format!(
                    "You did not approve the claim, so {} stays where it is until it is deleted.",
                    pending.project_name
                ),
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                "Keyward could not complete the claim",
                format!("Keyward answered with the error {error}."),
            )
        };
        return pages.message(
            status,
            &Message {
                kind: "error",
                title,
                paragraphs: vec![text, start_again.to_owned()],
                detail: query.error_description,
                link: claim_link(&pending),
            },
        );
    }
    if query.project_id.as_deref() != Some(pending.project_id.as_str()) {
        return refuse(
            "Invalid sign-in response",
            "Keyward approved a different project than the one this claim was started for.",
            claim_link(&pending),
        );
    }
    let Some(code) = query.code.filter(|c| !c.is_empty()) else {
        return refuse(
            "Invalid sign-in response",
            "The response has no authorization code.",
            claim_link(&pending),
        );
    };
    let tokens = match state
        .oauth
        .exchange_authorization_code(&code, &state.config.redirect_uri(), &pending.code_verifier)
        .await
    {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::warn!(%error, project = %pending.project_id, "code exchange failed");
            let detail = match &error {
                ClientError::OAuth { body, .. } => Some(
                    body.error_description
                        .clone()
                        .unwrap_or_else(|| body.error.clone()),
                ),
                _ => None,
            };
            return pages.message(
                StatusCode::BAD_GATEWAY,
                &Message {
                    kind: "error",
                    title: "Keyward did not accept the sign-in",
                    paragraphs: vec![start_again.to_owned()],
                    detail,
                    link: claim_link(&pending),
                },
            );
        }
    };
    match state
        .api
        .transfer_project(&pending.project_id, &tokens.access_token)
        .await
    {
        Ok(project) => {
            tracing::info!(project = %project.id, workspace = %project.workspace.id, "project claimed");
            let mut paragraphs = vec![format!(
                "{} is now in your workspace {}.",
                project.name, project.workspace.name
            )];
            paragraphs.push(match project.expires_at {
                None => "It is no longer deleted automatically, and its connection strings keep working.".to_owned(),
                Some(at) => format!("Its connection strings keep working. It is deleted at {} unless its limit is lifted.", format_time(at)),
            });
            pages.message(
                StatusCode::OK,
                &Message {
                    kind: "success",
                    title: "Project claimed",
                    paragraphs,
                    detail: None,
                    link: None,
                },
            )
        }
        Err(error) => {
            tracing::warn!(%error, project = %pending.project_id, "transfer refused");
            let (status, detail) = match &error {
                ClientError::Api { status, problem } => (
                    StatusCode::from_u16(*status)
                        .ok()
                        .filter(|s| s.is_client_error() || s.is_server_error())
                        .unwrap_or(StatusCode::BAD_GATEWAY),
                    Some(
                        problem
                            .detail
                            .clone()
                            .unwrap_or_else(|| problem.title.clone()),
                    ),
                ),
                _ => (StatusCode::BAD_GATEWAY, None),
            };
            pages.message(
                status,
                &Message {
                    kind: "error",
                    title: "The project could not be moved",
                    paragraphs: vec![format!(
                        "Keyward refused to move {} into your workspace.",
                        pending.project_name
                    )],
                    detail,
                    link: claim_link(&pending),
                },
            )
        }
    }
}

/// The page for a failed claim lookup: 410 when expired, 404 when unknown or claimed.
fn lookup_error_page(state: &Shared, error: &ClientError) -> Response {
    let pages = &state.pages;
    match error.status() {
        Some(410) => pages.error(
            StatusCode::GONE,
            "This claim link has expired",
            "The database's time limit has passed, so it is deleted and can no longer be \
             claimed. Create a new one with create-db.",
        ),
        Some(404) => pages.error(
            StatusCode::NOT_FOUND,
            "Claim link not found",
            "This claim link is unknown, or the project was already claimed.",
        ),
        _ => {
            if let ClientError::Api { problem, .. } = error {
                if (400..500).contains(&problem.status) {
                    return pages.message(
                        StatusCode::BAD_REQUEST,
                        &Message {
                            kind: "error",
                            title: "This claim link cannot be used",
                            paragraphs: vec!["Keyward did not accept this claim link.".to_owned()],
                            detail: problem.detail.clone(),
                            link: None,
                        },
                    );
                }
            }
            tracing::error!(%error, "claim lookup failed");
            pages.error(
                StatusCode::BAD_GATEWAY,
                "Keyward is unavailable",
                "The claim cannot be checked right now; please try again in a moment.",
            )
        }
    }
}

/// Back to the claim page of this claim: only for a browser that proved it started it.
fn claim_link(pending: &PendingClaim) -> Option<Link> {
    let mut url = Url::parse("http://partner/claim").ok()?;
    url.query_pairs_mut()
        .append_pair("token", &pending.claim_token);
    Some(Link {
        href: format!("/claim?{}", url.query()?),
        text: "Back to the claim page",
    })
}

fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}

fn well_formed(value: &str) -> bool {
    value.len() == COOKIE_VALUE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn build_cookie(
    name: &'static str,
    value: &str,
    same_site: SameSite,
    max_age_secs: u64,
    secure: bool,
) -> HeaderValue {
    let cookie = Cookie::build((name, value.to_owned()))
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(same_site)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age_secs).unwrap_or(600),
        ))
        .build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Compares without an early exit on the first differing byte.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; kwp_csrf=x"));
        headers.append(header::COOKIE, HeaderValue::from_static("kwp_claim=y"));
        assert_eq!(read_cookie(&headers, CSRF_COOKIE).as_deref(), Some("x"));
        assert_eq!(read_cookie(&headers, BINDING_COOKIE).as_deref(), Some("y"));
        assert_eq!(read_cookie(&headers, "none"), None);
    }

    #[test]
    fn cookie_attributes() {
        let value = build_cookie(BINDING_COOKIE, "v", SameSite::Lax, 600, false);
        let text = value.to_str().unwrap();
        assert!(text.starts_with("kwp_claim=v;"));
        assert!(text.contains("HttpOnly"));
        assert!(text.contains("SameSite=Lax"));
        assert!(text.contains("Path=/claim"));
        assert!(text.contains("Max-Age=600"));
        assert!(!text.contains("Secure"));
        let secure = build_cookie(CSRF_COOKIE, "v", SameSite::Strict, 60, true);
        assert!(secure.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn states_are_single_use() {
        let store = ClaimStore::new();
        let claim = || PendingClaim {
            code_verifier: "v".into(),
            project_id: "prj_1".into(),
            project_name: "p".into(),
            claim_token: "t".into(),
            binding: digest("b"),
            created_at: Instant::now(),
        };
        assert!(store.insert("s".into(), claim()));
        assert!(store.take("s").is_some());
        assert!(store.take("s").is_none());
        assert!(well_formed(&random_token(32)));
        assert!(!well_formed("short"));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}

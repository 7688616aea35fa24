//! Hosted, server-rendered pages: sign-in (password or emailed code), set-password, sign-up,
//! workspace picker, consent, sign-out, errors. Shared plumbing lives here: cookies, CSRF, security headers, rendering.

pub mod email_code;
pub mod flow;
pub mod pages;
pub mod session;
pub mod templates;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use cookie::{Cookie, SameSite};
use keyward_core::secret::random_token;
use subtle::ConstantTimeEq;

use crate::state::AppState;

pub const SESSION_COOKIE: &str = "kw_session";
pub const CSRF_COOKIE: &str = "kw_csrf";

/// CSP for the hosted pages: our own stylesheet only, no scripts, never framed. No
/// `form-action`: browsers apply it to the redirect that follows a form post, which is the
/// redirect back to the client.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'";

/// Adds the anti-clickjacking and privacy headers to every hosted page (RFC 9700 §4.16).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of cookie `name` in the request, if any.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value: HttpOnly, `Path=/`, `Secure` on https deployments.
pub fn cookie_header(
    state: &AppState,
    name: &str,
    value: &str,
    same_site: SameSite,
    max_age_secs: Option<i64>,
) -> HeaderValue {
    let mut builder = Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(same_site)
        .secure(state.settings.secure_cookies());
    if let Some(secs) = max_age_secs {
        builder = builder.max_age(cookie::time::Duration::seconds(secs));
    }
    HeaderValue::from_str(&builder.build().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Double-submit CSRF protection: a random token in an HttpOnly `SameSite=Strict` cookie,
/// echoed in each form (hidden field) or JSON call (`X-CSRF-Token`). A cross-site page can
/// neither read the cookie nor make the browser send it.
pub struct Csrf {
    pub token: String,
    /// Set when the browser had no token yet.
    pub set_cookie: Option<HeaderValue>,
}

impl Csrf {
    pub fn for_request(state: &AppState, headers: &HeaderMap) -> Self {
        match read_cookie(headers, CSRF_COOKIE).filter(|t| t.len() >= 32) {
            Some(token) => Self {
                token,
                set_cookie: None,
            },
            None => {
                let token = random_token(32);
                let set_cookie = cookie_header(state, CSRF_COOKIE, &token, SameSite::Strict, None);
                Self {
                    token,
                    set_cookie: Some(set_cookie),
                }
            }
        }
    }

    /// True when `presented` equals the cookie's token (constant time).
    pub fn verify(headers: &HeaderMap, presented: &str) -> bool {
        match read_cookie(headers, CSRF_COOKIE) {
            Some(cookie) if cookie.len() >= 32 => {
                cookie.as_bytes().ct_eq(presented.as_bytes()).into()
            }
            _ => false,
        }
    }

    pub fn apply(&self, response: &mut Response) {
        if let Some(cookie) = &self.set_cookie {
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie.clone());
        }
    }
}

/// The client's address (for throttling), from the connection.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(Self(addr))
    }
}

/// An HTML page with a status.
pub fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

/// 303 See Other to `location` (after a POST, and for every step of the flow).
pub fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => templates::error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "The redirect address is not valid.",
        ),
    }
}

/// Percent-encodes a query value.
pub fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

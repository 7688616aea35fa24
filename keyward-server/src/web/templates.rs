//! Page templates (`keyward-server/templates/`, embedded at build time) rendered with
//! minijinja; auto-escaping is on for every `.html` template.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("sign_in.html", include_str!("../../templates/sign_in.html")),
    ("sign_up.html", include_str!("../../templates/sign_up.html")),
    (
        "workspace.html",
        include_str!("../../templates/workspace.html"),
    ),
    ("consent.html", include_str!("../../templates/consent.html")),
    (
        "sign_out.html",
        include_str!("../../templates/sign_out.html"),
    ),
    ("message.html", include_str!("../../templates/message.html")),
    (
        "external_authorize.html",
        include_str!("../../templates/external_authorize.html"),
    ),
    (
        "sign_in_code.html",
        include_str!("../../templates/sign_in_code.html"),
    ),
    (
        "sign_in_code_verify.html",
        include_str!("../../templates/sign_in_code_verify.html"),
    ),
    (
        "set_password.html",
        include_str!("../../templates/set_password.html"),
    ),
];

pub const STYLESHEET: &str = include_str!("../../templates/keyward.css");

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "template does not compile");
            }
        }
        env
    })
}

/// Renders `name` with `context`; a rendering failure is logged and answered with a plain
/// error page.
pub fn render(name: &str, context: impl Serialize) -> Result<String, minijinja::Error> {
    environment().get_template(name)?.render(context)
}

pub fn page(status: StatusCode, name: &str, context: impl Serialize) -> Response {
    match render(name, context) {
        Ok(body) => super::html(status, body),
        Err(e) => {
            tracing::error!(template = name, error = %e, "could not render page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Serialize)]
struct Message<'a> {
    title: &'a str,
    message: &'a str,
    tone: &'a str,
    link: Option<(&'a str, &'a str)>,
}

/// The error page: shown when the request cannot be sent back to the client (unknown
/// client, unregistered redirect URI, expired interaction).
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        "message.html",
        Message {
            title,
            message,
            tone: "error",
            link: None,
        },
    )
}

/// A neutral information page with an optional link `(href, label)`.
pub fn info_page(title: &str, message: &str, link: Option<(&str, &str)>) -> Response {
    page(
        StatusCode::OK,
        "message.html",
        Message {
            title,
            message,
            tone: "info",
            link,
        },
    )
}

pub async fn stylesheet() -> Response {
    let mut response = STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn every_template_compiles_and_escapes() {
        for (name, _) in TEMPLATES {
            environment().get_template(name).unwrap();
        }
        let body = render(
            "message.html",
            Message {
                title: "<script>x</script>",
                message: "m",
                tone: "info",
                link: None,
            },
        )
        .unwrap();
        assert!(body.contains("&lt;script&gt;"));
        assert!(!body.contains("<script>x"));
    }

    #[test]
    fn pages_render() {
        let ctx = serde_json::json!({
            "csrf_token": "c", "interaction": "i j", "login": "l", "error": "e",
            "client_name": "App", "username": "u", "email": "e", "name": "n", "min_password": 8,
            "workspaces": [{ "id": "acc_1", "name": "W", "role": "owner" }],
            "scopes": [{ "name": "openid", "description": "d" }], "user_label": "u",
            "workspace": "W", "redirect_host": "h", "continue": "/x",
            "title": "t", "message": "m", "tone": "info", "link": ["/a", "b"],
            "ttl_minutes": 10, "code_length": 8,
            "id": "xap_1", "approval_prompt": "p", "description": "d", "connected": true,
            "return_to": "/r", "authorization_host": "h",
        });
        for (name, _) in TEMPLATES {
            if *name == "base.html" {
                continue;
            }
            let body = render(name, &ctx).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(body.contains("<html"), "{name}");
        }
    }
}

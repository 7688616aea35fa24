//! The client's error type and the mapping of error responses to it.

use keyward_proto::{OAuthErrorBody, Problem};
use serde_json::Value;

/// Everything a Keyward call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be sent or the response could not be read.
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The management API refused the request (RFC 9457 problem details). Boxed to keep
    /// `Result<_, Error>` small.
    #[error("API error {status} ({}): {}", problem.code, problem_message(problem))]
    Api { status: u16, problem: Box<Problem> },
    /// The token endpoint refused the request (RFC 6749 §5.2).
    #[error("OAuth error {status} ({}){}", body.error, oauth_description(body))]
    OAuth { status: u16, body: OAuthErrorBody },
    /// A response that is neither a success nor a recognizable error body.
    #[error("unexpected response {status}: {body}")]
    Unexpected { status: u16, body: String },
    /// A success response whose body does not have the documented shape.
    #[error("cannot decode the {status} response: {message}")]
    Decode { status: u16, message: String },
    /// An argument that cannot form a valid request, such as an empty id.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The stable error code: the problem `code` of the management API or the OAuth `error`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { problem, .. } => Some(&problem.code),
            Self::OAuth { body, .. } => Some(&body.error),
            _ => None,
        }
    }

    /// The HTTP status of the response, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. }
            | Self::OAuth { status, .. }
            | Self::Unexpected { status, .. }
            | Self::Decode { status, .. } => Some(*status),
            Self::Http(e) => e.status().map(|s| s.as_u16()),
            Self::InvalidArgument(_) => None,
        }
    }

    /// True for a 404 answer.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

fn problem_message(problem: &Problem) -> &str {
    problem.detail.as_deref().unwrap_or(&problem.title)
}

fn oauth_description(body: &OAuthErrorBody) -> String {
    body.error_description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

/// Longest response body kept in [`Error::Unexpected`].
const MAX_BODY_CHARS: usize = 2048;

/// Maps a non-success response to an [`Error`].
///
/// A JSON body with a string `code` (or any `application/problem+json` body) is a
/// [`Problem`]; a JSON body with a string `error` is an OAuth error; anything else is
/// [`Error::Unexpected`].
pub(crate) fn error_from_response(status: u16, content_type: Option<&str>, body: &[u8]) -> Error {
    let is_problem = content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/problem+json"))
    });
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
        let code = text("code");
        if code.is_some() || is_problem {
            let problem = Problem {
                type_uri: text("type").unwrap_or_else(|| "about:blank".to_owned()),
                title: text("title").unwrap_or_else(|| reason_phrase(status).to_owned()),
                status: map
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(status),
                detail: text("detail"),
                code: code.unwrap_or_else(|| "unknown".to_owned()),
                request_id: text("request_id"),
            };
            return Error::Api {
                status,
                problem: Box::new(problem),
            };
        }
        if let Some(error) = text("error") {
            let body = OAuthErrorBody {
                error,
                error_description: text("error_description"),
            };
            return Error::OAuth { status, body };
        }
    }
    let mut text = String::from_utf8_lossy(body).into_owned();
    if let Some((cut, _)) = text.char_indices().nth(MAX_BODY_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    Error::Unexpected { status, body: text }
}

fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn problem_json_becomes_api_error() {
        let body = br#"{"type":"https://keyward.dev/problems/conflict","title":"Conflict","status":409,"detail":"the account has child accounts","code":"account_has_children","request_id":"r1"}"#;
        let err = error_from_response(409, Some("application/problem+json"), body);
        assert_eq!(err.code(), Some("account_has_children"));
        assert_eq!(err.status(), Some(409));
        match err {
            Error::Api { problem, .. } => {
                assert_eq!(problem.title, "Conflict");
                assert_eq!(problem.request_id.as_deref(), Some("r1"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn plain_json_with_code_is_a_problem_too() {
        let err = error_from_response(422, Some("application/json"), br#"{"code":"email_taken"}"#);
        match err {
            Error::Api { problem, .. } => {
                assert_eq!(problem.code, "email_taken");
                assert_eq!(problem.title, "Unprocessable Entity");
                assert_eq!(problem.type_uri, "about:blank");
                assert_eq!(problem.status, 422);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn oauth_errors_are_recognized() {
        let body = br#"{"error":"invalid_client","error_description":"bad secret"}"#;
        let err = error_from_response(401, Some("application/json"), body);
        assert_eq!(err.code(), Some("invalid_client"));
        assert!(err.to_string().contains("bad secret"));
        assert!(matches!(err, Error::OAuth { status: 401, .. }));
    }

    #[test]
    fn other_bodies_are_unexpected_and_truncated() {
        let err = error_from_response(502, Some("text/html"), b"<html>bad gateway</html>");
        assert!(
            matches!(&err, Error::Unexpected { status: 502, body } if body.contains("bad gateway"))
        );
        assert_eq!(err.code(), None);
        let long = "x".repeat(10_000);
        match error_from_response(500, None, long.as_bytes()) {
            Error::Unexpected { body, .. } => assert!(body.chars().count() <= MAX_BODY_CHARS + 1),
            other => panic!("unexpected {other:?}"),
        }
        // JSON that is not an object, or an object without code/error.
        assert!(matches!(
            error_from_response(400, None, b"[1]"),
            Error::Unexpected { .. }
        ));
        assert!(matches!(
            error_from_response(400, None, br#"{"message":"x"}"#),
            Error::Unexpected { .. }
        ));
    }
}

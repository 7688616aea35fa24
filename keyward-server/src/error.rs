//! Error responses: RFC 9457 problem+json for the management API, RFC 6749 §5.2 JSON for
//! the OAuth endpoints. Internal errors are logged with the request id and answered
//! without details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::{StoreError, ValidationError};
use keyward_proto::{OAuthErrorBody, Problem};

/// A management API error. `code()` is the stable identifier in the problem body.
#[derive(Debug)]
pub enum ApiError {
    /// 401: no bearer token, or one that fails verification.
    Unauthenticated(&'static str),
    /// 403: the token lacks a scope the route needs.
    InsufficientScope(&'static str),
    NotFound(&'static str),
    /// 409 with a stable code (`email_taken`, `last_owner` …).
    Conflict {
        code: &'static str,
        detail: String,
    },
    /// 422: a field failed validation.
    Validation(ValidationError),
    /// 400 with a stable code (malformed JSON, bad query string).
    BadRequest {
        code: &'static str,
        detail: String,
    },
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 403 with a stable code: authenticated but not allowed (not a member, bad origin,
    /// CSRF check failed).
    Forbidden {
        code: &'static str,
        detail: String,
    },
    /// 429: too many failed attempts; retry later.
    TooManyRequests,
    /// 410 with a stable code: the thing existed but is no longer usable (an expired
    /// claim link or project).
    Gone {
        code: &'static str,
        detail: String,
    },
    /// 503 with a stable code: a dependency (a database region) is missing or down.
    Unavailable {
        code: &'static str,
        detail: String,
    },
    /// 409 with a stable code and the URL where the user connects an external application
    /// again (`authorize_url`, an extension member of the problem).
    Reconnect {
        code: &'static str,
        detail: String,
        authorize_url: String,
    },
    /// 502 with a stable code: an upstream server failed or answered nonsense.
    BadGateway {
        code: &'static str,
        detail: String,
    },
    /// 500: logged, never detailed to the client.
    Internal(String),
    /// Internal error that already carries the request id to report.
    #[doc(hidden)]
    WithRequestId(Box<ApiError>, String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Gone { .. } => StatusCode::GONE,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Reconnect { .. } => StatusCode::CONFLICT,
            Self::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::WithRequestId(inner, _) => inner.status(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::NotFound(_) => "not_found",
            Self::Conflict { code, .. } => code,
            Self::Validation(_) => "validation_failed",
            Self::BadRequest { code, .. } => code,
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Forbidden { code, .. } => code,
            Self::TooManyRequests => "too_many_attempts",
            Self::Gone { code, .. }
            | Self::Unavailable { code, .. }
            | Self::Reconnect { code, .. }
            | Self::BadGateway { code, .. } => code,
            Self::Internal(_) => "internal_error",
            Self::WithRequestId(inner, _) => inner.code(),
        }
    }

    /// Denied (authentication/authorization) versus failed, for the audit log.
    pub fn is_denial(&self) -> bool {
        match self {
            Self::Unauthenticated(_)
            | Self::InsufficientScope(_)
            | Self::Forbidden { .. }
            | Self::TooManyRequests => true,
            Self::WithRequestId(inner, _) => inner.is_denial(),
            _ => false,
        }
    }

    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation(ValidationError::new(field, message))
    }

    pub fn with_request_id(self, request_id: Option<&str>) -> Self {
        match request_id {
            Some(id) => Self::WithRequestId(Box::new(self), id.to_owned()),
            None => self,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            Self::Unauthenticated(why) => Some((*why).to_owned()),
            Self::InsufficientScope(scope) => {
                Some(format!("this operation needs the scope {scope}"))
            }
            Self::NotFound(what) => Some(format!("{what} not found")),
            Self::Conflict { detail, .. }
            | Self::BadRequest { detail, .. }
            | Self::Forbidden { detail, .. }
            | Self::Gone { detail, .. }
            | Self::Unavailable { detail, .. }
            | Self::Reconnect { detail, .. }
            | Self::BadGateway { detail, .. } => Some(detail.clone()),
            Self::TooManyRequests => Some("too many failed attempts; try again later".into()),
            Self::Validation(e) => Some(e.to_string()),
            Self::UnsupportedMediaType => Some("send the body as application/json".into()),
            Self::Internal(_) => None,
            Self::WithRequestId(inner, _) => inner.detail(),
        }
    }

    fn title(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "Unauthorized",
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::NOT_FOUND => "Not Found",
            StatusCode::CONFLICT => "Conflict",
            StatusCode::UNPROCESSABLE_ENTITY => "Unprocessable Content",
            StatusCode::BAD_REQUEST => "Bad Request",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported Media Type",
            StatusCode::TOO_MANY_REQUESTS => "Too Many Requests",
            StatusCode::GONE => "Gone",
            StatusCode::SERVICE_UNAVAILABLE => "Service Unavailable",
            StatusCode::BAD_GATEWAY => "Bad Gateway",
            _ => "Internal Server Error",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Conflict(code) => Self::Conflict {
                code,
                detail: conflict_detail(code).into(),
            },
            StoreError::LastOwner => Self::Conflict {
                code: "last_owner",
                detail: "an account must keep at least one owner".into(),
            },
            StoreError::HasChildren => Self::Conflict {
                code: "account_has_children",
                detail: "the account has child accounts; delete with ?cascade=true to delete them too".into(),
            },
            StoreError::UserIsLastOwner => Self::Conflict {
                code: "user_is_last_owner",
                detail: "the user is the only owner of an account; add another owner first or delete with ?force=true".into(),
            },
            StoreError::Internal(message) => Self::Internal(message),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Validation(e)
    }
}

fn conflict_detail(code: &str) -> &'static str {
    match code {
        "username_taken" => "the username is already in use",
        "email_taken" => "the email address is already in use",
        "phone_taken" => "the phone number is already in use",
        "external_id_taken" => "the external id is already in use in this source",
        "identity_taken" => "another user holds one of these social identities",
        "id_taken" => "a user with this id exists",
        "client_id_taken" => "the client id is already in use",
        "identifier_taken" => "an API resource with this identifier exists",
        "already_member" => "the user is already a member of this account",
        "account_has_projects" => {
            "the account (or an account under it) still owns projects; delete or transfer them first"
        }
        _ => "the request conflicts with the current state",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (inner, request_id) = match self {
            Self::WithRequestId(inner, id) => (*inner, Some(id)),
            other => (other, None),
        };
        if let Self::Internal(message) = &inner {
            tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), error = %message, "internal error");
        }
        let status = inner.status();
        let problem = Problem {
            type_uri: format!("https://keyward.dev/problems/{}", inner.code()),
            title: inner.title().into(),
            status: status.as_u16(),
            detail: inner.detail(),
            code: inner.code().into(),
            request_id,
        };
        let mut response = match &inner {
            // RFC 9457 §3.2: extension members sit beside the standard ones.
            Self::Reconnect { authorize_url, .. } => {
                let mut body = serde_json::to_value(&problem).unwrap_or_default();
                if let Some(object) = body.as_object_mut() {
                    object.insert("authorize_url".into(), authorize_url.clone().into());
                }
                (status, axum::Json(body)).into_response()
            }
            _ => (status, axum::Json(problem)).into_response(),
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &inner {
            Self::Unauthenticated(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="keyward", error="invalid_token""#),
                );
            }
            Self::InsufficientScope(scope) => {
                if let Ok(value) = HeaderValue::from_str(&format!(
                    r#"Bearer realm="keyward", error="insufficient_scope", scope="{scope}""#
                )) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// An OAuth token-endpoint error (RFC 6749 §5.2, RFC 8707 §2).
#[derive(Debug)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
    /// True when the client tried HTTP Basic: a 401 must then carry WWW-Authenticate.
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    pub fn invalid_client() -> Self {
        Self::new("invalid_client", "client authentication failed")
    }

    pub fn server_error() -> Self {
        Self::new("server_error", "the server could not complete the request")
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = match self.error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = OAuthErrorBody {
            error: self.error.into(),
            error_description: Some(self.description),
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if status == StatusCode::UNAUTHORIZED {
            let challenge = if self.basic_challenge {
                r#"Basic realm="keyward""#
            } else {
                r#"Bearer realm="keyward""#
            };
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

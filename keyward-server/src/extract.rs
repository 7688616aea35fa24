//! Request extractors that turn every rejection into a problem+json error.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use keyward_proto::AccessTokenClaims;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// The request id set by the request-id layer (`x-request-id`).
#[derive(Debug, Clone, Default)]
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ))
    }
}

/// `axum::Json` whose rejections are problem+json: 415 without a JSON content type, 400
/// `malformed_json` for syntax errors, 422 `invalid_body` for wrong or unknown fields.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::BadRequest {
                code: "malformed_json",
                detail: e.body_text(),
            }),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::Validation(
                keyward_core::ValidationError::new("body", e.body_text()),
            )),
            Err(e) => Err(ApiError::BadRequest {
                code: "invalid_body",
                detail: e.body_text(),
            }),
        }
    }
}

/// `axum::extract::Query` answering 400 `invalid_query` on bad parameters.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) | Err(e) => {
                Err(ApiError::BadRequest {
                    code: "invalid_query",
                    detail: e.body_text(),
                })
            }
        }
    }
}

/// An authenticated management API caller: a verified access token for the management
/// audience.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: AccessTokenClaims,
    scopes: Vec<String>,
}

impl Caller {
    /// `client` for machine tokens, `user` when the token acts for a user.
    pub fn actor_type(&self) -> &'static str {
        if self.claims.uid.is_some() {
            "user"
        } else {
            "client"
        }
    }

    pub fn actor_id(&self) -> &str {
        self.claims.uid.as_deref().unwrap_or(&self.claims.client_id)
    }

    /// 403 unless the token carries `scope`.
    pub fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope(scope))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let claims = verified_bearer(parts, state, &state.management_audience)?;
        let mut scopes = keyward_core::scope::parse_scopes(&claims.scope);
        if claims.uid.is_some() {
            // A user's token acts within the user's own rights: whatever else it names,
            // it never holds a server-wide management scope.
            scopes.retain(|s| keyward_core::scope::is_user_delegable(s));
        }
        Ok(Self { claims, scopes })
    }
}

/// The bearer token of the `Authorization` header (RFC 6750 §2.1).
pub fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthenticated("a bearer token is required"))?;
    header
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .ok_or(ApiError::Unauthenticated(
            "use the Bearer authorization scheme",
        ))
}

/// The claims of the request's bearer token, verified for `audience` (401 otherwise).
pub fn verified_bearer(
    parts: &Parts,
    state: &AppState,
    audience: &str,
) -> Result<AccessTokenClaims, ApiError> {
    let token = bearer_token(parts)?;
    let keys = state.keys.snapshot();
    keyward_core::token::verify_access_token(&keys, token, state.settings.issuer(), audience)
        .map_err(|e| {
            tracing::debug!(error = %e, "bearer token refused");
            ApiError::Unauthenticated("the access token is invalid or expired")
        })
}

//! Error bodies: RFC 9457 problem details for the management API and RFC 6749 §5.2 error
//! responses for the OAuth endpoints.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// RFC 9457 problem details, served as `application/problem+json`.
///
/// `code` is the stable, machine-readable identifier clients should match on; `title` and
/// `detail` are for humans and may change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Problem {
    /// A URI reference identifying the problem type.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable error code, for example `email_taken` or `last_owner`.
    pub code: String,
    /// The request id, to correlate with server logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// RFC 6749 §5.2 error response of the OAuth endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope` or `invalid_target` (RFC 8707).
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

//! The JSON bodies of `POST /create`, shared by the service and the CLI.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `POST /create`: every field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    /// A region id from `GET /regions`; Keyward's default region when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Seconds until the database is deleted unless claimed (1800–86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
    /// The project name; a generated friendly name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The 201 answer of `POST /create`: one flat object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CreatedDatabase {
    pub project_id: String,
    pub project_name: String,
    pub database_id: String,
    /// The region id.
    pub region: String,
    pub region_name: String,
    pub connection_string: String,
    pub claim_url: String,
    /// When the database is deleted unless claimed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The partner's workspace the project lives in until claimed (its name).
    pub workspace: String,
    pub workspace_id: String,
}

//! User import (`keyward import`, the import API): one user of a Keyward-format source, as
//! an NDJSON line or an element of a JSON array. Unknown fields are refused, like every
//! request body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// One user to import. Every field is optional, but a row needs at least one of `id`,
/// `external_id`, `username`, `primary_email` or `primary_phone`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImportUserRow {
    /// The user id to keep (`[A-Za-z0-9_-]{1,128}`); a new id is made when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The user's id in the source system (unique).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_email: Option<String>,
    /// E.164, or a number that normalizes to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub profile: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub custom_data: Option<Value>,
    /// provider → `{ "user_id": …, "details": … }`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<BTreeMap<String, ImportIdentity>>,
    /// A JSON string holding a self-describing digest (`$2b$…`, `$argon2id$…`,
    /// `pbkdf2_sha256$…`, `{SSHA}…`, …), or a JSON object holding a legacy digest
    /// (`{"algorithm":"sha256","hash":"…","salt":"…","salt_position":"before"}`, see
    /// `keyward-digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub password_digest: Option<Value>,
    #[serde(default)]
    pub suspended: bool,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_sign_in_at: Option<OffsetDateTime>,
}

/// A linked social or enterprise identity of an imported user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImportIdentity {
    /// The user's id at the provider.
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// Outcome counts of an import job.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ImportCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows matching a stored user in create-only mode, left alone.
    pub skipped: u64,
    pub failed: u64,
}

/// A row that was not imported.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ImportRowError {
    /// 1-based: the line of an NDJSON file, the element of a JSON array, the data record of
    /// a CSV file.
    pub row: u64,
    /// `malformed_row`, `invalid_field`, `unknown_digest_format`, `missing_identifier`, or
    /// a uniqueness conflict (`email_taken`, `username_taken`, `phone_taken`,
    /// `external_id_taken`, `identity_taken`, `id_taken`).
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// An import job (`POST /api/users/import`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ImportJob {
    pub id: String,
    /// `running`, `succeeded`, `completed_with_errors` or `failed`.
    pub status: String,
    /// `create` or `upsert`.
    pub mode: String,
    pub dry_run: bool,
    pub format: String,
    pub source: String,
    /// The last source row whose outcome is stored: after a failure, everything up to here
    /// is in; re-running the same file imports the rest without duplicates.
    pub rows_processed: u64,
    pub counts: ImportCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The first row errors (up to 100); the rest at `/api/import-jobs/{id}/errors`.
    pub errors: Vec<ImportRowError>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
}

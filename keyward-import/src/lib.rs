//! Streaming parsers for user-migration sources: the Keyward import format, Logto, Auth0,
//! Firebase (`auth:export`) and CSV with a column mapping. Each source row becomes either a
//! normalized, validated [`ImportRecord`] or a [`RowError`]; both go to a sink, one row at a
//! time, so memory does not grow with the input.
//!
//! No I/O beyond the [`std::io::Read`] handed in, no async. Nothing here hashes a password:
//! digests are checked for form only ([`keyward_digest::StoredDigest::algorithm`]).
//!
//! Row numbers ([`ImportRecord::row`], [`RowError::row`]) are 1-based:
//! - NDJSON: the line number in the file (blank lines count as lines but are not rows);
//! - JSON arrays (also Firebase's `{"users":[…]}`): the element's position in the array;
//! - CSV: the data record's position after the header, so row 1 is the first data row (a
//!   quoted cell spanning lines is still one row).

mod auth0;
mod csv_source;
mod digest;
mod firebase;
mod keyward;
mod logto;
mod record;
mod stream;

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::ControlFlow;

use serde::Serialize;
use time::OffsetDateTime;

pub use csv_source::{parse_csv_mapping, BareDigest, CsvMapping, CsvTarget};
pub use digest::digest_algorithm;
pub use firebase::parse_firebase_hash_config;
pub use keyward_digest::FirebaseScryptParams;

/// One normalized, validated user from a source row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportRecord {
    /// 1-based row number in the source (see the crate docs).
    pub row: u64,
    /// The user id to keep, as the source gives it (Keyward format `id`, Logto `id`, a CSV
    /// column mapped to `id`); matches `[A-Za-z0-9_-]{1,128}`.
    pub id: Option<String>,
    /// The user's id in the source system (Logto `id`, Auth0 `user_id`, Firebase `localId`,
    /// Keyward format `external_id`, a CSV column mapped to `external_id`).
    pub external_id: Option<String>,
    /// Checked by `keyward_core::validate::username`.
    pub username: Option<String>,
    /// Checked by `keyward_core::validate::email`.
    pub primary_email: Option<String>,
    /// E.164 (`keyward_core::validate::phone`).
    pub primary_phone: Option<String>,
    /// Trimmed, 1–128 characters.
    pub name: Option<String>,
    pub avatar: Option<String>,
    /// A JSON object, `{}` when absent.
    pub profile: serde_json::Value,
    /// A JSON object, `{}` when absent.
    pub custom_data: serde_json::Value,
    /// provider → identity.
    pub identities: BTreeMap<String, Identity>,
    /// The [`keyward_digest::StoredDigest`] string form, checked for form (nothing hashed).
    pub password_digest: Option<String>,
    /// [`digest_algorithm`] of `password_digest`.
    pub password_algorithm: Option<String>,
    pub suspended: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sign_in_at: Option<OffsetDateTime>,
}

impl ImportRecord {
    /// The identities in the shape `User::identities` stores: provider →
    /// `{"user_id": …, "details": …}`.
    pub fn identities_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.identities
                .iter()
                .map(|(provider, identity)| {
                    (
                        provider.clone(),
                        serde_json::json!({
                            "user_id": identity.user_id,
                            "details": identity.details,
                        }),
                    )
                })
                .collect(),
        )
    }
}

/// A linked social or enterprise identity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    /// The user's id at the provider.
    pub user_id: String,
    /// What the source kept about it; a JSON object, `{}` when absent.
    pub details: serde_json::Value,
}

/// A row that could not be imported. Parsing goes on with the next row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("row {row}: {code}: {message}")]
pub struct RowError {
    /// 1-based row number (see the crate docs).
    pub row: u64,
    /// `malformed_row`, `invalid_field`, `unknown_digest_format` or `missing_identifier`
    /// (the constants in [`codes`]).
    pub code: String,
    /// The target field at fault (`primary_email`, `password_digest`, …), for `invalid_field`
    /// and `unknown_digest_format`.
    pub field: Option<String>,
    /// What is wrong. Never contains a password digest or salt.
    pub message: String,
    /// The row's id in the source when it could be read (its external id, else its id), to
    /// find the row in the source system.
    pub external_id: Option<String>,
}

/// The stable [`RowError::code`] values.
pub mod codes {
    /// Not a parseable JSON value / CSV record, or not shaped like a user of the format.
    pub const MALFORMED_ROW: &str = "malformed_row";
    /// A field failed validation; [`crate::RowError::field`] names it.
    pub const INVALID_FIELD: &str = "invalid_field";
    /// A password hash is present but keyward-digest does not know its format, or it is
    /// malformed for it.
    pub const UNKNOWN_DIGEST_FORMAT: &str = "unknown_digest_format";
    /// None of username, email, phone, external id or id.
    pub const MISSING_IDENTIFIER: &str = "missing_identifier";
}

/// Where the rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFormat {
    /// [`keyward_proto::ImportUserRow`] per NDJSON line or JSON array element.
    Keyward,
    /// Logto users (Management API `GET /api/users` bodies or a `users` table export), NDJSON
    /// or a JSON array.
    Logto,
    /// Auth0 users (the bulk-import `users.json` array, or a user-export NDJSON).
    Auth0,
    /// `firebase auth:export --format=json` (`{"users":[…]}`), with the project's password hash
    /// parameters ([`parse_firebase_hash_config`]).
    Firebase(FirebaseScryptParams),
    /// CSV with a header row, mapped by [`CsvMapping`].
    Csv(CsvMapping),
}

/// The input as a whole cannot be read. Row-level problems are [`RowError`]s instead.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading failed.
    #[error("reading the source failed: {0}")]
    Io(#[from] std::io::Error),
    /// The stream is broken at `row` (for example invalid JSON syntax inside the top-level
    /// array, so later rows cannot be found, or a CSV mapping naming a column the header lacks,
    /// reported as row 0).
    #[error("the source is malformed at row {row}: {message}")]
    Malformed {
        /// The row being read when it broke (0: before the first row).
        row: u64,
        /// What is wrong.
        message: String,
    },
}

/// A CSV mapping or Firebase hash configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Reads `reader` as `format` and hands every row, parsed or not, to `sink`, in order. Returns
/// the number of rows seen (records and row errors). Stops early, without error, when `sink`
/// returns [`ControlFlow::Break`].
///
/// JSON formats other than Firebase may be NDJSON or one JSON array: the first
/// non-whitespace byte decides (`[` = array, anything else = NDJSON). A UTF-8 byte-order mark
/// is skipped. The reader is buffered here.
pub fn read_records<R: Read>(
    reader: R,
    format: &SourceFormat,
    sink: &mut dyn FnMut(Result<ImportRecord, RowError>) -> ControlFlow<()>,
) -> Result<u64, SourceError> {
    match format {
        SourceFormat::Keyward => stream::read_json(reader, &keyward::KeywardRows, false, sink),
        SourceFormat::Logto => stream::read_json(reader, &logto::LogtoRows, false, sink),
        SourceFormat::Auth0 => stream::read_json(reader, &auth0::Auth0Rows, false, sink),
        SourceFormat::Firebase(params) => stream::read_json(
            reader,
            &firebase::FirebaseRows {
                params: params.clone(),
            },
            true,
            sink,
        ),
        SourceFormat::Csv(mapping) => csv_source::read_csv(reader, mapping, sink),
    }
}

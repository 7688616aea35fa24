//! What every format shares: a draft of the record as the source gave it, validated and
//! normalized in one place.

use std::collections::BTreeMap;

use keyward_core::validate;
use keyward_digest::StoredDigest;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::codes::{INVALID_FIELD, MALFORMED_ROW, MISSING_IDENTIFIER, UNKNOWN_DIGEST_FORMAT};
use crate::digest::digest_algorithm;
use crate::{Identity, ImportRecord, RowError};

/// A problem found while a format read its row, reported once the row's id is known.
#[derive(Debug)]
pub(crate) struct Issue {
    code: &'static str,
    field: Option<&'static str>,
    message: String,
}

impl Issue {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            code: INVALID_FIELD,
            field: Some(field),
            message: message.into(),
        }
    }

    pub(crate) fn digest(message: impl Into<String>) -> Self {
        Self {
            code: UNKNOWN_DIGEST_FORMAT,
            field: Some("password_digest"),
            message: message.into(),
        }
    }
}

/// A row as the source gave it, mapped to Keyward's fields but not yet validated.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    pub id: Option<String>,
    pub external_id: Option<String>,
    pub username: Option<String>,
    pub primary_email: Option<String>,
    pub primary_phone: Option<String>,
    pub name: Option<String>,
    pub avatar: Option<String>,
    pub profile: Option<Value>,
    pub custom_data: Option<Value>,
    pub identities: BTreeMap<String, Identity>,
    pub digest: Option<StoredDigest>,
    pub suspended: bool,
    pub created_at: Option<OffsetDateTime>,
    pub last_sign_in_at: Option<OffsetDateTime>,
    /// The first problem the format found while mapping.
    pub issue: Option<Issue>,
}

/// `None` for an absent, empty or all-whitespace string.
pub(crate) fn present(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.trim().is_empty())
}

/// A malformed-row error: the row could not be read as a user of the format.
pub(crate) fn malformed(row: u64, message: impl Into<String>) -> RowError {
    RowError {
        row,
        code: MALFORMED_ROW.into(),
        field: None,
        message: message.into(),
        external_id: None,
    }
}

/// A row whose JSON did not deserialize as the format's user: a malformed-row error that still
/// names the row's source id when the JSON is an object with one under `id_keys` (tried in
/// order), so the row can be found in the source. Only error rows pay for the second parse.
pub(crate) fn malformed_json(
    row: u64,
    json: &[u8],
    error: &serde_json::Error,
    id_keys: &[&str],
) -> RowError {
    let mut err = malformed(row, error.to_string());
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(json) {
        err.external_id = id_keys
            .iter()
            .find_map(|k| map.get(*k)?.as_str())
            .filter(|s| !s.is_empty() && s.chars().count() <= MAX_EXTERNAL_ID_LEN)
            .map(str::to_owned);
    }
    err
}

/// `[A-Za-z0-9_-]{1,128}`.
pub(crate) fn valid_user_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const MAX_EXTERNAL_ID_LEN: usize = 256;

impl Draft {
    /// Records the first problem only.
    pub(crate) fn note(&mut self, issue: Issue) {
        if self.issue.is_none() {
            self.issue = Some(issue);
        }
    }

    /// Adds a linked identity: the provider and the user id must be non-empty, the details an
    /// object (`{}` when absent). A provider given twice keeps its last entry.
    pub(crate) fn add_identity(
        &mut self,
        provider: String,
        user_id: String,
        details: Option<Value>,
    ) {
        if provider.trim().is_empty() || user_id.trim().is_empty() {
            self.note(Issue::invalid(
                "identities",
                "every identity needs a provider and a user id",
            ));
            return;
        }
        match details_object(details) {
            Ok(details) => {
                self.identities
                    .insert(provider, Identity { user_id, details });
            }
            Err(message) => self.note(Issue::invalid("identities", message)),
        }
    }

    /// Validates and normalizes; the first problem becomes the row's error.
    pub(crate) fn finish(mut self, row: u64) -> Result<ImportRecord, RowError> {
        let id = present(self.id.take());
        let external_id = present(self.external_id.take());
        match self.check(&id, &external_id) {
            Ok(checked) => Ok(ImportRecord {
                row,
                id,
                external_id,
                username: checked.username,
                primary_email: checked.primary_email,
                primary_phone: checked.primary_phone,
                name: checked.name,
                avatar: checked.avatar,
                profile: checked.profile,
                custom_data: checked.custom_data,
                identities: self.identities,
                password_digest: checked.password_digest,
                password_algorithm: checked.password_algorithm,
                suspended: self.suspended,
                created_at: self.created_at,
                last_sign_in_at: self.last_sign_in_at,
            }),
            Err(issue) => Err(RowError {
                row,
                code: issue.code.into(),
                field: issue.field.map(str::to_owned),
                message: issue.message,
                external_id: external_id
                    .or(id)
                    .filter(|s| s.chars().count() <= MAX_EXTERNAL_ID_LEN),
            }),
        }
    }

    /// Everything but the ids (checked by reference, so that an error can still name them).
    fn check(
        &mut self,
        id: &Option<String>,
        external_id: &Option<String>,
    ) -> Result<Checked, Issue> {
        if let Some(issue) = self.issue.take() {
            return Err(issue);
        }
        if let Some(id) = id {
            if !valid_user_id(id) {
                return Err(Issue::invalid(
                    "id",
                    "must be 1-128 letters, digits, '_' or '-'",
                ));
            }
        }
        if let Some(e) = external_id {
            if e.chars().count() > MAX_EXTERNAL_ID_LEN || e.chars().any(char::is_control) {
                return Err(Issue::invalid(
                    "external_id",
                    "must be at most 256 characters without control characters",
                ));
            }
        }
        let validation = |e: keyward_core::ValidationError| Issue::invalid(e.field, e.message);
        let username = present(self.username.take())
            .map(|u| validate::username(&u))
            .transpose()
            .map_err(validation)?;
        let primary_email = present(self.primary_email.take())
            .map(|e| validate::email(&e))
            .transpose()
            .map_err(validation)?;
        let primary_phone = present(self.primary_phone.take())
            .map(|p| validate::phone(&p))
            .transpose()
            .map_err(validation)?;
        let name = present(self.name.take())
            .map(|n| validate::display_name("name", &n))
            .transpose()
            .map_err(validation)?;
        let avatar = present(self.avatar.take()).map(|a| a.trim().to_owned());
        let profile = object_or_empty("profile", self.profile.take())?;
        let custom_data = object_or_empty("custom_data", self.custom_data.take())?;
        let (password_digest, password_algorithm) = match self.digest.take() {
            None => (None, None),
            Some(digest) => {
                let algorithm =
                    digest_algorithm(&digest).map_err(|e| Issue::digest(e.to_string()))?;
                let text = match digest {
                    StoredDigest::Encoded(s) => s,
                    legacy @ StoredDigest::Legacy(_) => legacy.to_string(),
                };
                (Some(text), Some(algorithm))
            }
        };
        if username.is_none()
            && primary_email.is_none()
            && primary_phone.is_none()
            && external_id.is_none()
            && id.is_none()
        {
            return Err(Issue {
                code: MISSING_IDENTIFIER,
                field: None,
                message: "the row has no username, email, phone, external id nor id".into(),
            });
        }
        Ok(Checked {
            username,
            primary_email,
            primary_phone,
            name,
            avatar,
            profile,
            custom_data,
            password_digest,
            password_algorithm,
        })
    }
}

/// The validated fields of a [`Draft`].
struct Checked {
    username: Option<String>,
    primary_email: Option<String>,
    primary_phone: Option<String>,
    name: Option<String>,
    avatar: Option<String>,
    profile: Value,
    custom_data: Value,
    password_digest: Option<String>,
    password_algorithm: Option<String>,
}

fn object_or_empty(field: &'static str, value: Option<Value>) -> Result<Value, Issue> {
    match value {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v) => {
            validate::json_object(field, &v).map_err(|e| Issue::invalid(e.field, e.message))?;
            Ok(v)
        }
    }
}

/// `details` of an identity: an object, `{}` when absent.
fn details_object(details: Option<Value>) -> Result<Value, String> {
    match details {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err("identity details must be a JSON object".into()),
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn from_millis(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// RFC 3339, or the SQL form databases export (`2024-05-01 12:00:00.123+00`, `…+02:00`):
/// a space for the `T`, an offset of hours only. A time without an offset is refused.
pub(crate) fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let mut s = text.replacen(' ', "T", 1);
    // "+00" / "-05" → "+00:00"
    let bytes = s.as_bytes();
    if bytes.len() > 3 {
        let sign = bytes[bytes.len() - 3];
        if (sign == b'+' || sign == b'-')
            && bytes[bytes.len() - 2..].iter().all(u8::is_ascii_digit)
            && s.contains('T')
        {
            s.push_str(":00");
        }
    }
    OffsetDateTime::parse(&s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn user_ids() {
        assert!(valid_user_id("usr_01HX-abc"));
        assert!(valid_user_id(&"a".repeat(128)));
        assert!(!valid_user_id(&"a".repeat(129)));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("auth0|123"));
        assert!(!valid_user_id("a b"));
    }

    #[test]
    fn timestamps() {
        let t = parse_timestamp("2024-05-01T12:00:00.123Z").unwrap();
        assert_eq!(t.unix_timestamp(), 1_714_564_800);
        assert_eq!(parse_timestamp("2024-05-01 12:00:00.123+00"), Some(t));
        assert_eq!(
            parse_timestamp("2024-05-01 14:00:00.123+02:00"),
            Some(t),
            "same instant"
        );
        assert_eq!(parse_timestamp("2024-05-01 12:00:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(
            from_millis(1_714_564_800_123).unwrap(),
            parse_timestamp("2024-05-01T12:00:00.123Z").unwrap()
        );
    }

    #[test]
    fn finish_reports_the_first_problem_with_the_source_id() {
        let draft = Draft {
            external_id: Some("ext-1".into()),
            primary_email: Some("not an email".into()),
            ..Draft::default()
        };
        let err = draft.finish(7).unwrap_err();
        assert_eq!(err.row, 7);
        assert_eq!(err.code, "invalid_field");
        assert_eq!(err.field.as_deref(), Some("primary_email"));
        assert_eq!(err.external_id.as_deref(), Some("ext-1"));

        let err = Draft::default().finish(1).unwrap_err();
        assert_eq!(err.code, "missing_identifier");

        let draft = Draft {
            id: Some("auth0|1".into()),
            ..Draft::default()
        };
        assert_eq!(draft.finish(1).unwrap_err().field.as_deref(), Some("id"));
    }

    #[test]
    fn empty_strings_are_absent() {
        let draft = Draft {
            username: Some("ann".into()),
            primary_email: Some("  ".into()),
            name: Some(String::new()),
            ..Draft::default()
        };
        let rec = draft.finish(1).unwrap();
        assert_eq!(rec.primary_email, None);
        assert_eq!(rec.name, None);
        assert_eq!(rec.profile, serde_json::json!({}));
    }
}

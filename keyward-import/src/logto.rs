//! Logto users, as its Management API returns them (`GET /api/users`, camelCase) or as a
//! `users` table export (snake_case column names are accepted too). Fields Keyward has no use
//! for (`tenantId`, `applicationId`, `hasPassword`, `ssoIdentities`, …) are ignored. The
//! Management API leaves password hashes out of its answers; a table export carries them.
//!
//! Mapping: `id` → both `id` (Logto ids are the `sub` apps keep) and `external_id`;
//! `primaryEmail`, `primaryPhone` (a `+` is added to a bare number), `name`, `avatar`,
//! `profile`, `customData`, `identities` (`{provider: {userId, details}}`), `isSuspended`,
//! `createdAt` / `lastSignInAt` (epoch milliseconds, or an ISO/SQL timestamp string).
//! `passwordEncryptionMethod` + `passwordEncrypted`: `Argon2i`/`Argon2id`/`Argon2d`/`Bcrypt`
//! are self-describing strings (the method must match the string); `MD5`/`SHA1`/`SHA256` are
//! unsalted hex digests; `Legacy` is Logto's `["alg", [args with "@" for the password],
//! "hex"]` and is supported for md5/sha1/sha256/sha512 with the password alone or with one
//! salt before or after it.

use std::collections::BTreeMap;

use keyward_digest::{Algorithm, LegacyAlgorithm, LegacyDigest, SaltPosition, StoredDigest};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::digest::encoded;
use crate::record::{from_millis, malformed_json, parse_timestamp, Draft, Issue};
use crate::stream::RowParser;
use crate::{ImportRecord, RowError};

pub(crate) struct LogtoRows;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogtoUser {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default, alias = "primary_email")]
    primary_email: Option<String>,
    #[serde(default, alias = "primary_phone")]
    primary_phone: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    avatar: Option<String>,
    #[serde(default, alias = "custom_data")]
    custom_data: Option<Value>,
    #[serde(default)]
    profile: Option<Value>,
    #[serde(default)]
    identities: Option<BTreeMap<String, LogtoIdentity>>,
    #[serde(default, alias = "password_encrypted")]
    password_encrypted: Option<String>,
    #[serde(default, alias = "password_encryption_method")]
    password_encryption_method: Option<String>,
    #[serde(default, alias = "is_suspended")]
    is_suspended: Option<bool>,
    #[serde(default, alias = "created_at")]
    created_at: Option<TimeValue>,
    #[serde(default, alias = "last_sign_in_at")]
    last_sign_in_at: Option<TimeValue>,
}

#[derive(Deserialize)]
struct LogtoIdentity {
    #[serde(alias = "user_id", rename = "userId")]
    user_id: String,
    #[serde(default)]
    details: Option<Value>,
}

/// A timestamp as JSON sources write it: epoch milliseconds (a number or a string of digits)
/// or an RFC 3339 / SQL timestamp string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum TimeValue {
    Millis(i64),
    Float(f64),
    Text(String),
}

impl TimeValue {
    pub(crate) fn resolve(&self) -> Option<OffsetDateTime> {
        match self {
            Self::Millis(ms) => from_millis(*ms),
            Self::Float(ms) if ms.is_finite() => from_millis(ms.trunc() as i64),
            Self::Float(_) => None,
            Self::Text(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok().and_then(from_millis)
            }
            Self::Text(s) => parse_timestamp(s),
        }
    }
}

/// Sets `*slot` or notes an invalid `field`.
pub(crate) fn set_time(
    draft: &mut Draft,
    field: &'static str,
    value: Option<TimeValue>,
) -> Option<OffsetDateTime> {
    let value = value?;
    if matches!(&value, TimeValue::Text(s) if s.trim().is_empty()) {
        return None;
    }
    let resolved = value.resolve();
    if resolved.is_none() {
        draft.note(Issue::invalid(
            field,
            "must be epoch milliseconds or an RFC 3339 timestamp",
        ));
    }
    resolved
}

impl RowParser for LogtoRows {
    fn parse(&self, row: u64, json: &[u8]) -> Result<ImportRecord, RowError> {
        let user: LogtoUser =
            serde_json::from_slice(json).map_err(|e| malformed_json(row, json, &e, &["id"]))?;
        let mut draft = Draft {
            external_id: user.id.clone(),
            id: user.id,
            username: user.username,
            primary_email: user.primary_email,
            primary_phone: user.primary_phone.map(|p| plus_prefixed(&p)),
            name: user.name,
            avatar: user.avatar,
            profile: user.profile,
            custom_data: user.custom_data,
            suspended: user.is_suspended.unwrap_or(false),
            ..Draft::default()
        };
        draft.created_at = set_time(&mut draft, "created_at", user.created_at);
        draft.last_sign_in_at = set_time(&mut draft, "last_sign_in_at", user.last_sign_in_at);
        for (provider, identity) in user.identities.unwrap_or_default() {
            draft.add_identity(provider, identity.user_id, identity.details);
        }
        match (
            user.password_encrypted.filter(|p| !p.trim().is_empty()),
            user.password_encryption_method,
        ) {
            (None, _) => {}
            (Some(_), None) => draft.note(Issue::digest(
                "passwordEncrypted without passwordEncryptionMethod",
            )),
            (Some(hash), Some(method)) => match logto_digest(&method, &hash) {
                Ok(d) => draft.digest = Some(d),
                Err(message) => draft.note(Issue::digest(message)),
            },
        }
        draft.finish(row)
    }
}

/// Logto keeps phone numbers as digits without the `+`; E.164 wants it.
fn plus_prefixed(phone: &str) -> String {
    let trimmed = phone.trim();
    if trimmed.starts_with('+') || trimmed.starts_with("00") || trimmed.is_empty() {
        trimmed.to_owned()
    } else {
        format!("+{trimmed}")
    }
}

fn logto_digest(method: &str, hash: &str) -> Result<StoredDigest, String> {
    let expect = |families: &[Algorithm]| -> Result<StoredDigest, String> {
        let digest = encoded(hash)?;
        let algorithm = digest.algorithm().map_err(|e| e.to_string())?;
        if families.contains(&algorithm) {
            Ok(digest)
        } else {
            Err(format!(
                "passwordEncryptionMethod {method} does not match the {algorithm} digest"
            ))
        }
    };
    let plain = |algorithm: LegacyAlgorithm| -> Result<StoredDigest, String> {
        let digest = StoredDigest::Legacy(LegacyDigest::salted(algorithm, hash.trim(), None));
        digest.algorithm().map_err(|e| e.to_string())?;
        Ok(digest)
    };
    match method.to_ascii_lowercase().as_str() {
        "argon2i" => expect(&[Algorithm::Argon2i]),
        "argon2id" => expect(&[Algorithm::Argon2id]),
        "argon2d" => expect(&[Algorithm::Argon2d]),
        "bcrypt" => expect(&[Algorithm::Bcrypt]),
        "md5" => plain(LegacyAlgorithm::Md5),
        "sha1" => plain(LegacyAlgorithm::Sha1),
        "sha256" => plain(LegacyAlgorithm::Sha256),
        "legacy" => legacy(hash),
        _ => Err(format!("unknown passwordEncryptionMethod {method:?}")),
    }
}

/// Logto's `Legacy` method: `["sha256", ["salt123", "@"], "<hex>"]`, where `@` stands for the
/// password and the arguments are concatenated before hashing.
fn legacy(hash: &str) -> Result<StoredDigest, String> {
    let (algorithm, args, expected): (String, Vec<String>, String) = serde_json::from_str(hash)
        .map_err(|_| "a Legacy digest must be [algorithm, [arguments], hash]".to_owned())?;
    let algorithm = match algorithm.to_ascii_lowercase().as_str() {
        "md5" => LegacyAlgorithm::Md5,
        "sha1" => LegacyAlgorithm::Sha1,
        "sha256" => LegacyAlgorithm::Sha256,
        "sha512" => LegacyAlgorithm::Sha512,
        other => return Err(format!("Legacy algorithm {other:?} is not supported")),
    };
    let salt =
        match args.as_slice() {
            [p] if p == "@" => None,
            [salt, p] if p == "@" && salt != "@" => Some((salt.as_str(), SaltPosition::Before)),
            [p, salt] if p == "@" && salt != "@" => Some((salt.as_str(), SaltPosition::After)),
            _ => return Err(
                "Legacy arguments other than the password with at most one salt are not supported"
                    .into(),
            ),
        };
    let digest = StoredDigest::Legacy(LegacyDigest::salted(algorithm, expected, salt));
    digest.algorithm().map_err(|e| e.to_string())?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn legacy_forms() {
        // sha256("salt123" + "password123"), per Logto's changelog example.
        let d = legacy(
            r#"["sha256", ["salt123", "@"], "c465f66c6ac481a7a17e9ed5b4e2e7e7288d892f12bf1c95c140901e9a70436e"]"#,
        );
        assert!(d.is_ok());
        let d = legacy(r#"["md5", ["@"], "5f4dcc3b5aa765d61d8327deb882cf99"]"#).unwrap();
        assert!(d.verify(b"password").unwrap());
        assert!(legacy(r#"["sha256", ["a", "@", "b"], "00"]"#).is_err());
        assert!(legacy(r#"["whirlpool", ["@"], "00"]"#).is_err());
        assert!(legacy("not json").is_err());
    }

    #[test]
    fn method_must_match_string() {
        let bcrypt = "$2b$04$2nPC3w0K6z9nu5Fdr8HIO.1yf6dbeb1OGxGdBesjdI1bTVnAfj.Ja";
        assert!(logto_digest("Bcrypt", bcrypt).is_ok());
        assert!(logto_digest("Argon2i", bcrypt).is_err());
        assert!(
            logto_digest("SHA1", "5f4dcc3b5aa765d61d8327deb882cf99").is_err(),
            "md5 length"
        );
    }

    #[test]
    fn phones_get_a_plus() {
        assert_eq!(plus_prefixed("14155550123"), "+14155550123");
        assert_eq!(plus_prefixed("+14155550123"), "+14155550123");
    }
}

//! The Keyward import format: [`keyward_proto::ImportUserRow`] per row.

use keyward_digest::{LegacyDigest, StoredDigest};
use keyward_proto::ImportUserRow;
use serde_json::Value;

use crate::digest::encoded;
use crate::record::{malformed_json, Draft, Issue};
use crate::stream::RowParser;
use crate::{ImportRecord, RowError};

pub(crate) struct KeywardRows;

impl RowParser for KeywardRows {
    fn parse(&self, row: u64, json: &[u8]) -> Result<ImportRecord, RowError> {
        let wire: ImportUserRow = serde_json::from_slice(json)
            .map_err(|e| malformed_json(row, json, &e, &["external_id", "id"]))?;
        draft(wire).finish(row)
    }
}

pub(crate) fn draft(wire: ImportUserRow) -> Draft {
    let mut draft = Draft {
        id: wire.id,
        external_id: wire.external_id,
        username: wire.username,
        primary_email: wire.primary_email,
        primary_phone: wire.primary_phone,
        name: wire.name,
        avatar: wire.avatar,
        profile: wire.profile,
        custom_data: wire.custom_data,
        suspended: wire.suspended,
        created_at: wire.created_at,
        last_sign_in_at: wire.last_sign_in_at,
        ..Draft::default()
    };
    for (provider, identity) in wire.identities.unwrap_or_default() {
        draft.add_identity(provider, identity.user_id, identity.details);
    }
    match wire.password_digest {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.trim().is_empty() => {}
        Some(Value::String(s)) => match encoded(&s) {
            Ok(d) => draft.digest = Some(d),
            Err(message) => draft.note(Issue::digest(message)),
        },
        Some(v @ Value::Object(_)) => match serde_json::from_value::<LegacyDigest>(v) {
            Ok(d) => draft.digest = Some(StoredDigest::Legacy(d)),
            Err(e) => draft.note(Issue::digest(format!("not a legacy digest object: {e}"))),
        },
        Some(_) => draft.note(Issue::invalid(
            "password_digest",
            "must be a digest string or a legacy digest object",
        )),
    }
    draft
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn parse(json: &str) -> Result<ImportRecord, RowError> {
        KeywardRows.parse(3, json.as_bytes())
    }

    #[test]
    fn full_row() {
        let rec = parse(
            r#"{"id":"usr_1","external_id":"legacy-1","username":"ann","primary_email":"ann@example.com",
                "primary_phone":"+1 415 555 0123","name":" Ann ","avatar":"https://x/a.png",
                "profile":{"given_name":"Ann"},"custom_data":{"plan":"pro"},
                "identities":{"google":{"user_id":"g-1","details":{"email":"ann@gmail.com"}}},
                "password_digest":"$2b$04$2nPC3w0K6z9nu5Fdr8HIO.1yf6dbeb1OGxGdBesjdI1bTVnAfj.Ja",
                "suspended":true,"created_at":"2024-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        assert_eq!(rec.row, 3);
        assert_eq!(rec.id.as_deref(), Some("usr_1"));
        assert_eq!(rec.primary_phone.as_deref(), Some("+14155550123"));
        assert_eq!(rec.name.as_deref(), Some("Ann"));
        assert_eq!(rec.identities["google"].user_id, "g-1");
        assert_eq!(rec.password_algorithm.as_deref(), Some("bcrypt"));
        assert!(rec.suspended);
        assert_eq!(rec.created_at.unwrap().unix_timestamp(), 1_704_164_645);
    }

    #[test]
    fn legacy_digest_object_and_string() {
        let rec = parse(r#"{"username":"b","password_digest":{"algorithm":"sha1","hash":"fe03aaed971c7a5e2bff441faf2a802432d440fc"}}"#).unwrap();
        assert_eq!(rec.password_algorithm.as_deref(), Some("sha1"));
        let again = parse(&format!(
            r#"{{"username":"b","password_digest":{}}}"#,
            serde_json::to_string(rec.password_digest.as_ref().unwrap()).unwrap()
        ))
        .unwrap();
        assert_eq!(again.password_digest, rec.password_digest);
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(r#"{"username":"b","nickname":"x"}"#)
                .unwrap_err()
                .code,
            "malformed_row"
        );
        let e = parse(r#"{"external_id":"e9","suspended":"yes"}"#).unwrap_err();
        assert_eq!(e.code, "malformed_row");
        assert_eq!(
            e.external_id.as_deref(),
            Some("e9"),
            "the id is still reported"
        );
        assert_eq!(parse("[1]").unwrap_err().code, "malformed_row");
        let e = parse(r#"{"external_id":"e1","password_digest":"md5:abc"}"#).unwrap_err();
        assert_eq!(e.code, "unknown_digest_format");
        assert_eq!(e.external_id.as_deref(), Some("e1"));
        let e = parse(r#"{"username":"b","password_digest":{"algorithm":"rot13","hash":"x"}}"#)
            .unwrap_err();
        assert_eq!(e.code, "unknown_digest_format");
        let e = parse(r#"{"username":"b","password_digest":5}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("password_digest"));
        let e = parse(r#"{"username":"b","identities":{"google":{"user_id":""}}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("identities"));
        let e = parse(r#"{"username":"b","identities":{"google":{"user_id":"1","details":[]}}}"#)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("identities"));
        let e = parse(r#"{"username":"b","profile":[1]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("profile"));
    }
}

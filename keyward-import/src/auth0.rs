//! Auth0 users: the bulk-import `users.json` array, or a user-export NDJSON file. Fields that
//! Keyward has no place for (`logins_count`, `last_ip`, `multifactor`, …) are ignored.
//!
//! Mapping:
//! - `user_id` → `external_id` only (Auth0 ids such as `auth0|abc` are not Keyward ids);
//! - `email`, `username`, `phone_number`, `name`, `picture` → `primary_email`, `username`,
//!   `primary_phone`, `name`, `avatar`; `blocked` → `suspended`; `created_at`, `last_login`;
//! - `profile` gets the OIDC claims Auth0 keeps beside them: `given_name`, `family_name`,
//!   `nickname`, `email_verified`, `phone_verified` (when present);
//! - `custom_data` is `user_metadata` (the user-editable data), with `app_metadata` (the
//!   app-managed data: roles, plans, flags) under the key `app_metadata` when non-empty;
//! - `identities`: one per entry, keyed by `provider` (`google-oauth2` becomes `google`), with
//!   the entry's other fields (`connection`, `isSocial`, `profileData`, …) as `details`; the
//!   `auth0` database identity is the user itself and is skipped;
//! - `password_hash` (bcrypt) or `custom_password_hash`: `bcrypt`, `argon2`, `pbkdf2`
//!   (PHC) and `ldap` hash values are self-describing strings; `md5`, `sha1`, `sha256`,
//!   `sha512` (hex or base64, with an optional prefix/suffix salt) and unsalted `hmac`
//!   become legacy digests. `md4`, `scrypt`, salted `hmac`, a password encoding other than
//!   UTF-8 and anything else are `unknown_digest_format`.

use keyward_digest::{
    Algorithm, HashEncoding, LegacyAlgorithm, LegacyDigest, SaltEncoding, SaltPosition,
    StoredDigest,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::digest::{encoded, hash_encoding, salt_encoding};
use crate::logto::{set_time, TimeValue};
use crate::record::{malformed_json, Draft, Issue};
use crate::stream::RowParser;
use crate::{ImportRecord, RowError};

pub(crate) struct Auth0Rows;

#[derive(Deserialize)]
struct Auth0User {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    phone_verified: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    picture: Option<String>,
    #[serde(default)]
    blocked: Option<bool>,
    #[serde(default)]
    created_at: Option<TimeValue>,
    #[serde(default)]
    last_login: Option<TimeValue>,
    #[serde(default)]
    user_metadata: Option<Value>,
    #[serde(default)]
    app_metadata: Option<Value>,
    #[serde(default)]
    identities: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    password_hash: Option<String>,
    #[serde(default)]
    custom_password_hash: Option<Value>,
}

#[derive(Deserialize)]
struct CustomPasswordHash {
    algorithm: String,
    hash: CphHash,
    #[serde(default)]
    salt: Option<CphSalt>,
    #[serde(default)]
    password: Option<CphPassword>,
}

#[derive(Deserialize)]
struct CphHash {
    value: String,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    key: Option<CphKey>,
}

#[derive(Deserialize)]
struct CphKey {
    value: String,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct CphSalt {
    value: String,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    position: Option<String>,
}

#[derive(Deserialize)]
struct CphPassword {
    #[serde(default)]
    encoding: Option<String>,
}

impl RowParser for Auth0Rows {
    fn parse(&self, row: u64, json: &[u8]) -> Result<ImportRecord, RowError> {
        let user: Auth0User = serde_json::from_slice(json)
            .map_err(|e| malformed_json(row, json, &e, &["user_id"]))?;
        let mut profile = Map::new();
        for (key, value) in [
            ("given_name", user.given_name),
            ("family_name", user.family_name),
            ("nickname", user.nickname),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                profile.insert(key.into(), Value::String(v));
            }
        }
        for (key, value) in [
            ("email_verified", user.email_verified),
            ("phone_verified", user.phone_verified),
        ] {
            if let Some(v) = value {
                profile.insert(key.into(), Value::Bool(v));
            }
        }
        let mut draft = Draft {
            external_id: user.user_id,
            username: user.username,
            primary_email: user.email,
            primary_phone: user.phone_number,
            name: user.name,
            avatar: user.picture,
            profile: Some(Value::Object(profile)),
            suspended: user.blocked.unwrap_or(false),
            ..Draft::default()
        };
        draft.created_at = set_time(&mut draft, "created_at", user.created_at);
        draft.last_sign_in_at = set_time(&mut draft, "last_sign_in_at", user.last_login);
        draft.custom_data = custom_data(&mut draft, user.user_metadata, user.app_metadata);
        for mut entry in user.identities.unwrap_or_default() {
            let provider = entry.remove("provider");
            let user_id = entry.remove("user_id");
            let (Some(Value::String(provider)), Some(user_id)) = (provider, user_id) else {
                draft.note(Issue::invalid(
                    "identities",
                    "every identity needs a provider and a user_id",
                ));
                continue;
            };
            if provider == "auth0" {
                continue;
            }
            let user_id = match user_id {
                Value::String(s) => s,
                // Some providers' ids are numbers (GitHub, Twitter).
                Value::Number(n) => n.to_string(),
                _ => {
                    draft.note(Issue::invalid("identities", "user_id must be a string"));
                    continue;
                }
            };
            let provider = match provider.as_str() {
                "google-oauth2" => "google".to_owned(),
                _ => provider,
            };
            draft.add_identity(provider, user_id, Some(Value::Object(entry)));
        }
        let password_hash = user.password_hash.filter(|h| !h.trim().is_empty());
        match (password_hash, user.custom_password_hash) {
            (None, None | Some(Value::Null)) => {}
            (Some(_), Some(v)) if !v.is_null() => draft.note(Issue::digest(
                "password_hash and custom_password_hash are mutually exclusive",
            )),
            (Some(hash), _) => match encoded(&hash) {
                Ok(d) if d.algorithm() == Ok(Algorithm::Bcrypt) => draft.digest = Some(d),
                Ok(_) => draft.note(Issue::digest("password_hash must be a bcrypt hash")),
                Err(message) => draft.note(Issue::digest(message)),
            },
            (None, Some(custom)) => match custom_digest(custom) {
                Ok(d) => draft.digest = Some(d),
                Err(message) => draft.note(Issue::digest(message)),
            },
        }
        draft.finish(row)
    }
}

fn custom_data(draft: &mut Draft, user: Option<Value>, app: Option<Value>) -> Option<Value> {
    let mut data = match user {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            draft.note(Issue::invalid(
                "custom_data",
                "user_metadata must be a JSON object",
            ));
            return None;
        }
    };
    match app {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) if m.is_empty() => {}
        Some(app @ Value::Object(_)) => {
            if data.contains_key("app_metadata") {
                draft.note(Issue::invalid(
                    "custom_data",
                    "user_metadata has an app_metadata key of its own",
                ));
            }
            data.insert("app_metadata".into(), app);
        }
        Some(_) => draft.note(Issue::invalid(
            "custom_data",
            "app_metadata must be a JSON object",
        )),
    }
    Some(Value::Object(data))
}

fn custom_digest(custom: Value) -> Result<StoredDigest, String> {
    let custom: CustomPasswordHash = serde_json::from_value(custom)
        .map_err(|e| format!("custom_password_hash is malformed: {e}"))?;
    if let Some(encoding) = custom.password.as_ref().and_then(|p| p.encoding.as_deref()) {
        if !matches!(encoding.to_ascii_lowercase().as_str(), "utf8" | "utf-8") {
            return Err(format!("password encoding {encoding:?} is not supported"));
        }
    }
    let algorithm = custom.algorithm.to_ascii_lowercase();
    let self_describing = |families: &[Algorithm]| -> Result<StoredDigest, String> {
        if custom.salt.is_some() {
            return Err(format!("{algorithm} does not take a separate salt"));
        }
        let digest = encoded(&custom.hash.value)?;
        let found = digest.algorithm().map_err(|e| e.to_string())?;
        if families.contains(&found) {
            Ok(digest)
        } else {
            Err(format!("the {algorithm} hash value is a {found} digest"))
        }
    };
    let digest = match algorithm.as_str() {
        "bcrypt" => self_describing(&[Algorithm::Bcrypt])?,
        "argon2" => {
            self_describing(&[Algorithm::Argon2i, Algorithm::Argon2d, Algorithm::Argon2id])?
        }
        "pbkdf2" => self_describing(&[
            Algorithm::Pbkdf2Sha1,
            Algorithm::Pbkdf2Sha256,
            Algorithm::Pbkdf2Sha512,
        ])?,
        "ldap" => self_describing(&[
            Algorithm::LdapSha,
            Algorithm::LdapSsha,
            Algorithm::LdapSsha256,
            Algorithm::LdapSsha512,
            Algorithm::LdapMd5,
            Algorithm::LdapSmd5,
            Algorithm::Md5Crypt,
            Algorithm::Sha256Crypt,
            Algorithm::Sha512Crypt,
            Algorithm::Bcrypt,
        ])?,
        "md5" | "sha1" | "sha256" | "sha512" => {
            let legacy_algorithm = match algorithm.as_str() {
                "md5" => LegacyAlgorithm::Md5,
                "sha1" => LegacyAlgorithm::Sha1,
                "sha256" => LegacyAlgorithm::Sha256,
                _ => LegacyAlgorithm::Sha512,
            };
            let encoding = hash_value_encoding(&custom.hash)?;
            let (salt, salt_encoding, salt_position) = match custom.salt {
                None => (None, SaltEncoding::Utf8, None),
                Some(salt) => {
                    let position = match salt.position.as_deref().map(str::to_ascii_lowercase) {
                        Some(p) if p == "prefix" => SaltPosition::Before,
                        Some(p) if p == "suffix" => SaltPosition::After,
                        _ => return Err("salt.position must be prefix or suffix".into()),
                    };
                    (
                        Some(salt.value),
                        encoding_or_utf8(salt.encoding.as_deref(), "salt")?,
                        Some(position),
                    )
                }
            };
            StoredDigest::Legacy(LegacyDigest {
                algorithm: legacy_algorithm,
                hash: custom.hash.value,
                encoding,
                salt,
                salt_encoding,
                salt_position,
                firebase: None,
            })
        }
        "hmac" => {
            if custom.salt.is_some() {
                return Err("salted hmac is not supported".into());
            }
            let legacy_algorithm = match custom.hash.digest.as_deref().map(str::to_ascii_lowercase)
            {
                Some(d) if d == "md5" => LegacyAlgorithm::HmacMd5,
                Some(d) if d == "sha1" => LegacyAlgorithm::HmacSha1,
                Some(d) if d == "sha256" => LegacyAlgorithm::HmacSha256,
                Some(d) if d == "sha512" => LegacyAlgorithm::HmacSha512,
                other => return Err(format!("hmac digest {other:?} is not supported")),
            };
            let key = custom.hash.key.as_ref().ok_or("hmac needs hash.key")?;
            StoredDigest::Legacy(LegacyDigest {
                algorithm: legacy_algorithm,
                hash: custom.hash.value.clone(),
                encoding: hash_value_encoding(&custom.hash)?,
                salt: Some(key.value.clone()),
                salt_encoding: encoding_or_utf8(key.encoding.as_deref(), "hash.key")?,
                salt_position: None,
                firebase: None,
            })
        }
        other => {
            return Err(format!(
                "custom_password_hash algorithm {other:?} is not supported"
            ))
        }
    };
    digest.algorithm().map_err(|e| e.to_string())?;
    Ok(digest)
}

/// `hash.encoding` of a bare hash: hex (the default) or base64.
fn hash_value_encoding(hash: &CphHash) -> Result<HashEncoding, String> {
    match hash.encoding.as_deref() {
        None => Ok(HashEncoding::Hex),
        Some(e) => hash_encoding(e).ok_or_else(|| format!("hash.encoding {e:?} is not supported")),
    }
}

fn encoding_or_utf8(encoding: Option<&str>, what: &str) -> Result<SaltEncoding, String> {
    match encoding {
        None => Ok(SaltEncoding::Utf8),
        Some(e) => {
            salt_encoding(e).ok_or_else(|| format!("{what} encoding {e:?} is not supported"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn custom_hashes() {
        let d = custom_digest(json!({"algorithm":"md5","hash":{"value":"5f4dcc3b5aa765d61d8327deb882cf99","encoding":"hex"}})).unwrap();
        assert!(d.verify(b"password").unwrap());
        let d = custom_digest(json!({"algorithm":"sha1","hash":{"value":"93ba4abc16637fa77fe2aca725d91f288b90cfbb","encoding":"hex"},
            "salt":{"value":"NaCl","encoding":"utf8","position":"suffix"}})).unwrap();
        assert!(d.verify(b"").unwrap());
        let d = custom_digest(json!({"algorithm":"hmac","hash":{"value":"c3f6c40fda7f5b789a6ed2c9d90273d9","encoding":"hex","digest":"md5",
            "key":{"value":"k3y","encoding":"utf8"}}})).unwrap();
        assert!(d.verify(b"correct horse battery staple").unwrap());
        for bad in [
            json!({"algorithm":"md4","hash":{"value":"00","encoding":"hex"}}),
            json!({"algorithm":"scrypt","hash":{"value":"AA==","encoding":"base64"}}),
            json!({"algorithm":"md5","hash":{"value":"5f4dcc3b5aa765d61d8327deb882cf99"},"password":{"encoding":"utf16le"}}),
            json!({"algorithm":"md5","hash":{"value":"5f4dcc3b5aa765d61d8327deb882cf99"},"salt":{"value":"x"}}),
            json!({"algorithm":"bcrypt","hash":{"value":"{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}}),
            json!({"algorithm":"sha256"}),
        ] {
            assert!(custom_digest(bad.clone()).is_err(), "{bad}");
        }
    }
}

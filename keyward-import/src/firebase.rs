//! Firebase Authentication: `firebase auth:export users.json --format=json` and the project's
//! password hash parameters.
//!
//! Mapping: `localId` → `external_id` only; `email`, `phoneNumber`, `displayName`, `photoUrl`
//! → `primary_email`, `primary_phone`, `name`, `avatar`; `disabled` → `suspended`;
//! `createdAt` / `lastSignedInAt` (epoch milliseconds, as strings) → `created_at` /
//! `last_sign_in_at`; `emailVerified` → `profile.email_verified`; `customAttributes` (a JSON
//! string of custom claims) → `custom_data`; `passwordHash` + `salt` (base64) with the hash
//! parameters → a `firebase-scrypt` legacy digest; `providerUserInfo` → identities keyed by
//! provider (`google.com` → `google`, `facebook.com` → `facebook`, … ; `oidc.*`/`saml.*` as
//! they are), `rawId` as the user id and the whole entry as details. The `password`, `phone`
//! and `emailLink` entries are sign-in methods of the user itself, not linked identities, and
//! are skipped.

use keyward_digest::{FirebaseScryptParams, LegacyDigest, StoredDigest};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::logto::{set_time, TimeValue};
use crate::record::{malformed_json, Draft, Issue};
use crate::stream::RowParser;
use crate::{ConfigError, ImportRecord, RowError};

pub(crate) struct FirebaseRows {
    pub params: FirebaseScryptParams,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FirebaseUser {
    #[serde(default)]
    local_id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    password_hash: Option<String>,
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    photo_url: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    created_at: Option<TimeValue>,
    /// `lastLoginAt` is the Admin SDK's name for it.
    #[serde(default, alias = "lastLoginAt")]
    last_signed_in_at: Option<TimeValue>,
    #[serde(default)]
    custom_attributes: Option<String>,
    #[serde(default)]
    provider_user_info: Option<Vec<Map<String, Value>>>,
}

impl RowParser for FirebaseRows {
    fn parse(&self, row: u64, json: &[u8]) -> Result<ImportRecord, RowError> {
        let user: FirebaseUser = serde_json::from_slice(json)
            .map_err(|e| malformed_json(row, json, &e, &["localId"]))?;
        let mut profile = Map::new();
        if let Some(verified) = user.email_verified {
            profile.insert("email_verified".into(), Value::Bool(verified));
        }
        let mut draft = Draft {
            external_id: user.local_id,
            primary_email: user.email,
            primary_phone: user.phone_number,
            name: user.display_name,
            avatar: user.photo_url,
            profile: Some(Value::Object(profile)),
            suspended: user.disabled.unwrap_or(false),
            ..Draft::default()
        };
        draft.created_at = set_time(&mut draft, "created_at", user.created_at);
        draft.last_sign_in_at = set_time(&mut draft, "last_sign_in_at", user.last_signed_in_at);
        if let Some(attributes) = user.custom_attributes.filter(|a| !a.trim().is_empty()) {
            match serde_json::from_str::<Value>(&attributes) {
                Ok(v @ Value::Object(_)) => draft.custom_data = Some(v),
                _ => draft.note(Issue::invalid(
                    "custom_data",
                    "customAttributes must be a JSON object",
                )),
            }
        }
        for info in user.provider_user_info.unwrap_or_default() {
            let provider = info.get("providerId").and_then(Value::as_str);
            let raw_id = info.get("rawId").and_then(Value::as_str);
            let (Some(provider), Some(raw_id)) = (provider, raw_id) else {
                draft.note(Issue::invalid(
                    "identities",
                    "every providerUserInfo entry needs a providerId and a rawId",
                ));
                continue;
            };
            if matches!(provider, "password" | "phone" | "emailLink") {
                continue;
            }
            let provider = provider.strip_suffix(".com").unwrap_or(provider).to_owned();
            let user_id = raw_id.to_owned();
            draft.add_identity(provider, user_id, Some(Value::Object(info)));
        }
        let hash = user.password_hash.filter(|h| !h.is_empty());
        match (hash, user.salt.filter(|s| !s.is_empty())) {
            (None, _) => {}
            (Some(_), None) => draft.note(Issue::digest("passwordHash without a salt")),
            (Some(hash), Some(salt)) => {
                let digest = StoredDigest::Legacy(LegacyDigest::firebase_scrypt(
                    hash,
                    salt,
                    self.params.clone(),
                ));
                match digest.algorithm() {
                    Ok(_) => draft.digest = Some(digest),
                    Err(e) => draft.note(Issue::digest(e.to_string())),
                }
            }
        }
        draft.finish(row)
    }
}

/// Reads a Firebase project's password hash parameters, either as JSON
/// (`{"algorithm":"SCRYPT","base64_signer_key":…,"base64_salt_separator":…,"rounds":8,
/// "mem_cost":14}`, also nested under `hash_config` / `hashConfig`, camelCase keys accepted)
/// or as the block the Firebase console shows:
///
/// ```text
/// hash_config {
///   algorithm: SCRYPT,
///   base64_signer_key: jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==,
///   base64_salt_separator: Bw==,
///   rounds: 8,
///   mem_cost: 14,
/// }
/// ```
///
/// Only the `SCRYPT` algorithm (Firebase's modified scrypt) is accepted.
pub fn parse_firebase_hash_config(text: &str) -> Result<FirebaseScryptParams, ConfigError> {
    let text = text.trim().trim_start_matches('\u{feff}');
    let pairs: Vec<(String, String)> = if text.starts_with('{') {
        json_pairs(text)?
    } else {
        text_pairs(text)?
    };
    let mut algorithm = None;
    let mut signer_key = None;
    let mut salt_separator = None;
    let mut rounds = None;
    let mut mem_cost = None;
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "algorithm" => &mut algorithm,
            "base64_signer_key" | "signer_key" | "base64SignerKey" | "signerKey" => &mut signer_key,
            "base64_salt_separator"
            | "salt_separator"
            | "base64SaltSeparator"
            | "saltSeparator" => &mut salt_separator,
            "rounds" => &mut rounds,
            "mem_cost" | "memCost" | "memoryCost" => &mut mem_cost,
            other => return Err(ConfigError(format!("unknown hash_config key {other:?}"))),
        };
        if slot.replace(value).is_some() {
            return Err(ConfigError(format!("hash_config key {key:?} given twice")));
        }
    }
    let missing = |name: &str| ConfigError(format!("hash_config lacks {name}"));
    let algorithm = algorithm.ok_or_else(|| missing("algorithm"))?;
    if !algorithm.eq_ignore_ascii_case("SCRYPT") {
        return Err(ConfigError(format!(
            "hash_config algorithm {algorithm:?} is not supported (only SCRYPT)"
        )));
    }
    let signer_key = signer_key.ok_or_else(|| missing("base64_signer_key"))?;
    let salt_separator = salt_separator.ok_or_else(|| missing("base64_salt_separator"))?;
    for (name, value) in [
        ("base64_signer_key", &signer_key),
        ("base64_salt_separator", &salt_separator),
    ] {
        use base64::Engine as _;
        if base64::engine::general_purpose::STANDARD
            .decode(value)
            .is_err()
        {
            return Err(ConfigError(format!("{name} is not valid base64")));
        }
    }
    let number = |name: &str, value: Option<String>| -> Result<u32, ConfigError> {
        let value = value.ok_or_else(|| missing(name))?;
        match value.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError(format!("{name} must be a positive integer"))),
        }
    };
    Ok(FirebaseScryptParams {
        signer_key,
        salt_separator,
        rounds: number("rounds", rounds)?,
        mem_cost: number("mem_cost", mem_cost)?,
    })
}

fn json_pairs(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ConfigError(format!("hash_config is not valid JSON: {e}")))?;
    let mut object = value;
    for nested in ["hash_config", "hashConfig"] {
        if let Some(inner) = object.get(nested) {
            object = inner.clone();
            break;
        }
    }
    let Value::Object(map) = object else {
        return Err(ConfigError("hash_config must be a JSON object".into()));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            _ => Err(ConfigError(format!(
                "hash_config {k:?} must be a string or a number"
            ))),
        })
        .collect()
}

fn text_pairs(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut body = text;
    if let Some(rest) = body.strip_prefix("hash_config") {
        body = rest.trim_start();
    }
    if let Some(rest) = body.strip_prefix('{') {
        body = rest
            .trim_end()
            .strip_suffix('}')
            .ok_or_else(|| ConfigError("hash_config block is not closed by '}'".into()))?;
    }
    body.split(['\n', ','])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (key, value) = line.split_once(':').ok_or_else(|| {
                ConfigError(format!(
                    "expected `key: value` in hash_config, found {line:?}"
                ))
            })?;
            let value = value.trim().trim_matches('"');
            Ok((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const KEY: &str =
        "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==";

    fn expected() -> FirebaseScryptParams {
        FirebaseScryptParams {
            signer_key: KEY.into(),
            salt_separator: "Bw==".into(),
            rounds: 8,
            mem_cost: 14,
        }
    }

    #[test]
    fn console_block() {
        let text = format!(
            "hash_config {{\n  algorithm: SCRYPT,\n  base64_signer_key: {KEY},\n  base64_salt_separator: Bw==,\n  rounds: 8,\n  mem_cost: 14,\n}}\n"
        );
        assert_eq!(parse_firebase_hash_config(&text).unwrap(), expected());
    }

    #[test]
    fn json_forms() {
        let flat = format!(
            r#"{{"algorithm":"SCRYPT","base64_signer_key":"{KEY}","base64_salt_separator":"Bw==","rounds":8,"mem_cost":14}}"#
        );
        assert_eq!(parse_firebase_hash_config(&flat).unwrap(), expected());
        let nested = format!(r#"{{"hash_config":{flat}}}"#);
        assert_eq!(parse_firebase_hash_config(&nested).unwrap(), expected());
        let camel = format!(
            r#"{{"hashConfig":{{"algorithm":"SCRYPT","base64SignerKey":"{KEY}","base64SaltSeparator":"Bw==","rounds":"8","memCost":14}}}}"#
        );
        assert_eq!(parse_firebase_hash_config(&camel).unwrap(), expected());
    }

    #[test]
    fn refusals() {
        for bad in [
            String::new(),
            "hash_config { algorithm: HMAC_SHA256 }".to_owned(),
            format!("algorithm: SCRYPT, base64_signer_key: {KEY}, base64_salt_separator: Bw==, rounds: 8"),
            "algorithm: SCRYPT, base64_signer_key: !!, base64_salt_separator: Bw==, rounds: 8, mem_cost: 14".to_owned(),
            format!("algorithm: SCRYPT, base64_signer_key: {KEY}, base64_salt_separator: Bw==, rounds: 0, mem_cost: 14"),
            format!("algorithm: SCRYPT, base64_signer_key: {KEY}, base64_salt_separator: Bw==, rounds: 8, mem_cost: 14, pepper: 1"),
            "{\"algorithm\": [\"SCRYPT\"]}".to_owned(),
        ] {
            assert!(parse_firebase_hash_config(&bad).is_err(), "{bad}");
        }
    }
}

//! CSV with a header row, mapped column by column.
//!
//! Every cell is text; an empty (or all-whitespace) cell is absent. `suspended` accepts
//! `true/false/1/0/yes/no` (any case); `created_at` / `last_sign_in_at` are RFC 3339 or the SQL
//! form `2024-05-01 12:00:00+00`; `password_digest` holds a self-describing digest or a legacy
//! digest's JSON object; `profile` / `custom_data` hold a JSON object, and `profile.<key>` /
//! `custom_data.<key>` put one column's text under `<key>` (after the whole-object column, if
//! both are mapped).
//!
//! A bare hash column is described by parameters instead: `password_hash=<column>`,
//! `password_algorithm=md5|sha1|sha256|sha512|hmac-md5|hmac-sha1|hmac-sha256|hmac-sha512`,
//! optionally `password_hash_encoding=hex|base64` (default hex), `password_salt=<column>`,
//! `password_salt_encoding=utf8|hex|base64` (default utf8) and
//! `password_salt_position=before|after` (also `prefix|suffix`; plain hashes with a salt need
//! it, HMAC takes its key from the salt column and no position).

use std::io::{BufReader, Read};

use keyward_digest::{
    HashEncoding, LegacyAlgorithm, LegacyDigest, SaltEncoding, SaltPosition, StoredDigest,
};
use serde_json::{Map, Value};

use crate::digest::{encoded, hash_encoding, salt_encoding};
use crate::record::{malformed, parse_timestamp, Draft, Issue};
use crate::stream::{skip_preamble, Sink};
use crate::{ConfigError, RowError, SourceError};

/// Where a CSV column goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CsvTarget {
    Id,
    ExternalId,
    Username,
    PrimaryEmail,
    PrimaryPhone,
    Name,
    Avatar,
    /// A self-describing digest, or a legacy digest's JSON object.
    PasswordDigest,
    CreatedAt,
    LastSignInAt,
    Suspended,
    /// A JSON object.
    Profile,
    /// A JSON object.
    CustomData,
    /// `profile.<key>`: the cell's text under `<key>`.
    ProfileKey(String),
    /// `custom_data.<key>`: the cell's text under `<key>`.
    CustomDataKey(String),
}

impl CsvTarget {
    /// Parses a target name (`email` and `phone` are accepted for `primary_email` and
    /// `primary_phone`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "external_id" => Self::ExternalId,
            "username" => Self::Username,
            "primary_email" | "email" => Self::PrimaryEmail,
            "primary_phone" | "phone" => Self::PrimaryPhone,
            "name" => Self::Name,
            "avatar" => Self::Avatar,
            "password_digest" => Self::PasswordDigest,
            "created_at" => Self::CreatedAt,
            "last_sign_in_at" => Self::LastSignInAt,
            "suspended" => Self::Suspended,
            "profile" => Self::Profile,
            "custom_data" => Self::CustomData,
            _ => {
                if let Some(key) = name.strip_prefix("profile.").filter(|k| !k.is_empty()) {
                    Self::ProfileKey(key.to_owned())
                } else if let Some(key) =
                    name.strip_prefix("custom_data.").filter(|k| !k.is_empty())
                {
                    Self::CustomDataKey(key.to_owned())
                } else {
                    return None;
                }
            }
        })
    }
}

/// A bare hash column and the parameters to read it as a [`LegacyDigest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BareDigest {
    /// The column with the hash.
    pub hash_column: String,
    pub algorithm: LegacyAlgorithm,
    pub encoding: HashEncoding,
    /// The column with the salt (or the HMAC key), if any.
    pub salt_column: Option<String>,
    pub salt_encoding: SaltEncoding,
    pub salt_position: Option<SaltPosition>,
}

/// Target field → CSV header name, plus an optional bare-hash digest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CsvMapping {
    /// In the order given; each target at most once.
    pub columns: Vec<(CsvTarget, String)>,
    pub bare_digest: Option<BareDigest>,
}

/// Parses `"email=Email,username=Login,name=Full Name,external_id=UID,password_digest=Hash"`:
/// comma-separated `target=Header` pairs (split at the first `=`; spaces around names are
/// trimmed). A header name containing a comma cannot be written here; use
/// [`CsvMapping::from_pairs`], which also describes the rules.
pub fn parse_csv_mapping(spec: &str) -> Result<CsvMapping, ConfigError> {
    let pairs = spec
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .ok_or_else(|| ConfigError(format!("expected target=Header, found {pair:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    CsvMapping::from_pairs(pairs)
}

impl CsvMapping {
    /// Builds a mapping from `(target, header)` pairs; the bare-hash parameters
    /// (`password_algorithm`, `password_hash_encoding`, `password_salt_encoding`,
    /// `password_salt_position`) take a value instead of a header.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut mapping = Self::default();
        let mut hash_column = None;
        let mut algorithm = None;
        let mut encoding = None;
        let mut salt_column = None;
        let mut salt_enc = None;
        let mut position = None;
        for (key, value) in pairs {
            let key = key.as_ref().trim();
            let value = value.as_ref().trim();
            if value.is_empty() {
                return Err(ConfigError(format!("{key} has no value")));
            }
            let once = |slot: &mut Option<String>| {
                if slot.replace(value.to_owned()).is_some() {
                    Err(ConfigError(format!("{key} is given twice")))
                } else {
                    Ok(())
                }
            };
            match key {
                "password_hash" => once(&mut hash_column)?,
                "password_algorithm" => once(&mut algorithm)?,
                "password_hash_encoding" => once(&mut encoding)?,
                "password_salt" => once(&mut salt_column)?,
                "password_salt_encoding" => once(&mut salt_enc)?,
                "password_salt_position" => once(&mut position)?,
                _ => {
                    let target = CsvTarget::parse(key)
                        .ok_or_else(|| ConfigError(format!("unknown target field {key:?}")))?;
                    if mapping.columns.iter().any(|(t, _)| *t == target) {
                        return Err(ConfigError(format!("{key} is mapped twice")));
                    }
                    mapping.columns.push((target, value.to_owned()));
                }
            }
        }
        match hash_column {
            None => {
                if algorithm.is_some()
                    || encoding.is_some()
                    || salt_column.is_some()
                    || salt_enc.is_some()
                    || position.is_some()
                {
                    return Err(ConfigError(
                        "password_algorithm and the salt settings need password_hash".into(),
                    ));
                }
            }
            Some(hash_column) => {
                if mapping
                    .columns
                    .iter()
                    .any(|(t, _)| *t == CsvTarget::PasswordDigest)
                {
                    return Err(ConfigError(
                        "map either password_digest or password_hash, not both".into(),
                    ));
                }
                mapping.bare_digest = Some(bare_digest(
                    hash_column,
                    algorithm,
                    encoding,
                    salt_column,
                    salt_enc,
                    position,
                )?);
            }
        }
        if mapping.columns.is_empty() {
            return Err(ConfigError("the mapping names no column".into()));
        }
        Ok(mapping)
    }
}

fn bare_digest(
    hash_column: String,
    algorithm: Option<String>,
    encoding: Option<String>,
    salt_column: Option<String>,
    salt_enc: Option<String>,
    position: Option<String>,
) -> Result<BareDigest, ConfigError> {
    let algorithm =
        algorithm.ok_or_else(|| ConfigError("password_hash needs password_algorithm".into()))?;
    let name = algorithm.to_ascii_lowercase().replace('_', "-");
    let algorithm = match name.as_str() {
        "md5" => LegacyAlgorithm::Md5,
        "sha1" => LegacyAlgorithm::Sha1,
        "sha256" => LegacyAlgorithm::Sha256,
        "sha512" => LegacyAlgorithm::Sha512,
        "hmac-md5" => LegacyAlgorithm::HmacMd5,
        "hmac-sha1" => LegacyAlgorithm::HmacSha1,
        "hmac-sha256" => LegacyAlgorithm::HmacSha256,
        "hmac-sha512" => LegacyAlgorithm::HmacSha512,
        _ => {
            return Err(ConfigError(format!(
                "password_algorithm {algorithm:?} is not one of md5, sha1, sha256, sha512, hmac-md5, hmac-sha1, hmac-sha256, hmac-sha512"
            )))
        }
    };
    let encoding = match encoding {
        None => HashEncoding::Hex,
        Some(e) => hash_encoding(&e)
            .ok_or_else(|| ConfigError(format!("password_hash_encoding {e:?}: hex or base64")))?,
    };
    let salt_encoding = match salt_enc {
        None => SaltEncoding::Utf8,
        Some(e) => salt_encoding(&e).ok_or_else(|| {
            ConfigError(format!("password_salt_encoding {e:?}: utf8, hex or base64"))
        })?,
    };
    let salt_position = match position.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("before" | "prefix") => Some(SaltPosition::Before),
        Some("after" | "suffix") => Some(SaltPosition::After),
        Some(p) => {
            return Err(ConfigError(format!(
                "password_salt_position {p:?}: before or after"
            )))
        }
    };
    let hmac = matches!(
        algorithm,
        LegacyAlgorithm::HmacMd5
            | LegacyAlgorithm::HmacSha1
            | LegacyAlgorithm::HmacSha256
            | LegacyAlgorithm::HmacSha512
    );
    match (hmac, salt_column.is_some(), salt_position.is_some()) {
        (true, false, _) => return Err(ConfigError("hmac needs password_salt (the key)".into())),
        (true, true, true) => {
            return Err(ConfigError(
                "password_salt_position does not apply to hmac".into(),
            ))
        }
        (false, true, false) => {
            return Err(ConfigError(
                "password_salt needs password_salt_position".into(),
            ))
        }
        (false, false, true) => {
            return Err(ConfigError(
                "password_salt_position needs password_salt".into(),
            ))
        }
        _ => {}
    }
    if salt_column.is_none() && salt_enc_given(salt_encoding) {
        return Err(ConfigError(
            "password_salt_encoding needs password_salt".into(),
        ));
    }
    Ok(BareDigest {
        hash_column,
        algorithm,
        encoding,
        salt_column,
        salt_encoding,
        salt_position,
    })
}

fn salt_enc_given(encoding: SaltEncoding) -> bool {
    encoding != SaltEncoding::Utf8
}

/// The mapping resolved against the header: column indexes.
struct Resolved<'m> {
    columns: Vec<(&'m CsvTarget, usize)>,
    hash: Option<(&'m BareDigest, usize, Option<usize>)>,
}

fn resolve<'m>(
    mapping: &'m CsvMapping,
    headers: &csv::StringRecord,
) -> Result<Resolved<'m>, SourceError> {
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| SourceError::Malformed {
                row: 0,
                message: format!("the header has no column {name:?}"),
            })
    };
    let columns = mapping
        .columns
        .iter()
        .map(|(target, header)| Ok((target, find(header)?)))
        .collect::<Result<Vec<_>, SourceError>>()?;
    let hash = match &mapping.bare_digest {
        None => None,
        Some(bare) => Some((
            bare,
            find(&bare.hash_column)?,
            bare.salt_column.as_deref().map(find).transpose()?,
        )),
    };
    Ok(Resolved { columns, hash })
}

pub(crate) fn read_csv<R: Read>(
    reader: R,
    mapping: &CsvMapping,
    sink: Sink<'_>,
) -> Result<u64, SourceError> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    // Skips the BOM (and blank lines before the header).
    if skip_preamble(&mut reader)?.0.is_none() {
        return Ok(0);
    }
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(reader.by_ref());
    let headers = csv.headers().map_err(fatal)?.clone();
    let resolved = resolve(mapping, &headers)?;
    let mut record = csv::StringRecord::new();
    let mut row = 0;
    loop {
        let result = match csv.read_record(&mut record) {
            Ok(false) => return Ok(row),
            Ok(true) => {
                row += 1;
                parse_record(row, &resolved, &record)
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Utf8 { .. } | csv::ErrorKind::UnequalLengths { .. } => {
                    row += 1;
                    Err(malformed(row, e.to_string()))
                }
                _ => return Err(fatal(e)),
            },
        };
        if sink(result).is_break() {
            return Ok(row);
        }
    }
}

fn fatal(e: csv::Error) -> SourceError {
    let message = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => SourceError::Io(io),
        _ => SourceError::Malformed { row: 0, message },
    }
}

fn cell(record: &csv::StringRecord, index: usize) -> Option<&str> {
    record.get(index).map(str::trim).filter(|c| !c.is_empty())
}

fn parse_record(
    row: u64,
    resolved: &Resolved<'_>,
    record: &csv::StringRecord,
) -> Result<crate::ImportRecord, RowError> {
    let mut draft = Draft::default();
    let mut profile_keys = Vec::new();
    let mut custom_keys = Vec::new();
    for (target, index) in &resolved.columns {
        let Some(value) = cell(record, *index) else {
            continue;
        };
        let owned = || Some(value.to_owned());
        match target {
            CsvTarget::Id => draft.id = owned(),
            CsvTarget::ExternalId => draft.external_id = owned(),
            CsvTarget::Username => draft.username = owned(),
            CsvTarget::PrimaryEmail => draft.primary_email = owned(),
            CsvTarget::PrimaryPhone => draft.primary_phone = owned(),
            CsvTarget::Name => draft.name = owned(),
            CsvTarget::Avatar => draft.avatar = owned(),
            CsvTarget::PasswordDigest => match encoded(value) {
                Ok(d) => draft.digest = Some(d),
                Err(message) => draft.note(Issue::digest(message)),
            },
            CsvTarget::CreatedAt => match parse_timestamp(value) {
                Some(t) => draft.created_at = Some(t),
                None => draft.note(Issue::invalid(
                    "created_at",
                    "must be an RFC 3339 timestamp",
                )),
            },
            CsvTarget::LastSignInAt => match parse_timestamp(value) {
                Some(t) => draft.last_sign_in_at = Some(t),
                None => draft.note(Issue::invalid(
                    "last_sign_in_at",
                    "must be an RFC 3339 timestamp",
                )),
            },
            CsvTarget::Suspended => match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => draft.suspended = true,
                "false" | "0" | "no" => draft.suspended = false,
                _ => draft.note(Issue::invalid(
                    "suspended",
                    "must be true/false, 1/0 or yes/no",
                )),
            },
            CsvTarget::Profile => draft.profile = Some(json_cell(&mut draft, "profile", value)),
            CsvTarget::CustomData => {
                draft.custom_data = Some(json_cell(&mut draft, "custom_data", value));
            }
            CsvTarget::ProfileKey(key) => profile_keys.push((key, value)),
            CsvTarget::CustomDataKey(key) => custom_keys.push((key, value)),
        }
    }
    merge_keys(&mut draft.profile, profile_keys);
    merge_keys(&mut draft.custom_data, custom_keys);
    if let Some((bare, hash_index, salt_index)) = resolved.hash {
        if let Some(hash) = cell(record, hash_index) {
            let salt = salt_index.and_then(|i| cell(record, i));
            if salt_index.is_some() && salt.is_none() {
                draft.note(Issue::digest("the hash's salt cell is empty"));
            } else {
                let digest = StoredDigest::Legacy(LegacyDigest {
                    algorithm: bare.algorithm,
                    hash: hash.to_owned(),
                    encoding: bare.encoding,
                    salt: salt.map(str::to_owned),
                    salt_encoding: bare.salt_encoding,
                    salt_position: bare.salt_position,
                    firebase: None,
                });
                match digest.algorithm() {
                    Ok(_) => draft.digest = Some(digest),
                    Err(e) => draft.note(Issue::digest(e.to_string())),
                }
            }
        }
    }
    draft.finish(row)
}

fn json_cell(draft: &mut Draft, field: &'static str, value: &str) -> Value {
    match serde_json::from_str::<Value>(value) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            draft.note(Issue::invalid(field, "must be a JSON object"));
            Value::Object(Map::new())
        }
    }
}

fn merge_keys(target: &mut Option<Value>, keys: Vec<(&String, &str)>) {
    if keys.is_empty() {
        return;
    }
    let object = target.get_or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(map) = object {
        for (key, value) in keys {
            map.insert(key.clone(), Value::String(value.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn spec_parsing() {
        let m = parse_csv_mapping(
            "email=Email, username=Login,name=Full Name,external_id=UID,password_digest=Hash,custom_data.plan=Plan",
        )
        .unwrap();
        assert_eq!(
            m.columns,
            vec![
                (CsvTarget::PrimaryEmail, "Email".to_owned()),
                (CsvTarget::Username, "Login".to_owned()),
                (CsvTarget::Name, "Full Name".to_owned()),
                (CsvTarget::ExternalId, "UID".to_owned()),
                (CsvTarget::PasswordDigest, "Hash".to_owned()),
                (CsvTarget::CustomDataKey("plan".into()), "Plan".to_owned()),
            ]
        );
        let m = parse_csv_mapping(
            "email=Email,password_hash=Hash,password_algorithm=sha256,password_salt=Salt,password_salt_position=after",
        )
        .unwrap();
        let bare = m.bare_digest.unwrap();
        assert_eq!(bare.algorithm, LegacyAlgorithm::Sha256);
        assert_eq!(bare.salt_position, Some(SaltPosition::After));
        assert_eq!(bare.salt_column.as_deref(), Some("Salt"));
        assert_eq!(
            CsvMapping::from_pairs([("phone", "Tel")]).unwrap().columns,
            vec![(CsvTarget::PrimaryPhone, "Tel".to_owned())]
        );
    }

    #[test]
    fn spec_refusals() {
        for bad in [
            "",
            "email",
            "mail=Email",
            "email=Email,email=Mail",
            "email=Email,password_hash=H",
            "email=Email,password_hash=H,password_algorithm=whirlpool",
            "email=Email,password_hash=H,password_algorithm=sha1,password_salt=S",
            "email=Email,password_hash=H,password_algorithm=hmac-sha1",
            "email=Email,password_hash=H,password_algorithm=hmac-sha1,password_salt=S,password_salt_position=before",
            "email=Email,password_digest=D,password_hash=H,password_algorithm=md5",
            "email=Email,password_algorithm=md5",
            "email=",
        ] {
            assert!(parse_csv_mapping(bad).is_err(), "{bad:?}");
        }
    }
}

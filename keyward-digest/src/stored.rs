//! One type for what the importer stores per user: either kind of digest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{identify, verify, verify_legacy, Algorithm, DigestError, LegacyDigest};

/// A user's imported password digest.
///
/// Serde form (untagged): a JSON string for a self-describing digest, a JSON object for a
/// [`LegacyDigest`].
///
/// String form ([`Display`](fmt::Display) / [`FromStr`]), for a single text column: a
/// self-describing digest as it is; a legacy digest as its compact JSON object. The two cannot be
/// confused: a string is read as JSON exactly when it starts with `{` followed (after optional
/// whitespace) by `"`, and no self-describing format does (LDAP's `{SSHA}` has a letter there).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoredDigest {
    /// A self-describing digest string (see [`crate::identify`]).
    Encoded(String),
    /// A digest with external parameters.
    Legacy(LegacyDigest),
}

impl StoredDigest {
    /// The format, after checking the digest is well formed (hashes nothing).
    pub fn algorithm(&self) -> Result<Algorithm, DigestError> {
        match self {
            Self::Encoded(s) => identify(s),
            Self::Legacy(d) => d.validate(),
        }
    }

    /// Checks `password`; `Ok(false)` is a wrong password.
    pub fn verify(&self, password: &[u8]) -> Result<bool, DigestError> {
        match self {
            Self::Encoded(s) => verify(password, s),
            Self::Legacy(d) => verify_legacy(password, d),
        }
    }
}

fn is_json_object(s: &str) -> bool {
    s.strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with('"'))
}

impl FromStr for StoredDigest {
    type Err = DigestError;

    /// Parses the string form and checks it is well formed (see [`StoredDigest::algorithm`]).
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let digest = if is_json_object(s) {
            let legacy: LegacyDigest = serde_json::from_str(s).map_err(|_| {
                DigestError::malformed("legacy", "not a valid legacy digest JSON object")
            })?;
            Self::Legacy(legacy)
        } else {
            Self::Encoded(s.to_owned())
        };
        digest.algorithm()?;
        Ok(digest)
    }
}

impl fmt::Display for StoredDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encoded(s) => f.write_str(s),
            Self::Legacy(d) => f.write_str(&serde_json::to_string(d).map_err(|_| fmt::Error)?),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::{LegacyAlgorithm, SaltPosition};

    #[test]
    fn string_form_round_trips_both_kinds() {
        let legacy = StoredDigest::Legacy(LegacyDigest::salted(
            LegacyAlgorithm::Md5,
            "1a1dc91c907325c69271ddf0c944bc72",
            Some(("salt", SaltPosition::After)),
        ));
        let ldap = StoredDigest::Encoded("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".into());
        for d in [legacy, ldap] {
            let s = d.to_string();
            assert_eq!(s.parse::<StoredDigest>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<StoredDigest>(&json).unwrap(), d);
        }
        assert!(is_json_object(r#"{ "algorithm":"md5"}"#));
        assert!(!is_json_object("{SSHA}abcd"));
    }

    #[test]
    fn from_str_validates() {
        assert!("{\"algorithm\":\"md5\"}".parse::<StoredDigest>().is_err());
        assert!(matches!(
            "nope".parse::<StoredDigest>(),
            Err(DigestError::UnknownFormat)
        ));
        let d: StoredDigest = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".parse().unwrap();
        assert!(d.verify(b"password").unwrap());
    }
}

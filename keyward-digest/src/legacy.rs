//! Digests that do not describe themselves: a bare hash column plus parameters the importer
//! knows from the source system.

use serde::{Deserialize, Serialize};

use crate::check::{Check, FirebaseCheck, HashFn, ScryptCost, SimpleCheck, SimpleMode};
use crate::encoding::{base64_decode, hex_decode};
use crate::limits::MAX_DIGEST_LEN;
use crate::{Algorithm, DigestError};

/// The algorithm of a [`LegacyDigest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LegacyAlgorithm {
    /// MD5 of the password, with the salt before or after it if there is one.
    Md5,
    /// SHA-1, salted like `md5`.
    Sha1,
    /// SHA-256, salted like `md5`.
    Sha256,
    /// SHA-512, salted like `md5`.
    Sha512,
    /// HMAC-MD5 with the salt as the key and the password as the message.
    HmacMd5,
    /// HMAC-SHA1, keyed like `hmac-md5`.
    HmacSha1,
    /// HMAC-SHA256, keyed like `hmac-md5`.
    HmacSha256,
    /// HMAC-SHA512, keyed like `hmac-md5`.
    HmacSha512,
    /// Firebase Authentication's modified scrypt; needs [`LegacyDigest::firebase`].
    FirebaseScrypt,
}

impl From<LegacyAlgorithm> for Algorithm {
    fn from(a: LegacyAlgorithm) -> Self {
        match a {
            LegacyAlgorithm::Md5 => Self::Md5,
            LegacyAlgorithm::Sha1 => Self::Sha1,
            LegacyAlgorithm::Sha256 => Self::Sha256,
            LegacyAlgorithm::Sha512 => Self::Sha512,
            LegacyAlgorithm::HmacMd5 => Self::HmacMd5,
            LegacyAlgorithm::HmacSha1 => Self::HmacSha1,
            LegacyAlgorithm::HmacSha256 => Self::HmacSha256,
            LegacyAlgorithm::HmacSha512 => Self::HmacSha512,
            LegacyAlgorithm::FirebaseScrypt => Self::FirebaseScrypt,
        }
    }
}

/// How [`LegacyDigest::hash`] is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashEncoding {
    /// Hexadecimal, either case (the default).
    #[default]
    Hex,
    /// Standard base64, padding optional.
    Base64,
}

/// How [`LegacyDigest::salt`] is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaltEncoding {
    /// The salt is text, hashed as its UTF-8 bytes (the default; most PHP/Rails-era schemas).
    #[default]
    Utf8,
    /// Hexadecimal bytes.
    Hex,
    /// Standard base64 bytes, padding optional.
    Base64,
}

/// Where a plain hash puts the salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaltPosition {
    /// hash(salt ‖ password)
    Before,
    /// hash(password ‖ salt)
    After,
}

/// A Firebase project's password hash parameters, as the console's "Password Hash Parameters"
/// and `firebase auth:export`'s `hash_config` give them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirebaseScryptParams {
    /// `base64_signer_key`.
    pub signer_key: String,
    /// `base64_salt_separator`.
    pub salt_separator: String,
    /// `rounds`: scrypt's r.
    pub rounds: u32,
    /// `mem_cost`: log2 of scrypt's N.
    pub mem_cost: u32,
}

/// A digest that needs parameters from outside the string. Serialized as a JSON object, e.g.
///
/// ```json
/// {"algorithm":"sha256","hash":"9f86…","salt":"pepper","salt_position":"before"}
/// {"algorithm":"hmac-sha1","hash":"q83v…","encoding":"base64","salt":"a2V5","salt_encoding":"base64"}
/// {"algorithm":"firebase-scrypt","hash":"lSrf…==","encoding":"base64","salt":"42xEC+ixf3L2lw==",
///  "salt_encoding":"base64","firebase":{"signer_key":"jxsp…==","salt_separator":"Bw==","rounds":8,"mem_cost":14}}
/// ```
///
/// Rules, checked by [`crate::verify_legacy`] and [`LegacyDigest::validate`]:
/// - plain hashes (`md5`, `sha1`, `sha256`, `sha512`): a `salt` needs a `salt_position`; without a
///   salt the hash is unsalted;
/// - `hmac-*`: `salt` is the HMAC key and is required; `salt_position` must be absent;
/// - `firebase-scrypt`: `salt` and `firebase` are required, `salt_position` must be absent; the
///   hash and salt of a Firebase export are base64, so set both encodings to `base64`
///   ([`LegacyDigest::firebase_scrypt`] does).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyDigest {
    /// The algorithm.
    pub algorithm: LegacyAlgorithm,
    /// The stored hash.
    pub hash: String,
    /// How `hash` is written (default `hex`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub encoding: HashEncoding,
    /// The salt (or HMAC key), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// How `salt` is written (default `utf8`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub salt_encoding: SaltEncoding,
    /// Where a plain hash puts the salt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt_position: Option<SaltPosition>,
    /// The project parameters of `firebase-scrypt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firebase: Option<FirebaseScryptParams>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

const F: &str = "legacy";

impl LegacyDigest {
    /// An unsalted or salted plain hash, hex-encoded, with a text salt.
    pub fn salted(
        algorithm: LegacyAlgorithm,
        hash: impl Into<String>,
        salt: Option<(&str, SaltPosition)>,
    ) -> Self {
        Self {
            algorithm,
            hash: hash.into(),
            encoding: HashEncoding::Hex,
            salt: salt.map(|(s, _)| s.to_owned()),
            salt_encoding: SaltEncoding::Utf8,
            salt_position: salt.map(|(_, p)| p),
            firebase: None,
        }
    }

    /// A Firebase scrypt digest from an `auth:export` row (base64 hash and salt) and the project's
    /// hash parameters.
    pub fn firebase_scrypt(
        hash_b64: impl Into<String>,
        salt_b64: impl Into<String>,
        params: FirebaseScryptParams,
    ) -> Self {
        Self {
            algorithm: LegacyAlgorithm::FirebaseScrypt,
            hash: hash_b64.into(),
            encoding: HashEncoding::Base64,
            salt: Some(salt_b64.into()),
            salt_encoding: SaltEncoding::Base64,
            salt_position: None,
            firebase: Some(params),
        }
    }

    /// Checks the fields without hashing anything; returns the algorithm.
    pub fn validate(&self) -> Result<Algorithm, DigestError> {
        self.parse().map(|_| self.algorithm.into())
    }

    pub(crate) fn parse(&self) -> Result<Check, DigestError> {
        if self.hash.len() > MAX_DIGEST_LEN
            || self.salt.as_ref().is_some_and(|s| s.len() > MAX_DIGEST_LEN)
        {
            return Err(DigestError::malformed(F, "hash or salt too long"));
        }
        let expected = match self.encoding {
            HashEncoding::Hex => hex_decode(&self.hash),
            HashEncoding::Base64 => base64_decode(&self.hash),
        }
        .ok_or(DigestError::malformed(
            F,
            "hash does not match its encoding",
        ))?;
        let salt = self
            .salt
            .as_deref()
            .map(|s| match self.salt_encoding {
                SaltEncoding::Utf8 => Some(s.as_bytes().to_vec()),
                SaltEncoding::Hex => hex_decode(s),
                SaltEncoding::Base64 => base64_decode(s),
            })
            .map(|s| {
                s.ok_or(DigestError::malformed(
                    F,
                    "salt does not match its encoding",
                ))
            })
            .transpose()?;
        if self.firebase.is_some() && self.algorithm != LegacyAlgorithm::FirebaseScrypt {
            return Err(DigestError::malformed(
                F,
                "firebase parameters given for another algorithm",
            ));
        }

        let (func, hmac) = match self.algorithm {
            LegacyAlgorithm::Md5 => (HashFn::Md5, false),
            LegacyAlgorithm::Sha1 => (HashFn::Sha1, false),
            LegacyAlgorithm::Sha256 => (HashFn::Sha256, false),
            LegacyAlgorithm::Sha512 => (HashFn::Sha512, false),
            LegacyAlgorithm::HmacMd5 => (HashFn::Md5, true),
            LegacyAlgorithm::HmacSha1 => (HashFn::Sha1, true),
            LegacyAlgorithm::HmacSha256 => (HashFn::Sha256, true),
            LegacyAlgorithm::HmacSha512 => (HashFn::Sha512, true),
            LegacyAlgorithm::FirebaseScrypt => return self.parse_firebase(salt, expected),
        };
        if expected.len() != func.output_len() {
            return Err(DigestError::malformed(
                F,
                "hash length does not match the algorithm",
            ));
        }
        let mode = match (hmac, salt, self.salt_position) {
            (true, Some(key), None) => SimpleMode::Hmac(key),
            (true, None, _) => return Err(DigestError::malformed(F, "hmac needs the key in salt")),
            (true, Some(_), Some(_)) => {
                return Err(DigestError::malformed(
                    F,
                    "salt_position does not apply to hmac",
                ))
            }
            (false, None, None) => SimpleMode::Plain,
            (false, Some(salt), Some(SaltPosition::Before)) => SimpleMode::SaltBefore(salt),
            (false, Some(salt), Some(SaltPosition::After)) => SimpleMode::SaltAfter(salt),
            (false, Some(_), None) => {
                return Err(DigestError::malformed(F, "a salt needs a salt_position"))
            }
            (false, None, Some(_)) => {
                return Err(DigestError::malformed(F, "salt_position without a salt"))
            }
        };
        Ok(Check::Simple(SimpleCheck {
            func,
            mode,
            expected,
        }))
    }

    fn parse_firebase(
        &self,
        salt: Option<Vec<u8>>,
        expected: Vec<u8>,
    ) -> Result<Check, DigestError> {
        const FB: &str = "firebase_scrypt";
        let params = self.firebase.as_ref().ok_or(DigestError::malformed(
            FB,
            "the firebase parameters are required",
        ))?;
        if self.salt_position.is_some() {
            return Err(DigestError::malformed(FB, "salt_position does not apply"));
        }
        let mut salt = salt.ok_or(DigestError::malformed(FB, "salt is required"))?;
        let separator = base64_decode(&params.salt_separator).ok_or(DigestError::malformed(
            FB,
            "salt_separator is not valid base64",
        ))?;
        let signer_key = base64_decode(&params.signer_key)
            .ok_or(DigestError::malformed(FB, "signer_key is not valid base64"))?;
        if signer_key.len() < crate::check::MIN_KEY_LEN || signer_key.len() != expected.len() {
            return Err(DigestError::malformed(
                FB,
                "hash and signer key lengths differ",
            ));
        }
        salt.extend_from_slice(&separator);
        // Firebase's scrypt: N = 2^mem_cost, r = rounds, p = 1.
        let cost = ScryptCost::new(FB, u64::from(params.mem_cost), u64::from(params.rounds), 1)?;
        Ok(Check::Firebase(FirebaseCheck {
            cost,
            salt,
            signer_key,
            expected,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn firebase_reference() -> LegacyDigest {
        // The sample in github.com/firebase/scrypt's README.
        LegacyDigest::firebase_scrypt(
            "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ==",
            "42xEC+ixf3L2lw==",
            FirebaseScryptParams {
                signer_key: "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA=="
                    .into(),
                salt_separator: "Bw==".into(),
                rounds: 8,
                mem_cost: 14,
            },
        )
    }

    #[test]
    fn firebase_reference_vector() {
        let d = firebase_reference();
        assert!(d.parse().unwrap().verify(b"user1password").unwrap());
        assert!(!d.parse().unwrap().verify(b"user1passwore").unwrap());
    }

    #[test]
    fn firebase_rejects_absurd_costs() {
        let mut d = firebase_reference();
        d.firebase.as_mut().unwrap().mem_cost = 40;
        assert!(matches!(d.parse(), Err(DigestError::CostTooHigh { .. })));
        let mut d = firebase_reference();
        d.firebase.as_mut().unwrap().rounds = 0;
        assert!(matches!(d.parse(), Err(DigestError::Malformed { .. })));
    }

    #[test]
    fn salt_rules() {
        let hash = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
        let plain = LegacyDigest::salted(LegacyAlgorithm::Sha256, hash, None);
        assert!(plain.parse().unwrap().verify(b"password").unwrap());
        let mut d = plain.clone();
        d.salt = Some("x".into());
        assert!(d.parse().is_err());
        let mut d = plain.clone();
        d.salt_position = Some(SaltPosition::After);
        assert!(d.parse().is_err());
        let mut d = plain.clone();
        d.algorithm = LegacyAlgorithm::HmacSha256;
        assert!(d.parse().is_err());
        let mut d = plain;
        d.algorithm = LegacyAlgorithm::Sha1;
        assert!(
            d.parse().is_err(),
            "a SHA-256-sized hash is not a SHA-1 digest"
        );
    }

    #[test]
    fn json_shape() {
        let d = LegacyDigest::salted(
            LegacyAlgorithm::Md5,
            "00",
            Some(("s", SaltPosition::Before)),
        );
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"algorithm":"md5","hash":"00","salt":"s","salt_position":"before"}"#
        );
        let back: LegacyDigest = serde_json::from_str(
            r#"{"algorithm":"hmac-sha512","hash":"AA==","encoding":"base64","salt":"6b6579","salt_encoding":"hex"}"#,
        )
        .unwrap();
        assert_eq!(back.algorithm, LegacyAlgorithm::HmacSha512);
        assert_eq!(back.salt_encoding, SaltEncoding::Hex);
        assert!(serde_json::from_str::<LegacyDigest>(
            r#"{"algorithm":"md5","hash":"00","pepper":"x"}"#
        )
        .is_err());
    }
}

//! Digest helpers shared by the formats.

use keyward_digest::{DigestError, HashEncoding, SaltEncoding, StoredDigest};

/// The name Keyward stores as `password_algorithm`: the serde string of
/// [`keyward_digest::Algorithm`] (`"bcrypt"`, `"django_pbkdf2_sha256"`, `"firebase_scrypt"`, …),
/// after checking that the digest is well formed (hashes nothing). The same rule as the
/// management API's `password_digest`.
pub fn digest_algorithm(digest: &StoredDigest) -> Result<String, DigestError> {
    let algorithm = digest.algorithm()?;
    Ok(serde_json::to_value(algorithm)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| algorithm.name().to_owned()))
}

/// A self-describing digest string, checked.
pub(crate) fn encoded(value: &str) -> Result<StoredDigest, String> {
    value
        .trim()
        .parse::<StoredDigest>()
        .map_err(|e| e.to_string())
}

pub(crate) fn hash_encoding(name: &str) -> Option<HashEncoding> {
    match name.to_ascii_lowercase().as_str() {
        "hex" => Some(HashEncoding::Hex),
        "base64" => Some(HashEncoding::Base64),
        _ => None,
    }
}

pub(crate) fn salt_encoding(name: &str) -> Option<SaltEncoding> {
    match name.to_ascii_lowercase().as_str() {
        "utf8" | "utf-8" => Some(SaltEncoding::Utf8),
        "hex" => Some(SaltEncoding::Hex),
        "base64" => Some(SaltEncoding::Base64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use keyward_digest::{LegacyAlgorithm, LegacyDigest};

    #[test]
    fn algorithm_names_are_the_serde_names() {
        let bcrypt =
            encoded("$2b$04$2nPC3w0K6z9nu5Fdr8HIO.1yf6dbeb1OGxGdBesjdI1bTVnAfj.Ja").unwrap();
        assert_eq!(digest_algorithm(&bcrypt).unwrap(), "bcrypt");
        let legacy = StoredDigest::Legacy(LegacyDigest::salted(
            LegacyAlgorithm::HmacSha256,
            "00",
            None,
        ));
        assert!(
            digest_algorithm(&legacy).is_err(),
            "malformed for its algorithm"
        );
        let sha = StoredDigest::Legacy(LegacyDigest::salted(
            LegacyAlgorithm::Sha1,
            "fe03aaed971c7a5e2bff441faf2a802432d440fc",
            None,
        ));
        assert_eq!(digest_algorithm(&sha).unwrap(), "sha1");
        assert!(encoded("nope").is_err());
    }
}

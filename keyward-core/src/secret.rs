//! Client secrets.
//!
//! Secrets are 256-bit random values shown once and stored as SHA-256 digests. A slow
//! password hash (Argon2, bcrypt) protects low-entropy human passwords from offline
//! guessing; against a 256-bit random value guessing is already infeasible, so a slow hash
//! would add nothing but latency to every token request. Comparison is constant-time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix that makes leaked secrets recognisable to secret scanners.
const SECRET_PREFIX: &str = "kws_";

/// A fresh client secret: `kws_` + 32 random bytes, base64url.
pub fn generate_client_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// An opaque random token of `bytes` bytes, base64url (for codes, refresh tokens, ids).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn secret_digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The last four characters, shown in listings to tell secrets apart.
pub fn secret_hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// True when `presented` hashes to one of `digests`. Every digest is compared, in constant
/// time, so timing reveals neither which one matched nor how much of it.
pub fn verify_secret<'a>(presented: &str, digests: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let mut matched = subtle::Choice::from(0u8);
    for digest in digests {
        matched |= presented.as_slice().ct_eq(digest);
    }
    matched.into()
}

/// True when two digests are equal, compared in constant time.
pub fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_distinct_and_verify() {
        let a = generate_client_secret();
        let b = generate_client_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("kws_"));
        assert!(a.len() >= 4 + 43);
        let da = secret_digest(&a);
        let db = secret_digest(&b);
        assert!(verify_secret(&a, [da.as_slice(), db.as_slice()]));
        assert!(verify_secret(&b, [da.as_slice(), db.as_slice()]));
        assert!(!verify_secret("kws_wrong", [da.as_slice(), db.as_slice()]));
        assert!(!verify_secret(&a, std::iter::empty()));
        assert_eq!(secret_hint(&a).len(), 4);
        assert!(a.ends_with(&secret_hint(&a)));
    }
}

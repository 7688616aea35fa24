//! Verification of password digests imported from other systems, so that migrated users can
//! sign in with their old password (and be re-hashed to Argon2id by the caller). No I/O, no
//! async, no `unsafe`; nothing here hashes a *new* password.
//!
//! Two kinds of input:
//! - self-describing strings, checked with [`verify`] and named by [`identify`]: PHC strings
//!   (Argon2, scrypt, PBKDF2, also passlib's PBKDF2 layout), bcrypt, sha-crypt, md5-crypt/apr1,
//!   PHPass, Django's hashers, Werkzeug's, and LDAP `{SCHEME}` values — see [`Algorithm`];
//! - [`LegacyDigest`]: a bare hash plus the parameters the source system kept elsewhere (plain
//!   or salted MD5/SHA, HMAC, Firebase scrypt), checked with [`verify_legacy`].
//!
//! [`StoredDigest`] holds either, with one string form for storage.
//!
//! Every check recomputes the digest and compares in constant time. Cost parameters are read
//! from the digest, so they are capped ([`limits`]) before any work. PBKDF2 and scrypt keys are
//! prefix-stable (a cut-off key still verifies), so a stored key must have exactly the length its
//! format writes, or at least 16 bytes where the format lets it vary. Formats with a maintained
//! RustCrypto (or `bcrypt`) crate use it; md5-crypt, PHPass and the thin wrappers (Django,
//! Werkzeug, LDAP, Firebase's scrypt+AES construction) are written here over the primitives.

mod check;
mod crypt;
mod django;
mod encoding;
mod error;
mod ldap;
mod legacy;
pub mod limits;
mod phc;
mod stored;
mod werkzeug;

use serde::{Deserialize, Serialize};

use check::Check;
pub use error::DigestError;
pub use legacy::{
    FirebaseScryptParams, HashEncoding, LegacyAlgorithm, LegacyDigest, SaltEncoding, SaltPosition,
};
pub use stored::StoredDigest;

/// Every supported digest format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Algorithm {
    /// `$argon2i$v=19$m=…,t=…,p=…$salt$hash` (PHC; `v=` absent means version 0x10).
    Argon2i,
    /// `$argon2d$…` (PHC).
    Argon2d,
    /// `$argon2id$…` (PHC).
    Argon2id,
    /// `$scrypt$ln=…,r=…,p=…$salt$hash` (PHC, as passlib and RustCrypto write it).
    Scrypt,
    /// `$pbkdf2$…`: PBKDF2-HMAC-SHA1, PHC (`i=…`) or passlib (`$<rounds>$<ab64>$<ab64>`).
    Pbkdf2Sha1,
    /// `$pbkdf2-sha256$…`, PHC or passlib.
    Pbkdf2Sha256,
    /// `$pbkdf2-sha512$…`, PHC or passlib.
    Pbkdf2Sha512,
    /// `$2a$`, `$2b$`, `$2y$` bcrypt.
    Bcrypt,
    /// `$5$` SHA-256 crypt.
    Sha256Crypt,
    /// `$6$` SHA-512 crypt.
    Sha512Crypt,
    /// `$1$` md5-crypt.
    Md5Crypt,
    /// `$apr1$` Apache md5-crypt.
    AprMd5Crypt,
    /// `$P$` / `$H$` PHPass portable hashes (WordPress, phpBB).
    Phpass,
    /// Django `pbkdf2_sha256$…`.
    DjangoPbkdf2Sha256,
    /// Django `pbkdf2_sha1$…`.
    DjangoPbkdf2Sha1,
    /// Django `argon2$argon2id$…`.
    DjangoArgon2,
    /// Django `bcrypt$$2b$…`.
    DjangoBcrypt,
    /// Django `bcrypt_sha256$$2b$…` (bcrypt of the hex SHA-256 of the password).
    DjangoBcryptSha256,
    /// Django `scrypt$N$salt$r$p$hash`.
    DjangoScrypt,
    /// Django `sha1$salt$hex`: SHA-1(salt ‖ password).
    DjangoSha1,
    /// Django `md5$salt$hex`: MD5(salt ‖ password).
    DjangoMd5,
    /// Django `sha1$$hex`.
    DjangoUnsaltedSha1,
    /// Django `md5$$hex`, or a bare 32-digit hex MD5.
    DjangoUnsaltedMd5,
    /// Werkzeug `pbkdf2:<hash>:<iterations>$salt$hex`.
    WerkzeugPbkdf2,
    /// Werkzeug `scrypt:<N>:<r>:<p>$salt$hex`.
    WerkzeugScrypt,
    /// LDAP `{SHA}`.
    LdapSha,
    /// LDAP `{SSHA}`.
    LdapSsha,
    /// LDAP `{SSHA256}`.
    LdapSsha256,
    /// LDAP `{SSHA512}`.
    LdapSsha512,
    /// LDAP `{MD5}`.
    LdapMd5,
    /// LDAP `{SMD5}`.
    LdapSmd5,
    /// [`LegacyAlgorithm::Md5`].
    Md5,
    /// [`LegacyAlgorithm::Sha1`].
    Sha1,
    /// [`LegacyAlgorithm::Sha256`].
    Sha256,
    /// [`LegacyAlgorithm::Sha512`].
    Sha512,
    /// [`LegacyAlgorithm::HmacMd5`].
    HmacMd5,
    /// [`LegacyAlgorithm::HmacSha1`].
    HmacSha1,
    /// [`LegacyAlgorithm::HmacSha256`].
    HmacSha256,
    /// [`LegacyAlgorithm::HmacSha512`].
    HmacSha512,
    /// [`LegacyAlgorithm::FirebaseScrypt`].
    FirebaseScrypt,
}

/// Names the format of a self-describing digest string, after checking that it is well formed
/// and its costs are within [`limits`]. Hashes nothing. A `{CRYPT}`-wrapped value is named by
/// the crypt format inside.
pub fn identify(digest: &str) -> Result<Algorithm, DigestError> {
    parse_encoded(digest).map(|(algorithm, _)| algorithm)
}

/// Checks `password` against a self-describing digest string. `Ok(false)` is a wrong password;
/// an error means the digest could not be checked at all.
pub fn verify(password: &[u8], digest: &str) -> Result<bool, DigestError> {
    let (_, check) = parse_encoded(digest)?;
    run(&check, password)
}

/// Checks `password` against a [`LegacyDigest`].
pub fn verify_legacy(password: &[u8], digest: &LegacyDigest) -> Result<bool, DigestError> {
    run(&digest.parse()?, password)
}

fn run(check: &Check, password: &[u8]) -> Result<bool, DigestError> {
    if password.len() > limits::MAX_PASSWORD_LEN {
        return Err(DigestError::PasswordTooLong {
            len: password.len(),
            max: limits::MAX_PASSWORD_LEN,
        });
    }
    check.verify(password)
}

/// Parses any self-describing digest.
pub(crate) fn parse_encoded(s: &str) -> Result<(Algorithm, Check), DigestError> {
    if s.len() > limits::MAX_DIGEST_LEN {
        return Err(DigestError::malformed(
            "digest",
            "longer than the maximum length",
        ));
    }
    if s.starts_with('{') {
        return ldap::parse(s);
    }
    if let Some(after) = s.strip_prefix('$') {
        let id = after.split('$').next().unwrap_or_default();
        return match id {
            "argon2i" | "argon2d" | "argon2id" => phc::parse_argon2(s),
            "scrypt" => Ok((Algorithm::Scrypt, phc::parse_scrypt(s)?)),
            "pbkdf2" | "pbkdf2-sha256" | "pbkdf2-sha512" => phc::parse_pbkdf2(s),
            "2" | "2a" | "2b" | "2x" | "2y" => Ok((
                Algorithm::Bcrypt,
                crypt::parse_bcrypt(s, crypt::BcryptPrehash::None)?,
            )),
            "5" => Ok((Algorithm::Sha256Crypt, crypt::parse_sha_crypt(s)?)),
            "6" => Ok((Algorithm::Sha512Crypt, crypt::parse_sha_crypt(s)?)),
            "1" => Ok((Algorithm::Md5Crypt, crypt::parse_md5_crypt(s)?)),
            "apr1" => Ok((Algorithm::AprMd5Crypt, crypt::parse_md5_crypt(s)?)),
            "P" | "H" => Ok((Algorithm::Phpass, crypt::parse_phpass(s)?)),
            _ => Err(DigestError::UnknownFormat),
        };
    }
    if let Some((prefix, rest)) = s.split_once('$') {
        if let Some(parsed) = django::parse(prefix, rest)? {
            return Ok(parsed);
        }
        if let Some(parsed) = werkzeug::parse(prefix, rest)? {
            return Ok(parsed);
        }
        return Err(DigestError::UnknownFormat);
    }
    django::parse_bare_md5(s).ok_or(DigestError::UnknownFormat)
}

impl Algorithm {
    /// The snake_case name, as serialized.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Argon2i => "argon2i",
            Self::Argon2d => "argon2d",
            Self::Argon2id => "argon2id",
            Self::Scrypt => "scrypt",
            Self::Pbkdf2Sha1 => "pbkdf2_sha1",
            Self::Pbkdf2Sha256 => "pbkdf2_sha256",
            Self::Pbkdf2Sha512 => "pbkdf2_sha512",
            Self::Bcrypt => "bcrypt",
            Self::Sha256Crypt => "sha256_crypt",
            Self::Sha512Crypt => "sha512_crypt",
            Self::Md5Crypt => "md5_crypt",
            Self::AprMd5Crypt => "apr_md5_crypt",
            Self::Phpass => "phpass",
            Self::DjangoPbkdf2Sha256 => "django_pbkdf2_sha256",
            Self::DjangoPbkdf2Sha1 => "django_pbkdf2_sha1",
            Self::DjangoArgon2 => "django_argon2",
            Self::DjangoBcrypt => "django_bcrypt",
            Self::DjangoBcryptSha256 => "django_bcrypt_sha256",
            Self::DjangoScrypt => "django_scrypt",
            Self::DjangoSha1 => "django_sha1",
            Self::DjangoMd5 => "django_md5",
            Self::DjangoUnsaltedSha1 => "django_unsalted_sha1",
            Self::DjangoUnsaltedMd5 => "django_unsalted_md5",
            Self::WerkzeugPbkdf2 => "werkzeug_pbkdf2",
            Self::WerkzeugScrypt => "werkzeug_scrypt",
            Self::LdapSha => "ldap_sha",
            Self::LdapSsha => "ldap_ssha",
            Self::LdapSsha256 => "ldap_ssha256",
            Self::LdapSsha512 => "ldap_ssha512",
            Self::LdapMd5 => "ldap_md5",
            Self::LdapSmd5 => "ldap_smd5",
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
            Self::HmacMd5 => "hmac_md5",
            Self::HmacSha1 => "hmac_sha1",
            Self::HmacSha256 => "hmac_sha256",
            Self::HmacSha512 => "hmac_sha512",
            Self::FirebaseScrypt => "firebase_scrypt",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn names_match_serde() {
        for a in [
            Algorithm::Argon2id,
            Algorithm::AprMd5Crypt,
            Algorithm::DjangoBcryptSha256,
            Algorithm::HmacSha512,
        ] {
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
    }

    #[test]
    fn oversized_inputs_are_refused_early() {
        let long = "x".repeat(limits::MAX_DIGEST_LEN + 1);
        assert!(matches!(
            identify(&long),
            Err(DigestError::Malformed { .. })
        ));
        let pw = vec![b'a'; limits::MAX_PASSWORD_LEN + 1];
        assert!(matches!(
            verify(&pw, "5f4dcc3b5aa765d61d8327deb882cf99"),
            Err(DigestError::PasswordTooLong { .. })
        ));
    }
}

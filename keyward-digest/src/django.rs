//! Django's `<algorithm>$...` strings (django.contrib.auth.hashers, checked against Django 4.2,
//! the last release that still ships the SHA-1 and unsalted hashers). The salt is text and is
//! hashed as its UTF-8 bytes.

use crate::check::{Check, HashFn, Pbkdf2Check, ScryptCheck, ScryptCost, SimpleCheck, SimpleMode};
use crate::crypt::{parse_bcrypt, BcryptPrehash};
use crate::encoding::{base64_decode, hex_decode};
use crate::phc::parse_argon2;
use crate::{Algorithm, DigestError};

const F: &str = "django";

fn number(s: &str, what: &'static str) -> Result<u64, DigestError> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DigestError::malformed(F, what));
    }
    Ok(s.parse().unwrap_or(u64::MAX))
}

fn hex_hash(s: &str, func: HashFn) -> Result<Vec<u8>, DigestError> {
    hex_decode(s)
        .filter(|h| h.len() == func.output_len())
        .ok_or(DigestError::malformed(
            F,
            "hash is not hex of the right length",
        ))
}

/// `prefix` is the text before the first `$`, `rest` the text after it.
pub(crate) fn parse(prefix: &str, rest: &str) -> Result<Option<(Algorithm, Check)>, DigestError> {
    let parsed = match prefix {
        // pbkdf2_sha256$<iterations>$<salt>$<base64 hash>
        "pbkdf2_sha256" | "pbkdf2_sha1" => {
            let (algorithm, prf) = if prefix == "pbkdf2_sha256" {
                (Algorithm::DjangoPbkdf2Sha256, HashFn::Sha256)
            } else {
                (Algorithm::DjangoPbkdf2Sha1, HashFn::Sha1)
            };
            let mut f = rest.split('$');
            let (Some(iterations), Some(salt), Some(hash), None) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                return Err(DigestError::malformed(
                    F,
                    "expected <iterations>$<salt>$<hash>",
                ));
            };
            let iterations = number(iterations, "iterations must be a number")?;
            let expected =
                base64_decode(hash).ok_or(DigestError::malformed(F, "hash is not valid base64"))?;
            let key_len = Some(prf.output_len());
            let check = Pbkdf2Check::new(
                F,
                prf,
                iterations,
                salt.as_bytes().to_vec(),
                expected,
                key_len,
            )?;
            (algorithm, Check::Pbkdf2(check))
        }
        // argon2$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>: a PHC string without its `$`.
        "argon2" => {
            let (_, check) = parse_argon2(&format!("${rest}"))?;
            (Algorithm::DjangoArgon2, check)
        }
        // bcrypt$$2b$12$... and bcrypt_sha256$$2b$12$...
        "bcrypt" => (
            Algorithm::DjangoBcrypt,
            parse_bcrypt(rest, BcryptPrehash::None)?,
        ),
        "bcrypt_sha256" => (
            Algorithm::DjangoBcryptSha256,
            parse_bcrypt(rest, BcryptPrehash::Sha256Hex)?,
        ),
        // scrypt$<N>$<salt>$<r>$<p>$<base64 hash> (64-byte key)
        "scrypt" => {
            let mut f = rest.split('$');
            let (Some(n), Some(salt), Some(r), Some(p), Some(hash), None) =
                (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                return Err(DigestError::malformed(
                    F,
                    "expected <N>$<salt>$<r>$<p>$<hash>",
                ));
            };
            let cost = ScryptCost::from_n(
                F,
                number(n, "N must be a number")?,
                number(r, "r must be a number")?,
                number(p, "p must be a number")?,
            )?;
            let expected =
                base64_decode(hash).ok_or(DigestError::malformed(F, "hash is not valid base64"))?;
            let check = ScryptCheck::new(F, cost, salt.as_bytes().to_vec(), expected, Some(64))?;
            (Algorithm::DjangoScrypt, Check::Scrypt(check))
        }
        // sha1$<salt>$<hex of sha1(salt + password)>; "sha1$$<hex>" is unsalted_sha1.
        // md5$<salt>$<hex of md5(salt + password)>; "md5$$<hex>" is unsalted_md5.
        "sha1" | "md5" => {
            let func = if prefix == "sha1" {
                HashFn::Sha1
            } else {
                HashFn::Md5
            };
            let (salt, hash) = rest
                .split_once('$')
                .ok_or(DigestError::malformed(F, "expected <salt>$<hash>"))?;
            let expected = hex_hash(hash, func)?;
            let (algorithm, mode) = match (salt.is_empty(), func) {
                (true, HashFn::Sha1) => (Algorithm::DjangoUnsaltedSha1, SimpleMode::Plain),
                (true, _) => (Algorithm::DjangoUnsaltedMd5, SimpleMode::Plain),
                (false, HashFn::Sha1) => (
                    Algorithm::DjangoSha1,
                    SimpleMode::SaltBefore(salt.as_bytes().to_vec()),
                ),
                (false, _) => (
                    Algorithm::DjangoMd5,
                    SimpleMode::SaltBefore(salt.as_bytes().to_vec()),
                ),
            };
            (
                algorithm,
                Check::Simple(SimpleCheck {
                    func,
                    mode,
                    expected,
                }),
            )
        }
        _ => return Ok(None),
    };
    Ok(Some(parsed))
}

/// Django's oldest form: 32 hex digits, an unsalted MD5 (`identify_hasher`'s special case).
pub(crate) fn parse_bare_md5(s: &str) -> Option<(Algorithm, Check)> {
    if s.len() != 32 {
        return None;
    }
    let expected = hex_decode(s)?;
    let check = SimpleCheck {
        func: HashFn::Md5,
        mode: SimpleMode::Plain,
        expected,
    };
    Some((Algorithm::DjangoUnsaltedMd5, Check::Simple(check)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn unsalted_spellings() {
        let hex = "5f4dcc3b5aa765d61d8327deb882cf99"; // md5("password")
        let (a, c) = parse_bare_md5(hex).unwrap();
        assert_eq!(a, Algorithm::DjangoUnsaltedMd5);
        assert!(c.verify(b"password").unwrap());
        let (a, _) = parse("md5", &format!("${hex}")).unwrap().unwrap();
        assert_eq!(a, Algorithm::DjangoUnsaltedMd5);
        let (a, c) = parse("md5", &format!("pepper${}", hex)).unwrap().unwrap();
        assert_eq!(a, Algorithm::DjangoMd5);
        assert!(
            !c.verify(b"password").unwrap(),
            "salted: md5(salt + password)"
        );
        assert!(parse_bare_md5("5f4dcc3b5aa765d61d8327deb882cf9").is_none());
        assert!(parse("unknown", "x").unwrap().is_none());
    }
}

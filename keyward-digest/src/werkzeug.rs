//! Werkzeug's `generate_password_hash` strings (werkzeug.security, 2.3 and later):
//! `pbkdf2:<hash>:<iterations>$<salt>$<hex>` and `scrypt:<N>:<r>:<p>$<salt>$<hex>`. The salt is
//! text, hashed as its UTF-8 bytes.

use crate::check::{Check, HashFn, Pbkdf2Check, ScryptCheck, ScryptCost};
use crate::encoding::hex_decode;
use crate::{Algorithm, DigestError};

const F: &str = "werkzeug";

fn number(s: &str) -> Result<u64, DigestError> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DigestError::malformed(F, "parameter is not a number"));
    }
    Ok(s.parse().unwrap_or(u64::MAX))
}

/// `method` is the text before the first `$`, `rest` the text after it.
pub(crate) fn parse(method: &str, rest: &str) -> Result<Option<(Algorithm, Check)>, DigestError> {
    let mut args = method.split(':');
    let kind = args.next().unwrap_or_default();
    if kind != "pbkdf2" && kind != "scrypt" {
        return Ok(None);
    }
    let args: Vec<&str> = args.collect();
    let (salt, hash) = rest
        .split_once('$')
        .ok_or(DigestError::malformed(F, "expected <method>$<salt>$<hash>"))?;
    if hash.contains('$') {
        return Err(DigestError::malformed(F, "trailing fields"));
    }
    let expected = hex_decode(hash).ok_or(DigestError::malformed(F, "hash is not hex"))?;
    let salt = salt.as_bytes().to_vec();
    if kind == "pbkdf2" {
        // Werkzeug fills in its *current* default for a missing iteration count, so such a string
        // cannot be checked reliably; every version since 0.9 wrote the count out.
        let [hash_name, iterations] = args[..] else {
            return Err(DigestError::unsupported(
                F,
                "pbkdf2 without an explicit hash and iteration count",
            ));
        };
        let prf = match hash_name {
            "sha1" => HashFn::Sha1,
            "sha256" => HashFn::Sha256,
            "sha512" => HashFn::Sha512,
            _ => return Err(DigestError::unsupported(F, "pbkdf2 hash function")),
        };
        // hashlib.pbkdf2_hmac's default key length: the digest size.
        let key_len = Some(prf.output_len());
        let check = Pbkdf2Check::new(F, prf, number(iterations)?, salt, expected, key_len)?;
        Ok(Some((Algorithm::WerkzeugPbkdf2, Check::Pbkdf2(check))))
    } else {
        let [n, r, p] = args[..] else {
            return Err(DigestError::unsupported(
                F,
                "scrypt without explicit N, r and p",
            ));
        };
        let cost = ScryptCost::from_n(F, number(n)?, number(r)?, number(p)?)?;
        // hashlib.scrypt's default key length.
        let check = ScryptCheck::new(F, cost, salt, expected, Some(64))?;
        Ok(Some((Algorithm::WerkzeugScrypt, Check::Scrypt(check))))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn methods() {
        assert!(
            parse("sha256", "salt$00").unwrap().is_none(),
            "not a werkzeug method"
        );
        // hashlib.pbkdf2_hmac("sha1", b"password", b"salt", 2).hex() (RFC 6070 case 2)
        let (a, c) = parse(
            "pbkdf2:sha1:2",
            "salt$ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957",
        )
        .unwrap()
        .unwrap();
        assert_eq!(a, Algorithm::WerkzeugPbkdf2);
        assert!(c.verify(b"password").unwrap());
        assert!(parse("pbkdf2:sha1:2", "salt$ea6c014dc72d6f8ccd1ed92ace1d41f0").is_err());
    }
}

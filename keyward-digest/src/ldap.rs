//! RFC 2307-style `{SCHEME}base64` userPassword values as OpenLDAP's slappasswd and passlib's
//! `ldap_*` hashers write them. The salted schemes store base64(hash(password ‖ salt) ‖ salt).
//! `{CRYPT}` wraps a crypt(3) string, which is checked as such.

use crate::check::{Check, HashFn, SimpleCheck, SimpleMode};
use crate::encoding::base64_decode;
use crate::{Algorithm, DigestError};

const F: &str = "ldap";

/// `s` starts with `{`.
pub(crate) fn parse(s: &str) -> Result<(Algorithm, Check), DigestError> {
    let (scheme, payload) = s
        .strip_prefix('{')
        .and_then(|r| r.split_once('}'))
        .ok_or(DigestError::UnknownFormat)?;
    // Scheme names are case-insensitive in OpenLDAP.
    let scheme = scheme.to_ascii_uppercase();
    if scheme == "CRYPT" {
        if !payload.starts_with('$') {
            return Err(DigestError::unsupported(
                F,
                "{CRYPT} with a non-MCF (DES) value",
            ));
        }
        return crate::parse_encoded(payload);
    }
    let (algorithm, func, salted) = match scheme.as_str() {
        "SHA" => (Algorithm::LdapSha, HashFn::Sha1, false),
        "SSHA" => (Algorithm::LdapSsha, HashFn::Sha1, true),
        "SSHA256" => (Algorithm::LdapSsha256, HashFn::Sha256, true),
        "SSHA512" => (Algorithm::LdapSsha512, HashFn::Sha512, true),
        "MD5" => (Algorithm::LdapMd5, HashFn::Md5, false),
        "SMD5" => (Algorithm::LdapSmd5, HashFn::Md5, true),
        _ => return Err(DigestError::UnknownFormat),
    };
    let mut bytes =
        base64_decode(payload).ok_or(DigestError::malformed(F, "value is not valid base64"))?;
    let len = func.output_len();
    let mode = if salted {
        if bytes.len() <= len {
            return Err(DigestError::malformed(F, "salted value without a salt"));
        }
        let salt = bytes.split_off(len);
        SimpleMode::SaltAfter(salt)
    } else {
        if bytes.len() != len {
            return Err(DigestError::malformed(F, "value has the wrong length"));
        }
        SimpleMode::Plain
    };
    Ok((
        algorithm,
        Check::Simple(SimpleCheck {
            func,
            mode,
            expected: bytes,
        }),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn schemes_are_case_insensitive_and_crypt_unwraps() {
        // slappasswd -h {SHA} -s password
        let (a, c) = parse("{sha}W6ph5Mm5Pz8GgiULbPgzG37mj9g=").unwrap();
        assert_eq!(a, Algorithm::LdapSha);
        assert!(c.verify(b"password").unwrap());
        let (a, c) = parse("{CRYPT}$1$saltstri$qQY4WxjABChYG1ccLpfkz/").unwrap();
        assert_eq!(a, Algorithm::Md5Crypt);
        assert!(c.verify(b"password").unwrap());
        assert!(parse("{CRYPT}{CRYPT}$1$saltstri$qQY4WxjABChYG1ccLpfkz/").is_err());
    }

    #[test]
    fn salted_value_splits_digest_and_salt() {
        use base64::Engine as _;
        let salt = b"NaCl";
        let mut raw = HashFn::Sha1.digest(&[b"secret", salt]);
        raw.extend_from_slice(salt);
        let s = format!(
            "{{SSHA}}{}",
            base64::engine::general_purpose::STANDARD.encode(&raw)
        );
        let (_, c) = parse(&s).unwrap();
        assert!(c.verify(b"secret").unwrap());
        assert!(!c.verify(b"secreT").unwrap());
    }
}

//! PHC string format (github.com/P-H-C/phc-string-format): Argon2 (`argon2` crate), scrypt and
//! PBKDF2 (`scrypt`, `pbkdf2` crates), parsed with `password-hash`; plus passlib's older PBKDF2
//! layout `$pbkdf2-sha256$<rounds>$<ab64 salt>$<ab64 hash>` (passlib.handlers.pbkdf2).

use password_hash::PasswordHash;

use crate::check::{Argon2Check, Check, HashFn, Pbkdf2Check, ScryptCheck, ScryptCost};
use crate::encoding::ab64_decode;
use crate::{Algorithm, DigestError};

fn parse_phc<'a>(s: &'a str, format: &'static str) -> Result<PasswordHash<'a>, DigestError> {
    PasswordHash::new(s).map_err(|_| DigestError::malformed(format, "not a valid PHC string"))
}

fn salt_and_hash(
    hash: &PasswordHash<'_>,
    format: &'static str,
) -> Result<(Vec<u8>, Vec<u8>), DigestError> {
    let salt = hash
        .salt
        .ok_or(DigestError::malformed(format, "missing salt"))?;
    let mut buf = [0u8; 64];
    let salt = salt
        .decode_b64(&mut buf)
        .map_err(|_| DigestError::malformed(format, "salt is not valid base64"))?
        .to_vec();
    let output = hash
        .hash
        .ok_or(DigestError::malformed(format, "missing hash"))?;
    Ok((salt, output.as_bytes().to_vec()))
}

/// Reads the named decimal parameters; any other parameter is `Unsupported`.
fn decimal_params<const N: usize>(
    hash: &PasswordHash<'_>,
    names: [&str; N],
    format: &'static str,
) -> Result<[Option<u64>; N], DigestError> {
    let mut values = [None; N];
    for (ident, value) in hash.params.iter() {
        let Some(i) = names.iter().position(|n| *n == ident.as_str()) else {
            return Err(DigestError::unsupported(format, "unknown parameter"));
        };
        let v = value
            .decimal()
            .map_err(|_| DigestError::malformed(format, "parameter is not a decimal number"))?;
        values[i] = Some(u64::from(v));
    }
    Ok(values)
}

/// `$argon2i$`, `$argon2d$`, `$argon2id$` (also the inside of Django's `argon2$...`).
pub(crate) fn parse_argon2(s: &str) -> Result<(Algorithm, Check), DigestError> {
    const F: &str = "argon2";
    let hash = parse_phc(s, F)?;
    let (algorithm, variant) = match hash.algorithm.as_str() {
        "argon2i" => (Algorithm::Argon2i, argon2::Algorithm::Argon2i),
        "argon2d" => (Algorithm::Argon2d, argon2::Algorithm::Argon2d),
        "argon2id" => (Algorithm::Argon2id, argon2::Algorithm::Argon2id),
        _ => return Err(DigestError::malformed(F, "unknown Argon2 variant")),
    };
    // The reference implementation reads a missing `v=` as version 0x10 (the first release),
    // which is what old Django/passlib strings without it were made with.
    let version = match hash.version {
        None | Some(0x10) => argon2::Version::V0x10,
        Some(0x13) => argon2::Version::V0x13,
        Some(_) => return Err(DigestError::unsupported(F, "unknown Argon2 version")),
    };
    // `keyid`/`data` would mean a secret key or associated data we do not have.
    let [m, t, p] = decimal_params(&hash, ["m", "t", "p"], F)?;
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return Err(DigestError::malformed(F, "m, t and p are required"));
    };
    let (salt, expected) = salt_and_hash(&hash, F)?;
    let check = Argon2Check::new(F, variant, version, (m, t, p), salt, expected)?;
    Ok((algorithm, Check::Argon2(check)))
}

/// `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>` (passlib, RustCrypto `scrypt`).
pub(crate) fn parse_scrypt(s: &str) -> Result<Check, DigestError> {
    const F: &str = "scrypt";
    let hash = parse_phc(s, F)?;
    if hash.version.is_some() {
        return Err(DigestError::unsupported(F, "versioned scrypt string"));
    }
    let [ln, r, p] = decimal_params(&hash, ["ln", "r", "p"], F)?;
    let (Some(ln), Some(r), Some(p)) = (ln, r, p) else {
        return Err(DigestError::malformed(F, "ln, r and p are required"));
    };
    let cost = ScryptCost::new(F, ln, r, p)?;
    let (salt, expected) = salt_and_hash(&hash, F)?;
    // The string does not record the key length, so a cut-off key would still verify (scrypt
    // output is prefix-stable): require the 32 bytes passlib (and RustCrypto by default) write.
    Ok(Check::Scrypt(ScryptCheck::new(
        F,
        cost,
        salt,
        expected,
        Some(32),
    )?))
}

/// `$pbkdf2$`, `$pbkdf2-sha256$`, `$pbkdf2-sha512$`: either PHC with `i=<rounds>[,l=<len>]`
/// (RustCrypto `pbkdf2`) or passlib's `<rounds>$<ab64 salt>$<ab64 hash>`.
pub(crate) fn parse_pbkdf2(s: &str) -> Result<(Algorithm, Check), DigestError> {
    const F: &str = "pbkdf2";
    let mut fields = s.split('$');
    let (Some(""), Some(id), Some(second)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(DigestError::malformed(F, "expected $pbkdf2-<hash>$..."));
    };
    let (algorithm, prf) = match id {
        "pbkdf2" => (Algorithm::Pbkdf2Sha1, HashFn::Sha1),
        "pbkdf2-sha256" => (Algorithm::Pbkdf2Sha256, HashFn::Sha256),
        "pbkdf2-sha512" => (Algorithm::Pbkdf2Sha512, HashFn::Sha512),
        _ => return Err(DigestError::unsupported(F, "unknown PBKDF2 hash function")),
    };

    if !second.is_empty() && second.bytes().all(|b| b.is_ascii_digit()) {
        // passlib: $pbkdf2-sha256$29000$<salt>$<checksum>, both in passlib's ab64.
        let (Some(salt), Some(checksum), None) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(DigestError::malformed(
                F,
                "expected <rounds>$<salt>$<checksum>",
            ));
        };
        let rounds: u64 = second.parse().unwrap_or(u64::MAX);
        let salt =
            ab64_decode(salt).ok_or(DigestError::malformed(F, "salt is not valid base64"))?;
        let expected = ab64_decode(checksum)
            .ok_or(DigestError::malformed(F, "checksum is not valid base64"))?;
        // passlib always writes the PRF's digest size.
        let check = Pbkdf2Check::new(F, prf, rounds, salt, expected, Some(prf.output_len()))?;
        return Ok((algorithm, Check::Pbkdf2(check)));
    }

    // PHC as written by RustCrypto's `pbkdf2` (where `pbkdf2` is PBKDF2-SHA1 too).
    let hash = parse_phc(s, F)?;
    let [i, l] = decimal_params(&hash, ["i", "l"], F)?;
    let rounds = i.ok_or(DigestError::malformed(F, "the i parameter is required"))?;
    let (salt, expected) = salt_and_hash(&hash, F)?;
    // Without `l=` the key is the PRF's digest size (as other PHC writers default it), so that a
    // cut-off key cannot pass as a short one.
    let key_len = match l {
        Some(l) => usize::try_from(l).map_err(|_| DigestError::malformed(F, "bad l"))?,
        None => prf.output_len(),
    };
    if key_len != expected.len() {
        return Err(DigestError::malformed(
            F,
            "l does not match the hash length",
        ));
    }
    let check = Pbkdf2Check::new(F, prf, rounds, salt, expected, None)?;
    Ok((algorithm, Check::Pbkdf2(check)))
}

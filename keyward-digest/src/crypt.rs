//! Modular Crypt Format digests: bcrypt (`bcrypt` crate), sha-crypt (`sha-crypt` crate), and
//! the two with no maintained crate, written here over `md-5`: md5-crypt/apr1 and PHPass.

use md5::{Digest as _, Md5};
use std::borrow::Cow;

use crate::check::{ct_eq, Check, HashFn};
use crate::encoding::{crypt64_index, is_crypt64, push_crypt64};
use crate::limits::{MAX_BCRYPT_COST, MAX_PHPASS_LOG2_ROUNDS, MAX_SHA_CRYPT_ROUNDS};
use crate::DigestError;

// ---------------------------------------------------------------------------------------------
// bcrypt

/// What is fed to bcrypt in place of the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BcryptPrehash {
    None,
    /// Django's `BCryptSHA256PasswordHasher`: the lowercase hex SHA-256 of the password
    /// (64 bytes, under bcrypt's 72-byte limit).
    Sha256Hex,
}

#[derive(Debug, Clone)]
pub(crate) struct BcryptCheck {
    mcf: String,
    prehash: BcryptPrehash,
}

impl BcryptCheck {
    pub(crate) fn verify(&self, password: &[u8]) -> Result<bool, DigestError> {
        let input: Cow<'_, [u8]> = match self.prehash {
            BcryptPrehash::None => Cow::Borrowed(password),
            BcryptPrehash::Sha256Hex => {
                Cow::Owned(hex::encode(HashFn::Sha256.digest(&[password])).into_bytes())
            }
        };
        // The crate truncates at 72 bytes like OpenBSD's `$2b$` and Python's bcrypt < 5 did when
        // the digest was made. It compares in constant time.
        bcrypt::verify(&input, &self.mcf)
            .map_err(|_| DigestError::malformed("bcrypt", "rejected by the bcrypt implementation"))
    }
}

/// Parses `$2a$`, `$2b$` or `$2y$` + two-digit cost + 22 salt and 31 hash characters.
pub(crate) fn parse_bcrypt(s: &str, prehash: BcryptPrehash) -> Result<Check, DigestError> {
    const F: &str = "bcrypt";
    let mut parts = s.split('$');
    let (Some(""), Some(version), Some(cost), Some(rest), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(DigestError::malformed(F, "expected $2b$<cost>$<salt+hash>"));
    };
    match version {
        // The three differ only in how old implementations mishandled some passwords; current
        // ones (and the crate) compute them identically.
        "2a" | "2b" | "2y" => {}
        // crypt_blowfish's sign-extension bug, reproduced on purpose: not implemented.
        "2x" => {
            return Err(DigestError::unsupported(
                F,
                "$2x$ (crypt_blowfish bug mode)",
            ))
        }
        "2" => return Err(DigestError::unsupported(F, "the original $2$ variant")),
        _ => return Err(DigestError::malformed(F, "unknown bcrypt version")),
    }
    if cost.len() != 2 || !cost.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DigestError::malformed(F, "cost must be two digits"));
    }
    let cost: u32 = cost
        .parse()
        .map_err(|_| DigestError::malformed(F, "cost must be two digits"))?;
    if !(4..=31).contains(&cost) {
        return Err(DigestError::malformed(F, "cost must be between 4 and 31"));
    }
    DigestError::cap("bcrypt cost", u64::from(cost), u64::from(MAX_BCRYPT_COST))?;
    if rest.len() != 53 || !is_crypt64(rest) {
        return Err(DigestError::malformed(
            F,
            "salt and hash must be 53 base64 characters",
        ));
    }
    Ok(Check::Bcrypt(BcryptCheck {
        mcf: s.to_owned(),
        prehash,
    }))
}

// ---------------------------------------------------------------------------------------------
// sha-crypt

#[derive(Debug, Clone)]
pub(crate) struct ShaCryptCheck {
    sha512: bool,
    rounds: usize,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl ShaCryptCheck {
    pub(crate) fn verify(&self, password: &[u8]) -> Result<bool, DigestError> {
        let err =
            |_| DigestError::malformed("sha_crypt", "rejected by the sha-crypt implementation");
        let computed = if self.sha512 {
            let params = sha_crypt::Sha512Params::new(self.rounds).map_err(err)?;
            sha_crypt::sha512_crypt_b64(password, &self.salt, &params).map_err(err)?
        } else {
            let params = sha_crypt::Sha256Params::new(self.rounds).map_err(err)?;
            sha_crypt::sha256_crypt_b64(password, &self.salt, &params).map_err(err)?
        };
        Ok(ct_eq(computed.as_bytes(), &self.expected))
    }
}

/// Parses `$5$[rounds=N$]salt$hash` and `$6$...` (Drepper, "Unix crypt using SHA-256 and
/// SHA-512", akkadia.org/drepper/SHA-crypt.txt).
pub(crate) fn parse_sha_crypt(s: &str) -> Result<Check, DigestError> {
    const F: &str = "sha_crypt";
    let mut parts = s.split('$');
    let (Some(""), Some(id)) = (parts.next(), parts.next()) else {
        return Err(DigestError::malformed(F, "expected $5$ or $6$"));
    };
    let (sha512, hash_len) = match id {
        "5" => (false, 43),
        "6" => (true, 86),
        _ => return Err(DigestError::malformed(F, "expected $5$ or $6$")),
    };
    let mut field = parts
        .next()
        .ok_or(DigestError::malformed(F, "missing salt"))?;
    let mut rounds: u64 = 5000;
    if let Some(value) = field.strip_prefix("rounds=") {
        if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DigestError::malformed(F, "rounds must be a number"));
        }
        rounds = value.parse().unwrap_or(u64::MAX);
        field = parts
            .next()
            .ok_or(DigestError::malformed(F, "missing salt"))?;
    }
    // The spec clamps rounds to [1000, 999 999 999]; the upper clamp is moot under our cap.
    let rounds = rounds.max(1000);
    DigestError::cap("sha-crypt rounds", rounds, MAX_SHA_CRYPT_ROUNDS)?;
    let salt = field;
    let hash = parts
        .next()
        .ok_or(DigestError::malformed(F, "missing hash"))?;
    if parts.next().is_some() {
        return Err(DigestError::malformed(F, "trailing fields"));
    }
    // Generators truncate the salt to 16 characters before writing it out.
    if salt.len() > 16 {
        return Err(DigestError::malformed(F, "salt longer than 16 characters"));
    }
    if hash.len() != hash_len || !is_crypt64(hash) {
        return Err(DigestError::malformed(
            F,
            "hash has the wrong length or alphabet",
        ));
    }
    Ok(Check::ShaCrypt(ShaCryptCheck {
        sha512,
        rounds: usize::try_from(rounds)
            .map_err(|_| DigestError::malformed(F, "rounds out of range"))?,
        salt: salt.as_bytes().to_vec(),
        expected: hash.as_bytes().to_vec(),
    }))
}

// ---------------------------------------------------------------------------------------------
// md5-crypt and Apache's apr1 (hand-written: no maintained crate). Poul-Henning Kamp's
// FreeBSD `crypt-md5.c`; Apache's `apr_md5.c` is the same algorithm with the magic "$apr1$".

#[derive(Debug, Clone)]
pub(crate) struct Md5CryptCheck {
    magic: &'static str,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl Md5CryptCheck {
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        ct_eq(&md5_crypt(password, &self.salt, self.magic), &self.expected)
    }
}

/// The 22-character encoded md5-crypt hash of `password` with `salt` (at most 8 bytes).
pub(crate) fn md5_crypt(password: &[u8], salt: &[u8], magic: &str) -> Vec<u8> {
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic.as_bytes());
    ctx.update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alt[..chunk.len()]);
    }
    // "Then something really weird...": one byte per bit of the length, a NUL for a set bit and
    // the password's first byte for a clear one.
    let mut i = password.len();
    while i != 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut f = ctx.finalize();

    for i in 0..1000 {
        let mut c = Md5::new();
        if i & 1 == 1 {
            c.update(password);
        } else {
            c.update(f);
        }
        if i % 3 != 0 {
            c.update(salt);
        }
        if i % 7 != 0 {
            c.update(password);
        }
        if i & 1 == 1 {
            c.update(f);
        } else {
            c.update(password);
        }
        f = c.finalize();
    }

    let b = |i: usize| u32::from(f[i]);
    let mut out = Vec::with_capacity(22);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push_crypt64(&mut out, (b(x) << 16) | (b(y) << 8) | b(z), 4);
    }
    push_crypt64(&mut out, b(11), 2);
    out
}

/// Parses `$1$salt$hash` and `$apr1$salt$hash`.
pub(crate) fn parse_md5_crypt(s: &str) -> Result<Check, DigestError> {
    const F: &str = "md5_crypt";
    let (magic, rest) = if let Some(rest) = s.strip_prefix("$1$") {
        ("$1$", rest)
    } else if let Some(rest) = s.strip_prefix("$apr1$") {
        ("$apr1$", rest)
    } else {
        return Err(DigestError::malformed(F, "expected $1$ or $apr1$"));
    };
    let (salt, hash) = rest
        .split_once('$')
        .ok_or(DigestError::malformed(F, "missing hash"))?;
    // Generators stop the salt at 8 characters.
    if salt.len() > 8 {
        return Err(DigestError::malformed(F, "salt longer than 8 characters"));
    }
    if hash.len() != 22 || !is_crypt64(hash) {
        return Err(DigestError::malformed(
            F,
            "hash has the wrong length or alphabet",
        ));
    }
    Ok(Check::Md5Crypt(Md5CryptCheck {
        magic,
        salt: salt.as_bytes().to_vec(),
        expected: hash.as_bytes().to_vec(),
    }))
}

// ---------------------------------------------------------------------------------------------
// PHPass portable hashes (hand-written: no maintained crate). Solar Designer's phpass 0.5
// `PasswordHash::crypt_private`/`encode64`; `$H$` is phpBB3's name for the same thing.

#[derive(Debug, Clone)]
pub(crate) struct PhpassCheck {
    log2_rounds: u32,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl PhpassCheck {
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        ct_eq(
            &phpass(password, &self.salt, self.log2_rounds),
            &self.expected,
        )
    }
}

/// The 22-character encoded PHPass hash: MD5(salt ‖ password), then 2^`log2_rounds` times
/// MD5(previous ‖ password).
pub(crate) fn phpass(password: &[u8], salt: &[u8], log2_rounds: u32) -> Vec<u8> {
    let mut h = Md5::new_with_prefix(salt).chain_update(password).finalize();
    for _ in 0..(1u64 << log2_rounds) {
        h = Md5::new_with_prefix(h).chain_update(password).finalize();
    }
    phpass_encode64(&h)
}

/// phpass's `encode64`: little-endian 24-bit groups, 6 bits at a time, least significant first.
fn phpass_encode64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let mut v = 0u32;
        for (i, &byte) in chunk.iter().enumerate() {
            v |= u32::from(byte) << (8 * i);
        }
        push_crypt64(&mut out, v, chunk.len() + 1);
    }
    out
}

/// Parses `$P$` or `$H$` + one rounds character + 8 salt characters + 22 hash characters.
pub(crate) fn parse_phpass(s: &str) -> Result<Check, DigestError> {
    const F: &str = "phpass";
    let bytes = s.as_bytes();
    if !(s.starts_with("$P$") || s.starts_with("$H$")) {
        return Err(DigestError::malformed(F, "expected $P$ or $H$"));
    }
    if bytes.len() != 34 || !is_crypt64(&s[3..]) {
        return Err(DigestError::malformed(
            F,
            "expected 31 base64 characters after the prefix",
        ));
    }
    let log2_rounds = crypt64_index(bytes[3]).unwrap_or(u32::MAX);
    if !(7..=30).contains(&log2_rounds) {
        return Err(DigestError::malformed(F, "rounds must be 2^7 to 2^30"));
    }
    DigestError::cap(
        "phpass log2 rounds",
        u64::from(log2_rounds),
        u64::from(MAX_PHPASS_LOG2_ROUNDS),
    )?;
    Ok(Check::Phpass(PhpassCheck {
        log2_rounds,
        salt: bytes[4..12].to_vec(),
        expected: bytes[12..].to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn md5_crypt_known_answers() {
        // glibc crypt("password", "$1$saltstri$") and passlib's apr_md5_crypt test vector.
        assert_eq!(
            md5_crypt(b"password", b"saltstri", "$1$"),
            b"qQY4WxjABChYG1ccLpfkz/".to_vec()
        );
        assert_eq!(
            md5_crypt(b"myPassword", b"r31.....", "$apr1$"),
            b"HqJZimcKQFAMYayBlzkrA/".to_vec()
        );
    }

    #[test]
    fn md5_crypt_handles_long_and_empty_passwords() {
        let long = [b'x'; 100];
        assert_eq!(md5_crypt(&long, b"ab", "$1$").len(), 22);
        assert_eq!(md5_crypt(b"", b"", "$1$").len(), 22);
    }

    #[test]
    fn phpass_known_answer() {
        // phpass 0.5's own test value (test.php): "test12345" → $P$9IQRaTwmfeRo7ud9Fh4E2PdI0S3r.L0.
        let Check::Phpass(c) = parse_phpass("$P$9IQRaTwmfeRo7ud9Fh4E2PdI0S3r.L0").unwrap() else {
            panic!("not phpass");
        };
        assert!(c.verify(b"test12345"));
        assert!(!c.verify(b"test12346"));
    }

    #[test]
    fn phpass_encode64_layout() {
        // 3 bytes → 4 characters, 1 trailing byte → 2 characters (as in phpass encode64).
        assert_eq!(phpass_encode64(&[0, 0, 0, 1]).len(), 6);
        assert_eq!(phpass_encode64(&[0xff]), b"z1".to_vec());
    }

    #[test]
    fn phpass_rejects_bad_rounds_characters() {
        // '5' is index 7 (the minimum); '4' is 6.
        assert!(parse_phpass("$P$4IQRaTwmfeRo7ud9Fh4E2PdI0S3r.L0").is_err());
        assert!(matches!(
            parse_phpass("$P$zIQRaTwmfeRo7ud9Fh4E2PdI0S3r.L0"),
            Err(DigestError::Malformed { .. })
        ));
        // 'S' = 2^30: valid phpass, but above our cap.
        assert!(matches!(
            parse_phpass("$P$SIQRaTwmfeRo7ud9Fh4E2PdI0S3r.L0"),
            Err(DigestError::CostTooHigh { .. })
        ));
    }

    #[test]
    fn bcrypt_cost_is_capped_before_hashing() {
        let s = "$2b$31$......................21jzCB1r6pN6rp5O2Ev0ejjTAboskKm";
        assert!(matches!(
            parse_bcrypt(s, BcryptPrehash::None),
            Err(DigestError::CostTooHigh { value: 31, .. })
        ));
        assert!(parse_bcrypt(
            "$2b$03$......................21jzCB1r6pN6rp5O2Ev0ejjTAboskKm",
            BcryptPrehash::None
        )
        .is_err());
        assert!(matches!(
            parse_bcrypt(
                "$2x$04$......................21jzCB1r6pN6rp5O2Ev0ejjTAboskKm",
                BcryptPrehash::None
            ),
            Err(DigestError::Unsupported { .. })
        ));
    }

    fn check(s: &str) -> Check {
        parse_sha_crypt(s).unwrap()
    }

    #[test]
    fn sha_crypt_known_answers() {
        // Drepper's SHA-crypt.txt test vectors (the salt in the output is already cut to 16).
        let c =
            check("$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5");
        assert!(c.verify(b"This is just a test").unwrap());
        assert!(!c.verify(b"This is just a tesT").unwrap());
        let c = check("$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1");
        assert!(c.verify(b"Hello world!").unwrap());
        // rounds=10 is clamped to the minimum 1000, as the spec says.
        let low = "roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.";
        for rounds in ["1000", "10"] {
            let c = check(&format!("$6$rounds={rounds}${low}"));
            assert!(c.verify(b"the minimum number is still observed").unwrap());
        }
    }

    #[test]
    fn sha_crypt_rejects_absurd_rounds_and_bad_shapes() {
        let h = "$5$rounds=999999999$salt$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5";
        assert!(matches!(
            parse_sha_crypt(h),
            Err(DigestError::CostTooHigh { .. })
        ));
        let h =
            "$5$rounds=99999999999999999999999$salt$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5";
        assert!(parse_sha_crypt(h).is_err());
        assert!(
            parse_sha_crypt("$5$rounds=x$salt$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5")
                .is_err()
        );
        assert!(parse_sha_crypt("$5$salt$Un/5jzAHMgOGZ5").is_err());
        assert!(parse_sha_crypt("$5$salt").is_err());
        assert!(parse_sha_crypt("$5$salt$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5$").is_err());
    }
}

//! The computations behind every format, after parsing. Each check recomputes the digest from
//! the password and the stored parameters and compares it with the stored value in constant time
//! (`subtle`), so the time taken does not reveal how many leading bytes matched.

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

use crate::limits::{
    MAX_ARGON2_LANES, MAX_MEMORY_BYTES, MAX_MEMORY_WORK_BYTES, MAX_PBKDF2_ITERATIONS,
};
use crate::{crypt, DigestError};

/// A fully parsed digest, ready to be checked against a password.
#[derive(Debug, Clone)]
pub(crate) enum Check {
    Argon2(Argon2Check),
    Scrypt(ScryptCheck),
    Pbkdf2(Pbkdf2Check),
    Bcrypt(crypt::BcryptCheck),
    ShaCrypt(crypt::ShaCryptCheck),
    Md5Crypt(crypt::Md5CryptCheck),
    Phpass(crypt::PhpassCheck),
    Simple(SimpleCheck),
    Firebase(FirebaseCheck),
}

impl Check {
    pub(crate) fn verify(&self, password: &[u8]) -> Result<bool, DigestError> {
        match self {
            Self::Argon2(c) => c.verify(password),
            Self::Scrypt(c) => c.verify(password),
            Self::Pbkdf2(c) => c.verify(password),
            Self::Bcrypt(c) => c.verify(password),
            Self::ShaCrypt(c) => c.verify(password),
            Self::Md5Crypt(c) => Ok(c.verify(password)),
            Self::Phpass(c) => Ok(c.verify(password)),
            Self::Simple(c) => c.verify(password),
            Self::Firebase(c) => c.verify(password),
        }
    }
}

pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // `subtle` compares equal-length slices in constant time; a length mismatch is answered at
    // once, which leaks only the (public) output length.
    a.ct_eq(b).into()
}

/// Shortest derived key accepted where a format lets the length vary.
pub(crate) const MIN_KEY_LEN: usize = 16;

/// PBKDF2 and scrypt keys are prefix-stable (the first bytes of a long key equal a short key),
/// so a cut-off stored hash would still verify, against ever more passwords. Refuse any length
/// the format does not write, and anything under 128 bits.
fn check_key_len(
    format: &'static str,
    expected: &[u8],
    exact: Option<usize>,
) -> Result<(), DigestError> {
    let ok = match exact {
        Some(n) => expected.len() == n,
        None => (MIN_KEY_LEN..=1024).contains(&expected.len()),
    };
    if ok {
        Ok(())
    } else {
        Err(DigestError::malformed(
            format,
            "derived key has the wrong length",
        ))
    }
}

/// The plain hash functions of the legacy formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashFn {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl HashFn {
    pub(crate) const fn output_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// The digest of the concatenation of `parts`.
    pub(crate) fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Self::Md5 => run::<md5::Md5>(parts),
            Self::Sha1 => run::<sha1::Sha1>(parts),
            Self::Sha256 => run::<sha2::Sha256>(parts),
            Self::Sha512 => run::<sha2::Sha512>(parts),
        }
    }

    /// HMAC(key, message).
    pub(crate) fn hmac(self, key: &[u8], message: &[u8]) -> Result<Vec<u8>, DigestError> {
        fn run<M: Mac + hmac::digest::KeyInit>(
            key: &[u8],
            message: &[u8],
        ) -> Result<Vec<u8>, DigestError> {
            // HMAC accepts keys of any length; the error branch is unreachable in practice.
            let mut mac = <M as Mac>::new_from_slice(key)
                .map_err(|_| DigestError::malformed("hmac", "invalid key length"))?;
            mac.update(message);
            Ok(mac.finalize().into_bytes().to_vec())
        }
        match self {
            Self::Md5 => run::<Hmac<md5::Md5>>(key, message),
            Self::Sha1 => run::<Hmac<sha1::Sha1>>(key, message),
            Self::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
            Self::Sha512 => run::<Hmac<sha2::Sha512>>(key, message),
        }
    }
}

/// How a [`SimpleCheck`] combines the password with its salt.
#[derive(Debug, Clone)]
pub(crate) enum SimpleMode {
    Plain,
    SaltBefore(Vec<u8>),
    SaltAfter(Vec<u8>),
    /// HMAC with the salt as the key and the password as the message.
    Hmac(Vec<u8>),
}

/// One hash (or HMAC) over the password and a salt: Django's sha1/md5, LDAP, and the
/// parameterised legacy digests.
#[derive(Debug, Clone)]
pub(crate) struct SimpleCheck {
    pub(crate) func: HashFn,
    pub(crate) mode: SimpleMode,
    pub(crate) expected: Vec<u8>,
}

impl SimpleCheck {
    fn verify(&self, password: &[u8]) -> Result<bool, DigestError> {
        let computed = match &self.mode {
            SimpleMode::Plain => self.func.digest(&[password]),
            SimpleMode::SaltBefore(salt) => self.func.digest(&[salt, password]),
            SimpleMode::SaltAfter(salt) => self.func.digest(&[password, salt]),
            SimpleMode::Hmac(key) => self.func.hmac(key, password)?,
        };
        Ok(ct_eq(&computed, &self.expected))
    }
}

/// PBKDF2-HMAC with one of the SHA functions.
#[derive(Debug, Clone)]
pub(crate) struct Pbkdf2Check {
    prf: HashFn,
    iterations: u32,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl Pbkdf2Check {
    /// `exact_len`: the key length the format always writes, if it has one.
    pub(crate) fn new(
        format: &'static str,
        prf: HashFn,
        iterations: u64,
        salt: Vec<u8>,
        expected: Vec<u8>,
        exact_len: Option<usize>,
    ) -> Result<Self, DigestError> {
        if iterations == 0 {
            return Err(DigestError::malformed(format, "zero iterations"));
        }
        DigestError::cap("pbkdf2 iterations", iterations, MAX_PBKDF2_ITERATIONS)?;
        check_key_len(format, &expected, exact_len)?;
        let iterations = u32::try_from(iterations)
            .map_err(|_| DigestError::malformed(format, "iterations out of range"))?;
        Ok(Self {
            prf,
            iterations,
            salt,
            expected,
        })
    }

    fn verify(&self, password: &[u8]) -> Result<bool, DigestError> {
        let mut out = vec![0u8; self.expected.len()];
        let (salt, n) = (&self.salt[..], self.iterations);
        let result = match self.prf {
            HashFn::Md5 => pbkdf2::pbkdf2::<Hmac<md5::Md5>>(password, salt, n, &mut out),
            HashFn::Sha1 => pbkdf2::pbkdf2::<Hmac<sha1::Sha1>>(password, salt, n, &mut out),
            HashFn::Sha256 => pbkdf2::pbkdf2::<Hmac<sha2::Sha256>>(password, salt, n, &mut out),
            HashFn::Sha512 => pbkdf2::pbkdf2::<Hmac<sha2::Sha512>>(password, salt, n, &mut out),
        };
        result.map_err(|_| DigestError::malformed("pbkdf2", "invalid key length"))?;
        Ok(ct_eq(&out, &self.expected))
    }
}

/// Validated scrypt cost parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScryptCost {
    params: scrypt::Params,
}

impl ScryptCost {
    /// Checks N = 2^`log_n`, r and p against the scrypt rules and [`crate::limits`].
    pub(crate) fn new(
        format: &'static str,
        log_n: u64,
        r: u64,
        p: u64,
    ) -> Result<Self, DigestError> {
        if r == 0 || p == 0 {
            return Err(DigestError::malformed(
                format,
                "scrypt r and p must be positive",
            ));
        }
        // Memory is 128·r·N bytes; saturating arithmetic so that absurd values cannot wrap.
        DigestError::cap("scrypt log2(N)", log_n, 30)?;
        let memory = 128u64.saturating_mul(r).saturating_mul(1u64 << log_n);
        DigestError::cap("scrypt memory (128·r·N bytes)", memory, MAX_MEMORY_BYTES)?;
        let work = memory.saturating_mul(p);
        DigestError::cap("scrypt work (128·r·N·p bytes)", work, MAX_MEMORY_WORK_BYTES)?;
        let (log_n, r, p) = (
            u8::try_from(log_n).map_err(|_| DigestError::malformed(format, "bad N"))?,
            u32::try_from(r).map_err(|_| DigestError::malformed(format, "bad r"))?,
            u32::try_from(p).map_err(|_| DigestError::malformed(format, "bad p"))?,
        );
        // The length given here only matters to the scrypt crate's PHC encoder, which is not
        // used: the output length is that of the buffer passed to `scrypt::scrypt`.
        let params = scrypt::Params::new(log_n, r, p, scrypt::Params::RECOMMENDED_LEN)
            .map_err(|_| DigestError::malformed(format, "invalid scrypt parameters"))?;
        Ok(Self { params })
    }

    /// N given as a number (Django, Werkzeug); it must be a power of two greater than 1.
    pub(crate) fn from_n(
        format: &'static str,
        n: u64,
        r: u64,
        p: u64,
    ) -> Result<Self, DigestError> {
        if n < 2 || !n.is_power_of_two() {
            return Err(DigestError::malformed(
                format,
                "scrypt N must be a power of two",
            ));
        }
        Self::new(format, u64::from(n.trailing_zeros()), r, p)
    }

    pub(crate) fn derive(
        &self,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), DigestError> {
        scrypt::scrypt(password, salt, &self.params, out)
            .map_err(|_| DigestError::malformed("scrypt", "invalid output length"))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ScryptCheck {
    pub(crate) cost: ScryptCost,
    pub(crate) salt: Vec<u8>,
    pub(crate) expected: Vec<u8>,
}

impl ScryptCheck {
    /// `exact_len`: the key length the format always writes, if it has one.
    pub(crate) fn new(
        format: &'static str,
        cost: ScryptCost,
        salt: Vec<u8>,
        expected: Vec<u8>,
        exact_len: Option<usize>,
    ) -> Result<Self, DigestError> {
        check_key_len(format, &expected, exact_len)?;
        Ok(Self {
            cost,
            salt,
            expected,
        })
    }

    fn verify(&self, password: &[u8]) -> Result<bool, DigestError> {
        let mut out = vec![0u8; self.expected.len()];
        self.cost.derive(password, &self.salt, &mut out)?;
        Ok(ct_eq(&out, &self.expected))
    }
}

/// Argon2 with the parameters of a PHC string.
#[derive(Debug, Clone)]
pub(crate) struct Argon2Check {
    algorithm: argon2::Algorithm,
    version: argon2::Version,
    params: argon2::Params,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl Argon2Check {
    pub(crate) fn new(
        format: &'static str,
        algorithm: argon2::Algorithm,
        version: argon2::Version,
        (m_kib, t, p): (u64, u64, u64),
        salt: Vec<u8>,
        expected: Vec<u8>,
    ) -> Result<Self, DigestError> {
        DigestError::cap(
            "argon2 memory (bytes)",
            m_kib.saturating_mul(1024),
            MAX_MEMORY_BYTES,
        )?;
        DigestError::cap(
            "argon2 work (m·t bytes)",
            m_kib.saturating_mul(1024).saturating_mul(t),
            MAX_MEMORY_WORK_BYTES,
        )?;
        DigestError::cap("argon2 lanes", p, u64::from(MAX_ARGON2_LANES))?;
        let as_u32 = |v: u64| {
            u32::try_from(v).map_err(|_| DigestError::malformed(format, "parameter out of range"))
        };
        let params =
            argon2::Params::new(as_u32(m_kib)?, as_u32(t)?, as_u32(p)?, Some(expected.len()))
                .map_err(|_| DigestError::malformed(format, "invalid argon2 parameters"))?;
        if salt.len() < argon2::MIN_SALT_LEN {
            return Err(DigestError::malformed(format, "salt shorter than 8 bytes"));
        }
        Ok(Self {
            algorithm,
            version,
            params,
            salt,
            expected,
        })
    }

    fn verify(&self, password: &[u8]) -> Result<bool, DigestError> {
        let argon = argon2::Argon2::new(self.algorithm, self.version, self.params.clone());
        let mut out = vec![0u8; self.expected.len()];
        argon
            .hash_password_into(password, &self.salt, &mut out)
            .map_err(|_| {
                DigestError::malformed("argon2", "rejected by the argon2 implementation")
            })?;
        Ok(ct_eq(&out, &self.expected))
    }
}

/// Firebase's scrypt variant (github.com/firebase/scrypt): the scrypt output keys AES-256-CTR
/// (zero IV), which encrypts the project's signer key; the ciphertext is the stored hash.
#[derive(Debug, Clone)]
pub(crate) struct FirebaseCheck {
    pub(crate) cost: ScryptCost,
    /// The user's salt followed by the project's salt separator.
    pub(crate) salt: Vec<u8>,
    pub(crate) signer_key: Vec<u8>,
    pub(crate) expected: Vec<u8>,
}

impl FirebaseCheck {
    fn verify(&self, password: &[u8]) -> Result<bool, DigestError> {
        use ctr::cipher::{KeyIvInit, StreamCipher};
        type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

        let mut key = [0u8; 32];
        self.cost.derive(password, &self.salt, &mut key)?;
        let iv = [0u8; 16];
        let mut cipher = Aes256Ctr::new(&key.into(), &iv.into());
        let mut block = self.signer_key.clone();
        cipher
            .try_apply_keystream(&mut block)
            .map_err(|_| DigestError::malformed("firebase_scrypt", "signer key too long"))?;
        Ok(ct_eq(&block, &self.expected))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn hash_functions_match_published_vectors() {
        // RFC 1321, FIPS 180 "abc" vectors.
        assert_eq!(
            hex::encode(HashFn::Md5.digest(&[b"a", b"bc"])),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hex::encode(HashFn::Sha1.digest(&[b"abc"])),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(HashFn::Sha256.digest(&[b"abc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(
                HashFn::Sha256
                    .hmac(b"Jefe", b"what do ya want for nothing?")
                    .unwrap()
            ),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn scrypt_cost_caps_before_allocating() {
        assert!(matches!(
            ScryptCost::new("scrypt", 40, 8, 1),
            Err(DigestError::CostTooHigh { .. })
        ));
        assert!(matches!(
            ScryptCost::new("scrypt", 20, 1 << 40, 1),
            Err(DigestError::CostTooHigh { .. })
        ));
        assert!(matches!(
            ScryptCost::new("scrypt", 14, 8, 1 << 20),
            Err(DigestError::CostTooHigh { .. })
        ));
        assert!(matches!(
            ScryptCost::from_n("scrypt", 1000, 8, 1),
            Err(DigestError::Malformed { .. })
        ));
        assert!(ScryptCost::from_n("scrypt", 16384, 8, 1).is_ok());
    }

    #[test]
    fn scrypt_matches_rfc7914() {
        // RFC 7914 §12, second vector.
        let cost = ScryptCost::new("scrypt", 10, 8, 16).unwrap();
        let mut out = [0u8; 64];
        cost.derive(b"password", b"NaCl", &mut out).unwrap();
        assert_eq!(
            hex::encode(out),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162\
             2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
    }
}

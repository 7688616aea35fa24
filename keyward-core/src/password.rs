//! Password hashing for human passwords: Argon2id at OWASP's recommended parameters
//! (m = 19 MiB, t = 2, p = 1), configurable.
//!
//! Hashing is CPU- and memory-heavy by design; callers on an async runtime run it on a
//! fixed pool of hashing threads (see `keyward-server::hashing`), never on a runtime worker.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("invalid Argon2 parameters: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// Minimum length; longer passphrases are better than composition rules (NIST 800-63B).
pub const MIN_PASSWORD_LEN: usize = 8;

fn hasher(params: Argon2Params) -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| PasswordError::Params(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=…`).
pub fn hash_password(password: &str, params: Argon2Params) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher(params)?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// The Argon2id parameters of a PHC string (`None` for anything that is not Argon2id v19):
/// a digest at other parameters is re-hashed at the configured ones on the next sign-in.
pub fn argon2id_params(phc: &str) -> Option<Argon2Params> {
    let hash = PasswordHash::new(phc).ok()?;
    if Algorithm::try_from(hash.algorithm).ok()? != Algorithm::Argon2id
        || hash.version != Some(0x13)
    {
        return None;
    }
    let params = Params::try_from(&hash).ok()?;
    Some(Argon2Params {
        memory_kib: params.m_cost(),
        iterations: params.t_cost(),
        parallelism: params.p_cost(),
    })
}

/// Verifies `password` against an Argon2 PHC string (the parameters come from the string).
pub fn verify_argon2(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Memory for Argon2 verifications, kept by a hashing thread across calls: a fresh
/// 19 MiB allocation per sign-in costs page faults and zeroing, and, spread over many
/// threads, hundreds of MiB of retained heap.
#[derive(Default)]
pub struct Argon2Memory {
    blocks: Vec<argon2::Block>,
}

/// Like [`verify_argon2`], computing into `memory` (grown as needed, never shrunk). The
/// algorithm, version, parameters, salt and output length come from the PHC string; the
/// outputs are compared in constant time.
pub fn verify_argon2_with_memory(password: &str, phc: &str, memory: &mut Argon2Memory) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
        None => Version::V0x13,
    };
    let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&hash), hash.salt, hash.hash)
    else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let expected = expected.as_bytes();
    let Ok(params) = Params::new(
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        Some(expected.len()),
    ) else {
        return false;
    };
    let needed = params.block_count();
    if memory.blocks.len() < needed {
        memory.blocks.resize(needed, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let ok = Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut memory.blocks[..needed],
        )
        .is_ok();
    ok && bool::from(out.as_slice().ct_eq(expected))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn argon2id_parameters_are_read_back() {
        let params = Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let phc = hash_password("pw", params).unwrap();
        assert_eq!(argon2id_params(&phc), Some(params));
        assert_eq!(
            argon2id_params("$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"),
            None
        );
        assert_eq!(argon2id_params("$2b$04$abc"), None);
    }

    #[test]
    fn hash_and_verify() {
        let params = Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let phc = hash_password("correct horse", params).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(verify_argon2("correct horse", &phc));
        assert!(!verify_argon2("wrong horse", &phc));
        assert!(!verify_argon2("x", "not a hash"));
        let mut memory = Argon2Memory::default();
        for _ in 0..2 {
            assert!(verify_argon2_with_memory(
                "correct horse",
                &phc,
                &mut memory
            ));
            assert!(!verify_argon2_with_memory("wrong horse", &phc, &mut memory));
        }
        assert!(!verify_argon2_with_memory("x", "not a hash", &mut memory));
        // A hash made elsewhere with other parameters (the PHC string carries them).
        let other = hash_password(
            "pw-123456",
            Argon2Params {
                memory_kib: 2048,
                iterations: 2,
                parallelism: 2,
            },
        )
        .unwrap();
        assert!(verify_argon2_with_memory("pw-123456", &other, &mut memory));
        assert!(!verify_argon2_with_memory(
            "pw-1234567",
            &other,
            &mut memory
        ));
    }
}

//! Authenticated encryption of secrets at rest (signing keys today, external tokens later).
//!
//! AES-256-GCM under a key derived with HKDF-SHA256 from the server's master secret. The
//! sealed form is `version (1) || key id (4) || nonce (12) || ciphertext+tag`; the caller
//! passes the row's identity as associated data, so a ciphertext moved to another row fails
//! to open. The key id lets a rotated master key keep opening old rows until they are
//! re-sealed.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;

const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 12;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the master secret must be at least 32 characters")]
    WeakMasterSecret,
    #[error("sealed data is malformed")]
    Malformed,
    #[error("sealed with an unknown key (id {0})")]
    UnknownKey(String),
    #[error("sealed data failed authentication")]
    Tampered,
    #[error("data too large to seal")]
    TooLarge,
}

/// One derived encryption key with its id.
#[derive(Clone)]
struct DataKey {
    id: [u8; 4],
    cipher: Aes256Gcm,
}

impl DataKey {
    fn from_bytes(key: &[u8; 32]) -> Result<Self, CryptoError> {
        let digest = Sha256::digest(key);
        let id = [digest[0], digest[1], digest[2], digest[3]];
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Malformed)?;
        Ok(Self { id, cipher })
    }

    fn derive(master_secret: &str) -> Result<Self, CryptoError> {
        if master_secret.len() < 32 {
            return Err(CryptoError::WeakMasterSecret);
        }
        let hkdf = Hkdf::<Sha256>::new(Some(b"keyward/v1"), master_secret.as_bytes());
        let mut key = [0u8; 32];
        hkdf.expand(b"keyward data encryption", &mut key)
            .map_err(|_| CryptoError::WeakMasterSecret)?;
        let digest = Sha256::digest(key);
        let id = [digest[0], digest[1], digest[2], digest[3]];
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| CryptoError::WeakMasterSecret)?;
        Ok(Self { id, cipher })
    }
}

/// The master key set: the current key seals, every key opens.
#[derive(Clone)]
pub struct MasterKey {
    current: DataKey,
    previous: Vec<DataKey>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("current", &hex::encode(self.current.id))
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn new(master_secret: &str) -> Result<Self, CryptoError> {
        Ok(Self {
            current: DataKey::derive(master_secret)?,
            previous: Vec::new(),
        })
    }

    /// Adds an older master secret that may still open existing data.
    pub fn with_previous(mut self, master_secret: &str) -> Result<Self, CryptoError> {
        self.previous.push(DataKey::derive(master_secret)?);
        Ok(self)
    }

    /// A key set from raw 256-bit keys (the token vault's data keys): `current` seals,
    /// all open.
    pub fn from_key_bytes(current: &[u8; 32], previous: &[[u8; 32]]) -> Result<Self, CryptoError> {
        Ok(Self {
            current: DataKey::from_bytes(current)?,
            previous: previous
                .iter()
                .map(DataKey::from_bytes)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Hex id of a raw key, as `from_key_bytes` would name it.
    pub fn key_id_of(key: &[u8; 32]) -> String {
        let digest = Sha256::digest(key);
        hex::encode(&digest[..4])
    }

    /// Hex id of the key that sealed `sealed`, if it has the sealed form.
    pub fn sealed_key_id(sealed: &[u8]) -> Option<String> {
        (sealed.len() >= HEADER_LEN && sealed[0] == FORMAT_VERSION)
            .then(|| hex::encode(&sealed[1..5]))
    }

    /// Hex id of the key that seals new data.
    pub fn current_key_id(&self) -> String {
        hex::encode(self.current.id)
    }

    pub fn seal(&self, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: associated_data,
                },
            )
            .map_err(|_| CryptoError::TooLarge)?;
        let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], associated_data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < HEADER_LEN + 16 || sealed[0] != FORMAT_VERSION {
            return Err(CryptoError::Malformed);
        }
        let key_id = &sealed[1..5];
        let key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|key| key.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(hex::encode(key_id)))?;
        key.cipher
            .decrypt(
                Nonce::from_slice(&sealed[5..HEADER_LEN]),
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: associated_data,
                },
            )
            .map_err(|_| CryptoError::Tampered)
    }

    /// True when `sealed` was sealed by the current key (no re-seal needed).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.len() >= 5 && sealed[1..5] == self.current.id
    }
}

/// Associated data of a sealed data key.
pub fn data_key_aad(key_id: &str) -> Vec<u8> {
    format!("keyward/data-key/v1|{key_id}").into_bytes()
}

/// A fresh random 256-bit key.
pub fn generate_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_associated_data_binding() {
        let key = MasterKey::new(SECRET).unwrap();
        let sealed = key.seal(b"hello", b"row-1").unwrap();
        assert_eq!(key.open(&sealed, b"row-1").unwrap(), b"hello");
        assert_eq!(key.open(&sealed, b"row-2"), Err(CryptoError::Tampered));
    }

    #[test]
    fn tampered_ciphertext_fails_closed() {
        let key = MasterKey::new(SECRET).unwrap();
        let mut sealed = key.seal(b"hello", b"row-1").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(key.open(&sealed, b"row-1"), Err(CryptoError::Tampered));
        assert_eq!(
            key.open(&sealed[..10], b"row-1"),
            Err(CryptoError::Malformed)
        );
    }

    #[test]
    fn rotated_master_key_still_opens_old_data() {
        let old = MasterKey::new(SECRET).unwrap();
        let sealed = old.seal(b"hello", b"aad").unwrap();
        let other = "another-master-secret-of-32-chars!!";
        let new_only = MasterKey::new(other).unwrap();
        assert!(matches!(
            new_only.open(&sealed, b"aad"),
            Err(CryptoError::UnknownKey(_))
        ));
        let rotated = MasterKey::new(other)
            .unwrap()
            .with_previous(SECRET)
            .unwrap();
        assert_eq!(rotated.open(&sealed, b"aad").unwrap(), b"hello");
        assert!(!rotated.is_current(&sealed));
        assert!(rotated.is_current(&rotated.seal(b"x", b"aad").unwrap()));
    }

    #[test]
    fn raw_key_sets_rotate() {
        let (a, b) = (generate_key(), generate_key());
        let old = MasterKey::from_key_bytes(&a, &[]).unwrap();
        let sealed = old.seal(b"token", b"con_1").unwrap();
        assert_eq!(
            MasterKey::sealed_key_id(&sealed).unwrap(),
            MasterKey::key_id_of(&a)
        );
        let rotated = MasterKey::from_key_bytes(&b, &[a]).unwrap();
        assert_eq!(rotated.current_key_id(), MasterKey::key_id_of(&b));
        assert_eq!(rotated.open(&sealed, b"con_1").unwrap(), b"token");
        assert!(!rotated.is_current(&sealed));
        let new_only = MasterKey::from_key_bytes(&b, &[]).unwrap();
        assert!(matches!(
            new_only.open(&sealed, b"con_1"),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn weak_master_secret_is_refused() {
        assert!(matches!(
            MasterKey::new("short"),
            Err(CryptoError::WeakMasterSecret)
        ));
    }
}

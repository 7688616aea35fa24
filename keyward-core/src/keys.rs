//! Token-signing keys: generation, sealing under the master key, the JWKS, and the key ring
//! a node signs and verifies with.
//!
//! Rotation is time-based so that nodes need no coordination: every key is published in the
//! JWKS from the moment it is stored, signs from `activates_at` on (the newest active key
//! wins), and stays published until `retires_at`, which rotation sets to "new key's
//! activation + longest token lifetime" so tokens signed by the old key keep verifying
//! until they expire.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use thiserror::Error;
use time::OffsetDateTime;

use crate::crypto::{CryptoError, MasterKey};
use crate::id::{new_id, IdKind};
use crate::model::SigningKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8037), the default.
    EdDsa,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "EdDSA" | "eddsa" | "Ed25519" | "ed25519" => Some(Self::EdDsa),
            "ES256" | "es256" => Some(Self::Es256),
            _ => None,
        }
    }

    fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }
}

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generation,
    #[error("stored key {kid} is unusable: {reason}")]
    Unusable { kid: String, reason: String },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Generates a key pair and seals its private half (associated data: the key id).
pub fn generate_signing_key(
    algorithm: KeyAlgorithm,
    master: &MasterKey,
    now: OffsetDateTime,
    activates_at: OffsetDateTime,
) -> Result<SigningKey, KeyError> {
    let rng = SystemRandom::new();
    let pkcs8 = match algorithm {
        KeyAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
        KeyAlgorithm::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
    }
    .map_err(|_| KeyError::Generation)?;
    let id = new_id(IdKind::SigningKey);
    let signer = Signer::from_pkcs8(algorithm, pkcs8.as_ref(), &id)?;
    let public_jwk = signer.public_jwk(&id);
    Ok(SigningKey {
        sealed_private_key: master.seal(pkcs8.as_ref(), id.as_bytes())?,
        id,
        algorithm: algorithm.as_str().to_owned(),
        public_jwk,
        created_at: now,
        activates_at,
        retires_at: None,
    })
}

/// A parsed private key, kept parsed so that signing does no key decoding per token.
enum Signer {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl Signer {
    fn from_pkcs8(algorithm: KeyAlgorithm, der: &[u8], kid: &str) -> Result<Self, KeyError> {
        let unusable = |reason: String| KeyError::Unusable {
            kid: kid.to_owned(),
            reason,
        };
        match algorithm {
            KeyAlgorithm::EdDsa => Ed25519KeyPair::from_pkcs8(der)
                .map(Self::Ed25519)
                .map_err(|e| unusable(e.to_string())),
            KeyAlgorithm::Es256 => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &SystemRandom::new(),
            )
            .map(Self::P256)
            .map_err(|e| unusable(e.to_string())),
        }
    }

    fn public_jwk(&self, kid: &str) -> Value {
        match self {
            Self::Ed25519(pair) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                "kid": kid,
                "alg": "EdDSA",
                "use": "sig",
            }),
            Self::P256(pair) => {
                // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
                let point = pair.public_key().as_ref();
                let coordinates = point.get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                    "kid": kid,
                    "alg": "ES256",
                    "use": "sig",
                })
            }
        }
    }

    fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::Ed25519(pair) => Some(pair.sign(message).as_ref().to_vec()),
            Self::P256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .ok()
                .map(|sig| sig.as_ref().to_vec()),
        }
    }
}

/// A signing key ready for use.
pub struct LoadedKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    pub activates_at: OffsetDateTime,
    pub retires_at: Option<OffsetDateTime>,
    pub public_jwk: Value,
    signer: Signer,
    decoding_key: DecodingKey,
    /// base64url of the JWS header `{"alg","typ":"at+jwt","kid"}`, fixed per key.
    encoded_header: String,
    /// The same with `"typ":"JWT"`, for ID tokens (OpenID Connect Core §2).
    encoded_id_header: String,
}

impl LoadedKey {
    pub fn from_stored(key: &SigningKey, master: &MasterKey) -> Result<Self, KeyError> {
        let algorithm = KeyAlgorithm::parse(&key.algorithm).ok_or_else(|| KeyError::Unusable {
            kid: key.id.clone(),
            reason: format!("unknown algorithm {}", key.algorithm),
        })?;
        let der = master.open(&key.sealed_private_key, key.id.as_bytes())?;
        let signer = Signer::from_pkcs8(algorithm, &der, &key.id)?;
        let decoding_key = match &signer {
            Signer::Ed25519(pair) => DecodingKey::from_ed_der(pair.public_key().as_ref()),
            Signer::P256(pair) => DecodingKey::from_ec_der(pair.public_key().as_ref()),
        };
        let header = json!({ "alg": algorithm.as_str(), "typ": "at+jwt", "kid": key.id });
        let id_header = json!({ "alg": algorithm.as_str(), "typ": "JWT", "kid": key.id });
        Ok(Self {
            kid: key.id.clone(),
            algorithm,
            activates_at: key.activates_at,
            retires_at: key.retires_at,
            public_jwk: key.public_jwk.clone(),
            signer,
            decoding_key,
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            encoded_id_header: URL_SAFE_NO_PAD.encode(id_header.to_string()),
        })
    }

    /// JWS compact serialization (RFC 7515 §7.1) of `claims` with this key's fixed header.
    pub fn sign_compact(&self, claims: &impl serde::Serialize) -> Result<String, KeyError> {
        self.sign_with_header(&self.encoded_header, claims)
    }

    /// Like [`Self::sign_compact`] with `typ: JWT`, for ID tokens.
    pub fn sign_id_token(&self, claims: &impl serde::Serialize) -> Result<String, KeyError> {
        self.sign_with_header(&self.encoded_id_header, claims)
    }

    fn sign_with_header(
        &self,
        encoded_header: &str,
        claims: &impl serde::Serialize,
    ) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Unusable {
            kid: self.kid.clone(),
            reason: e.to_string(),
        })?;
        let mut jwt = String::with_capacity(encoded_header.len() + payload.len() * 4 / 3 + 100);
        jwt.push_str(encoded_header);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jwt);
        let signature = self
            .signer
            .sign(jwt.as_bytes())
            .ok_or(KeyError::Generation)?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
        Ok(jwt)
    }

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding_key
    }

    pub fn jwt_algorithm(&self) -> Algorithm {
        self.algorithm.jwt_algorithm()
    }
}

/// The set of keys a node currently knows, swapped atomically on reload.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Arc<LoadedKey>>,
    by_kid: HashMap<String, Arc<LoadedKey>>,
}

impl KeySet {
    pub fn new(keys: Vec<LoadedKey>) -> Self {
        let keys: Vec<Arc<LoadedKey>> = keys.into_iter().map(Arc::new).collect();
        let by_kid = keys.iter().map(|k| (k.kid.clone(), k.clone())).collect();
        Self { keys, by_kid }
    }

    /// The newest key whose activation time has come.
    pub fn signing_key(&self, now: OffsetDateTime) -> Option<Arc<LoadedKey>> {
        self.keys
            .iter()
            .filter(|k| k.activates_at <= now && k.retires_at.is_none_or(|at| at > now))
            .max_by_key(|k| k.activates_at)
            .cloned()
    }

    pub fn get(&self, kid: &str) -> Option<Arc<LoadedKey>> {
        self.by_kid.get(kid).cloned()
    }

    pub fn jwks(&self, now: OffsetDateTime) -> Value {
        let keys: Vec<&Value> = self
            .keys
            .iter()
            .filter(|k| k.retires_at.is_none_or(|at| at > now))
            .map(|k| &k.public_jwk)
            .collect();
        json!({ "keys": keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Shared, hot-swappable key set.
#[derive(Default, Clone)]
pub struct KeyRing {
    current: Arc<RwLock<Arc<KeySet>>>,
}

impl KeyRing {
    pub fn snapshot(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, set: KeySet) {
        let set = Arc::new(set);
        match self.current.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::Duration;

    fn master() -> MasterKey {
        MasterKey::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn generated_keys_load_and_publish_jwks() {
        let now = OffsetDateTime::now_utc();
        for alg in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
            let key = generate_signing_key(alg, &master(), now, now).unwrap();
            let loaded = LoadedKey::from_stored(&key, &master()).unwrap();
            assert_eq!(loaded.public_jwk["kid"], key.id.as_str());
            assert_eq!(loaded.public_jwk["alg"], alg.as_str());
        }
    }

    #[test]
    fn sealed_key_is_bound_to_its_id() {
        let now = OffsetDateTime::now_utc();
        let mut key = generate_signing_key(KeyAlgorithm::EdDsa, &master(), now, now).unwrap();
        key.id = new_id(IdKind::SigningKey);
        assert!(LoadedKey::from_stored(&key, &master()).is_err());
    }

    #[test]
    fn newest_active_key_signs_and_future_keys_are_published_only() {
        let now = OffsetDateTime::now_utc();
        let m = master();
        let old = generate_signing_key(
            KeyAlgorithm::EdDsa,
            &m,
            now - Duration::hours(1),
            now - Duration::hours(1),
        )
        .unwrap();
        let current =
            generate_signing_key(KeyAlgorithm::EdDsa, &m, now, now - Duration::minutes(1)).unwrap();
        let next =
            generate_signing_key(KeyAlgorithm::EdDsa, &m, now, now + Duration::minutes(5)).unwrap();
        let mut retired = generate_signing_key(
            KeyAlgorithm::EdDsa,
            &m,
            now - Duration::days(2),
            now - Duration::days(2),
        )
        .unwrap();
        retired.retires_at = Some(now - Duration::days(1));
        let set = KeySet::new(
            [&old, &current, &next, &retired]
                .iter()
                .map(|k| LoadedKey::from_stored(k, &m).unwrap())
                .collect(),
        );
        assert_eq!(set.signing_key(now).unwrap().kid, current.id);
        let jwks = set.jwks(now);
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert!(kids.contains(&old.id.as_str()));
        assert!(kids.contains(&next.id.as_str()));
        assert!(!kids.contains(&retired.id.as_str()));
    }
}

//! Shared server state and the node-local read caches.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use keyward_core::crypto::MasterKey;
use keyward_core::keys::{KeyRing, KeySet, LoadedKey};
use keyward_core::model::{ApiResource, Application};
use keyward_core::store::Store;
use keyward_core::StoreError;
use time::OffsetDateTime;

use keyward_core::password::{hash_password, Argon2Params};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// The largest response Keyward reads from an external server (token responses and
/// proxied API responses).
const EXTERNAL_RESPONSE_LIMIT: usize = 10 * 1024 * 1024;

/// Shared state of one node. Cloned for every request by axum's extractors and
/// middleware, so it is one `Arc` (a single reference-count update per clone) around the
/// fields.
#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

impl std::ops::Deref for AppState {
    type Target = StateInner;

    fn deref(&self) -> &StateInner {
        &self.0
    }
}

pub struct StateInner {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub master: Arc<MasterKey>,
    pub keys: KeyRing,
    pub clients: Arc<TtlCache<Application>>,
    pub resources: Arc<TtlCache<ApiResource>>,
    pub metrics: Arc<Metrics>,
    /// Computed once: `{issuer}/api` unless configured.
    pub management_audience: Arc<str>,
    /// Password hashing and verification, on one thread per core.
    pub passwords: crate::hashing::PasswordPool,
    pub argon2: Argon2Params,
    /// An Argon2id hash of a random password at the configured cost: unknown users are
    /// checked against it so that they cost as much time as known ones.
    pub decoy_hash: Arc<str>,
    /// Computed once: `{issuer}/v1` unless configured.
    pub provisioning_audience: Arc<str>,
    /// The PostgreSQL clusters projects are created in.
    pub regions: Arc<crate::provisioning::Regions>,
    /// Outgoing mail (sign-in codes).
    pub mailer: Arc<crate::mail::Mailer>,
    /// Every outbound HTTP request of external applications (egress policy enforced).
    pub egress: crate::egress::Egress,
    /// The token vault's keys (`crate::vault`), loaded at bootstrap.
    vault: RwLock<Option<Arc<MasterKey>>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        settings: Settings,
        master: MasterKey,
        mailer: crate::mail::Mailer,
    ) -> Self {
        let ttl = Duration::from_secs(settings.client_cache_ttl_secs);
        let argon2 = settings.argon2();
        let decoy_hash: Arc<str> = hash_password(&keyward_core::secret::random_token(24), argon2)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "invalid Argon2 settings; decoy uses defaults");
                hash_password("decoy", Argon2Params::default()).unwrap_or_default()
            })
            .into();
        let regions = Arc::new(crate::provisioning::Regions::from_settings(
            &settings.regions,
        ));
        let egress = crate::egress::Egress::new(
            Duration::from_secs(settings.external_timeout_secs),
            EXTERNAL_RESPONSE_LIMIT,
            5,
        );
        Self(Arc::new(StateInner {
            vault: RwLock::new(None),
            egress,
            mailer: Arc::new(mailer),
            decoy_hash,
            provisioning_audience: settings.provisioning_audience().into(),
            regions,
            management_audience: settings.management_audience().into(),
            store,
            master: Arc::new(master),
            keys: KeyRing::default(),
            clients: Arc::new(TtlCache::new(ttl)),
            resources: Arc::new(TtlCache::new(ttl)),
            metrics: Arc::new(Metrics::default()),
            passwords: crate::hashing::PasswordPool::new(
                std::thread::available_parallelism()
                    .map(usize::from)
                    .unwrap_or(2),
            ),
            argon2,
            settings: Arc::new(settings),
        }))
    }

    /// The token vault's current key set (see `crate::vault`).
    pub fn vault(&self) -> Result<Arc<MasterKey>, ApiError> {
        self.vault
            .read()
            .ok()
            .and_then(|v| v.clone())
            .ok_or_else(|| ApiError::Internal("the token vault is not loaded".into()))
    }

    pub fn set_vault(&self, ring: Arc<MasterKey>) {
        if let Ok(mut slot) = self.vault.write() {
            *slot = Some(ring);
        }
    }

    /// Hashes a password with Argon2id on the hashing threads; the async workers never
    /// run the hash themselves.
    pub async fn hash_password(&self, password: String) -> Result<String, ApiError> {
        let params = self.argon2;
        self.passwords
            .run(move |_| hash_password(&password, params))
            .await
            .map_err(ApiError::Internal)?
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Verifies a password against an Argon2 PHC string on the hashing threads, in memory
    /// the thread reuses.
    pub async fn verify_password(&self, password: String, phc: String) -> Result<bool, ApiError> {
        self.passwords
            .run(move |memory| {
                keyward_core::password::verify_argon2_with_memory(&password, &phc, memory)
            })
            .await
            .map_err(ApiError::Internal)
    }

    /// Verifies a password against an imported digest (bcrypt, PBKDF2, LDAP, …, see
    /// `keyward-digest`) on the hashing threads. A digest that cannot be checked at all
    /// counts as a mismatch (and is logged): the user then signs in another way.
    pub async fn verify_legacy_password(
        &self,
        password: String,
        digest: String,
    ) -> Result<bool, ApiError> {
        let outcome = self
            .passwords
            .run(move |_| {
                digest
                    .parse::<keyward_digest::StoredDigest>()
                    .and_then(|d| d.verify(password.as_bytes()))
            })
            .await
            .map_err(ApiError::Internal)?;
        Ok(outcome.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "an imported password digest could not be checked");
            false
        }))
    }

    /// Reloads the published signing keys from the store into the key ring.
    pub async fn reload_keys(&self) -> Result<usize, StoreError> {
        let stored = self
            .store
            .published_signing_keys(OffsetDateTime::now_utc())
            .await?;
        let mut loaded = Vec::with_capacity(stored.len());
        for key in &stored {
            match LoadedKey::from_stored(key, &self.master) {
                Ok(key) => loaded.push(key),
                // One unusable key (sealed under a master secret we no longer have) must
                // not take the others down; it is reported and skipped.
                Err(e) => {
                    tracing::error!(kid = %key.id, error = %e, "skipping unusable signing key")
                }
            }
        }
        let count = loaded.len();
        self.keys.replace(KeySet::new(loaded));
        Ok(count)
    }

    /// The application with this client id, from the node cache or the store.
    pub async fn client(&self, client_id: &str) -> Result<Option<Arc<Application>>, StoreError> {
        if let Some(hit) = self.clients.get(client_id) {
            return Ok(hit);
        }
        let app = self
            .store
            .get_application_by_client_id(client_id)
            .await?
            .map(Arc::new);
        self.clients.insert(client_id, app.clone());
        Ok(app)
    }

    /// The API resource with this identifier, from the node cache or the store.
    pub async fn resource(&self, identifier: &str) -> Result<Option<Arc<ApiResource>>, StoreError> {
        if let Some(hit) = self.resources.get(identifier) {
            return Ok(hit);
        }
        let resource = self
            .store
            .get_resource_by_identifier(identifier)
            .await?
            .map(Arc::new);
        self.resources.insert(identifier, resource.clone());
        Ok(resource)
    }
}

/// A small TTL cache keyed by string. Misses are cached too (as `None`) so that unknown
/// client ids cannot be used to hammer the store.
pub struct TtlCache<V> {
    ttl: Duration,
    entries: RwLock<HashMap<String, CacheEntry<V>>>,
}

/// When the entry was stored, and the value (`None` for a cached miss).
type CacheEntry<V> = (Instant, Option<Arc<V>>);

/// Upper bound on cached entries; past it the cache is cleared (simple and sufficient: the
/// hot set of clients is small, and a flood of random ids must not grow memory).
const MAX_ENTRIES: usize = 10_000;

impl<V> TtlCache<V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// `Some(entry)` on a fresh hit (the entry itself may be a cached miss).
    pub fn get(&self, key: &str) -> Option<Option<Arc<V>>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().ok()?;
        let (at, value) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn insert(&self, key: &str, value: Option<Arc<V>>) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key.to_owned(), (Instant::now(), value));
        }
    }

    /// Drops everything; called after any change made through this node.
    pub fn invalidate_all(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cache_expires_and_invalidates() {
        let cache: TtlCache<u32> = TtlCache::new(Duration::from_millis(50));
        assert!(cache.get("a").is_none());
        cache.insert("a", Some(Arc::new(1)));
        cache.insert("missing", None);
        assert_eq!(cache.get("a").unwrap().as_deref(), Some(&1));
        assert_eq!(cache.get("missing"), Some(None));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("a").is_none());
        cache.insert("a", Some(Arc::new(2)));
        cache.invalidate_all();
        assert!(cache.get("a").is_none());
    }
}

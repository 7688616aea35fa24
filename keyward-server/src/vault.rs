//! The token vault: the data-encryption keys that seal external applications' client
//! secrets and users' connection tokens (AES-256-GCM, see `keyward_core::crypto`).
//!
//! Keys live in the store, each sealed under the master secret, so every node shares them.
//! The newest key that is not retired seals; every key opens. `keyward vault rotate`
//! ([`rotate`]) adds a key, re-seals every row under it, then retires the older keys —
//! which still open, so nothing is stranded while nodes catch up: a node that meets a key
//! id it does not know reloads the keys once before it gives up, and every node reloads
//! them on the key-refresh interval.

use std::sync::Arc;

use keyward_core::crypto::{data_key_aad, generate_key, CryptoError, MasterKey};
use keyward_core::model::DataKey;
use keyward_core::StoreError;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::state::AppState;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("vault: {e}"))
}

/// Loads the keys from the store into this node.
pub async fn reload(state: &AppState) -> Result<(), ApiError> {
    let keys = state.store.list_data_keys().await?;
    let mut opened: Vec<(DataKey, [u8; 32])> = Vec::with_capacity(keys.len());
    for key in keys {
        let raw = state
            .master
            .open(&key.sealed_key, &data_key_aad(&key.id))
            .map_err(|e| internal(format!("data key {} cannot be opened: {e}", key.id)))?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| internal(format!("data key {} has the wrong length", key.id)))?;
        opened.push((key, raw));
    }
    // The newest key that is not retired seals (created_at, then id, ascending).
    let Some(current) = opened.iter().rposition(|(k, _)| k.retired_at.is_none()) else {
        return Err(internal("no active data key; run bootstrap"));
    };
    let (_, current_raw) = opened.remove(current);
    let previous: Vec<[u8; 32]> = opened.into_iter().map(|(_, raw)| raw).collect();
    let ring = MasterKey::from_key_bytes(&current_raw, &previous).map_err(internal)?;
    state.set_vault(Arc::new(ring));
    Ok(())
}

async fn insert_new_key(state: &AppState, now: OffsetDateTime) -> Result<String, ApiError> {
    let raw = generate_key();
    let id = MasterKey::key_id_of(&raw);
    let sealed_key = state
        .master
        .seal(&raw, &data_key_aad(&id))
        .map_err(internal)?;
    state
        .store
        .insert_data_key(&DataKey {
            id: id.clone(),
            sealed_key,
            created_at: now,
            retired_at: None,
        })
        .await?;
    Ok(id)
}

/// First start: creates the first data key unless there is one, then loads the keys.
pub async fn ensure(state: &AppState) -> Result<(), ApiError> {
    if state.store.list_data_keys().await?.is_empty() {
        match insert_new_key(state, OffsetDateTime::now_utc()).await {
            // Another node created one at the same moment: both keys are fine.
            Ok(_) | Err(ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    reload(state).await
}

/// Seals with the current key: the sealed bytes and the key id.
pub fn seal(state: &AppState, plaintext: &[u8], aad: &[u8]) -> Result<(Vec<u8>, String), ApiError> {
    let ring = state.vault()?;
    let sealed = ring.seal(plaintext, aad).map_err(internal)?;
    Ok((sealed, ring.current_key_id()))
}

/// Opens with whichever key sealed it; an unknown key id reloads the keys once (another
/// node rotated). Anything else fails closed.
pub async fn open(state: &AppState, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let ring = state.vault().map_err(|_| CryptoError::Malformed)?;
    match ring.open(sealed, aad) {
        Err(CryptoError::UnknownKey(id)) => {
            if reload(state).await.is_err() {
                return Err(CryptoError::UnknownKey(id));
            }
            state
                .vault()
                .map_err(|_| CryptoError::Malformed)?
                .open(sealed, aad)
        }
        other => other,
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub new_key_id: String,
    pub client_secrets_resealed: u64,
    pub connections_resealed: u64,
    pub unreadable: u64,
    pub keys_retired: u64,
}

/// Adds a new data key, re-seals every external secret under it, and retires the older
/// keys (they still open anything a lagging node sealed meanwhile).
pub async fn rotate(state: &AppState) -> Result<Rotation, ApiError> {
    let now = OffsetDateTime::now_utc();
    // A key created in the same second as the current one must still sort after it.
    let newest = state
        .store
        .list_data_keys()
        .await?
        .into_iter()
        .map(|k| k.created_at)
        .max();
    let created_at = match newest {
        Some(t) if t >= now => t + time::Duration::seconds(1),
        _ => now,
    };
    let new_key_id = insert_new_key(state, created_at)
        .await
        .map_err(|e| match e {
            ApiError::Conflict { .. } => internal(StoreError::Conflict("data_key_exists")),
            other => other,
        })?;
    reload(state).await?;
    let (client_secrets_resealed, connections_resealed, unreadable) =
        crate::external::reseal_all(state).await?;
    let keys_retired = state
        .store
        .retire_data_keys_except(&new_key_id, OffsetDateTime::now_utc())
        .await?;
    reload(state).await?;
    Ok(Rotation {
        new_key_id,
        client_secrets_resealed,
        connections_resealed,
        unreadable,
        keys_retired,
    })
}

//! The PostgreSQL backend.

use keyward_core::store::StoreResult;
use keyward_core::StoreError;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::data_keys::impl_data_key_store;
use crate::external::impl_external_app_store;
use crate::import::impl_import_store;
use crate::one_time_codes::impl_one_time_code_store;
use crate::projects::impl_project_store;
use crate::store_impl::impl_store;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// A Keyward store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The same pool: PostgreSQL handles concurrent writers itself (the SQLite store keeps
    /// a separate single-connection writer).
    writer: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`).
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect(url)
            .await
            .map_err(|e| StoreError::Internal(format!("connecting to PostgreSQL: {e}")))?;
        Ok(Self {
            writer: pool.clone(),
            pool,
        })
    }

    /// The underlying connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl_store! {
    store: PostgresStore,
    db: sqlx::Postgres,
    backend: "postgres",
    begin_write: "BEGIN",
    for_update: " FOR UPDATE",
    // Serialises signing-key writes (first key, rotation, purge) across nodes for the rest
    // of the transaction. The key is arbitrary but fixed: "kw-keys" in ASCII.
    lock_signing_keys: Some("SELECT pg_advisory_xact_lock(30248859467086195)"),
    migrator: MIGRATOR,
    // sqlx's PostgreSQL migrator holds an advisory lock while it runs.
    migrate_attempts: 1,
}

impl_project_store! {
    store: PostgresStore,
    db: sqlx::Postgres,
    for_update: "FOR UPDATE",
}

impl_import_store! {
    store: PostgresStore,
    db: sqlx::Postgres,
    for_update: " FOR UPDATE",
    lookup: "SELECT u.* FROM jsonb_array_elements_text({list}::jsonb) AS value \
             CROSS JOIN LATERAL (SELECT {cols} FROM users WHERE {extra} {key} = {value} {lock}) AS u",
    insert_chunk: crate::import::postgres_copy_chunk,
    chunk_rows: 5000,
    savepoint_per_row: true,
    // A batch's commit does not wait for its WAL to reach the disk: a crash of the
    // database loses at most the last moments of batches, whole and with the job's resume
    // point (both are in the same transaction), never a part of one. The job's final
    // status is committed normally, which flushes every batch before it.
    batch_setup: Some("SET LOCAL synchronous_commit = off"),
    batch_lock: Some(
        "SELECT pg_advisory_xact_lock(hashtext($1), CAST($2 % 2147483647 AS INTEGER))"
    ),
    predecessor_wait: Some(
        "SELECT pg_advisory_xact_lock_shared(hashtext($1), CAST($2 % 2147483647 AS INTEGER))"
    ),
}

impl_one_time_code_store! {
    store: PostgresStore,
    for_update: " FOR UPDATE",
}

impl_data_key_store! {
    store: PostgresStore,
}

impl_external_app_store! {
    store: PostgresStore,
    db: sqlx::Postgres,
    for_update: " FOR UPDATE",
}

//! The SQLite backend.

use std::str::FromStr;
use std::time::Duration;

use keyward_core::store::StoreResult;
use keyward_core::StoreError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::data_keys::impl_data_key_store;
use crate::external::impl_external_app_store;
use crate::import::impl_import_store;
use crate::one_time_codes::impl_one_time_code_store;
use crate::projects::impl_project_store;
use crate::store_impl::impl_store;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// A Keyward store in a SQLite database file (WAL mode, foreign keys enforced).
///
/// Reads use a pool of connections; every write goes through one dedicated connection.
/// SQLite allows one writer at a time, and a writer that finds the lock taken sleeps in
/// growing steps (up to 100 ms) in its busy handler; queueing writes in-process instead
/// keeps them flowing in order with no sleeps.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url`, e.g.
    /// `sqlite:///var/lib/keyward/keyward.db` or `sqlite://keyward.db` (relative to the
    /// working directory).
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("invalid SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Internal(format!("opening SQLite database {url:?}: {e}")))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Internal(format!("opening SQLite database {url:?}: {e}")))?;
        Ok(Self { pool, writer })
    }

    /// The underlying connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl_store! {
    store: SqliteStore,
    db: sqlx::Sqlite,
    backend: "sqlite",
    // Take the write lock up front: a deferred transaction that reads and then writes
    // fails with SQLITE_BUSY instead of waiting when another writer got in between.
    begin_write: "BEGIN IMMEDIATE",
    // BEGIN IMMEDIATE already serialises writers.
    for_update: "",
    lock_signing_keys: None,
    migrator: MIGRATOR,
    // The SQLite migrator takes no lock: a node racing another one fails on the tables the
    // other just created, and on the next attempt finds the migration recorded.
    migrate_attempts: 3,
}

impl_project_store! {
    store: SqliteStore,
    db: sqlx::Sqlite,
    for_update: "",
}

impl_import_store! {
    store: SqliteStore,
    db: sqlx::Sqlite,
    for_update: "",
    lookup: "SELECT {cols} FROM users WHERE {extra} {key} IN (SELECT {value} FROM json_each({list})) {lock}",
    insert_chunk: Self::insert_chunk,
    chunk_rows: 500,
    savepoint_per_row: false,
    // One writer: a batch's transaction starts after the one before it has ended.
    batch_setup: None,
    batch_lock: None::<&str>,
    predecessor_wait: None::<&str>,
}

impl_one_time_code_store! {
    store: SqliteStore,
    for_update: "",
}

impl_data_key_store! {
    store: SqliteStore,
}

impl_external_app_store! {
    store: SqliteStore,
    db: sqlx::Sqlite,
    for_update: "",
}

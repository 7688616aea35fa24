//! Helpers for tests (this crate's conformance suite, the server's end-to-end tests).

use std::path::Path;

use keyward_core::id::{new_id, IdKind};
use keyward_core::store::StoreResult;
use keyward_core::StoreError;
use sqlx::{Connection, PgConnection};

/// The server used when `KEYWARD_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL server tests create their databases on: `KEYWARD_TEST_POSTGRES_URL`, or
/// [`DEFAULT_TEST_POSTGRES_URL`].
pub fn test_postgres_server_url() -> String {
    std::env::var("KEYWARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned())
}

fn unique_suffix() -> String {
    let id = new_id(IdKind::AuditEvent);
    id.split_once('_')
        .map(|(_, ulid)| ulid.to_owned())
        .unwrap_or(id)
}

/// Creates a brand-new empty database (`kw_test_<random>`) on the server named by
/// `KEYWARD_TEST_POSTGRES_URL` (default [`DEFAULT_TEST_POSTGRES_URL`]) and returns its URL.
pub async fn fresh_postgres_url() -> StoreResult<String> {
    let server = test_postgres_server_url();
    let name = format!("kw_test_{}", unique_suffix());
    let mut url = url::Url::parse(&server)
        .map_err(|e| StoreError::Internal(format!("invalid test PostgreSQL URL: {e}")))?;
    let mut conn = PgConnection::connect(&server)
        .await
        .map_err(|e| StoreError::Internal(format!("connecting to {server}: {e}")))?;
    // `name` is `kw_test_` and a lowercase ULID: nothing to quote.
    let created = sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await;
    // Closing is best effort; the outcome that matters is the CREATE.
    let _ = conn.close().await;
    created.map_err(|e| StoreError::Internal(format!("creating database {name}: {e}")))?;
    url.set_path(&name);
    Ok(url.to_string())
}

/// Drops a database made by [`fresh_postgres_url`], disconnecting whoever is still on it.
pub async fn drop_postgres_database(database_url: &str) -> StoreResult<()> {
    let url = url::Url::parse(database_url)
        .map_err(|e| StoreError::Internal(format!("invalid PostgreSQL URL: {e}")))?;
    let name = url.path().trim_start_matches('/').to_owned();
    if !name.starts_with("kw_test_") || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(StoreError::Internal(format!(
            "refusing to drop {name:?}: not a test database"
        )));
    }
    let server = test_postgres_server_url();
    let mut conn = PgConnection::connect(&server)
        .await
        .map_err(|e| StoreError::Internal(format!("connecting to {server}: {e}")))?;
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    dropped.map_err(|e| StoreError::Internal(format!("dropping database {name}: {e}")))?;
    Ok(())
}

/// A SQLite URL for a new database file in `dir`.
pub fn sqlite_url_in(dir: &Path) -> String {
    format!(
        "sqlite://{}",
        dir.join(format!("keyward-{}.db", unique_suffix()))
            .display()
    )
}

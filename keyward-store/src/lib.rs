//! SQLite and PostgreSQL implementations of Keyward's storage traits
//! ([`keyward_core::store`]), with embedded migrations.
//!
//! Both backends share one implementation (`store_impl.rs`, expanded per backend) and one
//! set of SQL statements; they differ only in their schema files and a few dialect hooks.
//! The conformance suite in `tests/conformance` runs every test against both.

mod data_keys;
mod error;
mod external;
mod import;
mod one_time_codes;
mod postgres;
mod projects;
mod rows;
mod sql;
mod sqlite;
mod store_impl;
pub mod test_support;

use std::sync::Arc;

use keyward_core::store::{Store, StoreResult};
use keyward_core::StoreError;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Connects to the store `url` names: `sqlite:…`, or `postgres:…` / `postgresql:…`.
/// Does not migrate; call [`Store::migrate`].
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Arc<dyn Store>> {
    let scheme = url
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("sqlite") => Ok(Arc::new(SqliteStore::connect(url, max_connections).await?)),
        Some("postgres" | "postgresql") => Ok(Arc::new(
            PostgresStore::connect(url, max_connections).await?,
        )),
        _ => Err(StoreError::Internal(format!(
            "unsupported database URL {:?}: expected a sqlite:, postgres: or postgresql: URL",
            redact(url)
        ))),
    }
}

/// The URL without any password, for error messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable>".to_owned(),
    }
}

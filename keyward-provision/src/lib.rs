//! Real PostgreSQL databases for the provisioning API.
//!
//! A [`Region`] is one PostgreSQL cluster: an admin connection used to run DDL, and the
//! public host and port written into connection strings. [`Cluster`] creates and drops
//! the login roles and databases behind projects.
//!
//! Passwords never reach PostgreSQL in clear: roles get a SCRAM-SHA-256 verifier computed
//! here ([`scram_sha256_verifier`], RFC 5802 §3 / RFC 7677), so a server logging DDL does
//! not log a usable secret, and nothing but that verifier is stored anywhere.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng as _;
use ring::{hmac, pbkdf2};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};
use std::num::NonZeroU32;
use std::str::FromStr;
use thiserror::Error;

/// One region as configured (`[[regions]]` in the configuration file).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Stable identifier used in the API (`"eu-local"`).
    pub id: String,
    /// Display name; defaults to the id.
    #[serde(default)]
    pub name: Option<String>,
    /// Connection URL of a role allowed to create roles and databases
    /// (`CREATEROLE`, `CREATEDB`), e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
    pub admin_url: String,
    /// Host written into connection strings; defaults to the admin URL's host.
    #[serde(default)]
    pub public_host: Option<String>,
    /// Port written into connection strings; defaults to the admin URL's port.
    #[serde(default)]
    pub public_port: Option<u16>,
    /// `CONNECTION LIMIT` of each database created here.
    #[serde(default = "default_connection_limit")]
    pub connection_limit: i32,
    /// Query string appended to connection strings, e.g. `sslmode=require`.
    #[serde(default)]
    pub connection_options: Option<String>,
}

fn default_connection_limit() -> i32 {
    10
}

impl Region {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Debug, Error)]
pub enum ProvisionError {
    #[error("region {region}: invalid admin URL: {detail}")]
    Config { region: String, detail: String },
    #[error("region {region}: {detail}")]
    Database { region: String, detail: String },
}

/// Iterations for the SCRAM verifier: PostgreSQL's default (`scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;

/// A SCRAM-SHA-256 verifier in PostgreSQL's format
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`), which `CREATE ROLE …
/// PASSWORD` stores as is. RFC 5802 §3: SaltedPassword = Hi(password, salt, i);
/// StoredKey = H(HMAC(SaltedPassword, "Client Key")); ServerKey = HMAC(SaltedPassword,
/// "Server Key").
pub fn scram_sha256_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password.as_bytes(),
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = Sha256::digest(client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key.as_ref())
    )
}

/// A new database password: 32 characters from [A-Za-z0-9] (≈190 bits), safe in URLs and
/// shells without quoting.
pub fn new_password() -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// `"name"`, with embedded quotes doubled. Names here are generated (`kw_…`), but DDL
/// takes no bind parameters, so quoting is applied anyway.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Characters percent-encoded in the user-info and path parts of connection strings.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-').remove(b'.');

/// The admin connection of one region.
#[derive(Debug, Clone)]
pub struct Cluster {
    region: Region,
    admin: PgConnectOptions,
    pool: PgPool,
}

impl Cluster {
    /// Prepares the admin pool; no connection is made until first use.
    pub fn new(region: Region) -> Result<Self, ProvisionError> {
        let admin = PgConnectOptions::from_str(&region.admin_url)
            .map_err(|e| ProvisionError::Config {
                region: region.id.clone(),
                detail: e.to_string(),
            })?
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(admin.clone());
        Ok(Self {
            region,
            admin,
            pool,
        })
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    fn error(&self, context: &str, e: impl std::fmt::Display) -> ProvisionError {
        ProvisionError::Database {
            region: self.region.id.clone(),
            detail: format!("{context}: {e}"),
        }
    }

    async fn execute(&self, context: &str, statement: &str) -> Result<(), ProvisionError> {
        sqlx::raw_sql(statement)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| self.error(context, e))
    }

    /// A cheap round trip to the admin connection.
    pub async fn ping(&self) -> Result<(), ProvisionError> {
        self.execute("ping", "SELECT 1").await
    }

    /// Creates the login role `owner` with `password` and the database `database` owned by
    /// it, with the region's connection limit and CONNECT revoked from PUBLIC. On failure
    /// part-way the caller cleans up with [`Cluster::drop_database`] (idempotent), so that it
    /// can keep its own records until the cluster is clean.
    pub async fn create_database(
        &self,
        database: &str,
        owner: &str,
        password: &str,
    ) -> Result<(), ProvisionError> {
        self.try_create_database(database, owner, password).await
    }

    async fn try_create_database(
        &self,
        database: &str,
        owner: &str,
        password: &str,
    ) -> Result<(), ProvisionError> {
        let verifier = scram_sha256_verifier(password, &random_salt(), SCRAM_ITERATIONS);
        let role = quote_ident(owner);
        let db = quote_ident(database);
        self.execute(
            "creating the owner role",
            &format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
                 PASSWORD {}",
                quote_literal(&verifier)
            ),
        )
        .await?;
        // CREATE DATABASE cannot run inside a transaction block, hence separate statements.
        self.execute(
            "creating the database",
            &format!(
                "CREATE DATABASE {db} OWNER {role} CONNECTION LIMIT {}",
                self.region.connection_limit
            ),
        )
        .await?;
        self.execute(
            "restricting access to the database",
            &format!(
                "REVOKE ALL ON DATABASE {db} FROM PUBLIC; \
                 GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}"
            ),
        )
        .await
    }

    /// Creates a further login role for `database` that acts as its owner: a member of
    /// `owner` whose sessions start with `SET ROLE owner`, so the tables it creates belong
    /// to the database owner like everyone else's.
    pub async fn create_login_role(
        &self,
        database: &str,
        owner: &str,
        role: &str,
        password: &str,
    ) -> Result<(), ProvisionError> {
        let verifier = scram_sha256_verifier(password, &random_salt(), SCRAM_ITERATIONS);
        let statement = format!(
            "CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             PASSWORD {p} IN ROLE {o}; \
             ALTER ROLE {r} SET role = {o}; \
             GRANT CONNECT, TEMPORARY ON DATABASE {d} TO {r}",
            r = quote_ident(role),
            o = quote_ident(owner),
            d = quote_ident(database),
            p = quote_literal(&verifier),
        );
        let result = self.execute("creating a login role", &statement).await;
        if result.is_err() {
            let _ = self.drop_login_role(database, role).await;
        }
        result
    }

    /// Replaces the role's password and ends its open sessions (credential rotation).
    pub async fn set_password(&self, role: &str, password: &str) -> Result<(), ProvisionError> {
        let verifier = scram_sha256_verifier(password, &random_salt(), SCRAM_ITERATIONS);
        self.execute(
            "setting a password",
            &format!(
                "ALTER ROLE {} PASSWORD {}",
                quote_ident(role),
                quote_literal(&verifier)
            ),
        )
        .await?;
        self.terminate_role_sessions(role).await
    }

    async fn terminate_role_sessions(&self, role: &str) -> Result<(), ProvisionError> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = $1 AND pid <> pg_backend_pid()",
        )
        .bind(role)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(|e| self.error("ending sessions", e))
    }

    /// Drops a login role made by [`Cluster::create_login_role`]: ends its sessions, hands
    /// anything it owns in `database` to the owner, and drops it. Idempotent.
    pub async fn drop_login_role(&self, database: &str, role: &str) -> Result<(), ProvisionError> {
        if !self.role_exists(role).await? {
            return Ok(());
        }
        self.terminate_role_sessions(role).await?;
        if self.database_exists(database).await? {
            // Objects the role created after a RESET ROLE live in the project database;
            // REASSIGN/DROP OWNED only act on the database they run in.
            let mut conn = self
                .admin
                .clone()
                .database(database)
                .connect()
                .await
                .map_err(|e| self.error("connecting to the project database", e))?;
            let owner: Option<String> = sqlx::query_scalar(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
            )
            .bind(database)
            .fetch_optional(&mut conn)
            .await
            .map_err(|e| self.error("reading the database owner", e))?;
            if let Some(owner) = owner {
                let statement = format!(
                    "REASSIGN OWNED BY {r} TO {o}; DROP OWNED BY {r}",
                    r = quote_ident(role),
                    o = quote_ident(&owner)
                );
                // A plain string runs as a simple-protocol query (several statements).
                sqlx::Executor::execute(&mut conn, statement.as_str())
                    .await
                    .map_err(|e| self.error("reassigning the role's objects", e))?;
            }
            let _ = conn.close().await;
        }
        if self.database_exists(database).await? {
            self.execute(
                "revoking a login role's access",
                &format!(
                    "REVOKE ALL ON DATABASE {} FROM {}",
                    quote_ident(database),
                    quote_ident(role)
                ),
            )
            .await?;
        }
        self.drop_role(role).await
    }

    /// Drops the database (ending its sessions) and then `roles`. Idempotent: what no
    /// longer exists is skipped, so a retry after a partial failure finishes the job.
    pub async fn drop_database(
        &self,
        database: &str,
        roles: &[String],
    ) -> Result<(), ProvisionError> {
        // WITH (FORCE) (PostgreSQL 13+) terminates the database's sessions first.
        self.execute(
            "dropping the database",
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(database)
            ),
        )
        .await?;
        for role in roles {
            if !self.role_exists(role).await? {
                continue;
            }
            self.terminate_role_sessions(role).await?;
            self.drop_role(role).await?;
        }
        Ok(())
    }

    /// Drops a role. Once its database is gone a role owns nothing and holds no
    /// privileges, so a plain DROP ROLE works, and needs no more than CREATEROLE; only when
    /// something still depends on it is DROP OWNED (which needs membership) tried.
    async fn drop_role(&self, role: &str) -> Result<(), ProvisionError> {
        let plain = format!("DROP ROLE IF EXISTS {}", quote_ident(role));
        if self.execute("dropping a role", &plain).await.is_ok() {
            return Ok(());
        }
        self.execute(
            "dropping a role and what it owns",
            &format!(
                "DROP OWNED BY {r}; DROP ROLE IF EXISTS {r}",
                r = quote_ident(role)
            ),
        )
        .await
    }

    pub async fn database_exists(&self, database: &str) -> Result<bool, ProvisionError> {
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(database)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.is_some())
            .map_err(|e| self.error("looking up a database", e))
    }

    pub async fn role_exists(&self, role: &str) -> Result<bool, ProvisionError> {
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.is_some())
            .map_err(|e| self.error("looking up a role", e))
    }

    /// Host and port clients connect to.
    pub fn endpoint(&self) -> (String, u16) {
        let host = self
            .region
            .public_host
            .clone()
            .unwrap_or_else(|| self.admin.get_host().to_owned());
        let port = self.region.public_port.unwrap_or(self.admin.get_port());
        (host, port)
    }

    /// `postgresql://user:password@host:port/database[?options]`.
    pub fn connection_string(&self, user: &str, password: &str, database: &str) -> String {
        let (host, port) = self.endpoint();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let mut url = format!(
            "postgresql://{}:{}@{host}:{port}/{}",
            utf8_percent_encode(user, URL_COMPONENT),
            utf8_percent_encode(password, URL_COMPONENT),
            utf8_percent_encode(database, URL_COMPONENT),
        );
        if let Some(options) = self
            .region
            .connection_options
            .as_deref()
            .filter(|o| !o.is_empty())
        {
            url.push('?');
            url.push_str(options.trim_start_matches('?'));
        }
        url
    }

    /// Closes the admin pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn random_salt() -> [u8; 16] {
    rand::random()
}

/// Whether `url` is a parsable PostgreSQL URL (configuration check).
pub fn is_postgres_url(url: &str) -> bool {
    url::Url::parse(url)
        .map(|u| matches!(u.scheme(), "postgres" | "postgresql"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A verifier computed by PostgreSQL 15 itself (`SET password_encryption =
    /// 'scram-sha-256'; CREATE ROLE t PASSWORD 'pencil'` with its salt copied in): the
    /// same password and salt give the same keys here.
    #[test]
    fn scram_verifier_matches_postgres() {
        let salt = STANDARD.decode("sm/r9EnERaQNt8VQkikZNw==").unwrap();
        let verifier = scram_sha256_verifier("pencil", &salt, 4096);
        assert_eq!(
            verifier,
            "SCRAM-SHA-256$4096:sm/r9EnERaQNt8VQkikZNw==$+f0SxlbLEXuCr08VGISIPZvDcWE8twWNqt4zhQXF3KM=:RQ+UkcLu7AxNyfouz+iSjwXpiALu2TOu0LdmuUYtZ/Y="
        );
    }

    #[test]
    fn passwords_are_long_and_url_safe() {
        let password = new_password();
        assert_eq!(password.len(), 32);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(password, new_password());
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[tokio::test]
    async fn connection_strings_use_the_public_endpoint() {
        let cluster = Cluster::new(Region {
            id: "local".into(),
            name: None,
            admin_url: "postgres://postgres@10.0.0.5:5433/postgres".into(),
            public_host: Some("db.example.com".into()),
            public_port: None,
            connection_limit: 10,
            connection_options: Some("sslmode=require".into()),
        })
        .unwrap();
        assert_eq!(
            cluster.connection_string("kw_u_1", "p@ss", "kw_db_1"),
            "postgresql://kw_u_1:p%40ss@db.example.com:5433/kw_db_1?sslmode=require"
        );
    }
}

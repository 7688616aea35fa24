//! `ExternalAppStore` for both backends: external applications, users' connections to
//! them, authorizations in progress and per-member account permissions. Expanded by
//! `sqlite.rs` and `postgres.rs` next to `impl_store!`, whose `begin_write` it uses.
//!
//! - Application names are unique per account case-insensitively, on `name_folded`
//!   (lowercased here in Rust: SQLite's `lower()` folds ASCII only, PostgreSQL's all of
//!   Unicode, so an index on `lower(name)` would differ between the backends).
//! - A connection is one row per (application, user): saving is one upsert that replaces
//!   the pair's row whole, its id included (the sealed tokens are bound to the id), and
//!   frees the refresh lease.
//! - The refresh lease is `refresh_lease_holder` / `refresh_lease_until`, the latter in
//!   Unix milliseconds so "free" is a plain integer comparison in SQL on both databases
//!   (timestamps are otherwise compared in Rust, see `store_impl.rs`). Taking it is one
//!   conditional `UPDATE`: of several concurrent callers exactly one sees a changed row.
//!   Completing or releasing it is conditional on the holder.
//! - Deleting connections (one, an application's, with the application) uses
//!   `DELETE … RETURNING`, so what is returned for revocation is exactly what was deleted,
//!   even when a concurrent save replaced a row in between.
//! - Authorizations are spent by `DELETE … RETURNING` (single use); an expired one is
//!   deleted but not returned.
//! - `account_permissions` references the membership (`(account_id, user_id)`) with
//!   `ON DELETE CASCADE`: granting to a non-member fails on the foreign key, and whatever
//!   removes a membership (removal, user or account deletion) removes its permissions in
//!   the same statement.

use keyward_core::external::{
    ConnectionState, ExternalApplication, ExternalAuthorization, ExternalConnection,
    ExternalProtocol,
};
use keyward_core::store::StoreResult;
use keyward_core::StoreError;
use sqlx::types::Json;
use time::OffsetDateTime;

use crate::rows::utc;

pub(crate) const APPLICATION_COLUMNS: &str = "id, account_id, name, description, \
     approval_prompt, client_id, client_secret_sealed, client_secret_key_id, scopes, \
     default_expires_in_secs, use_pkce, issuer, authorization_url, egress_hosts, protocol, \
     enabled, created_at, updated_at";
pub(crate) const CONNECTION_COLUMNS: &str = "id, external_application_id, user_id, state, \
     tokens_sealed, key_id, scope, expires_at, created_at, updated_at, last_refreshed_at";
pub(crate) const AUTHORIZATION_COLUMNS: &str = "state_digest, external_application_id, \
     user_id, session_id, code_verifier_sealed, return_to, created_at, expires_at";

pub(crate) const INSERT_APPLICATION: &str = "INSERT INTO external_applications (id, \
     account_id, name, description, approval_prompt, client_id, client_secret_sealed, \
     client_secret_key_id, scopes, default_expires_in_secs, use_pkce, issuer, \
     authorization_url, egress_hosts, protocol, enabled, created_at, updated_at, name_folded) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19)";
pub(crate) const UPDATE_APPLICATION: &str = "UPDATE external_applications SET name = $2, \
     description = $3, approval_prompt = $4, client_id = $5, client_secret_sealed = $6, \
     client_secret_key_id = $7, scopes = $8, default_expires_in_secs = $9, use_pkce = $10, \
     issuer = $11, authorization_url = $12, egress_hosts = $13, protocol = $14, \
     updated_at = $15, name_folded = $16 WHERE id = $1";
pub(crate) const SET_APPLICATION_ENABLED: &str =
    "UPDATE external_applications SET enabled = $2, updated_at = $3 WHERE id = $1";
pub(crate) const APPLICATION_EXISTS: &str = "SELECT id FROM external_applications WHERE id = $1";
pub(crate) const DELETE_APPLICATION: &str = "DELETE FROM external_applications WHERE id = $1";
pub(crate) const DELETE_APPLICATION_AUTHORIZATIONS: &str =
    "DELETE FROM external_authorizations WHERE external_application_id = $1";
pub(crate) const RESEAL_CLIENT_SECRET: &str = "UPDATE external_applications \
     SET client_secret_sealed = $3, client_secret_key_id = $4 \
     WHERE id = $1 AND client_secret_sealed = $2";

/// Replaces the pair's row whole (id, tokens, times) and frees the lease. The pair itself
/// is the conflict target, so it is never rewritten (and no foreign key is re-checked).
pub(crate) const UPSERT_CONNECTION: &str = "INSERT INTO external_connections (id, \
     external_application_id, user_id, state, tokens_sealed, key_id, scope, expires_at, \
     refresh_lease_holder, refresh_lease_until, created_at, updated_at, last_refreshed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10, $11) \
     ON CONFLICT (external_application_id, user_id) DO UPDATE SET id = excluded.id, \
     state = excluded.state, tokens_sealed = excluded.tokens_sealed, key_id = excluded.key_id, \
     scope = excluded.scope, expires_at = excluded.expires_at, refresh_lease_holder = NULL, \
     refresh_lease_until = NULL, created_at = excluded.created_at, \
     updated_at = excluded.updated_at, last_refreshed_at = excluded.last_refreshed_at";
/// `$3` now and `$4` the lease's end, both in Unix milliseconds.
pub(crate) const LEASE_CONNECTION: &str = "UPDATE external_connections \
     SET refresh_lease_holder = $2, refresh_lease_until = $4 \
     WHERE id = $1 AND (refresh_lease_until IS NULL OR refresh_lease_until <= $3)";
pub(crate) const COMPLETE_REFRESH: &str = "UPDATE external_connections SET \
     tokens_sealed = $3, key_id = $4, scope = $5, expires_at = $6, state = $7, \
     last_refreshed_at = $8, updated_at = $8, refresh_lease_holder = NULL, \
     refresh_lease_until = NULL WHERE id = $1 AND refresh_lease_holder = $2";
pub(crate) const RELEASE_REFRESH: &str = "UPDATE external_connections \
     SET refresh_lease_holder = NULL, refresh_lease_until = NULL \
     WHERE id = $1 AND refresh_lease_holder = $2";
pub(crate) const RELEASE_REFRESH_NEEDS_REAUTHORIZATION: &str = "UPDATE external_connections \
     SET refresh_lease_holder = NULL, refresh_lease_until = NULL, state = $3, updated_at = $4 \
     WHERE id = $1 AND refresh_lease_holder = $2";
pub(crate) const RESEAL_CONNECTION: &str = "UPDATE external_connections \
     SET tokens_sealed = $3, key_id = $4 WHERE id = $1 AND tokens_sealed = $2";

pub(crate) const INSERT_AUTHORIZATION: &str = "INSERT INTO external_authorizations \
     (state_digest, external_application_id, user_id, session_id, code_verifier_sealed, \
     return_to, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Idempotent; a non-member fails the foreign key to `memberships`.
pub(crate) const GRANT_PERMISSION: &str = "INSERT INTO account_permissions \
     (account_id, user_id, permission) VALUES ($1, $2, $3) \
     ON CONFLICT (account_id, user_id, permission) DO NOTHING";
pub(crate) const REVOKE_PERMISSION: &str = "DELETE FROM account_permissions \
     WHERE account_id = $1 AND user_id = $2 AND permission = $3";
/// Joined with the membership for clarity; the foreign key already keeps a non-member's
/// permissions from existing.
pub(crate) const LIST_PERMISSIONS: &str = "SELECT p.permission FROM account_permissions p \
     JOIN memberships m ON m.account_id = p.account_id AND m.user_id = p.user_id \
     WHERE p.account_id = $1 AND p.user_id = $2";

/// The key of the per-account name uniqueness rule (`name_folded`): folded in Rust, not
/// with SQL `lower()`, which folds only ASCII on SQLite but all of Unicode on PostgreSQL.
pub(crate) fn fold_name(name: &str) -> String {
    name.to_lowercase()
}

/// Milliseconds since the Unix epoch (the lease columns).
pub(crate) fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[derive(sqlx::FromRow)]
pub(crate) struct ExternalApplicationRow {
    id: String,
    account_id: String,
    name: String,
    description: Option<String>,
    approval_prompt: String,
    client_id: String,
    client_secret_sealed: Vec<u8>,
    client_secret_key_id: String,
    scopes: Json<Vec<String>>,
    default_expires_in_secs: Option<i64>,
    use_pkce: bool,
    issuer: Option<String>,
    authorization_url: String,
    egress_hosts: Json<Vec<String>>,
    protocol: Json<ExternalProtocol>,
    enabled: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<ExternalApplicationRow> for ExternalApplication {
    fn from(r: ExternalApplicationRow) -> Self {
        Self {
            id: r.id,
            account_id: r.account_id,
            name: r.name,
            description: r.description,
            approval_prompt: r.approval_prompt,
            client_id: r.client_id,
            client_secret_sealed: r.client_secret_sealed,
            client_secret_key_id: r.client_secret_key_id,
            scopes: r.scopes.0,
            default_expires_in_secs: r.default_expires_in_secs,
            use_pkce: r.use_pkce,
            issuer: r.issuer,
            authorization_url: r.authorization_url,
            egress_hosts: r.egress_hosts.0,
            protocol: r.protocol.0,
            enabled: r.enabled,
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ExternalConnectionRow {
    id: String,
    external_application_id: String,
    user_id: String,
    state: String,
    tokens_sealed: Vec<u8>,
    key_id: String,
    scope: Option<String>,
    expires_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    last_refreshed_at: Option<OffsetDateTime>,
}

impl TryFrom<ExternalConnectionRow> for ExternalConnection {
    type Error = StoreError;

    fn try_from(r: ExternalConnectionRow) -> StoreResult<Self> {
        let state = ConnectionState::parse(&r.state).ok_or_else(|| {
            StoreError::Internal(format!(
                "unrecognised state {:?} of external connection {}",
                r.state, r.id
            ))
        })?;
        Ok(Self {
            id: r.id,
            external_application_id: r.external_application_id,
            user_id: r.user_id,
            state,
            tokens_sealed: r.tokens_sealed,
            key_id: r.key_id,
            scope: r.scope,
            expires_at: r.expires_at.map(utc),
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
            last_refreshed_at: r.last_refreshed_at.map(utc),
        })
    }
}

/// Converts rows and orders them by id (`DELETE … RETURNING` has no `ORDER BY`).
pub(crate) fn connections_by_id(
    rows: Vec<ExternalConnectionRow>,
) -> StoreResult<Vec<ExternalConnection>> {
    let mut connections = rows
        .into_iter()
        .map(ExternalConnection::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
    connections.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(connections)
}

#[derive(sqlx::FromRow)]
pub(crate) struct ExternalAuthorizationRow {
    state_digest: Vec<u8>,
    external_application_id: String,
    user_id: String,
    session_id: String,
    code_verifier_sealed: Option<Vec<u8>>,
    return_to: Option<String>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl From<ExternalAuthorizationRow> for ExternalAuthorization {
    fn from(r: ExternalAuthorizationRow) -> Self {
        Self {
            state_digest: r.state_digest,
            external_application_id: r.external_application_id,
            user_id: r.user_id,
            session_id: r.session_id,
            code_verifier_sealed: r.code_verifier_sealed,
            return_to: r.return_to,
            created_at: utc(r.created_at),
            expires_at: utc(r.expires_at),
        }
    }
}

macro_rules! impl_external_app_store {
    (store: $store:ident, db: $db:ty, for_update: $for_update:literal $(,)?) => {
        const _: () = {
            use ::async_trait::async_trait;
            use ::keyward_core::external::{
                ConnectionState, ExternalApplication, ExternalAuthorization, ExternalConnection,
            };
            use ::keyward_core::store::{ExternalAppStore, PageRequest, StoreResult};
            use ::keyward_core::StoreError;
            use ::sqlx::types::Json;
            use ::time::OffsetDateTime;
            use $crate::error::{
                conflict_or_internal, internal, is_foreign_key_violation, write_error,
            };
            use $crate::external::{
                connections_by_id, fold_name, unix_ms, ExternalApplicationRow, ExternalAuthorizationRow,
                ExternalConnectionRow, APPLICATION_COLUMNS, APPLICATION_EXISTS,
                AUTHORIZATION_COLUMNS, COMPLETE_REFRESH, CONNECTION_COLUMNS, DELETE_APPLICATION,
                DELETE_APPLICATION_AUTHORIZATIONS, GRANT_PERMISSION, INSERT_APPLICATION,
                INSERT_AUTHORIZATION, LEASE_CONNECTION, LIST_PERMISSIONS, RELEASE_REFRESH,
                RELEASE_REFRESH_NEEDS_REAUTHORIZATION, RESEAL_CLIENT_SECRET, RESEAL_CONNECTION,
                REVOKE_PERMISSION, SET_APPLICATION_ENABLED, UPDATE_APPLICATION,
                UPSERT_CONNECTION,
            };
            use $crate::rows::utc;

            type Tx = ::sqlx::Transaction<'static, $db>;

            /// Locks the application row for the rest of the transaction: a connection or
            /// authorization inserted concurrently waits on it (its foreign-key check) and
            /// then fails, so nothing is left behind by a reset or a delete. On SQLite
            /// `BEGIN IMMEDIATE` already serialises writers.
            const LOCK_APPLICATION: &str = concat!(
                "SELECT id FROM external_applications WHERE id = $1",
                $for_update
            );

            impl $store {
                /// Which reference of a connection or authorization is missing after a
                /// foreign-key violation (SQLite does not say which key failed).
                async fn missing_external_reference(&self, application_id: &str) -> StoreError {
                    match self.exists(APPLICATION_EXISTS, application_id).await {
                        Ok(false) => StoreError::NotFound("external_application"),
                        Ok(true) => StoreError::NotFound("user"),
                        Err(e) => e,
                    }
                }

                /// Locks the application and deletes its connections and authorizations;
                /// returns the deleted connections by id. Errors:
                /// `NotFound("external_application")`.
                async fn delete_external_children(
                    tx: &mut Tx,
                    id: &str,
                ) -> StoreResult<Vec<ExternalConnection>> {
                    let locked: Option<String> = ::sqlx::query_scalar(LOCK_APPLICATION)
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(internal)?;
                    if locked.is_none() {
                        return Err(StoreError::NotFound("external_application"));
                    }
                    let rows: Vec<ExternalConnectionRow> = ::sqlx::query_as(&format!(
                        "DELETE FROM external_connections WHERE external_application_id = $1 \
                         RETURNING {CONNECTION_COLUMNS}"
                    ))
                    .bind(id)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(internal)?;
                    ::sqlx::query(DELETE_APPLICATION_AUTHORIZATIONS)
                        .bind(id)
                        .execute(&mut **tx)
                        .await
                        .map_err(internal)?;
                    connections_by_id(rows)
                }
            }

            #[async_trait]
            impl ExternalAppStore for $store {
                async fn create_external_application(
                    &self,
                    application: &ExternalApplication,
                ) -> StoreResult<()> {
                    ::sqlx::query(INSERT_APPLICATION)
                        .bind(&application.id)
                        .bind(&application.account_id)
                        .bind(&application.name)
                        .bind(&application.description)
                        .bind(&application.approval_prompt)
                        .bind(&application.client_id)
                        .bind(&application.client_secret_sealed)
                        .bind(&application.client_secret_key_id)
                        .bind(Json(&application.scopes))
                        .bind(application.default_expires_in_secs)
                        .bind(application.use_pkce)
                        .bind(&application.issuer)
                        .bind(&application.authorization_url)
                        .bind(Json(&application.egress_hosts))
                        .bind(Json(&application.protocol))
                        .bind(application.enabled)
                        .bind(utc(application.created_at))
                        .bind(utc(application.updated_at))
                        .bind(fold_name(&application.name))
                        .execute(&self.writer)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("account")))?;
                    Ok(())
                }

                async fn get_external_application(
                    &self,
                    id: &str,
                ) -> StoreResult<Option<ExternalApplication>> {
                    let row: Option<ExternalApplicationRow> = ::sqlx::query_as(&format!(
                        "SELECT {APPLICATION_COLUMNS} FROM external_applications WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(internal)?;
                    Ok(row.map(Into::into))
                }

                async fn list_external_applications(
                    &self,
                    account_id: &str,
                    page: &PageRequest,
                ) -> StoreResult<Vec<ExternalApplication>> {
                    let rows: Vec<ExternalApplicationRow> = ::sqlx::query_as(&format!(
                        "SELECT {APPLICATION_COLUMNS} FROM external_applications \
                         WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                    ))
                    .bind(account_id)
                    .bind(page.cursor.as_deref().unwrap_or(""))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn update_external_application(
                    &self,
                    application: &ExternalApplication,
                ) -> StoreResult<()> {
                    let done = ::sqlx::query(UPDATE_APPLICATION)
                        .bind(&application.id)
                        .bind(&application.name)
                        .bind(&application.description)
                        .bind(&application.approval_prompt)
                        .bind(&application.client_id)
                        .bind(&application.client_secret_sealed)
                        .bind(&application.client_secret_key_id)
                        .bind(Json(&application.scopes))
                        .bind(application.default_expires_in_secs)
                        .bind(application.use_pkce)
                        .bind(&application.issuer)
                        .bind(&application.authorization_url)
                        .bind(Json(&application.egress_hosts))
                        .bind(Json(&application.protocol))
                        .bind(utc(application.updated_at))
                        .bind(fold_name(&application.name))
                        .execute(&self.writer)
                        .await
                        .map_err(conflict_or_internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("external_application"));
                    }
                    Ok(())
                }

                async fn set_external_application_enabled(
                    &self,
                    id: &str,
                    enabled: bool,
                    now: OffsetDateTime,
                ) -> StoreResult<()> {
                    let done = ::sqlx::query(SET_APPLICATION_ENABLED)
                        .bind(id)
                        .bind(enabled)
                        .bind(utc(now))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("external_application"));
                    }
                    Ok(())
                }

                async fn reset_external_application(
                    &self,
                    id: &str,
                ) -> StoreResult<Vec<ExternalConnection>> {
                    let mut tx = self.begin_write().await?;
                    let deleted = Self::delete_external_children(&mut tx, id).await?;
                    tx.commit().await.map_err(internal)?;
                    Ok(deleted)
                }

                async fn delete_external_application(
                    &self,
                    id: &str,
                ) -> StoreResult<Vec<ExternalConnection>> {
                    let mut tx = self.begin_write().await?;
                    let deleted = Self::delete_external_children(&mut tx, id).await?;
                    ::sqlx::query(DELETE_APPLICATION)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    tx.commit().await.map_err(internal)?;
                    Ok(deleted)
                }

                async fn save_external_connection(
                    &self,
                    connection: &ExternalConnection,
                ) -> StoreResult<()> {
                    let saved = ::sqlx::query(UPSERT_CONNECTION)
                        .bind(&connection.id)
                        .bind(&connection.external_application_id)
                        .bind(&connection.user_id)
                        .bind(connection.state.as_str())
                        .bind(&connection.tokens_sealed)
                        .bind(&connection.key_id)
                        .bind(&connection.scope)
                        .bind(connection.expires_at.map(utc))
                        .bind(utc(connection.created_at))
                        .bind(utc(connection.updated_at))
                        .bind(connection.last_refreshed_at.map(utc))
                        .execute(&self.writer)
                        .await;
                    match saved {
                        Ok(_) => Ok(()),
                        Err(e) if is_foreign_key_violation(&e) => Err(self
                            .missing_external_reference(&connection.external_application_id)
                            .await),
                        Err(e) => Err(conflict_or_internal(e)),
                    }
                }

                async fn get_external_connection(
                    &self,
                    id: &str,
                ) -> StoreResult<Option<ExternalConnection>> {
                    let row: Option<ExternalConnectionRow> = ::sqlx::query_as(&format!(
                        "SELECT {CONNECTION_COLUMNS} FROM external_connections WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(internal)?;
                    row.map(ExternalConnection::try_from).transpose()
                }

                async fn find_external_connection(
                    &self,
                    application_id: &str,
                    user_id: &str,
                ) -> StoreResult<Option<ExternalConnection>> {
                    let row: Option<ExternalConnectionRow> = ::sqlx::query_as(&format!(
                        "SELECT {CONNECTION_COLUMNS} FROM external_connections \
                         WHERE external_application_id = $1 AND user_id = $2"
                    ))
                    .bind(application_id)
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(internal)?;
                    row.map(ExternalConnection::try_from).transpose()
                }

                async fn list_user_external_connections(
                    &self,
                    user_id: &str,
                ) -> StoreResult<Vec<ExternalConnection>> {
                    let rows: Vec<ExternalConnectionRow> = ::sqlx::query_as(&format!(
                        "SELECT {CONNECTION_COLUMNS} FROM external_connections \
                         WHERE user_id = $1 ORDER BY id"
                    ))
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)?;
                    rows.into_iter().map(ExternalConnection::try_from).collect()
                }

                async fn list_application_external_connections(
                    &self,
                    application_id: &str,
                    page: &PageRequest,
                ) -> StoreResult<Vec<ExternalConnection>> {
                    let rows: Vec<ExternalConnectionRow> = ::sqlx::query_as(&format!(
                        "SELECT {CONNECTION_COLUMNS} FROM external_connections \
                         WHERE external_application_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                    ))
                    .bind(application_id)
                    .bind(page.cursor.as_deref().unwrap_or(""))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)?;
                    rows.into_iter().map(ExternalConnection::try_from).collect()
                }

                async fn delete_external_connection(
                    &self,
                    id: &str,
                ) -> StoreResult<Option<ExternalConnection>> {
                    let row: Option<ExternalConnectionRow> = ::sqlx::query_as(&format!(
                        "DELETE FROM external_connections WHERE id = $1 \
                         RETURNING {CONNECTION_COLUMNS}"
                    ))
                    .bind(id)
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(internal)?;
                    row.map(ExternalConnection::try_from).transpose()
                }

                async fn lease_connection_refresh(
                    &self,
                    id: &str,
                    holder: &str,
                    now: OffsetDateTime,
                    lease_until: OffsetDateTime,
                ) -> StoreResult<bool> {
                    let done = ::sqlx::query(LEASE_CONNECTION)
                        .bind(id)
                        .bind(holder)
                        .bind(unix_ms(now))
                        .bind(unix_ms(lease_until))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn complete_connection_refresh(
                    &self,
                    id: &str,
                    holder: &str,
                    tokens_sealed: &[u8],
                    key_id: &str,
                    scope: Option<&str>,
                    expires_at: Option<OffsetDateTime>,
                    now: OffsetDateTime,
                ) -> StoreResult<bool> {
                    let done = ::sqlx::query(COMPLETE_REFRESH)
                        .bind(id)
                        .bind(holder)
                        .bind(tokens_sealed)
                        .bind(key_id)
                        .bind(scope)
                        .bind(expires_at.map(utc))
                        .bind(ConnectionState::Active.as_str())
                        .bind(utc(now))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn release_connection_refresh(
                    &self,
                    id: &str,
                    holder: &str,
                    needs_reauthorization: bool,
                    now: OffsetDateTime,
                ) -> StoreResult<bool> {
                    let done = if needs_reauthorization {
                        ::sqlx::query(RELEASE_REFRESH_NEEDS_REAUTHORIZATION)
                            .bind(id)
                            .bind(holder)
                            .bind(ConnectionState::NeedsReauthorization.as_str())
                            .bind(utc(now))
                            .execute(&self.writer)
                            .await
                    } else {
                        ::sqlx::query(RELEASE_REFRESH)
                            .bind(id)
                            .bind(holder)
                            .execute(&self.writer)
                            .await
                    }
                    .map_err(internal)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn external_connections_sealed_with_other_keys(
                    &self,
                    current_key_id: &str,
                    limit: u32,
                ) -> StoreResult<Vec<ExternalConnection>> {
                    let rows: Vec<ExternalConnectionRow> = ::sqlx::query_as(&format!(
                        "SELECT {CONNECTION_COLUMNS} FROM external_connections \
                         WHERE key_id <> $1 ORDER BY id LIMIT $2"
                    ))
                    .bind(current_key_id)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)?;
                    rows.into_iter().map(ExternalConnection::try_from).collect()
                }

                async fn reseal_external_connection(
                    &self,
                    id: &str,
                    expected: &[u8],
                    tokens_sealed: &[u8],
                    key_id: &str,
                ) -> StoreResult<bool> {
                    let done = ::sqlx::query(RESEAL_CONNECTION)
                        .bind(id)
                        .bind(expected)
                        .bind(tokens_sealed)
                        .bind(key_id)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn external_applications_sealed_with_other_keys(
                    &self,
                    current_key_id: &str,
                    limit: u32,
                ) -> StoreResult<Vec<ExternalApplication>> {
                    let rows: Vec<ExternalApplicationRow> = ::sqlx::query_as(&format!(
                        "SELECT {APPLICATION_COLUMNS} FROM external_applications \
                         WHERE client_secret_key_id <> $1 ORDER BY id LIMIT $2"
                    ))
                    .bind(current_key_id)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn reseal_external_client_secret(
                    &self,
                    id: &str,
                    expected: &[u8],
                    client_secret_sealed: &[u8],
                    key_id: &str,
                ) -> StoreResult<bool> {
                    let done = ::sqlx::query(RESEAL_CLIENT_SECRET)
                        .bind(id)
                        .bind(expected)
                        .bind(client_secret_sealed)
                        .bind(key_id)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn create_external_authorization(
                    &self,
                    authorization: &ExternalAuthorization,
                ) -> StoreResult<()> {
                    let inserted = ::sqlx::query(INSERT_AUTHORIZATION)
                        .bind(&authorization.state_digest)
                        .bind(&authorization.external_application_id)
                        .bind(&authorization.user_id)
                        .bind(&authorization.session_id)
                        .bind(&authorization.code_verifier_sealed)
                        .bind(&authorization.return_to)
                        .bind(utc(authorization.created_at))
                        .bind(utc(authorization.expires_at))
                        .execute(&self.writer)
                        .await;
                    match inserted {
                        Ok(_) => Ok(()),
                        Err(e) if is_foreign_key_violation(&e) => Err(self
                            .missing_external_reference(&authorization.external_application_id)
                            .await),
                        Err(e) => Err(conflict_or_internal(e)),
                    }
                }

                async fn take_external_authorization(
                    &self,
                    state_digest: &[u8],
                    now: OffsetDateTime,
                ) -> StoreResult<Option<ExternalAuthorization>> {
                    let row: Option<ExternalAuthorizationRow> = ::sqlx::query_as(&format!(
                        "DELETE FROM external_authorizations WHERE state_digest = $1 \
                         RETURNING {AUTHORIZATION_COLUMNS}"
                    ))
                    .bind(state_digest)
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(internal)?;
                    Ok(row
                        .map(ExternalAuthorization::from)
                        .filter(|authorization| authorization.expires_at > now))
                }

                async fn purge_expired_external_authorizations(
                    &self,
                    now: OffsetDateTime,
                ) -> StoreResult<u64> {
                    // Compared here, not in SQL: SQLite keeps times as text. Pending
                    // authorizations live minutes, so there are few rows to look at.
                    let rows: Vec<(Vec<u8>, OffsetDateTime)> = ::sqlx::query_as(
                        "SELECT state_digest, expires_at FROM external_authorizations",
                    )
                    .fetch_all(&self.writer)
                    .await
                    .map_err(internal)?;
                    let mut purged = 0;
                    for (state_digest, expires_at) in rows {
                        if expires_at > now {
                            continue;
                        }
                        let done = ::sqlx::query(
                            "DELETE FROM external_authorizations WHERE state_digest = $1",
                        )
                        .bind(&state_digest)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                        purged += done.rows_affected();
                    }
                    Ok(purged)
                }

                async fn grant_account_permission(
                    &self,
                    account_id: &str,
                    user_id: &str,
                    permission: &str,
                ) -> StoreResult<()> {
                    ::sqlx::query(GRANT_PERMISSION)
                        .bind(account_id)
                        .bind(user_id)
                        .bind(permission)
                        .execute(&self.writer)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("membership")))?;
                    Ok(())
                }

                async fn revoke_account_permission(
                    &self,
                    account_id: &str,
                    user_id: &str,
                    permission: &str,
                ) -> StoreResult<bool> {
                    let done = ::sqlx::query(REVOKE_PERMISSION)
                        .bind(account_id)
                        .bind(user_id)
                        .bind(permission)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(done.rows_affected() > 0)
                }

                async fn list_account_permissions(
                    &self,
                    account_id: &str,
                    user_id: &str,
                ) -> StoreResult<Vec<String>> {
                    let mut permissions: Vec<String> = ::sqlx::query_scalar(LIST_PERMISSIONS)
                        .bind(account_id)
                        .bind(user_id)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(internal)?;
                    permissions.sort();
                    Ok(permissions)
                }
            }
        };
    };
}

pub(crate) use impl_external_app_store;

//! `ProjectStore` for both backends: projects, databases, connections and the reaper's
//! schedule. Expanded by `sqlite.rs` and `postgres.rs` next to `impl_store!`, whose
//! `begin_write` it uses.
//!
//! The schedule is `reap_at` / `reap_lease_until` in Unix seconds, so "due" is a plain
//! integer comparison in SQL on both databases (timestamps are otherwise compared in
//! Rust, see `store_impl.rs`). Taking a lease is one conditional `UPDATE`: of several nodes
//! racing for a due project, exactly one sees a changed row.

use keyward_core::project::{
    DatabaseConnection, DatabaseStatus, Project, ProjectDatabase, ProjectStatus,
};
use keyward_core::store::StoreResult;
use keyward_core::StoreError;
use time::OffsetDateTime;

use crate::rows::utc;

pub(crate) const PROJECT_COLUMNS: &str = "id, name, account_id, application_id, region, status, \
     claim_digest, expires_at, claimed_at, created_at, updated_at";
pub(crate) const DATABASE_COLUMNS: &str =
    "id, project_id, name, region, database_name, owner_role, status, is_default, created_at";
pub(crate) const CONNECTION_COLUMNS: &str =
    "id, database_id, name, role_name, is_owner, created_at, rotated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ProjectRow {
    id: String,
    name: String,
    account_id: String,
    application_id: Option<String>,
    region: String,
    status: String,
    claim_digest: Option<Vec<u8>>,
    expires_at: Option<OffsetDateTime>,
    claimed_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<ProjectRow> for Project {
    type Error = StoreError;

    fn try_from(r: ProjectRow) -> StoreResult<Self> {
        let status = ProjectStatus::parse(&r.status).ok_or_else(|| {
            StoreError::Internal(format!(
                "unrecognised status {:?} of project {}",
                r.status, r.id
            ))
        })?;
        Ok(Self {
            id: r.id,
            name: r.name,
            account_id: r.account_id,
            application_id: r.application_id,
            region: r.region,
            status,
            claim_digest: r.claim_digest,
            expires_at: r.expires_at.map(utc),
            claimed_at: r.claimed_at.map(utc),
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DatabaseRow {
    id: String,
    project_id: String,
    name: String,
    region: String,
    database_name: String,
    owner_role: String,
    status: String,
    is_default: bool,
    created_at: OffsetDateTime,
}

impl TryFrom<DatabaseRow> for ProjectDatabase {
    type Error = StoreError;

    fn try_from(r: DatabaseRow) -> StoreResult<Self> {
        let status = DatabaseStatus::parse(&r.status).ok_or_else(|| {
            StoreError::Internal(format!(
                "unrecognised status {:?} of database {}",
                r.status, r.id
            ))
        })?;
        Ok(Self {
            id: r.id,
            project_id: r.project_id,
            name: r.name,
            region: r.region,
            database_name: r.database_name,
            owner_role: r.owner_role,
            status,
            is_default: r.is_default,
            created_at: utc(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ConnectionRow {
    id: String,
    database_id: String,
    name: String,
    role_name: String,
    is_owner: bool,
    created_at: OffsetDateTime,
    rotated_at: Option<OffsetDateTime>,
}

impl From<ConnectionRow> for DatabaseConnection {
    fn from(r: ConnectionRow) -> Self {
        Self {
            id: r.id,
            database_id: r.database_id,
            name: r.name,
            role_name: r.role_name,
            is_owner: r.is_owner,
            created_at: utc(r.created_at),
            rotated_at: r.rotated_at.map(utc),
        }
    }
}

macro_rules! impl_project_store {
    (store: $store:ident, db: $db:ty, for_update: $for_update:literal $(,)?) => {
        const _: () = {
            use ::async_trait::async_trait;
            use ::keyward_core::project::{
                DatabaseConnection, DatabaseStatus, Project, ProjectDatabase, ProjectStatus,
                TransferOutcome,
            };
            use ::keyward_core::store::{PageRequest, ProjectStore, StoreResult};
            use ::keyward_core::StoreError;
            use ::time::OffsetDateTime;
            use $crate::error::internal;
            use $crate::projects::{
                ConnectionRow, DatabaseRow, ProjectRow, CONNECTION_COLUMNS, DATABASE_COLUMNS,
                PROJECT_COLUMNS,
            };
            use $crate::rows::utc;

            type Tx = ::sqlx::Transaction<'static, $db>;

            /// Row lock for the rest of the transaction (empty on SQLite, whose
            /// `BEGIN IMMEDIATE` already serialises writers).
            const FOR_UPDATE: &str = $for_update;

            impl $store {
                /// Locks the account a project is about to belong to: an account is not
                /// deleted while it owns projects (`delete_account` checks under the same
                /// lock). Errors: `NotFound("account")`.
                async fn lock_owner_account(tx: &mut Tx, account_id: &str) -> StoreResult<()> {
                    let found: Option<String> = ::sqlx::query_scalar(&format!(
                        "SELECT id FROM accounts WHERE id = $1 {FOR_UPDATE}"
                    ))
                    .bind(account_id)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(internal)?;
                    found.map(|_| ()).ok_or(StoreError::NotFound("account"))
                }

                async fn insert_database(
                    tx: &mut Tx,
                    database: &ProjectDatabase,
                ) -> StoreResult<()> {
                    ::sqlx::query(&format!(
                        "INSERT INTO project_databases ({DATABASE_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ))
                    .bind(&database.id)
                    .bind(&database.project_id)
                    .bind(&database.name)
                    .bind(&database.region)
                    .bind(&database.database_name)
                    .bind(&database.owner_role)
                    .bind(database.status.as_str())
                    .bind(database.is_default)
                    .bind(utc(database.created_at))
                    .execute(&mut **tx)
                    .await
                    .map_err(internal)?;
                    Ok(())
                }

                async fn insert_connection(
                    tx: &mut Tx,
                    connection: &DatabaseConnection,
                ) -> StoreResult<()> {
                    ::sqlx::query(&format!(
                        "INSERT INTO database_connections ({CONNECTION_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    ))
                    .bind(&connection.id)
                    .bind(&connection.database_id)
                    .bind(&connection.name)
                    .bind(&connection.role_name)
                    .bind(connection.is_owner)
                    .bind(utc(connection.created_at))
                    .bind(connection.rotated_at.map(utc))
                    .execute(&mut **tx)
                    .await
                    .map_err(internal)?;
                    Ok(())
                }

                async fn project_by_claim(&self, key: &[u8]) -> StoreResult<Option<Project>> {
                    let row: Option<ProjectRow> = ::sqlx::query_as(&format!(
                        "SELECT {PROJECT_COLUMNS} FROM projects WHERE claim_digest = $1"
                    ))
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    row.map(Project::try_from).transpose()
                }
            }

            #[async_trait]
            impl ProjectStore for $store {
                async fn create_project(
                    &self,
                    project: &Project,
                    database: &ProjectDatabase,
                    connection: &DatabaseConnection,
                    reap_at: OffsetDateTime,
                ) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    Self::lock_owner_account(&mut tx, &project.account_id).await?;
                    ::sqlx::query(&format!(
                        "INSERT INTO projects ({PROJECT_COLUMNS}, reap_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                    ))
                    .bind(&project.id)
                    .bind(&project.name)
                    .bind(&project.account_id)
                    .bind(&project.application_id)
                    .bind(&project.region)
                    .bind(project.status.as_str())
                    .bind(&project.claim_digest)
                    .bind(project.expires_at.map(utc))
                    .bind(project.claimed_at.map(utc))
                    .bind(utc(project.created_at))
                    .bind(utc(project.updated_at))
                    .bind(reap_at.unix_timestamp())
                    .execute(&mut *tx)
                    .await
                    .map_err(internal)?;
                    Self::insert_database(&mut tx, database).await?;
                    Self::insert_connection(&mut tx, connection).await?;
                    tx.commit().await.map_err(internal)
                }

                async fn activate_project(&self, id: &str, now: OffsetDateTime) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let expires_at: Option<Option<OffsetDateTime>> = ::sqlx::query_scalar(
                        "SELECT expires_at FROM projects WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(internal)?;
                    let Some(expires_at) = expires_at else {
                        return Err(StoreError::NotFound("project"));
                    };
                    ::sqlx::query(
                        "UPDATE projects SET status = $2, reap_at = $3, updated_at = $4 \
                         WHERE id = $1 AND status = $5",
                    )
                    .bind(id)
                    .bind(ProjectStatus::Active.as_str())
                    .bind(expires_at.map(|at| at.unix_timestamp()))
                    .bind(utc(now))
                    .bind(ProjectStatus::Provisioning.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(internal)?;
                    ::sqlx::query(
                        "UPDATE project_databases SET status = $2 \
                         WHERE project_id = $1 AND status = $3",
                    )
                    .bind(id)
                    .bind(DatabaseStatus::Ready.as_str())
                    .bind(DatabaseStatus::Provisioning.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(internal)?;
                    tx.commit().await.map_err(internal)
                }

                async fn get_project(&self, id: &str) -> StoreResult<Option<Project>> {
                    let row: Option<ProjectRow> = ::sqlx::query_as(&format!(
                        "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(internal)?;
                    row.map(Project::try_from).transpose()
                }

                async fn find_project_by_claim(
                    &self,
                    claim_digest: &[u8],
                ) -> StoreResult<Option<Project>> {
                    self.project_by_claim(claim_digest).await
                }

                async fn list_projects(
                    &self,
                    account_id: &str,
                    page: &PageRequest,
                ) -> StoreResult<Vec<Project>> {
                    let rows: Vec<ProjectRow> = ::sqlx::query_as(&format!(
                        "SELECT {PROJECT_COLUMNS} FROM projects \
                         WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                    ))
                    .bind(account_id)
                    .bind(page.cursor.as_deref().unwrap_or(""))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)?;
                    rows.into_iter().map(Project::try_from).collect()
                }

                async fn rename_project(
                    &self,
                    id: &str,
                    name: &str,
                    now: OffsetDateTime,
                ) -> StoreResult<()> {
                    let done = ::sqlx::query(
                        "UPDATE projects SET name = $2, updated_at = $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(utc(now))
                    .execute(&self.writer)
                    .await
                    .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("project"));
                    }
                    Ok(())
                }

                async fn transfer_project(
                    &self,
                    id: &str,
                    from_account: &str,
                    to_account: &str,
                    now: OffsetDateTime,
                ) -> StoreResult<TransferOutcome> {
                    let mut tx = self.begin_write().await?;
                    let row: Option<ProjectRow> = ::sqlx::query_as(&format!(
                        "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1 {}",
                        FOR_UPDATE
                    ))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(internal)?;
                    let Some(project) = row.map(Project::try_from).transpose()? else {
                        return Ok(TransferOutcome::NotFound);
                    };
                    if project.account_id != from_account
                        || project.status != ProjectStatus::Active
                    {
                        return Ok(TransferOutcome::NotFound);
                    }
                    let leased: Option<Option<i64>> = ::sqlx::query_scalar(
                        "SELECT reap_lease_until FROM projects WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(internal)?;
                    let lease_live = leased
                        .flatten()
                        .is_some_and(|until| until >= now.unix_timestamp());
                    if project.is_expired(now) || lease_live {
                        return Ok(TransferOutcome::Expired);
                    }
                    Self::lock_owner_account(&mut tx, to_account).await?;
                    ::sqlx::query(
                        "UPDATE projects SET account_id = $2, expires_at = NULL, \
                         claim_digest = NULL, claimed_at = $3, updated_at = $3, reap_at = NULL, \
                         reap_lease_until = NULL WHERE id = $1",
                    )
                    .bind(id)
                    .bind(to_account)
                    .bind(utc(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(internal)?;
                    tx.commit().await.map_err(internal)?;
                    Ok(TransferOutcome::Transferred(Box::new(Project {
                        account_id: to_account.to_owned(),
                        expires_at: None,
                        claim_digest: None,
                        claimed_at: Some(utc(now)),
                        updated_at: utc(now),
                        ..project
                    })))
                }

                async fn mark_project_deleting(
                    &self,
                    id: &str,
                    now: OffsetDateTime,
                ) -> StoreResult<bool> {
                    let done = ::sqlx::query(
                        "UPDATE projects SET status = $2, reap_at = $3, claim_digest = NULL, \
                         updated_at = $4 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(ProjectStatus::Deleting.as_str())
                    .bind(now.unix_timestamp())
                    .bind(utc(now))
                    .execute(&self.writer)
                    .await
                    .map_err(internal)?;
                    Ok(done.rows_affected() > 0)
                }

                async fn due_projects(
                    &self,
                    now: OffsetDateTime,
                    limit: u32,
                ) -> StoreResult<Vec<String>> {
                    ::sqlx::query_scalar(
                        "SELECT id FROM projects WHERE reap_at IS NOT NULL AND reap_at <= $1 \
                         AND (reap_lease_until IS NULL OR reap_lease_until < $1) \
                         ORDER BY reap_at, id LIMIT $2",
                    )
                    .bind(now.unix_timestamp())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)
                }

                async fn lease_project(
                    &self,
                    id: &str,
                    now: OffsetDateTime,
                    lease_until: OffsetDateTime,
                ) -> StoreResult<bool> {
                    let done = ::sqlx::query(
                        "UPDATE projects SET reap_lease_until = $3 \
                         WHERE id = $1 AND reap_at IS NOT NULL AND reap_at <= $2 \
                         AND (reap_lease_until IS NULL OR reap_lease_until < $2)",
                    )
                    .bind(id)
                    .bind(now.unix_timestamp())
                    .bind(lease_until.unix_timestamp())
                    .execute(&self.writer)
                    .await
                    .map_err(internal)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn reap_failed(
                    &self,
                    id: &str,
                    retry_at: OffsetDateTime,
                    error: &str,
                ) -> StoreResult<()> {
                    ::sqlx::query(
                        "UPDATE projects SET reap_lease_until = NULL, reap_at = $2, \
                         reap_attempts = reap_attempts + 1, reap_last_error = $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(retry_at.unix_timestamp())
                    .bind(error)
                    .execute(&self.writer)
                    .await
                    .map_err(internal)?;
                    Ok(())
                }

                async fn reap_state(&self, id: &str) -> StoreResult<Option<(u32, Option<String>)>> {
                    let row: Option<(i32, Option<String>)> = ::sqlx::query_as(
                        "SELECT reap_attempts, reap_last_error FROM projects WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(internal)?;
                    Ok(row.map(|(attempts, error)| (u32::try_from(attempts).unwrap_or(0), error)))
                }

                async fn delete_project(&self, id: &str) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    ::sqlx::query(
                        "DELETE FROM database_connections WHERE database_id IN \
                         (SELECT id FROM project_databases WHERE project_id = $1)",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(internal)?;
                    ::sqlx::query("DELETE FROM project_databases WHERE project_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    ::sqlx::query("DELETE FROM projects WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    tx.commit().await.map_err(internal)
                }

                async fn add_database(
                    &self,
                    database: &ProjectDatabase,
                    connection: &DatabaseConnection,
                ) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let exists: Option<String> = ::sqlx::query_scalar(&format!(
                        "SELECT id FROM projects WHERE id = $1 {}",
                        FOR_UPDATE
                    ))
                    .bind(&database.project_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(internal)?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound("project"));
                    }
                    Self::insert_database(&mut tx, database).await?;
                    Self::insert_connection(&mut tx, connection).await?;
                    tx.commit().await.map_err(internal)
                }

                async fn set_database_status(
                    &self,
                    id: &str,
                    status: DatabaseStatus,
                ) -> StoreResult<()> {
                    let done = ::sqlx::query("UPDATE project_databases SET status = $2 WHERE id = $1")
                        .bind(id)
                        .bind(status.as_str())
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("database"));
                    }
                    Ok(())
                }

                async fn get_database(&self, id: &str) -> StoreResult<Option<ProjectDatabase>> {
                    let row: Option<DatabaseRow> = ::sqlx::query_as(&format!(
                        "SELECT {DATABASE_COLUMNS} FROM project_databases WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(internal)?;
                    row.map(ProjectDatabase::try_from).transpose()
                }

                async fn list_databases(&self, project_id: &str) -> StoreResult<Vec<ProjectDatabase>> {
                    let rows: Vec<DatabaseRow> = ::sqlx::query_as(&format!(
                        "SELECT {DATABASE_COLUMNS} FROM project_databases \
                         WHERE project_id = $1 ORDER BY id"
                    ))
                    .bind(project_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)?;
                    rows.into_iter().map(ProjectDatabase::try_from).collect()
                }

                async fn delete_database(&self, id: &str) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    ::sqlx::query("DELETE FROM database_connections WHERE database_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    ::sqlx::query("DELETE FROM project_databases WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    tx.commit().await.map_err(internal)
                }

                async fn add_connection(&self, connection: &DatabaseConnection) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let exists: Option<String> = ::sqlx::query_scalar(&format!(
                        "SELECT id FROM project_databases WHERE id = $1 {}",
                        FOR_UPDATE
                    ))
                    .bind(&connection.database_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(internal)?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound("database"));
                    }
                    Self::insert_connection(&mut tx, connection).await?;
                    tx.commit().await.map_err(internal)
                }

                async fn get_connection(&self, id: &str) -> StoreResult<Option<DatabaseConnection>> {
                    let row: Option<ConnectionRow> = ::sqlx::query_as(&format!(
                        "SELECT {CONNECTION_COLUMNS} FROM database_connections WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(internal)?;
                    Ok(row.map(Into::into))
                }

                async fn list_connections(
                    &self,
                    database_id: &str,
                ) -> StoreResult<Vec<DatabaseConnection>> {
                    let rows: Vec<ConnectionRow> = ::sqlx::query_as(&format!(
                        "SELECT {CONNECTION_COLUMNS} FROM database_connections \
                         WHERE database_id = $1 ORDER BY id"
                    ))
                    .bind(database_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn connection_rotated(&self, id: &str, now: OffsetDateTime) -> StoreResult<()> {
                    let done = ::sqlx::query(
                        "UPDATE database_connections SET rotated_at = $2 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(utc(now))
                    .execute(&self.writer)
                    .await
                    .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("connection"));
                    }
                    Ok(())
                }

                async fn delete_connection(&self, id: &str) -> StoreResult<()> {
                    ::sqlx::query("DELETE FROM database_connections WHERE id = $1")
                        .bind(id)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_project_store;

//! [`ImportStore`](keyward_core::store::ImportStore): user import jobs, for both backends.
//!
//! `impl_import_store!` is expanded by `sqlite.rs` and `postgres.rs`. A batch is one write
//! transaction. New users go in through the backend's `bulk_insert` hook first
//! (PostgreSQL: one multi-row `INSERT … SELECT FROM UNNEST … ON CONFLICT DO NOTHING`;
//! SQLite: none, its per-row inserts are in-process calls), and every row the bulk insert
//! did not take goes through the per-row path under a savepoint, which names the conflict
//! (`email_taken`, …) for the row error and leaves the rest of the batch intact.

use keyward_core::import::{ImportJob, ImportJobStatus, ImportMode, ImportRowError};
use keyward_core::store::StoreResult;
use keyward_core::StoreError;
use time::OffsetDateTime;

use crate::rows::{utc, UserRow};

pub(crate) const JOB_COLUMNS: &str = "id, status, mode, dry_run, format, source, actor, \
     rows_processed, created, updated, unchanged, skipped, failed, message, heartbeat_at, \
     created_at, updated_at, finished_at";

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: String,
    status: String,
    mode: String,
    dry_run: bool,
    format: String,
    source: String,
    actor: Option<String>,
    rows_processed: i64,
    created: i64,
    updated: i64,
    unchanged: i64,
    skipped: i64,
    failed: i64,
    message: Option<String>,
    heartbeat_at: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    finished_at: Option<OffsetDateTime>,
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

pub(crate) fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl TryFrom<JobRow> for ImportJob {
    type Error = StoreError;

    fn try_from(r: JobRow) -> StoreResult<Self> {
        let bad = |what: &str, value: &str| {
            StoreError::Internal(format!(
                "import job {}: unrecognised {what} {value:?}",
                r.id
            ))
        };
        let status = ImportJobStatus::parse(&r.status).ok_or_else(|| bad("status", &r.status))?;
        let mode = ImportMode::parse(&r.mode).ok_or_else(|| bad("mode", &r.mode))?;
        Ok(Self {
            status,
            mode,
            dry_run: r.dry_run,
            format: r.format,
            source: r.source,
            actor: r.actor,
            rows_processed: count(r.rows_processed),
            counts: keyward_core::import::ImportCounts {
                created: count(r.created),
                updated: count(r.updated),
                unchanged: count(r.unchanged),
                skipped: count(r.skipped),
                failed: count(r.failed),
            },
            message: r.message,
            heartbeat_at: OffsetDateTime::from_unix_timestamp(r.heartbeat_at)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
            finished_at: r.finished_at.map(utc),
            id: r.id,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ErrorRow {
    row_number: i64,
    code: String,
    field: Option<String>,
    message: String,
    external_id: Option<String>,
}

impl From<ErrorRow> for ImportRowError {
    fn from(r: ErrorRow) -> Self {
        Self {
            row: count(r.row_number),
            code: r.code,
            field: r.field,
            message: r.message,
            external_id: r.external_id,
        }
    }
}

/// A stored user with the fingerprint of the digest last imported for them.
#[derive(sqlx::FromRow)]
pub(crate) struct MatchRow {
    #[sqlx(flatten)]
    pub(crate) user: UserRow,
    pub(crate) source_digest_sha256: Option<String>,
}

/// The message of a row refused by a uniqueness rule.
pub(crate) fn conflict_message(code: &str) -> String {
    match code {
        "email_taken" => "another user has this email address",
        "username_taken" => "another user has this username",
        "phone_taken" => "another user has this phone number",
        "external_id_taken" => "another user has this external id in this source",
        "identity_taken" => "another user holds one of these social identities",
        "id_taken" => "another user has this id",
        _ => "conflicts with a stored user",
    }
    .to_owned()
}

macro_rules! impl_import_store {
    (
        store: $store:ident,
        db: $db:ty,
        for_update: $for_update:literal,
        // SQL of a subquery yielding the texts of a JSON array bound at `{}`.
        text_list: $text_list:literal,
        // Inserts what it can of the new users at once; returns, per candidate, whether
        // it was inserted (with its identities).
        bulk_insert: $bulk_insert:path,
        // Whether a failed statement aborts the transaction (PostgreSQL), so that each
        // per-row insert needs a savepoint.
        savepoint_per_row: $savepoint_per_row:expr $(,)?
    ) => {
        const _: () = {
            use ::async_trait::async_trait;
            use ::keyward_core::import::{
                digest_fingerprint, merge, BatchOutcome, ImportBatch, ImportCandidate,
                ImportCounts, ImportJob, ImportJobStatus, ImportMode, ImportRowError,
            };
            use ::keyward_core::model::User;
            use ::keyward_core::store::{ImportStore, PageRequest, StoreResult};
            use ::keyward_core::StoreError;
            use ::sqlx::types::Json;
            use ::std::collections::HashMap;
            use ::time::OffsetDateTime;
            use $crate::error::{conflict_code, internal};
            use $crate::import::{
                conflict_message, signed, unix, ErrorRow, JobRow, MatchRow, JOB_COLUMNS,
            };
            use $crate::rows::utc;
            use $crate::sql;

            type Conn = <$db as ::sqlx::Database>::Connection;
            use ::sqlx::Connection as _;

            fn text_list(param: &str) -> String {
                $text_list.replace("{}", param)
            }

            fn json_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
                ::serde_json::Value::Array(
                    items.map(|s| ::serde_json::Value::String(s.to_owned())).collect(),
                )
                .to_string()
            }

            impl $store {
                /// The stored users the candidates match, with their digest fingerprints
                /// (see `keyward_core::import` for the matching order).
                async fn match_candidates<'c, E>(
                    executor: E,
                    candidates: &[ImportCandidate],
                    lock: bool,
                ) -> StoreResult<Vec<Option<(User, Option<String>)>>>
                where
                    E: ::sqlx::Executor<'c, Database = $db>,
                {
                    let Some(source) = candidates.iter().find_map(|c| c.user.external_source.clone())
                    else {
                        return Ok(vec![None; candidates.len()]);
                    };
                    let external = json_list(candidates.iter().filter_map(|c| c.user.external_id.as_deref()));
                    let ids = json_list(candidates.iter().filter(|c| c.preserved_id).map(|c| c.user.id.as_str()));
                    let emails = json_list(candidates.iter().filter_map(|c| c.user.primary_email.as_deref()));
                    let sql = format!(
                        "SELECT {}, source_digest_sha256 FROM users \
                         WHERE (COALESCE(external_source, '') = $1 AND external_id IN ({})) \
                         OR id IN ({}) OR lower(primary_email) IN (SELECT lower(value) FROM ({}) AS t) {}",
                        sql::USER_COLUMNS,
                        text_list("$2"),
                        text_list("$3"),
                        text_list("$4"),
                        if lock { $for_update } else { "" },
                    );
                    let rows: Vec<MatchRow> = ::sqlx::query_as(&sql)
                        .bind(&source)
                        .bind(external)
                        .bind(ids)
                        .bind(emails)
                        .fetch_all(executor)
                        .await
                        .map_err(internal)?;
                    let mut by_external = HashMap::new();
                    let mut by_id = HashMap::new();
                    let mut by_email = HashMap::new();
                    let mut found = Vec::with_capacity(rows.len());
                    for (i, row) in rows.into_iter().enumerate() {
                        let user = User::try_from(row.user)?;
                        if user.external_source.as_deref() == Some(source.as_str()) {
                            if let Some(ext) = &user.external_id {
                                by_external.insert(ext.clone(), i);
                            }
                        }
                        by_id.insert(user.id.clone(), i);
                        if let Some(email) = &user.primary_email {
                            by_email.insert(email.to_lowercase(), i);
                        }
                        found.push((user, row.source_digest_sha256));
                    }
                    Ok(candidates
                        .iter()
                        .map(|c| {
                            let hit = c
                                .user
                                .external_id
                                .as_ref()
                                .and_then(|e| by_external.get(e))
                                .or_else(|| c.preserved_id.then(|| by_id.get(&c.user.id)).flatten())
                                .or_else(|| {
                                    // A row with an external id matches by it alone: the
                                    // same email on another source's user is a conflict.
                                    if c.user.external_id.is_some() {
                                        return None;
                                    }
                                    c.user
                                        .primary_email
                                        .as_ref()
                                        .and_then(|e| by_email.get(&e.to_lowercase()))
                                });
                            hit.map(|&i| found[i].clone())
                        })
                        .collect())
                }

                /// Inserts one new user with its identities; a uniqueness conflict
                /// undoes the row and is returned as its code. On PostgreSQL a failed
                /// statement aborts the transaction, so the row runs under a savepoint;
                /// SQLite undoes only the failed statement, so it needs none (and saves
                /// two statements per row) and removes a user whose identity conflicts.
                async fn insert_imported_user(
                    conn: &mut Conn,
                    candidate: &ImportCandidate,
                ) -> StoreResult<Result<(), &'static str>> {
                    if $savepoint_per_row {
                        let mut savepoint = conn.begin().await.map_err(internal)?;
                        let result = Self::insert_user_rows(&mut *savepoint, candidate).await?;
                        if result.is_ok() {
                            savepoint.commit().await.map_err(internal)?;
                        } else {
                            savepoint.rollback().await.map_err(internal)?;
                        }
                        Ok(result)
                    } else {
                        let result = Self::insert_user_rows(&mut *conn, candidate).await?;
                        if result.is_err() {
                            ::sqlx::query(sql::DELETE_USER)
                                .bind(&candidate.user.id)
                                .execute(&mut *conn)
                                .await
                                .map_err(internal)?;
                        }
                        Ok(result)
                    }
                }

                async fn insert_user_rows(
                    conn: &mut Conn,
                    candidate: &ImportCandidate,
                ) -> StoreResult<Result<(), &'static str>> {
                    let user = &candidate.user;
                    let inserted = ::sqlx::query(sql::INSERT_IMPORTED_USER)
                        .bind(&user.id)
                        .bind(&user.username)
                        .bind(&user.primary_email)
                        .bind(&user.primary_phone)
                        .bind(&user.name)
                        .bind(&user.avatar)
                        .bind(Json(&user.profile))
                        .bind(Json(&user.custom_data))
                        .bind(Json(&user.identities))
                        .bind(user.status.as_str())
                        .bind(&user.application_id)
                        .bind(&user.external_id)
                        .bind(&user.password_digest)
                        .bind(&user.password_algorithm)
                        .bind(user.last_sign_in_at.map(utc))
                        .bind(utc(user.created_at))
                        .bind(utc(user.updated_at))
                        .bind(&user.external_source)
                        .bind(user.password_digest.as_deref().map(digest_fingerprint))
                        .execute(&mut *conn)
                        .await;
                    if let Err(e) = inserted {
                        // Nothing of this row is stored: no undo needed.
                        return match conflict_code(&e) {
                            Some(code) => Ok(Err(code)),
                            None => Err(internal(e)),
                        };
                    }
                    let pairs = ::keyward_core::validate::identities(&user.identities)
                        .map_err(|e| StoreError::Internal(format!("row {}: {e}", candidate.row)))?;
                    for (provider, provider_user_id) in pairs {
                        let done = ::sqlx::query(sql::INSERT_USER_IDENTITY)
                            .bind(provider)
                            .bind(provider_user_id)
                            .bind(&user.id)
                            .execute(&mut *conn)
                            .await;
                        if let Err(e) = done {
                            return match conflict_code(&e) {
                                Some(code) => Ok(Err(code)),
                                None => Err(internal(e)),
                            };
                        }
                    }
                    Ok(Ok(()))
                }

                /// Writes a merged user under a savepoint; a conflict is returned as its code.
                async fn update_imported_user(
                    conn: &mut Conn,
                    user: &User,
                    fingerprint: Option<&str>,
                ) -> StoreResult<Result<(), &'static str>> {
                    let mut savepoint = conn.begin().await.map_err(internal)?;
                    let result = async {
                        ::sqlx::query(sql::UPDATE_USER)
                            .bind(&user.id)
                            .bind(&user.username)
                            .bind(&user.primary_email)
                            .bind(&user.primary_phone)
                            .bind(&user.name)
                            .bind(&user.avatar)
                            .bind(Json(&user.profile))
                            .bind(Json(&user.custom_data))
                            .bind(Json(&user.identities))
                            .bind(user.status.as_str())
                            .bind(&user.application_id)
                            .bind(&user.external_id)
                            .bind(&user.password_digest)
                            .bind(&user.password_algorithm)
                            .bind(user.last_sign_in_at.map(utc))
                            .bind(utc(user.updated_at))
                            .bind(&user.external_source)
                            .execute(&mut *savepoint)
                            .await?;
                        ::sqlx::query("UPDATE users SET source_digest_sha256 = $2 WHERE id = $1")
                            .bind(&user.id)
                            .bind(fingerprint)
                            .execute(&mut *savepoint)
                            .await?;
                        ::sqlx::query(sql::DELETE_USER_IDENTITIES)
                            .bind(&user.id)
                            .execute(&mut *savepoint)
                            .await?;
                        let pairs = ::keyward_core::validate::identities(&user.identities)
                            .unwrap_or_default();
                        for (provider, provider_user_id) in pairs {
                            ::sqlx::query(sql::INSERT_USER_IDENTITY)
                                .bind(provider)
                                .bind(provider_user_id)
                                .bind(&user.id)
                                .execute(&mut *savepoint)
                                .await?;
                        }
                        Ok::<(), ::sqlx::Error>(())
                    }
                    .await;
                    match result {
                        Ok(()) => {
                            savepoint.commit().await.map_err(internal)?;
                            Ok(Ok(()))
                        }
                        Err(e) => match conflict_code(&e) {
                            Some(code) => {
                                savepoint.rollback().await.map_err(internal)?;
                                Ok(Err(code))
                            }
                            None => Err(internal(e)),
                        },
                    }
                }

                /// The user writes of a batch (inside `tx`, which the caller commits or,
                /// for a dry run, rolls back).
                async fn write_batch_users(
                    conn: &mut Conn,
                    mode: ImportMode,
                    batch: &ImportBatch,
                ) -> StoreResult<BatchOutcome> {
                    let mut outcome = BatchOutcome::default();
                    let matches = Self::match_candidates(&mut *conn, &batch.candidates, true).await?;
                    let mut fresh: Vec<&ImportCandidate> = Vec::new();
                    let fail = |outcome: &mut BatchOutcome, c: &ImportCandidate, code: &str| {
                        outcome.counts.failed += 1;
                        outcome.errors.push(ImportRowError {
                            row: c.row,
                            code: code.to_owned(),
                            field: None,
                            message: conflict_message(code),
                            external_id: c.user.external_id.clone(),
                        });
                    };
                    for (candidate, found) in batch.candidates.iter().zip(matches) {
                        match (found, mode) {
                            (None, _) => fresh.push(candidate),
                            (Some(_), ImportMode::Create) => outcome.counts.skipped += 1,
                            (Some((existing, fingerprint)), ImportMode::Upsert) => {
                                let (merged, changes, fingerprint) =
                                    merge(&existing, fingerprint.as_deref(), &candidate.user);
                                if changes.is_empty() {
                                    outcome.counts.unchanged += 1;
                                    continue;
                                }
                                match Self::update_imported_user(conn, &merged, fingerprint.as_deref())
                                    .await?
                                {
                                    Ok(()) => outcome.counts.updated += 1,
                                    Err(code) => fail(&mut outcome, candidate, code),
                                }
                            }
                        }
                    }
                    let inserted = $bulk_insert(conn, &fresh).await?;
                    for (candidate, done) in fresh.into_iter().zip(inserted) {
                        if done {
                            outcome.counts.created += 1;
                            continue;
                        }
                        match Self::insert_imported_user(conn, candidate).await? {
                            Ok(()) => outcome.counts.created += 1,
                            Err(code) => fail(&mut outcome, candidate, code),
                        }
                    }
                    Ok(outcome)
                }
            }

            #[async_trait]
            impl ImportStore for $store {
                async fn create_import_job(&self, job: &ImportJob) -> StoreResult<()> {
                    ::sqlx::query(&format!(
                        "INSERT INTO import_jobs ({JOB_COLUMNS}) VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
                    ))
                    .bind(&job.id)
                    .bind(job.status.as_str())
                    .bind(job.mode.as_str())
                    .bind(job.dry_run)
                    .bind(&job.format)
                    .bind(&job.source)
                    .bind(&job.actor)
                    .bind(signed(job.rows_processed))
                    .bind(signed(job.counts.created))
                    .bind(signed(job.counts.updated))
                    .bind(signed(job.counts.unchanged))
                    .bind(signed(job.counts.skipped))
                    .bind(signed(job.counts.failed))
                    .bind(&job.message)
                    .bind(unix(job.heartbeat_at))
                    .bind(utc(job.created_at))
                    .bind(utc(job.updated_at))
                    .bind(job.finished_at.map(utc))
                    .execute(&self.writer)
                    .await
                    .map_err(internal)?;
                    Ok(())
                }

                async fn get_import_job(&self, id: &str) -> StoreResult<Option<ImportJob>> {
                    let row: Option<JobRow> = ::sqlx::query_as(&format!(
                        "SELECT {JOB_COLUMNS} FROM import_jobs WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(internal)?;
                    row.map(ImportJob::try_from).transpose()
                }

                async fn list_import_jobs(&self, page: &PageRequest) -> StoreResult<Vec<ImportJob>> {
                    let limit = i64::from(page.limit);
                    let rows: Vec<JobRow> = match &page.cursor {
                        Some(cursor) => ::sqlx::query_as(&format!(
                            "SELECT {JOB_COLUMNS} FROM import_jobs WHERE id < $1 ORDER BY id DESC LIMIT $2"
                        ))
                        .bind(cursor)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await,
                        None => ::sqlx::query_as(&format!(
                            "SELECT {JOB_COLUMNS} FROM import_jobs ORDER BY id DESC LIMIT $1"
                        ))
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await,
                    }
                    .map_err(internal)?;
                    rows.into_iter().map(ImportJob::try_from).collect()
                }

                async fn list_import_errors(
                    &self,
                    job_id: &str,
                    after_row: u64,
                    limit: u32,
                ) -> StoreResult<Vec<ImportRowError>> {
                    let rows: Vec<ErrorRow> = ::sqlx::query_as(
                        "SELECT row_number, code, field, message, external_id FROM import_job_errors \
                         WHERE job_id = $1 AND row_number > $2 ORDER BY row_number LIMIT $3",
                    )
                    .bind(job_id)
                    .bind(signed(after_row))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)?;
                    Ok(rows.into_iter().map(ImportRowError::from).collect())
                }

                async fn apply_import_batch(
                    &self,
                    job_id: &str,
                    batch: &ImportBatch,
                    now: OffsetDateTime,
                ) -> StoreResult<BatchOutcome> {
                    let mut tx = self.begin_write().await?;
                    let job: Option<(String, String, bool)> = ::sqlx::query_as(&format!(
                        "SELECT status, mode, dry_run FROM import_jobs WHERE id = $1 {}",
                        $for_update
                    ))
                    .bind(job_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(internal)?;
                    let (status, mode, dry_run) = job.ok_or(StoreError::NotFound("import_job"))?;
                    if status != ImportJobStatus::Running.as_str() {
                        return Err(StoreError::Conflict("job_not_running"));
                    }
                    let mode = ImportMode::parse(&mode)
                        .ok_or_else(|| StoreError::Internal(format!("import job {job_id}: mode {mode:?}")))?;
                    let mut outcome = if dry_run {
                        // Every rule runs for real, then the writes are undone.
                        let mut inner = tx.begin().await.map_err(internal)?;
                        let outcome = Self::write_batch_users(&mut *inner, mode, batch).await?;
                        inner.rollback().await.map_err(internal)?;
                        outcome
                    } else {
                        Self::write_batch_users(&mut *tx, mode, batch).await?
                    };
                    outcome.counts.failed += batch.errors.len() as u64;
                    let mut errors: Vec<&ImportRowError> =
                        batch.errors.iter().chain(outcome.errors.iter()).collect();
                    errors.sort_by_key(|e| e.row);
                    for error in errors {
                        ::sqlx::query(
                            "INSERT INTO import_job_errors (job_id, row_number, code, field, message, external_id) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, row_number) DO NOTHING",
                        )
                        .bind(job_id)
                        .bind(signed(error.row))
                        .bind(&error.code)
                        .bind(&error.field)
                        .bind(&error.message)
                        .bind(&error.external_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    }
                    let c: &ImportCounts = &outcome.counts;
                    ::sqlx::query(
                        "UPDATE import_jobs SET created = created + $2, updated = updated + $3, \
                         unchanged = unchanged + $4, skipped = skipped + $5, failed = failed + $6, \
                         rows_processed = $7, heartbeat_at = $8, updated_at = $9 WHERE id = $1",
                    )
                    .bind(job_id)
                    .bind(signed(c.created))
                    .bind(signed(c.updated))
                    .bind(signed(c.unchanged))
                    .bind(signed(c.skipped))
                    .bind(signed(c.failed))
                    .bind(signed(batch.last_row))
                    .bind(unix(now))
                    .bind(utc(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(internal)?;
                    tx.commit().await.map_err(internal)?;
                    Ok(outcome)
                }

                async fn finish_import_job(
                    &self,
                    id: &str,
                    status: ImportJobStatus,
                    message: Option<&str>,
                    now: OffsetDateTime,
                ) -> StoreResult<()> {
                    let done = ::sqlx::query(
                        "UPDATE import_jobs SET status = $2, message = $3, finished_at = $4, \
                         updated_at = $4 WHERE id = $1 AND status = 'running'",
                    )
                    .bind(id)
                    .bind(status.as_str())
                    .bind(message)
                    .bind(utc(now))
                    .execute(&self.writer)
                    .await
                    .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("import_job"));
                    }
                    Ok(())
                }

                async fn fail_stale_import_jobs(
                    &self,
                    stale_before: OffsetDateTime,
                    now: OffsetDateTime,
                ) -> StoreResult<u64> {
                    let done = ::sqlx::query(
                        "UPDATE import_jobs SET status = 'failed', \
                         message = 'interrupted: the import stopped before the end of its input; \
                         every row up to rows_processed is stored, re-run the same file to finish', \
                         finished_at = $2, updated_at = $2 \
                         WHERE status = 'running' AND heartbeat_at < $1",
                    )
                    .bind(unix(stale_before))
                    .bind(utc(now))
                    .execute(&self.writer)
                    .await
                    .map_err(internal)?;
                    Ok(done.rows_affected())
                }

                async fn match_import_candidates(
                    &self,
                    candidates: &[ImportCandidate],
                ) -> StoreResult<Vec<Option<(User, Option<String>)>>> {
                    Self::match_candidates(&self.pool, candidates, false).await
                }
            }
        };
    };
}

pub(crate) use impl_import_store;

/// SQLite has no bulk path: each row goes through the per-row insert.
pub(crate) async fn no_bulk_insert(
    _conn: &mut sqlx::SqliteConnection,
    candidates: &[&keyward_core::import::ImportCandidate],
) -> StoreResult<Vec<bool>> {
    Ok(vec![false; candidates.len()])
}

/// One multi-row insert of the users (`ON CONFLICT DO NOTHING`: a conflicting row is left
/// for the per-row path, which names the conflict) and one of their identities; a user
/// whose identity another user holds is taken out again and left for the per-row path.
pub(crate) async fn postgres_bulk_insert(
    conn: &mut sqlx::PgConnection,
    candidates: &[&keyward_core::import::ImportCandidate],
) -> StoreResult<Vec<bool>> {
    use crate::error::internal;
    use keyward_core::import::digest_fingerprint;
    use std::collections::HashSet;

    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let n = candidates.len();
    let mut ids = Vec::with_capacity(n);
    let mut usernames = Vec::with_capacity(n);
    let mut emails = Vec::with_capacity(n);
    let mut phones = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut avatars = Vec::with_capacity(n);
    let mut profiles = Vec::with_capacity(n);
    let mut custom = Vec::with_capacity(n);
    let mut identities = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut applications = Vec::with_capacity(n);
    let mut external_ids = Vec::with_capacity(n);
    let mut digests = Vec::with_capacity(n);
    let mut algorithms = Vec::with_capacity(n);
    let mut last_sign_ins = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut updated = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut fingerprints = Vec::with_capacity(n);
    let mut identity_rows: Vec<(String, String, String)> = Vec::new();
    for c in candidates {
        let u = &c.user;
        ids.push(u.id.clone());
        usernames.push(u.username.clone());
        emails.push(u.primary_email.clone());
        phones.push(u.primary_phone.clone());
        names.push(u.name.clone());
        avatars.push(u.avatar.clone());
        profiles.push(u.profile.to_string());
        custom.push(u.custom_data.to_string());
        identities.push(u.identities.to_string());
        statuses.push(u.status.as_str().to_owned());
        applications.push(u.application_id.clone());
        external_ids.push(u.external_id.clone());
        digests.push(u.password_digest.clone());
        algorithms.push(u.password_algorithm.clone());
        last_sign_ins.push(u.last_sign_in_at.map(utc));
        created.push(utc(u.created_at));
        updated.push(utc(u.updated_at));
        sources.push(u.external_source.clone());
        fingerprints.push(u.password_digest.as_deref().map(digest_fingerprint));
        let pairs = keyward_core::validate::identities(&u.identities)
            .map_err(|e| StoreError::Internal(format!("row {}: {e}", c.row)))?;
        for (provider, provider_user_id) in pairs {
            identity_rows.push((provider, provider_user_id, u.id.clone()));
        }
    }
    let inserted: Vec<String> = sqlx::query_scalar(concat!(
        "INSERT INTO users (",
        "id, username, primary_email, primary_phone, name, avatar, profile, custom_data, \
         identities, status, application_id, external_id, password_digest, \
         password_algorithm, last_sign_in_at, created_at, updated_at, external_source, \
         source_digest_sha256) \
         SELECT id, username, primary_email, primary_phone, name, avatar, profile::jsonb, \
         custom_data::jsonb, identities::jsonb, status, application_id, external_id, \
         password_digest, password_algorithm, last_sign_in_at, created_at, updated_at, \
         external_source, source_digest_sha256 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
         $13::text[], $14::text[], $15::timestamptz[], $16::timestamptz[], $17::timestamptz[], \
         $18::text[], $19::text[]) AS t(id, username, primary_email, primary_phone, name, \
         avatar, profile, custom_data, identities, status, application_id, external_id, \
         password_digest, password_algorithm, last_sign_in_at, created_at, updated_at, \
         external_source, source_digest_sha256) \
         ON CONFLICT DO NOTHING RETURNING id"
    ))
    .bind(&ids)
    .bind(&usernames)
    .bind(&emails)
    .bind(&phones)
    .bind(&names)
    .bind(&avatars)
    .bind(&profiles)
    .bind(&custom)
    .bind(&identities)
    .bind(&statuses)
    .bind(&applications)
    .bind(&external_ids)
    .bind(&digests)
    .bind(&algorithms)
    .bind(&last_sign_ins)
    .bind(&created)
    .bind(&updated)
    .bind(&sources)
    .bind(&fingerprints)
    .fetch_all(&mut *conn)
    .await
    .map_err(internal)?;
    let mut inserted: HashSet<String> = inserted.into_iter().collect();
    identity_rows.retain(|(_, _, user)| inserted.contains(user));
    if !identity_rows.is_empty() {
        let (providers, rest): (Vec<_>, Vec<_>) = identity_rows
            .iter()
            .map(|(p, pid, u)| (p.clone(), (pid.clone(), u.clone())))
            .unzip();
        let (provider_ids, users): (Vec<_>, Vec<_>) = rest.into_iter().unzip();
        // Two rows of the batch may claim the same identity: DO NOTHING keeps the first,
        // so the check is on the whole (provider, id, user) triple.
        let written: Vec<(String, String, String)> = sqlx::query_as(
            "INSERT INTO user_identities (provider, provider_user_id, user_id) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
             ON CONFLICT DO NOTHING RETURNING provider, provider_user_id, user_id",
        )
        .bind(&providers)
        .bind(&provider_ids)
        .bind(&users)
        .fetch_all(&mut *conn)
        .await
        .map_err(internal)?;
        let written: HashSet<(String, String, String)> = written.into_iter().collect();
        let mut losers: Vec<String> = identity_rows
            .iter()
            .filter(|row| !written.contains(*row))
            .map(|(_, _, u)| u.clone())
            .collect();
        losers.sort();
        losers.dedup();
        if !losers.is_empty() {
            // Their identities are held by someone else: undo them; the per-row path
            // reports `identity_taken`.
            sqlx::query("DELETE FROM users WHERE id = ANY($1::text[])")
                .bind(&losers)
                .execute(&mut *conn)
                .await
                .map_err(internal)?;
            for loser in &losers {
                inserted.remove(loser);
            }
        }
    }
    Ok(candidates
        .iter()
        .map(|c| inserted.contains(&c.user.id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::conflict_message;

    #[test]
    fn every_conflict_has_a_message() {
        for code in [
            "email_taken",
            "username_taken",
            "phone_taken",
            "external_id_taken",
            "identity_taken",
            "id_taken",
        ] {
            assert_ne!(conflict_message(code), conflict_message("other"), "{code}");
        }
    }
}

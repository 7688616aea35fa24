//! [`ImportStore`](keyward_core::store::ImportStore): user import jobs, for both backends.
//!
//! `impl_import_store!` is expanded by `sqlite.rs` and `postgres.rs`. A batch is one write
//! transaction. New users go in with multi-row `INSERT … VALUES` statements, 500 rows at a
//! time under a savepoint (a statement round trip per row would cost more than the row);
//! a chunk that breaks a uniqueness rule is rolled back and its rows go through the per-row
//! path (under a savepoint on PostgreSQL), which names each conflict (`email_taken`, …) for
//! the row error and leaves the rest of the batch intact.
//!
//! The lookups of a batch are not prepared once and cached: a plan made while the table was
//! nearly empty (a bulk load starts that way) would scan the whole table for every batch.
//!
//! Two batches of a job may be in their transactions at once (PostgreSQL); the job's row is
//! read unlocked at the start and written last, only if the job's resume point is still the
//! one the batch follows (`ImportBatch::follows_row`), after waiting for the batch before
//! it to end (an advisory lock each batch holds for its transaction).

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
        // The lookup of users whose `{key}` equals `{value}` for one of the texts of the
        // JSON array bound at `{list}`, with `{extra}` conditions and `{lock}`. PostgreSQL
        // spells it as one index probe per value (a LATERAL join): a bulk load starts with
        // an empty table, and planner statistics that still say so would otherwise make it
        // read every row of the source for each batch.
        lookup: $lookup:literal,
        // Writes one chunk of new users and their identities (`Self::insert_chunk`: a
        // multi-row INSERT; PostgreSQL uses COPY, which parses no SQL per row).
        insert_chunk: $insert_chunk:path,
        // Rows per first attempt of `insert_chunk` (SQLite: 19 parameters a row, under its
        // limit of 32,766).
        chunk_rows: $chunk_rows:expr,
        // Whether a failed statement aborts the transaction (PostgreSQL), so that each
        // per-row insert needs a savepoint.
        savepoint_per_row: $savepoint_per_row:expr,
        // A statement each batch's transaction runs first (settings for its duration).
        batch_setup: $batch_setup:expr,
        // Where batches can be written concurrently (PostgreSQL): the statement a batch runs
        // first, taking a lock named by (job id `$1`, its `last_row` `$2`) until it ends, and
        // the statement it runs before moving the job's resume point, waiting for the batch
        // it follows (`$2` = `follows_row`) to end. The database sees the wait, so a
        // deadlock between two batches is detected and ends one of them.
        batch_lock: $batch_lock:expr,
        predecessor_wait: $predecessor_wait:expr $(,)?
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

            fn lookup(list: &str, extra: &str, key: &str, value: &str, lock: &str) -> String {
                $lookup
                    .replace("{cols}", &format!("{}, source_digest_sha256", sql::USER_COLUMNS))
                    .replace("{list}", list)
                    .replace("{extra}", extra)
                    .replace("{key}", key)
                    .replace("{value}", value)
                    .replace("{lock}", lock)
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
                async fn match_candidates(
                    conn: &mut Conn,
                    candidates: &[ImportCandidate],
                    lock: bool,
                ) -> StoreResult<Vec<Option<(User, Option<String>)>>> {
                    let Some(source) = candidates.iter().find_map(|c| c.user.external_source.clone())
                    else {
                        return Ok(vec![None; candidates.len()]);
                    };
                    let lock = if lock { $for_update } else { "" };
                    // One indexed query per key, and only for the rows that use that key
                    // (an OR of the three makes the planners scan the whole table).
                    let external: Vec<&str> = candidates.iter().filter_map(|c| c.user.external_id.as_deref()).collect();
                    let ids: Vec<&str> = candidates.iter().filter(|c| c.preserved_id).map(|c| c.user.id.as_str()).collect();
                    let emails: Vec<&str> = candidates
                        .iter()
                        .filter(|c| c.user.external_id.is_none() && !c.preserved_id)
                        .filter_map(|c| c.user.primary_email.as_deref())
                        .collect();
                    let mut rows: Vec<MatchRow> = Vec::new();
                    if !external.is_empty() {
                        rows.extend(
                            ::sqlx::query_as::<_, MatchRow>(&lookup(
                                "$2",
                                "COALESCE(external_source, '') = $1 AND",
                                "external_id",
                                "value",
                                lock,
                            ))
                            .bind(&source)
                            .bind(json_list(external.into_iter()))
                            .persistent(false)
                            .fetch_all(&mut *conn)
                            .await
                            .map_err(internal)?,
                        );
                    }
                    if !ids.is_empty() {
                        rows.extend(
                            ::sqlx::query_as::<_, MatchRow>(&lookup("$1", "", "id", "value", lock))
                            .bind(json_list(ids.into_iter()))
                            .persistent(false)
                            .fetch_all(&mut *conn)
                            .await
                            .map_err(internal)?,
                        );
                    }
                    if !emails.is_empty() {
                        rows.extend(
                            ::sqlx::query_as::<_, MatchRow>(&lookup(
                                "$1",
                                "",
                                "lower(primary_email)",
                                "lower(value)",
                                lock,
                            ))
                            .bind(json_list(emails.into_iter()))
                            .persistent(false)
                            .fetch_all(&mut *conn)
                            .await
                            .map_err(internal)?,
                        );
                    }
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

                /// Inserts every candidate as a new user, or none of them: a uniqueness
                /// conflict anywhere (a row that matches a stored user, or clashes with
                /// one) undoes them all and answers `false`, for the caller to look for
                /// matches instead. Had there been any match, some insert would have
                /// conflicted: so `true` is exactly what the lookup path would have done.
                async fn insert_all_or_none(
                    conn: &mut Conn,
                    candidates: &[&ImportCandidate],
                ) -> StoreResult<bool> {
                    let mut savepoint = conn.begin().await.map_err(internal)?;
                    for chunk in candidates.chunks($chunk_rows) {
                        match $insert_chunk(&mut *savepoint, chunk).await {
                            Ok(()) => {}
                            Err(e) if conflict_code(&e).is_some() => {
                                savepoint.rollback().await.map_err(internal)?;
                                return Ok(false);
                            }
                            Err(e) => return Err(internal(e)),
                        }
                    }
                    savepoint.commit().await.map_err(internal)?;
                    Ok(true)
                }

                /// Inserts the new users, and their identities, in chunks under a
                /// savepoint each. A chunk that breaks a uniqueness rule is rolled back
                /// and split in two, down to single rows, which are left for the per-row
                /// path to name the conflict: k bad rows among n cost about k·log n extra
                /// statements, and clean chunks (the usual case) pay for no conflict
                /// handling at all (`ON CONFLICT DO NOTHING` costs PostgreSQL a
                /// speculative insertion per index). Returns, per candidate, whether it is in.
                async fn bulk_insert(
                    conn: &mut Conn,
                    candidates: &[&ImportCandidate],
                ) -> StoreResult<Vec<bool>> {
                    let mut done = vec![false; candidates.len()];
                    let mut pending: Vec<(usize, usize)> = (0..candidates.len())
                        .step_by($chunk_rows)
                        .map(|start| (start, (start + $chunk_rows).min(candidates.len())))
                        .rev()
                        .collect();
                    while let Some((start, end)) = pending.pop() {
                        let chunk = &candidates[start..end];
                        let mut savepoint = conn.begin().await.map_err(internal)?;
                        match $insert_chunk(&mut *savepoint, chunk).await {
                            Ok(()) => {
                                savepoint.commit().await.map_err(internal)?;
                                done[start..end].iter_mut().for_each(|d| *d = true);
                            }
                            Err(e) if conflict_code(&e).is_some() => {
                                savepoint.rollback().await.map_err(internal)?;
                                if end - start > 1 {
                                    let middle = start + (end - start) / 2;
                                    pending.push((middle, end));
                                    pending.push((start, middle));
                                }
                            }
                            Err(e) => return Err(internal(e)),
                        }
                    }
                    Ok(done)
                }

                #[allow(dead_code)]
                async fn insert_chunk(
                    conn: &mut Conn,
                    chunk: &[&ImportCandidate],
                ) -> Result<(), ::sqlx::Error> {
                    let mut query = ::sqlx::QueryBuilder::<$db>::new(concat!(
                        "INSERT INTO users (",
                        "id, username, primary_email, primary_phone, name, avatar, profile, \
                         custom_data, identities, status, application_id, external_id, \
                         password_digest, password_algorithm, last_sign_in_at, created_at, \
                         updated_at, external_source, source_digest_sha256) "
                    ));
                    query.push_values(chunk.iter(), |mut row, c| {
                        let u = &c.user;
                        row.push_bind(u.id.clone())
                            .push_bind(u.username.clone())
                            .push_bind(u.primary_email.clone())
                            .push_bind(u.primary_phone.clone())
                            .push_bind(u.name.clone())
                            .push_bind(u.avatar.clone())
                            .push_bind(Json(u.profile.clone()))
                            .push_bind(Json(u.custom_data.clone()))
                            .push_bind(Json(u.identities.clone()))
                            .push_bind(u.status.as_str())
                            .push_bind(u.application_id.clone())
                            .push_bind(u.external_id.clone())
                            .push_bind(u.password_digest.clone())
                            .push_bind(u.password_algorithm.clone())
                            .push_bind(u.last_sign_in_at.map(utc))
                            .push_bind(utc(u.created_at))
                            .push_bind(utc(u.updated_at))
                            .push_bind(u.external_source.clone())
                            .push_bind(u.password_digest.as_deref().map(digest_fingerprint));
                    });
                    query.build().persistent(false).execute(&mut *conn).await?;
                    let mut identity_rows: Vec<(String, String, &str)> = Vec::new();
                    for c in chunk {
                        // Validated when the row was parsed; an invalid shape indexes nothing.
                        let pairs = ::keyward_core::validate::identities(&c.user.identities)
                            .unwrap_or_default();
                        for (provider, provider_user_id) in pairs {
                            identity_rows.push((provider, provider_user_id, c.user.id.as_str()));
                        }
                    }
                    for rows in identity_rows.chunks(($chunk_rows) * 4) {
                        let mut query = ::sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO user_identities (provider, provider_user_id, user_id) ",
                        );
                        query.push_values(rows.iter(), |mut row, (p, pid, u)| {
                            row.push_bind(p.clone()).push_bind(pid.clone()).push_bind(*u);
                        });
                        query.build().persistent(false).execute(&mut *conn).await?;
                    }
                    Ok(())
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
                    let code = if $savepoint_per_row {
                        let mut savepoint = conn.begin().await.map_err(internal)?;
                        match Self::insert_user_rows(&mut *savepoint, candidate).await? {
                            Ok(()) => {
                                savepoint.commit().await.map_err(internal)?;
                                return Ok(Ok(()));
                            }
                            Err((code, _)) => {
                                savepoint.rollback().await.map_err(internal)?;
                                code
                            }
                        }
                    } else {
                        match Self::insert_user_rows(&mut *conn, candidate).await? {
                            Ok(()) => return Ok(Ok(())),
                            // The user row went in and an identity did not: take it out
                            // again. (When the user row itself failed, nothing of this row
                            // is stored, and the id may well be another user's.)
                            Err((code, true)) => {
                                ::sqlx::query(sql::DELETE_USER)
                                    .bind(&candidate.user.id)
                                    .execute(&mut *conn)
                                    .await
                                    .map_err(internal)?;
                                code
                            }
                            Err((code, false)) => code,
                        }
                    };
                    Ok(Err(Self::conflict_reason(conn, &candidate.user).await?.unwrap_or(code)))
                }

                /// The first rule, in a fixed order, that a row breaks against the stored
                /// users. The database names whichever index it checked first, which
                /// differs between SQLite and PostgreSQL; the row error should not.
                async fn conflict_reason(
                    conn: &mut Conn,
                    user: &User,
                ) -> StoreResult<Option<&'static str>> {
                    let code: Option<String> = ::sqlx::query_scalar(
                        "SELECT CASE \
                         WHEN EXISTS (SELECT 1 FROM users WHERE id = CAST($1 AS TEXT)) THEN 'id_taken' \
                         WHEN EXISTS (SELECT 1 FROM users WHERE CAST($2 AS TEXT) IS NOT NULL \
                             AND COALESCE(external_source, '') = COALESCE(CAST($3 AS TEXT), '') \
                             AND external_id = CAST($2 AS TEXT)) THEN 'external_id_taken' \
                         WHEN EXISTS (SELECT 1 FROM users WHERE lower(username) = lower(CAST($4 AS TEXT))) THEN 'username_taken' \
                         WHEN EXISTS (SELECT 1 FROM users WHERE lower(primary_email) = lower(CAST($5 AS TEXT))) THEN 'email_taken' \
                         WHEN EXISTS (SELECT 1 FROM users WHERE primary_phone = CAST($6 AS TEXT)) THEN 'phone_taken' \
                         END",
                    )
                    .bind(&user.id)
                    .bind(&user.external_id)
                    .bind(&user.external_source)
                    .bind(&user.username)
                    .bind(&user.primary_email)
                    .bind(&user.primary_phone)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(internal)?;
                    Ok(match code.as_deref() {
                        Some("id_taken") => Some("id_taken"),
                        Some("external_id_taken") => Some("external_id_taken"),
                        Some("username_taken") => Some("username_taken"),
                        Some("email_taken") => Some("email_taken"),
                        Some("phone_taken") => Some("phone_taken"),
                        _ => None,
                    })
                }

                async fn insert_user_rows(
                    conn: &mut Conn,
                    candidate: &ImportCandidate,
                ) -> StoreResult<Result<(), (&'static str, bool)>> {
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
                            Some(code) => Ok(Err((code, false))),
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
                                Some(code) => Ok(Err((code, true))),
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
                    if batch.expect_new && !batch.candidates.is_empty() {
                        let all: Vec<&ImportCandidate> = batch.candidates.iter().collect();
                        if Self::insert_all_or_none(conn, &all).await? {
                            outcome.counts.created = all.len() as u64;
                            return Ok(outcome);
                        }
                    }
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
                    let inserted = Self::bulk_insert(conn, &fresh).await?;
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
                    let setup: Option<&str> = $batch_setup;
                    if let Some(setup) = setup {
                        ::sqlx::query(setup).execute(&mut *tx).await.map_err(internal)?;
                    }
                    let ordered: Option<(&str, &str)> = $batch_lock.zip($predecessor_wait);
                    if let (Some((claim, _)), Some(_)) = (ordered, batch.follows_row) {
                        ::sqlx::query(claim)
                            .bind(job_id)
                            .bind(signed(batch.last_row))
                            .execute(&mut *tx)
                            .await
                            .map_err(internal)?;
                    }
                    // Not locked here: the job's row is locked by the last statement, so a
                    // batch that follows this one can do its user writes meanwhile.
                    let job: Option<(String, String, bool)> = ::sqlx::query_as(
                        "SELECT status, mode, dry_run FROM import_jobs WHERE id = $1",
                    )
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
                    if let (Some((_, wait)), Some(follows)) = (ordered, batch.follows_row) {
                        ::sqlx::query(wait)
                            .bind(job_id)
                            .bind(signed(follows))
                            .execute(&mut *tx)
                            .await
                            .map_err(internal)?;
                    }
                    let moved = ::sqlx::query(
                        "UPDATE import_jobs SET created = created + $2, updated = updated + $3, \
                         unchanged = unchanged + $4, skipped = skipped + $5, failed = failed + $6, \
                         rows_processed = $7, heartbeat_at = $8, updated_at = $9 \
                         WHERE id = $1 AND status = 'running' \
                         AND ($10 IS NULL OR rows_processed = $10)",
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
                    .bind(batch.follows_row.map(signed))
                    .execute(&mut *tx)
                    .await
                    .map_err(internal)?;
                    if moved.rows_affected() == 0 {
                        let status: Option<String> =
                            ::sqlx::query_scalar("SELECT status FROM import_jobs WHERE id = $1")
                                .bind(job_id)
                                .fetch_optional(&mut *tx)
                                .await
                                .map_err(internal)?;
                        // Dropping `tx` rolls the batch back.
                        return Err(match status.as_deref() {
                            None => StoreError::NotFound("import_job"),
                            Some("running") => StoreError::Conflict("import_batch_out_of_order"),
                            Some(_) => StoreError::Conflict("job_not_running"),
                        });
                    }
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
                    let mut conn = self.pool.acquire().await.map_err(internal)?;
                    Self::match_candidates(&mut conn, candidates, false).await
                }
            }
        };
    };
}

pub(crate) use impl_import_store;

/// Rows in PostgreSQL's COPY text format (tab-separated fields, `\N` for NULL, backslash
/// escapes for the separators), encoded straight into one buffer: an import writes a
/// hundred thousand fields a second, so no field gets a `String` of its own.
struct CopyRows {
    buf: Vec<u8>,
    fields_in_row: usize,
    /// Reused for JSON values, which are escaped once whole rather than token by token.
    scratch: Vec<u8>,
}

impl CopyRows {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            fields_in_row: 0,
            scratch: Vec::new(),
        }
    }

    fn start_field(&mut self) {
        if self.fields_in_row > 0 {
            self.buf.push(b'\t');
        }
        self.fields_in_row += 1;
    }

    fn text(&mut self, value: Option<&str>) {
        self.start_field();
        match value {
            None => self.buf.extend_from_slice(b"\\N"),
            Some(v) => escape_copy_text(&mut self.buf, v.as_bytes()),
        }
    }

    /// A JSON value (compact JSON has no raw tab or newline, but its own backslashes need
    /// escaping).
    fn json(&mut self, value: &serde_json::Value) -> Result<(), sqlx::Error> {
        self.start_field();
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, value)
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        escape_copy_text(&mut self.buf, &self.scratch);
        Ok(())
    }

    /// RFC 3339 in UTC, which `timestamptz` input reads.
    fn timestamp(&mut self, at: Option<OffsetDateTime>) -> Result<(), sqlx::Error> {
        match at {
            None => {
                self.text(None);
                Ok(())
            }
            Some(at) => {
                self.start_field();
                utc(at)
                    .format_into(
                        &mut self.buf,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map(|_| ())
                    .map_err(|e| sqlx::Error::Encode(Box::new(e)))
            }
        }
    }

    fn end_row(&mut self) {
        self.buf.push(b'\n');
        self.fields_in_row = 0;
    }
}

/// Appends `bytes` with COPY's text-format escapes; runs without a special byte are copied
/// whole.
fn escape_copy_text(out: &mut Vec<u8>, bytes: &[u8]) {
    // Most fields have nothing to escape: one pass without early exit (it vectorizes),
    // then a single copy.
    let special = |b: u8| matches!(b, b'\\' | b'\t' | b'\n' | b'\r');
    if !bytes.iter().fold(false, |any, &b| any | special(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// One chunk of new users and their identities through `COPY … FROM STDIN`: PostgreSQL
/// parses no SQL per row (a 500-row `INSERT … VALUES` with 9,500 parameters costs it more
/// than the rows). A unique violation fails the whole COPY, like the INSERT it replaces.
pub(crate) async fn postgres_copy_chunk(
    conn: &mut sqlx::PgConnection,
    chunk: &[&keyward_core::import::ImportCandidate],
) -> Result<(), sqlx::Error> {
    use keyward_core::import::digest_fingerprint;
    let mut users = CopyRows::with_capacity(chunk.len() * 512);
    let mut identities = CopyRows::with_capacity(chunk.len() * 64);
    for c in chunk {
        let u = &c.user;
        users.text(Some(&u.id));
        users.text(u.username.as_deref());
        users.text(u.primary_email.as_deref());
        users.text(u.primary_phone.as_deref());
        users.text(u.name.as_deref());
        users.text(u.avatar.as_deref());
        users.json(&u.profile)?;
        users.json(&u.custom_data)?;
        users.json(&u.identities)?;
        users.text(Some(u.status.as_str()));
        users.text(u.application_id.as_deref());
        users.text(u.external_id.as_deref());
        users.text(u.password_digest.as_deref());
        users.text(u.password_algorithm.as_deref());
        users.timestamp(u.last_sign_in_at)?;
        users.timestamp(Some(u.created_at))?;
        users.timestamp(Some(u.updated_at))?;
        users.text(u.external_source.as_deref());
        users.text(
            u.password_digest
                .as_deref()
                .map(digest_fingerprint)
                .as_deref(),
        );
        users.end_row();
        for (provider, provider_user_id) in
            keyward_core::validate::identities(&u.identities).unwrap_or_default()
        {
            identities.text(Some(&provider));
            identities.text(Some(&provider_user_id));
            identities.text(Some(&u.id));
            identities.end_row();
        }
    }
    let mut copy = conn
        .copy_in_raw(
            "COPY users (id, username, primary_email, primary_phone, name, avatar, profile, \
             custom_data, identities, status, application_id, external_id, password_digest, \
             password_algorithm, last_sign_in_at, created_at, updated_at, external_source, \
             source_digest_sha256) FROM STDIN",
        )
        .await?;
    copy.send(users.buf).await?;
    copy.finish().await?;
    if !identities.buf.is_empty() {
        let mut copy = conn
            .copy_in_raw("COPY user_identities (provider, provider_user_id, user_id) FROM STDIN")
            .await?;
        copy.send(identities.buf).await?;
        copy.finish().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{conflict_message, CopyRows};

    #[test]
    fn copy_rows_escape_separators_and_nulls() {
        let mut rows = CopyRows::with_capacity(0);
        rows.text(Some("a\tb"));
        rows.text(None);
        rows.text(Some("back\\slash\nnew\r"));
        rows.end_row();
        rows.text(Some("plain"));
        rows.json(&serde_json::json!({"k": "tab\there \"q\""}))
            .unwrap();
        rows.end_row();
        assert_eq!(
            String::from_utf8(rows.buf).unwrap(),
            "a\\tb\t\\N\tback\\\\slash\\nnew\\r\n\
             plain\t{\"k\":\"tab\\\\there \\\\\"q\\\\\"\"}\n"
        );
    }

    #[test]
    fn copy_timestamps_are_rfc3339_utc() {
        let mut rows = CopyRows::with_capacity(0);
        let at = time::macros::datetime!(2024-05-06 07:08:09.123456 +02:00);
        rows.timestamp(Some(at)).unwrap();
        rows.timestamp(None).unwrap();
        rows.end_row();
        assert_eq!(
            String::from_utf8(rows.buf).unwrap(),
            "2024-05-06T05:08:09.123456Z\t\\N\n"
        );
    }

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

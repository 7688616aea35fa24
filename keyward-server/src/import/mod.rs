//! User import: a source stream (Keyward NDJSON, Logto, Auth0, Firebase, CSV) becomes
//! batches of users in the store, tracked as an import job.
//!
//! The source is parsed on a blocking thread by `keyward-import` (its parsers are
//! synchronous readers) and handed over in batches through a bounded channel, so memory
//! stays flat however large the input: the reader waits while the store is busy. Each batch
//! is one store transaction that also records its row errors and moves the job's resume
//! point (`ImportStore::apply_import_batch`); a crash loses at most the batches in flight
//! (two, see `BatchWriter`), which commit in file order, and a later look at the job marks
//! it failed once its heartbeat is stale.

pub mod api;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use keyward_core::id::{new_id, IdKind};
use keyward_core::import::{
    BatchOutcome, ImportBatch, ImportCandidate, ImportCounts, ImportJob, ImportJobStatus,
    ImportMode, ImportRowError,
};
use keyward_core::model::User;
use keyward_core::store::{Store, StoreResult};
use keyward_core::UserStatus;
use keyward_import::{ImportRecord, RowError, SourceFormat};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

/// Rows per store transaction: large enough that the per-transaction costs (lookups,
/// commit, the job's row) are spread thin, small enough that a crash loses little and a
/// batch holds its locks briefly.
pub const BATCH_ROWS: usize = 5000;

/// A running job whose heartbeat is older than this has lost its worker.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// While waiting this long for input, the worker renews the heartbeat anyway (a slow
/// upload is not a dead worker).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub format: SourceFormat,
    /// `keyward`, `logto`, `auth0`, `firebase` or `csv`, as recorded on the job.
    pub format_name: String,
    /// The source system's name; users get it as `external_source`.
    pub source: String,
    pub mode: ImportMode,
    pub dry_run: bool,
    /// Who started it, for the job record.
    pub actor: Option<String>,
}

/// Creates the job record (status `running`).
pub async fn create_job(store: &dyn Store, options: &ImportOptions) -> StoreResult<ImportJob> {
    let now = OffsetDateTime::now_utc();
    let job = ImportJob {
        id: new_id(IdKind::ImportJob),
        status: ImportJobStatus::Running,
        mode: options.mode,
        dry_run: options.dry_run,
        format: options.format_name.clone(),
        source: options.source.clone(),
        actor: options.actor.clone(),
        rows_processed: 0,
        counts: ImportCounts::default(),
        message: None,
        heartbeat_at: now,
        created_at: now,
        updated_at: now,
        finished_at: None,
    };
    store.create_import_job(&job).await?;
    Ok(job)
}

/// Progress of a running import: rows whose outcome is committed, and the counts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub rows: u64,
    pub counts: ImportCounts,
}

/// Reads `reader` to the end (or to a fatal source error) into the job, then finishes the
/// job and returns its final record. Store errors end the job as failed and are returned.
pub async fn run_job<R>(
    store: Arc<dyn Store>,
    job_id: &str,
    reader: R,
    options: &ImportOptions,
    progress: Option<watch::Sender<Progress>>,
) -> StoreResult<ImportJob>
where
    R: Read + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<ImportBatch>(2);
    let format = options.format.clone();
    let source = options.source.clone();
    let parser =
        tokio::task::spawn_blocking(move || parse_into_batches(reader, &format, &source, &tx));

    let mut writer = BatchWriter {
        store: store.clone(),
        job_id: Arc::from(job_id),
        total: Progress::default(),
        resume_point: 0,
        in_flight: None,
        progress,
        expect_new: true,
    };
    let mut store_error = None;
    loop {
        let next = match tokio::time::timeout(HEARTBEAT_EVERY, rx.recv()).await {
            Ok(Some(batch)) => Some(batch),
            Ok(None) => break,
            // Nothing arrived for a while: an empty batch renews the heartbeat.
            Err(_) => None,
        };
        let submitted = match next {
            Some(batch) => writer.submit(batch).await,
            None => writer.heartbeat().await,
        };
        if let Err(e) = submitted {
            store_error = Some(e);
            break;
        }
    }
    if store_error.is_none() {
        store_error = writer.settle().await.err();
    }
    let total = writer.total;
    // Dropping the receiver stops the parser at its next batch.
    drop(rx);
    let parsed = parser.await;
    let now = OffsetDateTime::now_utc();
    let (status, message) = match (&store_error, parsed) {
        (Some(e), _) => (ImportJobStatus::Failed, Some(format!("stopped: {e}"))),
        (None, Err(join)) => (
            ImportJobStatus::Failed,
            Some(format!("the source reader stopped: {join}")),
        ),
        (None, Ok(Err(source_error))) => (
            ImportJobStatus::Failed,
            Some(format!(
                "the input could not be read further: {source_error}"
            )),
        ),
        (None, Ok(Ok(_rows))) if total.counts.failed > 0 => {
            (ImportJobStatus::CompletedWithErrors, None)
        }
        (None, Ok(Ok(_rows))) => (ImportJobStatus::Succeeded, None),
    };
    // The job may already have been failed by a stale-job sweep: then it stays failed.
    let _ = store
        .finish_import_job(job_id, status, message.as_deref(), now)
        .await;
    if let Some(e) = store_error {
        return Err(e);
    }
    store
        .get_import_job(job_id)
        .await?
        .ok_or(keyward_core::StoreError::NotFound("import_job"))
}

/// Writes a job's batches, two at a time where that changes nothing: while one batch is
/// in its transaction the next one is written too (on PostgreSQL each has its own
/// connection and backend, so both cores work), unless the two share a unique value
/// (`ImportBatch::unique_keys`), in which case the second starts after the first.
///
/// Each batch names the resume point it follows (`follows_row`), so the store commits
/// them in file order and never commits one whose predecessor failed. A batch that failed
/// while another was written beside it (it reached the job's row first, or the two
/// deadlocked) is written once more, alone, after every batch before it is settled: only a
/// failure on its own ends the job.
struct BatchWriter {
    store: Arc<dyn Store>,
    job_id: Arc<str>,
    total: Progress,
    /// The `last_row` of the latest batch submitted: the resume point the next one follows.
    resume_point: u64,
    in_flight: Option<InFlight>,
    progress: Option<watch::Sender<Progress>>,
    /// Whether the batches settled so far created every row they carried: then the next
    /// is written without looking for stored matches first (`ImportBatch::expect_new`).
    /// A re-run or a sync turns it off at its first batch.
    expect_new: bool,
}

type BatchTask = tokio::task::JoinHandle<(ImportBatch, StoreResult<BatchOutcome>)>;

struct InFlight {
    keys: keyward_core::import::UniqueKeys,
    task: BatchTask,
    /// Started while the batch before it was still in flight.
    beside_another: bool,
}

impl BatchWriter {
    fn spawn(&self, batch: ImportBatch) -> BatchTask {
        let store = self.store.clone();
        let job_id = self.job_id.clone();
        tokio::spawn(async move {
            let result = store
                .apply_import_batch(&job_id, &batch, OffsetDateTime::now_utc())
                .await;
            (batch, result)
        })
    }

    async fn apply_alone(&mut self, batch: &ImportBatch) -> StoreResult<()> {
        let outcome = self
            .store
            .apply_import_batch(&self.job_id, batch, OffsetDateTime::now_utc())
            .await?;
        self.record(batch, &outcome);
        Ok(())
    }

    fn record(&mut self, batch: &ImportBatch, outcome: &BatchOutcome) {
        self.expect_new = outcome.counts.created == batch.candidates.len() as u64;
        self.total.rows = self.total.rows.max(batch.last_row);
        self.total.counts.add(&outcome.counts);
        if let Some(progress) = &self.progress {
            progress.send_replace(self.total);
        }
    }

    /// Starts writing `batch` and returns once at most one batch is in flight.
    async fn submit(&mut self, mut batch: ImportBatch) -> StoreResult<()> {
        batch.follows_row = Some(self.resume_point);
        batch.expect_new = self.expect_new;
        self.resume_point = self.resume_point.max(batch.last_row);
        let keys = batch.unique_keys();
        if self
            .in_flight
            .as_ref()
            .is_some_and(|older| !older.keys.is_disjoint(&keys))
        {
            self.settle().await?;
        }
        let younger = InFlight {
            keys,
            task: self.spawn(batch),
            beside_another: self.in_flight.is_some(),
        };
        let Some(older) = self.in_flight.replace(younger) else {
            return Ok(());
        };
        let (older_batch, older_result) = join(older.task).await?;
        match older_result {
            Ok(outcome) => {
                self.record(&older_batch, &outcome);
                Ok(())
            }
            Err(e) => {
                tracing::info!(job = %self.job_id, last_row = older_batch.last_row, error = %e,
                    "import batch failed beside another; writing it again alone");
                // The younger batch cannot commit after a failed one: let it give up,
                // then write both again, alone and in order.
                let younger = match self.in_flight.take() {
                    Some(younger) => Some(join(younger.task).await?),
                    None => None,
                };
                self.apply_alone(&older_batch).await?;
                match younger {
                    Some((batch, Ok(outcome))) => self.record(&batch, &outcome),
                    Some((batch, Err(_))) => self.apply_alone(&batch).await?,
                    None => {}
                }
                Ok(())
            }
        }
    }

    /// Waits for the batch in flight, if any.
    async fn settle(&mut self) -> StoreResult<()> {
        let Some(current) = self.in_flight.take() else {
            return Ok(());
        };
        let (batch, result) = join(current.task).await?;
        match result {
            Ok(outcome) => {
                self.record(&batch, &outcome);
                Ok(())
            }
            // It may have lost to the batch written beside it, which is settled now.
            Err(e) if current.beside_another => {
                tracing::info!(job = %self.job_id, last_row = batch.last_row, error = %e,
                    "import batch failed beside another; writing it again alone");
                self.apply_alone(&batch).await
            }
            Err(e) => Err(e),
        }
    }

    /// Renews the job's heartbeat with an empty batch, after the batch in flight.
    async fn heartbeat(&mut self) -> StoreResult<()> {
        self.settle().await?;
        let batch = ImportBatch {
            last_row: self.resume_point,
            follows_row: Some(self.resume_point),
            ..Default::default()
        };
        self.apply_alone(&batch).await
    }
}

async fn join(task: BatchTask) -> StoreResult<(ImportBatch, StoreResult<BatchOutcome>)> {
    task.await
        .map_err(|e| keyward_core::StoreError::Internal(format!("import batch task: {e}")))
}

/// The blocking half: parses, converts and batches rows; stops when the worker is gone.
pub fn parse_into_batches<R: Read>(
    reader: R,
    format: &SourceFormat,
    source: &str,
    tx: &mpsc::Sender<ImportBatch>,
) -> Result<u64, keyward_import::SourceError> {
    let now = OffsetDateTime::now_utc();
    let mut batch = ImportBatch::default();
    let mut closed = false;
    let mut sink = |item: Result<ImportRecord, RowError>| {
        let row = match item {
            Ok(record) => {
                let row = record.row;
                match candidate(record, source, now) {
                    Ok(c) => batch.candidates.push(c),
                    Err(e) => batch.errors.push(e),
                }
                row
            }
            Err(e) => {
                let row = e.row;
                batch.errors.push(row_error(e));
                row
            }
        };
        batch.last_row = batch.last_row.max(row);
        if batch.candidates.len() + batch.errors.len() >= BATCH_ROWS {
            let full = std::mem::take(&mut batch);
            if tx.blocking_send(full).is_err() {
                closed = true;
                return std::ops::ControlFlow::Break(());
            }
        }
        std::ops::ControlFlow::Continue(())
    };
    let result = keyward_import::read_records(reader, format, &mut sink);
    if !closed && (!batch.candidates.is_empty() || !batch.errors.is_empty()) {
        let _ = tx.blocking_send(batch);
    }
    result
}

fn row_error(e: RowError) -> ImportRowError {
    ImportRowError {
        row: e.row,
        code: e.code,
        field: e.field,
        message: e.message,
        external_id: e.external_id,
    }
}

/// A parsed row as the user it describes: its preserved id or a new one, the job's source
/// as `external_source`, `created_at` from the source when it has one.
pub fn candidate(
    record: ImportRecord,
    source: &str,
    now: OffsetDateTime,
) -> Result<ImportCandidate, ImportRowError> {
    if let Some(id) = &record.id {
        // Ours (`usr_…`) or a foreign id that cannot be mistaken for one of ours.
        if !keyward_core::id::is_valid_id(IdKind::User, id) {
            return Err(ImportRowError {
                row: record.row,
                code: keyward_import::codes::INVALID_FIELD.to_owned(),
                field: Some("id".into()),
                message: "a preserved id is 1-128 of A-Z a-z 0-9 _ - and does not start \
                          with a Keyward prefix other than a valid usr_ id"
                    .into(),
                external_id: record.external_id,
            });
        }
    }
    let preserved_id = record.id.is_some();
    let identities: Map<String, Value> = record
        .identities
        .into_iter()
        .map(|(provider, identity)| {
            let mut entry = Map::new();
            entry.insert("user_id".into(), Value::String(identity.user_id));
            if !identity.details.is_null() {
                entry.insert("details".into(), identity.details);
            }
            (provider, Value::Object(entry))
        })
        .collect();
    Ok(ImportCandidate {
        row: record.row,
        preserved_id,
        user: User {
            id: record.id.unwrap_or_else(|| new_id(IdKind::User)),
            username: record.username,
            primary_email: record.primary_email,
            primary_phone: record.primary_phone,
            name: record.name,
            avatar: record.avatar,
            profile: record.profile,
            custom_data: record.custom_data,
            identities: Value::Object(identities),
            status: if record.suspended {
                UserStatus::Suspended
            } else {
                UserStatus::Active
            },
            application_id: None,
            external_id: record.external_id,
            external_source: Some(source.to_owned()),
            password_digest: record.password_digest,
            password_algorithm: record.password_algorithm,
            last_sign_in_at: record.last_sign_in_at,
            created_at: record.created_at.unwrap_or(now),
            updated_at: now,
        },
    })
}

/// Parses the `format` option (with its extra settings) the API and CLI take.
pub fn source_format(
    name: &str,
    firebase_hash_config: Option<&str>,
    csv_map: Option<&str>,
) -> Result<SourceFormat, String> {
    match name {
        "keyward" => Ok(SourceFormat::Keyward),
        "logto" => Ok(SourceFormat::Logto),
        "auth0" => Ok(SourceFormat::Auth0),
        "firebase" => {
            let config = firebase_hash_config.ok_or(
                "the firebase format needs the project's password hash parameters (hash config)",
            )?;
            keyward_import::parse_firebase_hash_config(config)
                .map(SourceFormat::Firebase)
                .map_err(|e| format!("invalid firebase hash config: {e}"))
        }
        "csv" => {
            let map = csv_map.ok_or("the csv format needs a column mapping")?;
            keyward_import::parse_csv_mapping(map)
                .map(SourceFormat::Csv)
                .map_err(|e| format!("invalid csv mapping: {e}"))
        }
        other => Err(format!(
            "unknown format {other:?}: expected keyward, logto, auth0, firebase or csv"
        )),
    }
}

/// Marks failed the running jobs whose worker stopped beating.
pub async fn sweep_stale_jobs(store: &dyn Store) -> StoreResult<u64> {
    let now = OffsetDateTime::now_utc();
    let stale_before = now - STALE_AFTER;
    store.fail_stale_import_jobs(stale_before, now).await
}

//! A `keyward import` killed (SIGKILL) in the middle leaves the store consistent: every
//! stored user is whole (with its identity index), the job's counts match what is stored,
//! the job is failed as interrupted once its heartbeat is stale, and re-running the same
//! file finishes the import with no duplicate. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyward_core::import::ImportJobStatus;
use keyward_core::store::PageRequest;
use time::OffsetDateTime;

const ROWS: u64 = 200_000;

fn write_export(path: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..ROWS {
        writeln!(
            out,
            r#"{{"external_id":"c{i}","username":"crash{i}","primary_email":"crash{i}@example.com","password_digest":"$2b$04$abcdefghijklmnopqrstuuJ0iYO3d8vMOhAqNThd3R6Zp1jWa9a1e","identities":{{"github":{{"user_id":"gh{i}","details":{{"n":{i}}}}}}}}}"#
        )
        .unwrap();
    }
}

fn keyward(database_url: &str, data_dir: &Path, file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args([
            "import",
            file.to_str().unwrap(),
            "--source",
            "crash",
            "--quiet",
        ])
        .env("KEYWARD_DATABASE_URL", database_url)
        .env("KEYWARD_DATA_DIR", data_dir)
        .env(
            "KEYWARD_MASTER_SECRET",
            "crash-test-master-secret-0123456789",
        )
        .env_remove("KEYWARD_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

async fn count(database_url: &str, sql: &str) -> i64 {
    if database_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }
}

async fn killed_import_is_consistent_and_resumable(database_url: String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.ndjson");
    write_export(&file);
    let store = keyward_store::connect(&database_url, 2).await.unwrap();
    store.migrate().await.unwrap();

    let mut child = keyward(&database_url, dir.path(), &file).spawn().unwrap();
    // Wait until some batches are committed, then kill it mid-stream.
    let started = Instant::now();
    let job = loop {
        let jobs = store
            .list_import_jobs(&PageRequest {
                cursor: None,
                limit: 1,
            })
            .await
            .unwrap();
        if let Some(job) = jobs.into_iter().next() {
            if job.rows_processed >= 5_000 {
                break job;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the import never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());

    let job = store.get_import_job(&job.id).await.unwrap().unwrap();
    assert_eq!(
        job.status,
        ImportJobStatus::Running,
        "killed before the end"
    );
    assert!(job.rows_processed < ROWS, "{job:?}");
    // Every committed batch is whole: users, their identity index and the job's counts.
    let users = count(
        &database_url,
        "SELECT COUNT(*) FROM users WHERE external_source = 'crash'",
    )
    .await;
    let identities = count(
        &database_url,
        "SELECT COUNT(*) FROM user_identities i JOIN users u ON u.id = i.user_id \
         WHERE u.external_source = 'crash'",
    )
    .await;
    assert_eq!(users as u64, job.counts.created, "{job:?}");
    assert_eq!(identities, users, "no user without its identity index");
    assert_eq!(job.counts.created, job.rows_processed, "{job:?}");

    // Once its heartbeat is stale, the job is failed as interrupted.
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    assert_eq!(
        store
            .fail_stale_import_jobs(later - time::Duration::minutes(10), later)
            .await
            .unwrap(),
        1
    );
    let failed = store.get_import_job(&job.id).await.unwrap().unwrap();
    assert_eq!(failed.status, ImportJobStatus::Failed);
    assert!(failed.message.unwrap().contains("interrupted"));

    // Re-running the same file finishes it, without duplicates.
    let output = keyward(&database_url, dir.path(), &file).output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("succeeded"), "{summary}");
    let users = count(
        &database_url,
        "SELECT COUNT(*) FROM users WHERE external_source = 'crash'",
    )
    .await;
    let distinct = count(
        &database_url,
        "SELECT COUNT(DISTINCT external_id) FROM users WHERE external_source = 'crash'",
    )
    .await;
    let identities = count(&database_url, "SELECT COUNT(*) FROM user_identities").await;
    assert_eq!(users as u64, ROWS);
    assert_eq!(distinct as u64, ROWS);
    assert_eq!(identities as u64, ROWS);
    let rerun = store
        .list_import_jobs(&PageRequest {
            cursor: None,
            limit: 1,
        })
        .await
        .unwrap()
        .remove(0);
    assert_eq!(rerun.counts.skipped, job.counts.created);
    assert_eq!(rerun.counts.created, ROWS - job.counts.created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_import_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = keyward_store::test_support::sqlite_url_in(dir.path());
    killed_import_is_consistent_and_resumable(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_import_postgres() {
    let url = keyward_store::test_support::fresh_postgres_url()
        .await
        .unwrap();
    killed_import_is_consistent_and_resumable(url.clone()).await;
    keyward_store::test_support::drop_postgres_database(&url)
        .await
        .unwrap();
}

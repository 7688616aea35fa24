//! The `keyward import` and `keyward sync` commands, run as the real binary.
//!
//! - A `keyward import` killed (SIGKILL) in the middle leaves the store consistent: every
//!   stored user is whole (with its identity index), the job's counts match what is
//!   stored, the job is failed as interrupted once its heartbeat is stale, and re-running
//!   the same file finishes the import with no duplicate. On SQLite and PostgreSQL.
//! - `keyward sync` reports what differs and changes nothing until `--apply`.
//! - `keyward import --server` streams the file to a running `keyward serve`; failed rows
//!   give exit code 2.

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
    keyward_with(
        database_url,
        data_dir,
        &[
            "import",
            file.to_str().unwrap(),
            "--source",
            "crash",
            "--quiet",
        ],
    )
}

fn keyward_with(database_url: &str, data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args(args)
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

fn write_lines(path: &Path, lines: &[serde_json::Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

async fn sync_reports_then_applies(database_url: String) {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("v1.ndjson");
    let v2 = dir.path().join("v2.ndjson");
    let report = dir.path().join("report.json");
    let ada = serde_json::json!({ "external_id": "1", "username": "ada", "name": "Ada", "password_digest": "$2b$04$abcdefghijklmnopqrstuuJ0iYO3d8vMOhAqNThd3R6Zp1jWa9a1e" });
    let bob = serde_json::json!({ "external_id": "2", "username": "bob", "name": "Bob" });
    write_lines(&v1, &[ada.clone(), bob.clone()]);
    let mut ada2 = ada.clone();
    ada2["name"] = "Ada Lovelace".into();
    let cy = serde_json::json!({ "external_id": "3", "username": "cy" });
    write_lines(
        &v2,
        &[
            ada2,
            bob,
            cy,
            serde_json::json!({ "external_id": "4", "primary_email": "not an email" }),
        ],
    );

    let out = keyward_with(
        &database_url,
        dir.path(),
        &["import", v1.to_str().unwrap(), "--source", "old", "--quiet"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Report only.
    let out = keyward_with(
        &database_url,
        dir.path(),
        &[
            "sync",
            v2.to_str().unwrap(),
            "--source",
            "old",
            "--report",
            report.to_str().unwrap(),
            "--quiet",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        report["summary"],
        serde_json::json!({ "create": 1, "update": 1, "unchanged": 1, "invalid": 1 })
    );
    let update = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "update")
        .unwrap();
    assert_eq!(update["external_id"], "1");
    assert_eq!(
        update["fields"],
        serde_json::json!([{ "field": "name", "from": "Ada", "to": "Ada Lovelace" }])
    );
    assert_eq!(report["errors"][0]["row"], 4);
    let store = keyward_store::connect(&database_url, 2).await.unwrap();
    let find = |username: &'static str| {
        let store = store.clone();
        async move { store.find_user_by_login(username).await.unwrap() }
    };
    assert_eq!(
        find("ada").await.unwrap().name.as_deref(),
        Some("Ada"),
        "nothing applied yet"
    );
    assert!(find("cy").await.is_none());

    // Apply: exit code 2 because row 4 is invalid; the rest is in.
    let out = keyward_with(
        &database_url,
        dir.path(),
        &[
            "sync",
            v2.to_str().unwrap(),
            "--source",
            "old",
            "--apply",
            "--quiet",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        find("ada").await.unwrap().name.as_deref(),
        Some("Ada Lovelace")
    );
    assert!(find("cy").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    sync_reports_then_applies(keyward_store::test_support::sqlite_url_in(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_postgres() {
    let url = keyward_store::test_support::fresh_postgres_url()
        .await
        .unwrap();
    sync_reports_then_applies(url.clone()).await;
    keyward_store::test_support::drop_postgres_database(&url)
        .await
        .unwrap();
}

/// Kills the server when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let secret = "kws_cli-import-test-secret-0123456789abcdefghij";
    let database_url = keyward_store::test_support::sqlite_url_in(dir.path());
    let _server = Server(
        keyward_with(&database_url, dir.path(), &["serve"])
            .env("KEYWARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("KEYWARD_ISSUER", &base)
            .env("KEYWARD_BOOTSTRAP_CLIENT_ID", "cli-import-admin")
            .env("KEYWARD_BOOTSTRAP_CLIENT_SECRET", secret)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let file = dir.path().join("users.ndjson");
    let mut rows: Vec<serde_json::Value> = (0..3000)
        .map(|i| serde_json::json!({ "external_id": format!("s{i}"), "username": format!("srv{i}") }))
        .collect();
    rows.push(serde_json::json!({ "external_id": "dup", "username": "srv7" }));
    write_lines(&file, &rows);
    let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args([
            "import",
            file.to_str().unwrap(),
            "--server",
            &base,
            "--client-id",
            "cli-import-admin",
            "--client-secret",
            secret,
            "--source",
            "srv",
            "--quiet",
        ])
        .env_remove("KEYWARD_CONFIG")
        .env("KEYWARD_DATA_DIR", dir.path().join("cli"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("completed_with_errors"), "{stdout}");
    assert!(stdout.contains("username_taken"), "{stdout}");
    let created_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("created"))
        .unwrap();
    assert!(created_line.contains("3000"), "{stdout}");
}

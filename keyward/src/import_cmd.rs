//! `keyward import` and `keyward sync`: user migration from the command line.
//!
//! `import` runs the server's import engine straight into the configured store (the
//! default), or streams the file to a running server's `POST /api/users/import`
//! (`--server`). `sync` compares a newer export with the store by external id, writes a
//! JSON report of what differs, and applies it (an upsert) only with `--apply`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use futures_util::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use keyward_core::import::{merge, ImportBatch, ImportJob, ImportMode};
use keyward_core::store::Store;
use keyward_proto as proto;
use keyward_server::import::{self as engine, ImportOptions, Progress};
use keyward_server::Settings;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

/// Exit code when the import finished but some rows failed.
pub const EXIT_ROWS_FAILED: u8 = 2;

#[derive(Args, Clone)]
pub struct SourceArgs {
    /// The export to read.
    pub file: PathBuf,
    /// keyward (NDJSON or JSON array), logto, auth0, firebase or csv.
    #[arg(long, default_value = "keyward")]
    pub format: String,
    /// The source system's name (default: the format). Imported users get it as
    /// `external_source`; external ids are unique within it, and `sync` matches by it.
    #[arg(long)]
    pub source: Option<String>,
    /// Firebase: a file with the project's password hash parameters (the JSON form or the
    /// console's `hash_config { … }` block).
    #[arg(long)]
    pub hash_config: Option<PathBuf>,
    /// CSV: the column mapping, e.g. `email=Email,username=Login,external_id=UID,password_digest=Hash`.
    #[arg(long)]
    pub map: Option<String>,
}

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// create (default): rows matching a stored user are skipped. upsert: they are updated
    /// where the row differs.
    #[arg(long, default_value = "create")]
    pub mode: String,
    /// Run every rule and report; store no user.
    #[arg(long)]
    pub dry_run: bool,
    /// Import through this running server (its base URL) instead of straight into the store.
    #[arg(long, env = "KEYWARD_IMPORT_SERVER")]
    pub server: Option<String>,
    /// With --server: an application holding `users:write` on the management API.
    #[arg(long, env = "KEYWARD_IMPORT_CLIENT_ID")]
    pub client_id: Option<String>,
    #[arg(long, env = "KEYWARD_IMPORT_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// With --server: the management API audience (default `{server}/api`).
    #[arg(long)]
    pub audience: Option<String>,
    /// Print the finished job as JSON instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (it is also off when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Where to write the JSON report (default: standard output).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// After the report, apply the changes (an upsert by external id).
    #[arg(long)]
    pub apply: bool,
    #[arg(long)]
    pub quiet: bool,
}

fn format_option(
    args: &SourceArgs,
) -> anyhow::Result<(keyward_import::SourceFormat, Option<String>)> {
    let hash_config = args
        .hash_config
        .as_deref()
        .map(std::fs::read_to_string)
        .transpose()
        .context("reading the hash config")?;
    let format = engine::source_format(&args.format, hash_config.as_deref(), args.map.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok((format, hash_config))
}

fn options(args: &SourceArgs, mode: ImportMode, dry_run: bool) -> anyhow::Result<ImportOptions> {
    let (format, _) = format_option(args)?;
    Ok(ImportOptions {
        format,
        format_name: args.format.clone(),
        source: args.source.clone().unwrap_or_else(|| args.format.clone()),
        mode,
        dry_run,
        actor: Some(format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        )),
    })
}

fn progress_bar(total_bytes: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn rate(rows: u64, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64().max(1e-6)
}

/// Runs `keyward import`; returns the process exit code.
pub async fn import(settings: Option<Settings>, args: ImportArgs) -> anyhow::Result<u8> {
    let mode = ImportMode::parse(&args.mode)
        .with_context(|| format!("unknown mode {:?}: expected create or upsert", args.mode))?;
    let started = Instant::now();
    let job = match &args.server {
        Some(server) => import_through_server(server, &args, mode).await?,
        None => {
            let settings = settings.context("no configuration")?;
            import_into_store(settings, &args, mode).await?
        }
    };
    let elapsed = started.elapsed();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        print_summary(&job, elapsed);
    }
    Ok(match job.status.as_str() {
        "succeeded" => 0,
        "completed_with_errors" => EXIT_ROWS_FAILED,
        _ => 1,
    })
}

async fn import_into_store(
    settings: Settings,
    args: &ImportArgs,
    mode: ImportMode,
) -> anyhow::Result<proto::ImportJob> {
    let options = options(&args.source, mode, args.dry_run)?;
    let store = keyward_store::connect(&settings.database_url(), 4)
        .await
        .context("connecting to the store")?;
    store.migrate().await.context("migrating the store")?;
    engine::sweep_stale_jobs(store.as_ref()).await?;
    let file = std::fs::File::open(&args.source.file)
        .with_context(|| format!("opening {}", args.source.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size, args.quiet);
    let reader = bar.wrap_read(file);
    let job = engine::create_job(store.as_ref(), &options).await?;
    if !args.quiet {
        eprintln!("import job {} (source {})", job.id, options.source);
    }
    let (progress_tx, mut progress_rx) = watch::channel(Progress::default());
    let ticker = {
        let bar = bar.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            while progress_rx.changed().await.is_ok() {
                let p = *progress_rx.borrow();
                bar.set_message(format!(
                    "{} rows, {:.0} rows/s",
                    p.rows,
                    rate(p.rows, started.elapsed())
                ));
            }
        })
    };
    let result = engine::run_job(store.clone(), &job.id, reader, &options, Some(progress_tx)).await;
    let _ = ticker.await;
    bar.finish_and_clear();
    let job = result?;
    job_with_errors(store.as_ref(), job).await
}

async fn job_with_errors(store: &dyn Store, job: ImportJob) -> anyhow::Result<proto::ImportJob> {
    let errors = store.list_import_errors(&job.id, 0, 100).await?;
    Ok(proto::ImportJob {
        status: job.status.as_str().to_owned(),
        mode: job.mode.as_str().to_owned(),
        dry_run: job.dry_run,
        format: job.format,
        source: job.source,
        rows_processed: job.rows_processed,
        counts: proto::ImportCounts {
            created: job.counts.created,
            updated: job.counts.updated,
            unchanged: job.counts.unchanged,
            skipped: job.counts.skipped,
            failed: job.counts.failed,
        },
        message: job.message,
        errors: errors
            .into_iter()
            .map(|e| proto::ImportRowError {
                row: e.row,
                code: e.code,
                field: e.field,
                message: e.message,
                external_id: e.external_id,
            })
            .collect(),
        created_at: job.created_at,
        finished_at: job.finished_at,
        id: job.id,
    })
}

async fn import_through_server(
    server: &str,
    args: &ImportArgs,
    mode: ImportMode,
) -> anyhow::Result<proto::ImportJob> {
    let server = server.trim_end_matches('/');
    let (Some(client_id), Some(secret)) = (&args.client_id, &args.client_secret) else {
        bail!("--server needs --client-id and --client-secret (an application with users:write)");
    };
    let audience = args
        .audience
        .clone()
        .unwrap_or_else(|| format!("{server}/api"));
    let oauth =
        keyward_client::OAuthClient::new(format!("{server}/oauth2/token"), client_id, secret);
    let token = oauth
        .client_credentials(&audience)
        .await
        .context("getting a token")?;
    let (_, hash_config) = format_option(&args.source)?;
    let mut query: Vec<(&str, String)> = vec![
        ("format", args.source.format.clone()),
        ("mode", mode.as_str().to_owned()),
        ("dry_run", args.dry_run.to_string()),
    ];
    if let Some(source) = &args.source.source {
        query.push(("source", source.clone()));
    }
    if let Some(config) = hash_config {
        query.push(("firebase_hash_config", config));
    }
    if let Some(map) = &args.source.map {
        query.push(("csv_map", map.clone()));
    }
    let file = tokio::fs::File::open(&args.source.file)
        .await
        .with_context(|| format!("opening {}", args.source.file.display()))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size, args.quiet);
    // Rows of line-based formats are counted as they are sent; the server writes them as
    // they arrive, so the rate is the import's.
    let counts_lines = matches!(args.source.format.as_str(), "csv")
        || is_ndjson(&args.source.file).unwrap_or(false);
    let started = Instant::now();
    let lines = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stream = {
        let bar = bar.clone();
        let lines = lines.clone();
        tokio_util::io::ReaderStream::new(file).inspect_ok(move |chunk| {
            bar.inc(chunk.len() as u64);
            if counts_lines {
                let n = chunk.iter().filter(|b| **b == b'\n').count() as u64;
                let total = lines.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                bar.set_message(format!(
                    "{total} rows sent, {:.0} rows/s",
                    rate(total, started.elapsed())
                ));
            }
        })
    };
    let response = reqwest::Client::new()
        .post(format!("{server}/api/users/import"))
        .query(&query)
        .bearer_auth(&token.access_token)
        .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .context("sending the file")?;
    bar.finish_and_clear();
    let status = response.status();
    let text = response.text().await.context("reading the answer")?;
    if !status.is_success() {
        bail!("the server refused the import ({status}): {text}");
    }
    serde_json::from_str(&text).context("reading the import job")
}

/// NDJSON rather than a JSON array: the first non-blank byte is not `[`.
fn is_ndjson(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)?.read(&mut head)?;
    Ok(head[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF)
        .is_some_and(|b| *b != b'['))
}

fn print_summary(job: &proto::ImportJob, elapsed: Duration) {
    let c = &job.counts;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "import {}  format {}  source {}  mode {}{}  →  {}",
        job.id,
        job.format,
        job.source,
        job.mode,
        if job.dry_run { " (dry run)" } else { "" },
        job.status
    );
    for (label, n) in [
        ("created", c.created),
        ("updated", c.updated),
        ("unchanged", c.unchanged),
        ("skipped", c.skipped),
        ("failed", c.failed),
    ] {
        let _ = writeln!(out, "  {label:<10} {n:>12}");
    }
    let _ = writeln!(
        out,
        "  {:<10} {:>12}  in {:.1} s ({:.0} rows/s)",
        "rows",
        job.rows_processed,
        elapsed.as_secs_f64(),
        rate(job.rows_processed, elapsed)
    );
    if let Some(message) = &job.message {
        let _ = writeln!(out, "  {message}");
    }
    if !job.errors.is_empty() {
        let _ = writeln!(out, "row errors (first {}):", job.errors.len());
        for e in &job.errors {
            let _ = writeln!(
                out,
                "  row {:>8}  {:<22} {}{}{}",
                e.row,
                e.code,
                e.field
                    .as_deref()
                    .map(|f| format!("{f}: "))
                    .unwrap_or_default(),
                e.message,
                e.external_id
                    .as_deref()
                    .map(|x| format!(" (external id {x})"))
                    .unwrap_or_default()
            );
        }
        if c.failed > job.errors.len() as u64 {
            let _ = writeln!(
                out,
                "  … all {} at GET /api/import-jobs/{}/errors",
                c.failed, job.id
            );
        }
    }
}

/// Runs `keyward sync`; returns the process exit code.
pub async fn sync(settings: Settings, args: SyncArgs) -> anyhow::Result<u8> {
    let options = options(&args.source, ImportMode::Upsert, false)?;
    let store = keyward_store::connect(&settings.database_url(), 4)
        .await
        .context("connecting to the store")?;
    store.migrate().await.context("migrating the store")?;

    let file = std::fs::File::open(&args.source.file)
        .with_context(|| format!("opening {}", args.source.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size, args.quiet);
    let reader = bar.wrap_read(file);
    let (tx, mut rx) = mpsc::channel::<ImportBatch>(2);
    let format = options.format.clone();
    let source = options.source.clone();
    let parser = tokio::task::spawn_blocking(move || {
        engine::parse_into_batches(reader, &format, &source, &tx)
    });
    let (mut create, mut update, mut unchanged, mut invalid) = (0u64, 0u64, 0u64, 0u64);
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    while let Some(batch) = rx.recv().await {
        invalid += batch.errors.len() as u64;
        errors.extend(batch.errors.iter().map(|e| {
            json!({ "row": e.row, "code": e.code, "field": e.field, "message": e.message, "external_id": e.external_id })
        }));
        let matches = store.match_import_candidates(&batch.candidates).await?;
        for (candidate, found) in batch.candidates.iter().zip(matches) {
            match found {
                None => {
                    create += 1;
                    changes.push(json!({
                        "row": candidate.row,
                        "action": "create",
                        "external_id": candidate.user.external_id,
                        "primary_email": candidate.user.primary_email,
                        "username": candidate.user.username,
                    }));
                }
                Some((existing, fingerprint)) => {
                    let (_, diff, _) = merge(&existing, fingerprint.as_deref(), &candidate.user);
                    if diff.is_empty() {
                        unchanged += 1;
                    } else {
                        update += 1;
                        changes.push(json!({
                            "row": candidate.row,
                            "action": "update",
                            "external_id": candidate.user.external_id,
                            "user_id": existing.id,
                            "fields": diff.iter().map(|c| json!({ "field": c.field, "from": c.from, "to": c.to })).collect::<Vec<Value>>(),
                        }));
                    }
                }
            }
        }
    }
    let parsed = parser.await?;
    bar.finish_and_clear();
    let read_error = parsed.err().map(|e| e.to_string());
    let report = json!({
        "source": options.source,
        "format": options.format_name,
        "file": args.source.file.display().to_string(),
        "generated_at": OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
        "summary": { "create": create, "update": update, "unchanged": unchanged, "invalid": invalid },
        "read_error": read_error,
        "changes": changes,
        "errors": errors,
    });
    let text = serde_json::to_string_pretty(&report)?;
    match &args.report {
        Some(path) => std::fs::write(path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{text}"),
    }
    eprintln!(
        "sync {}: {create} to create, {update} to update, {unchanged} unchanged, {invalid} invalid rows",
        options.source
    );
    if read_error.is_some() {
        bail!("the export could not be read to its end; nothing applied");
    }
    if !args.apply {
        if create + update > 0 {
            eprintln!("run again with --apply to apply these changes");
        }
        return Ok(0);
    }
    let file = std::fs::File::open(&args.source.file)?;
    let job = engine::create_job(store.as_ref(), &options).await?;
    let job = engine::run_job(store.clone(), &job.id, file, &options, None).await?;
    let job = job_with_errors(store.as_ref(), job).await?;
    print_summary(&job, Duration::ZERO);
    Ok(match job.status.as_str() {
        "succeeded" => 0,
        "completed_with_errors" => EXIT_ROWS_FAILED,
        _ => 1,
    })
}

//! `signin-bench`: password sign-ins per second against a running Keyward server, next to
//! the raw Argon2id verify rate of this machine, measured in the same run.
//!
//! A password sign-in is dominated by one Argon2id verification (m = 19456 KiB, t = 2,
//! p = 1: the server's default). The best a server can do on N cores is N verifications at
//! a time, so the ratio `sign-ins/s ÷ raw verifies/s` tells how much everything else costs
//! (HTTP, CSRF, user lookup, session write, throttling bookkeeping, queuing). Target: ≥ 0.85.
//!
//! 1. Set-up through the management API (admin client credentials): a first-party `web`
//!    application whose redirect URI gives the `Origin` the JSON sign-in endpoint accepts,
//!    and `--users` distinct users with passwords (`POST /api/applications/{id}/users`).
//! 2. Raw Argon2id: one std thread per core, each verifying a correct password against a
//!    PHC hash with the server's parameters, for `--argon2-secs`. The server is idle.
//! 3. Sign-ins: `--concurrency` workers, each with its own HTTP connection and cookie jar:
//!    `GET /auth/csrf` (token + `kw_csrf` cookie), then `POST /auth/sign-in` JSON
//!    `{client_id, login, password}` with `X-CSRF-Token` and `Origin`, cycling through its
//!    users; the session cookie is dropped before each sign-in so each one is a fresh
//!    sign-in. Only 200s count; any other answer is an error and fails the run (so
//!    throttling, which only follows failed sign-ins, never kicks in).
//!
//! Writes the figures as JSON (`--out`, default `target/bench-signin/result.json`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use clap::Parser;
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(
    name = "signin-bench",
    about = "Password sign-ins per second vs. the raw Argon2id verify rate"
)]
struct Args {
    /// Server root URL (its issuer).
    #[arg(long, env = "KEYWARD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Management client (client credentials with the users/applications scopes).
    #[arg(long, env = "BENCH_ADMIN_CLIENT_ID")]
    admin_client_id: String,
    #[arg(long, env = "BENCH_ADMIN_CLIENT_SECRET")]
    admin_client_secret: String,
    /// Distinct users created and signed in.
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Concurrent sign-in workers (each its own connection and cookie jar).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Measured seconds of sign-ins.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Seconds of sign-ins before the measurement (not counted).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds of raw Argon2id verification.
    #[arg(long, default_value_t = 10)]
    argon2_secs: u64,
    /// Threads for the raw Argon2id measurement (default: one per core).
    #[arg(long)]
    argon2_threads: Option<usize>,
    /// The server's Argon2id parameters (its defaults).
    #[arg(long, default_value_t = 19_456)]
    argon2_memory_kib: u32,
    #[arg(long, default_value_t = 2)]
    argon2_iterations: u32,
    #[arg(long, default_value_t = 1)]
    argon2_parallelism: u32,
    /// Runtime threads of this load generator (keep it small: it shares the cores).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Label of the store the server runs on (only written to the result).
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Where to write the JSON result.
    #[arg(long, default_value = "target/bench-signin/result.json")]
    out: String,
    /// Minimum acceptable ratio sign-ins/s ÷ raw verifies/s (reported, not enforced unless
    /// --enforce).
    #[arg(long, default_value_t = 0.85)]
    target_ratio: f64,
    /// Exit with status 3 when the ratio is below --target-ratio.
    #[arg(long)]
    enforce: bool,
}

const PASSWORD_PREFIX: &str = "bench-password-";
/// The Origin sent with JSON sign-ins; the application's redirect URI is on it.
const APP_ORIGIN: &str = "http://127.0.0.1:9";

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()?;
    let base = args.url.trim_end_matches('/').to_owned();

    // --- 1. set-up -----------------------------------------------------------------------
    eprintln!("==> set-up: application and {} users on {base}", args.users);
    let setup = rt.block_on(setup(&args, &base))?;

    // --- 2. raw Argon2id -------------------------------------------------------------------
    let threads = args.argon2_threads.unwrap_or(cores).max(1);
    eprintln!(
        "==> raw Argon2id verify (m={} KiB, t={}, p={}): {threads} threads, {} s",
        args.argon2_memory_kib, args.argon2_iterations, args.argon2_parallelism, args.argon2_secs
    );
    let argon = argon2_rate(&args, threads)?;
    eprintln!(
        "    {} verifies in {:.2} s = {:.1}/s ({:.1} ms each per thread)",
        argon.count,
        argon.seconds,
        argon.per_sec,
        1000.0 * threads as f64 / argon.per_sec.max(f64::MIN_POSITIVE)
    );

    // --- 3. sign-ins -------------------------------------------------------------------------
    eprintln!(
        "==> sign-ins: {} workers, {} users, warm-up {} s, measured {} s",
        args.concurrency, args.users, args.warmup, args.duration
    );
    let signin = rt.block_on(signin_load(&args, &base, &setup))?;
    eprintln!(
        "    {} sign-ins in {:.2} s = {:.1}/s (p50 {:.1} ms, p99 {:.1} ms), {} errors",
        signin.ok, signin.seconds, signin.per_sec, signin.p50_ms, signin.p99_ms, signin.errors
    );

    let ratio = signin.per_sec / argon.per_sec.max(f64::MIN_POSITIVE);
    let meets = ratio >= args.target_ratio;
    println!();
    println!(
        "raw Argon2id verifies/s ({threads} threads): {:.1}",
        argon.per_sec
    );
    println!(
        "password sign-ins/s ({}):            {:.1}",
        args.store, signin.per_sec
    );
    println!(
        "ratio sign-ins/verifies:                  {ratio:.3} (target >= {}: {})",
        args.target_ratio,
        if meets { "met" } else { "NOT met" }
    );

    let result = json!({
        "cpus": cores,
        "store": args.store,
        "argon2": {
            "memory_kib": args.argon2_memory_kib,
            "iterations": args.argon2_iterations,
            "parallelism": args.argon2_parallelism,
            "threads": threads,
            "seconds": argon.seconds,
            "verifies": argon.count,
            "verifies_per_sec": argon.per_sec,
        },
        "signin": {
            "endpoint": "POST /auth/sign-in",
            "concurrency": args.concurrency,
            "users": args.users,
            "warmup_secs": args.warmup,
            "seconds": signin.seconds,
            "ok": signin.ok,
            "errors": signin.errors,
            "signins_per_sec": signin.per_sec,
            "p50_ms": signin.p50_ms,
            "p99_ms": signin.p99_ms,
            "max_ms": signin.max_ms,
        },
        "ratio": ratio,
        "target_ratio": args.target_ratio,
        "meets_target": meets,
    });
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)? + "\n")
        .with_context(|| format!("writing {}", args.out))?;
    eprintln!("results: {}", args.out);

    if signin.errors > 0 {
        bail!(
            "{} sign-ins did not answer 200; the figures are not valid",
            signin.errors
        );
    }
    if args.enforce && !meets {
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

// --- set-up ----------------------------------------------------------------------------------

struct Setup {
    client_id: String,
    /// (login, password)
    users: Vec<(String, String)>,
}

async fn json_or_text(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

async fn setup(args: &Args, base: &str) -> Result<Setup> {
    let http = reqwest::Client::new();
    let (status, token) = json_or_text(
        http.post(format!("{base}/oauth2/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", args.admin_client_id.as_str()),
                ("client_secret", args.admin_client_secret.as_str()),
                ("audience", format!("{base}/api").as_str()),
            ])
            .send()
            .await
            .context("token request (is the server up?)")?,
    )
    .await;
    if status != 200 {
        bail!("admin token: {status} {token}");
    }
    let admin = token["access_token"]
        .as_str()
        .ok_or_else(|| anyhow!("no access_token in {token}"))?
        .to_owned();

    let (status, app) = json_or_text(
        http.post(format!("{base}/api/applications"))
            .bearer_auth(&admin)
            .json(&json!({
                "name": "signin-bench",
                "kind": "web",
                "redirect_uris": [format!("{APP_ORIGIN}/callback")],
                "grant_types": ["authorization_code", "refresh_token"],
                "first_party": true,
            }))
            .send()
            .await?,
    )
    .await;
    if status != 201 {
        bail!("POST /api/applications: {status} {app}");
    }
    let app_id = app["application"]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no application.id in {app}"))?
        .to_owned();
    let client_id = app["application"]["client_id"]
        .as_str()
        .ok_or_else(|| anyhow!("no application.client_id in {app}"))?
        .to_owned();

    // Users are created a few at a time: each creation hashes a password on the server.
    let run = ulid_like();
    let mut users = Vec::with_capacity(args.users);
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..args.users {
        let http = http.clone();
        let url = format!("{base}/api/applications/{app_id}/users");
        let admin = admin.clone();
        let username = format!("bench{run}u{i}");
        let password = format!("{PASSWORD_PREFIX}{run}-{i}");
        pending.spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(admin)
                .json(&json!({
                    "username": username,
                    "primary_email": format!("{username}@bench.example.test"),
                    "password": password,
                    "status": "active",
                }))
                .send()
                .await?;
            let (status, body) = json_or_text(response).await;
            if status != 201 {
                bail!("creating user {username}: {status} {body}");
            }
            anyhow::Ok((username, password))
        });
        if pending.len() >= 4 {
            if let Some(joined) = pending.join_next().await {
                users.push(joined??);
            }
        }
    }
    while let Some(joined) = pending.join_next().await {
        users.push(joined??);
    }
    users.sort();
    Ok(Setup { client_id, users })
}

/// A short random tag so that repeated runs against one server create distinct users.
fn ulid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", (nanos >> 10) & 0xff_ffff_ffff)
}

// --- raw Argon2id ----------------------------------------------------------------------------

struct ArgonRate {
    count: u64,
    seconds: f64,
    per_sec: f64,
}

fn argon2_rate(args: &Args, threads: usize) -> Result<ArgonRate> {
    let params = Params::new(
        args.argon2_memory_kib,
        args.argon2_iterations,
        args.argon2_parallelism,
        None,
    )
    .map_err(|e| anyhow!("Argon2 parameters: {e}"))?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let password = "correct horse battery staple";
    let salt = SaltString::generate(&mut OsRng);
    let phc = hasher
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow!("hashing: {e}"))?
        .to_string();

    let total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.argon2_secs.max(1));
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads {
        let phc = phc.clone();
        let total = Arc::clone(&total);
        let stop = Arc::clone(&stop);
        handles.push(std::thread::spawn(move || -> Result<Duration> {
            // As the server does: parse the PHC string, verify with its parameters.
            let verifier = Argon2::default();
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let hash = PasswordHash::new(&phc).map_err(|e| anyhow!("PHC: {e}"))?;
                if verifier
                    .verify_password(password.as_bytes(), &hash)
                    .is_err()
                {
                    stop.store(true, Ordering::Relaxed);
                    bail!("the correct password did not verify");
                }
                total.fetch_add(1, Ordering::Relaxed);
            }
            Ok(start.elapsed())
        }));
    }
    let mut seconds: f64 = 0.0;
    for handle in handles {
        let elapsed = handle
            .join()
            .map_err(|_| anyhow!("an Argon2 thread panicked"))??;
        seconds = seconds.max(elapsed.as_secs_f64());
    }
    let count = total.load(Ordering::Relaxed);
    Ok(ArgonRate {
        count,
        seconds,
        per_sec: count as f64 / seconds.max(f64::MIN_POSITIVE),
    })
}

// --- sign-in load ----------------------------------------------------------------------------

struct SigninRate {
    ok: u64,
    errors: u64,
    seconds: f64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// One worker's cookies (name → value), from Set-Cookie headers.
#[derive(Default)]
struct CookieJar(HashMap<String, String>);

impl CookieJar {
    fn absorb(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            let mut parts = value.split(';');
            let Some((name, val)) = parts.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let expired = parts.any(|attr| {
                let attr = attr.trim().to_ascii_lowercase();
                attr == "max-age=0" || attr.starts_with("max-age=-")
            });
            if expired || val.is_empty() {
                self.0.remove(name.trim());
            } else {
                self.0.insert(name.trim().to_owned(), val.trim().to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

struct Worker {
    http: reqwest::Client,
    jar: CookieJar,
    csrf: String,
}

impl Worker {
    async fn new(base: &str) -> Result<Self> {
        let mut worker = Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?,
            jar: CookieJar::default(),
            csrf: String::new(),
        };
        worker.refresh_csrf(base).await?;
        Ok(worker)
    }

    async fn refresh_csrf(&mut self, base: &str) -> Result<()> {
        let mut request = self.http.get(format!("{base}/auth/csrf"));
        if !self.jar.0.is_empty() {
            request = request.header(COOKIE, self.jar.header());
        }
        let response = request.send().await?;
        self.jar.absorb(response.headers());
        let (status, body) = json_or_text(response).await;
        if status != 200 {
            bail!("GET /auth/csrf: {status} {body}");
        }
        self.csrf = body["csrf_token"]
            .as_str()
            .ok_or_else(|| anyhow!("GET /auth/csrf: no csrf_token in {body}"))?
            .to_owned();
        if !self.jar.0.contains_key("kw_csrf") {
            bail!("GET /auth/csrf did not set the kw_csrf cookie");
        }
        Ok(())
    }

    /// One fresh sign-in; Ok(true) on 200 with a session cookie.
    async fn sign_in(
        &mut self,
        base: &str,
        client_id: &str,
        login: &str,
        password: &str,
    ) -> Result<std::result::Result<(), String>> {
        self.jar.0.remove("kw_session");
        let response = self
            .http
            .post(format!("{base}/auth/sign-in"))
            .header("x-csrf-token", &self.csrf)
            .header("origin", APP_ORIGIN)
            .header(COOKIE, self.jar.header())
            .json(&json!({ "client_id": client_id, "login": login, "password": password }))
            .send()
            .await?;
        let csrf_before = self.jar.0.get("kw_csrf").cloned();
        self.jar.absorb(response.headers());
        let status = response.status().as_u16();
        let has_session = self.jar.0.contains_key("kw_session");
        let (_, body) = json_or_text(response).await;
        if status != 200 {
            return Ok(Err(format!("{status} {body}")));
        }
        if !has_session {
            return Ok(Err(format!("200 without a kw_session cookie: {body}")));
        }
        // A server that rotates the CSRF cookie on sign-in: take the new token.
        if self.jar.0.get("kw_csrf") != csrf_before.as_ref() {
            self.refresh_csrf(base).await?;
        }
        Ok(Ok(()))
    }
}

async fn signin_load(args: &Args, base: &str, setup: &Setup) -> Result<SigninRate> {
    if setup.users.is_empty() {
        bail!("no users");
    }
    let concurrency = args.concurrency.max(1);
    // Check one sign-in (and its answer) before any load.
    {
        let mut probe = Worker::new(base).await?;
        let (login, password) = &setup.users[0];
        if let Err(e) = probe
            .sign_in(base, &setup.client_id, login, password)
            .await?
        {
            bail!("the probe sign-in failed: {e}");
        }
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let measure_to = measure_from + Duration::from_secs(args.duration.max(1));
    let users = Arc::new(setup.users.clone());
    let client_id = Arc::new(setup.client_id.clone());
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let users = Arc::clone(&users);
        let client_id = Arc::clone(&client_id);
        let base = base.to_owned();
        let first_error = Arc::clone(&first_error);
        tasks.spawn(async move {
            let mut worker = Worker::new(&base).await?;
            let mut latencies_us: Vec<u32> = Vec::new();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut i = w;
            loop {
                let now = Instant::now();
                if now >= measure_to {
                    break;
                }
                let (login, password) = &users[i % users.len()];
                i += concurrency;
                let outcome = worker.sign_in(&base, &client_id, login, password).await?;
                let done = Instant::now();
                // Throughput = completions inside the window, whenever they started.
                let counted = done >= measure_from && done <= measure_to;
                match outcome {
                    Ok(()) if counted => {
                        ok += 1;
                        let us = done.duration_since(now).as_micros();
                        latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    Ok(()) => {}
                    Err(e) => {
                        errors += 1;
                        if let Ok(mut first) = first_error.lock() {
                            first.get_or_insert(format!("{login}: {e}"));
                        }
                        // Stop this worker: repeated failures would trip the throttle.
                        break;
                    }
                }
            }
            anyhow::Ok((ok, errors, latencies_us))
        });
    }
    let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (o, e, l) = joined??;
        ok += o;
        errors += e;
        latencies.extend(l);
    }
    if let Ok(first) = first_error.lock() {
        if let Some(e) = first.as_ref() {
            eprintln!("    first failed sign-in: {e}");
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(latencies[idx.min(latencies.len() - 1)]) / 1000.0
    };
    let seconds = measure_to.duration_since(measure_from).as_secs_f64();
    Ok(SigninRate {
        ok,
        errors,
        seconds,
        per_sec: ok as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: latencies
            .last()
            .map(|&v| f64::from(v) / 1000.0)
            .unwrap_or(0.0),
    })
}

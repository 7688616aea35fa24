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
//! 2. `--rounds` alternating rounds of:
//!    - raw Argon2id: one std thread per core, each verifying a correct password against a
//!      PHC hash with the server's parameters (the server is idle meanwhile);
//!    - sign-ins: `--concurrency` workers, each with its own HTTP connection and cookie
//!      jar: `GET /auth/csrf` (token + `kw_csrf` cookie), then `POST /auth/sign-in` JSON
//!      `{client_id, login, password}` with `X-CSRF-Token` and `Origin`, cycling through
//!      its users; the session cookie is dropped before each sign-in so each one is a fresh
//!      sign-in. Only 200s count; any other answer is an error and fails the run (so
//!      throttling, which only follows failed sign-ins, never kicks in).
//!
//!    Alternating makes a change in the machine's other load hit both figures alike; the
//!    CPU used by other processes (and by the server, with `--server-pid`) is reported.
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
    /// Measured seconds of sign-ins, over all rounds.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Seconds of sign-ins before the first round's measurement (not counted); later
    /// rounds warm up for one second.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds of raw Argon2id verification, over all rounds.
    #[arg(long, default_value_t = 10)]
    argon2_secs: u64,
    /// Alternating rounds of raw Argon2id and of sign-ins.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
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
    /// The server's process id, when it runs on this machine: its CPU use during the
    /// sign-ins is reported (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
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
/// The password of the raw Argon2id measurement.
const ARGON2_PASSWORD: &str = "correct horse battery staple";

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

fn per_sec(count: u64, seconds: f64) -> f64 {
    count as f64 / seconds.max(f64::MIN_POSITIVE)
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

    // --- 1. set-up -------------------------------------------------------------------------
    eprintln!("==> set-up: application and {} users on {base}", args.users);
    let setup = rt.block_on(setup(&args, &base))?;

    // --- 2. alternating rounds: raw Argon2id (server idle), then sign-ins --------------------
    let threads = args.argon2_threads.unwrap_or(cores).max(1);
    let rounds = args.rounds.max(1);
    let argon_round = Duration::from_secs_f64(args.argon2_secs.max(1) as f64 / f64::from(rounds));
    let signin_round = Duration::from_secs_f64(args.duration.max(1) as f64 / f64::from(rounds));
    eprintln!(
        "==> {rounds} rounds of: raw Argon2id verify (m={} KiB, t={}, p={}, {threads} threads) \
         {:.1} s, then sign-ins ({} workers, {} users) {:.1} s; first warm-up {} s",
        args.argon2_memory_kib,
        args.argon2_iterations,
        args.argon2_parallelism,
        argon_round.as_secs_f64(),
        args.concurrency,
        args.users,
        signin_round.as_secs_f64(),
        args.warmup
    );
    let phc = argon2_hash(&args)?;
    let (mut verifies, mut argon_secs) = (0u64, 0.0f64);
    let mut signin = SigninTotals::default();
    let mut cpu_argon = CpuUse::default();
    let mut cpu_signin = CpuUse::default();
    for round in 1..=rounds {
        let probe = CpuProbe::start(args.server_pid);
        let (count, seconds) = argon2_verify_for(&phc, threads, argon_round)?;
        cpu_argon.add(probe.stop());
        verifies += count;
        argon_secs += seconds;
        eprintln!(
            "    round {round}: raw Argon2id {count} verifies in {seconds:.2} s = {:.1}/s",
            per_sec(count, seconds)
        );

        let warmup = if round == 1 {
            Duration::from_secs(args.warmup)
        } else {
            Duration::from_secs(1)
        };
        let (part, cpu) = rt.block_on(signin_load(&args, &base, &setup, warmup, signin_round))?;
        cpu_signin.add(cpu);
        eprintln!(
            "    round {round}: {} sign-ins in {:.2} s = {:.1}/s, {} errors",
            part.ok,
            part.seconds,
            per_sec(part.ok, part.seconds),
            part.errors
        );
        let failed = part.errors > 0;
        signin.absorb(part);
        if failed {
            break;
        }
    }
    let argon_rate = per_sec(verifies, argon_secs);
    let signin = signin.finish();
    eprintln!(
        "    raw Argon2id: {verifies} verifies in {argon_secs:.2} s = {argon_rate:.1}/s \
         ({:.1} ms each per thread)",
        1000.0 * threads as f64 / argon_rate.max(f64::MIN_POSITIVE)
    );
    eprintln!(
        "    sign-ins: {} in {:.2} s = {:.1}/s (p50 {:.1} ms, p99 {:.1} ms), {} errors",
        signin.ok, signin.seconds, signin.per_sec, signin.p50_ms, signin.p99_ms, signin.errors
    );
    let other_argon = cpu_argon.other_cores(cores);
    let other_signin = cpu_signin.other_cores(cores);
    let server_cores = cpu_signin.server_cores(cores);
    // CPU time per operation, which other load on the machine does not change much: this
    // process's CPU use during the raw phase per verify, and the server's CPU use during
    // the sign-ins per sign-in. Their quotient is the share of a sign-in's CPU that is the
    // hash itself.
    let cpu_ms_per_verify = cpu_argon
        .cores(cpu_argon.this, cores)
        .map(|c| 1000.0 * c / argon_rate.max(f64::MIN_POSITIVE));
    let server_cpu_ms_per_signin =
        server_cores.map(|c| 1000.0 * c / signin.per_sec.max(f64::MIN_POSITIVE));
    let cpu_efficiency = cpu_ms_per_verify
        .zip(server_cpu_ms_per_signin)
        .map(|(verify, signin)| verify / signin.max(f64::MIN_POSITIVE));
    if let (Some(server), Some(per_signin)) = (server_cores, server_cpu_ms_per_signin) {
        eprintln!(
            "    server CPU during the sign-ins: {server:.2} of {cores} cores, \
             {per_signin:.1} ms per sign-in"
        );
    }
    if let (Some(verify), Some(efficiency)) = (cpu_ms_per_verify, cpu_efficiency) {
        eprintln!(
            "    CPU per raw verify: {verify:.1} ms; hash share of a sign-in's server CPU: \
             {efficiency:.3}"
        );
    }
    if let Some(rss) = args.server_pid.and_then(peak_rss_mib) {
        eprintln!("    server peak RSS: {rss:.0} MiB");
    }
    let busy = [other_argon, other_signin]
        .into_iter()
        .flatten()
        .fold(0.0_f64, f64::max);
    if busy > 0.15 {
        eprintln!(
            "warning: other processes used up to {busy:.2} cores during the measurement; \
             the figures are skewed (run on an otherwise idle machine)"
        );
    }

    let ratio = signin.per_sec / argon_rate.max(f64::MIN_POSITIVE);
    let meets = ratio >= args.target_ratio;
    println!();
    println!("raw Argon2id verifies/s ({threads} threads): {argon_rate:.1}");
    println!(
        "password sign-ins/s ({}):             {:.1}",
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
        "rounds": rounds,
        "argon2": {
            "memory_kib": args.argon2_memory_kib,
            "iterations": args.argon2_iterations,
            "parallelism": args.argon2_parallelism,
            "threads": threads,
            "seconds": argon_secs,
            "verifies": verifies,
            "verifies_per_sec": argon_rate,
        },
        "signin": {
            "endpoint": "POST /auth/sign-in",
            "concurrency": args.concurrency,
            "users": args.users,
            "warmup_secs": args.warmup,
            "client_threads": args.client_threads,
            "seconds": signin.seconds,
            "ok": signin.ok,
            "errors": signin.errors,
            "signins_per_sec": signin.per_sec,
            "p50_ms": signin.p50_ms,
            "p99_ms": signin.p99_ms,
            "max_ms": signin.max_ms,
        },
        "cpu": {
            "cpu_ms_per_raw_verify": cpu_ms_per_verify,
            "server_cpu_ms_per_signin": server_cpu_ms_per_signin,
            "hash_share_of_signin_cpu": cpu_efficiency,
            "server_cores_during_signin": server_cores,
            "other_cores_during_argon2": other_argon,
            "other_cores_during_signin": other_signin,
        },
        "server_peak_rss_mib": args.server_pid.and_then(peak_rss_mib),
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

/// One PHC hash of ARGON2_PASSWORD with the server's parameters.
fn argon2_hash(args: &Args) -> Result<String> {
    let params = Params::new(
        args.argon2_memory_kib,
        args.argon2_iterations,
        args.argon2_parallelism,
        None,
    )
    .map_err(|e| anyhow!("Argon2 parameters: {e}"))?;
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(ARGON2_PASSWORD.as_bytes(), &salt)
        .map_err(|e| anyhow!("hashing: {e}"))?
        .to_string())
}

/// `threads` std threads verifying ARGON2_PASSWORD against `phc` for `length`, as the
/// server does (parse the PHC string, verify with its parameters). Returns (verifies,
/// seconds).
fn argon2_verify_for(phc: &str, threads: usize, length: Duration) -> Result<(u64, f64)> {
    let total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + length;
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads {
        let phc = phc.to_owned();
        let total = Arc::clone(&total);
        let stop = Arc::clone(&stop);
        handles.push(std::thread::spawn(move || -> Result<Duration> {
            let verifier = Argon2::default();
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let hash = PasswordHash::new(&phc).map_err(|e| anyhow!("PHC: {e}"))?;
                if verifier
                    .verify_password(ARGON2_PASSWORD.as_bytes(), &hash)
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
    Ok((total.load(Ordering::Relaxed), seconds))
}

// --- CPU accounting (Linux /proc; unknown elsewhere) -----------------------------------------

/// Jiffies: all CPUs (busy + idle), all CPUs idle, this process, the server process.
#[derive(Clone, Copy)]
struct CpuSample {
    total: u64,
    idle: u64,
    this: u64,
    server: Option<u64>,
}

fn system_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let values: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total, idle))
}

fn process_jiffies(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count from the closing parenthesis.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn cpu_sample(server_pid: Option<u32>) -> Option<CpuSample> {
    let (total, idle) = system_jiffies()?;
    Some(CpuSample {
        total,
        idle,
        this: process_jiffies("self")?,
        server: server_pid.and_then(|pid| process_jiffies(&pid.to_string())),
    })
}

/// The peak resident set size of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

struct CpuProbe {
    server_pid: Option<u32>,
    start: Option<CpuSample>,
}

impl CpuProbe {
    fn start(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            start: cpu_sample(server_pid),
        }
    }

    fn stop(self) -> CpuUse {
        let (Some(a), Some(b)) = (self.start, cpu_sample(self.server_pid)) else {
            return CpuUse::default();
        };
        CpuUse {
            known: true,
            total: b.total.saturating_sub(a.total),
            busy: b
                .total
                .saturating_sub(b.idle)
                .saturating_sub(a.total.saturating_sub(a.idle)),
            this: b.this.saturating_sub(a.this),
            server: a.server.zip(b.server).map(|(x, y)| y.saturating_sub(x)),
        }
    }
}

/// Jiffies over one or more measured phases.
#[derive(Default)]
struct CpuUse {
    known: bool,
    total: u64,
    busy: u64,
    this: u64,
    server: Option<u64>,
}

impl CpuUse {
    fn add(&mut self, other: CpuUse) {
        if !other.known {
            return;
        }
        self.server = if self.known {
            self.server.zip(other.server).map(|(a, b)| a + b)
        } else {
            other.server
        };
        self.known = true;
        self.total += other.total;
        self.busy += other.busy;
        self.this += other.this;
    }

    fn cores(&self, jiffies: u64, cores: usize) -> Option<f64> {
        (self.known && self.total > 0).then(|| jiffies as f64 / self.total as f64 * cores as f64)
    }

    /// Cores used by processes other than this one and the server.
    fn other_cores(&self, cores: usize) -> Option<f64> {
        let ours = self.this + self.server.unwrap_or(0);
        self.cores(self.busy.saturating_sub(ours), cores)
    }

    fn server_cores(&self, cores: usize) -> Option<f64> {
        self.server.and_then(|s| self.cores(s, cores))
    }
}

// --- sign-in load ----------------------------------------------------------------------------

/// One sign-in round's raw results.
struct SigninRound {
    ok: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u32>,
}

#[derive(Default)]
struct SigninTotals {
    ok: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u32>,
}

struct SigninRate {
    ok: u64,
    errors: u64,
    seconds: f64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl SigninTotals {
    fn absorb(&mut self, round: SigninRound) {
        self.ok += round.ok;
        self.errors += round.errors;
        self.seconds += round.seconds;
        self.latencies_us.extend(round.latencies_us);
    }

    fn finish(mut self) -> SigninRate {
        self.latencies_us.sort_unstable();
        let latencies = &self.latencies_us;
        let pct = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            f64::from(latencies[idx.min(latencies.len() - 1)]) / 1000.0
        };
        SigninRate {
            ok: self.ok,
            errors: self.errors,
            seconds: self.seconds,
            per_sec: per_sec(self.ok, self.seconds),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: latencies
                .last()
                .map(|&v| f64::from(v) / 1000.0)
                .unwrap_or(0.0),
        }
    }
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

/// One round of sign-ins: `warmup` (not counted), then `length` measured. Throughput is the
/// number of sign-ins completed inside the measured window, whenever they started. Returns
/// the round's results and the CPU use during the measured window.
async fn signin_load(
    args: &Args,
    base: &str,
    setup: &Setup,
    warmup: Duration,
    length: Duration,
) -> Result<(SigninRound, CpuUse)> {
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
    let measure_from = start + warmup;
    let measure_to = measure_from + length;
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
                let began = Instant::now();
                if began >= measure_to {
                    break;
                }
                let (login, password) = &users[i % users.len()];
                i += concurrency;
                let outcome = worker.sign_in(&base, &client_id, login, password).await?;
                let done = Instant::now();
                let counted = done >= measure_from && done <= measure_to;
                match outcome {
                    Ok(()) if counted => {
                        ok += 1;
                        let us = done.duration_since(began).as_micros();
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
    // CPU use over the measured window, sampled while the workers run.
    let server_pid = args.server_pid;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let probe = CpuProbe::start(server_pid);
        tokio::time::sleep_until(measure_to.into()).await;
        probe.stop()
    });
    let (mut ok, mut errors, mut latencies_us) = (0u64, 0u64, Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (o, e, l) = joined??;
        ok += o;
        errors += e;
        latencies_us.extend(l);
    }
    let cpu = cpu.await.unwrap_or_default();
    if let Ok(first) = first_error.lock() {
        if let Some(e) = first.as_ref() {
            eprintln!("    first failed sign-in: {e}");
        }
    }
    Ok((
        SigninRound {
            ok,
            errors,
            seconds: measure_to.duration_since(measure_from).as_secs_f64(),
            latencies_us,
        },
        cpu,
    ))
}

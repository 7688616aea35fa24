//! `create-db`: the command line of the partner service (the `npx create-db` experience).

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use keyward_client::proto::provisioning::Region;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::pages::{format_time, relative};
use crate::wire::{CreateRequest, CreatedDatabase};

/// Shortest time to live a database may be created with (30 minutes).
const MIN_TTL_SECS: u32 = 1800;
/// Longest (24 hours).
const MAX_TTL_SECS: u32 = 86_400;

/// `create-db`: creates a temporary PostgreSQL database and prints its connection string
/// and the link to claim (keep) it.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateDbArgs {
    #[command(subcommand)]
    pub command: Option<CreateDbCommand>,
    /// The partner service's URL.
    #[arg(
        long,
        env = "KEYWARD_PARTNER_URL",
        default_value = "http://127.0.0.1:8787",
        global = true
    )]
    pub partner_url: String,
    /// The region to create the database in (see `create-db regions`).
    #[arg(long, short)]
    pub region: Option<String>,
    /// How long the database lives unless claimed: `30m`, `2h`, `24h` or seconds; 30
    /// minutes to 24 hours.
    #[arg(long, value_parser = parse_ttl, value_name = "DURATION")]
    pub ttl: Option<u32>,
    /// The project name (default: a generated name).
    #[arg(long)]
    pub name: Option<String>,
    /// Print the result as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Append `DATABASE_URL="…"` and `CLAIM_URL="…"` to this file (created if missing).
    #[arg(long, value_name = "FILE")]
    pub env: Option<PathBuf>,
}

impl CreateDbArgs {
    /// The defaults, against the partner service at `partner_url`.
    pub fn new(partner_url: impl Into<String>) -> Self {
        Self {
            command: None,
            partner_url: partner_url.into(),
            region: None,
            ttl: None,
            name: None,
            json: false,
            env: None,
        }
    }
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CreateDbCommand {
    /// List the regions databases can be created in.
    Regions,
}

/// Parses a time to live: `30m`, `2h`, `24h`, `90s` or plain seconds, within 30 minutes
/// and 24 hours. Returns seconds.
pub fn parse_ttl(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_secs: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use a number of seconds or a number \
                 followed by m or h, such as 30m, 2h or 24h"
            ))
        }
    };
    let number: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration: use a number of seconds or 30m, 2h, 24h")
    })?;
    let secs = number.saturating_mul(unit_secs);
    match u32::try_from(secs) {
        Ok(secs) if (MIN_TTL_SECS..=MAX_TTL_SECS).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "the time to live must be between 30m and 24h (1800 to 86400 seconds), got {text}"
        )),
    }
}

/// Runs `create-db`. Prints the result (or a clear error) and returns the process exit
/// code: 0 on success, 1 when the service refused or could not be reached, 2 for an
/// invalid argument.
pub async fn create_db(args: CreateDbArgs) -> anyhow::Result<i32> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("cannot set up the HTTP client")?;
    let base = args.partner_url.trim_end_matches('/').to_owned();
    match args.command {
        Some(CreateDbCommand::Regions) => list_regions(&http, &base, args.json).await,
        None => create(&http, &base, &args).await,
    }
}

async fn create(http: &reqwest::Client, base: &str, args: &CreateDbArgs) -> anyhow::Result<i32> {
    if let Some(ttl) = args.ttl {
        if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl) {
            eprintln!(
                "error: the time to live must be between 30m and 24h (1800 to 86400 seconds), got {ttl} seconds"
            );
            return Ok(2);
        }
    }
    let request = CreateRequest {
        region: args.region.clone(),
        ttl_seconds: args.ttl.map(i64::from),
        name: args.name.clone(),
    };
    let url = format!("{base}/create");
    let response = match http.post(&url).json(&request).send().await {
        Ok(response) => response,
        Err(error) => {
            eprintln!("error: cannot reach the partner service at {base}: {error}");
            return Ok(1);
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("error: the partner service's answer could not be read: {error}");
            return Ok(1);
        }
    };
    if !status.is_success() {
        eprintln!(
            "error: {}",
            describe_failure(status.as_u16(), retry_after, &bytes)
        );
        return Ok(1);
    }
    let created: CreatedDatabase = match serde_json::from_slice(&bytes) {
        Ok(created) => created,
        Err(error) => {
            eprintln!("error: unexpected answer from the partner service: {error}");
            return Ok(1);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        print_created(&created);
    }
    if let Some(path) = &args.env {
        if let Err(error) = append_env(path, &created) {
            eprintln!("error: cannot write {}: {error:#}", path.display());
            return Ok(1);
        }
        if !args.json {
            println!(
                "\nDATABASE_URL and CLAIM_URL were added to {}.",
                path.display()
            );
        }
    }
    Ok(0)
}

fn print_created(created: &CreatedDatabase) {
    println!(
        "Your database {} is ready in {}.",
        created.project_name, created.region_name
    );
    println!();
    println!("Connection string:");
    println!("  {}", created.connection_string);
    println!();
    println!("Claim it to keep it (moves it into your own workspace):");
    println!("  {}", created.claim_url);
    if let Some(at) = created.expires_at {
        println!();
        println!(
            "Unless claimed, it is deleted at {} ({}).",
            format_time(at),
            relative(at - OffsetDateTime::now_utc())
        );
    }
}

/// One line for a failed call: the problem's detail, and when to retry for a 429.
fn describe_failure(status: u16, retry_after: Option<u64>, body: &[u8]) -> String {
    let problem: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        problem
            .as_ref()
            .and_then(|p| p.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let message = field("detail")
        .or_else(|| field("title"))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
    if status == 429 {
        let wait = retry_after
            .map(|s| format!("try again in {s} seconds"))
            .unwrap_or_else(|| "try again later".to_owned());
        return format!(
            "rate limited (429): too many databases created from this address; {wait}. ({message})"
        );
    }
    match field("code") {
        Some(code) => format!("the partner service answered {status} ({code}): {message}"),
        None => format!("the partner service answered {status}: {message}"),
    }
}

/// Appends the two variables to `path`, creating it (mode 0600 on Unix) if missing and
/// starting on a new line if the file does not end with one. Other lines are kept.
fn append_env(path: &Path, created: &CreatedDatabase) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let len = file.metadata()?.len();
    let mut text = String::new();
    if len > 0 {
        file.seek(SeekFrom::Start(len - 1))?;
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(&format!(
        "DATABASE_URL=\"{}\"\nCLAIM_URL=\"{}\"\n",
        env_quote(&created.connection_string),
        env_quote(&created.claim_url)
    ));
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Escapes a value for a double-quoted dotenv value.
fn env_quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[derive(Deserialize)]
struct RegionList {
    data: Vec<Region>,
}

async fn list_regions(http: &reqwest::Client, base: &str, json: bool) -> anyhow::Result<i32> {
    let response = match http.get(format!("{base}/regions")).send().await {
        Ok(response) => response,
        Err(error) => {
            eprintln!("error: cannot reach the partner service at {base}: {error}");
            return Ok(1);
        }
    };
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    if !status.is_success() {
        eprintln!("error: {}", describe_failure(status.as_u16(), None, &bytes));
        return Ok(1);
    }
    let regions: RegionList = match serde_json::from_slice(&bytes) {
        Ok(regions) => regions,
        Err(error) => {
            eprintln!("error: unexpected answer from the partner service: {error}");
            return Ok(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&regions.data)?);
        return Ok(0);
    }
    let width = regions
        .data
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    println!("{:width$}  {:12}  NAME", "ID", "STATUS");
    for region in &regions.data {
        println!(
            "{:width$}  {:12}  {}",
            region.id, region.status, region.name
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CreateDbArgs,
    }

    #[test]
    fn ttl_forms() {
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("2h"), Ok(7200));
        assert_eq!(parse_ttl("24h"), Ok(86_400));
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert_eq!(parse_ttl("90 min"), Ok(5400));
        for bad in [
            "29m",
            "25h",
            "0",
            "1799",
            "86401",
            "2d",
            "h",
            "",
            "-5m",
            "99999999999999h",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        assert!(parse_ttl("10m")
            .unwrap_err()
            .contains("between 30m and 24h"));
    }

    #[test]
    fn arguments_and_the_regions_subcommand() {
        let cli =
            Cli::try_parse_from(["create-db", "--region", "eu", "--ttl", "2h", "--json"]).unwrap();
        assert_eq!(cli.args.ttl, Some(7200));
        assert_eq!(cli.args.region.as_deref(), Some("eu"));
        assert!(cli.args.json && cli.args.command.is_none());
        let cli = Cli::try_parse_from(["create-db", "regions", "--json"]).unwrap();
        assert!(matches!(cli.args.command, Some(CreateDbCommand::Regions)));
        assert!(cli.args.json);
        let err = Cli::try_parse_from(["create-db", "--ttl", "10m"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("between 30m and 24h"), "{err}");
    }

    #[test]
    fn failures_read_clearly() {
        let body = br#"{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"retry in 42 seconds","code":"rate_limited"}"#;
        let text = describe_failure(429, Some(42), body);
        assert!(
            text.contains("429") && text.contains("try again in 42 seconds"),
            "{text}"
        );
        let text = describe_failure(
            400,
            None,
            br#"{"code":"invalid_region","detail":"no region x"}"#,
        );
        assert_eq!(
            text,
            "the partner service answered 400 (invalid_region): no region x"
        );
        assert_eq!(env_quote(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}

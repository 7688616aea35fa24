//! Server settings. The `keyward` binary fills them from a TOML file and `KEYWARD_*`
//! environment variables; tests build them directly.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The issuer identifier (`iss`), the public base URL of this server.
    pub issuer: String,
    /// Socket address to listen on.
    pub listen: String,
    /// Where the embedded SQLite store and the generated master secret live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to `sqlite://{data_dir}/keyward.db`.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    /// Secret (≥ 32 characters) from which the at-rest encryption key is derived. When
    /// absent, one is generated into `{data_dir}/master.key` (development only: a
    /// production deployment with several nodes must set it explicitly).
    pub master_secret: Option<String>,
    /// Older master secrets that may still open data sealed before a rotation.
    pub previous_master_secrets: Vec<String>,
    /// Audience of the management API; defaults to `{issuer}/api`.
    pub management_audience: Option<String>,
    /// `EdDSA` (default) or `ES256`.
    pub signing_algorithm: String,
    /// Default access-token lifetime, when neither application nor resource sets one.
    pub access_token_ttl_secs: i64,
    /// Fixed client id/secret for the bootstrap admin application (automated deploys).
    pub bootstrap_client_id: Option<String>,
    pub bootstrap_client_secret: Option<String>,
    /// How long a node trusts its cached copy of an application or resource. Changes made
    /// through this node apply at once; changes made through another node apply within
    /// this time.
    pub client_cache_ttl_secs: u64,
    /// How often a node reloads signing keys from the store. Rotation activates new keys
    /// later than this, so every node knows a key before any node signs with it.
    pub key_refresh_interval_secs: u64,
    /// Logs as JSON lines instead of text.
    pub log_json: bool,
    /// Absolute lifetime of a browser session.
    pub session_ttl_secs: i64,
    /// A session unused for this long ends.
    pub session_idle_secs: i64,
    /// Time to finish signing in / consenting after `/oauth2/authorize`.
    pub interaction_ttl_secs: i64,
    /// Authorization codes are short-lived (RFC 6749 §4.1.2 recommends at most 10 minutes).
    pub authorization_code_ttl_secs: i64,
    /// A refresh token unused for this long expires (each use rotates it).
    pub refresh_token_idle_secs: i64,
    /// A refresh-token family ends this long after the user authorized, whatever its use.
    pub refresh_token_absolute_secs: i64,
    pub id_token_ttl_secs: i64,
    /// Argon2id cost for new password hashes (OWASP: m = 19 MiB, t = 2, p = 1).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Failed sign-ins allowed per account, and per client address, within the window.
    pub signin_max_failures_per_account: u32,
    pub signin_max_failures_per_address: u32,
    pub signin_throttle_window_secs: i64,
    /// Marks cookies `Secure`; defaults to true when the issuer is `https://`.
    pub secure_cookies: Option<bool>,
    /// PostgreSQL clusters the provisioning API creates databases in (`[[regions]]`).
    /// When none is configured and the issuer is a loopback URL (development), a local
    /// PostgreSQL at `local_region_url` becomes region `local` if it answers at start.
    pub regions: Vec<keyward_provision::Region>,
    pub local_region_url: String,
    /// Audience of the provisioning API; defaults to `{issuer}/v1`.
    pub provisioning_audience: Option<String>,
    /// How often each node looks for expired or deleted projects to drop.
    pub reaper_interval_secs: u64,
    /// `outbox` (default: each message becomes an `.eml` file in `{data_dir}/outbox/`, for
    /// development) or `smtp` (through `smtp_url`).
    pub mail_transport: String,
    /// `smtp://user:pass@host:port` (plain; add `?tls=required` for STARTTLS) or
    /// `smtps://user:pass@host:port` (implicit TLS). Required with `mail_transport = "smtp"`.
    pub smtp_url: Option<String>,
    /// The sender; defaults to `Keyward <no-reply@{issuer host}>`.
    pub mail_from: Option<String>,
    /// A send that takes longer is abandoned (connect, TLS and the whole SMTP dialogue).
    pub smtp_timeout_secs: u64,
    /// A request to an external application's server (token endpoint, revocation, proxied
    /// call) that takes longer is abandoned. Keep it under the 30 s refresh lease.
    pub external_timeout_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_max_connections: 16,
            master_secret: None,
            previous_master_secrets: Vec::new(),
            management_audience: None,
            signing_algorithm: "EdDSA".into(),
            access_token_ttl_secs: 3600,
            bootstrap_client_id: None,
            bootstrap_client_secret: None,
            client_cache_ttl_secs: 5,
            key_refresh_interval_secs: 30,
            log_json: false,
            session_ttl_secs: 14 * 24 * 3600,
            session_idle_secs: 3 * 24 * 3600,
            interaction_ttl_secs: 30 * 60,
            authorization_code_ttl_secs: 60,
            refresh_token_idle_secs: 14 * 24 * 3600,
            refresh_token_absolute_secs: 90 * 24 * 3600,
            id_token_ttl_secs: 3600,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            signin_max_failures_per_account: 10,
            signin_max_failures_per_address: 100,
            signin_throttle_window_secs: 15 * 60,
            secure_cookies: None,
            regions: Vec::new(),
            local_region_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            provisioning_audience: None,
            reaper_interval_secs: 30,
            mail_transport: "outbox".into(),
            smtp_url: None,
            mail_from: None,
            smtp_timeout_secs: 10,
            external_timeout_secs: 10,
        }
    }
}

impl Settings {
    pub fn issuer(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }

    pub fn management_audience(&self) -> String {
        self.management_audience
            .clone()
            .unwrap_or_else(|| format!("{}/api", self.issuer()))
    }

    pub fn provisioning_audience(&self) -> String {
        self.provisioning_audience
            .clone()
            .unwrap_or_else(|| format!("{}/v1", self.issuer()))
    }

    /// Development: an `http://` issuer on a loopback host.
    pub fn is_development(&self) -> bool {
        url::Url::parse(&self.issuer)
            .ok()
            .filter(|u| u.scheme() == "http")
            .and_then(|u| u.host_str().map(str::to_owned))
            .is_some_and(|host| {
                host == "localhost"
                    || host
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            })
    }

    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies
            .unwrap_or_else(|| self.issuer.starts_with("https://"))
    }

    pub fn argon2(&self) -> keyward_core::password::Argon2Params {
        keyward_core::password::Argon2Params {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("keyward.db").display()))
    }
}

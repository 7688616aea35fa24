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

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("keyward.db").display()))
    }
}

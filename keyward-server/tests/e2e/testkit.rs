//! Spawns a real Keyward server on a free loopback port, on SQLite (temp dir) or on a
//! fresh PostgreSQL database.

use std::sync::Arc;

use keyward_server::{AppState, Settings};
use serde_json::{json, Value};
use tempfile::TempDir;

pub const ADMIN_CLIENT_ID: &str = "admin-backend";
pub const ADMIN_SECRET: &str = "kws_test-admin-secret-0123456789abcdefghijklmnop";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    pub database_url: String,
    handle: tokio::task::JoinHandle<()>,
    _dir: Arc<TempDir>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

pub struct Options {
    pub signing_algorithm: &'static str,
    pub bootstrap: bool,
    pub client_cache_ttl_secs: u64,
    /// Reuse this database (a second node on the same store).
    pub database_url: Option<String>,
    /// The issuer, when it is not this node's own URL (nodes behind one public name).
    pub issuer: Option<String>,
    /// Database regions (default: the local test PostgreSQL, found by the start-up probe).
    pub regions: Vec<keyward_provision::Region>,
    /// `smtp://…` to send mail through SMTP instead of the outbox (`{data_dir}/outbox`).
    pub smtp_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            signing_algorithm: "EdDSA",
            bootstrap: true,
            client_cache_ttl_secs: 5,
            database_url: None,
            issuer: None,
            regions: Vec::new(),
            smtp_url: None,
        }
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, Options::default()).await
    }

    pub async fn start_with(backend: Backend, options: Options) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let database_url = match (&options.database_url, backend) {
            (Some(url), _) => url.clone(),
            (None, Backend::Sqlite) => keyward_store::test_support::sqlite_url_in(dir.path()),
            (None, Backend::Postgres) => keyward_store::test_support::fresh_postgres_url()
                .await
                .unwrap(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let settings = Settings {
            issuer: options.issuer.clone().unwrap_or_else(|| base.clone()),
            listen: format!("127.0.0.1:{port}"),
            data_dir: dir.path().to_path_buf(),
            database_url: Some(database_url.clone()),
            database_max_connections: 8,
            master_secret: Some("test-master-secret-0123456789abcdef".into()),
            signing_algorithm: options.signing_algorithm.into(),
            bootstrap_client_id: options.bootstrap.then(|| ADMIN_CLIENT_ID.to_owned()),
            bootstrap_client_secret: options.bootstrap.then(|| ADMIN_SECRET.to_owned()),
            client_cache_ttl_secs: options.client_cache_ttl_secs,
            local_region_url: keyward_store::test_support::test_postgres_server_url(),
            regions: options.regions.clone(),
            mail_transport: if options.smtp_url.is_some() {
                "smtp"
            } else {
                "outbox"
            }
            .into(),
            smtp_url: options.smtp_url.clone(),
            smtp_timeout_secs: 5,
            ..Settings::default()
        };
        let (state, _report) = keyward_server::prepare(settings).await.unwrap();
        let app = keyward_server::router(state.clone());
        let handle = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            base,
            state,
            http: reqwest::Client::new(),
            database_url,
            handle,
            _dir: dir,
        }
    }

    /// Where the outbox mail transport writes `.eml` files.
    pub fn outbox(&self) -> std::path::PathBuf {
        self.state.settings.data_dir.join("outbox")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn audience(&self) -> String {
        format!("{}/api", self.state.settings.issuer())
    }

    /// A management token for the bootstrap admin (every management scope).
    pub async fn admin_token(&self) -> String {
        self.token_for(ADMIN_CLIENT_ID, ADMIN_SECRET, &self.audience(), None)
            .await
    }

    pub async fn token_for(
        &self,
        client_id: &str,
        secret: &str,
        audience: &str,
        scope: Option<&str>,
    ) -> String {
        let mut body = json!({
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "audience": audience,
        });
        if let Some(scope) = scope {
            body["scope"] = scope.into();
        }
        let response = self
            .http
            .post(self.url("/oauth2/token"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "token request failed: {:?}",
            response.text().await
        );
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Sends a management request with a bearer token; returns status and JSON (or Null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Creates an m2m application with the given management scopes; returns (client_id, secret).
    pub async fn m2m_app(&self, scopes: &[&str]) -> (String, String) {
        let token = self.admin_token().await;
        let (status, body) = self
            .call(
                "POST",
                "/api/applications",
                &token,
                Some(json!({
                    "name": "test m2m",
                    "kind": "m2m",
                    "grants": [{ "resource": self.audience(), "scopes": scopes }],
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["application"]["client_id"]
                .as_str()
                .unwrap()
                .to_owned(),
            body["client_secret"].as_str().unwrap().to_owned(),
        )
    }
}

/// Runs each listed async test function against SQLite and PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testkit::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testkit::Backend::Postgres).await;
                }
            )*
        }
    };
}

//! `POST /api/external-applications/{id}/token` when no refresh is needed, in process:
//! the whole router (middleware, bearer verification, membership check, two store reads,
//! opening the sealed tokens) driven with `tower::ServiceExt::oneshot`, no sockets.
//! Prints latency percentiles per store. Target: p50 under 1 ms.
//!
//! `cargo bench -p keyward-server --bench external_token` (PostgreSQL from
//! `KEYWARD_TEST_POSTGRES_URL`, default the local server; skipped if it does not answer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use keyward_core::external::{
    ConnectionState, ConnectionTokens, ExternalApplication, ExternalConnection, ExternalProtocol,
    TokenAuthMethod,
};
use keyward_core::id::{new_id, IdKind};
use keyward_core::model::{Account, Membership, User};
use keyward_core::token::{mint_access_token, TokenGrant};
use keyward_core::{Role, UserStatus};
use keyward_server::{AppState, Settings};
use time::OffsetDateTime;
use tower::ServiceExt;

const REQUESTS: usize = 20_000;
const WARMUP: usize = 2_000;

async fn setup(database_url: String, dir: &std::path::Path) -> (AppState, String, String) {
    let settings = Settings {
        issuer: "http://127.0.0.1:9".into(),
        data_dir: dir.to_path_buf(),
        database_url: Some(database_url),
        master_secret: Some("bench-master-secret-0123456789abcdef".into()),
        bootstrap_client_id: Some("bench-admin".into()),
        bootstrap_client_secret: Some("kws_bench-admin-secret-0123456789abcdefghijklmnop".into()),
        local_region_url: "postgres://nobody@127.0.0.1:1/none".into(),
        ..Settings::default()
    };
    let (state, _) = keyward_server::prepare(settings).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let account = Account {
        id: new_id(IdKind::Account),
        name: "Bench".into(),
        parent_account_id: None,
        custom_data: serde_json::json!({}),
        created_at: now,
        updated_at: now,
    };
    state.store.create_account(&account).await.unwrap();
    let user = User {
        id: new_id(IdKind::User),
        username: None,
        primary_email: Some(format!("{}@example.com", new_id(IdKind::User))),
        primary_phone: None,
        name: None,
        avatar: None,
        profile: serde_json::json!({}),
        custom_data: serde_json::json!({}),
        identities: serde_json::json!({}),
        status: UserStatus::Active,
        application_id: None,
        external_id: None,
        external_source: None,
        password_digest: None,
        password_algorithm: None,
        last_sign_in_at: None,
        created_at: now,
        updated_at: now,
    };
    state.store.create_user(&user).await.unwrap();
    state
        .store
        .add_member(&Membership {
            id: new_id(IdKind::Membership),
            account_id: account.id.clone(),
            user_id: user.id.clone(),
            role: Role::Member,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let app_id = new_id(IdKind::ExternalApplication);
    let (secret, secret_key) =
        keyward_server::external::seal_client_secret(&state, &app_id, "secret").unwrap();
    state
        .store
        .create_external_application(&ExternalApplication {
            id: app_id.clone(),
            account_id: account.id.clone(),
            name: "Bench".into(),
            description: None,
            approval_prompt: "Bench".into(),
            client_id: "bench".into(),
            client_secret_sealed: secret,
            client_secret_key_id: secret_key,
            scopes: vec![],
            default_expires_in_secs: None,
            use_pkce: true,
            issuer: None,
            authorization_url: "https://example.com/authorize".into(),
            egress_hosts: vec!["example.com".into()],
            protocol: ExternalProtocol::Direct {
                token_url: "https://example.com/token".into(),
                revocation_url: None,
                token_auth_method: TokenAuthMethod::ClientSecretBasic,
            },
            enabled: true,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let connection_id = new_id(IdKind::Connection);
    let tokens = ConnectionTokens {
        access_token: "a".repeat(40),
        refresh_token: Some("r".repeat(40)),
        token_type: Some("Bearer".into()),
    };
    let (sealed, key_id) =
        keyward_server::external::seal_tokens(&state, &connection_id, &app_id, &user.id, &tokens)
            .unwrap();
    state
        .store
        .save_external_connection(&ExternalConnection {
            id: connection_id,
            external_application_id: app_id.clone(),
            user_id: user.id.clone(),
            state: ConnectionState::Active,
            tokens_sealed: sealed,
            key_id,
            scope: Some("read".into()),
            expires_at: Some(now + time::Duration::hours(12)),
            created_at: now,
            updated_at: now,
            last_refreshed_at: None,
        })
        .await
        .unwrap();
    let keys = state.keys.snapshot();
    let (token, _) = mint_access_token(
        &keys,
        TokenGrant {
            issuer: state.settings.issuer(),
            subject: &user.id,
            audience: &state.management_audience,
            client_id: "bench-web",
            scope: "connections:use".into(),
            ttl_secs: 3600,
            user_id: Some(user.id.clone()),
            application_id: None,
            account_id: None,
            role: None,
            grant_id: None,
        },
        now,
    )
    .unwrap();
    (state, app_id, token)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn run(name: &str, database_url: String) {
    let dir = tempfile::tempdir().unwrap();
    let (state, app_id, token) = setup(database_url, dir.path()).await;
    let router = keyward_server::router(state);
    let path = format!("/api/external-applications/{app_id}/token");
    let request = || {
        Request::post(&path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..WARMUP {
        let response = router.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let mut latencies = Vec::with_capacity(REQUESTS);
    let started = Instant::now();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let response = router.clone().oneshot(request()).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        latencies.push(t.elapsed());
        assert!(body.starts_with(b"{\"access_token\""));
    }
    let total = started.elapsed();
    latencies.sort();
    println!(
        "{name:8} {REQUESTS} sequential requests: p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  ({:.0} requests/s on one task)",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
        REQUESTS as f64 / total.as_secs_f64(),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        run(
            "sqlite",
            keyward_store::test_support::sqlite_url_in(dir.path()),
        )
        .await;
        match keyward_store::test_support::fresh_postgres_url().await {
            Ok(url) => run("postgres", url).await,
            Err(e) => println!("postgres skipped: {e}"),
        }
    });
}

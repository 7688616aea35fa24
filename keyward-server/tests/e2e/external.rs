//! External applications through the API, against a token endpoint started in the test
//! (the browser test in `tests/browser/external.test.mjs` does the whole flow against
//! Authlib's server): one refresh for 50 concurrent requests (one node, and two nodes on
//! one PostgreSQL database), the old refresh token kept when the server sends none,
//! `invalid_grant` → re-authorization, the refusals (disabled application, another user's
//! connection, another account's application, egress policy, a redirect to a private
//! address, tampered or swapped ciphertext) and vault rotation.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use keyward_core::external::{ConnectionState, ConnectionTokens, ExternalConnection};
use keyward_core::id::{new_id, IdKind};
use keyward_core::token::{mint_access_token, TokenGrant};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::on_both_stores;
use crate::testkit::{Backend, Options, TestServer};

/// A token endpoint that counts refreshes and can refuse them.
#[derive(Default)]
struct Provider {
    refreshes: AtomicU32,
    refuse: AtomicBool,
    /// Answer refreshes without a new refresh token.
    keep_refresh_token: AtomicBool,
    last_refresh_token: std::sync::Mutex<String>,
    /// Tokens sent to the RFC 7009 revocation endpoint.
    revoked: std::sync::Mutex<Vec<String>>,
}

async fn provider_revoke(
    State(p): State<Arc<Provider>>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> axum::http::StatusCode {
    if let Some(token) = form.get("token") {
        p.revoked.lock().unwrap().push(token.clone());
    }
    axum::http::StatusCode::OK
}

async fn provider_token(
    State(p): State<Arc<Provider>>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> (axum::http::StatusCode, Json<Value>) {
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        );
    }
    if p.refuse.load(Ordering::SeqCst) {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        );
    }
    *p.last_refresh_token.lock().unwrap() = form.get("refresh_token").cloned().unwrap_or_default();
    // Widen the window in which concurrent requests would start their own refresh.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = p.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
    let mut body = json!({
        "access_token": format!("access-{n}"),
        "token_type": "bearer",
        "expires_in": "3600",
        "scope": "read,write",
    });
    if !p.keep_refresh_token.load(Ordering::SeqCst) {
        body["refresh_token"] = format!("refresh-{n}").into();
    }
    (axum::http::StatusCode::OK, Json(body))
}

async fn start_provider() -> (String, Arc<Provider>) {
    let provider = Arc::new(Provider::default());
    let app = Router::new()
        .route("/token", post(provider_token))
        .route("/revoke", post(provider_revoke))
        .route(
            "/api/me",
            get(|headers: axum::http::HeaderMap| async move {
                Json(json!({
                    "authorization": headers.get("authorization").and_then(|v| v.to_str().ok()),
                }))
            }),
        )
        .route(
            "/to-metadata",
            get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [(
                        axum::http::header::LOCATION,
                        "http://169.254.169.254/latest/meta-data",
                    )],
                )
            }),
        )
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, provider)
}

struct Fixture {
    admin: String,
    account_id: String,
    app_id: String,
    user_id: String,
    provider_base: String,
    provider: Arc<Provider>,
}

async fn create_user(server: &TestServer, admin: &str, account_id: &str) -> String {
    let (status, user) = server
        .call(
            "POST",
            "/api/users",
            admin,
            Some(json!({ "primary_email": format!("{}@example.com", new_id(IdKind::User)) })),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let user_id = user["id"].as_str().unwrap().to_owned();
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/accounts/{account_id}/members"),
            admin,
            Some(json!({ "user_id": user_id, "role": "member" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    user_id
}

async fn fixture(server: &TestServer) -> Fixture {
    let admin = server.admin_token().await;
    let (provider_base, provider) = start_provider().await;
    let (status, account) = server
        .call(
            "POST",
            "/api/accounts",
            &admin,
            Some(json!({ "name": "Workspace" })),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    let account_id = account["id"].as_str().unwrap().to_owned();
    let user_id = create_user(server, &admin, &account_id).await;
    let port = provider_base.rsplit(':').next().unwrap();
    let (status, app) = server
        .call(
            "POST",
            &format!("/api/accounts/{account_id}/external-applications"),
            &admin,
            Some(json!({
                "name": "CRM",
                "approval_prompt": "Connect your CRM account",
                "client_id": "crm-client",
                "client_secret": "crm-secret",
                "scopes": ["read", "write"],
                "mode": "direct",
                "authorization_url": format!("{provider_base}/authorize"),
                "token_url": format!("{provider_base}/token"),
                "revocation_url": format!("{provider_base}/revoke"),
                "egress_hosts": [format!("127.0.0.1:{port}")],
            })),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    assert!(app.get("client_secret").is_none(), "{app}");
    Fixture {
        admin,
        account_id,
        app_id: app["id"].as_str().unwrap().to_owned(),
        user_id,
        provider_base,
        provider,
    }
}

/// Stores a connection for `user_id` whose access token expires in `expires_in_secs`.
async fn connect(server: &TestServer, app_id: &str, user_id: &str, expires_in_secs: i64) -> String {
    let state = &server.state;
    let now = OffsetDateTime::now_utc();
    let id = new_id(IdKind::Connection);
    let tokens = ConnectionTokens {
        access_token: format!("initial-{user_id}"),
        refresh_token: Some("refresh-0".into()),
        token_type: Some("bearer".into()),
    };
    let (sealed, key_id) =
        keyward_server::external::seal_tokens(state, &id, app_id, user_id, &tokens).unwrap();
    state
        .store
        .save_external_connection(&ExternalConnection {
            id: id.clone(),
            external_application_id: app_id.to_owned(),
            user_id: user_id.to_owned(),
            state: ConnectionState::Active,
            tokens_sealed: sealed,
            key_id,
            scope: Some("read write".into()),
            expires_at: Some(now + time::Duration::seconds(expires_in_secs)),
            created_at: now,
            updated_at: now,
            last_refreshed_at: None,
        })
        .await
        .unwrap();
    id
}

/// A user's access token for the management API with the connection scopes.
fn user_token(server: &TestServer, user_id: &str) -> String {
    let keys = server.state.keys.snapshot();
    mint_access_token(
        &keys,
        TokenGrant {
            issuer: server.state.settings.issuer(),
            subject: user_id,
            audience: &server.audience(),
            client_id: "test-web-app",
            scope: "connections:read connections:write connections:use external_applications:read"
                .into(),
            ttl_secs: 600,
            user_id: Some(user_id.to_owned()),
            application_id: None,
            account_id: None,
            role: None,
            grant_id: None,
        },
        OffsetDateTime::now_utc(),
    )
    .unwrap()
    .0
}

async fn external_token(server: &TestServer, token: &str, app_id: &str) -> (u16, Value) {
    server
        .call(
            "POST",
            &format!("/api/external-applications/{app_id}/token"),
            token,
            None,
        )
        .await
}

async fn fifty_concurrent_requests_refresh_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let f = fixture(&server).await;
    // Expires within the refresh margin: every request wants a refresh.
    connect(&server, &f.app_id, &f.user_id, 10).await;
    let token = user_token(&server, &f.user_id);
    let requests = (0..50).map(|_| external_token(&server, &token, &f.app_id));
    let answers = futures_util::future::join_all(requests).await;
    assert_eq!(f.provider.refreshes.load(Ordering::SeqCst), 1);
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["access_token"], "access-1", "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "read write");
        assert!(body["expires_in"].as_i64().unwrap() > 3500, "{body}");
    }
    // Valid now: no further refresh, and the rotated refresh token is what is stored.
    let (status, body) = external_token(&server, &token, &f.app_id).await;
    assert_eq!(
        (status, body["access_token"].clone()),
        (200, json!("access-1"))
    );
    assert_eq!(f.provider.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(*f.provider.last_refresh_token.lock().unwrap(), "refresh-0");
    let (status, body) = server
        .call(
            "GET",
            &format!("/api/external-applications/{}/connections", f.app_id),
            &f.admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["user_id"], f.user_id.as_str());
    assert!(body["data"][0]["last_refreshed_at"].is_string());
}

async fn refresh_keeps_the_old_refresh_token_when_none_is_sent(backend: Backend) {
    let server = TestServer::start(backend).await;
    let f = fixture(&server).await;
    f.provider.keep_refresh_token.store(true, Ordering::SeqCst);
    let connection_id = connect(&server, &f.app_id, &f.user_id, 10).await;
    let token = user_token(&server, &f.user_id);
    assert_eq!(external_token(&server, &token, &f.app_id).await.0, 200);
    let stored = server
        .state
        .store
        .get_external_connection(&connection_id)
        .await
        .unwrap()
        .unwrap();
    let tokens = keyward_server::external::open_tokens(&server.state, &stored)
        .await
        .unwrap();
    assert_eq!(tokens.access_token, "access-1");
    assert_eq!(tokens.refresh_token.as_deref(), Some("refresh-0"));
}

async fn refused_refresh_requires_reauthorization(backend: Backend) {
    let server = TestServer::start(backend).await;
    let f = fixture(&server).await;
    f.provider.refuse.store(true, Ordering::SeqCst);
    connect(&server, &f.app_id, &f.user_id, 10).await;
    let token = user_token(&server, &f.user_id);
    let (status, body) = external_token(&server, &token, &f.app_id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "reauthorization_required");
    let authorize_url = server.url(&format!("/external-applications/{}/authorize", f.app_id));
    assert_eq!(body["authorize_url"], authorize_url.as_str());
    assert!(body["detail"].as_str().unwrap().contains(&authorize_url));
    let (status, list) = server
        .call("GET", "/api/me/connections", &token, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["state"], "needs_reauthorization");
    // Stays refused without another call to the server.
    f.provider.refuse.store(false, Ordering::SeqCst);
    assert_eq!(external_token(&server, &token, &f.app_id).await.0, 409);
    assert_eq!(f.provider.refreshes.load(Ordering::SeqCst), 0);
}

async fn refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let f = fixture(&server).await;
    let connection_id = connect(&server, &f.app_id, &f.user_id, 3600).await;
    let token = user_token(&server, &f.user_id);
    let (status, body) = external_token(&server, &token, &f.app_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_token"], format!("initial-{}", f.user_id));

    // Another member: not connected, and never the first user's token or connection.
    let other = create_user(&server, &f.admin, &f.account_id).await;
    let other_token = user_token(&server, &other);
    let (status, body) = external_token(&server, &other_token, &f.app_id).await;
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("not_connected")),
        "{body}"
    );
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/me/connections/{connection_id}"),
            &other_token,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, list) = server
        .call("GET", "/api/me/connections", &other_token, None)
        .await;
    assert_eq!((status, list), (200, json!([])));

    // A user of another account does not see the application at all.
    let (_, account) = server
        .call(
            "POST",
            "/api/accounts",
            &f.admin,
            Some(json!({ "name": "Other" })),
        )
        .await;
    let stranger = create_user(&server, &f.admin, account["id"].as_str().unwrap()).await;
    let stranger_token = user_token(&server, &stranger);
    let (status, body) = external_token(&server, &stranger_token, &f.app_id).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = server
        .call(
            "GET",
            &format!("/api/external-applications/{}", f.app_id),
            &stranger_token,
            None,
        )
        .await;
    assert_eq!(status, 404);
    // A member (not admin) cannot manage it.
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/external-applications/{}/disable", f.app_id),
            &user_token_with(&server, &other, "external_applications:write"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (403, json!("not_allowed")),
        "{body}"
    );

    // Proxy: the token is injected; hosts off the policy and redirects to a private
    // address are refused.
    let (status, body) = proxy(
        &server,
        &token,
        &f.app_id,
        &format!("{}/api/me", f.provider_base),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["authorization"],
        format!("Bearer initial-{}", f.user_id)
    );
    let (status, body) = proxy(&server, &token, &f.app_id, "http://127.0.0.2:9/x").await;
    assert_eq!(
        (status, body["code"].clone()),
        (403, json!("egress_refused")),
        "{body}"
    );
    let (status, body) = proxy(
        &server,
        &token,
        &f.app_id,
        &format!("{}/to-metadata", f.provider_base),
    )
    .await;
    assert_eq!(
        (status, body["code"].clone()),
        (403, json!("egress_refused")),
        "{body}"
    );

    // Disabled: stored tokens kept but unusable; enabled: usable again.
    let action = |a: &'static str| {
        let path = format!("/api/external-applications/{}/{a}", f.app_id);
        let admin = f.admin.clone();
        let server = &server;
        async move { server.call("POST", &path, &admin, None).await }
    };
    let (status, body) = action("disable").await;
    assert_eq!((status, body["enabled"].clone()), (200, json!(false)));
    let (status, body) = external_token(&server, &token, &f.app_id).await;
    assert_eq!(
        (status, body["code"].clone()),
        (403, json!("external_application_disabled"))
    );
    let (status, _) = proxy(
        &server,
        &token,
        &f.app_id,
        &format!("{}/api/me", f.provider_base),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(action("enable").await.0, 200);
    assert_eq!(external_token(&server, &token, &f.app_id).await.0, 200);

    // Tampered ciphertext fails closed; so does a ciphertext moved to another user's row.
    let mut stored = server
        .state
        .store
        .get_external_connection(&connection_id)
        .await
        .unwrap()
        .unwrap();
    let original = stored.tokens_sealed.clone();
    let last = stored.tokens_sealed.len() - 1;
    stored.tokens_sealed[last] ^= 0x01;
    server
        .state
        .store
        .save_external_connection(&stored)
        .await
        .unwrap();
    let (status, body) = external_token(&server, &token, &f.app_id).await;
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("connection_unreadable")),
        "{body}"
    );
    let other_connection = connect(&server, &f.app_id, &other, 3600).await;
    let mut moved = server
        .state
        .store
        .get_external_connection(&other_connection)
        .await
        .unwrap()
        .unwrap();
    moved.tokens_sealed = original;
    server
        .state
        .store
        .save_external_connection(&moved)
        .await
        .unwrap();
    let (status, body) = external_token(&server, &other_token, &f.app_id).await;
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("connection_unreadable")),
        "{body}"
    );

    // Reset deletes every connection and keeps the configuration; delete removes it.
    assert_eq!(action("reset").await.0, 200);
    let (status, body) = external_token(&server, &token, &f.app_id).await;
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("not_connected"))
    );
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/external-applications/{}", f.app_id),
            &f.admin,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(external_token(&server, &token, &f.app_id).await.0, 404);
    let (_, events) = server
        .call("GET", "/api/audit-logs?limit=100", &f.admin, None)
        .await;
    let actions: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for expected in [
        "external_application.create",
        "external_application.disable",
        "external_application.enable",
        "external_application.reset",
        "external_application.delete",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
}

fn user_token_with(server: &TestServer, user_id: &str, scope: &str) -> String {
    let keys = server.state.keys.snapshot();
    mint_access_token(
        &keys,
        TokenGrant {
            issuer: server.state.settings.issuer(),
            subject: user_id,
            audience: &server.audience(),
            client_id: "test-web-app",
            scope: scope.into(),
            ttl_secs: 600,
            user_id: Some(user_id.to_owned()),
            application_id: None,
            account_id: None,
            role: None,
            grant_id: None,
        },
        OffsetDateTime::now_utc(),
    )
    .unwrap()
    .0
}

async fn proxy(server: &TestServer, token: &str, app_id: &str, url: &str) -> (u16, Value) {
    let path = format!(
        "/api/external-applications/{app_id}/proxy?url={}",
        url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
    );
    server.call("GET", &path, token, None).await
}

async fn validation_and_egress_policy_on_create(backend: Backend) {
    let server = TestServer::start(backend).await;
    let f = fixture(&server).await;
    let base = json!({
        "name": "Other",
        "approval_prompt": "p",
        "client_id": "c",
        "client_secret": "s",
        "mode": "direct",
        "authorization_url": "https://auth.example.com/authorize",
        "token_url": "https://auth.example.com/token",
        "egress_hosts": ["auth.example.com"],
    });
    let create = |body: Value| {
        let path = format!("/api/accounts/{}/external-applications", f.account_id);
        let admin = f.admin.clone();
        let server = &server;
        async move { server.call("POST", &path, &admin, Some(body)).await }
    };
    let mut off_policy = base.clone();
    off_policy["egress_hosts"] = json!(["other.example.com"]);
    let (status, body) = create(off_policy).await;
    assert_eq!(status, 422, "{body}");
    let mut no_prompt = base.clone();
    no_prompt["approval_prompt"] = json!(" ");
    assert_eq!(create(no_prompt).await.0, 422);
    let mut bad_template = base.clone();
    bad_template["mode"] = json!("private");
    bad_template.as_object_mut().unwrap().remove("token_url");
    bad_template["token_request"] = json!({
        "url": "https://auth.example.com/token",
        "body_format": "json",
        "body": { "code": "{{code}}" },
    });
    let (status, body) = create(bad_template).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = create(base.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(
        body["callback_url"],
        server.url(&format!(
            "/external-applications/{}/callback",
            body["id"].as_str().unwrap()
        ))
    );
    let (status, body) = create(base).await;
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("external_application_name_taken"))
    );
}

async fn vault_rotation_reseals_and_old_keys_still_open(backend: Backend) {
    let server = TestServer::start(backend).await;
    let f = fixture(&server).await;
    let connection_id = connect(&server, &f.app_id, &f.user_id, 3600).await;
    let before = server
        .state
        .store
        .get_external_connection(&connection_id)
        .await
        .unwrap()
        .unwrap();
    // A second node on the same store still holds the old key set.
    let second = if backend == Backend::Postgres {
        Some(
            TestServer::start_with(
                backend,
                Options {
                    database_url: Some(server.database_url.clone()),
                    issuer: Some(server.base.clone()),
                    ..Options::default()
                },
            )
            .await,
        )
    } else {
        None
    };
    let rotation = keyward_server::vault::rotate(&server.state).await.unwrap();
    assert_eq!(rotation.connections_resealed, 1);
    assert_eq!(rotation.client_secrets_resealed, 1);
    assert_eq!(rotation.keys_retired, 1);
    let after = server
        .state
        .store
        .get_external_connection(&connection_id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(after.key_id, before.key_id);
    assert_eq!(after.key_id, rotation.new_key_id);
    let token = user_token(&server, &f.user_id);
    let (status, body) = external_token(&server, &token, &f.app_id).await;
    assert_eq!(status, 200, "{body}");
    if let Some(second) = second {
        // It meets the new key id, reloads, and opens.
        let (status, body) = external_token(&second, &token, &f.app_id).await;
        assert_eq!(status, 200, "{body}");
    }
    // The retired key still opens what it sealed.
    let ring = server.state.vault().unwrap();
    assert!(!ring.is_current(&before.tokens_sealed));
    assert!(
        keyward_server::external::open_tokens(&server.state, &before)
            .await
            .is_ok()
    );
}

/// Two nodes on one PostgreSQL database: the lease is in the row, so still one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_postgres_refresh_once() {
    let first = TestServer::start(Backend::Postgres).await;
    let second = TestServer::start_with(
        Backend::Postgres,
        Options {
            database_url: Some(first.database_url.clone()),
            issuer: Some(first.base.clone()),
            ..Options::default()
        },
    )
    .await;
    let f = fixture(&first).await;
    connect(&first, &f.app_id, &f.user_id, 10).await;
    let token = user_token(&first, &f.user_id);
    let requests = (0..50).map(|i| {
        let server = if i % 2 == 0 { &first } else { &second };
        external_token(server, &token, &f.app_id)
    });
    let answers = futures_util::future::join_all(requests).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["access_token"], "access-1");
    }
    assert_eq!(f.provider.refreshes.load(Ordering::SeqCst), 1);
}

/// Waits (a little) for the background revocation to reach the provider.
async fn revoked_eventually(provider: &Provider, token: &str) -> bool {
    for _ in 0..100 {
        if provider.revoked.lock().unwrap().iter().any(|t| t == token) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Deleting a user, or an account with its external applications, deletes the
/// connections and revokes their tokens at the server (RFC 7009), as a reset does.
async fn deleting_a_user_or_account_revokes_connections(backend: Backend) {
    let server = TestServer::start(backend).await;
    let f = fixture(&server).await;
    let bob = create_user(&server, &f.admin, &f.account_id).await;
    connect(&server, &f.app_id, &f.user_id, 3600).await;
    connect(&server, &f.app_id, &bob, 3600).await;

    let (status, body) = server
        .call("DELETE", &format!("/api/users/{bob}"), &f.admin, None)
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(revoked_eventually(&f.provider, &format!("initial-{bob}")).await);
    assert!(!f
        .provider
        .revoked
        .lock()
        .unwrap()
        .contains(&format!("initial-{}", f.user_id)));
    let (status, body) = server
        .call(
            "GET",
            &format!("/api/external-applications/{}/connections", f.app_id),
            &f.admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");

    // A child account's application goes with the cascade, and its connections' tokens too.
    let (status, child) = server
        .call(
            "POST",
            &format!("/api/accounts/{}/accounts", f.account_id),
            &f.admin,
            Some(json!({ "name": "Team" })),
        )
        .await;
    assert_eq!(status, 201, "{child}");
    let port = f.provider_base.rsplit(':').next().unwrap();
    let (status, child_app) = server
        .call(
            "POST",
            &format!(
                "/api/accounts/{}/external-applications",
                child["id"].as_str().unwrap()
            ),
            &f.admin,
            Some(json!({
                "name": "Team CRM",
                "approval_prompt": "Connect the team's CRM",
                "client_id": "team-client",
                "client_secret": "team-secret",
                "mode": "direct",
                "authorization_url": format!("{}/authorize", f.provider_base),
                "token_url": format!("{}/token", f.provider_base),
                "revocation_url": format!("{}/revoke", f.provider_base),
                "egress_hosts": [format!("127.0.0.1:{port}")],
            })),
        )
        .await;
    assert_eq!(status, 201, "{child_app}");
    let carol = create_user(&server, &f.admin, &f.account_id).await;
    connect(&server, child_app["id"].as_str().unwrap(), &carol, 3600).await;

    let (status, body) = server
        .call(
            "DELETE",
            &format!("/api/accounts/{}?cascade=true", f.account_id),
            &f.admin,
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(revoked_eventually(&f.provider, &format!("initial-{}", f.user_id)).await);
    assert!(revoked_eventually(&f.provider, &format!("initial-{carol}")).await);
    let (status, _) = server
        .call(
            "GET",
            &format!("/api/external-applications/{}", f.app_id),
            &f.admin,
            None,
        )
        .await;
    assert_eq!(status, 404);
}

on_both_stores!(
    deleting_a_user_or_account_revokes_connections,
    fifty_concurrent_requests_refresh_once,
    refresh_keeps_the_old_refresh_token_when_none_is_sent,
    refused_refresh_requires_reauthorization,
    refusals,
    validation_and_egress_policy_on_create,
    vault_rotation_reseals_and_old_keys_still_open,
);

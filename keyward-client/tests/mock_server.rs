//! The client against a small in-process fake of Keyward's HTTP contract: token caching
//! and sharing, client authentication, error mapping and the 401 retry.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Form, Json, Router};
use keyward_client::proto::{CreateChildAccount, CreateUser, Role, UserStatus};
use keyward_client::{basic_authorization, AdminClient, Error, OAuthClient, UserQuery};
use serde_json::{json, Value};

const CLIENT_ID: &str = "backend admin";
const CLIENT_SECRET: &str = "s3cr:t/+";

#[derive(Default)]
struct Fake {
    token_requests: AtomicUsize,
    /// Token bodies seen, for assertions.
    forms: Mutex<Vec<HashMap<String, String>>>,
    /// Tokens the API accepts; the first issued token is rejected once to test the retry.
    revoked_first: Mutex<bool>,
    api_requests: AtomicUsize,
}

type Shared = Arc<Fake>;

async fn token(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let n = fake.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    fake.forms.lock().unwrap().push(form.clone());
    // Slow enough that concurrent callers overlap.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let expected = basic_authorization(CLIENT_ID, CLIENT_SECRET);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "bad credentials"})),
        )
            .into_response();
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let expires_in = if form.get("audience").map(String::as_str) == Some("short") {
        10
    } else {
        3600
    };
    Json(json!({
        "access_token": format!("tok{n}"),
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": form.get("scope").cloned().unwrap_or_else(|| "all".into()),
    }))
    .into_response()
}

fn problem(status: StatusCode, code: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({"type": "about:blank", "title": "x", "status": status.as_u16(), "code": code})
            .to_string(),
    )
        .into_response()
}

fn authorized(fake: &Fake, headers: &HeaderMap) -> Result<(), Response> {
    fake.api_requests.fetch_add(1, Ordering::SeqCst);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let mut revoked = fake.revoked_first.lock().unwrap();
    if bearer == "tok1" && !*revoked {
        *revoked = true;
        return Err(problem(StatusCode::UNAUTHORIZED, "invalid_token"));
    }
    if bearer.is_empty() || bearer == "tok1" {
        return Err(problem(StatusCode::UNAUTHORIZED, "invalid_token"));
    }
    Ok(())
}

const NOW: &str = "2025-01-01T00:00:00Z";

async fn create_app_user(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(app): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = authorized(&fake, &headers) {
        return r;
    }
    assert_eq!(body, json!({"status": "active"}));
    (
        StatusCode::CREATED,
        Json(json!({
            "id": "usr_1", "username": null, "primary_email": null, "primary_phone": null,
            "name": null, "avatar": null, "profile": {}, "custom_data": {}, "identities": {},
            "status": "active", "application_id": app, "external_id": null,
            "has_password": false, "last_sign_in_at": null, "created_at": NOW, "updated_at": NOW
        })),
    )
        .into_response()
}

async fn create_child(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(parent): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = authorized(&fake, &headers) {
        return r;
    }
    (
        StatusCode::CREATED,
        Json(json!({
            "id": "acc_child", "name": body["name"], "parent_account_id": parent,
            "custom_data": {}, "created_at": NOW, "updated_at": NOW
        })),
    )
        .into_response()
}

async fn delete_account(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorized(&fake, &headers) {
        return r;
    }
    if id == "acc_parent" && query.get("cascade").map(String::as_str) != Some("true") {
        return problem(StatusCode::CONFLICT, "account_has_children");
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn add_member(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = authorized(&fake, &headers) {
        return r;
    }
    (
        StatusCode::CREATED,
        Json(json!({
            "id": "mem_1", "account_id": account, "user_id": body["user_id"], "role": body["role"],
            "created_at": NOW, "updated_at": NOW
        })),
    )
        .into_response()
}

async fn list_users(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorized(&fake, &headers) {
        return r;
    }
    assert_eq!(query.get("status").map(String::as_str), Some("active"));
    let user = |id: &str| {
        json!({
            "id": id, "username": null, "primary_email": null, "primary_phone": null,
            "name": null, "avatar": null, "profile": {}, "custom_data": {}, "identities": {},
            "status": "active", "application_id": null, "external_id": null,
            "has_password": false, "created_at": NOW, "updated_at": NOW
        })
    };
    let (data, next) = match query.get("cursor").map(String::as_str) {
        None => (vec![user("usr_a"), user("usr_b")], Some("usr_b")),
        Some("usr_b") => (vec![user("usr_c")], None),
        Some(other) => panic!("unexpected cursor {other}"),
    };
    Json(json!({"data": data, "pagination": {"next_cursor": next, "has_more": next.is_some()}}))
        .into_response()
}

async fn spawn_fake() -> (String, Shared) {
    let fake = Shared::default();
    let app = Router::new()
        .route("/oauth2/token", post(token))
        .route("/api/applications/{id}/users", post(create_app_user))
        .route("/api/accounts/{id}/accounts", post(create_child))
        .route("/api/accounts/{id}", delete(delete_account))
        .route("/api/accounts/{id}/members", post(add_member))
        .route("/api/users", axum::routing::get(list_users))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_token_request() {
    let (base, fake) = spawn_fake().await;
    let oauth = Arc::new(OAuthClient::new(
        format!("{base}/oauth2/token"),
        CLIENT_ID,
        CLIENT_SECRET,
    ));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let oauth = oauth.clone();
        tasks.push(tokio::spawn(async move {
            oauth.client_credentials("https://api").await
        }));
    }
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap().unwrap());
    }
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    assert!(tokens
        .iter()
        .all(|t| t.access_token == "tok1" && t.token_type == "Bearer"));
    assert!(tokens[0].remaining() > Duration::from_secs(3500));

    // Cached: no new request. Another scope or audience: a new one.
    oauth.client_credentials("https://api").await.unwrap();
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    let scoped = oauth
        .client_credentials_with_scope("https://api", Some("users:read"))
        .await
        .unwrap();
    assert_eq!(scoped.scope.as_deref(), Some("users:read"));
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);

    // A 10 s token is inside the 30 s refresh margin, so it is never reused.
    oauth.client_credentials("short").await.unwrap();
    oauth.client_credentials("short").await.unwrap();
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 4);

    // Invalidation forces a refetch.
    oauth.invalidate("https://api", None).await;
    let fresh = oauth.client_credentials("https://api").await.unwrap();
    assert_eq!(fresh.access_token, "tok5");

    // The body carries grant_type and audience; the credentials go in the Basic header.
    let forms = fake.forms.lock().unwrap();
    assert_eq!(
        forms[0].get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
    assert_eq!(
        forms[0].get("audience").map(String::as_str),
        Some("https://api")
    );
    assert!(!forms[0].contains_key("client_id") && !forms[0].contains_key("client_secret"));
    assert!(!forms[0].contains_key("scope"));
}

#[tokio::test]
async fn token_errors_are_oauth_errors() {
    let (base, _fake) = spawn_fake().await;
    let oauth = OAuthClient::new(format!("{base}/oauth2/token"), CLIENT_ID, "wrong");
    let err = oauth.client_credentials("https://api").await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_client"));
    assert!(matches!(err, Error::OAuth { status: 401, .. }), "{err:?}");
}

#[tokio::test]
async fn admin_client_runs_the_seed_calls_and_retries_a_rejected_token() {
    let (base, fake) = spawn_fake().await;
    let oauth = Arc::new(OAuthClient::new(
        format!("{base}/oauth2/token"),
        CLIENT_ID,
        CLIENT_SECRET,
    ));
    let api = AdminClient::with_oauth(&base, oauth, format!("{base}/api"));

    // The first token (tok1) is refused once: the client fetches tok2 and retries.
    let user = api
        .create_application_user(
            "app_1",
            &CreateUser {
                status: Some(UserStatus::Active),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(user.application_id.as_deref(), Some("app_1"));
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(fake.api_requests.load(Ordering::SeqCst), 2);

    let account = api
        .create_child_account(
            "acc_parent",
            &CreateChildAccount {
                name: "ops-provisioned".into(),
                custom_data: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(account.parent_account_id.as_deref(), Some("acc_parent"));
    let membership = api
        .add_account_member(&account.id, &user.id, Role::Viewer)
        .await
        .unwrap();
    assert_eq!(membership.role, Role::Viewer);
    assert_eq!(
        fake.token_requests.load(Ordering::SeqCst),
        2,
        "token reused"
    );

    let err = api.delete_account("acc_parent", false).await.unwrap_err();
    assert_eq!(err.code(), Some("account_has_children"));
    assert_eq!(err.status(), Some(409));
    api.delete_account("acc_parent", true).await.unwrap();

    let users = api
        .list_all_users(&UserQuery {
            status: Some(UserStatus::Active),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["usr_a", "usr_b", "usr_c"]);

    // An id that would change the path is refused before anything is sent.
    assert!(matches!(
        api.delete_user("..", false).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn a_static_token_is_not_retried() {
    let (base, fake) = spawn_fake().await;
    let api = AdminClient::new(&base, "tok1");
    let err = api.delete_account("acc_x", false).await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_token"));
    assert_eq!(fake.api_requests.load(Ordering::SeqCst), 1);
}

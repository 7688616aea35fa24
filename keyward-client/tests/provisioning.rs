//! `ProvisioningClient` and the authorization-code exchange against an in-process fake
//! that checks every request's method, path, headers and body.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use keyward_client::proto::provisioning::{
    CreateConnection, CreateDatabase, CreateProject, UpdateProject,
};
use keyward_client::{
    basic_authorization, pkce_challenge, Error, ListQuery, OAuthClient, Pkce, ProvisioningClient,
    PROVISIONING_SCOPE,
};
use serde_json::{json, Value};

const CLIENT_ID: &str = "app_partner";
const CLIENT_SECRET: &str = "kws_p+/=";
const TS: &str = "2025-01-31T12:00:00Z";

/// One API request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Option<Value>,
}

/// A token request: its `Authorization` header and its form.
type TokenRequest = (Option<String>, HashMap<String, String>);

#[derive(Default)]
struct Fake {
    token_forms: Mutex<Vec<TokenRequest>>,
    tokens_issued: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    /// The API refuses the first integration token once with 401.
    reject_first: Mutex<bool>,
}

type Shared = Arc<Fake>;

fn region() -> Value {
    json!({"id": "eu-central", "name": "Frankfurt"})
}

fn connection(password: bool) -> Value {
    let mut c = json!({
        "id": "con_1", "databaseId": "db_1", "name": "default",
        "endpoints": {"direct": {"host": "db.example", "port": 5432}},
        "user": "u_1", "database": "d_1", "createdAt": TS, "rotatedAt": null
    });
    if password {
        c["password"] = json!("pw");
        c["connectionString"] = json!("postgresql://u_1:pw@db.example:5432/d_1");
    }
    c
}

fn database() -> Value {
    json!({
        "id": "db_1", "type": "database", "projectId": "prj_1", "name": "main",
        "status": "ready", "isDefault": true, "region": region(), "createdAt": TS,
        "connectionString": "postgresql://u_1:pw@db.example:5432/d_1",
        "connections": [connection(true)]
    })
}

fn project(workspace: &str) -> Value {
    json!({
        "id": "prj_1", "type": "project", "name": "my-app", "status": "active",
        "workspace": {"id": "ws_1", "name": workspace}, "region": region(),
        "createdAt": TS, "expiresAt": "2025-02-01T12:00:00Z", "claimedAt": null,
        "claimUrl": "http://partner/claim?token=ct_1", "database": database()
    })
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        Json(
            json!({"type": "about:blank", "title": "x", "status": status.as_u16(),
                    "detail": detail, "code": code}),
        ),
    )
        .into_response()
}

async fn token(
    State(fake): State<Shared>,
    headers: axum::http::HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    fake.token_forms.lock().unwrap().push((auth, form.clone()));
    if form["grant_type"] == "authorization_code" {
        if form.get("code").map(String::as_str) != Some("good-code") {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_grant", "error_description": "code already used"})),
            )
                .into_response();
        }
        return Json(json!({"access_token": "user-at", "token_type": "Bearer",
                           "expires_in": 900, "scope": "workspace:admin"}))
        .into_response();
    }
    let n = fake.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    Json(json!({"access_token": format!("int{n}"), "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}

async fn api(State(fake): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let seen = Seen {
        method: parts.method.clone(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        authorization: header(header::AUTHORIZATION),
        content_type: header(header::CONTENT_TYPE),
        body: (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).unwrap()),
    };
    fake.seen.lock().unwrap().push(seen.clone());
    {
        let mut reject = fake.reject_first.lock().unwrap();
        if *reject && seen.authorization.as_deref() == Some("Bearer int1") {
            *reject = false;
            return problem(StatusCode::UNAUTHORIZED, "invalid_token", "expired");
        }
    }
    let path = parts.uri.path();
    let data = |value: Value| Json(json!({ "data": value })).into_response();
    match (parts.method.as_str(), path) {
        ("GET", "/v1/regions") => Json(json!({
            "data": [{"id": "eu-central", "name": "Frankfurt", "status": "available"}],
            "pagination": {"nextCursor": null, "hasMore": false}
        }))
        .into_response(),
        ("POST", "/v1/projects") => (StatusCode::CREATED, data(project("Partner"))).into_response(),
        ("GET", "/v1/projects") => Json(json!({
            "data": [project("Partner")],
            "pagination": {"nextCursor": "prj_1", "hasMore": true}
        }))
        .into_response(),
        ("GET" | "PATCH", "/v1/projects/prj_1") => data(project("Partner")),
        ("DELETE", "/v1/projects/prj_1") | ("DELETE", "/v1/databases/db_1") => {
            StatusCode::NO_CONTENT.into_response()
        }
        ("DELETE", "/v1/connections/con_1") => StatusCode::NO_CONTENT.into_response(),
        // A list without pagination.
        ("GET", "/v1/projects/prj_1/databases") => {
            Json(json!({"data": [database()]})).into_response()
        }
        ("POST", "/v1/projects/prj_1/databases") => {
            (StatusCode::CREATED, data(database())).into_response()
        }
        ("GET", "/v1/databases/db_1") => data(database()),
        ("POST", "/v1/databases/db_1/connections") => {
            (StatusCode::CREATED, data(connection(true))).into_response()
        }
        ("POST", "/v1/connections/con_1/rotate") => data(connection(true)),
        ("POST", "/v1/claims/lookup") => match seen.body.as_ref().and_then(|b| b["token"].as_str())
        {
            Some("ct_1") => data(json!({"projectId": "prj_1", "projectName": "my-app",
                                        "partnerName": "Acme", "region": region(),
                                        "expiresAt": "2025-02-01T12:00:00Z"})),
            Some("ct_old") => problem(StatusCode::GONE, "claim_expired", "the claim expired"),
            _ => problem(StatusCode::NOT_FOUND, "claim_not_found", "no such claim"),
        },
        ("POST", "/v1/projects/prj_1/transfer") => data(project("Ada")),
        _ => problem(StatusCode::NOT_FOUND, "not_found", "no route"),
    }
}

async fn spawn_fake() -> (String, Shared) {
    let fake = Shared::default();
    let app = Router::new()
        .route("/oauth2/token", post(token))
        .fallback(api)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

fn oauth(base: &str) -> Arc<OAuthClient> {
    Arc::new(OAuthClient::new(
        format!("{base}/oauth2/token"),
        CLIENT_ID,
        CLIENT_SECRET,
    ))
}

fn last(fake: &Fake) -> Seen {
    fake.seen.lock().unwrap().last().cloned().unwrap()
}

#[tokio::test]
async fn every_endpoint_sends_the_documented_request() {
    let (base, fake) = spawn_fake().await;
    let audience = format!("{base}/v1");
    let api = ProvisioningClient::with_oauth(&base, oauth(&base), &audience);

    let regions = api.regions().await.unwrap();
    assert_eq!(regions[0].id, "eu-central");
    let seen = last(&fake);
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::GET, "/v1/regions")
    );
    assert_eq!(seen.authorization.as_deref(), Some("Bearer int1"));
    assert!(seen.body.is_none());
    // The integration token: client_secret_basic, the provisioning audience and scopes.
    let (auth, form) = fake.token_forms.lock().unwrap()[0].clone();
    assert_eq!(
        auth.as_deref(),
        Some(basic_authorization(CLIENT_ID, CLIENT_SECRET).as_str())
    );
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["audience"], audience);
    assert_eq!(form["scope"], PROVISIONING_SCOPE);

    let created = api
        .create_project(&CreateProject {
            name: "my-app".into(),
            region: Some("eu-central".into()),
            ttl_seconds: None,
        })
        .await
        .unwrap();
    assert_eq!(
        created.database.unwrap().connection_string.as_deref(),
        Some("postgresql://u_1:pw@db.example:5432/d_1")
    );
    assert_eq!(
        created.claim_url.as_deref(),
        Some("http://partner/claim?token=ct_1")
    );
    let seen = last(&fake);
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::POST, "/v1/projects")
    );
    assert_eq!(seen.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen.body.unwrap(),
        json!({"name": "my-app", "region": "eu-central"})
    );

    let page = api
        .list_projects(&ListQuery {
            cursor: Some("c0".into()),
            limit: Some(10),
        })
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);
    assert!(page.pagination.has_more);
    assert_eq!(last(&fake).path, "/v1/projects?cursor=c0&limit=10");

    api.get_project("prj_1").await.unwrap();
    assert_eq!(last(&fake).method, Method::GET);
    api.update_project(
        "prj_1",
        &UpdateProject {
            name: Some("renamed".into()),
        },
    )
    .await
    .unwrap();
    let seen = last(&fake);
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::PATCH, "/v1/projects/prj_1")
    );
    assert_eq!(seen.body.unwrap(), json!({"name": "renamed"}));

    let databases = api.list_databases("prj_1").await.unwrap();
    assert_eq!(databases.data[0].id, "db_1");
    assert!(!databases.pagination.has_more);
    api.create_database("prj_1", &CreateDatabase { name: None })
        .await
        .unwrap();
    let seen = last(&fake);
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::POST, "/v1/projects/prj_1/databases")
    );
    assert_eq!(seen.body.unwrap(), json!({}));
    api.get_database("db_1").await.unwrap();
    assert_eq!(last(&fake).path, "/v1/databases/db_1");

    let connection = api
        .create_connection(
            "db_1",
            &CreateConnection {
                name: Some("ci".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(connection.password.as_deref(), Some("pw"));
    let seen = last(&fake);
    assert_eq!(seen.path, "/v1/databases/db_1/connections");
    assert_eq!(seen.body.unwrap(), json!({"name": "ci"}));
    let rotated = api.rotate_connection("con_1").await.unwrap();
    assert!(rotated.connection_string.is_some());
    let seen = last(&fake);
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::POST, "/v1/connections/con_1/rotate")
    );
    assert!(seen.body.is_none());

    api.delete_connection("con_1").await.unwrap();
    assert_eq!(last(&fake).method, Method::DELETE);
    api.delete_database("db_1").await.unwrap();
    assert_eq!(last(&fake).path, "/v1/databases/db_1");
    api.delete_project("prj_1").await.unwrap();
    assert_eq!(last(&fake).path, "/v1/projects/prj_1");

    let claim = api.lookup_claim("ct_1").await.unwrap();
    assert_eq!(claim.project_id, "prj_1");
    assert_eq!(claim.partner_name, "Acme");
    let seen = last(&fake);
    assert_eq!(seen.path, "/v1/claims/lookup");
    assert_eq!(seen.body.unwrap(), json!({"token": "ct_1"}));

    let moved = api.transfer_project("prj_1", "user-at").await.unwrap();
    assert_eq!(moved.workspace.name, "Ada");
    let seen = last(&fake);
    assert_eq!(seen.path, "/v1/projects/prj_1/transfer");
    assert_eq!(seen.authorization.as_deref(), Some("Bearer int1"));
    assert_eq!(
        seen.body.unwrap(),
        json!({"recipientAccessToken": "user-at"})
    );

    // One token for everything.
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn claim_errors_are_problems_with_their_status() {
    let (base, _fake) = spawn_fake().await;
    let api = ProvisioningClient::new(&base, "static");
    let expired = api.lookup_claim("ct_old").await.unwrap_err();
    assert_eq!(expired.status(), Some(410));
    assert_eq!(expired.code(), Some("claim_expired"));
    let unknown = api.lookup_claim("ct_x").await.unwrap_err();
    assert!(unknown.is_not_found());
    assert_eq!(unknown.code(), Some("claim_not_found"));
    match api.get_project("prj_2").await.unwrap_err() {
        Error::Api { problem, .. } => assert_eq!(problem.detail.as_deref(), Some("no route")),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        api.get_database("").await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn a_rejected_integration_token_is_replaced_once() {
    let (base, fake) = spawn_fake().await;
    *fake.reject_first.lock().unwrap() = true;
    let api = ProvisioningClient::with_oauth(&base, oauth(&base), format!("{base}/v1"));
    api.regions().await.unwrap();
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 2);
    assert_eq!(last(&fake).authorization.as_deref(), Some("Bearer int2"));
}

#[tokio::test]
async fn the_code_exchange_uses_client_secret_post_and_the_verifier() {
    let (base, fake) = spawn_fake().await;
    let client = oauth(&base);
    let pkce = Pkce::generate();
    assert_eq!(pkce.challenge, pkce_challenge(&pkce.verifier));
    let tokens = client
        .exchange_authorization_code("good-code", "http://partner/claim/callback", &pkce.verifier)
        .await
        .unwrap();
    assert_eq!(tokens.access_token, "user-at");
    assert_eq!(tokens.scope.as_deref(), Some("workspace:admin"));
    let (auth, form) = fake.token_forms.lock().unwrap()[0].clone();
    assert_eq!(
        auth, None,
        "client_secret_post sends no Authorization header"
    );
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "good-code");
    assert_eq!(form["redirect_uri"], "http://partner/claim/callback");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_eq!(form["code_verifier"], pkce.verifier);
    assert_eq!(form.len(), 6);

    let refused = client
        .exchange_authorization_code("spent", "http://partner/claim/callback", &pkce.verifier)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("invalid_grant"));
    assert!(refused.to_string().contains("code already used"));
    assert!(matches!(
        client.exchange_authorization_code("", "x", "y").await,
        Err(Error::InvalidArgument(_))
    ));
}

//! The partner service and `create_db` against a small in-process fake of Keyward (token
//! endpoint, authorization endpoint, provisioning API): create, rate limit, claim pages,
//! the whole claim path and every refusal of the callback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use keyward_client::{basic_authorization, pkce_challenge};
use keyward_partner::{create_db, router, CreateDbArgs, CreateDbCommand, PartnerConfig};
use serde_json::{json, Value};
use time::OffsetDateTime;
use url::Url;

const CLIENT_ID: &str = "app_partner";
const CLIENT_SECRET: &str = "kws_partner+secret/=";
const INTEGRATION_TOKEN: &str = "integration-token";
const USER_WORKSPACE: &str = "Ada Lovelace";

// ---------------------------------------------------------------------------------------
// The fake Keyward
// ---------------------------------------------------------------------------------------

struct FakeProject {
    id: String,
    name: String,
    expired: bool,
    refuse_transfer: bool,
    claimed: bool,
}

struct CodeGrant {
    challenge: String,
    redirect_uri: String,
}

#[derive(Default)]
struct Fake {
    issuer: Mutex<String>,
    claim_uri: Mutex<String>,
    counter: AtomicUsize,
    /// By claim token.
    projects: Mutex<HashMap<String, FakeProject>>,
    codes: Mutex<HashMap<String, CodeGrant>>,
    user_tokens: Mutex<HashSet<String>>,
    /// Every token request body.
    token_forms: Mutex<Vec<HashMap<String, String>>>,
    /// Every authorization request's query.
    authorize_queries: Mutex<Vec<HashMap<String, String>>>,
    /// Every `POST /v1/projects` body.
    create_bodies: Mutex<Vec<Value>>,
    /// (project id, recipient token) of successful transfers.
    transfers: Mutex<Vec<(String, String)>>,
    /// The authorization endpoint answers `access_denied`.
    deny: AtomicBool,
}

type Shared = Arc<Fake>;

impl Fake {
    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A claimable project; returns its claim token.
    fn seed(&self, name: &str, expired: bool, refuse_transfer: bool) -> String {
        let n = self.next();
        let token = format!("ct_{n}");
        self.projects.lock().unwrap().insert(
            token.clone(),
            FakeProject {
                id: format!("prj_{n}"),
                name: name.to_owned(),
                expired,
                refuse_transfer,
                claimed: false,
            },
        );
        token
    }

    fn issuer(&self) -> String {
        self.issuer.lock().unwrap().clone()
    }
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        Json(json!({
            "type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(),
            "detail": detail, "code": code
        })),
    )
        .into_response()
}

fn require_integration(headers: &HeaderMap) -> Result<(), Response> {
    let expected = format!("Bearer {INTEGRATION_TOKEN}");
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&expected)
    {
        Ok(())
    } else {
        Err(problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bad token",
        ))
    }
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn in_secs(secs: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn region() -> Value {
    json!({"id": "eu-central", "name": "Frankfurt"})
}

async fn token(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    fake.token_forms.lock().unwrap().push(form.clone());
    let oauth_error =
        |error: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            let expected = basic_authorization(CLIENT_ID, CLIENT_SECRET);
            if headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                != Some(&expected)
            {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "invalid_client"})),
                )
                    .into_response();
            }
            if form.get("audience") != Some(&format!("{}/v1", fake.issuer()))
                || form.get("scope").map(String::as_str) != Some("projects:read projects:write")
            {
                return oauth_error("invalid_target");
            }
            Json(
                json!({"access_token": INTEGRATION_TOKEN, "token_type": "Bearer",
                        "expires_in": 3600, "scope": "projects:read projects:write"}),
            )
            .into_response()
        }
        Some("authorization_code") => {
            // client_secret_post: no Authorization header, credentials in the body.
            if headers.contains_key(header::AUTHORIZATION)
                || form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
            {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "invalid_client"})),
                )
                    .into_response();
            }
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(grant) = fake.codes.lock().unwrap().remove(&code) else {
                return oauth_error("invalid_grant");
            };
            if form.get("redirect_uri") != Some(&grant.redirect_uri) {
                return oauth_error("invalid_grant");
            }
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if pkce_challenge(&verifier) != grant.challenge {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_grant", "error_description": "PKCE verification failed"})),
                )
                    .into_response();
            }
            let access_token = format!("user-at-{}", fake.next());
            fake.user_tokens
                .lock()
                .unwrap()
                .insert(access_token.clone());
            Json(json!({"access_token": access_token, "token_type": "Bearer",
                        "expires_in": 900, "scope": "workspace:admin"}))
            .into_response()
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}

async fn authorize(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    fake.authorize_queries.lock().unwrap().push(query.clone());
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    assert_eq!(get("response_type"), "code");
    assert_eq!(get("client_id"), CLIENT_ID);
    assert_eq!(get("scope"), "workspace:admin");
    assert_eq!(get("code_challenge_method"), "S256");
    assert_eq!(get("code_challenge").len(), 43);
    assert!(get("state").len() >= 22, "state of at least 128 bits");
    let redirect_uri = get("redirect_uri");
    let issuer = fake.issuer();
    let mut back = Url::parse(&redirect_uri).unwrap();
    if fake.deny.load(Ordering::SeqCst) {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user <b>denied</b> the request")
            .append_pair("state", &get("state"))
            .append_pair("iss", &issuer);
        return Redirect::to(back.as_str()).into_response();
    }
    let project_id = {
        let projects = fake.projects.lock().unwrap();
        let project = projects
            .get(&get("claim_token"))
            .expect("a known claim token");
        project.id.clone()
    };
    let code = format!("code_{}", fake.next());
    fake.codes.lock().unwrap().insert(
        code.clone(),
        CodeGrant {
            challenge: get("code_challenge"),
            redirect_uri,
        },
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"))
        .append_pair("iss", &issuer)
        .append_pair("project_id", &project_id);
    Redirect::to(back.as_str()).into_response()
}

async fn regions(State(_fake): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = require_integration(&headers) {
        return r;
    }
    Json(json!({
        "data": [
            {"id": "eu-central", "name": "Frankfurt", "status": "available"},
            {"id": "us-east", "name": "Virginia", "status": "unavailable"}
        ],
        "pagination": {"nextCursor": null, "hasMore": false}
    }))
    .into_response()
}

async fn create_project(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = require_integration(&headers) {
        return r;
    }
    fake.create_bodies.lock().unwrap().push(body.clone());
    if body.get("region").and_then(Value::as_str) == Some("nowhere") {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_region",
            "there is no region nowhere",
        );
    }
    let ttl = body
        .get("ttlSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(86_400);
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    assert!(!name.is_empty(), "the partner always sends a name");
    let token = fake.seed(name, false, false);
    let id = fake.projects.lock().unwrap()[&token].id.clone();
    let claim_url = format!("{}?token={token}", fake.claim_uri.lock().unwrap());
    let connection_string =
        format!("postgresql://u_{id}:pw@db.example:5432/{name}?sslmode=require");
    (
        StatusCode::CREATED,
        Json(json!({"data": {
            "id": id, "type": "project", "name": name, "status": "active",
            "workspace": {"id": "ws_partner", "name": "Partner workspace"},
            "region": region(), "createdAt": now(), "expiresAt": in_secs(ttl), "claimedAt": null,
            "claimUrl": claim_url,
            "database": {
                "id": format!("db_{id}"), "type": "database", "projectId": id, "name": name,
                "status": "ready", "isDefault": true, "region": region(), "createdAt": now(),
                "connectionString": connection_string, "connections": []
            }
        }})),
    )
        .into_response()
}

async fn lookup(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = require_integration(&headers) {
        return r;
    }
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let projects = fake.projects.lock().unwrap();
    match projects.get(token) {
        Some(p) if p.expired => problem(StatusCode::GONE, "claim_expired", "the claim expired"),
        Some(p) if !p.claimed => Json(json!({"data": {
            "projectId": p.id, "projectName": p.name, "partnerName": "Acme <DB>",
            "region": region(), "expiresAt": in_secs(23 * 3600 + 600)
        }}))
        .into_response(),
        _ => problem(StatusCode::NOT_FOUND, "claim_not_found", "no such claim"),
    }
}

async fn transfer(
    State(fake): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = require_integration(&headers) {
        return r;
    }
    let recipient = body
        .get("recipientAccessToken")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only recipientAccessToken"
    );
    if !fake.user_tokens.lock().unwrap().contains(&recipient) {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_recipient_token",
            "bad recipient",
        );
    }
    let mut projects = fake.projects.lock().unwrap();
    let Some(project) = projects.values_mut().find(|p| p.id == id) else {
        return problem(StatusCode::NOT_FOUND, "not_found", "no such project");
    };
    if project.refuse_transfer {
        return problem(
            StatusCode::FORBIDDEN,
            "project_limit_reached",
            "the workspace already has its maximum number of projects",
        );
    }
    project.claimed = true;
    fake.transfers.lock().unwrap().push((id.clone(), recipient));
    Json(json!({"data": {
        "id": id, "type": "project", "name": project.name, "status": "active",
        "workspace": {"id": "ws_user", "name": USER_WORKSPACE},
        "region": region(), "createdAt": now(), "expiresAt": null, "claimedAt": now()
    }}))
    .into_response()
}

struct Stack {
    fake: Shared,
    partner: String,
}

async fn spawn_stack(create_limit: u32, trust_forwarded_for: bool) -> Stack {
    let fake = Shared::default();
    let keyward_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let keyward = format!("http://{}", keyward_listener.local_addr().unwrap());
    let partner_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let partner = format!("http://{}", partner_listener.local_addr().unwrap());
    *fake.issuer.lock().unwrap() = keyward.clone();
    *fake.claim_uri.lock().unwrap() = format!("{partner}/claim");
    let app = Router::new()
        .route("/oauth2/token", post(token))
        .route("/oauth2/authorize", get(authorize))
        .route("/v1/regions", get(regions))
        .route("/v1/projects", post(create_project))
        .route("/v1/claims/lookup", post(lookup))
        .route("/v1/projects/{id}/transfer", post(transfer))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(keyward_listener, app).await.unwrap() });
    let mut config = PartnerConfig::new(&keyward, CLIENT_ID, CLIENT_SECRET, &partner);
    config.create_limit = create_limit;
    config.trust_forwarded_for = trust_forwarded_for;
    config.validate().unwrap();
    let app = router(config).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(partner_listener, app).await.unwrap() });
    Stack { fake, partner }
}

// ---------------------------------------------------------------------------------------
// A browser with a cookie jar kept by hand
// ---------------------------------------------------------------------------------------

struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.jar.insert(name.to_owned(), value.to_owned());
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let response = self
            .http
            .get(url)
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&response);
        response
    }

    async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self
            .http
            .post(url)
            .header(header::COOKIE, self.cookie_header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded_pairs(form))
            .send()
            .await
            .unwrap();
        self.keep_cookies(&response);
        response
    }
}

fn serde_urlencoded_pairs(form: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://x/").unwrap();
    url.query_pairs_mut().extend_pairs(form);
    url.query().unwrap_or_default().to_owned()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The value of the hidden `name` input of the page.
fn hidden_input(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("the hidden input") + marker.len();
    let end = html[start..].find('"').unwrap();
    html[start..start + end].to_owned()
}

/// Claim page → Claim → Keyward's authorize (which approves at once): the callback URL
/// Keyward redirects the browser to.
async fn start_claim(stack: &Stack, browser: &mut Browser, claim_token: &str) -> String {
    let page = browser
        .get(&format!("{}/claim?token={claim_token}", stack.partner))
        .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = hidden_input(&html, "csrf");
    assert_eq!(hidden_input(&html, "token"), claim_token);
    let started = browser
        .post_form(
            &format!("{}/claim/start", stack.partner),
            &[("token", claim_token), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(started.status(), 303);
    let authorize = location(&started);
    assert!(authorize.starts_with(&format!("{}/oauth2/authorize?", stack.fake.issuer())));
    let approved = browser.get(&authorize).await;
    assert_eq!(approved.status(), 303);
    let callback = location(&approved);
    assert!(callback.starts_with(&format!("{}/claim/callback?", stack.partner)));
    callback
}

/// `url` with the query parameter `name` replaced (or removed when `value` is None).
fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let mut parsed = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (k, v) in &pairs {
            query.append_pair(k, v);
        }
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    parsed.into()
}

async fn create(stack: &Stack, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/create", stack.partner))
        .json(&body)
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Create and regions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn create_returns_the_connection_string_and_claim_url() {
    let stack = spawn_stack(5, false).await;
    let response = create(&stack, json!({"region": "eu-central", "ttlSeconds": 3600})).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let project_id = body["projectId"].as_str().unwrap();
    assert!(project_id.starts_with("prj_"));
    assert_eq!(body["databaseId"], format!("db_{project_id}"));
    assert_eq!(body["region"], "eu-central");
    assert_eq!(body["workspace"], "Partner workspace");
    assert!(body["connectionString"]
        .as_str()
        .unwrap()
        .starts_with(&format!("postgresql://u_{project_id}:")));
    assert!(body["claimUrl"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/claim?token=ct_", stack.partner)));
    let expires = OffsetDateTime::parse(
        body["expiresAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires - OffsetDateTime::now_utc();
    assert!(left > time::Duration::minutes(59) && left <= time::Duration::hours(1));
    // Keyward got the camelCase body with a generated name.
    let sent = stack.fake.create_bodies.lock().unwrap()[0].clone();
    assert_eq!(sent["ttlSeconds"], 3600);
    assert_eq!(sent["region"], "eu-central");
    assert_eq!(sent["name"].as_str().unwrap().split('-').count(), 3);
    // One integration token for the provisioning audience, reused.
    let second = create(&stack, json!({"name": "my-app"})).await;
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["projectName"], "my-app");
    let forms = stack.fake.token_forms.lock().unwrap();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0]["grant_type"], "client_credentials");
}

#[tokio::test]
async fn create_passes_keyward_problems_through_and_checks_its_body() {
    let stack = spawn_stack(5, false).await;
    let response = create(&stack, json!({"region": "nowhere"})).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_region");
    assert_eq!(problem["detail"], "there is no region nowhere");
    let bad = reqwest::Client::new()
        .post(format!("{}/create", stack.partner))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_body");
    // An empty body is a create with every default.
    let empty = reqwest::Client::new()
        .post(format!("{}/create", stack.partner))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 201);
}

#[tokio::test]
async fn regions_are_listed() {
    let stack = spawn_stack(5, false).await;
    let body: Value = reqwest::get(format!("{}/regions", stack.partner))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"][0]["id"], "eu-central");
    assert_eq!(body["data"][1]["status"], "unavailable");
}

#[tokio::test]
async fn create_is_rate_limited_per_client_address() {
    let stack = spawn_stack(2, false).await;
    for _ in 0..2 {
        assert_eq!(create(&stack, json!({})).await.status(), 201);
    }
    let limited = create(&stack, json!({})).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let problem: Value = limited.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");
    assert_eq!(problem["status"], 429);
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("retry in {retry_after} seconds")));
    // Keyward saw only the allowed requests.
    assert_eq!(stack.fake.create_bodies.lock().unwrap().len(), 2);
    // X-Forwarded-For is not trusted by default: another claimed address changes nothing.
    let spoofed = reqwest::Client::new()
        .post(format!("{}/create", stack.partner))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 429);
}

#[tokio::test]
async fn forwarded_for_separates_clients_when_trusted() {
    let stack = spawn_stack(1, true).await;
    let from = |ip: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/create", stack.partner))
            .header("x-forwarded-for", format!("{ip}, 10.0.0.1"))
            .json(&json!({}))
            .send()
    };
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 201);
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(from("203.0.113.2").await.unwrap().status(), 201);
}

// ---------------------------------------------------------------------------------------
// The claim page
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn claim_page_shows_the_project_and_a_csrf_bound_form() {
    let stack = spawn_stack(5, false).await;
    let token = stack.fake.seed("<script>alert(1)</script>", false, false);
    let mut browser = Browser::new();
    let page = browser
        .get(&format!("{}/claim?token={token}", stack.partner))
        .await;
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'self'"),
        "{csp}"
    );
    assert!(csp.contains(&format!("form-action 'self' {}", stack.fake.issuer())));
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    let set_cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set_cookie.starts_with("kwp_csrf="));
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script"), "no scripts and escaped output");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
    assert!(html.contains("Acme &lt;DB&gt;"), "partner name, escaped");
    assert!(html.contains("Frankfurt"));
    assert!(
        html.contains("UTC") && html.contains("in 23 hours"),
        "{html}"
    );
    assert!(html.contains(r#"<form method="post" action="/claim/start">"#));
    assert_eq!(hidden_input(&html, "csrf"), browser.jar["kwp_csrf"]);
    // A second visit keeps the same CSRF cookie.
    let again = browser
        .get(&format!("{}/claim?token={token}", stack.partner))
        .await;
    assert!(again.headers().get(header::SET_COOKIE).is_none());
    let css = reqwest::get(format!("{}/static/partner.css", stack.partner))
        .await
        .unwrap();
    assert_eq!(
        css.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
}

#[tokio::test]
async fn expired_unknown_and_missing_claims_have_clear_pages() {
    let stack = spawn_stack(5, false).await;
    let expired = stack.fake.seed("old", true, false);
    let gone = reqwest::get(format!("{}/claim?token={expired}", stack.partner))
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    assert!(gone
        .text()
        .await
        .unwrap()
        .contains("This claim link has expired"));
    let unknown = reqwest::get(format!("{}/claim?token=ct_nope", stack.partner))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown
        .text()
        .await
        .unwrap()
        .contains("Claim link not found"));
    let missing = reqwest::get(format!("{}/claim", stack.partner))
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
}

#[tokio::test]
async fn claim_start_requires_the_csrf_cookie_and_field() {
    let stack = spawn_stack(5, false).await;
    let token = stack.fake.seed("p", false, false);
    let mut browser = Browser::new();
    browser
        .get(&format!("{}/claim?token={token}", stack.partner))
        .await;
    let start = format!("{}/claim/start", stack.partner);
    let wrong = browser
        .post_form(&start, &[("token", &token), ("csrf", "forged")])
        .await;
    assert_eq!(wrong.status(), 403);
    let csrf = browser.jar["kwp_csrf"].clone();
    let mut other = Browser::new();
    let no_cookie = other
        .post_form(&start, &[("token", &token), ("csrf", &csrf)])
        .await;
    assert_eq!(no_cookie.status(), 403);
    assert!(stack.fake.authorize_queries.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// The whole claim and the callback's refusals
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn claim_moves_the_project_into_the_users_workspace() {
    let stack = spawn_stack(5, false).await;
    let created: Value = create(&stack, json!({"name": "my-app"}))
        .await
        .json()
        .await
        .unwrap();
    let claim_url = created["claimUrl"].as_str().unwrap();
    let token = claim_url.split("token=").nth(1).unwrap().to_owned();
    let mut browser = Browser::new();
    let callback = start_claim(&stack, &mut browser, &token).await;
    // The authorization request named the project being claimed.
    let query = stack.fake.authorize_queries.lock().unwrap()[0].clone();
    assert_eq!(query["claim_token"], token);
    assert_eq!(
        query["redirect_uri"],
        format!("{}/claim/callback", stack.partner)
    );
    assert!(browser.jar.contains_key("kwp_claim"));
    let done = browser.get(&callback).await;
    assert_eq!(done.status(), 200);
    let html = done.text().await.unwrap();
    assert!(
        html.contains(&format!(
            "my-app is now in your workspace {USER_WORKSPACE}."
        )),
        "{html}"
    );
    // The code was exchanged with client_secret_post and the PKCE verifier, and the
    // transfer carried the user's token; neither token is on the page.
    let forms = stack.fake.token_forms.lock().unwrap().clone();
    let exchange = forms
        .iter()
        .find(|f| f["grant_type"] == "authorization_code")
        .unwrap();
    assert_eq!(exchange["code_verifier"].len(), 43);
    let transfers = stack.fake.transfers.lock().unwrap().clone();
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].0, created["projectId"].as_str().unwrap());
    assert!(!html.contains(&transfers[0].1));
    assert!(!html.contains(INTEGRATION_TOKEN));
    assert!(!html.contains(exchange["code_verifier"].as_str()));
    // The link is spent.
    let after = browser
        .get(&format!("{}/claim?token={token}", stack.partner))
        .await;
    assert_eq!(after.status(), 404);
}

#[tokio::test]
async fn callback_refuses_an_unknown_or_missing_state() {
    let stack = spawn_stack(5, false).await;
    let token = stack.fake.seed("p", false, false);
    let mut browser = Browser::new();
    let callback = start_claim(&stack, &mut browser, &token).await;
    let forged = browser
        .get(&with_param(&callback, "state", Some("forged-state")))
        .await;
    assert_eq!(forged.status(), 400);
    assert!(forged
        .text()
        .await
        .unwrap()
        .contains("unknown or was already used"));
    let missing = browser.get(&with_param(&callback, "state", None)).await;
    assert_eq!(missing.status(), 400);
    assert!(stack.fake.transfers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn callback_refuses_a_missing_or_foreign_browser_cookie() {
    let stack = spawn_stack(5, false).await;
    let token = stack.fake.seed("p", false, false);
    // The victim's callback URL opened in another browser (no binding cookie).
    let mut victim = Browser::new();
    let callback = start_claim(&stack, &mut victim, &token).await;
    let mut attacker = Browser::new();
    let refused = attacker.get(&callback).await;
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("another browser"));
    assert!(
        !html.contains(&token),
        "no claim link for a browser that did not start it"
    );
    // ...or in a browser with its own, different binding cookie.
    let token = stack.fake.seed("q", false, false);
    let callback = start_claim(&stack, &mut victim, &token).await;
    let mut other = Browser::new();
    let own_token = stack.fake.seed("r", false, false);
    let _ = start_claim(&stack, &mut other, &own_token).await;
    assert_ne!(other.jar["kwp_claim"], victim.jar["kwp_claim"]);
    let refused = other.get(&callback).await;
    assert_eq!(refused.status(), 400);
    assert!(stack.fake.transfers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn callback_state_is_single_use() {
    let stack = spawn_stack(5, false).await;
    let token = stack.fake.seed("p", false, false);
    let mut browser = Browser::new();
    let callback = start_claim(&stack, &mut browser, &token).await;
    assert_eq!(browser.get(&callback).await.status(), 200);
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.unwrap().contains("already used"));
    assert_eq!(stack.fake.transfers.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn callback_refuses_another_project() {
    let stack = spawn_stack(5, false).await;
    let token = stack.fake.seed("p", false, false);
    let mut browser = Browser::new();
    let callback = start_claim(&stack, &mut browser, &token).await;
    let swapped = browser
        .get(&with_param(&callback, "project_id", Some("prj_other")))
        .await;
    assert_eq!(swapped.status(), 400);
    let html = swapped.text().await.unwrap();
    assert!(html.contains("different project"));
    // This browser started the claim, so it gets the way back to the claim page.
    assert!(
        html.contains(&format!(r#"href="&#x2f;claim?token={token}""#)),
        "{html}"
    );
    // A missing project_id is refused too.
    let callback = start_claim(&stack, &mut browser, &token).await;
    let missing = browser
        .get(&with_param(&callback, "project_id", None))
        .await;
    assert_eq!(missing.status(), 400);
    assert!(stack.fake.transfers.lock().unwrap().is_empty());
    // The state was spent by the refused attempt.
    assert_eq!(browser.get(&callback).await.status(), 400);
}

#[tokio::test]
async fn callback_refuses_another_issuer() {
    let stack = spawn_stack(5, false).await;
    let token = stack.fake.seed("p", false, false);
    let mut browser = Browser::new();
    let callback = start_claim(&stack, &mut browser, &token).await;
    let mixed_up = browser
        .get(&with_param(&callback, "iss", Some("https://evil.example")))
        .await;
    assert_eq!(mixed_up.status(), 400);
    assert!(mixed_up
        .text()
        .await
        .unwrap()
        .contains("another authorization server"));
    assert!(stack.fake.transfers.lock().unwrap().is_empty());
    // Without iss (a server that does not send it) the claim goes through.
    let callback = start_claim(&stack, &mut browser, &token).await;
    let ok = browser.get(&with_param(&callback, "iss", None)).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn callback_refuses_a_code_without_the_right_verifier() {
    let stack = spawn_stack(5, false).await;
    let token = stack.fake.seed("p", false, false);
    let mut browser = Browser::new();
    let callback = start_claim(&stack, &mut browser, &token).await;
    // Another authorization's code (issued for another challenge) in this callback.
    let code = Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let other_callback = start_claim(&stack, &mut browser, &token).await;
    let spliced = browser
        .get(&with_param(&other_callback, "code", Some(&code)))
        .await;
    assert_eq!(spliced.status(), 502);
    assert!(spliced
        .text()
        .await
        .unwrap()
        .contains("PKCE verification failed"));
    assert!(stack.fake.transfers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_denied_authorization_shows_a_clear_page() {
    let stack = spawn_stack(5, false).await;
    stack.fake.deny.store(true, Ordering::SeqCst);
    let token = stack.fake.seed("my-app", false, false);
    let mut browser = Browser::new();
    let callback = start_claim(&stack, &mut browser, &token).await;
    let denied = browser.get(&callback).await;
    assert_eq!(denied.status(), 403);
    let html = denied.text().await.unwrap();
    assert!(html.contains("You did not approve the claim, so my-app stays"));
    assert!(html.contains("The user &lt;b&gt;denied&lt;&#x2f;b&gt; the request"));
}

#[tokio::test]
async fn a_refused_transfer_shows_keywards_detail() {
    let stack = spawn_stack(5, false).await;
    let token = stack.fake.seed("full", false, true);
    let mut browser = Browser::new();
    let callback = start_claim(&stack, &mut browser, &token).await;
    let refused = browser.get(&callback).await;
    assert_eq!(refused.status(), 403);
    let html = refused.text().await.unwrap();
    assert!(html.contains("The project could not be moved"));
    assert!(html.contains("the workspace already has its maximum number of projects"));
}

// ---------------------------------------------------------------------------------------
// create-db
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn create_db_appends_the_two_variables_to_the_env_file() {
    let stack = spawn_stack(5, false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, "EXISTING=1\n# comment without newline").unwrap();
    let mut args = CreateDbArgs::new(&stack.partner);
    args.env = Some(path.clone());
    args.ttl = Some(1800);
    args.region = Some("eu-central".into());
    assert_eq!(create_db(args.clone()).await.unwrap(), 0);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "EXISTING=1");
    assert_eq!(lines[1], "# comment without newline");
    assert!(lines[2].starts_with("DATABASE_URL=\"postgresql://u_prj_"));
    assert!(lines[2].ends_with("?sslmode=require\""));
    assert!(lines[3].starts_with(&format!("CLAIM_URL=\"{}/claim?token=ct_", stack.partner)));
    assert!(text.ends_with('\n'));
    assert_eq!(
        stack.fake.create_bodies.lock().unwrap()[0]["ttlSeconds"],
        1800
    );
    // A second run appends, keeping everything before.
    args.json = true;
    assert_eq!(create_db(args).await.unwrap(), 0);
    let again = std::fs::read_to_string(&path).unwrap();
    assert!(again.starts_with(&text));
    assert_eq!(again.lines().count(), 6);
    // A file that does not exist yet is created.
    let fresh = dir.path().join("new.env");
    let mut args = CreateDbArgs::new(&stack.partner);
    args.env = Some(fresh.clone());
    assert_eq!(create_db(args).await.unwrap(), 0);
    assert_eq!(std::fs::read_to_string(&fresh).unwrap().lines().count(), 2);
}

#[tokio::test]
async fn create_db_fails_clearly() {
    let stack = spawn_stack(1, false).await;
    let args = CreateDbArgs::new(&stack.partner);
    assert_eq!(create_db(args.clone()).await.unwrap(), 0);
    // Rate limited: non-zero.
    assert_eq!(create_db(args.clone()).await.unwrap(), 1);
    // A time to live out of range never reaches the service.
    let mut bad = args.clone();
    bad.ttl = Some(60);
    assert_eq!(create_db(bad).await.unwrap(), 2);
    assert_eq!(stack.fake.create_bodies.lock().unwrap().len(), 1);
    // Nothing listening.
    let nobody = CreateDbArgs::new("http://127.0.0.1:9");
    assert_eq!(create_db(nobody).await.unwrap(), 1);
    // The regions subcommand.
    let mut regions = args;
    regions.command = Some(CreateDbCommand::Regions);
    assert_eq!(create_db(regions).await.unwrap(), 0);
}

//! Interactive sign-in and the authorization-code flow, driven like a browser (cookies,
//! forms, 303s) against a real server, on both stores. Each security rule of RFC 9700 that
//! Keyward enforces has a case here that fails without it.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::on_both_stores;
use crate::testkit::{Backend, TestServer};

const API: &str = "https://api.example.test";
pub const CALLBACK: &str = "https://client.example.test/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A cookie-keeping client that does not follow redirects.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// The `value` of the input named `name`.
    pub fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.body))
            + marker.len();
        self.body[start..].split('"').next().unwrap().to_owned()
    }
}

impl Browser {
    pub fn new(server: &TestServer) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.base.clone(),
            cookies: HashMap::new(),
        }
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, response: reqwest::Response) -> Page {
        for value in response.headers().get_all(SET_COOKIE) {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let response = self
            .http
            .get(self.absolute(url))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(response).await
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .http
            .post(self.absolute(url))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.finish(response).await
    }
}

pub struct Client {
    pub client_id: String,
    pub secret: Option<String>,
}

/// An API resource (once per server) and an application.
pub async fn setup(server: &TestServer, kind: &str, first_party: bool) -> Client {
    let token = server.admin_token().await;
    let (status, body) = server
        .call(
            "POST",
            "/api/resources",
            &token,
            Some(json!({ "identifier": API, "name": "Example API",
                "scopes": [{ "name": "read:things", "description": "Read your things" }] })),
        )
        .await;
    assert!(
        status == 201 || body["code"] == "identifier_taken",
        "{body}"
    );
    let (status, body) = server
        .call(
            "POST",
            "/api/applications",
            &token,
            Some(json!({
                "name": format!("Demo {kind}"),
                "kind": kind,
                "redirect_uris": [CALLBACK, "http://127.0.0.1/native-cb"],
                "post_logout_redirect_uris": ["https://client.example.test/bye"],
                "grants": [{ "resource": API, "scopes": ["read:things"] }],
                "first_party": first_party,
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    Client {
        client_id: body["application"]["client_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        secret: body["client_secret"].as_str().map(str::to_owned),
    }
}

pub fn authorize_url(client: &Client, extra: &[(&str, &str)]) -> String {
    let mut params: Vec<(&str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", client.client_id.clone()),
        ("redirect_uri", CALLBACK.into()),
        (
            "scope",
            "openid profile email offline_access workspace:admin read:things".into(),
        ),
        ("resource", API.into()),
        ("state", "st-123".into()),
        ("nonce", "n-456".into()),
        ("code_challenge", challenge(VERIFIER)),
        ("code_challenge_method", "S256".into()),
    ];
    for (key, value) in extra {
        params.retain(|(k, _)| k != key);
        if !value.is_empty() {
            params.push((key, (*value).to_owned()));
        }
    }
    format!(
        "/oauth2/authorize?{}",
        serde_urlencoded::to_string(&params).unwrap()
    )
}

/// Follows the flow from `start` to the client's callback, signing up `username` if asked
/// to sign in, creating a workspace and consenting. Returns the callback's query pairs.
pub async fn run_flow(
    browser: &mut Browser,
    start: &str,
    username: &str,
) -> HashMap<String, String> {
    let mut page = browser.get(start).await;
    for _ in 0..12 {
        assert_eq!(
            page.status, 303,
            "expected a redirect, got {}: {}",
            page.status, page.body
        );
        let location = page.location();
        if location.starts_with(CALLBACK) {
            let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
            return serde_urlencoded::from_str(query).unwrap();
        }
        let path = location.split('?').next().unwrap().to_owned();
        let shown = browser.get(&location).await;
        page = match path.as_str() {
            "/sign-in" => {
                let interaction = shown.field("interaction");
                let signup = browser
                    .get(&format!("/sign-up?interaction={interaction}"))
                    .await;
                let csrf = signup.field("csrf_token");
                browser
                    .post(
                        "/sign-up",
                        &[
                            ("csrf_token", &csrf),
                            ("interaction", &interaction),
                            ("username", username),
                            ("email", &format!("{username}@example.test")),
                            ("password", PASSWORD),
                        ],
                    )
                    .await
            }
            "/workspace" => {
                let csrf = shown.field("csrf_token");
                let interaction = shown.field("interaction");
                browser
                    .post(
                        "/workspace",
                        &[
                            ("csrf_token", &csrf),
                            ("interaction", &interaction),
                            ("action", "create"),
                            ("workspace_name", "Acme"),
                        ],
                    )
                    .await
            }
            "/consent" => {
                let csrf = shown.field("csrf_token");
                let interaction = shown.field("interaction");
                browser
                    .post(
                        "/consent",
                        &[
                            ("csrf_token", &csrf),
                            ("interaction", &interaction),
                            ("decision", "allow"),
                        ],
                    )
                    .await
            }
            _ => shown,
        };
    }
    panic!("the flow did not reach the callback");
}

pub async fn token_request(
    server: &TestServer,
    client: &Client,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = server.http.post(server.url("/oauth2/token"));
    let mut form: Vec<(&str, &str)> = form.to_vec();
    match &client.secret {
        Some(secret) => request = request.basic_auth(&client.client_id, Some(secret)),
        None => form.push(("client_id", &client.client_id)),
    }
    let response = request.form(&form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn exchange(server: &TestServer, client: &Client, code: &str) -> (u16, Value) {
    token_request(
        server,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

async fn userinfo_status(server: &TestServer, access_token: &str) -> u16 {
    server
        .http
        .get(server.url("/oauth2/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn code_flow_end_to_end(backend: Backend) {
    let server = TestServer::start(backend).await;
    for kind in ["web", "spa"] {
        let client = setup(&server, kind, false).await;
        let mut browser = Browser::new(&server);
        let params = run_flow(
            &mut browser,
            &authorize_url(&client, &[]),
            &format!("alice-{kind}"),
        )
        .await;
        assert_eq!(params["state"], "st-123");
        assert_eq!(params["iss"], server.base);
        let (status, tokens) = exchange(&server, &client, &params["code"]).await;
        assert_eq!(status, 200, "{tokens}");
        let access = jwt_payload(tokens["access_token"].as_str().unwrap());
        assert_eq!(access["aud"], API);
        assert_eq!(access["role"], "owner");
        assert!(access["acc"].as_str().unwrap().starts_with("acc_"));
        let id_token = jwt_payload(tokens["id_token"].as_str().unwrap());
        assert_eq!(id_token["nonce"], "n-456");
        assert_eq!(id_token["aud"], client.client_id.as_str());
        assert_eq!(id_token["iss"], server.base);
        assert!(id_token["at_hash"].is_string());

        let info: Value = server
            .http
            .get(server.url("/oauth2/userinfo"))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["preferred_username"], format!("alice-{kind}"));
        assert_eq!(info["email"], format!("alice-{kind}@example.test"));

        // Refresh rotates.
        let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
        let (status, refreshed) = token_request(
            &server,
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &first_refresh),
            ],
        )
        .await;
        assert_eq!(status, 200, "{refreshed}");
        assert_ne!(refreshed["refresh_token"], first_refresh.as_str());
        assert_eq!(
            jwt_payload(refreshed["access_token"].as_str().unwrap())["role"],
            "owner"
        );

        // A second authorization for the same user and client skips consent (remembered),
        // and the existing session skips sign-in.
        let again = browser.get(&authorize_url(&client, &[])).await;
        assert_eq!(again.status, 303);
        assert!(
            again.location().starts_with("/workspace"),
            "{}",
            again.location()
        );
    }
}

async fn code_replay_revokes_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = setup(&server, "web", false).await;
    let mut browser = Browser::new(&server);
    let params = run_flow(&mut browser, &authorize_url(&client, &[]), "replay").await;
    let (status, tokens) = exchange(&server, &client, &params["code"]).await;
    assert_eq!(status, 200);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&server, access).await, 200);

    let (status, body) = exchange(&server, &client, &params["code"]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    // Every token issued from the code is now dead.
    assert_eq!(userinfo_status(&server, access).await, 401);
    let (status, body) = token_request(
        &server,
        &client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let introspection: Value = server
        .http
        .post(server.url("/oauth2/introspect"))
        .basic_auth(&client.client_id, client.secret.as_ref())
        .form(&[("token", access)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspection["active"], false);
}

/// Codes and refresh tokens are bound to the client they were issued to (RFC 6749 §4.1.3,
/// §6), and every sign-in starts a new session handle (no session fixation).
async fn tokens_are_bound_to_their_client_and_sessions_renew(backend: Backend) {
    let server = TestServer::start(backend).await;
    let owner = setup(&server, "web", false).await;
    let other = setup(&server, "web", false).await;
    let mut browser = Browser::new(&server);
    browser
        .cookies
        .insert("kw_session".into(), "planted-by-an-attacker".into());
    let params = run_flow(&mut browser, &authorize_url(&owner, &[]), "bound").await;
    assert_ne!(browser.cookies["kw_session"], "planted-by-an-attacker");
    // Another client presenting the code: refused.
    let (status, body) = exchange(&server, &other, &params["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // A fresh code; another client presenting its refresh token: refused, and the owner's
    // token keeps working (the attempt changed nothing).
    let params = run_flow(&mut browser, &authorize_url(&owner, &[]), "bound").await;
    let (status, tokens) = exchange(&server, &owner, &params["code"]).await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, body) = token_request(
        &server,
        &other,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = token_request(
        &server,
        &owner,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn concurrent_redemption_has_one_winner(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = setup(&server, "web", false).await;
    let mut browser = Browser::new(&server);
    let params = run_flow(&mut browser, &authorize_url(&client, &[]), "racer").await;
    let code = params["code"].clone();
    let (a, b) = tokio::join!(
        exchange(&server, &client, &code),
        exchange(&server, &client, &code)
    );
    let wins = [a.0, b.0].iter().filter(|s| **s == 200).count();
    assert_eq!(wins, 1, "{a:?} {b:?}");
}

async fn refresh_reuse_revokes_family(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = setup(&server, "spa", false).await;
    let mut browser = Browser::new(&server);
    let params = run_flow(&mut browser, &authorize_url(&client, &[]), "reuser").await;
    let (_, tokens) = exchange(&server, &client, &params["code"]).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let server = &server;
        let client = &client;
        async move {
            token_request(
                server,
                client,
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            )
            .await
        }
    };
    let (status, second) = refresh(first.clone()).await;
    assert_eq!(status, 200);
    let second_token = second["refresh_token"].as_str().unwrap().to_owned();
    // The rotated-out token is replayed: refused, and the family dies with it.
    let (status, body) = refresh(first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = refresh(second_token).await;
    assert_eq!(
        status, 400,
        "the newest token of a revoked family must fail too"
    );
    assert_eq!(
        userinfo_status(&server, second["access_token"].as_str().unwrap()).await,
        401
    );
}

async fn redirect_uri_bypass_attempts_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = setup(&server, "web", false).await;
    let mut browser = Browser::new(&server);
    for bad in [
        "https://CLIENT.example.test/callback",
        "https://client.example.test/Callback",
        "https://client.example.test/callback/",
        "https://client.example.test/callback?extra=1",
        "https://client.example.test@evil.test/callback",
        "https://evil.test@client.example.test/callback",
        "https://client.example.test/callback/..;/evil",
        "https://client.example.test:8443/callback",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(document.domain)//https://client.example.test/callback",
        "http://127.0.0.1:4444/native-cb/",
        "http://127.0.0.1.evil.test/native-cb",
    ] {
        let page = browser
            .get(&authorize_url(&client, &[("redirect_uri", bad)]))
            .await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(
            page.headers.get(LOCATION).is_none(),
            "{bad} must not redirect"
        );
        assert!(page.body.contains("<html"), "{bad}: an error page");
    }
    // Unknown client: an error page too.
    let page = browser
        .get(&authorize_url(
            &Client {
                client_id: "nope".into(),
                secret: None,
            },
            &[],
        ))
        .await;
    assert_eq!(page.status, 400);
    assert!(page.headers.get(LOCATION).is_none());
    // Loopback: any port is fine (RFC 8252 §7.3).
    let page = browser
        .get(&authorize_url(
            &client,
            &[("redirect_uri", "http://127.0.0.1:53412/native-cb")],
        ))
        .await;
    assert_eq!(page.status, 303);
    assert!(page.location().starts_with("/sign-in"));
}

async fn pkce_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let public = setup(&server, "spa", false).await;
    let confidential = setup(&server, "web", false).await;
    let mut browser = Browser::new(&server);
    // A public client must use PKCE; plain is refused; a method without challenge too.
    for extra in [
        vec![("code_challenge", ""), ("code_challenge_method", "")],
        vec![("code_challenge_method", "plain")],
        vec![("code_challenge", "")],
    ] {
        let page = browser.get(&authorize_url(&public, &extra)).await;
        assert_eq!(page.status, 303);
        let location = page.location();
        assert!(location.starts_with(CALLBACK), "{location}");
        assert!(location.contains("error=invalid_request"), "{location}");
        assert!(location.contains("state=st-123"), "{location}");
    }
    // Challenge given: the verifier is required and must match.
    let params = run_flow(&mut browser, &authorize_url(&public, &[]), "pkce-user").await;
    let (status, body) = token_request(
        &server,
        &public,
        &[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("redirect_uri", CALLBACK),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let params = run_flow(&mut browser, &authorize_url(&public, &[]), "pkce-user").await;
    let (status, _) = token_request(
        &server,
        &public,
        &[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            (
                "code_verifier",
                "wrong-verifier-wrong-verifier-wrong-verifier-0",
            ),
        ],
    )
    .await;
    assert_eq!(status, 400);
    // Downgrade: a code issued without a challenge, redeemed with a verifier.
    let params = run_flow(
        &mut browser,
        &authorize_url(
            &confidential,
            &[("code_challenge", ""), ("code_challenge_method", "")],
        ),
        "pkce-user",
    )
    .await;
    let (status, body) = exchange(&server, &confidential, &params["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // The same without a verifier works (confidential clients may skip PKCE).
    let params = run_flow(
        &mut browser,
        &authorize_url(
            &confidential,
            &[("code_challenge", ""), ("code_challenge_method", "")],
        ),
        "pkce-user",
    )
    .await;
    let (status, body) = token_request(
        &server,
        &confidential,
        &[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn state_is_optional_and_echoed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = setup(&server, "web", true).await;
    let mut browser = Browser::new(&server);
    let params = run_flow(
        &mut browser,
        &authorize_url(&client, &[("state", "")]),
        "stateless",
    )
    .await;
    assert!(!params.contains_key("state"));
    assert_eq!(params["iss"], server.base);
    let odd = "a b&c=d/é?%";
    let params = run_flow(
        &mut browser,
        &authorize_url(&client, &[("state", odd)]),
        "stateless",
    )
    .await;
    assert_eq!(params["state"], odd);
    // Errors carry state and iss too.
    let page = browser
        .get(&authorize_url(
            &client,
            &[("response_type", "token"), ("state", odd)],
        ))
        .await;
    let query = page.location().split_once('?').unwrap().1.to_owned();
    let params: HashMap<String, String> = serde_urlencoded::from_str(&query).unwrap();
    assert_eq!(params["error"], "unsupported_response_type");
    assert_eq!(params["state"], odd);
    assert_eq!(params["iss"], server.base);
}

async fn pages_are_protected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = setup(&server, "web", false).await;
    let mut browser = Browser::new(&server);
    let start = browser.get(&authorize_url(&client, &[])).await;
    let page = browser.get(&start.location()).await;
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    // A form post without the CSRF token is refused.
    let interaction = page.field("interaction");
    let refused = browser
        .post(
            "/sign-in",
            &[
                ("interaction", &interaction),
                ("login", "x"),
                ("password", "y"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    let refused = browser
        .post(
            "/sign-in",
            &[
                ("csrf_token", "forged-forged-forged-forged-forged-forged"),
                ("interaction", &interaction),
                ("login", "x"),
                ("password", "y"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    // The session cookie is HttpOnly and SameSite=Lax.
    let signup = browser
        .get(&format!("/sign-up?interaction={interaction}"))
        .await;
    let csrf = signup.field("csrf_token");
    let response = browser
        .http
        .post(server.url("/sign-up"))
        .header("cookie", browser.cookie_header())
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("interaction", &interaction),
            ("username", "cookie-user"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("kw_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
}

async fn attempt(
    browser: &mut Browser,
    csrf: &str,
    login: &str,
    password: &str,
) -> (u16, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let page = browser
        .post(
            "/sign-in",
            &[
                ("csrf_token", csrf),
                ("login", login),
                ("password", password),
            ],
        )
        .await;
    (
        page.status,
        page.body.replace(login, "LOGIN"),
        started.elapsed(),
    )
}

async fn sign_in_does_not_enumerate_and_throttles(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.admin_token().await;
    let (status, _) = server
        .call(
            "POST",
            "/api/users",
            &token,
            Some(json!({ "username": "known", "password": PASSWORD })),
        )
        .await;
    assert_eq!(status, 201);
    let mut browser = Browser::new(&server);
    let form = browser.get("/sign-in").await;
    let csrf = form.field("csrf_token");
    let mut unknown_times = Vec::new();
    let mut wrong_times = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let (s1, b1, t1) = attempt(&mut browser, &csrf, "nobody-here", "wrong password!").await;
        let (s2, b2, t2) = attempt(&mut browser, &csrf, "known", "wrong password!").await;
        assert_eq!(s1, s2);
        assert_eq!(s1, 401);
        bodies.push((b1, b2));
        unknown_times.push(t1);
        wrong_times.push(t2);
    }
    for (b1, b2) in &bodies {
        assert_eq!(
            b1, b2,
            "the answer must not tell whether the account exists"
        );
    }
    // Both paths run one Argon2id verification; without the decoy hash the unknown user
    // would answer in a small fraction of the time.
    unknown_times.sort();
    wrong_times.sort();
    let ratio = unknown_times[1].as_secs_f64() / wrong_times[1].as_secs_f64();
    assert!((0.3..3.0).contains(&ratio), "median time ratio {ratio}");

    // Throttling: 10 failures per account in the window (3 so far), then even the right
    // password is refused without being checked.
    for _ in 0..7 {
        let (status, _, _) = attempt(&mut browser, &csrf, "known", "wrong password!").await;
        assert_eq!(status, 401);
    }
    let (status, _, _) = attempt(&mut browser, &csrf, "known", PASSWORD).await;
    assert_eq!(status, 429);
}

async fn prompts_and_consent_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = setup(&server, "web", false).await;
    let first_party = setup(&server, "web", true).await;
    let mut browser = Browser::new(&server);
    // prompt=none without a session.
    let page = browser
        .get(&authorize_url(&client, &[("prompt", "none")]))
        .await;
    assert!(
        page.location().contains("error=login_required"),
        "{}",
        page.location()
    );
    // Sign up through the first-party app: no consent page at all.
    let scope = [("scope", "openid profile")];
    let params = run_flow(
        &mut browser,
        &authorize_url(&first_party, &scope),
        "prompter",
    )
    .await;
    assert!(params.contains_key("code"));
    // The third-party app needs consent: prompt=none says so.
    let page = browser
        .get(&authorize_url(&client, &[("prompt", "none"), scope[0]]))
        .await;
    assert!(
        page.location().contains("error=consent_required"),
        "{}",
        page.location()
    );
    let params = run_flow(&mut browser, &authorize_url(&client, &scope), "prompter").await;
    assert!(params.contains_key("code"));
    // Now remembered: prompt=none succeeds.
    let page = browser
        .get(&authorize_url(&client, &[("prompt", "none"), scope[0]]))
        .await;
    assert!(page.location().contains("code="), "{}", page.location());
    // prompt=login shows the sign-in page despite the session.
    let page = browser
        .get(&authorize_url(&client, &[("prompt", "login"), scope[0]]))
        .await;
    assert!(
        page.location().starts_with("/sign-in"),
        "{}",
        page.location()
    );
    // Deny: access_denied goes back to the client.
    let page = browser
        .get(&authorize_url(&client, &[("prompt", "consent"), scope[0]]))
        .await;
    let consent = browser.get(&page.location()).await;
    let denied = browser
        .post(
            "/consent",
            &[
                ("csrf_token", &consent.field("csrf_token")),
                ("interaction", &consent.field("interaction")),
                ("decision", "deny"),
            ],
        )
        .await;
    assert!(
        denied.location().contains("error=access_denied"),
        "{}",
        denied.location()
    );
}

async fn first_party_json_endpoints(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first_party = setup(&server, "spa", true).await;
    let third_party = setup(&server, "spa", false).await;
    let mut browser = Browser::new(&server);
    let csrf: Value = {
        let page = browser.get("/auth/csrf").await;
        serde_json::from_str(&page.body).unwrap()
    };
    let csrf = csrf["csrf_token"].as_str().unwrap().to_owned();
    let origin = "https://client.example.test";
    let call =
        |path: &'static str, body: Value, origin: &'static str, csrf: String, cookies: String| {
            let server = &server;
            async move {
                let response = server
                    .http
                    .post(server.url(path))
                    .header("origin", origin)
                    .header("x-csrf-token", csrf)
                    .header("cookie", cookies)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let cookies: Vec<String> = response
                    .headers()
                    .get_all(SET_COOKIE)
                    .iter()
                    .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
                    .collect();
                (
                    status,
                    cookies,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
    let signup =
        json!({ "client_id": first_party.client_id, "username": "jsonuser", "password": PASSWORD });
    let (status, _, body) = call(
        "/auth/sign-up",
        signup.clone(),
        "https://evil.test",
        csrf.clone(),
        browser.cookie_header(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    let (status, _, body) = call(
        "/auth/sign-up",
        signup.clone(),
        origin,
        "nope".into(),
        browser.cookie_header(),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("csrf_failed")));
    let mut not_first = signup.clone();
    not_first["client_id"] = third_party.client_id.clone().into();
    let (status, _, body) = call(
        "/auth/sign-up",
        not_first,
        origin,
        csrf.clone(),
        browser.cookie_header(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_first_party"))
    );
    let (status, _, body) = call(
        "/auth/sign-up",
        signup,
        origin,
        csrf.clone(),
        browser.cookie_header(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, cookies, body) = call(
        "/auth/sign-in",
        json!({ "client_id": first_party.client_id, "login": "JSONUSER", "password": PASSWORD }),
        origin,
        csrf.clone(),
        browser.cookie_header(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let user_id = body["id"].as_str().unwrap().to_owned();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("kw_session="))
        .unwrap()
        .clone();
    let cookie_header = format!("{}; {session}", browser.cookie_header());

    // Account-scoped token: refused for a non-member, granted to a member with acc + role.
    let admin = server.admin_token().await;
    let (_, account) = server
        .call(
            "POST",
            "/api/accounts",
            &admin,
            Some(json!({ "name": "Team" })),
        )
        .await;
    let account_id = account["id"].as_str().unwrap().to_owned();
    let path: &'static str =
        Box::leak(format!("/api/accounts/{account_id}/token").into_boxed_str());
    let body = json!({ "audience": API, "client_id": first_party.client_id });
    let (status, _, refused) = call(
        path,
        body.clone(),
        origin,
        csrf.clone(),
        cookie_header.clone(),
    )
    .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("not_a_member"))
    );
    let (status, _) = server
        .call(
            "POST",
            &format!("/api/accounts/{account_id}/members"),
            &admin,
            Some(json!({ "user_id": user_id, "role": "member" })),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, token) = call(path, body, origin, csrf, cookie_header).await;
    assert_eq!(status, 200, "{token}");
    let claims = jwt_payload(token["access_token"].as_str().unwrap());
    assert_eq!(claims["acc"], account_id.as_str());
    assert_eq!(claims["role"], "member");
    assert_eq!(claims["sub"], user_id.as_str());
}

async fn end_session_and_discovery(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = setup(&server, "web", false).await;
    let mut browser = Browser::new(&server);
    let params = run_flow(&mut browser, &authorize_url(&client, &[]), "leaver").await;
    let (_, tokens) = exchange(&server, &client, &params["code"]).await;
    let hint = tokens["id_token"].as_str().unwrap();
    // An unregistered post-logout URI is refused.
    let page = browser
        .get(&format!(
            "/oauth2/end-session?id_token_hint={hint}&post_logout_redirect_uri={}",
            enc("https://client.example.test/bye/")
        ))
        .await;
    assert_eq!(page.status, 400);
    let page = browser
        .get(&format!(
            "/oauth2/end-session?id_token_hint={hint}&state=s1&post_logout_redirect_uri={}",
            enc("https://client.example.test/bye")
        ))
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "https://client.example.test/bye?state=s1");
    // Signed out: authorize asks for sign-in again.
    let page = browser.get(&authorize_url(&client, &[])).await;
    assert!(page.location().starts_with("/sign-in"));

    let discovery: Value = server
        .http
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["authorization_endpoint"],
        format!("{}/oauth2/authorize", server.base)
    );
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    for field in [
        "userinfo_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "end_session_endpoint",
    ] {
        assert!(discovery[field].is_string(), "{field}");
    }
}

pub fn enc(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)]).unwrap()[2..].to_owned()
}

on_both_stores!(
    code_flow_end_to_end,
    tokens_are_bound_to_their_client_and_sessions_renew,
    code_replay_revokes_tokens,
    concurrent_redemption_has_one_winner,
    refresh_reuse_revokes_family,
    redirect_uri_bypass_attempts_are_refused,
    pkce_rules,
    state_is_optional_and_echoed,
    pages_are_protected,
    sign_in_does_not_enumerate_and_throttles,
    prompts_and_consent_rules,
    first_party_json_endpoints,
    end_session_and_discovery,
);

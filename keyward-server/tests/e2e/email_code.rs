//! Sign-in with an emailed one-time code for users without a password, and the forced
//! set-password step, driven like a browser on both stores. Codes are read from the
//! outbox (`{data_dir}/outbox/*.eml`) or from a minimal SMTP sink.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keyward_core::id::{new_id, IdKind};
use keyward_core::model::OneTimeCode;
use keyward_core::secret::secret_digest;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

use crate::interactive::{
    authorize_url, jwt_payload, run_flow, setup, token_request, Browser, Page, CALLBACK, PASSWORD,
    VERIFIER,
};
use crate::on_both_stores;
use crate::testkit::{Backend, Options, TestServer};

const NEW_PASSWORD: &str = "a brand new passphrase";
const WRONG_CODE: &str = "That code is not right";

async fn create_user(server: &TestServer, body: Value) -> String {
    let token = server.admin_token().await;
    let (status, user) = server.call("POST", "/api/users", &token, Some(body)).await;
    assert_eq!(status, 201, "{user}");
    user["id"].as_str().unwrap().to_owned()
}

/// A user imported without a password: only a primary email.
async fn passwordless(server: &TestServer, email: &str) -> String {
    create_user(server, json!({ "primary_email": email })).await
}

fn interaction_of(location: &str) -> String {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    pairs
        .into_iter()
        .find(|(k, _)| k == "interaction")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn enc(value: &str) -> String {
    crate::interactive::enc(value)
}

/// The 8-digit code in a message's body.
fn code_in(message: &str) -> String {
    let body = message
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or(message);
    body.split_whitespace()
        .find(|w| w.len() == 8 && w.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {message}"))
        .to_owned()
}

/// Every `.eml` file in the outbox with its text.
fn outbox(server: &TestServer) -> Vec<(PathBuf, String)> {
    let mut mails: Vec<(PathBuf, String)> = std::fs::read_dir(server.outbox())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    mails.sort();
    mails
}

/// Waits for a new message to `to` in the outbox and returns its code.
async fn next_code(server: &TestServer, to: &str, seen: &mut HashSet<PathBuf>) -> String {
    for _ in 0..100 {
        for (path, text) in outbox(server) {
            if seen.contains(&path) {
                continue;
            }
            seen.insert(path);
            assert!(
                text.contains(&format!("To: {to}")),
                "mail to someone else: {text}"
            );
            return code_in(&text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no mail to {to} arrived");
}

/// Asks for a code from the page, as a browser does; returns the verify page it leads to.
async fn request_code(browser: &mut Browser, interaction: &str, email: &str) -> Page {
    let form = browser
        .get(&format!(
            "/auth/sign-in/code?interaction={}",
            enc(interaction)
        ))
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf_token");
    let sent = browser
        .post(
            "/auth/sign-in/code",
            &[
                ("csrf_token", &csrf),
                ("interaction", interaction),
                ("email", email),
            ],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert!(
        sent.location().starts_with("/auth/sign-in/code/verify?"),
        "{}",
        sent.location()
    );
    let page = browser.get(&sent.location()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

async fn submit_code(browser: &mut Browser, interaction: &str, email: &str, code: &str) -> Page {
    let form = browser
        .get(&format!(
            "/auth/sign-in/code/verify?interaction={}&email={}",
            enc(interaction),
            enc(email)
        ))
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf_token");
    browser
        .post(
            "/auth/sign-in/code/verify",
            &[
                ("csrf_token", &csrf),
                ("interaction", interaction),
                ("email", email),
                ("code", code),
            ],
        )
        .await
}

async fn set_password(
    browser: &mut Browser,
    interaction: &str,
    password: &str,
    confirm: &str,
) -> Page {
    let form = browser
        .get(&format!(
            "/auth/set-password?interaction={}",
            enc(interaction)
        ))
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf_token");
    browser
        .post(
            "/auth/set-password",
            &[
                ("csrf_token", &csrf),
                ("interaction", interaction),
                ("password", password),
                ("password_confirm", confirm),
            ],
        )
        .await
}

/// A code written into the store directly (for expiry and cross-user cases).
async fn plant_code(server: &TestServer, user_id: &str, code: &str, ttl_secs: i64) {
    let now = OffsetDateTime::now_utc();
    server
        .state
        .store
        .issue_one_time_code(&OneTimeCode {
            id: new_id(IdKind::OneTimeCode),
            user_id: user_id.to_owned(),
            purpose: "sign_in".into(),
            digest: secret_digest(code),
            created_at: now - time::Duration::minutes(20),
            expires_at: now + time::Duration::seconds(ttl_secs),
            attempts: 0,
            consumed_at: None,
        })
        .await
        .unwrap();
}

async fn audit_events(server: &TestServer, query: &str) -> Vec<Value> {
    let token = server.admin_token().await;
    let (status, page) = server
        .call("GET", &format!("/api/audit-logs?{query}"), &token, None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

async fn password_sign_in(
    browser: &mut Browser,
    interaction: &str,
    login: &str,
    password: &str,
) -> Page {
    let form = browser
        .get(&format!("/sign-in?interaction={}", enc(interaction)))
        .await;
    let csrf = form.field("csrf_token");
    browser
        .post(
            "/sign-in",
            &[
                ("csrf_token", &csrf),
                ("interaction", interaction),
                ("login", login),
                ("password", password),
            ],
        )
        .await
}

/// The whole journey: no password → code by mail → forced set-password (not skippable by
/// starting over at the authorize URL) → code flow to the client → later, the new password.
async fn code_sign_in_then_set_password_then_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = setup(&server, "web", false).await;
    let email = "imported@example.test";
    let user_id = passwordless(&server, email).await;
    let mut browser = Browser::new(&server);

    let start = browser.get(&authorize_url(&client, &[])).await;
    assert_eq!(start.status, 303);
    assert!(
        start.location().starts_with("/sign-in?"),
        "{}",
        start.location()
    );
    let interaction = interaction_of(&start.location());

    // A password sign-in for a user with no digest is just a wrong password, and the page
    // offers the code.
    let refused = password_sign_in(&mut browser, &interaction, email, "any password at all").await;
    assert_eq!(refused.status, 401);
    assert!(refused
        .body
        .contains("Wrong username, email, phone or password."));
    assert!(
        refused.body.contains("/auth/sign-in/code?interaction="),
        "{}",
        refused.body
    );

    let verify = request_code(&mut browser, &interaction, email).await;
    assert!(verify
        .body
        .contains("If an account exists for imported@example.test"));
    let mut seen = HashSet::new();
    let code = next_code(&server, email, &mut seen).await;
    let mails = outbox(&server);
    assert!(mails[0].1.contains("Subject: Your Keyward sign-in code"));
    // Plain 7-bit text: readable as it is in the outbox.
    assert!(
        mails[0].1.contains("Content-Transfer-Encoding: 7bit"),
        "{}",
        mails[0].1
    );

    let signed_in = submit_code(&mut browser, &interaction, email, &code).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert!(signed_in
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("kw_session=")));
    let next = browser.get(&signed_in.location()).await;
    assert_eq!(next.status, 303);
    assert_eq!(
        next.location(),
        format!("/auth/set-password?interaction={}", enc(&interaction))
    );

    // Starting over does not skip the step: a new authorization request, or resuming the
    // old one, lands on set-password again; prompt=none gets interaction_required.
    let again = browser.get(&authorize_url(&client, &[])).await;
    assert_eq!(again.status, 303);
    assert!(
        again
            .location()
            .starts_with("/auth/set-password?interaction="),
        "{}",
        again.location()
    );
    let resumed = browser
        .get(&format!(
            "/oauth2/authorize/resume?interaction={}",
            enc(&interaction)
        ))
        .await;
    assert!(resumed.location().starts_with("/auth/set-password?"));
    let silent = browser
        .get(&authorize_url(&client, &[("prompt", "none")]))
        .await;
    assert!(
        silent.location().starts_with(CALLBACK),
        "{}",
        silent.location()
    );
    assert!(silent.location().contains("error=interaction_required"));
    // Nor does a first-party account token with the session.
    let token_attempt = server
        .http
        .post(server.url("/api/accounts/acc_01J00000000000000000000000/token"))
        .header("cookie", browser.cookie_header())
        .json(&json!({ "client_id": client.client_id, "audience": "https://api.example.test" }))
        .send()
        .await
        .unwrap();
    assert_ne!(token_attempt.status().as_u16(), 200);

    // The password rules hold; the step completes.
    let short = set_password(&mut browser, &interaction, "short", "short").await;
    assert_eq!(short.status, 422);
    let differ = set_password(&mut browser, &interaction, NEW_PASSWORD, "something else").await;
    assert_eq!(differ.status, 422);
    let done = set_password(&mut browser, &interaction, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location(),
        format!("/oauth2/authorize/resume?interaction={}", enc(&interaction))
    );
    // Once set, the page is not a way to change it.
    let revisit = browser
        .get(&format!(
            "/auth/set-password?interaction={}",
            enc(&interaction)
        ))
        .await;
    assert_eq!(revisit.status, 303);

    let params = run_flow(&mut browser, &done.location(), "unused").await;
    assert_eq!(params["state"], "st-123");
    let (status, tokens) = token_request(
        &server,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        jwt_payload(tokens["id_token"].as_str().unwrap())["sub"],
        user_id.as_str()
    );

    // Audited: the code sent, the sign-in with its method, the password set.
    let events = audit_events(&server, &format!("target_id={user_id}")).await;
    let has = |action: &str, outcome: &str| {
        events
            .iter()
            .any(|e| e["action"] == action && e["outcome"] == outcome)
    };
    assert!(has("auth.sign_in_code", "success"), "{events:#?}");
    assert!(has("user.password_set", "success"), "{events:#?}");
    assert!(
        events.iter().any(|e| e["action"] == "auth.sign_in"
            && e["outcome"] == "success"
            && e["details"]["method"] == "email_code"),
        "{events:#?}"
    );
    assert!(events.iter().all(|e| !e.to_string().contains(&code)));

    // Later, in another browser: the new password works.
    let mut other = Browser::new(&server);
    let start = other.get(&authorize_url(&client, &[])).await;
    let interaction = interaction_of(&start.location());
    let signed_in = password_sign_in(&mut other, &interaction, email, NEW_PASSWORD).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let params = run_flow(&mut other, &signed_in.location(), "unused").await;
    assert!(params.contains_key("code"), "{params:?}");
}

/// Five wrong codes lock the code; an expired, a used, or another user's code is refused
/// with the same message.
async fn code_refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = "alice@example.test";
    let bob = "bob@example.test";
    let alice_id = passwordless(&server, alice).await;
    let bob_id = passwordless(&server, bob).await;
    let mut browser = Browser::new(&server);
    let mut seen = HashSet::new();

    // Wrong ×5, then even the right code is refused.
    request_code(&mut browser, "", alice).await;
    let code = next_code(&server, alice, &mut seen).await;
    let wrong = if code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    for _ in 0..5 {
        let page = submit_code(&mut browser, "", alice, wrong).await;
        assert_eq!(page.status, 401);
        assert!(page.body.contains(WRONG_CODE), "{}", page.body);
    }
    let locked = submit_code(&mut browser, "", alice, &code).await;
    assert_eq!(locked.status, 401);
    assert!(locked.body.contains(WRONG_CODE));

    // A second request within the minute sends nothing (throttled per account, silently).
    let page = request_code(&mut browser, "", alice).await;
    assert!(page.body.contains("If an account exists"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(outbox(&server).len(), 1);

    // Expired.
    plant_code(&server, &alice_id, "24681357", -1).await;
    let expired = submit_code(&mut browser, "", alice, "24681357").await;
    assert_eq!(expired.status, 401);
    assert!(expired.body.contains(WRONG_CODE));

    // Bob's code is not Alice's; it still works for Bob, once.
    plant_code(&server, &bob_id, "13572468", 600).await;
    let crossed = submit_code(&mut browser, "", alice, "13572468").await;
    assert_eq!(crossed.status, 401);
    assert!(crossed.body.contains(WRONG_CODE));
    let ok = submit_code(&mut browser, "", bob, "13572468").await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    // Without an authorization request, a user with no password goes to set-password.
    assert_eq!(ok.location(), "/auth/set-password");
    let mut other = Browser::new(&server);
    let reused = submit_code(&mut other, "", bob, "13572468").await;
    assert_eq!(reused.status, 401);
    assert!(reused.body.contains(WRONG_CODE));

    // Refusals are audited with their real reasons.
    let denied = audit_events(&server, "action=auth.sign_in&outcome=denied").await;
    let reasons: HashSet<&str> = denied.iter().filter_map(|e| e["reason"].as_str()).collect();
    for reason in ["wrong_code", "locked", "expired", "no_code"] {
        assert!(
            reasons.contains(reason),
            "{reason} missing from {reasons:?}"
        );
    }
}

/// Unknown addresses and suspended users get the same page and no mail.
async fn no_mail_without_an_active_account(backend: Backend) {
    let server = TestServer::start(backend).await;
    create_user(
        &server,
        json!({ "primary_email": "gone@example.test", "status": "suspended" }),
    )
    .await;
    create_user(&server, json!({ "username": "nomail" })).await;
    let known = "known@example.test";
    passwordless(&server, known).await;
    let mut browser = Browser::new(&server);

    let for_known = request_code(&mut browser, "", known).await;
    let mut seen = HashSet::new();
    next_code(&server, known, &mut seen).await;
    let normalise =
        |page: &Page, email: &str| page.body.replace(&enc(email), "E").replace(email, "E");
    for email in [
        "nobody@example.test",
        "gone@example.test",
        "nomail@example.test",
    ] {
        let page = request_code(&mut browser, "", email).await;
        assert_eq!(normalise(&page, email), normalise(&for_known, known));
        // A code guessed for an address without an account is refused the same way.
        let refused = submit_code(&mut browser, "", email, "12345678").await;
        assert_eq!(refused.status, 401);
        assert!(refused.body.contains(WRONG_CODE));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(outbox(&server).len(), 1, "{:?}", outbox(&server));

    // A bad address is a form error, and a missing CSRF token is refused.
    let form = browser.get("/auth/sign-in/code").await;
    let csrf = form.field("csrf_token");
    let bad = browser
        .post(
            "/auth/sign-in/code",
            &[("csrf_token", csrf.as_str()), ("email", "not-an-address")],
        )
        .await;
    assert_eq!(bad.status, 422);
    let forged = browser
        .post(
            "/auth/sign-in/code",
            &[("csrf_token", "x"), ("email", known)],
        )
        .await;
    assert_eq!(forged.status, 403);
    let forged = browser
        .post(
            "/auth/sign-in/code/verify",
            &[("csrf_token", "x"), ("email", known), ("code", "12345678")],
        )
        .await;
    assert_eq!(forged.status, 403);
    // The pages carry the hosted-page CSP.
    assert!(bad.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
}

/// A password attempt for a user without a password is a wrong password: same status, same
/// page (which offers the code), and about the same time (a decoy Argon2id verification).
async fn no_password_is_a_wrong_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    passwordless(&server, "nopass@example.test").await;
    create_user(
        &server,
        json!({ "primary_email": "haspass@example.test", "password": PASSWORD }),
    )
    .await;
    let mut browser = Browser::new(&server);
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (i, login) in ["nopass@example.test", "haspass@example.test"]
            .into_iter()
            .enumerate()
        {
            let started = std::time::Instant::now();
            let page = password_sign_in(&mut browser, "", login, "not the password").await;
            times[i].push(started.elapsed());
            assert_eq!(page.status, 401);
            assert!(page
                .body
                .contains("Wrong username, email, phone or password."));
            assert!(page.body.contains("Email me a sign-in code"));
        }
    }
    let a = password_sign_in(&mut browser, "", "nopass@example.test", "x").await;
    let b = password_sign_in(&mut browser, "", "haspass@example.test", "x").await;
    assert_eq!(
        a.body.replace("nopass@", "X@"),
        b.body.replace("haspass@", "X@")
    );
    for t in &mut times {
        t.sort();
    }
    let ratio = times[0][1].as_secs_f64() / times[1][1].as_secs_f64();
    assert!((0.3..3.0).contains(&ratio), "median time ratio {ratio}");
}

/// A minimal SMTP server: enough of RFC 5321 for one client to hand over messages.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read);
                write.write_all(b"220 sink.test ESMTP\r\n").await.unwrap();
                let mut transcript = String::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    transcript.push_str(&line);
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink.test\r\n",
                        "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await.unwrap();
                            loop {
                                line.clear();
                                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                transcript.push_str(&line);
                            }
                            store.lock().await.push(transcript.clone());
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"502 not implemented\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, received)
}

/// `mail_transport = "smtp"`: the code arrives at an SMTP server and signs the user in.
async fn code_arrives_over_smtp(backend: Backend) {
    let (port, received) = smtp_sink().await;
    let server = TestServer::start_with(
        backend,
        Options {
            smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
            ..Options::default()
        },
    )
    .await;
    let email = "smtp-user@example.test";
    passwordless(&server, email).await;
    let mut browser = Browser::new(&server);
    request_code(&mut browser, "", email).await;
    let mut message = None;
    for _ in 0..100 {
        if let Some(m) = received.lock().await.first() {
            message = Some(m.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = message.expect("no message reached the SMTP sink");
    assert!(message.contains(&format!("RCPT TO:<{email}>")), "{message}");
    let host = url::Url::parse(&server.base)
        .unwrap()
        .host_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains(&format!("MAIL FROM:<no-reply@{host}>")),
        "{message}"
    );
    assert!(
        message.contains("Subject: Your Keyward sign-in code"),
        "{message}"
    );
    let code = code_in(&message);
    let signed_in = submit_code(&mut browser, "", email, &code).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location(), "/auth/set-password");
    // Nothing went to the outbox.
    assert!(!server.outbox().exists() || outbox(&server).is_empty());
}

/// An SMTP server that accepts connections and never answers: the page answers at once and
/// the same as for an unknown address; the send gives up at the timeout and is audited as a
/// failure.
async fn a_silent_smtp_server_delays_nothing(backend: Backend) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().await.push(socket);
        }
    });
    let server = TestServer::start_with(
        backend,
        Options {
            smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
            ..Options::default()
        },
    )
    .await;
    let email = "slow@example.test";
    let user_id = passwordless(&server, email).await;
    let mut browser = Browser::new(&server);
    let started = std::time::Instant::now();
    let known = request_code(&mut browser, "", email).await;
    let unknown = request_code(&mut browser, "", "unknown@example.test").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let normalise =
        |page: &Page, email: &str| page.body.replace(&enc(email), "E").replace(email, "E");
    assert_eq!(
        normalise(&known, email),
        normalise(&unknown, "unknown@example.test")
    );
    // testkit: smtp_timeout_secs = 5.
    let mut failure = None;
    for _ in 0..100 {
        let events = audit_events(&server, &format!("target_id={user_id}")).await;
        failure = events
            .into_iter()
            .find(|e| e["action"] == "auth.sign_in_code" && e["outcome"] == "failure");
        if failure.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failure = failure.expect("the send did not time out");
    assert_eq!(failure["reason"], "mail_failed");
    assert!(!held.lock().await.is_empty());
}

on_both_stores!(
    code_sign_in_then_set_password_then_password,
    code_refusals,
    no_mail_without_an_active_account,
    no_password_is_a_wrong_password,
    code_arrives_over_smtp,
    a_silent_smtp_server_delays_nothing,
);

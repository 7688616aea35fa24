//! User import through `POST /api/users/import`: every digest format arrives, verifies the
//! right password at sign-in and is Argon2id after it; conflicts are reported per row; a
//! re-run creates nothing twice; upsert changes only what changed; dry runs store nothing;
//! every source format goes through the API; identities can be looked up.

use serde_json::{json, Value};

use crate::interactive::{setup, Browser};
use crate::on_both_stores;
use crate::testkit::{Backend, TestServer};

const ORIGIN: &str = "https://client.example.test";

/// One vector per algorithm, from `keyward-digest`'s fixtures (made by the defining
/// libraries): (algorithm, digest as JSON value, password, wrong password).
fn vectors() -> Vec<(String, Value, String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../keyward-digest/tests/fixtures/vectors.json"
    );
    let fixtures: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for v in fixtures["vectors"].as_array().unwrap() {
        let algorithm = v["algorithm"].as_str().unwrap().to_owned();
        let digest = match (&v["digest"], &v["legacy"]) {
            (Value::String(d), _) => Value::String(d.clone()),
            (_, legacy) => legacy.clone(),
        };
        seen.entry(algorithm.clone()).or_insert((
            algorithm,
            digest,
            v["password"].as_str().unwrap().to_owned(),
            v["wrong_password"].as_str().unwrap().to_owned(),
        ));
    }
    seen.into_values().collect()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../keyward-import/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn import(
    server: &TestServer,
    token: &str,
    query: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let response = server
        .http
        .post(server.url("/api/users/import"))
        .query(query)
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn ndjson(rows: &[Value]) -> Vec<u8> {
    let mut out = String::new();
    for row in rows {
        out.push_str(&row.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

async fn sign_in(server: &TestServer, client_id: &str, login: &str, password: &str) -> u16 {
    let mut browser = Browser::new(server);
    let csrf: Value = serde_json::from_str(&browser.get("/auth/csrf").await.body).unwrap();
    server
        .http
        .post(server.url("/auth/sign-in"))
        .header("origin", ORIGIN)
        .header("x-csrf-token", csrf["csrf_token"].as_str().unwrap())
        .header("cookie", browser.cookie_header())
        .json(&json!({ "client_id": client_id, "login": login, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn count_users(server: &TestServer, token: &str, source: &str) -> usize {
    let mut total = 0;
    let mut cursor = String::new();
    loop {
        let (status, page) = server
            .call(
                "GET",
                &format!("/api/users?external_source={source}&limit=100&cursor={cursor}"),
                token,
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        total += page["data"].as_array().unwrap().len();
        match page["pagination"]["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return total,
        }
    }
}

async fn imported_users_sign_in_and_are_upgraded(backend: Backend) {
    let server = TestServer::start(backend).await;
    let app = setup(&server, "spa", true).await;
    let admin = server.admin_token().await;
    // Someone already signed up with this address.
    let (status, _) = server
        .call(
            "POST",
            "/api/users",
            &admin,
            Some(json!({ "primary_email": "taken@example.com" })),
        )
        .await;
    assert_eq!(status, 201);

    let vectors = vectors();
    let mut rows: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, (_, digest, _, _))| {
            json!({
                "external_id": format!("ext-{i}"),
                "username": format!("imported{i}"),
                "password_digest": digest,
                "identities": { "github": { "user_id": format!("gh-{i}"), "details": { "login": format!("u{i}") } } },
                "created_at": "2019-03-04T05:06:07Z",
            })
        })
        .collect();
    let n = rows.len();
    rows.push(json!({ "external_id": "clash", "primary_email": "TAKEN@example.com" }));
    rows.push(
        json!({ "external_id": "bad-digest", "username": "bad", "password_digest": "$9$nope" }),
    );
    rows.push(json!({ "external_id": "dup-identity", "username": "dup", "identities": { "github": { "user_id": "gh-0" } } }));
    let body = {
        let mut b = ndjson(&rows);
        b.extend_from_slice(b"{\"external_id\": \"broken\"\n");
        b
    };

    let (status, job) = import(&server, &admin, &[("source", "legacy")], body.clone()).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["status"], "completed_with_errors", "{job}");
    assert_eq!(job["counts"]["created"], n);
    assert_eq!(job["counts"]["failed"], 4);
    assert_eq!(job["rows_processed"], n + 4);
    let errors: Vec<(u64, String)> = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let n64 = n as u64;
    assert_eq!(
        errors,
        [
            (n64 + 1, "email_taken".to_owned()),
            (n64 + 2, "unknown_digest_format".to_owned()),
            (n64 + 3, "identity_taken".to_owned()),
            (n64 + 4, "malformed_row".to_owned()),
        ]
    );
    // The job can be read back, with its errors paged.
    let id = job["id"].as_str().unwrap();
    let (status, again) = server
        .call("GET", &format!("/api/import-jobs/{id}"), &admin, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["counts"], job["counts"]);
    let (_, page) = server
        .call(
            "GET",
            &format!("/api/import-jobs/{id}/errors?after_row={}&limit=2", n + 1),
            &admin,
            None,
        )
        .await;
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(page[0]["row"], n + 2);

    // Preserved fields and the identity index.
    let (_, found) = server
        .call(
            "GET",
            "/api/users?provider=github&provider_user_id=gh-3",
            &admin,
            None,
        )
        .await;
    let user = &found["data"][0];
    assert_eq!(user["username"], "imported3");
    assert_eq!(user["external_source"], "legacy");
    assert_eq!(user["created_at"], "2019-03-04T05:06:07Z");
    assert_eq!(user["identities"]["github"]["details"]["login"], "u3");

    // Each format verifies its password, refuses a wrong one, and is Argon2id after one
    // sign-in.
    for (i, (algorithm, _, password, wrong)) in vectors.iter().enumerate() {
        let login = format!("imported{i}");
        assert_eq!(
            sign_in(&server, &app.client_id, &login, wrong).await,
            401,
            "{algorithm}"
        );
        assert_eq!(
            sign_in(&server, &app.client_id, &login, password).await,
            200,
            "{algorithm}"
        );
        let (_, found) = server
            .call("GET", &format!("/api/users?username={login}"), &admin, None)
            .await;
        let id = found["data"][0]["id"].as_str().unwrap();
        let stored = server.state.store.get_user(id).await.unwrap().unwrap();
        assert_eq!(
            stored.password_algorithm.as_deref(),
            Some("argon2id"),
            "{algorithm}"
        );
    }

    // The same file again: nothing created twice, the same rows refused.
    let (_, rerun) = import(&server, &admin, &[("source", "legacy")], body).await;
    assert_eq!(rerun["counts"]["created"], 0, "{rerun}");
    assert_eq!(rerun["counts"]["skipped"], n);
    assert_eq!(rerun["counts"]["failed"], 4);
    assert_eq!(count_users(&server, &admin, "legacy").await, n);

    // Upsert: one renamed and suspended user changes, the rest are unchanged; the upgraded
    // digests are not replaced by the (unchanged) legacy ones.
    let mut newer = rows[..n].to_vec();
    newer[0]["name"] = json!("Renamed");
    newer[0]["suspended"] = json!(true);
    let (_, upsert) = import(
        &server,
        &admin,
        &[("source", "legacy"), ("mode", "upsert")],
        ndjson(&newer),
    )
    .await;
    assert_eq!(upsert["status"], "succeeded", "{upsert}");
    assert_eq!(upsert["counts"]["updated"], 1);
    assert_eq!(upsert["counts"]["unchanged"], n - 1);
    let (_, found) = server
        .call("GET", "/api/users?username=imported0", &admin, None)
        .await;
    assert_eq!(found["data"][0]["name"], "Renamed");
    assert_eq!(found["data"][0]["status"], "suspended");
    let stored = server
        .state
        .store
        .get_user(found["data"][0]["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_algorithm.as_deref(), Some("argon2id"));

    // A dry run reports and stores nothing.
    let (_, dry) = import(
        &server,
        &admin,
        &[("source", "other"), ("dry_run", "true")],
        ndjson(&[
            json!({ "external_id": "d1", "username": "dry1" }),
            json!({ "external_id": "d2", "username": "dry2" }),
            json!({ "external_id": "d3", "username": "dry3" }),
        ]),
    )
    .await;
    assert_eq!(dry["counts"]["created"], 3, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(count_users(&server, &admin, "other").await, 0);

    // Audited.
    let (_, events) = server
        .call(
            "GET",
            "/api/audit-logs?action=user.import&limit=10",
            &admin,
            None,
        )
        .await;
    assert_eq!(events["data"].as_array().unwrap().len(), 4);
}

async fn every_source_format_imports_through_the_api(backend: Backend) {
    let hash_config = String::from_utf8(fixture("firebase_hash_config.txt")).unwrap();
    // (format, extra query parameters, body)
    type Case = (&'static str, Vec<(&'static str, String)>, Vec<u8>);
    let cases: Vec<Case> = vec![
        ("keyward", vec![], fixture("keyward.ndjson")),
        ("logto", vec![], fixture("logto.json")),
        ("auth0", vec![], fixture("auth0_users.json")),
        (
            "firebase",
            vec![("firebase_hash_config", hash_config)],
            fixture("firebase_users.json"),
        ),
        (
            "csv",
            vec![(
                "csv_map",
                "external_id=UID,username=Login,email=Email,name=Full Name,phone=Phone,\
                 password_digest=Hash,created_at=Created,suspended=Blocked,\
                 custom_data.plan=Plan,profile.locale=Locale"
                    .to_owned(),
            )],
            fixture("users.csv"),
        ),
    ];
    for (format, extra, body) in cases {
        // The fixtures describe the same people: one server each.
        let server = TestServer::start(backend).await;
        let admin = server.admin_token().await;
        // What the parser alone makes of the file.
        let mut rows = 0u64;
        let mut parse_errors = 0u64;
        let source_format = keyward_server::import::source_format(
            format,
            extra
                .iter()
                .find(|(k, _)| *k == "firebase_hash_config")
                .map(|(_, v)| v.as_str()),
            extra
                .iter()
                .find(|(k, _)| *k == "csv_map")
                .map(|(_, v)| v.as_str()),
        )
        .unwrap();
        keyward_import::read_records(&body[..], &source_format, &mut |r| {
            rows += 1;
            parse_errors += u64::from(r.is_err());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        let mut query: Vec<(&str, &str)> = vec![("format", format), ("source", format)];
        query.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let (status, job) = import(&server, &admin, &query, body).await;
        assert_eq!(status, 201, "{format}: {job}");
        let counts = &job["counts"];
        let created = counts["created"].as_u64().unwrap();
        let failed = counts["failed"].as_u64().unwrap();
        assert_eq!(
            created + failed,
            rows,
            "{format}: every row has an outcome: {job}"
        );
        assert!(failed >= parse_errors, "{format}: {job}");
        assert!(created > 0, "{format}: {job}");
        assert_eq!(
            count_users(&server, &admin, format).await as u64,
            created,
            "{format}"
        );
    }
}

async fn import_refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let (status, _) = import(
        &server,
        "not-a-token",
        &[],
        ndjson(&[json!({"username": "x"})]),
    )
    .await;
    assert_eq!(status, 401);
    let (client_id, secret) = server.m2m_app(&["users:read"]).await;
    let reader = server
        .token_for(&client_id, &secret, &server.audience(), None)
        .await;
    let (status, body) = import(&server, &reader, &[], ndjson(&[json!({"username": "x"})])).await;
    assert_eq!(status, 403, "{body}");
    for query in [
        vec![("format", "nope")],
        vec![("format", "firebase")],
        vec![("format", "csv")],
        vec![("mode", "merge")],
        vec![("source", "has space")],
    ] {
        let (status, body) =
            import(&server, &admin, &query, ndjson(&[json!({"username": "x"})])).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        assert_eq!(body["code"], "invalid_import_options");
    }
    // Nothing was created by any of them.
    let (_, users) = server
        .call("GET", "/api/users?username=x", &admin, None)
        .await;
    assert!(users["data"].as_array().unwrap().is_empty());
    let (status, _) = server
        .call(
            "GET",
            "/api/import-jobs/imp_01jd8q7k5v4h3g2f1e0d9c8b7a",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .call("GET", "/api/import-jobs/bogus", &admin, None)
        .await;
    assert_eq!(status, 404);
    // Other routes keep the 1 MiB limit: only the import route lifts it.
    let big = json!({ "username": "big", "custom_data": { "pad": "x".repeat(2 * 1024 * 1024) } });
    let response = server
        .http
        .post(server.url("/api/users"))
        .bearer_auth(&admin)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    // A big body is not cut at the 1 MiB limit of other routes.
    let rows: Vec<Value> = (0..20_000)
        .map(|i| json!({ "external_id": i.to_string(), "username": format!("bulk{i}"), "custom_data": { "pad": "x".repeat(40) } }))
        .collect();
    let body = ndjson(&rows);
    assert!(body.len() > 1024 * 1024);
    let (status, job) = import(&server, &admin, &[("source", "bulk")], body).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["counts"]["created"], 20_000);
}

/// Batches of a job are written two at a time where that changes nothing (the second
/// after the first when they share a unique value); the outcome is what one batch after
/// the other gives: a row matching a user created a batch earlier updates it, a row taking
/// a username or an email from an earlier batch is reported, and every other row is in.
async fn batches_written_side_by_side_match_one_at_a_time(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    // Four batches of 5,000 rows (`import::BATCH_ROWS`); the first three are tied by the
    // rows below, the fourth shares nothing with the third and is written beside it.
    let mut rows: Vec<Value> = (1..=20_000)
        .map(|i| {
            json!({
                "external_id": format!("p{i}"),
                "username": format!("pipe{i}"),
                "primary_email": format!("pipe{i}@example.com"),
                "primary_phone": format!("+1202{i:07}"),
                "identities": { "github": { "user_id": format!("gh-pipe-{i}") } },
            })
        })
        .collect();
    // Row 5,003 is row 2 again, renamed: an update of the user the first batch created.
    rows[5_002] = json!({ "external_id": "p2", "username": "pipe2", "name": "Renamed",
        "primary_email": "pipe2@example.com", "primary_phone": "+12020000002",
        "identities": { "github": { "user_id": "gh-pipe-2" } } });
    // Row 5,004 takes row 3's username (case aside); row 10,005 takes row 5,010's email.
    rows[5_003]["username"] = json!("PIPE3");
    rows[10_004]["primary_email"] = json!("PIPE5010@example.com");
    let (status, job) = import(
        &server,
        &admin,
        &[("source", "pipe"), ("mode", "upsert")],
        ndjson(&rows),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["rows_processed"], 20_000, "{job}");
    assert_eq!(job["counts"]["created"], 19_997, "{job}");
    assert_eq!(job["counts"]["updated"], 1, "{job}");
    assert_eq!(job["counts"]["failed"], 2, "{job}");
    let errors: Vec<(u64, &str)> = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_u64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(errors, [(5_004, "username_taken"), (10_005, "email_taken")]);
    assert_eq!(count_users(&server, &admin, "pipe").await, 19_997);
    let (status, page) = server
        .call(
            "GET",
            "/api/users?external_id=p2&external_source=pipe",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["name"], "Renamed", "{page}");
}

on_both_stores!(
    imported_users_sign_in_and_are_upgraded,
    batches_written_side_by_side_match_one_at_a_time,
    every_source_format_imports_through_the_api,
    import_refusals
);

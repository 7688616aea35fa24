//! Management API rules: authentication, scopes, uniqueness, owners, hierarchy, input errors.

use serde_json::{json, Value};

use crate::on_both_stores;
use crate::testkit::{Backend, TestServer};

on_both_stores!(
    missing_or_foreign_tokens_are_401_and_missing_scopes_403,
    usernames_and_emails_are_unique_case_insensitively,
    phones_are_normalized_and_unique,
    the_last_owner_cannot_be_removed_or_demoted,
    accounts_with_children_need_cascade,
    deleting_a_user_removes_memberships_and_guards_last_owners,
    bad_input_is_4xx_never_500,
    cursor_pagination_walks_every_user_once,
    secret_rotation_revokes_old_secrets_when_asked,
    member_routes_accept_membership_or_user_ids,
);

async fn create_user(server: &TestServer, token: &str, body: Value) -> Value {
    let (status, user) = server.call("POST", "/api/users", token, Some(body)).await;
    assert_eq!(status, 201, "{user}");
    user
}

async fn create_account(
    server: &TestServer,
    token: &str,
    name: &str,
    parent: Option<&str>,
) -> String {
    let (status, account) = server
        .call(
            "POST",
            "/api/accounts",
            token,
            Some(json!({ "name": name, "parent_account_id": parent })),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    account["id"].as_str().unwrap().to_owned()
}

async fn missing_or_foreign_tokens_are_401_and_missing_scopes_403(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = server
        .http
        .get(server.url("/api/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated");
    // A garbage token and a token of another audience are both 401.
    let (status, _) = server.call("GET", "/api/users", "not-a-jwt", None).await;
    assert_eq!(status, 401);
    let admin = server.admin_token().await;
    let (status, _) = server
        .call("POST", "/api/resources", &admin, Some(json!({ "identifier": "https://orders.example.com", "name": "Orders", "scopes": [{ "name": "orders:read" }] })))
        .await;
    assert_eq!(status, 201);
    let (status, body) = server
        .call("POST", "/api/applications", &admin, Some(json!({ "name": "orders", "kind": "m2m", "grants": [{ "resource": "https://orders.example.com", "scopes": ["orders:read"] }] })))
        .await;
    assert_eq!(status, 201);
    let orders_token = server
        .token_for(
            body["application"]["client_id"].as_str().unwrap(),
            body["client_secret"].as_str().unwrap(),
            "https://orders.example.com",
            None,
        )
        .await;
    let (status, _) = server.call("GET", "/api/users", &orders_token, None).await;
    assert_eq!(
        status, 401,
        "a token for another API must not open the management API"
    );
    // Read-only token: reads pass, writes are 403 insufficient_scope.
    let (client_id, secret) = server.m2m_app(&["users:read"]).await;
    let reader = server
        .token_for(&client_id, &secret, &server.audience(), None)
        .await;
    let (status, _) = server.call("GET", "/api/users", &reader, None).await;
    assert_eq!(status, 200);
    let response = server
        .http
        .post(server.url("/api/users"))
        .bearer_auth(&reader)
        .json(&json!({ "username": "ann" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "insufficient_scope");
    let (status, _) = server.call("GET", "/api/accounts", &reader, None).await;
    assert_eq!(status, 403);
}

async fn usernames_and_emails_are_unique_case_insensitively(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let ann = create_user(
        &server,
        &admin,
        json!({ "username": "Ann", "primary_email": "Ann@Example.com" }),
    )
    .await;
    let (status, body) = server
        .call(
            "POST",
            "/api/users",
            &admin,
            Some(json!({ "username": "ann" })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("username_taken"))
    );
    let (status, body) = server
        .call(
            "POST",
            "/api/users",
            &admin,
            Some(json!({ "primary_email": "ann@example.COM" })),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("email_taken")));
    // Updating another user onto the same email conflicts too, and changes nothing.
    let bob = create_user(
        &server,
        &admin,
        json!({ "username": "bob", "primary_email": "bob@example.com" }),
    )
    .await;
    let bob_id = bob["id"].as_str().unwrap();
    let (status, body) = server
        .call(
            "PATCH",
            &format!("/api/users/{bob_id}"),
            &admin,
            Some(json!({ "primary_email": "ANN@example.com", "name": "Bob" })),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("email_taken")));
    let (_, bob_now) = server
        .call("GET", &format!("/api/users/{bob_id}"), &admin, None)
        .await;
    assert_eq!(bob_now["primary_email"], "bob@example.com");
    assert!(bob_now["name"].is_null());
    // Lookup by email is case-insensitive.
    let (status, page) = server
        .call("GET", "/api/users?email=ANN%40EXAMPLE.COM", &admin, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["data"][0]["id"], ann["id"]);
    // external_id is unique.
    create_user(&server, &admin, json!({ "external_id": "legacy-1" })).await;
    let (status, body) = server
        .call(
            "POST",
            "/api/users",
            &admin,
            Some(json!({ "external_id": "legacy-1" })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("external_id_taken"))
    );
}

async fn phones_are_normalized_and_unique(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let user = create_user(
        &server,
        &admin,
        json!({ "primary_phone": "+1 (415) 555-0123" }),
    )
    .await;
    assert_eq!(user["primary_phone"], "+14155550123");
    let (status, body) = server
        .call(
            "POST",
            "/api/users",
            &admin,
            Some(json!({ "primary_phone": "+14155550123" })),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("phone_taken")));
    let (status, body) = server
        .call(
            "POST",
            "/api/users",
            &admin,
            Some(json!({ "primary_phone": "555-0123" })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("validation_failed"))
    );
}

async fn the_last_owner_cannot_be_removed_or_demoted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let account = create_account(&server, &admin, "Acme", None).await;
    let ann = create_user(&server, &admin, json!({ "username": "ann" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = create_user(&server, &admin, json!({ "username": "bob" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, owner) = server
        .call(
            "POST",
            &format!("/api/accounts/{account}/members"),
            &admin,
            Some(json!({ "user_id": ann, "role": "owner" })),
        )
        .await;
    assert_eq!(status, 201, "{owner}");
    let owner_id = owner["id"].as_str().unwrap();
    let (status, body) = server
        .call(
            "PATCH",
            &format!("/api/accounts/{account}/members/{owner_id}"),
            &admin,
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_owner")));
    let (status, body) = server
        .call(
            "DELETE",
            &format!("/api/accounts/{account}/members/{owner_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_owner")));
    // With a second owner, the first may step down.
    let (status, _) = server
        .call(
            "POST",
            &format!("/api/accounts/{account}/members"),
            &admin,
            Some(json!({ "user_id": bob, "role": "owner" })),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = server
        .call(
            "PATCH",
            &format!("/api/accounts/{account}/members/{owner_id}"),
            &admin,
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!((status, body["role"].as_str()), (200, Some("viewer")));
    let (status, body) = server
        .call(
            "DELETE",
            &format!("/api/accounts/{account}/members/{bob}"),
            &admin,
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_owner")));
    // Adding the same user twice is a conflict.
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/accounts/{account}/members"),
            &admin,
            Some(json!({ "user_id": ann, "role": "member" })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_member"))
    );
}

async fn accounts_with_children_need_cascade(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let root = create_account(&server, &admin, "Root", None).await;
    let child = create_account(&server, &admin, "Child", Some(&root)).await;
    let (status, grandchild) = server
        .call(
            "POST",
            &format!("/api/accounts/{child}/accounts"),
            &admin,
            Some(json!({ "name": "Grandchild" })),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(grandchild["parent_account_id"], child.as_str());
    let (status, children) = server
        .call(
            "GET",
            &format!("/api/accounts?parent_account_id={root}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(children["data"].as_array().unwrap().len(), 1);
    let (status, body) = server
        .call("DELETE", &format!("/api/accounts/{root}"), &admin, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("account_has_children"))
    );
    let (status, _) = server
        .call("GET", &format!("/api/accounts/{child}"), &admin, None)
        .await;
    assert_eq!(status, 200, "a refused delete leaves everything in place");
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/accounts/{root}?cascade=true"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204);
    for id in [&root, &child, grandchild["id"].as_str().unwrap()] {
        let (status, _) = server
            .call("GET", &format!("/api/accounts/{id}"), &admin, None)
            .await;
        assert_eq!(status, 404);
    }
    // A child under a parent that does not exist.
    let (status, _) = server
        .call(
            "POST",
            "/api/accounts",
            &admin,
            Some(json!({ "name": "Orphan", "parent_account_id": root })),
        )
        .await;
    assert_eq!(status, 404);
}

async fn deleting_a_user_removes_memberships_and_guards_last_owners(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let account = create_account(&server, &admin, "Acme", None).await;
    let ann = create_user(&server, &admin, json!({ "username": "ann" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = create_user(&server, &admin, json!({ "username": "bob" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .call(
            "POST",
            &format!("/api/accounts/{account}/members"),
            &admin,
            Some(json!({ "user_id": ann, "role": "owner" })),
        )
        .await;
    server
        .call(
            "POST",
            &format!("/api/accounts/{account}/members"),
            &admin,
            Some(json!({ "user_id": bob, "role": "member" })),
        )
        .await;
    let (status, _) = server
        .call("DELETE", &format!("/api/users/{bob}"), &admin, None)
        .await;
    assert_eq!(status, 204);
    let (_, members) = server
        .call(
            "GET",
            &format!("/api/accounts/{account}/members"),
            &admin,
            None,
        )
        .await;
    let members = members["data"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["user_id"], ann.as_str());
    let (status, body) = server
        .call("DELETE", &format!("/api/users/{ann}"), &admin, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("user_is_last_owner"))
    );
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/users/{ann}?force=true"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, members) = server
        .call(
            "GET",
            &format!("/api/accounts/{account}/members"),
            &admin,
            None,
        )
        .await;
    assert!(members["data"].as_array().unwrap().is_empty());
    let (status, _) = server
        .call("DELETE", &format!("/api/users/{ann}"), &admin, None)
        .await;
    assert_eq!(status, 404);
}

async fn bad_input_is_4xx_never_500(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let send_raw = |path: &str, content_type: &str, body: &str| {
        server
            .http
            .post(server.url(path))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
    };
    let response = send_raw("/api/users", "application/json", "{\"username\": ")
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "malformed_json");
    assert!(
        body["request_id"].as_str().is_some(),
        "problems carry the request id: {body}"
    );
    let response = send_raw("/api/users", "application/json", "{\"usernme\": \"typo\"}")
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let response = send_raw("/api/users", "application/json", "{\"username\": 42}")
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let response = send_raw("/api/users", "text/plain", "{}").await.unwrap();
    assert_eq!(response.status(), 415);
    let response = send_raw("/api/accounts", "application/json", "{\"name\": \"\"}")
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let response = send_raw("/api/users", "application/json", "{\"profile\": [1,2]}")
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    for path in [
        "/api/users/nope",
        "/api/users/usr_00000000000000000000000000",
        "/api/accounts/acc_%27%20OR%201=1",
        "/api/applications/app_x",
        "/api/resources/res_1",
    ] {
        let (status, body) = server.call("GET", path, &admin, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = server
        .call("GET", "/api/users?limit=abc", &admin, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, _) = server
        .call("GET", "/api/users?limit=100000", &admin, None)
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .call(
            "GET",
            "/api/users?cursor=%27;DROP%20TABLE%20users;--",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .call(
            "DELETE",
            "/api/accounts/acc_01hzzzzzzzzzzzzzzzzzzzzzzz?cascade=maybe",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = server.call("GET", "/api/no-such-route", &admin, None).await;
    assert_eq!(status, 404);
    let (status, _) = server
        .call(
            "POST",
            "/api/accounts/acc_01hzzzzzzzzzzzzzzzzzzzzzzz/members",
            &admin,
            Some(json!({ "user_id": "usr_01hzzzzzzzzzzzzzzzzzzzzzzz", "role": "king" })),
        )
        .await;
    assert_eq!(status, 422);
}

async fn cursor_pagination_walks_every_user_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            create_user(&server, &admin, json!({ "username": format!("user{i}") })).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/users?limit=2&cursor={c}"),
            None => "/api/users?limit=2".to_owned(),
        };
        let (status, page) = server.call("GET", &path, &admin, None).await;
        assert_eq!(status, 200);
        pages += 1;
        for user in page["data"].as_array().unwrap() {
            seen.push(user["id"].as_str().unwrap().to_owned());
        }
        if !page["pagination"]["has_more"].as_bool().unwrap() {
            assert!(page["pagination"]["next_cursor"].is_null());
            break;
        }
        cursor = Some(
            page["pagination"]["next_cursor"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(pages, 3);
    // Listings are in id order; ids are time-ordered to the millisecond, so users created
    // within one millisecond may list in either order.
    created.sort();
    assert_eq!(seen, created);
    let (_, page) = server
        .call("GET", "/api/users?search=USER3", &admin, None)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
}

async fn secret_rotation_revokes_old_secrets_when_asked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let (client_id, old_secret) = server.m2m_app(&["users:read"]).await;
    let (_, app) = server
        .call(
            "GET",
            &format!("/api/applications/{client_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(app["secrets"].as_array().unwrap().len(), 1);
    assert!(
        app.to_string().find(&old_secret).is_none(),
        "secrets are never returned"
    );
    // Rotation keeps the old secret by default...
    let (status, rotated) = server
        .call(
            "POST",
            &format!("/api/applications/{client_id}/secrets"),
            &admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    server
        .token_for(&client_id, &old_secret, &server.audience(), None)
        .await;
    server
        .token_for(&client_id, &new_secret, &server.audience(), None)
        .await;
    // ...and expires it at once when asked.
    let (status, newest) = server
        .call(
            "POST",
            &format!("/api/applications/{client_id}/secrets"),
            &admin,
            Some(json!({ "expire_existing_after_secs": 0 })),
        )
        .await;
    assert_eq!(status, 201);
    let newest = newest["client_secret"].as_str().unwrap().to_owned();
    for stale in [&old_secret, &new_secret] {
        let response = server
            .http
            .post(server.url("/oauth2/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("client_secret", stale.as_str()),
                ("audience", &server.audience()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            401,
            "an expired secret must stop working immediately on this node"
        );
    }
    server
        .token_for(&client_id, &newest, &server.audience(), None)
        .await;
    // Deleting the application revokes its secrets at once.
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/applications/{client_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let response = server
        .http
        .post(server.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", newest.as_str()),
            ("audience", &server.audience()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

async fn member_routes_accept_membership_or_user_ids(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let account = create_account(&server, &admin, "Acme", None).await;
    let ann = create_user(&server, &admin, json!({ "username": "ann" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, membership) = server
        .call(
            "POST",
            &format!("/api/accounts/{account}/members"),
            &admin,
            Some(json!({ "user_id": ann, "role": "viewer" })),
        )
        .await;
    let (status, by_user) = server
        .call(
            "PATCH",
            &format!("/api/accounts/{account}/members/{ann}"),
            &admin,
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_user["id"], membership["id"]);
    let (_, accounts) = server
        .call("GET", &format!("/api/accounts?user_id={ann}"), &admin, None)
        .await;
    assert_eq!(accounts["data"][0]["id"], account.as_str());
    let (status, _) = server
        .call(
            "DELETE",
            &format!(
                "/api/accounts/{account}/members/{}",
                membership["id"].as_str().unwrap()
            ),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/api/accounts/{account}/members/{ann}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 404);
}

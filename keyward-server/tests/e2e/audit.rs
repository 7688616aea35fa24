//! Every mutation, allowed or refused, lands in the audit log with actor, target, outcome.

use serde_json::{json, Value};

use crate::on_both_stores;
use crate::testkit::{Backend, TestServer, ADMIN_CLIENT_ID};

on_both_stores!(mutations_and_refusals_are_audited);

async fn events(server: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let (status, page) = server
        .call("GET", &format!("/api/audit-logs?{query}"), token, None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

async fn mutations_and_refusals_are_audited(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let (status, user) = server
        .call(
            "POST",
            "/api/users",
            &admin,
            Some(json!({ "username": "ann" })),
        )
        .await;
    assert_eq!(status, 201);
    let user_id = user["id"].as_str().unwrap();
    let created = events(&server, &admin, &format!("target_id={user_id}")).await;
    assert_eq!(created.len(), 1);
    let event = &created[0];
    assert_eq!(event["action"], "user.create");
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["actor_type"], "client");
    assert_eq!(event["actor_id"], ADMIN_CLIENT_ID);
    assert!(event["request_id"].as_str().is_some());

    // A rule refusal is a failure event with the error code as reason.
    let (status, _) = server
        .call(
            "POST",
            "/api/users",
            &admin,
            Some(json!({ "username": "ANN" })),
        )
        .await;
    assert_eq!(status, 409);
    let failures = events(&server, &admin, "outcome=failure&action=user.create").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["reason"], "username_taken");

    // A permission refusal is a denied event naming the caller.
    let (client_id, secret) = server.m2m_app(&["users:read"]).await;
    let reader = server
        .token_for(&client_id, &secret, &server.audience(), None)
        .await;
    let (status, _) = server
        .call("DELETE", &format!("/api/users/{user_id}"), &reader, None)
        .await;
    assert_eq!(status, 403);
    let denied = events(&server, &admin, "outcome=denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["action"], "user.delete");
    assert_eq!(denied[0]["actor_id"], client_id.as_str());
    assert_eq!(denied[0]["target_id"], user_id);
    assert_eq!(denied[0]["reason"], "insufficient_scope");

    // Anonymous attempts are recorded too.
    let response = server
        .http
        .post(server.url("/api/accounts"))
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let anonymous = events(&server, &admin, "action=account.create").await;
    assert_eq!(anonymous.len(), 1);
    assert_eq!(anonymous[0]["actor_type"], "anonymous");
    assert_eq!(anonymous[0]["outcome"], "denied");

    // Newest first.
    let all = events(&server, &admin, "limit=100").await;
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted);
    // Reading the log needs audit:read.
    let (status, _) = server.call("GET", "/api/audit-logs", &reader, None).await;
    assert_eq!(status, 403);
}

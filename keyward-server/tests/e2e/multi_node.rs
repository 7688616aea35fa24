//! Two server processes on one PostgreSQL behave as one server.

use serde_json::json;

use crate::testkit::{Backend, Options, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_postgres_store() {
    let a = TestServer::start_with(
        Backend::Postgres,
        Options {
            client_cache_ttl_secs: 1,
            ..Options::default()
        },
    )
    .await;
    let b = TestServer::start_with(
        Backend::Postgres,
        Options {
            client_cache_ttl_secs: 1,
            database_url: Some(a.database_url.clone()),
            issuer: Some(a.base.clone()),
            ..Options::default()
        },
    )
    .await;
    // Node B uses node A's signing key (one first key, whoever created it).
    let a_jwks: serde_json::Value = a
        .http
        .get(a.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b_jwks: serde_json::Value = b
        .http
        .get(b.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a_jwks, b_jwks);
    // Both nodes stand behind one issuer: a token from either is valid at the other.
    let token_a = a.admin_token().await;
    let token_b = b.admin_token().await;
    let (status, _) = b.call("GET", "/api/users", &token_a, None).await;
    assert_eq!(status, 200);
    let (status, _) = a.call("GET", "/api/users", &token_b, None).await;
    assert_eq!(status, 200);
    let (status, user) = a
        .call(
            "POST",
            "/api/users",
            &token_a,
            Some(json!({ "username": "shared" })),
        )
        .await;
    assert_eq!(status, 201);
    let (status, seen) = b
        .call(
            "GET",
            &format!("/api/users/{}", user["id"].as_str().unwrap()),
            &token_b,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(seen["username"], "shared");
    // An application created through A can get tokens from B.
    let (client_id, secret) = a.m2m_app(&["users:read"]).await;
    let token = b.token_for(&client_id, &secret, &b.audience(), None).await;
    let (status, _) = b.call("GET", "/api/users", &token, None).await;
    assert_eq!(status, 200);
    // A key rotated through one node is picked up by the other on its next reload.
    let key = keyward_server::bootstrap::rotate_signing_key(
        &a.state,
        keyward_core::keys::KeyAlgorithm::EdDsa,
        time::Duration::ZERO,
    )
    .await
    .unwrap();
    a.state.reload_keys().await.unwrap();
    b.state.reload_keys().await.unwrap();
    let from_a = a.admin_token().await;
    assert_eq!(
        jsonwebtoken::decode_header(&from_a).unwrap().kid.unwrap(),
        key.id
    );
    let (status, _) = b.call("GET", "/api/users", &from_a, None).await;
    assert_eq!(status, 200);
}

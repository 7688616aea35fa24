//! Discovery, JWKS, key rotation, ES256, OpenAPI, health and metrics.

use jsonwebtoken::decode_header;
use keyward_core::keys::KeyAlgorithm;
use serde_json::Value;

use crate::on_both_stores;
use crate::testkit::{Backend, Options, TestServer};

on_both_stores!(
    discovery_documents_describe_the_server,
    key_rotation_publishes_first_and_keeps_old_tokens_valid,
    es256_is_configurable,
    openapi_health_and_metrics_are_served,
    first_start_without_bootstrap_settings_generates_an_admin,
);

async fn get_json(server: &TestServer, path: &str) -> (u16, Value) {
    let response = server.http.get(server.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn discovery_documents_describe_the_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (status, doc) = get_json(&server, path).await;
        assert_eq!(status, 200);
        assert_eq!(doc["issuer"], server.base.as_str());
        assert_eq!(doc["token_endpoint"], server.url("/oauth2/token").as_str());
        assert_eq!(
            doc["jwks_uri"],
            server.url("/.well-known/jwks.json").as_str()
        );
        assert!(doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "client_credentials"));
        assert!(!doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "password" || g == "implicit"));
    }
    let (status, jwks) = get_json(&server, "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert!(
        keys[0].get("d").is_none(),
        "private key material must never be published"
    );
}

async fn key_rotation_publishes_first_and_keeps_old_tokens_valid(backend: Backend) {
    let server = TestServer::start(backend).await;
    let old_token = server.admin_token().await;
    let old_kid = decode_header(&old_token).unwrap().kid.unwrap();
    // A key that activates later is published at once but does not sign yet.
    let next = keyward_server::bootstrap::rotate_signing_key(
        &server.state,
        KeyAlgorithm::EdDsa,
        time::Duration::minutes(5),
    )
    .await
    .unwrap();
    server.state.reload_keys().await.unwrap();
    let (_, jwks) = get_json(&server, "/.well-known/jwks.json").await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&next.id.as_str()));
    let still_old = server.admin_token().await;
    assert_eq!(decode_header(&still_old).unwrap().kid.unwrap(), old_kid);
    // An immediately active key signs new tokens; the old key's tokens keep working.
    let now_key = keyward_server::bootstrap::rotate_signing_key(
        &server.state,
        KeyAlgorithm::EdDsa,
        time::Duration::ZERO,
    )
    .await
    .unwrap();
    server.state.reload_keys().await.unwrap();
    let new_token = server.admin_token().await;
    assert_eq!(decode_header(&new_token).unwrap().kid.unwrap(), now_key.id);
    let (status, _) = server.call("GET", "/api/users", &old_token, None).await;
    assert_eq!(
        status, 200,
        "tokens of the superseded key stay valid until they expire"
    );
    let (status, _) = server.call("GET", "/api/users", &new_token, None).await;
    assert_eq!(status, 200);
    // The stored private keys are sealed, not plain PKCS#8.
    let stored = server.state.store.all_signing_keys().await.unwrap();
    assert_eq!(stored.len(), 3);
    for key in stored {
        assert_eq!(key.sealed_private_key[0], 1, "sealed format version");
        assert!(
            !key.sealed_private_key
                .windows(3)
                .any(|w| w == [0x30, 0x51, 0x02]),
            "no DER header in clear"
        );
    }
}

async fn es256_is_configurable(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        Options {
            signing_algorithm: "ES256",
            ..Options::default()
        },
    )
    .await;
    let token = server.admin_token().await;
    assert_eq!(
        decode_header(&token).unwrap().alg,
        jsonwebtoken::Algorithm::ES256
    );
    let (status, _) = server.call("GET", "/api/users", &token, None).await;
    assert_eq!(status, 200);
    let (_, jwks) = get_json(&server, "/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
}

async fn openapi_health_and_metrics_are_served(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, doc) = get_json(&server, "/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/oauth2/token",
        "/api/users",
        "/api/users/{id}",
        "/api/applications/{application_id}/users",
        "/api/accounts/{id}/accounts",
        "/api/accounts/{id}/members/{member_id}",
        "/api/audit-logs",
    ] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    assert!(doc["components"]["schemas"].get("Problem").is_some());
    let (status, health) = get_json(&server, "/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = get_json(&server, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready["store"]["ok"], true);
    server.admin_token().await;
    let response = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("keyward_tokens_issued_total{grant_type=\"client_credentials\"}"),
        "{text}"
    );
    assert!(text.contains("keyward_http_requests_total"));
    // Every response carries a request id.
    let response = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("x-request-id").is_some());
}

async fn first_start_without_bootstrap_settings_generates_an_admin(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        Options {
            bootstrap: false,
            ..Options::default()
        },
    )
    .await;
    let apps = server
        .state
        .store
        .list_applications(&keyward_core::store::PageRequest {
            cursor: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].grants[0].resource, server.audience());
    assert_eq!(
        apps[0].grants[0].scopes.len(),
        keyward_core::scope::MANAGEMENT_SCOPES.len()
    );
    // A restart on the same store does not create another one.
    let (_, report) = keyward_server::prepare((*server.state.settings).clone())
        .await
        .unwrap();
    assert!(report.generated_admin.is_none());
}

//! `POST /oauth2/token` with client_credentials.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use crate::on_both_stores;
use crate::testkit::{Backend, TestServer, ADMIN_CLIENT_ID, ADMIN_SECRET};

on_both_stores!(
    json_body_like_the_seed_issues_a_verifiable_at_jwt,
    form_body_with_basic_and_post_authentication,
    resource_parameter_selects_the_audience,
    unknown_audience_is_invalid_target,
    scopes_must_be_a_subset_of_the_grant,
    public_clients_never_get_m2m_tokens,
    bad_credentials_are_invalid_client_without_enumeration,
    malformed_requests_get_rfc6749_errors,
);

async fn post_form(
    server: &TestServer,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = server.http.post(server.url("/oauth2/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        );
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

/// Verifies a token the way a resource server would: with the published JWKS.
async fn verify_with_jwks(server: &TestServer, token: &str, audience: &str) -> Value {
    let jwks: JwkSet = server
        .http
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid is published");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[server.base.as_str()]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

async fn json_body_like_the_seed_issues_a_verifiable_at_jwt(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = server
        .http
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/json")
        .body(
            json!({
                "grant_type": "client_credentials",
                "client_id": ADMIN_CLIENT_ID,
                "client_secret": ADMIN_SECRET,
                "audience": server.audience(),
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap();
    let header = decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let claims = verify_with_jwks(&server, token, &server.audience()).await;
    assert_eq!(claims["iss"], server.base.as_str());
    assert_eq!(claims["sub"], ADMIN_CLIENT_ID);
    assert_eq!(claims["client_id"], ADMIN_CLIENT_ID);
    assert_eq!(claims["aud"], server.audience().as_str());
    assert!(claims["jti"].as_str().unwrap().len() >= 16);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let scopes: Vec<&str> = claims["scope"].as_str().unwrap().split(' ').collect();
    assert!(scopes.contains(&"users:write") && scopes.contains(&"audit:read"));
    // Two tokens never share a jti.
    let other = server.admin_token().await;
    let other_claims = verify_with_jwks(&server, &other, &server.audience()).await;
    assert_ne!(claims["jti"], other_claims["jti"]);
}

async fn form_body_with_basic_and_post_authentication(backend: Backend) {
    let server = TestServer::start(backend).await;
    let audience = server.audience();
    let (status, headers, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", &audience),
        ],
        Some((ADMIN_CLIENT_ID, ADMIN_SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", ADMIN_CLIENT_ID),
            ("client_secret", ADMIN_SECRET),
            ("audience", &audience),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Both methods at once is refused (RFC 6749 §2.3).
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", ADMIN_SECRET),
            ("audience", &audience),
        ],
        Some((ADMIN_CLIENT_ID, ADMIN_SECRET)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

async fn resource_parameter_selects_the_audience(backend: Backend) {
    let server = TestServer::start(backend).await;
    let audience = server.audience();
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("resource", &audience),
        ],
        Some((ADMIN_CLIENT_ID, ADMIN_SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let claims = verify_with_jwks(&server, body["access_token"].as_str().unwrap(), &audience).await;
    assert_eq!(claims["aud"], audience.as_str());
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("resource", &audience),
            ("audience", "https://other.example.com"),
        ],
        Some((ADMIN_CLIENT_ID, ADMIN_SECRET)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _, body) = post_form(
        &server,
        &[("grant_type", "client_credentials")],
        Some((ADMIN_CLIENT_ID, ADMIN_SECRET)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

async fn unknown_audience_is_invalid_target(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, headers, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", "https://unknown.example.com"),
        ],
        Some((ADMIN_CLIENT_ID, ADMIN_SECRET)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    assert_eq!(headers["cache-control"], "no-store");
    // An existing resource the client holds no grant for is invalid_target as well.
    let admin = server.admin_token().await;
    let (status, _) = server
        .call("POST", "/api/resources", &admin, Some(json!({ "identifier": "https://orders.example.com", "name": "Orders", "scopes": [{ "name": "orders:read" }] })))
        .await;
    assert_eq!(status, 201);
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", "https://orders.example.com"),
        ],
        Some((ADMIN_CLIENT_ID, ADMIN_SECRET)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
}

async fn scopes_must_be_a_subset_of_the_grant(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (client_id, secret) = server.m2m_app(&["users:read", "accounts:read"]).await;
    let audience = server.audience();
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", &audience),
            ("scope", "users:read"),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "users:read");
    let claims = verify_with_jwks(&server, body["access_token"].as_str().unwrap(), &audience).await;
    assert_eq!(claims["scope"], "users:read");
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", &audience),
            ("scope", "users:read users:write"),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    // No scope parameter: everything granted.
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", &audience),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["scope"], "users:read accounts:read");
}

async fn public_clients_never_get_m2m_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token().await;
    let (status, body) = server
        .call(
            "POST",
            "/api/applications",
            &admin,
            Some(json!({ "name": "spa", "kind": "spa", "redirect_uris": ["https://app.example.com/cb"], "grants": [{ "resource": server.audience(), "scopes": ["users:read"] }] })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["client_secret"].is_null());
    let client_id = body["application"]["client_id"].as_str().unwrap();
    let audience = server.audience();
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("audience", &audience),
        ],
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    // Nor can a public client be configured for it.
    let (status, body) = server
        .call("POST", "/api/applications", &admin, Some(json!({ "name": "native", "kind": "native", "grant_types": ["client_credentials"] })))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("validation_failed"))
    );
}

async fn bad_credentials_are_invalid_client_without_enumeration(backend: Backend) {
    let server = TestServer::start(backend).await;
    let audience = server.audience();
    let (status_wrong, headers, wrong) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", &audience),
        ],
        Some((ADMIN_CLIENT_ID, "kws_wrong-secret")),
    )
    .await;
    assert_eq!(status_wrong, 401);
    assert_eq!(headers["www-authenticate"], r#"Basic realm="keyward""#);
    assert_eq!(headers["cache-control"], "no-store");
    let (status_unknown, _, unknown) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", &audience),
        ],
        Some(("no-such-client", "kws_wrong-secret")),
    )
    .await;
    assert_eq!(status_unknown, 401);
    assert_eq!(
        wrong, unknown,
        "unknown client and wrong secret must be indistinguishable"
    );
    assert_eq!(wrong["error"], "invalid_client");
    // A confidential client without its secret is refused too.
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", ADMIN_CLIENT_ID),
            ("audience", &audience),
        ],
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

async fn malformed_requests_get_rfc6749_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let audience = server.audience();
    let creds = Some((ADMIN_CLIENT_ID, ADMIN_SECRET));
    let (status, _, body) = post_form(
        &server,
        &[("grant_type", "password"), ("audience", &audience)],
        creds,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, _, body) = post_form(&server, &[("grant_type", "implicit")], creds).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, _, body) = post_form(&server, &[("audience", &audience)], creds).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // A parameter twice (RFC 6749 §3.2).
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
            ("audience", &audience),
        ],
        creds,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Broken JSON and an unsupported media type.
    let response = server
        .http
        .post(server.url("/oauth2/token"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    let response = server
        .http
        .post(server.url("/oauth2/token"))
        .header("content-type", "text/plain")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // A scope with a forbidden character.
    let (status, _, body) = post_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("audience", &audience),
            ("scope", "users:read \"x"),
        ],
        creds,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
}

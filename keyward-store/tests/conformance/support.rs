//! Backend harness and fixtures.

use std::future::Future;
use std::sync::Arc;

use keyward_core::id::{new_id, IdKind};
use keyward_core::model::{
    Account, ApiResource, Application, AuditEvent, AuthorizationCode, ClientSecret, Grant,
    Interaction, Membership, RefreshToken, ResourceGrant, ScopeDefinition, Session, SigningKey,
    User,
};
use keyward_core::store::{PageRequest, Store};
use keyward_core::{ApplicationKind, AuditOutcome, Role, UserStatus};
use keyward_store::test_support::{drop_postgres_database, fresh_postgres_url, sqlite_url_in};
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub async fn connect_migrated(url: &str) -> Arc<dyn Store> {
    let store = keyward_store::connect(url, 5).await.unwrap();
    store.migrate().await.unwrap();
    store
}

pub async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url_in(dir.path());
    let store = connect_migrated(&url).await;
    assert_eq!(store.backend(), "sqlite");
    case(store, url).await;
}

pub async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let url = fresh_postgres_url().await.unwrap();
    let store = connect_migrated(&url).await;
    assert_eq!(store.backend(), "postgres");
    case(store, url.clone()).await;
    // Left behind when the case panics, for inspection.
    drop_postgres_database(&url).await.unwrap();
}

/// A fixed instant (with microseconds, the finest precision both backends keep) plus
/// `secs` seconds.
pub fn t(secs: i64) -> OffsetDateTime {
    datetime!(2024-05-01 12:00:00.123456 UTC) + Duration::seconds(secs)
}

pub fn page(cursor: Option<&str>, limit: u32) -> PageRequest {
    PageRequest {
        cursor: cursor.map(str::to_owned),
        limit,
    }
}

pub fn account(name: &str, parent: Option<&str>) -> Account {
    Account {
        id: new_id(IdKind::Account),
        name: name.to_owned(),
        parent_account_id: parent.map(str::to_owned),
        custom_data: json!({ "plan": "pro", "limits": { "seats": 5 }, "tags": ["a", "b"] }),
        created_at: t(0),
        updated_at: t(1),
    }
}

pub fn user(username: Option<&str>, email: Option<&str>) -> User {
    User {
        id: new_id(IdKind::User),
        username: username.map(str::to_owned),
        primary_email: email.map(str::to_owned),
        primary_phone: None,
        name: None,
        avatar: None,
        profile: json!({}),
        custom_data: json!({}),
        identities: json!({}),
        status: UserStatus::Active,
        application_id: None,
        external_id: None,
        external_source: None,
        password_digest: None,
        password_algorithm: None,
        last_sign_in_at: None,
        created_at: t(0),
        updated_at: t(0),
    }
}

pub fn membership(account_id: &str, user_id: &str, role: Role) -> Membership {
    Membership {
        id: new_id(IdKind::Membership),
        account_id: account_id.to_owned(),
        user_id: user_id.to_owned(),
        role,
        created_at: t(0),
        updated_at: t(0),
    }
}

pub fn application(client_id: &str) -> Application {
    Application {
        id: new_id(IdKind::Application),
        client_id: client_id.to_owned(),
        name: format!("App {client_id}"),
        description: Some("An application".to_owned()),
        kind: ApplicationKind::Web,
        redirect_uris: vec![
            "https://app.example.com/callback".to_owned(),
            "http://localhost:3000/cb".to_owned(),
        ],
        post_logout_redirect_uris: vec!["https://app.example.com/".to_owned()],
        grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
        grants: vec![
            ResourceGrant {
                resource: "https://api.example.com".to_owned(),
                scopes: vec!["read:things".to_owned(), "write:things".to_owned()],
            },
            ResourceGrant {
                resource: "https://other.example.com".to_owned(),
                scopes: vec![],
            },
        ],
        first_party: true,
        partner: false,
        claim_uri: None,
        account_id: None,
        access_token_ttl_secs: Some(900),
        secrets: vec![],
        created_at: t(0),
        updated_at: t(0),
    }
}

pub fn secret(application_id: &str, created: i64, expires: Option<i64>) -> ClientSecret {
    ClientSecret {
        id: new_id(IdKind::ClientSecret),
        application_id: application_id.to_owned(),
        digest: vec![0, 1, 2, 254, 255, created as u8],
        hint: format!("h{created:03}"),
        created_at: t(created),
        expires_at: expires.map(t),
    }
}

pub fn resource(identifier: &str) -> ApiResource {
    ApiResource {
        id: new_id(IdKind::ApiResource),
        identifier: identifier.to_owned(),
        name: format!("API {identifier}"),
        scopes: vec![
            ScopeDefinition {
                name: "read:things".to_owned(),
                description: Some("Read things".to_owned()),
            },
            ScopeDefinition {
                name: "write:things".to_owned(),
                description: None,
            },
        ],
        access_token_ttl_secs: 3600,
        management: false,
        created_at: t(0),
        updated_at: t(0),
    }
}

pub fn signing_key(created: i64) -> SigningKey {
    let id = new_id(IdKind::SigningKey);
    SigningKey {
        algorithm: "EdDSA".to_owned(),
        sealed_private_key: vec![9, 8, 7, 0, 255, created as u8],
        public_jwk: json!({ "kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": id }),
        id,
        created_at: t(created),
        activates_at: t(created + 300),
        retires_at: None,
    }
}

pub fn audit_event(action: &str, actor: &str, target: &str, outcome: AuditOutcome) -> AuditEvent {
    AuditEvent {
        id: new_id(IdKind::AuditEvent),
        occurred_at: t(0),
        actor_type: "client".to_owned(),
        actor_id: Some(actor.to_owned()),
        action: action.to_owned(),
        target_type: "user".to_owned(),
        target_id: Some(target.to_owned()),
        outcome,
        reason: None,
        request_id: Some("req-1".to_owned()),
        details: json!({ "changed": ["name"], "n": 1 }),
    }
}

/// A fresh, unique digest (with a NUL and a 0xFF byte, to check binary round trips).
pub fn digest() -> Vec<u8> {
    let mut bytes = vec![0, 255];
    bytes.extend_from_slice(new_id(IdKind::AuditEvent).as_bytes());
    bytes
}

pub fn session(user_id: &str, expires: i64) -> Session {
    Session {
        id: new_id(IdKind::Session),
        handle_digest: digest(),
        user_id: user_id.to_owned(),
        auth_time: t(-5),
        created_at: t(0),
        last_seen_at: t(0),
        expires_at: t(expires),
    }
}

pub fn interaction(client_id: &str, expires: i64) -> Interaction {
    Interaction {
        id: new_id(IdKind::Session).replacen("ses_", "int_", 1),
        client_id: client_id.to_owned(),
        request: json!({ "redirect_uri": "https://app.example.com/callback", "scope": ["openid"] }),
        state: json!({ "step": "sign_in" }),
        created_at: t(0),
        expires_at: t(expires),
    }
}

/// An active grant of `user_id` to `web-app`, expiring at `t(expires)`.
pub fn grant(user_id: &str, session_id: Option<&str>, expires: i64) -> Grant {
    Grant {
        id: new_id(IdKind::Grant),
        user_id: user_id.to_owned(),
        client_id: "web-app".to_owned(),
        scopes: vec!["openid".to_owned(), "offline_access".to_owned()],
        resource: Some("https://api.example.com".to_owned()),
        account_id: None,
        role: None,
        session_id: session_id.map(str::to_owned),
        auth_time: t(-5),
        created_at: t(0),
        expires_at: t(expires),
        revoked_at: None,
    }
}

pub fn code(grant_id: &str, expires: i64) -> AuthorizationCode {
    AuthorizationCode {
        digest: digest(),
        grant_id: grant_id.to_owned(),
        redirect_uri: "https://app.example.com/callback".to_owned(),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned()),
        nonce: Some("n-0S6_WzA2Mj".to_owned()),
        created_at: t(0),
        expires_at: t(expires),
        redeemed_at: None,
    }
}

pub fn refresh_token(grant_id: &str, created: i64, expires: i64) -> RefreshToken {
    RefreshToken {
        digest: digest(),
        grant_id: grant_id.to_owned(),
        created_at: t(created),
        expires_at: t(expires),
        used_at: None,
    }
}

/// Ids in list order.
pub fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|item| id(item).to_owned()).collect()
}

/// `ids` sorted ascending (ULIDs made in the same millisecond are not ordered).
pub fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

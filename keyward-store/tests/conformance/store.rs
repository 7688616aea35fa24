use std::sync::Arc;

use keyward_core::store::{AccountFilter, Store};
use keyward_core::{Role, StoreError};
use keyward_store::test_support::{drop_postgres_database, fresh_postgres_url, sqlite_url_in};

use crate::support::{account, application, audit_event, code, grant, membership, page, user};

async fn ping_and_backend(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(matches!(store.backend(), "sqlite" | "postgres"));
}
conformance!(ping_and_backend => ping_and_backend_sqlite, ping_and_backend_postgres);

async fn migrate_twice_is_a_no_op(store: Arc<dyn Store>) {
    let acc = account("Kept", None);
    store.create_account(&acc).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.get_account(&acc.id).await.unwrap(), Some(acc));
}
conformance!(migrate_twice_is_a_no_op
    => migrate_twice_is_a_no_op_sqlite, migrate_twice_is_a_no_op_postgres);

/// Two nodes migrating one fresh database at once both succeed.
async fn concurrent_migrations(store: Arc<dyn Store>, _url: String) {
    let dir = tempfile::tempdir().unwrap();
    let url = match store.backend() {
        "sqlite" => sqlite_url_in(dir.path()),
        _ => fresh_postgres_url().await.unwrap(),
    };
    let a = keyward_store::connect(&url, 2).await.unwrap();
    let b = keyward_store::connect(&url, 2).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    let acc = account("Migrated", None);
    a.create_account(&acc).await.unwrap();
    assert_eq!(b.get_account(&acc.id).await.unwrap(), Some(acc));
    drop((a, b));
    if store.backend() == "postgres" {
        drop_postgres_database(&url).await.unwrap();
    }
}
conformance!(with_url concurrent_migrations
    => concurrent_migrations_sqlite, concurrent_migrations_postgres);

/// Runs `statement` on the store's database directly.
async fn raw_execute(backend: &str, url: &str, statement: &str) {
    match backend {
        "sqlite" => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
        _ => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

/// A stored enum value the code does not know is a storage failure, not a panic.
async fn unknown_stored_values_are_internal_errors(store: Arc<dyn Store>, url: String) {
    let acc = account("Acc", None);
    store.create_account(&acc).await.unwrap();
    let u = user(Some("u"), None);
    store.create_user(&u).await.unwrap();
    store
        .add_member(&membership(&acc.id, &u.id, Role::Admin))
        .await
        .unwrap();
    let app = application("weird-app");
    store.create_application(&app).await.unwrap();
    let event = audit_event("x", "y", "z", keyward_core::AuditOutcome::Success);
    store.append_audit_event(&event).await.unwrap();
    let g = keyward_core::model::Grant {
        role: Some(Role::Admin),
        ..grant(&u.id, None, 3600)
    };
    store
        .create_grant_with_code(&g, &code(&g.id, 60))
        .await
        .unwrap();

    let backend = store.backend();
    raw_execute(backend, &url, "UPDATE users SET status = 'zombie'").await;
    raw_execute(backend, &url, "UPDATE memberships SET role = 'emperor'").await;
    raw_execute(backend, &url, "UPDATE applications SET kind = 'toaster'").await;
    raw_execute(backend, &url, "UPDATE audit_events SET outcome = 'maybe'").await;
    raw_execute(backend, &url, "UPDATE grants SET role = 'emperor'").await;

    assert_err!(store.get_user(&u.id).await, StoreError::Internal(_));
    assert_err!(
        store.list_users(&Default::default(), &page(None, 10)).await,
        StoreError::Internal(_)
    );
    assert_err!(
        store.get_member(&acc.id, &u.id).await,
        StoreError::Internal(_)
    );
    assert_err!(
        store.get_application(&app.id).await,
        StoreError::Internal(_)
    );
    assert_err!(
        store
            .list_audit_events(&Default::default(), &page(None, 10))
            .await,
        StoreError::Internal(_)
    );
    assert_err!(store.get_grant(&g.id).await, StoreError::Internal(_));
    // Other aggregates are unaffected.
    assert_eq!(
        store
            .list_accounts(&AccountFilter::default(), &page(None, 10))
            .await
            .unwrap()
            .len(),
        1
    );
}
conformance!(with_url unknown_stored_values_are_internal_errors
    => unknown_stored_values_are_internal_errors_sqlite,
       unknown_stored_values_are_internal_errors_postgres);

#[tokio::test]
async fn connect_rejects_unknown_schemes() {
    for url in ["mysql://localhost/keyward", "keyward.db", ""] {
        match keyward_store::connect(url, 1).await {
            Err(StoreError::Internal(message)) => {
                assert!(message.contains("sqlite:"), "{message}");
            }
            Err(other) => panic!("{url}: unexpected error {other:?}"),
            Ok(_) => panic!("{url}: connected"),
        }
    }
}

#[tokio::test]
async fn sqlite_creates_the_file_and_accepts_url_forms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested-name.db");
    assert!(!path.exists());
    let url = format!("sqlite://{}", path.display());
    assert!(url.starts_with("sqlite:///"), "absolute form: {url}");
    let store = keyward_store::SqliteStore::connect(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert!(path.exists());
    assert_eq!(store.backend(), "sqlite");
}

use std::sync::Arc;

use keyward_core::model::Consent;
use keyward_core::store::Store;
use keyward_core::StoreError;

use crate::support::{t, user};

fn consent(user_id: &str, client_id: &str, resource: &str, scopes: &[&str]) -> Consent {
    Consent {
        user_id: user_id.to_owned(),
        client_id: client_id.to_owned(),
        resource: resource.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        updated_at: t(0),
    }
}

async fn consent_upsert(store: Arc<dyn Store>) {
    let alice = user(Some("alice"), None);
    let bob = user(Some("bob"), None);
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();
    const API: &str = "https://api.example.com";

    assert_eq!(
        store.get_consent(&alice.id, "web-app", API).await.unwrap(),
        None
    );

    let first = consent(&alice.id, "web-app", API, &["read:things"]);
    store.save_consent(&first).await.unwrap();
    assert_eq!(
        store.get_consent(&alice.id, "web-app", API).await.unwrap(),
        Some(first.clone())
    );

    // Saving again replaces scopes and time.
    let second = Consent {
        scopes: vec!["read:things".to_owned(), "write:things".to_owned()],
        updated_at: t(50),
        ..first.clone()
    };
    store.save_consent(&second).await.unwrap();
    assert_eq!(
        store.get_consent(&alice.id, "web-app", API).await.unwrap(),
        Some(second.clone())
    );
    // Down to nothing is a value too.
    let emptied = Consent {
        scopes: vec![],
        updated_at: t(60),
        ..first.clone()
    };
    store.save_consent(&emptied).await.unwrap();
    assert_eq!(
        store.get_consent(&alice.id, "web-app", API).await.unwrap(),
        Some(emptied)
    );

    // Each part of the key is separate: resource (including ""), client, user.
    let no_resource = consent(&alice.id, "web-app", "", &["openid", "profile"]);
    let other_client = consent(&alice.id, "mobile-app", API, &["read:things"]);
    let other_user = consent(&bob.id, "web-app", API, &["write:things"]);
    for c in [&no_resource, &other_client, &other_user] {
        store.save_consent(c).await.unwrap();
    }
    assert_eq!(
        store.get_consent(&alice.id, "web-app", "").await.unwrap(),
        Some(no_resource)
    );
    assert_eq!(
        store
            .get_consent(&alice.id, "mobile-app", API)
            .await
            .unwrap(),
        Some(other_client)
    );
    assert_eq!(
        store.get_consent(&bob.id, "web-app", API).await.unwrap(),
        Some(other_user)
    );
    assert_eq!(
        store
            .get_consent(&alice.id, "web-app", API)
            .await
            .unwrap()
            .unwrap()
            .scopes,
        Vec::<String>::new()
    );
    assert_eq!(
        store.get_consent(&bob.id, "web-app", "").await.unwrap(),
        None
    );

    assert_err!(
        store
            .save_consent(&consent("usr_missing", "web-app", API, &[]))
            .await,
        StoreError::NotFound("user")
    );
}
conformance!(consent_upsert => consent_upsert_sqlite, consent_upsert_postgres);

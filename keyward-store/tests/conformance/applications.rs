use std::sync::Arc;

use keyward_core::model::{Application, ResourceGrant};
use keyward_core::store::{Store, UserFilter};
use keyward_core::{ApplicationKind, StoreError};

use crate::support::{account, application, ids, page, secret, sorted, t, user};

async fn application_round_trip(store: Arc<dyn Store>) {
    let acc = account("Owner account", None);
    store.create_account(&acc).await.unwrap();

    let mut app = application("client-1");
    app.account_id = Some(acc.id.clone());
    // Read back newest first by creation time (here the opposite of id order).
    let mut old = secret(&app.id, 10, Some(1000));
    old.id = "sec_01zzzzzzzzzzzzzzzzzzzzzzzz".to_owned();
    let mut new = secret(&app.id, 20, None);
    new.id = "sec_01000000000000000000000000".to_owned();
    app.secrets = vec![old.clone(), new.clone()];
    store.create_application(&app).await.unwrap();

    let expected = Application {
        secrets: vec![new.clone(), old.clone()],
        ..app.clone()
    };
    assert_eq!(
        store.get_application(&app.id).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        store
            .get_application_by_client_id("client-1")
            .await
            .unwrap(),
        Some(expected.clone())
    );
    assert_eq!(store.get_application("app_missing").await.unwrap(), None);
    assert_eq!(
        store
            .get_application_by_client_id("CLIENT-1")
            .await
            .unwrap(),
        None
    );

    // A public client without secrets, grants or ttl.
    let spa = Application {
        kind: ApplicationKind::Spa,
        description: None,
        grants: vec![],
        redirect_uris: vec![],
        first_party: false,
        partner: true,
        claim_uri: None,
        access_token_ttl_secs: None,
        ..application("spa-1")
    };
    store.create_application(&spa).await.unwrap();
    assert_eq!(
        store.get_application(&spa.id).await.unwrap(),
        Some(spa.clone())
    );

    // Lists carry secrets too.
    let listed = store.list_applications(&page(None, 10)).await.unwrap();
    assert_eq!(
        ids(&listed, |a| &a.id),
        sorted(vec![app.id.clone(), spa.id.clone()])
    );
    assert!(listed.contains(&expected));
    assert!(listed.contains(&spa));
}
conformance!(application_round_trip
    => application_round_trip_sqlite, application_round_trip_postgres);

async fn application_conflicts_and_references(store: Arc<dyn Store>) {
    store.create_application(&application("dup")).await.unwrap();
    assert_err!(
        store.create_application(&application("dup")).await,
        StoreError::Conflict("client_id_taken")
    );

    let mut orphan = application("orphan");
    orphan.account_id = Some("acc_01hzzzzzzzzzzzzzzzzzzzzzzz".to_owned());
    orphan.secrets = vec![secret(&orphan.id, 1, None)];
    assert_err!(
        store.create_application(&orphan).await,
        StoreError::NotFound("account")
    );
    // Nothing half-written.
    assert_eq!(store.get_application(&orphan.id).await.unwrap(), None);
    assert_eq!(
        store.get_application_by_client_id("orphan").await.unwrap(),
        None
    );
}
conformance!(application_conflicts_and_references
    => application_conflicts_and_references_sqlite, application_conflicts_and_references_postgres);

async fn list_applications_paginates(store: Arc<dyn Store>) {
    let mut created = Vec::new();
    for n in 0..5 {
        let mut app = application(&format!("client-{n}"));
        app.secrets = vec![secret(&app.id, n, None)];
        store.create_application(&app).await.unwrap();
        created.push(app.id);
    }
    let all = sorted(created);
    let p1 = store.list_applications(&page(None, 2)).await.unwrap();
    assert_eq!(ids(&p1, |a| &a.id), all[..3].to_vec());
    let p2 = store
        .list_applications(&page(Some(&all[2]), 2))
        .await
        .unwrap();
    assert_eq!(ids(&p2, |a| &a.id), all[3..].to_vec());
    for app in p1.iter().chain(&p2) {
        assert_eq!(app.secrets.len(), 1, "each app gets its own secret");
        assert_eq!(app.secrets[0].application_id, app.id);
    }
    assert!(store
        .list_applications(&page(Some(&all[4]), 2))
        .await
        .unwrap()
        .is_empty());
}
conformance!(list_applications_paginates
    => list_applications_paginates_sqlite, list_applications_paginates_postgres);

async fn update_application_writes_mutable_fields(store: Arc<dyn Store>) {
    let acc = account("Acc", None);
    store.create_account(&acc).await.unwrap();
    let mut app = application("client-upd");
    let s = secret(&app.id, 1, None);
    app.secrets = vec![s.clone()];
    store.create_application(&app).await.unwrap();

    let change = Application {
        // Written:
        name: "Renamed".to_owned(),
        description: None,
        redirect_uris: vec!["https://new.example.com/cb".to_owned()],
        post_logout_redirect_uris: vec![],
        grant_types: vec!["client_credentials".to_owned()],
        grants: vec![ResourceGrant {
            resource: "https://api.example.com".to_owned(),
            scopes: vec!["admin".to_owned()],
        }],
        first_party: false,
        partner: true,
        claim_uri: None,
        account_id: Some(acc.id.clone()),
        access_token_ttl_secs: None,
        updated_at: t(50),
        // Ignored:
        client_id: "changed-client".to_owned(),
        kind: ApplicationKind::M2m,
        secrets: vec![],
        created_at: t(999),
        ..app.clone()
    };
    store.update_application(&change).await.unwrap();
    let expected = Application {
        client_id: app.client_id.clone(),
        kind: app.kind,
        secrets: vec![s.clone()],
        created_at: app.created_at,
        ..change.clone()
    };
    assert_eq!(
        store.get_application(&app.id).await.unwrap(),
        Some(expected)
    );

    let bad_account = Application {
        account_id: Some("acc_01hzzzzzzzzzzzzzzzzzzzzzzz".to_owned()),
        ..change.clone()
    };
    assert_err!(
        store.update_application(&bad_account).await,
        StoreError::NotFound("account")
    );
    assert_err!(
        store.update_application(&application("ghost")).await,
        StoreError::NotFound("application")
    );
}
conformance!(update_application_writes_mutable_fields
    => update_application_writes_mutable_fields_sqlite,
       update_application_writes_mutable_fields_postgres);

async fn delete_application_keeps_its_users(store: Arc<dyn Store>) {
    let mut app = application("client-del");
    app.secrets = vec![secret(&app.id, 1, None), secret(&app.id, 2, None)];
    store.create_application(&app).await.unwrap();
    let mut signed_up = user(Some("signed-up"), None);
    signed_up.application_id = Some(app.id.clone());
    store.create_user(&signed_up).await.unwrap();

    store.delete_application(&app.id).await.unwrap();
    assert_eq!(store.get_application(&app.id).await.unwrap(), None);
    assert_eq!(
        store
            .get_application_by_client_id("client-del")
            .await
            .unwrap(),
        None
    );
    let survivor = store.get_user(&signed_up.id).await.unwrap().unwrap();
    assert_eq!(survivor.application_id, None);
    let by_app = store
        .list_users(
            &UserFilter {
                application_id: Some(app.id.clone()),
                ..UserFilter::default()
            },
            &page(None, 10),
        )
        .await
        .unwrap();
    assert!(by_app.is_empty());

    // The secrets went with it: the same id and client id can be used again, secret-free.
    let again = Application {
        secrets: vec![],
        ..app.clone()
    };
    store.create_application(&again).await.unwrap();
    assert_eq!(
        store
            .get_application(&app.id)
            .await
            .unwrap()
            .unwrap()
            .secrets,
        vec![]
    );

    assert_err!(
        store.delete_application("app_missing").await,
        StoreError::NotFound("application")
    );
}
conformance!(delete_application_keeps_its_users
    => delete_application_keeps_its_users_sqlite, delete_application_keeps_its_users_postgres);

async fn client_secrets(store: Arc<dyn Store>) {
    let mut app = application("client-sec");
    let forever = secret(&app.id, 1, None);
    let sooner = secret(&app.id, 2, Some(100));
    let later = secret(&app.id, 3, Some(10_000));
    app.secrets = vec![forever.clone(), sooner.clone(), later.clone()];
    store.create_application(&app).await.unwrap();

    // Without expire_others_at nothing else changes.
    let plain = secret(&app.id, 4, None);
    store.add_client_secret(&plain, None).await.unwrap();
    let read = store.get_application(&app.id).await.unwrap().unwrap();
    assert_eq!(
        read.secrets,
        vec![
            plain.clone(),
            later.clone(),
            sooner.clone(),
            forever.clone()
        ]
    );

    // Expiry brought forward to t(500), never pushed back, and not applied to the new one.
    let rotated = secret(&app.id, 5, None);
    store
        .add_client_secret(&rotated, Some(t(500)))
        .await
        .unwrap();
    let read = store.get_application(&app.id).await.unwrap().unwrap();
    let expires: Vec<_> = read
        .secrets
        .iter()
        .map(|s| (s.id.clone(), s.expires_at))
        .collect();
    assert_eq!(
        expires,
        vec![
            (rotated.id.clone(), None),
            (plain.id.clone(), Some(t(500))),
            (later.id.clone(), Some(t(500))),
            (sooner.id.clone(), Some(t(100))),
            (forever.id.clone(), Some(t(500))),
        ]
    );
    assert_eq!(read.secrets[0], rotated);

    // A later rotation doesn't extend those either.
    let third = secret(&app.id, 6, Some(20_000));
    store.add_client_secret(&third, Some(t(800))).await.unwrap();
    let read = store.get_application(&app.id).await.unwrap().unwrap();
    let expires: Vec<_> = read.secrets.iter().map(|s| s.expires_at).collect();
    assert_eq!(
        expires,
        vec![
            Some(t(20_000)),
            Some(t(800)),
            Some(t(500)),
            Some(t(500)),
            Some(t(100)),
            Some(t(500)),
        ]
    );

    assert_err!(
        store
            .add_client_secret(
                &secret("app_01hzzzzzzzzzzzzzzzzzzzzzzz", 1, None),
                Some(t(1))
            )
            .await,
        StoreError::NotFound("application")
    );

    // Deleting: only within its own application.
    let other = application("client-other");
    store.create_application(&other).await.unwrap();
    assert_err!(
        store.delete_client_secret(&other.id, &plain.id).await,
        StoreError::NotFound("secret")
    );
    store
        .delete_client_secret(&app.id, &plain.id)
        .await
        .unwrap();
    assert_err!(
        store.delete_client_secret(&app.id, &plain.id).await,
        StoreError::NotFound("secret")
    );
    let read = store.get_application(&app.id).await.unwrap().unwrap();
    assert_eq!(read.secrets.len(), 5);
    assert!(read.secrets.iter().all(|s| s.id != plain.id));
}
conformance!(client_secrets => client_secrets_sqlite, client_secrets_postgres);

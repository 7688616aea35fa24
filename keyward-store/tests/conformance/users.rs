use std::sync::Arc;

use keyward_core::model::User;
use keyward_core::store::{Store, UserFilter};
use keyward_core::{Role, StoreError, UserStatus};
use serde_json::json;

use crate::support::{account, application, ids, membership, page, sorted, t, user};

fn full_user(application_id: &str) -> User {
    User {
        username: Some("Alice".to_owned()),
        primary_email: Some("Alice@Example.com".to_owned()),
        primary_phone: Some("+14155550100".to_owned()),
        name: Some("Alice Liddell".to_owned()),
        avatar: Some("https://example.com/alice.png".to_owned()),
        profile: json!({ "locale": "en-GB", "address": { "city": "Oxford" } }),
        custom_data: json!({ "tier": 3, "flags": [true, false] }),
        identities: json!({ "github": { "user_id": "42", "details": { "login": "alice" } } }),
        status: UserStatus::Suspended,
        application_id: Some(application_id.to_owned()),
        external_id: Some("ext-alice".to_owned()),
        external_source: None,
        password_digest: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        password_algorithm: Some("argon2id".to_owned()),
        last_sign_in_at: Some(t(30)),
        created_at: t(1),
        updated_at: t(2),
        ..user(None, None)
    }
}

async fn user_round_trip(store: Arc<dyn Store>) {
    let app = application("signup-app");
    store.create_application(&app).await.unwrap();
    let other_app = application("other-app");
    store.create_application(&other_app).await.unwrap();

    let alice = full_user(&app.id);
    store.create_user(&alice).await.unwrap();
    assert_eq!(
        store.get_user(&alice.id).await.unwrap(),
        Some(alice.clone())
    );

    let bare = user(None, None);
    store.create_user(&bare).await.unwrap();
    assert_eq!(store.get_user(&bare.id).await.unwrap(), Some(bare.clone()));
    assert_eq!(store.get_user("usr_missing").await.unwrap(), None);

    // Every mutable field is written; created_at is not.
    let updated = User {
        username: Some("alice2".to_owned()),
        primary_email: None,
        primary_phone: Some("+14155550101".to_owned()),
        name: None,
        avatar: Some("https://example.com/a2.png".to_owned()),
        profile: json!({ "locale": "fr" }),
        custom_data: json!([1, 2, 3]),
        identities: json!({}),
        status: UserStatus::Active,
        application_id: Some(other_app.id.clone()),
        external_id: None,
        external_source: None,
        password_digest: None,
        password_algorithm: None,
        last_sign_in_at: Some(t(90)),
        created_at: t(500),
        updated_at: t(100),
        ..alice.clone()
    };
    store.update_user(&updated).await.unwrap();
    assert_eq!(
        store.get_user(&alice.id).await.unwrap(),
        Some(User {
            created_at: alice.created_at,
            ..updated.clone()
        })
    );

    // Clearing the application and the sign-in time.
    let cleared = User {
        application_id: None,
        last_sign_in_at: None,
        ..updated.clone()
    };
    store.update_user(&cleared).await.unwrap();
    let read = store.get_user(&alice.id).await.unwrap().unwrap();
    assert_eq!(read.application_id, None);
    assert_eq!(read.last_sign_in_at, None);

    assert_err!(
        store.update_user(&user(Some("ghost"), None)).await,
        StoreError::NotFound("user")
    );
}
conformance!(user_round_trip => user_round_trip_sqlite, user_round_trip_postgres);

async fn user_references_must_exist(store: Arc<dyn Store>) {
    let mut orphan = user(Some("orphan"), None);
    orphan.application_id = Some("app_01hzzzzzzzzzzzzzzzzzzzzzzz".to_owned());
    assert_err!(
        store.create_user(&orphan).await,
        StoreError::NotFound("application")
    );
    assert_eq!(store.get_user(&orphan.id).await.unwrap(), None);

    let mut existing = user(Some("existing"), None);
    store.create_user(&existing).await.unwrap();
    existing.application_id = Some("app_01hzzzzzzzzzzzzzzzzzzzzzzz".to_owned());
    assert_err!(
        store.update_user(&existing).await,
        StoreError::NotFound("application")
    );
}
conformance!(user_references_must_exist
    => user_references_must_exist_sqlite, user_references_must_exist_postgres);

async fn create_user_conflicts(store: Arc<dyn Store>) {
    let mut alice = user(Some("alice"), Some("alice@example.com"));
    alice.primary_phone = Some("+14155550100".to_owned());
    alice.external_id = Some("ext-1".to_owned());
    store.create_user(&alice).await.unwrap();

    // Case-insensitive username and email.
    assert_err!(
        store.create_user(&user(Some("ALICE"), None)).await,
        StoreError::Conflict("username_taken")
    );
    assert_err!(
        store
            .create_user(&user(None, Some("Alice@EXAMPLE.com")))
            .await,
        StoreError::Conflict("email_taken")
    );
    let mut same_phone = user(None, None);
    same_phone.primary_phone = Some("+14155550100".to_owned());
    assert_err!(
        store.create_user(&same_phone).await,
        StoreError::Conflict("phone_taken")
    );
    let mut same_external = user(None, None);
    same_external.external_id = Some("ext-1".to_owned());
    assert_err!(
        store.create_user(&same_external).await,
        StoreError::Conflict("external_id_taken")
    );

    // Absent values never conflict; different ones don't either.
    for _ in 0..3 {
        store.create_user(&user(None, None)).await.unwrap();
    }
    let mut other = user(Some("alice.b"), Some("alice@example.org"));
    other.primary_phone = Some("+14155550199".to_owned());
    other.external_id = Some("EXT-1".to_owned());
    store.create_user(&other).await.unwrap();

    let everyone = store
        .list_users(&UserFilter::default(), &page(None, 100))
        .await
        .unwrap();
    assert_eq!(everyone.len(), 5);
}
conformance!(create_user_conflicts => create_user_conflicts_sqlite, create_user_conflicts_postgres);

async fn update_user_conflicts(store: Arc<dyn Store>) {
    let mut alice = user(Some("alice"), Some("alice@example.com"));
    alice.primary_phone = Some("+14155550100".to_owned());
    alice.external_id = Some("ext-1".to_owned());
    store.create_user(&alice).await.unwrap();
    let bob = user(Some("bob"), Some("bob@example.com"));
    store.create_user(&bob).await.unwrap();

    let cases: [(User, &str); 4] = [
        (
            User {
                username: Some("Alice".to_owned()),
                ..bob.clone()
            },
            "username_taken",
        ),
        (
            User {
                primary_email: Some("ALICE@example.com".to_owned()),
                ..bob.clone()
            },
            "email_taken",
        ),
        (
            User {
                primary_phone: Some("+14155550100".to_owned()),
                ..bob.clone()
            },
            "phone_taken",
        ),
        (
            User {
                external_id: Some("ext-1".to_owned()),
                external_source: None,
                ..bob.clone()
            },
            "external_id_taken",
        ),
    ];
    for (change, code) in cases {
        match store.update_user(&change).await {
            Err(StoreError::Conflict(got)) => assert_eq!(got, code),
            other => panic!("expected conflict {code}, got {other:?}"),
        }
    }
    assert_eq!(store.get_user(&bob.id).await.unwrap(), Some(bob.clone()));

    // Changing the case of one's own username or email is not a conflict.
    let recased = User {
        username: Some("BOB".to_owned()),
        primary_email: Some("Bob@Example.com".to_owned()),
        ..bob.clone()
    };
    store.update_user(&recased).await.unwrap();
    assert_eq!(store.get_user(&bob.id).await.unwrap(), Some(recased));
}
conformance!(update_user_conflicts => update_user_conflicts_sqlite, update_user_conflicts_postgres);

async fn list_users_filters(store: Arc<dyn Store>) {
    let app = application("filter-app");
    store.create_application(&app).await.unwrap();

    let mut alice = user(Some("alice"), Some("Alice@Example.com"));
    alice.name = Some("Alice Liddell".to_owned());
    alice.primary_phone = Some("+14155550100".to_owned());
    alice.external_id = Some("ext-a".to_owned());
    alice.application_id = Some(app.id.clone());
    let mut bob = user(Some("bobby_tables"), Some("bob@example.org"));
    bob.name = Some("Robert 100% Tables".to_owned());
    bob.status = UserStatus::Suspended;
    bob.application_id = Some(app.id.clone());
    let mut carol = user(Some("carol"), Some("carol@elsewhere.net"));
    carol.name = Some("Carol LIDDELL".to_owned());
    let dave = user(None, None);
    for u in [&alice, &bob, &carol, &dave] {
        store.create_user(u).await.unwrap();
    }

    let find = |filter: UserFilter| {
        let store = store.clone();
        async move {
            let users = store.list_users(&filter, &page(None, 100)).await.unwrap();
            ids(&users, |u| &u.id)
        }
    };

    // Email and username: case-insensitive, exact.
    assert_eq!(
        find(UserFilter {
            email: Some("alice@EXAMPLE.COM".to_owned()),
            ..UserFilter::default()
        })
        .await,
        vec![alice.id.clone()]
    );
    assert!(find(UserFilter {
        email: Some("alice@example".to_owned()),
        ..UserFilter::default()
    })
    .await
    .is_empty());
    assert_eq!(
        find(UserFilter {
            username: Some("CAROL".to_owned()),
            ..UserFilter::default()
        })
        .await,
        vec![carol.id.clone()]
    );
    assert_eq!(
        find(UserFilter {
            phone: Some("+14155550100".to_owned()),
            ..UserFilter::default()
        })
        .await,
        vec![alice.id.clone()]
    );
    assert_eq!(
        find(UserFilter {
            external_id: Some("ext-a".to_owned()),
            external_source: None,
            ..UserFilter::default()
        })
        .await,
        vec![alice.id.clone()]
    );
    assert_eq!(
        find(UserFilter {
            application_id: Some(app.id.clone()),
            ..UserFilter::default()
        })
        .await,
        sorted(vec![alice.id.clone(), bob.id.clone()])
    );
    assert_eq!(
        find(UserFilter {
            status: Some(UserStatus::Suspended),
            ..UserFilter::default()
        })
        .await,
        vec![bob.id.clone()]
    );
    assert_eq!(
        find(UserFilter {
            status: Some(UserStatus::Active),
            ..UserFilter::default()
        })
        .await,
        sorted(vec![alice.id.clone(), carol.id.clone(), dave.id.clone()])
    );

    // Search: case-insensitive substring of username, email or name.
    let search = |needle: &str| UserFilter {
        search: Some(needle.to_owned()),
        ..UserFilter::default()
    };
    assert_eq!(
        find(search("liddell")).await,
        sorted(vec![alice.id.clone(), carol.id.clone()])
    );
    assert_eq!(find(search("ELSEWHERE")).await, vec![carol.id.clone()]);
    assert_eq!(find(search("ObBy")).await, vec![bob.id.clone()]);
    assert_eq!(
        find(search("example")).await,
        sorted(vec![alice.id.clone(), bob.id.clone()])
    );
    // `%` and `_` are literal characters, not wildcards.
    assert_eq!(find(search("100%")).await, vec![bob.id.clone()]);
    assert_eq!(find(search("%")).await, vec![bob.id.clone()]);
    assert_eq!(find(search("y_t")).await, vec![bob.id.clone()]);
    assert!(find(search("c_rol")).await.is_empty());
    assert!(find(search("zzz")).await.is_empty());

    // Filters combine with AND.
    assert_eq!(
        find(UserFilter {
            application_id: Some(app.id.clone()),
            status: Some(UserStatus::Active),
            search: Some("alice".to_owned()),
            ..UserFilter::default()
        })
        .await,
        vec![alice.id.clone()]
    );
    assert!(find(UserFilter {
        application_id: Some(app.id.clone()),
        search: Some("carol".to_owned()),
        ..UserFilter::default()
    })
    .await
    .is_empty());
}
conformance!(list_users_filters => list_users_filters_sqlite, list_users_filters_postgres);

async fn list_users_paginates(store: Arc<dyn Store>) {
    let mut created = Vec::new();
    for n in 0..7 {
        let u = user(Some(&format!("user{n}")), None);
        store.create_user(&u).await.unwrap();
        created.push(u.id);
    }
    let all = sorted(created);
    let filter = UserFilter::default();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let rows = store
            .list_users(&filter, &page(cursor.as_deref(), 3))
            .await
            .unwrap();
        assert!(rows.len() <= 4, "at most limit + 1 rows");
        let more = rows.len() == 4;
        let page_ids: Vec<String> = ids(&rows, |u| &u.id).into_iter().take(3).collect();
        cursor = page_ids.last().cloned();
        seen.extend(page_ids);
        if !more {
            break;
        }
    }
    assert_eq!(seen, all);

    let first = store.list_users(&filter, &page(None, 3)).await.unwrap();
    assert_eq!(ids(&first, |u| &u.id), all[..4].to_vec());
    let tail = store
        .list_users(&filter, &page(Some(&all[5]), 3))
        .await
        .unwrap();
    assert_eq!(ids(&tail, |u| &u.id), all[6..].to_vec());
    let after_last = store
        .list_users(&filter, &page(Some(&all[6]), 3))
        .await
        .unwrap();
    assert!(after_last.is_empty());
}
conformance!(list_users_paginates => list_users_paginates_sqlite, list_users_paginates_postgres);

async fn delete_user_rules(store: Arc<dyn Store>) {
    let solo = account("Solo-owned", None);
    let shared = account("Shared", None);
    let ownerless = account("Ownerless", None);
    for a in [&solo, &shared, &ownerless] {
        store.create_account(a).await.unwrap();
    }
    let alice = user(Some("alice"), None);
    let bob = user(Some("bob"), None);
    let carol = user(Some("carol"), None);
    for u in [&alice, &bob, &carol] {
        store.create_user(u).await.unwrap();
    }
    store
        .add_member(&membership(&solo.id, &alice.id, Role::Owner))
        .await
        .unwrap();
    store
        .add_member(&membership(&solo.id, &carol.id, Role::Admin))
        .await
        .unwrap();
    store
        .add_member(&membership(&shared.id, &alice.id, Role::Owner))
        .await
        .unwrap();
    store
        .add_member(&membership(&shared.id, &bob.id, Role::Owner))
        .await
        .unwrap();
    store
        .add_member(&membership(&ownerless.id, &carol.id, Role::Member))
        .await
        .unwrap();

    // Alice is the only owner of `solo`.
    assert_err!(
        store.delete_user(&alice.id, false).await,
        StoreError::UserIsLastOwner
    );
    assert!(store.get_user(&alice.id).await.unwrap().is_some());
    assert!(store
        .get_member(&solo.id, &alice.id)
        .await
        .unwrap()
        .is_some());

    // Bob shares ownership: fine. His memberships go with him.
    store.delete_user(&bob.id, false).await.unwrap();
    assert_eq!(store.get_user(&bob.id).await.unwrap(), None);
    assert_eq!(store.get_member(&shared.id, &bob.id).await.unwrap(), None);

    // Now Alice is the only owner of both.
    assert_err!(
        store.delete_user(&alice.id, false).await,
        StoreError::UserIsLastOwner
    );

    // Carol owns nothing (an admin and a member, one account with no owner at all).
    store.delete_user(&carol.id, false).await.unwrap();
    assert!(store
        .list_members(&ownerless.id, &page(None, 10))
        .await
        .unwrap()
        .is_empty());

    // Forced: the accounts are left without an owner.
    store.delete_user(&alice.id, true).await.unwrap();
    assert_eq!(store.get_user(&alice.id).await.unwrap(), None);
    assert!(store
        .list_members(&solo.id, &page(None, 10))
        .await
        .unwrap()
        .is_empty());
    assert!(store.get_account(&solo.id).await.unwrap().is_some());

    assert_err!(
        store.delete_user(&alice.id, false).await,
        StoreError::NotFound("user")
    );
    assert_err!(
        store.delete_user(&alice.id, true).await,
        StoreError::NotFound("user")
    );
}
conformance!(delete_user_rules => delete_user_rules_sqlite, delete_user_rules_postgres);

async fn find_user_by_login(store: Arc<dyn Store>) {
    let mut alice = user(Some("Alice.W"), Some("Alice@Example.com"));
    alice.primary_phone = Some("+14155550100".to_owned());
    let bob = user(Some("bob"), Some("bob@example.org"));
    let nameless = user(None, None);
    for u in [&alice, &bob, &nameless] {
        store.create_user(u).await.unwrap();
    }

    let find = |login: &str| {
        let store = store.clone();
        let login = login.to_owned();
        async move {
            store
                .find_user_by_login(&login)
                .await
                .unwrap()
                .map(|u| u.id)
        }
    };
    // Username and email: case-insensitive, exact.
    assert_eq!(find("alice.w").await, Some(alice.id.clone()));
    assert_eq!(find("ALICE.W").await, Some(alice.id.clone()));
    assert_eq!(find("alice@example.COM").await, Some(alice.id.clone()));
    assert_eq!(find("Alice@Example.com").await, Some(alice.id.clone()));
    assert_eq!(find("BOB").await, Some(bob.id.clone()));
    assert_eq!(find("Bob@Example.org").await, Some(bob.id.clone()));
    // Phone: exact E.164.
    assert_eq!(find("+14155550100").await, Some(alice.id.clone()));
    assert_eq!(find("14155550100").await, None);
    // No partial matches, no match on absent values.
    assert_eq!(find("alice").await, None);
    assert_eq!(find("alice@example").await, None);
    assert_eq!(find("").await, None);
    assert_eq!(find("%").await, None);

    // The whole user comes back.
    assert_eq!(
        store.find_user_by_login("alice.w").await.unwrap(),
        Some(alice.clone())
    );
}
conformance!(find_user_by_login => find_user_by_login_sqlite, find_user_by_login_postgres);

async fn set_password_and_record_sign_in(store: Arc<dyn Store>) {
    let alice = user(Some("alice"), None);
    store.create_user(&alice).await.unwrap();

    store
        .set_user_password(
            &alice.id,
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            "argon2id",
            t(10),
        )
        .await
        .unwrap();
    let read = store.get_user(&alice.id).await.unwrap().unwrap();
    assert_eq!(
        read,
        User {
            password_digest: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
            password_algorithm: Some("argon2id".to_owned()),
            updated_at: t(10),
            ..alice.clone()
        }
    );

    store.record_sign_in(&alice.id, t(20)).await.unwrap();
    let read = store.get_user(&alice.id).await.unwrap().unwrap();
    assert_eq!(read.last_sign_in_at, Some(t(20)));
    assert_eq!(read.updated_at, t(10), "a sign-in is not an update");

    assert_err!(
        store
            .set_user_password("usr_missing", "x", "argon2id", t(1))
            .await,
        StoreError::NotFound("user")
    );
    assert_err!(
        store.record_sign_in("usr_missing", t(1)).await,
        StoreError::NotFound("user")
    );
}
conformance!(set_password_and_record_sign_in
    => set_password_and_record_sign_in_sqlite, set_password_and_record_sign_in_postgres);

async fn upgrade_password_only_replaces_the_expected_digest(store: Arc<dyn Store>) {
    let bob = User {
        password_digest: Some("$2b$04$legacylegacylegacylegacu".to_owned()),
        password_algorithm: Some("bcrypt".to_owned()),
        ..user(Some("bob"), None)
    };
    store.create_user(&bob).await.unwrap();
    // A password change got in first: the upgrade of the old digest does nothing.
    assert!(!store
        .upgrade_user_password(
            &bob.id,
            "$1$other$digest",
            "$argon2id$new",
            "argon2id",
            t(5)
        )
        .await
        .unwrap());
    assert_eq!(
        store
            .get_user(&bob.id)
            .await
            .unwrap()
            .unwrap()
            .password_algorithm
            .as_deref(),
        Some("bcrypt")
    );
    assert!(store
        .upgrade_user_password(
            &bob.id,
            "$2b$04$legacylegacylegacylegacu",
            "$argon2id$new",
            "argon2id",
            t(5)
        )
        .await
        .unwrap());
    let read = store.get_user(&bob.id).await.unwrap().unwrap();
    assert_eq!(read.password_digest.as_deref(), Some("$argon2id$new"));
    assert_eq!(read.password_algorithm.as_deref(), Some("argon2id"));
    assert_eq!(read.updated_at, t(5));
    // Twice: the second finds the digest already replaced.
    assert!(!store
        .upgrade_user_password(
            &bob.id,
            "$2b$04$legacylegacylegacylegacu",
            "$argon2id$newer",
            "argon2id",
            t(6)
        )
        .await
        .unwrap());
}
conformance!(upgrade_password_only_replaces_the_expected_digest => upgrade_password_sqlite, upgrade_password_postgres);

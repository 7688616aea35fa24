use std::sync::Arc;

use keyward_core::model::{Consent, Session};
use keyward_core::store::{CodeRedemption, Store};
use keyward_core::StoreError;
use serde_json::json;

use crate::support::{code, digest, grant, interaction, refresh_token, session, t, user};

async fn session_round_trip(store: Arc<dyn Store>) {
    let alice = user(Some("alice"), None);
    store.create_user(&alice).await.unwrap();
    let s = session(&alice.id, 3600);
    store.create_session(&s).await.unwrap();

    assert_eq!(
        store.find_session(&s.handle_digest, t(10)).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(store.find_session(&digest(), t(10)).await.unwrap(), None);

    store.touch_session(&s.id, t(60)).await.unwrap();
    assert_eq!(
        store.find_session(&s.handle_digest, t(61)).await.unwrap(),
        Some(Session {
            last_seen_at: t(60),
            ..s.clone()
        })
    );
    // Touching a session that is gone is not an error.
    store.touch_session("ses_missing", t(60)).await.unwrap();

    store.delete_session(&s.id).await.unwrap();
    assert_eq!(
        store.find_session(&s.handle_digest, t(61)).await.unwrap(),
        None
    );
    store.delete_session(&s.id).await.unwrap();

    assert_err!(
        store.create_session(&session("usr_missing", 3600)).await,
        StoreError::NotFound("user")
    );
}
conformance!(session_round_trip => session_round_trip_sqlite, session_round_trip_postgres);

async fn sessions_expire(store: Arc<dyn Store>) {
    let alice = user(Some("alice"), None);
    store.create_user(&alice).await.unwrap();
    let s = session(&alice.id, 100);
    store.create_session(&s).await.unwrap();

    assert!(store
        .find_session(&s.handle_digest, t(99))
        .await
        .unwrap()
        .is_some());
    // Expired at `expires_at` exactly.
    assert_eq!(
        store.find_session(&s.handle_digest, t(100)).await.unwrap(),
        None
    );
    assert_eq!(
        store.find_session(&s.handle_digest, t(500)).await.unwrap(),
        None
    );
    // Expiry is compared as time, not as stored text: a whole second (stored without a
    // fraction) against an instant a microsecond later.
    let mut whole = session(&alice.id, 0);
    whole.expires_at = time::macros::datetime!(2024-05-01 12:10:00 UTC);
    store.create_session(&whole).await.unwrap();
    let just_after = time::macros::datetime!(2024-05-01 12:10:00.000001 UTC);
    let just_before = time::macros::datetime!(2024-05-01 12:09:59.999999 UTC);
    assert_eq!(
        store
            .find_session(&whole.handle_digest, just_after)
            .await
            .unwrap(),
        None
    );
    assert!(store
        .find_session(&whole.handle_digest, just_before)
        .await
        .unwrap()
        .is_some());
}
conformance!(sessions_expire => sessions_expire_sqlite, sessions_expire_postgres);

async fn delete_user_sessions_signs_out_everywhere(store: Arc<dyn Store>) {
    let alice = user(Some("alice"), None);
    let bob = user(Some("bob"), None);
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();
    let a1 = session(&alice.id, 3600);
    let a2 = session(&alice.id, 3600);
    let b1 = session(&bob.id, 3600);
    for s in [&a1, &a2, &b1] {
        store.create_session(s).await.unwrap();
    }
    assert_eq!(store.delete_user_sessions(&alice.id).await.unwrap(), 2);
    assert_eq!(store.delete_user_sessions(&alice.id).await.unwrap(), 0);
    assert_eq!(
        store.find_session(&a1.handle_digest, t(1)).await.unwrap(),
        None
    );
    assert_eq!(
        store.find_session(&a2.handle_digest, t(1)).await.unwrap(),
        None
    );
    assert_eq!(
        store.find_session(&b1.handle_digest, t(1)).await.unwrap(),
        Some(b1)
    );
}
conformance!(delete_user_sessions_signs_out_everywhere
    => delete_user_sessions_signs_out_everywhere_sqlite,
       delete_user_sessions_signs_out_everywhere_postgres);

async fn interaction_round_trip(store: Arc<dyn Store>) {
    let i = interaction("web-app", 600);
    store.create_interaction(&i).await.unwrap();
    assert_eq!(
        store.get_interaction(&i.id, t(1)).await.unwrap(),
        Some(i.clone())
    );
    assert_eq!(
        store.get_interaction("int_missing", t(1)).await.unwrap(),
        None
    );

    let state = json!({ "step": "consent", "user_id": "usr_1", "account": null, "n": [1, 2] });
    store.update_interaction_state(&i.id, &state).await.unwrap();
    let read = store.get_interaction(&i.id, t(2)).await.unwrap().unwrap();
    assert_eq!(read.state, state);
    assert_eq!(read.request, i.request);

    assert_err!(
        store
            .update_interaction_state("int_missing", &json!({}))
            .await,
        StoreError::NotFound("interaction")
    );

    // Expired at `expires_at`.
    assert_eq!(store.get_interaction(&i.id, t(600)).await.unwrap(), None);

    store.delete_interaction(&i.id).await.unwrap();
    assert_eq!(store.get_interaction(&i.id, t(1)).await.unwrap(), None);
    store.delete_interaction(&i.id).await.unwrap();
}
conformance!(interaction_round_trip
    => interaction_round_trip_sqlite, interaction_round_trip_postgres);

async fn purge_expired_sessions_and_interactions(store: Arc<dyn Store>) {
    let alice = user(Some("alice"), None);
    store.create_user(&alice).await.unwrap();
    let old_session = session(&alice.id, 100);
    let live_session = session(&alice.id, 1000);
    let old_interaction = interaction("web-app", 50);
    let edge_interaction = interaction("web-app", 200);
    let live_interaction = interaction("web-app", 5000);
    store.create_session(&old_session).await.unwrap();
    store.create_session(&live_session).await.unwrap();
    for i in [&old_interaction, &edge_interaction, &live_interaction] {
        store.create_interaction(i).await.unwrap();
    }

    // Expired means expires_at <= now.
    assert_eq!(store.purge_expired_sessions(t(200)).await.unwrap(), 3);
    assert_eq!(store.purge_expired_sessions(t(200)).await.unwrap(), 0);
    assert!(store
        .find_session(&live_session.handle_digest, t(1))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .find_session(&old_session.handle_digest, t(1))
            .await
            .unwrap(),
        None
    );
    assert!(store
        .get_interaction(&live_interaction.id, t(1))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .get_interaction(&edge_interaction.id, t(1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_interaction(&old_interaction.id, t(1))
            .await
            .unwrap(),
        None
    );
}
conformance!(purge_expired_sessions_and_interactions
    => purge_expired_sessions_and_interactions_sqlite,
       purge_expired_sessions_and_interactions_postgres);

/// Many expired rows go in several batches.
async fn purge_many_expired_sessions(store: Arc<dyn Store>) {
    let alice = user(Some("alice"), None);
    store.create_user(&alice).await.unwrap();
    for n in 0..1203 {
        store
            .create_interaction(&interaction("web-app", n % 10))
            .await
            .unwrap();
    }
    let live = interaction("web-app", 100);
    store.create_interaction(&live).await.unwrap();
    assert_eq!(store.purge_expired_sessions(t(10)).await.unwrap(), 1203);
    assert!(store
        .get_interaction(&live.id, t(10))
        .await
        .unwrap()
        .is_some());
}
conformance!(purge_many_expired_sessions
    => purge_many_expired_sessions_sqlite, purge_many_expired_sessions_postgres);

/// Deleting a user removes their sessions, grants (with codes and refresh tokens) and
/// consents.
async fn user_delete_cascades(store: Arc<dyn Store>) {
    let alice = user(Some("alice"), None);
    let bob = user(Some("bob"), None);
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();

    let mut kept = Vec::new();
    let mut gone = Vec::new();
    for u in [&alice, &bob] {
        let s = session(&u.id, 3600);
        store.create_session(&s).await.unwrap();
        let g = grant(&u.id, Some(&s.id), 3600);
        let c = code(&g.id, 60);
        store.create_grant_with_code(&g, &c).await.unwrap();
        let rt = refresh_token(&g.id, 0, 600);
        store.add_refresh_token(&rt).await.unwrap();
        let consent = Consent {
            user_id: u.id.clone(),
            client_id: "web-app".to_owned(),
            resource: String::new(),
            scopes: vec!["openid".to_owned()],
            updated_at: t(0),
        };
        store.save_consent(&consent).await.unwrap();
        let entry = (s, g, c, rt);
        if u.id == alice.id {
            gone.push(entry);
        } else {
            kept.push(entry);
        }
    }

    store.delete_user(&alice.id, false).await.unwrap();

    for (s, g, c, rt) in &gone {
        assert_eq!(
            store.find_session(&s.handle_digest, t(1)).await.unwrap(),
            None
        );
        assert_eq!(store.get_grant(&g.id).await.unwrap(), None);
        assert_eq!(store.find_refresh_token(&rt.digest).await.unwrap(), None);
        assert_eq!(
            store.redeem_code(&c.digest, t(1)).await.unwrap(),
            CodeRedemption::Invalid
        );
    }
    assert_eq!(
        store.get_consent(&alice.id, "web-app", "").await.unwrap(),
        None
    );

    for (s, g, c, rt) in &kept {
        assert!(store
            .find_session(&s.handle_digest, t(1))
            .await
            .unwrap()
            .is_some());
        assert!(store.get_grant(&g.id).await.unwrap().is_some());
        assert!(store
            .find_refresh_token(&rt.digest)
            .await
            .unwrap()
            .is_some());
        assert!(matches!(
            store.redeem_code(&c.digest, t(1)).await.unwrap(),
            CodeRedemption::Redeemed { .. }
        ));
    }
    assert!(store
        .get_consent(&bob.id, "web-app", "")
        .await
        .unwrap()
        .is_some());
}
conformance!(user_delete_cascades => user_delete_cascades_sqlite, user_delete_cascades_postgres);

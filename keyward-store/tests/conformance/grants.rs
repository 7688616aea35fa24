use std::sync::Arc;

use keyward_core::model::{AuthorizationCode, Grant, RefreshToken};
use keyward_core::store::{CodeRedemption, RefreshRotation, Store};
use keyward_core::{Role, StoreError};

use crate::support::{account, code, connect_migrated, digest, grant, refresh_token, t, user};

/// A user, and an active grant (expiring at `t(grant_expires)`) with a code expiring at
/// `t(60)`.
async fn setup(store: &Arc<dyn Store>, grant_expires: i64) -> (Grant, AuthorizationCode) {
    let u = user(None, None);
    store.create_user(&u).await.unwrap();
    let g = grant(&u.id, Some("ses_1"), grant_expires);
    let c = code(&g.id, 60);
    store.create_grant_with_code(&g, &c).await.unwrap();
    (g, c)
}

/// A grant with a refresh token expiring at `t(token_expires)`.
async fn setup_refresh(
    store: &Arc<dyn Store>,
    grant_expires: i64,
    token_expires: i64,
) -> (Grant, RefreshToken) {
    let (g, _) = setup(store, grant_expires).await;
    let rt = refresh_token(&g.id, 0, token_expires);
    store.add_refresh_token(&rt).await.unwrap();
    (g, rt)
}

async fn grant_round_trip(store: Arc<dyn Store>) {
    let u = user(Some("alice"), None);
    store.create_user(&u).await.unwrap();
    let acc = account("Workspace", None);
    store.create_account(&acc).await.unwrap();

    let full = Grant {
        account_id: Some(acc.id.clone()),
        role: Some(Role::Admin),
        scopes: vec!["openid".to_owned(), "workspace:admin".to_owned()],
        ..grant(&u.id, Some("ses_x"), 3600)
    };
    store
        .create_grant_with_code(&full, &code(&full.id, 60))
        .await
        .unwrap();
    assert_eq!(store.get_grant(&full.id).await.unwrap(), Some(full.clone()));

    let bare = Grant {
        resource: None,
        session_id: None,
        scopes: vec![],
        ..grant(&u.id, None, 3600)
    };
    let mut bare_code = code(&bare.id, 60);
    bare_code.code_challenge = None;
    bare_code.nonce = None;
    store
        .create_grant_with_code(&bare, &bare_code)
        .await
        .unwrap();
    assert_eq!(store.get_grant(&bare.id).await.unwrap(), Some(bare.clone()));
    match store.redeem_code(&bare_code.digest, t(1)).await.unwrap() {
        CodeRedemption::Redeemed { code, grant } => {
            assert_eq!(
                code,
                AuthorizationCode {
                    redeemed_at: Some(t(1)),
                    ..bare_code.clone()
                }
            );
            assert_eq!(*grant, bare);
        }
        other => panic!("expected Redeemed, got {other:?}"),
    }

    assert_eq!(store.get_grant("gnt_missing").await.unwrap(), None);

    // Unknown user: nothing is stored, not even the code.
    let orphan = grant("usr_missing", None, 3600);
    let orphan_code = code(&orphan.id, 60);
    assert_err!(
        store.create_grant_with_code(&orphan, &orphan_code).await,
        StoreError::NotFound("user")
    );
    assert_eq!(store.get_grant(&orphan.id).await.unwrap(), None);
    assert_eq!(
        store.redeem_code(&orphan_code.digest, t(1)).await.unwrap(),
        CodeRedemption::Invalid
    );
}
conformance!(grant_round_trip => grant_round_trip_sqlite, grant_round_trip_postgres);

async fn code_redeemed_once_then_replayed(store: Arc<dyn Store>) {
    let (g, c) = setup(&store, 3600).await;
    let rt = refresh_token(&g.id, 0, 600);
    store.add_refresh_token(&rt).await.unwrap();

    match store.redeem_code(&c.digest, t(5)).await.unwrap() {
        CodeRedemption::Redeemed { code, grant } => {
            assert_eq!(code.redeemed_at, Some(t(5)));
            assert_eq!(code.grant_id, g.id);
            assert_eq!(*grant, g);
        }
        other => panic!("expected Redeemed, got {other:?}"),
    }
    assert_eq!(
        store.redeem_code(&c.digest, t(6)).await.unwrap(),
        CodeRedemption::Replayed {
            grant_id: g.id.clone()
        }
    );
    // The replay revoked the grant, and with it the refresh tokens issued from it.
    let revoked = store.get_grant(&g.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(t(6)));
    assert_eq!(
        store
            .rotate_refresh_token(&rt.digest, &refresh_token(&g.id, 7, 600), t(7))
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
    // Further attempts: the grant is revoked, so Invalid; the revocation time stays.
    assert_eq!(
        store.redeem_code(&c.digest, t(8)).await.unwrap(),
        CodeRedemption::Invalid
    );
    assert_eq!(
        store.get_grant(&g.id).await.unwrap().unwrap().revoked_at,
        Some(t(6))
    );

    assert_eq!(
        store.redeem_code(&digest(), t(5)).await.unwrap(),
        CodeRedemption::Invalid
    );
}
conformance!(code_redeemed_once_then_replayed
    => code_redeemed_once_then_replayed_sqlite, code_redeemed_once_then_replayed_postgres);

async fn code_expiry_and_grant_state(store: Arc<dyn Store>) {
    // The code expires at t(60), exactly.
    let (g, c) = setup(&store, 3600).await;
    assert_eq!(
        store.redeem_code(&c.digest, t(60)).await.unwrap(),
        CodeRedemption::Invalid
    );
    let grant = store.get_grant(&g.id).await.unwrap().unwrap();
    assert_eq!(grant.revoked_at, None, "an expired code revokes nothing");

    // A code whose grant was revoked.
    let (g, c) = setup(&store, 3600).await;
    assert!(store.revoke_grant(&g.id, t(1)).await.unwrap());
    assert_eq!(
        store.redeem_code(&c.digest, t(2)).await.unwrap(),
        CodeRedemption::Invalid
    );

    // A code whose grant has expired (the grant's lifetime shorter than the code's).
    let (_, c) = setup(&store, 30).await;
    assert_eq!(
        store.redeem_code(&c.digest, t(30)).await.unwrap(),
        CodeRedemption::Invalid
    );

    // Just before expiry still works.
    let (_, c) = setup(&store, 3600).await;
    assert!(matches!(
        store.redeem_code(&c.digest, t(59)).await.unwrap(),
        CodeRedemption::Redeemed { .. }
    ));
}
conformance!(code_expiry_and_grant_state
    => code_expiry_and_grant_state_sqlite, code_expiry_and_grant_state_postgres);

/// Two redemptions of one code at once (from two nodes): exactly one is Redeemed, the
/// other sees a replay, and the grant ends revoked.
async fn concurrent_code_redemption(store: Arc<dyn Store>, url: String) {
    let other = connect_migrated(&url).await;
    for round in 0..6 {
        let (g, c) = setup(&store, 3600).await;
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for node in [store.clone(), other.clone()] {
            let digest = c.digest.clone();
            let start = start.clone();
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                node.redeem_code(&digest, t(1)).await
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().unwrap());
        }
        let redeemed = outcomes
            .iter()
            .filter(|o| matches!(o, CodeRedemption::Redeemed { .. }))
            .count();
        let replayed = outcomes
            .iter()
            .filter(|o| {
                **o == CodeRedemption::Replayed {
                    grant_id: g.id.clone(),
                }
            })
            .count();
        assert_eq!((redeemed, replayed), (1, 1), "round {round}: {outcomes:?}");
        assert!(store
            .get_grant(&g.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some());
    }
}
conformance!(with_url concurrent_code_redemption
    => concurrent_code_redemption_sqlite, concurrent_code_redemption_postgres);

async fn refresh_rotation_and_reuse(store: Arc<dyn Store>) {
    let (g, rt1) = setup_refresh(&store, 3600, 600).await;
    assert_eq!(
        store.find_refresh_token(&rt1.digest).await.unwrap(),
        Some((rt1.clone(), g.clone()))
    );

    // The store files the new token under the presented token's grant.
    let rt2 = RefreshToken {
        grant_id: "gnt_someone_else".to_owned(),
        ..refresh_token(&g.id, 10, 610)
    };
    assert_eq!(
        store
            .rotate_refresh_token(&rt1.digest, &rt2, t(10))
            .await
            .unwrap(),
        RefreshRotation::Rotated(Box::new(g.clone()))
    );
    let (used, _) = store
        .find_refresh_token(&rt1.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.used_at, Some(t(10)));
    let (stored2, grant2) = store
        .find_refresh_token(&rt2.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored2,
        RefreshToken {
            grant_id: g.id.clone(),
            ..rt2.clone()
        }
    );
    assert_eq!(grant2, g);

    let rt3 = refresh_token(&g.id, 20, 620);
    assert!(matches!(
        store
            .rotate_refresh_token(&rt2.digest, &rt3, t(20))
            .await
            .unwrap(),
        RefreshRotation::Rotated(_)
    ));

    // rt1 again: a replay. The family is revoked; nothing is stored for the attempt.
    let attempt = refresh_token(&g.id, 30, 630);
    assert_eq!(
        store
            .rotate_refresh_token(&rt1.digest, &attempt, t(30))
            .await
            .unwrap(),
        RefreshRotation::Replayed {
            grant_id: g.id.clone()
        }
    );
    assert_eq!(
        store.find_refresh_token(&attempt.digest).await.unwrap(),
        None
    );
    let (_, revoked) = store
        .find_refresh_token(&rt3.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(t(30)));

    // The newest token is dead too.
    assert_eq!(
        store
            .rotate_refresh_token(&rt3.digest, &refresh_token(&g.id, 40, 640), t(40))
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
    // And an unknown one is just invalid.
    assert_eq!(
        store
            .rotate_refresh_token(&digest(), &refresh_token(&g.id, 40, 640), t(40))
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
    assert_eq!(store.find_refresh_token(&digest()).await.unwrap(), None);
}
conformance!(refresh_rotation_and_reuse
    => refresh_rotation_and_reuse_sqlite, refresh_rotation_and_reuse_postgres);

async fn refresh_expiry_is_capped_at_the_grant(store: Arc<dyn Store>) {
    // Idle-expired token (expires_at <= now): invalid, and nothing is revoked.
    let (g, rt) = setup_refresh(&store, 3600, 600).await;
    assert_eq!(
        store
            .rotate_refresh_token(&rt.digest, &refresh_token(&g.id, 600, 1200), t(600))
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
    let (unused, grant) = store.find_refresh_token(&rt.digest).await.unwrap().unwrap();
    assert_eq!(unused.used_at, None);
    assert_eq!(grant.revoked_at, None);

    // The new token's idle expiry never outlives the grant.
    let (g, rt) = setup_refresh(&store, 1000, 600).await;
    let next = refresh_token(&g.id, 500, 1100);
    assert!(matches!(
        store
            .rotate_refresh_token(&rt.digest, &next, t(500))
            .await
            .unwrap(),
        RefreshRotation::Rotated(_)
    ));
    let (stored, _) = store
        .find_refresh_token(&next.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.expires_at, t(1000));
    // Sooner idle expiries are kept as they are.
    let sooner = refresh_token(&g.id, 600, 900);
    assert!(matches!(
        store
            .rotate_refresh_token(&next.digest, &sooner, t(600))
            .await
            .unwrap(),
        RefreshRotation::Rotated(_)
    ));
    let (stored, _) = store
        .find_refresh_token(&sooner.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.expires_at, t(900));

    // The grant's absolute lifetime ends rotation even for an unexpired token.
    let (g, _) = setup(&store, 1000).await;
    let long = refresh_token(&g.id, 0, 5000);
    store.add_refresh_token(&long).await.unwrap();
    // add_refresh_token caps too.
    let (stored, _) = store
        .find_refresh_token(&long.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.expires_at, t(1000));
    assert_eq!(
        store
            .rotate_refresh_token(&long.digest, &refresh_token(&g.id, 1000, 2000), t(1000))
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );

    assert_err!(
        store
            .add_refresh_token(&refresh_token("gnt_missing", 0, 100))
            .await,
        StoreError::NotFound("grant")
    );
}
conformance!(refresh_expiry_is_capped_at_the_grant
    => refresh_expiry_is_capped_at_the_grant_sqlite,
       refresh_expiry_is_capped_at_the_grant_postgres);

/// Two rotations of one refresh token at once (from two nodes): exactly one wins; the
/// other is indistinguishable from a replay and revokes the family.
async fn concurrent_refresh_rotation(store: Arc<dyn Store>, url: String) {
    let other = connect_migrated(&url).await;
    for round in 0..6 {
        let (g, rt) = setup_refresh(&store, 3600, 600).await;
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for node in [store.clone(), other.clone()] {
            let presented = rt.digest.clone();
            let new = refresh_token(&g.id, 1, 601);
            let start = start.clone();
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let outcome = node.rotate_refresh_token(&presented, &new, t(1)).await;
                (new, outcome)
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            let (new, outcome) = task.await.unwrap();
            outcomes.push((new, outcome.unwrap()));
        }
        let winners: Vec<&RefreshToken> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, RefreshRotation::Rotated(_)))
            .map(|(new, _)| new)
            .collect();
        let replayed = outcomes
            .iter()
            .filter(|(_, o)| {
                *o == RefreshRotation::Replayed {
                    grant_id: g.id.clone(),
                }
            })
            .count();
        assert_eq!(
            (winners.len(), replayed),
            (1, 1),
            "round {round}: {outcomes:?}"
        );
        // Only the winner's token was stored.
        for (new, _) in &outcomes {
            let stored = store.find_refresh_token(&new.digest).await.unwrap();
            assert_eq!(stored.is_some(), new.digest == winners[0].digest);
        }
        assert!(store
            .get_grant(&g.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some());
    }
}
conformance!(with_url concurrent_refresh_rotation
    => concurrent_refresh_rotation_sqlite, concurrent_refresh_rotation_postgres);

async fn revoke_grant_is_idempotent(store: Arc<dyn Store>) {
    let (g, rt) = setup_refresh(&store, 3600, 600).await;
    assert!(store.revoke_grant(&g.id, t(5)).await.unwrap());
    assert!(store.revoke_grant(&g.id, t(9)).await.unwrap());
    assert_eq!(
        store.get_grant(&g.id).await.unwrap().unwrap().revoked_at,
        Some(t(5))
    );
    assert!(!store.revoke_grant("gnt_missing", t(5)).await.unwrap());

    // The family is dead: rotation is refused (and is not a replay).
    assert_eq!(
        store
            .rotate_refresh_token(&rt.digest, &refresh_token(&g.id, 10, 610), t(10))
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
    // Introspection still finds the token, with its revoked grant.
    let (token, grant) = store.find_refresh_token(&rt.digest).await.unwrap().unwrap();
    assert_eq!(token, rt);
    assert_eq!(grant.revoked_at, Some(t(5)));
}
conformance!(revoke_grant_is_idempotent
    => revoke_grant_is_idempotent_sqlite, revoke_grant_is_idempotent_postgres);

async fn revoke_session_grants_on_sign_out(store: Arc<dyn Store>) {
    let u = user(Some("alice"), None);
    store.create_user(&u).await.unwrap();
    let make = |session: Option<&str>, expires: i64| grant(&u.id, session, expires);
    let active1 = make(Some("ses_a"), 3600);
    let active2 = make(Some("ses_a"), 3600);
    let already_revoked = make(Some("ses_a"), 3600);
    let expired = make(Some("ses_a"), 50);
    let other_session = make(Some("ses_b"), 3600);
    let no_session = make(None, 3600);
    for g in [
        &active1,
        &active2,
        &already_revoked,
        &expired,
        &other_session,
        &no_session,
    ] {
        store
            .create_grant_with_code(g, &code(&g.id, 60))
            .await
            .unwrap();
    }
    assert!(store
        .revoke_grant(&already_revoked.id, t(10))
        .await
        .unwrap());

    assert_eq!(
        store.revoke_session_grants("ses_a", t(100)).await.unwrap(),
        2
    );
    assert_eq!(
        store.revoke_session_grants("ses_a", t(200)).await.unwrap(),
        0
    );
    assert_eq!(
        store
            .revoke_session_grants("ses_none", t(100))
            .await
            .unwrap(),
        0
    );

    let revoked_at = |id: String| {
        let store = store.clone();
        async move { store.get_grant(&id).await.unwrap().unwrap().revoked_at }
    };
    assert_eq!(revoked_at(active1.id.clone()).await, Some(t(100)));
    assert_eq!(revoked_at(active2.id.clone()).await, Some(t(100)));
    assert_eq!(revoked_at(already_revoked.id.clone()).await, Some(t(10)));
    assert_eq!(revoked_at(other_session.id.clone()).await, None);
    assert_eq!(revoked_at(no_session.id.clone()).await, None);
}
conformance!(revoke_session_grants_on_sign_out
    => revoke_session_grants_on_sign_out_sqlite, revoke_session_grants_on_sign_out_postgres);

//! One-time codes (emailed sign-in codes): one live code per (user, purpose), spent once,
//! locked after too many wrong attempts, dead after expiry, replaced by a newer one.

use std::sync::Arc;

use keyward_core::id::{new_id, IdKind};
use keyward_core::model::OneTimeCode;
use keyward_core::secret::secret_digest;
use keyward_core::store::{OneTimeCodeRedemption as R, Store};
use keyward_core::StoreError;

use crate::support::{t, user};

const PURPOSE: &str = "sign_in";
const MAX: u32 = 5;

fn code(user_id: &str, value: &str, issued: i64, ttl: i64) -> OneTimeCode {
    OneTimeCode {
        id: new_id(IdKind::OneTimeCode),
        user_id: user_id.to_owned(),
        purpose: PURPOSE.to_owned(),
        digest: secret_digest(value),
        created_at: t(issued),
        expires_at: t(issued + ttl),
        attempts: 0,
        consumed_at: None,
    }
}

async fn redeem(store: &Arc<dyn Store>, user_id: &str, value: &str, at: i64) -> R {
    store
        .redeem_one_time_code(user_id, PURPOSE, &secret_digest(value), MAX, t(at))
        .await
        .unwrap()
}

async fn new_user(store: &Arc<dyn Store>) -> String {
    let u = user(
        None,
        Some(&format!("{}@example.test", new_id(IdKind::User))),
    );
    store.create_user(&u).await.unwrap();
    u.id
}

async fn codes_are_single_use(store: Arc<dyn Store>) {
    let alice = new_user(&store).await;
    assert_eq!(redeem(&store, &alice, "12345678", 0).await, R::NoCode);
    store
        .issue_one_time_code(&code(&alice, "12345678", 0, 600))
        .await
        .unwrap();
    assert_eq!(redeem(&store, &alice, "12345678", 10).await, R::Redeemed);
    // Spent: the same code again, or any other, finds no live code.
    assert_eq!(redeem(&store, &alice, "12345678", 11).await, R::NoCode);
    assert_eq!(redeem(&store, &alice, "87654321", 12).await, R::NoCode);
    // Another purpose is another code.
    assert_eq!(
        store
            .redeem_one_time_code(&alice, "other", &secret_digest("12345678"), MAX, t(13))
            .await
            .unwrap(),
        R::NoCode
    );
}
conformance!(codes_are_single_use => codes_are_single_use_sqlite, codes_are_single_use_postgres);

async fn codes_expire(store: Arc<dyn Store>) {
    let alice = new_user(&store).await;
    store
        .issue_one_time_code(&code(&alice, "11112222", 0, 600))
        .await
        .unwrap();
    assert_eq!(redeem(&store, &alice, "11112222", 600).await, R::Expired);
    assert_eq!(redeem(&store, &alice, "11112222", 601).await, R::Expired);
    // A fresh code works again.
    store
        .issue_one_time_code(&code(&alice, "11112222", 700, 600))
        .await
        .unwrap();
    assert_eq!(redeem(&store, &alice, "11112222", 1299).await, R::Redeemed);
}
conformance!(codes_expire => codes_expire_sqlite, codes_expire_postgres);

async fn wrong_codes_count_and_lock(store: Arc<dyn Store>) {
    let alice = new_user(&store).await;
    store
        .issue_one_time_code(&code(&alice, "24682468", 0, 600))
        .await
        .unwrap();
    for left in (0..MAX).rev() {
        assert_eq!(
            redeem(&store, &alice, "00000000", 1).await,
            R::Wrong {
                attempts_left: left
            }
        );
    }
    // Locked: even the right code no longer works, and nothing more is counted.
    assert_eq!(redeem(&store, &alice, "24682468", 2).await, R::Locked);
    assert_eq!(redeem(&store, &alice, "00000000", 3).await, R::Locked);
    // A new code unlocks with a fresh count.
    store
        .issue_one_time_code(&code(&alice, "13571357", 10, 600))
        .await
        .unwrap();
    assert_eq!(
        redeem(&store, &alice, "00000000", 11).await,
        R::Wrong {
            attempts_left: MAX - 1
        }
    );
    assert_eq!(redeem(&store, &alice, "13571357", 12).await, R::Redeemed);
}
conformance!(wrong_codes_count_and_lock
    => wrong_codes_count_and_lock_sqlite, wrong_codes_count_and_lock_postgres);

async fn a_new_code_replaces_the_old(store: Arc<dyn Store>) {
    let alice = new_user(&store).await;
    let bob = new_user(&store).await;
    store
        .issue_one_time_code(&code(&alice, "11111111", 0, 600))
        .await
        .unwrap();
    store
        .issue_one_time_code(&code(&bob, "33333333", 0, 600))
        .await
        .unwrap();
    store
        .issue_one_time_code(&code(&alice, "22222222", 5, 600))
        .await
        .unwrap();
    assert_eq!(
        redeem(&store, &alice, "11111111", 6).await,
        R::Wrong {
            attempts_left: MAX - 1
        }
    );
    // Bob's code is not Alice's.
    assert_eq!(
        redeem(&store, &alice, "33333333", 7).await,
        R::Wrong {
            attempts_left: MAX - 2
        }
    );
    assert_eq!(redeem(&store, &alice, "22222222", 8).await, R::Redeemed);
    assert_eq!(redeem(&store, &bob, "33333333", 9).await, R::Redeemed);
}
conformance!(a_new_code_replaces_the_old
    => a_new_code_replaces_the_old_sqlite, a_new_code_replaces_the_old_postgres);

async fn codes_need_a_user_and_go_with_it(store: Arc<dyn Store>) {
    match store
        .issue_one_time_code(&code("usr_01J0000000000000000000000", "1", 0, 600))
        .await
    {
        Err(StoreError::NotFound("user")) => {}
        other => panic!("expected NotFound(user), got {other:?}"),
    }
    let alice = new_user(&store).await;
    store
        .issue_one_time_code(&code(&alice, "12121212", 0, 600))
        .await
        .unwrap();
    store.delete_user(&alice, true).await.unwrap();
    assert_eq!(redeem(&store, &alice, "12121212", 1).await, R::NoCode);
}
conformance!(codes_need_a_user_and_go_with_it
    => codes_need_a_user_and_go_with_it_sqlite, codes_need_a_user_and_go_with_it_postgres);

/// Of concurrent redemptions of one code, exactly one wins; concurrent wrong attempts are
/// all counted.
async fn concurrent_redemptions(store: Arc<dyn Store>) {
    let alice = new_user(&store).await;
    store
        .issue_one_time_code(&code(&alice, "55556666", 0, 600))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            redeem(&store, &alice, "55556666", 1).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        if task.await.unwrap() == R::Redeemed {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);

    store
        .issue_one_time_code(&code(&alice, "77778888", 10, 600))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..MAX {
        let store = store.clone();
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            redeem(&store, &alice, "00000000", 11).await
        }));
    }
    for task in tasks {
        assert!(matches!(task.await.unwrap(), R::Wrong { .. }));
    }
    assert_eq!(redeem(&store, &alice, "77778888", 12).await, R::Locked);
}
conformance!(concurrent_redemptions
    => concurrent_redemptions_sqlite, concurrent_redemptions_postgres);

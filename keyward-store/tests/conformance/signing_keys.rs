use std::sync::Arc;

use keyward_core::model::SigningKey;
use keyward_core::store::Store;

use crate::support::{connect_migrated, signing_key, t};

async fn signing_key_rotation(store: Arc<dyn Store>) {
    assert!(store.all_signing_keys().await.unwrap().is_empty());
    assert!(store.published_signing_keys(t(0)).await.unwrap().is_empty());

    let first = signing_key(0);
    assert!(store.insert_first_signing_key(&first).await.unwrap());
    assert!(!store
        .insert_first_signing_key(&signing_key(1))
        .await
        .unwrap());
    assert_eq!(store.all_signing_keys().await.unwrap(), vec![first.clone()]);

    // Rotation retires the current key at the given time, in the same write.
    let second = signing_key(100);
    store.rotate_signing_key(&second, t(1000)).await.unwrap();
    let first_retiring = SigningKey {
        retires_at: Some(t(1000)),
        ..first.clone()
    };
    assert_eq!(
        store.all_signing_keys().await.unwrap(),
        vec![first_retiring.clone(), second.clone()]
    );

    // A key that already has a retirement time keeps it.
    let third = signing_key(200);
    store.rotate_signing_key(&third, t(2000)).await.unwrap();
    let second_retiring = SigningKey {
        retires_at: Some(t(2000)),
        ..second.clone()
    };
    assert_eq!(
        store.all_signing_keys().await.unwrap(),
        vec![
            first_retiring.clone(),
            second_retiring.clone(),
            third.clone()
        ]
    );

    // Published: not retired at `now` (retiring exactly at `now` counts as retired).
    assert_eq!(
        store.published_signing_keys(t(999)).await.unwrap(),
        vec![
            first_retiring.clone(),
            second_retiring.clone(),
            third.clone()
        ]
    );
    assert_eq!(
        store.published_signing_keys(t(1000)).await.unwrap(),
        vec![second_retiring.clone(), third.clone()]
    );
    assert_eq!(
        store.published_signing_keys(t(5000)).await.unwrap(),
        vec![third.clone()]
    );

    // Purge: retired strictly before `before`.
    assert_eq!(store.purge_retired_signing_keys(t(1000)).await.unwrap(), 0);
    assert_eq!(store.purge_retired_signing_keys(t(1001)).await.unwrap(), 1);
    assert_eq!(
        store.all_signing_keys().await.unwrap(),
        vec![second_retiring.clone(), third.clone()]
    );
    assert_eq!(
        store
            .purge_retired_signing_keys(t(1_000_000))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.all_signing_keys().await.unwrap(), vec![third.clone()]);
}
conformance!(signing_key_rotation => signing_key_rotation_sqlite, signing_key_rotation_postgres);

/// Oldest first means by creation time, whatever the id order.
async fn signing_keys_sorted_by_creation(store: Arc<dyn Store>) {
    let mut older = signing_key(10);
    older.id = "key_01zzzzzzzzzzzzzzzzzzzzzzzz".to_owned();
    let mut newer = signing_key(20);
    newer.id = "key_01000000000000000000000000".to_owned();
    store.rotate_signing_key(&newer, t(5000)).await.unwrap();
    store.rotate_signing_key(&older, t(6000)).await.unwrap();
    let keys = store.all_signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        vec![older.id.as_str(), newer.id.as_str()]
    );
    assert_eq!(keys[1].retires_at, Some(t(6000)));
    assert_eq!(keys[0].retires_at, None);
}
conformance!(signing_keys_sorted_by_creation
    => signing_keys_sorted_by_creation_sqlite, signing_keys_sorted_by_creation_postgres);

/// Several nodes (two store instances, four attempts each) start at once on the same
/// database: exactly one first key.
async fn first_signing_key_race(store: Arc<dyn Store>, url: String) {
    let other = connect_migrated(&url).await;
    // Open the pools' connections first, so the attempts below really overlap.
    for node in [&store, &other] {
        let (a, b, c, d) = tokio::join!(node.ping(), node.ping(), node.ping(), node.ping());
        a.and(b).and(c).and(d).unwrap();
    }
    const ATTEMPTS: usize = 8;
    let start = Arc::new(tokio::sync::Barrier::new(ATTEMPTS));
    let mut tasks = tokio::task::JoinSet::new();
    let mut candidates = Vec::new();
    for n in 0..ATTEMPTS {
        let node = if n % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let key = signing_key(n as i64);
        candidates.push(key.clone());
        let start = start.clone();
        tasks.spawn(async move {
            start.wait().await;
            (key.id.clone(), node.insert_first_signing_key(&key).await)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, inserted) = joined.unwrap();
        if inserted.unwrap() {
            winners.push(id);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let keys = store.all_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, winners[0]);
    assert_eq!(other.all_signing_keys().await.unwrap(), keys);
    assert!(candidates.contains(&keys[0]));
}
conformance!(with_url first_signing_key_race
    => first_signing_key_race_sqlite, first_signing_key_race_postgres);

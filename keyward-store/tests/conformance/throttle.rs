use std::sync::Arc;

use keyward_core::store::Store;
use time::macros::datetime;

use crate::support::t;

async fn throttle_counts_clears_and_purges(store: Arc<dyn Store>) {
    for at in [0, 10, 20] {
        store.record_failure("user:usr_1", t(at)).await.unwrap();
    }
    store.record_failure("ip:192.0.2.1", t(10)).await.unwrap();

    // At or after `since`.
    assert_eq!(store.count_failures("user:usr_1", t(0)).await.unwrap(), 3);
    assert_eq!(store.count_failures("user:usr_1", t(10)).await.unwrap(), 2);
    assert_eq!(store.count_failures("user:usr_1", t(11)).await.unwrap(), 1);
    assert_eq!(store.count_failures("user:usr_1", t(21)).await.unwrap(), 0);
    assert_eq!(store.count_failures("ip:192.0.2.1", t(0)).await.unwrap(), 1);
    assert_eq!(store.count_failures("user:usr_2", t(0)).await.unwrap(), 0);

    // Two failures at the same instant both count.
    store.record_failure("ip:192.0.2.1", t(10)).await.unwrap();
    assert_eq!(
        store.count_failures("ip:192.0.2.1", t(10)).await.unwrap(),
        2
    );

    store.clear_failures("user:usr_1").await.unwrap();
    assert_eq!(store.count_failures("user:usr_1", t(0)).await.unwrap(), 0);
    assert_eq!(store.count_failures("ip:192.0.2.1", t(0)).await.unwrap(), 2);
    store.clear_failures("user:usr_1").await.unwrap();

    // Purge: strictly older than `before`.
    for at in [0, 5, 30] {
        store.record_failure("user:usr_3", t(at)).await.unwrap();
    }
    assert_eq!(store.purge_failures(t(10)).await.unwrap(), 2);
    assert_eq!(store.purge_failures(t(10)).await.unwrap(), 0);
    assert_eq!(store.count_failures("user:usr_3", t(0)).await.unwrap(), 1);
    assert_eq!(store.count_failures("ip:192.0.2.1", t(0)).await.unwrap(), 2);
    assert_eq!(store.purge_failures(t(31)).await.unwrap(), 3);
    assert_eq!(store.count_failures("ip:192.0.2.1", t(0)).await.unwrap(), 0);
}
conformance!(throttle_counts_clears_and_purges
    => throttle_counts_clears_and_purges_sqlite, throttle_counts_clears_and_purges_postgres);

/// Times are compared as instants: a whole second (no fraction) against instants a
/// microsecond either side, where text order would get it wrong.
async fn throttle_compares_instants(store: Arc<dyn Store>) {
    let whole = datetime!(2024-05-01 12:00:10 UTC);
    let after = datetime!(2024-05-01 12:00:10.000001 UTC);
    let before = datetime!(2024-05-01 12:00:09.999999 UTC);
    store.record_failure("k", whole).await.unwrap();
    assert_eq!(store.count_failures("k", whole).await.unwrap(), 1);
    assert_eq!(store.count_failures("k", after).await.unwrap(), 0);
    assert_eq!(store.count_failures("k", before).await.unwrap(), 1);
    assert_eq!(store.purge_failures(whole).await.unwrap(), 0);
    assert_eq!(store.purge_failures(after).await.unwrap(), 1);
}
conformance!(throttle_compares_instants
    => throttle_compares_instants_sqlite, throttle_compares_instants_postgres);

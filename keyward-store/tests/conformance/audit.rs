use std::sync::Arc;

use keyward_core::model::AuditEvent;
use keyward_core::store::{AuditFilter, Store};
use keyward_core::AuditOutcome;
use serde_json::json;

use crate::support::{audit_event, ids, page, t};

async fn audit_round_trip_and_order(store: Arc<dyn Store>) {
    let mut events = Vec::new();
    for n in 0..5 {
        let mut e = audit_event("user.update", "app_a", "usr_x", AuditOutcome::Success);
        e.occurred_at = t(n);
        // Explicit, increasing ids.
        e.id = format!("evt_01hx00000000000000000000{n:02}");
        store.append_audit_event(&e).await.unwrap();
        events.push(e);
    }
    let system = AuditEvent {
        id: "evt_01hx0000000000000000000099".to_owned(),
        actor_type: "system".to_owned(),
        actor_id: None,
        target_id: None,
        reason: Some("bootstrap".to_owned()),
        request_id: None,
        details: json!(null),
        ..audit_event("system.bootstrap", "-", "-", AuditOutcome::Failure)
    };
    store.append_audit_event(&system).await.unwrap();

    // Newest first, limit + 1.
    let none = AuditFilter::default();
    let first = store
        .list_audit_events(&none, &page(None, 2))
        .await
        .unwrap();
    assert_eq!(
        first,
        vec![system.clone(), events[4].clone(), events[3].clone()]
    );
    // The cursor is the last row shown; the next page starts strictly before it.
    let second = store
        .list_audit_events(&none, &page(Some(&events[4].id), 2))
        .await
        .unwrap();
    assert_eq!(
        ids(&second, |e| &e.id),
        vec![
            events[3].id.clone(),
            events[2].id.clone(),
            events[1].id.clone()
        ]
    );
    let last = store
        .list_audit_events(&none, &page(Some(&events[1].id), 2))
        .await
        .unwrap();
    assert_eq!(last, vec![events[0].clone()]);
    assert!(store
        .list_audit_events(&none, &page(Some(&events[0].id), 2))
        .await
        .unwrap()
        .is_empty());
}
conformance!(audit_round_trip_and_order
    => audit_round_trip_and_order_sqlite, audit_round_trip_and_order_postgres);

async fn audit_filters(store: Arc<dyn Store>) {
    let a = audit_event("user.create", "app_1", "usr_1", AuditOutcome::Success);
    let b = audit_event("user.delete", "app_1", "usr_2", AuditOutcome::Denied);
    let c = audit_event("user.delete", "app_2", "usr_1", AuditOutcome::Failure);
    let d = audit_event("account.delete", "app_2", "acc_1", AuditOutcome::Success);
    let mut all = vec![a, b, c, d];
    for e in &all {
        store.append_audit_event(e).await.unwrap();
    }
    all.sort_by(|x, y| y.id.cmp(&x.id));
    let expect = |pred: &dyn Fn(&AuditEvent) -> bool| -> Vec<String> {
        all.iter()
            .filter(|e| pred(e))
            .map(|e| e.id.clone())
            .collect()
    };
    let list = |filter: AuditFilter| {
        let store = store.clone();
        async move {
            let rows = store
                .list_audit_events(&filter, &page(None, 50))
                .await
                .unwrap();
            ids(&rows, |e| &e.id)
        }
    };

    assert_eq!(
        list(AuditFilter {
            action: Some("user.delete".to_owned()),
            ..AuditFilter::default()
        })
        .await,
        expect(&|e| e.action == "user.delete")
    );
    assert_eq!(
        list(AuditFilter {
            actor_id: Some("app_2".to_owned()),
            ..AuditFilter::default()
        })
        .await,
        expect(&|e| e.actor_id.as_deref() == Some("app_2"))
    );
    assert_eq!(
        list(AuditFilter {
            target_id: Some("usr_1".to_owned()),
            ..AuditFilter::default()
        })
        .await,
        expect(&|e| e.target_id.as_deref() == Some("usr_1"))
    );
    assert_eq!(
        list(AuditFilter {
            outcome: Some(AuditOutcome::Success),
            ..AuditFilter::default()
        })
        .await,
        expect(&|e| e.outcome == AuditOutcome::Success)
    );
    assert_eq!(
        list(AuditFilter {
            action: Some("user.delete".to_owned()),
            target_id: Some("usr_1".to_owned()),
            outcome: Some(AuditOutcome::Failure),
            actor_id: Some("app_2".to_owned()),
        })
        .await
        .len(),
        1
    );
    assert!(list(AuditFilter {
        action: Some("user.delete".to_owned()),
        outcome: Some(AuditOutcome::Success),
        ..AuditFilter::default()
    })
    .await
    .is_empty());
}
conformance!(audit_filters => audit_filters_sqlite, audit_filters_postgres);

use std::sync::Arc;

use keyward_core::model::{ApiResource, ScopeDefinition};
use keyward_core::store::Store;
use keyward_core::StoreError;

use crate::support::{ids, page, resource, sorted, t};

async fn resource_round_trip(store: Arc<dyn Store>) {
    let mut management = resource("https://keyward.example.com/api");
    management.management = true;
    management.scopes = vec![];
    store.create_resource(&management).await.unwrap();
    let api = resource("https://api.example.com");
    store.create_resource(&api).await.unwrap();

    assert_eq!(
        store.get_resource(&api.id).await.unwrap(),
        Some(api.clone())
    );
    assert_eq!(
        store
            .get_resource_by_identifier("https://api.example.com")
            .await
            .unwrap(),
        Some(api.clone())
    );
    assert_eq!(
        store.get_resource(&management.id).await.unwrap(),
        Some(management.clone())
    );
    assert_eq!(store.get_resource("res_missing").await.unwrap(), None);
    assert_eq!(
        store
            .get_resource_by_identifier("https://nope")
            .await
            .unwrap(),
        None
    );

    assert_err!(
        store
            .create_resource(&resource("https://api.example.com"))
            .await,
        StoreError::Conflict("identifier_taken")
    );

    // Name, scopes, ttl and updated_at are written; nothing else.
    let change = ApiResource {
        name: "Renamed".to_owned(),
        scopes: vec![ScopeDefinition {
            name: "admin".to_owned(),
            description: Some("Everything".to_owned()),
        }],
        access_token_ttl_secs: 60,
        updated_at: t(40),
        identifier: "https://changed.example.com".to_owned(),
        management: true,
        created_at: t(900),
        ..api.clone()
    };
    store.update_resource(&change).await.unwrap();
    assert_eq!(
        store.get_resource(&api.id).await.unwrap(),
        Some(ApiResource {
            identifier: api.identifier.clone(),
            management: false,
            created_at: api.created_at,
            ..change.clone()
        })
    );
    assert_err!(
        store.update_resource(&resource("https://ghost")).await,
        StoreError::NotFound("resource")
    );

    store.delete_resource(&api.id).await.unwrap();
    assert_eq!(store.get_resource(&api.id).await.unwrap(), None);
    assert_err!(
        store.delete_resource(&api.id).await,
        StoreError::NotFound("resource")
    );
    // The identifier is free again.
    store
        .create_resource(&resource("https://api.example.com"))
        .await
        .unwrap();
}
conformance!(resource_round_trip => resource_round_trip_sqlite, resource_round_trip_postgres);

async fn list_resources_paginates(store: Arc<dyn Store>) {
    let mut created = Vec::new();
    for n in 0..4 {
        let r = resource(&format!("https://api{n}.example.com"));
        store.create_resource(&r).await.unwrap();
        created.push(r.id);
    }
    let all = sorted(created);
    let p1 = store.list_resources(&page(None, 1)).await.unwrap();
    assert_eq!(ids(&p1, |r| &r.id), all[..2].to_vec());
    let p2 = store.list_resources(&page(Some(&all[0]), 2)).await.unwrap();
    assert_eq!(ids(&p2, |r| &r.id), all[1..4].to_vec());
    let p3 = store.list_resources(&page(Some(&all[2]), 2)).await.unwrap();
    assert_eq!(ids(&p3, |r| &r.id), all[3..].to_vec());
}
conformance!(list_resources_paginates
    => list_resources_paginates_sqlite, list_resources_paginates_postgres);

use std::sync::Arc;

use keyward_core::model::Account;
use keyward_core::store::{AccountFilter, Store};
use keyward_core::{Role, StoreError};
use serde_json::json;

use crate::support::{account, application, ids, membership, page, sorted, t, user};

async fn account_round_trip(store: Arc<dyn Store>) {
    let root = account("Root", None);
    store.create_account(&root).await.unwrap();
    let child = account("Child", Some(&root.id));
    store.create_account(&child).await.unwrap();

    assert_eq!(
        store.get_account(&root.id).await.unwrap(),
        Some(root.clone())
    );
    assert_eq!(
        store.get_account(&child.id).await.unwrap(),
        Some(child.clone())
    );
    assert_eq!(store.get_account("acc_missing").await.unwrap(), None);

    // Only name, custom_data and updated_at are written.
    let changed = Account {
        name: "Renamed".to_owned(),
        custom_data: json!({ "nested": { "list": [1, 2.5, null, true, "x"] } }),
        updated_at: t(60),
        parent_account_id: Some(child.id.clone()),
        created_at: t(999),
        ..root.clone()
    };
    store.update_account(&changed).await.unwrap();
    let expected = Account {
        name: changed.name.clone(),
        custom_data: changed.custom_data.clone(),
        updated_at: t(60),
        ..root.clone()
    };
    assert_eq!(store.get_account(&root.id).await.unwrap(), Some(expected));

    let ghost = account("Ghost", None);
    assert_err!(
        store.update_account(&ghost).await,
        StoreError::NotFound("account")
    );
}
conformance!(account_round_trip => account_round_trip_sqlite, account_round_trip_postgres);

async fn create_account_with_unknown_parent(store: Arc<dyn Store>) {
    let orphan = account("Orphan", Some("acc_01hzzzzzzzzzzzzzzzzzzzzzzz"));
    assert_err!(
        store.create_account(&orphan).await,
        StoreError::NotFound("parent account")
    );
    assert_eq!(store.get_account(&orphan.id).await.unwrap(), None);
}
conformance!(create_account_with_unknown_parent
    => create_account_with_unknown_parent_sqlite, create_account_with_unknown_parent_postgres);

async fn list_accounts_paginates_and_filters(store: Arc<dyn Store>) {
    let root = account("Root", None);
    store.create_account(&root).await.unwrap();
    let mut children = Vec::new();
    for n in 0..4 {
        let child = account(&format!("Child {n}"), Some(&root.id));
        store.create_account(&child).await.unwrap();
        children.push(child.id);
    }
    let grandchild = account("Grandchild", Some(&children[0]));
    store.create_account(&grandchild).await.unwrap();

    let mut all = children.clone();
    all.push(root.id.clone());
    all.push(grandchild.id.clone());
    let all = sorted(all);

    // limit + 1 rows, ascending by id, then strictly after the cursor.
    let unfiltered = AccountFilter::default();
    let first = store
        .list_accounts(&unfiltered, &page(None, 2))
        .await
        .unwrap();
    assert_eq!(ids(&first, |a| &a.id), all[..3].to_vec());
    let second = store
        .list_accounts(&unfiltered, &page(Some(&all[1]), 2))
        .await
        .unwrap();
    assert_eq!(ids(&second, |a| &a.id), all[2..5].to_vec());
    let last = store
        .list_accounts(&unfiltered, &page(Some(&all[3]), 2))
        .await
        .unwrap();
    assert_eq!(ids(&last, |a| &a.id), all[4..].to_vec());
    let everything = store
        .list_accounts(&unfiltered, &page(None, 100))
        .await
        .unwrap();
    assert_eq!(everything.len(), 6);
    assert_eq!(
        everything.iter().find(|a| a.id == root.id),
        Some(&root),
        "list rows carry every field"
    );

    // Direct children only.
    let by_parent = AccountFilter {
        parent_account_id: Some(root.id.clone()),
        ..AccountFilter::default()
    };
    let direct = store
        .list_accounts(&by_parent, &page(None, 100))
        .await
        .unwrap();
    assert_eq!(ids(&direct, |a| &a.id), sorted(children.clone()));
    let direct_page = store
        .list_accounts(&by_parent, &page(Some(&sorted(children.clone())[1]), 1))
        .await
        .unwrap();
    assert_eq!(
        ids(&direct_page, |a| &a.id),
        sorted(children.clone())[2..4].to_vec()
    );

    // Accounts a user belongs to.
    let member = user(Some("member"), None);
    store.create_user(&member).await.unwrap();
    for account_id in [&children[1], &grandchild.id] {
        store
            .add_member(&membership(account_id, &member.id, Role::Member))
            .await
            .unwrap();
    }
    let by_member = AccountFilter {
        member_user_id: Some(member.id.clone()),
        ..AccountFilter::default()
    };
    let joined = store
        .list_accounts(&by_member, &page(None, 100))
        .await
        .unwrap();
    assert_eq!(
        ids(&joined, |a| &a.id),
        sorted(vec![children[1].clone(), grandchild.id.clone()])
    );

    // Both filters at once.
    let both = AccountFilter {
        parent_account_id: Some(root.id.clone()),
        member_user_id: Some(member.id.clone()),
    };
    let both = store.list_accounts(&both, &page(None, 100)).await.unwrap();
    assert_eq!(ids(&both, |a| &a.id), vec![children[1].clone()]);
}
conformance!(list_accounts_paginates_and_filters
    => list_accounts_paginates_and_filters_sqlite, list_accounts_paginates_and_filters_postgres);

async fn delete_account_without_cascade(store: Arc<dyn Store>) {
    let root = account("Root", None);
    store.create_account(&root).await.unwrap();
    let leaf = account("Leaf", Some(&root.id));
    store.create_account(&leaf).await.unwrap();
    let owner = user(Some("owner"), None);
    store.create_user(&owner).await.unwrap();
    store
        .add_member(&membership(&leaf.id, &owner.id, Role::Owner))
        .await
        .unwrap();

    assert_err!(
        store.delete_account(&root.id, false).await,
        StoreError::HasChildren
    );
    assert!(store.get_account(&root.id).await.unwrap().is_some());

    assert_eq!(store.delete_account(&leaf.id, false).await.unwrap(), 1);
    assert_eq!(store.get_account(&leaf.id).await.unwrap(), None);
    assert_eq!(store.get_member(&leaf.id, &owner.id).await.unwrap(), None);
    assert!(store
        .list_members(&leaf.id, &page(None, 10))
        .await
        .unwrap()
        .is_empty());
    assert!(store.get_user(&owner.id).await.unwrap().is_some());

    // Childless now.
    assert_eq!(store.delete_account(&root.id, false).await.unwrap(), 1);
    assert_err!(
        store.delete_account(&root.id, false).await,
        StoreError::NotFound("account")
    );
    assert_err!(
        store.delete_account(&root.id, true).await,
        StoreError::NotFound("account")
    );
}
conformance!(delete_account_without_cascade
    => delete_account_without_cascade_sqlite, delete_account_without_cascade_postgres);

async fn cascade_delete_removes_the_subtree(store: Arc<dyn Store>) {
    // root ── a ── a1
    //      └─ b
    // other (untouched)
    let root = account("Root", None);
    store.create_account(&root).await.unwrap();
    let a = account("A", Some(&root.id));
    store.create_account(&a).await.unwrap();
    let a1 = account("A1", Some(&a.id));
    store.create_account(&a1).await.unwrap();
    let b = account("B", Some(&root.id));
    store.create_account(&b).await.unwrap();
    let other = account("Other", None);
    store.create_account(&other).await.unwrap();

    let person = user(Some("person"), None);
    store.create_user(&person).await.unwrap();
    for account_id in [&root.id, &a.id, &a1.id, &b.id, &other.id] {
        store
            .add_member(&membership(account_id, &person.id, Role::Owner))
            .await
            .unwrap();
    }
    let mut app = application("tree-app");
    app.account_id = Some(a1.id.clone());
    store.create_application(&app).await.unwrap();

    assert_err!(
        store.delete_account(&a.id, false).await,
        StoreError::HasChildren
    );
    assert_eq!(store.delete_account(&root.id, true).await.unwrap(), 4);

    for gone in [&root.id, &a.id, &a1.id, &b.id] {
        assert_eq!(store.get_account(gone).await.unwrap(), None);
        assert_eq!(store.get_member(gone, &person.id).await.unwrap(), None);
    }
    assert_eq!(
        store.get_account(&other.id).await.unwrap(),
        Some(other.clone())
    );
    assert!(store
        .get_member(&other.id, &person.id)
        .await
        .unwrap()
        .is_some());
    let accounts = store
        .list_accounts(
            &AccountFilter {
                member_user_id: Some(person.id.clone()),
                ..AccountFilter::default()
            },
            &page(None, 10),
        )
        .await
        .unwrap();
    assert_eq!(ids(&accounts, |a| &a.id), vec![other.id.clone()]);
    // The user and the application survive; the application loses its account.
    assert!(store.get_user(&person.id).await.unwrap().is_some());
    let app = store.get_application(&app.id).await.unwrap().unwrap();
    assert_eq!(app.account_id, None);

    // A leaf with cascade deletes just itself.
    assert_eq!(store.delete_account(&other.id, true).await.unwrap(), 1);
}
conformance!(cascade_delete_removes_the_subtree
    => cascade_delete_removes_the_subtree_sqlite, cascade_delete_removes_the_subtree_postgres);

/// A child created while its parent is deleted without cascade: either the delete wins (and
/// the child's parent is gone) or the child does (and the delete reports `HasChildren`).
async fn delete_racing_child_insert(store: Arc<dyn Store>) {
    for round in 0..10 {
        let parent = account(&format!("Parent {round}"), None);
        store.create_account(&parent).await.unwrap();
        let child = account(&format!("Child {round}"), Some(&parent.id));
        let (deleted, created) = tokio::join!(
            store.delete_account(&parent.id, false),
            store.create_account(&child)
        );
        match (deleted, created) {
            (Ok(1), Err(StoreError::NotFound("parent account"))) => {
                assert_eq!(store.get_account(&parent.id).await.unwrap(), None);
            }
            (Err(StoreError::HasChildren), Ok(())) => {
                assert!(store.get_account(&child.id).await.unwrap().is_some());
            }
            other => panic!("inconsistent outcome in round {round}: {other:?}"),
        }
    }
}
conformance!(delete_racing_child_insert
    => delete_racing_child_insert_sqlite, delete_racing_child_insert_postgres);

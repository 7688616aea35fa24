use std::sync::Arc;

use keyward_core::model::Membership;
use keyward_core::store::Store;
use keyward_core::{Role, StoreError};

use crate::support::{account, ids, membership, page, sorted, t, user};

/// An account and `count` users, not members yet.
async fn setup(store: &Arc<dyn Store>, count: usize) -> (String, Vec<String>) {
    let acc = account("Team", None);
    store.create_account(&acc).await.unwrap();
    let mut users = Vec::new();
    for _ in 0..count {
        let u = user(None, None);
        store.create_user(&u).await.unwrap();
        users.push(u.id);
    }
    (acc.id, users)
}

async fn membership_round_trip(store: Arc<dyn Store>) {
    let (acc, users) = setup(&store, 5).await;
    let other = account("Other", None);
    store.create_account(&other).await.unwrap();

    let mut created: Vec<Membership> = Vec::new();
    for (n, user_id) in users.iter().enumerate() {
        let mut m = membership(
            &acc,
            user_id,
            if n == 0 { Role::Owner } else { Role::Viewer },
        );
        m.created_at = t(n as i64);
        m.updated_at = t(n as i64 + 1);
        store.add_member(&m).await.unwrap();
        created.push(m);
    }
    let first = &created[0];
    // By membership id and by user id; scoped to the account.
    assert_eq!(
        store.get_member(&acc, &first.id).await.unwrap().as_ref(),
        Some(first)
    );
    assert_eq!(
        store
            .get_member(&acc, &first.user_id)
            .await
            .unwrap()
            .as_ref(),
        Some(first)
    );
    assert_eq!(store.get_member(&other.id, &first.id).await.unwrap(), None);
    assert_eq!(
        store.get_member(&other.id, &first.user_id).await.unwrap(),
        None
    );
    assert_eq!(store.get_member(&acc, "mem_missing").await.unwrap(), None);
    assert_eq!(store.get_member(&acc, "usr_missing").await.unwrap(), None);

    // Pagination: ascending by membership id, limit + 1.
    let all = sorted(created.iter().map(|m| m.id.clone()).collect());
    let p1 = store.list_members(&acc, &page(None, 2)).await.unwrap();
    assert_eq!(ids(&p1, |m| &m.id), all[..3].to_vec());
    let p2 = store
        .list_members(&acc, &page(Some(&all[1]), 2))
        .await
        .unwrap();
    assert_eq!(ids(&p2, |m| &m.id), all[2..5].to_vec());
    let p3 = store
        .list_members(&acc, &page(Some(&all[3]), 2))
        .await
        .unwrap();
    assert_eq!(ids(&p3, |m| &m.id), all[4..].to_vec());
    let listed = store.list_members(&acc, &page(None, 10)).await.unwrap();
    for m in &created {
        assert!(listed.contains(m), "{m:?} listed with every field");
    }
    assert!(store
        .list_members(&other.id, &page(None, 10))
        .await
        .unwrap()
        .is_empty());

    // The same user twice.
    assert_err!(
        store
            .add_member(&membership(&acc, &users[1], Role::Admin))
            .await,
        StoreError::Conflict("already_member")
    );
    // But in another account, fine.
    store
        .add_member(&membership(&other.id, &users[1], Role::Admin))
        .await
        .unwrap();

    assert_err!(
        store
            .add_member(&membership(
                "acc_01hzzzzzzzzzzzzzzzzzzzzzzz",
                &users[0],
                Role::Admin
            ))
            .await,
        StoreError::NotFound("account")
    );
    assert_err!(
        store
            .add_member(&membership(
                &acc,
                "usr_01hzzzzzzzzzzzzzzzzzzzzzzz",
                Role::Admin
            ))
            .await,
        StoreError::NotFound("user")
    );
}
conformance!(membership_round_trip => membership_round_trip_sqlite, membership_round_trip_postgres);

async fn update_member_role_keeps_an_owner(store: Arc<dyn Store>) {
    let (acc, users) = setup(&store, 3).await;
    let owner = membership(&acc, &users[0], Role::Owner);
    let admin = membership(&acc, &users[1], Role::Admin);
    store.add_member(&owner).await.unwrap();
    store.add_member(&admin).await.unwrap();

    // The only owner cannot be demoted, by membership id or user id.
    assert_err!(
        store
            .update_member_role(&acc, &owner.id, Role::Admin, t(10))
            .await,
        StoreError::LastOwner
    );
    assert_err!(
        store
            .update_member_role(&acc, &owner.user_id, Role::Viewer, t(10))
            .await,
        StoreError::LastOwner
    );
    assert_eq!(
        store.get_member(&acc, &owner.id).await.unwrap(),
        Some(owner.clone())
    );
    // Re-asserting ownership is not a demotion.
    let same = store
        .update_member_role(&acc, &owner.id, Role::Owner, t(11))
        .await
        .unwrap();
    assert_eq!(same.role, Role::Owner);

    // Non-owners change freely.
    let changed = store
        .update_member_role(&acc, &admin.user_id, Role::Viewer, t(12))
        .await
        .unwrap();
    let expected = Membership {
        role: Role::Viewer,
        updated_at: t(12),
        ..admin.clone()
    };
    assert_eq!(changed, expected);
    assert_eq!(
        store.get_member(&acc, &admin.id).await.unwrap(),
        Some(expected)
    );

    // With a second owner, either may step down, but not both.
    let promoted = store
        .update_member_role(&acc, &admin.id, Role::Owner, t(13))
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Owner);
    let demoted = store
        .update_member_role(&acc, &owner.id, Role::Member, t(14))
        .await
        .unwrap();
    assert_eq!(demoted.role, Role::Member);
    assert_eq!(demoted.created_at, owner.created_at);
    assert_err!(
        store
            .update_member_role(&acc, &admin.id, Role::Member, t(15))
            .await,
        StoreError::LastOwner
    );

    // What is returned is what is stored, even for a timestamp finer than the database's.
    let precise = t(17) + time::Duration::nanoseconds(789);
    let returned = store
        .update_member_role(&acc, &owner.id, Role::Viewer, precise)
        .await
        .unwrap();
    assert_eq!(
        store.get_member(&acc, &owner.id).await.unwrap(),
        Some(returned.clone())
    );
    assert!((returned.updated_at - precise).abs() < time::Duration::microseconds(1));

    assert_err!(
        store
            .update_member_role(&acc, &users[2], Role::Admin, t(16))
            .await,
        StoreError::NotFound("member")
    );
    assert_err!(
        store
            .update_member_role(&acc, "mem_missing", Role::Admin, t(16))
            .await,
        StoreError::NotFound("member")
    );
    assert_err!(
        store
            .update_member_role(
                "acc_01hzzzzzzzzzzzzzzzzzzzzzzz",
                &owner.id,
                Role::Admin,
                t(16)
            )
            .await,
        StoreError::NotFound("member")
    );
}
conformance!(update_member_role_keeps_an_owner
    => update_member_role_keeps_an_owner_sqlite, update_member_role_keeps_an_owner_postgres);

async fn remove_member_keeps_an_owner(store: Arc<dyn Store>) {
    let (acc, users) = setup(&store, 3).await;
    let owner = membership(&acc, &users[0], Role::Owner);
    let member = membership(&acc, &users[1], Role::Member);
    store.add_member(&owner).await.unwrap();
    store.add_member(&member).await.unwrap();

    assert_err!(
        store.remove_member(&acc, &owner.id).await,
        StoreError::LastOwner
    );
    assert_err!(
        store.remove_member(&acc, &owner.user_id).await,
        StoreError::LastOwner
    );
    assert!(store.get_member(&acc, &owner.id).await.unwrap().is_some());

    assert_eq!(
        store.remove_member(&acc, &member.user_id).await.unwrap(),
        member
    );
    assert_eq!(store.get_member(&acc, &member.id).await.unwrap(), None);
    assert_err!(
        store.remove_member(&acc, &member.id).await,
        StoreError::NotFound("member")
    );

    // A second owner makes the first removable.
    let second = membership(&acc, &users[2], Role::Owner);
    store.add_member(&second).await.unwrap();
    assert_eq!(store.remove_member(&acc, &owner.id).await.unwrap(), owner);
    assert_err!(
        store.remove_member(&acc, &second.id).await,
        StoreError::LastOwner
    );

    // An account with no owner at all (made by a machine client): anyone can leave.
    let ownerless = account("Ownerless", None);
    store.create_account(&ownerless).await.unwrap();
    let admin = membership(&ownerless.id, &users[1], Role::Admin);
    store.add_member(&admin).await.unwrap();
    let demoted = store
        .update_member_role(&ownerless.id, &admin.id, Role::Viewer, t(5))
        .await
        .unwrap();
    assert_eq!(demoted.role, Role::Viewer);
    store.remove_member(&ownerless.id, &admin.id).await.unwrap();
}
conformance!(remove_member_keeps_an_owner
    => remove_member_keeps_an_owner_sqlite, remove_member_keeps_an_owner_postgres);

/// Two owners demote each other at the same time: exactly one wins.
async fn concurrent_demotions_leave_one_owner(store: Arc<dyn Store>) {
    for round in 0..8 {
        let (acc, users) = setup(&store, 2).await;
        let a = membership(&acc, &users[0], Role::Owner);
        let b = membership(&acc, &users[1], Role::Owner);
        store.add_member(&a).await.unwrap();
        store.add_member(&b).await.unwrap();

        let (ra, rb) = if round % 2 == 0 {
            tokio::join!(
                store.update_member_role(&acc, &a.id, Role::Admin, t(1)),
                store.update_member_role(&acc, &b.id, Role::Admin, t(1)),
            )
        } else {
            // Mixed: one demotion, one removal.
            let (ra, rb) = tokio::join!(
                store.update_member_role(&acc, &a.id, Role::Admin, t(1)),
                store.remove_member(&acc, &b.id),
            );
            (
                ra,
                rb.map(|m| Membership {
                    role: Role::Admin,
                    ..m
                }),
            )
        };
        let outcomes = [&ra, &rb];
        let ok = outcomes.iter().filter(|r| r.is_ok()).count();
        let last_owner = outcomes
            .iter()
            .filter(|r| matches!(r, Err(StoreError::LastOwner)))
            .count();
        assert_eq!((ok, last_owner), (1, 1), "round {round}: {ra:?} / {rb:?}");

        let members = store.list_members(&acc, &page(None, 10)).await.unwrap();
        let owners = members.iter().filter(|m| m.role == Role::Owner).count();
        assert_eq!(owners, 1, "round {round}");
    }
}
conformance!(concurrent_demotions_leave_one_owner
    => concurrent_demotions_leave_one_owner_sqlite, concurrent_demotions_leave_one_owner_postgres);

/// Two sole-owner checks racing: deleting both owners of an account without force.
async fn concurrent_owner_deletions_leave_one_owner(store: Arc<dyn Store>) {
    for round in 0..5 {
        let (acc, users) = setup(&store, 2).await;
        store
            .add_member(&membership(&acc, &users[0], Role::Owner))
            .await
            .unwrap();
        store
            .add_member(&membership(&acc, &users[1], Role::Owner))
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(
            store.delete_user(&users[0], false),
            store.delete_user(&users[1], false)
        );
        let ok = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {ra:?} / {rb:?}");
        assert!(
            matches!(ra, Err(StoreError::UserIsLastOwner))
                || matches!(rb, Err(StoreError::UserIsLastOwner)),
            "round {round}: {ra:?} / {rb:?}"
        );
        let members = store.list_members(&acc, &page(None, 10)).await.unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].role, Role::Owner);
    }
}
conformance!(concurrent_owner_deletions_leave_one_owner
    => concurrent_owner_deletions_leave_one_owner_sqlite,
       concurrent_owner_deletions_leave_one_owner_postgres);

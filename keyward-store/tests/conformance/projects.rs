use std::sync::Arc;

use keyward_core::id::{new_id, IdKind};
use keyward_core::project::{
    cluster_names, DatabaseConnection, DatabaseStatus, Project, ProjectDatabase, ProjectStatus,
    TransferOutcome,
};
use keyward_core::store::Store;

use crate::support::{account, page, t};

/// Creates the accounts a test's projects belong to: (partner, other, user).
async fn accounts(store: &Arc<dyn Store>) -> (String, String, String) {
    let mut ids = Vec::new();
    for name in ["partner", "other", "user"] {
        let a = account(name, None);
        store.create_account(&a).await.unwrap();
        ids.push(a.id);
    }
    (ids[0].clone(), ids[1].clone(), ids[2].clone())
}

fn project(
    account_id: &str,
    expires: Option<i64>,
) -> (Project, ProjectDatabase, DatabaseConnection) {
    let project = Project {
        id: new_id(IdKind::Project),
        name: "demo".into(),
        account_id: account_id.into(),
        application_id: Some("app_partner".into()),
        region: "local".into(),
        status: ProjectStatus::Provisioning,
        claim_digest: Some(keyward_core::secret::secret_digest(&new_id(IdKind::Grant))),
        expires_at: expires.map(t),
        claimed_at: None,
        created_at: t(0),
        updated_at: t(0),
    };
    let database_id = new_id(IdKind::Database);
    let (database_name, owner_role) = cluster_names(&database_id);
    let database = ProjectDatabase {
        id: database_id.clone(),
        project_id: project.id.clone(),
        name: "demo".into(),
        region: "local".into(),
        database_name,
        owner_role: owner_role.clone(),
        status: DatabaseStatus::Provisioning,
        is_default: true,
        created_at: t(0),
    };
    let connection = DatabaseConnection {
        id: new_id(IdKind::Connection),
        database_id,
        name: "default".into(),
        role_name: owner_role,
        is_owner: true,
        created_at: t(0),
        rotated_at: None,
    };
    (project, database, connection)
}

async fn projects_are_created_activated_listed_and_deleted(store: Arc<dyn Store>) {
    let (partner, other, user) = accounts(&store).await;
    let _ = (&partner, &other, &user);
    let (p, db, conn) = project(&partner, Some(1000));
    store.create_project(&p, &db, &conn, t(600)).await.unwrap();
    // Provisioning: scheduled at its deadline, not before.
    assert!(store.due_projects(t(599), 10).await.unwrap().is_empty());
    assert_eq!(
        store.due_projects(t(600), 10).await.unwrap(),
        vec![p.id.clone()]
    );

    store.activate_project(&p.id, t(1)).await.unwrap();
    let got = store.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(got.status, ProjectStatus::Active);
    assert_eq!(got.expires_at, Some(t(1000)));
    // Active: scheduled at its expiry instead.
    assert!(store.due_projects(t(999), 10).await.unwrap().is_empty());
    assert_eq!(
        store.due_projects(t(1000), 10).await.unwrap(),
        vec![p.id.clone()]
    );
    let databases = store.list_databases(&p.id).await.unwrap();
    assert_eq!(databases.len(), 1);
    assert_eq!(databases[0].status, DatabaseStatus::Ready);
    assert_eq!(
        store.list_connections(&db.id).await.unwrap(),
        vec![conn.clone()]
    );
    let by_claim = store
        .find_project_by_claim(p.claim_digest.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_claim.id, p.id);

    let (other, odb, oconn) = project(&other, None);
    store
        .create_project(&other, &odb, &oconn, t(600))
        .await
        .unwrap();
    let listed = store
        .list_projects(&partner, &page(None, 10))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    store.rename_project(&p.id, "renamed", t(2)).await.unwrap();
    assert_eq!(
        store.get_project(&p.id).await.unwrap().unwrap().name,
        "renamed"
    );

    store.delete_project(&p.id).await.unwrap();
    assert!(store.get_project(&p.id).await.unwrap().is_none());
    assert!(store.get_database(&db.id).await.unwrap().is_none());
    assert!(store.get_connection(&conn.id).await.unwrap().is_none());
}
conformance!(projects_are_created_activated_listed_and_deleted => projects_lifecycle_sqlite, projects_lifecycle_postgres);

async fn reaper_lease_is_taken_once_and_retries_reschedule(store: Arc<dyn Store>) {
    let (partner, other, user) = accounts(&store).await;
    let _ = (&partner, &other, &user);
    let (p, db, conn) = project(&partner, Some(100));
    store.create_project(&p, &db, &conn, t(600)).await.unwrap();
    store.activate_project(&p.id, t(1)).await.unwrap();
    // Two nodes race for the lease: one wins.
    assert!(store.lease_project(&p.id, t(100), t(400)).await.unwrap());
    assert!(!store.lease_project(&p.id, t(100), t(400)).await.unwrap());
    // While leased it is not due; a transfer sees it as expiring.
    assert!(store.due_projects(t(200), 10).await.unwrap().is_empty());
    // A failed drop reschedules it and counts the attempt.
    store
        .reap_failed(&p.id, t(500), "cluster down")
        .await
        .unwrap();
    assert_eq!(
        store.reap_state(&p.id).await.unwrap(),
        Some((1, Some("cluster down".into())))
    );
    assert!(store.due_projects(t(499), 10).await.unwrap().is_empty());
    assert_eq!(
        store.due_projects(t(500), 10).await.unwrap(),
        vec![p.id.clone()]
    );
    // An expired lease can be taken over by another node.
    assert!(store.lease_project(&p.id, t(500), t(510)).await.unwrap());
    assert!(store.lease_project(&p.id, t(511), t(900)).await.unwrap());
}
conformance!(reaper_lease_is_taken_once_and_retries_reschedule => reaper_lease_sqlite, reaper_lease_postgres);

async fn transfer_moves_once_and_clears_expiry(store: Arc<dyn Store>) {
    let (partner, other, user) = accounts(&store).await;
    let _ = (&partner, &other, &user);
    let (p, db, conn) = project(&partner, Some(1000));
    store.create_project(&p, &db, &conn, t(600)).await.unwrap();
    // Not while provisioning.
    assert_eq!(
        store
            .transfer_project(&p.id, &partner, &user, t(5))
            .await
            .unwrap(),
        TransferOutcome::NotFound
    );
    store.activate_project(&p.id, t(1)).await.unwrap();
    // Only from the workspace that owns it.
    assert_eq!(
        store
            .transfer_project(&p.id, &other, &user, t(5))
            .await
            .unwrap(),
        TransferOutcome::NotFound
    );
    // Not once expired.
    assert_eq!(
        store
            .transfer_project(&p.id, &partner, &user, t(1000))
            .await
            .unwrap(),
        TransferOutcome::Expired
    );
    let TransferOutcome::Transferred(moved) = store
        .transfer_project(&p.id, &partner, &user, t(10))
        .await
        .unwrap()
    else {
        panic!("expected a transfer");
    };
    assert_eq!(moved.account_id, user);
    assert_eq!(moved.expires_at, None);
    assert_eq!(moved.claimed_at, Some(t(10)));
    let stored = store.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(stored, *moved);
    assert!(stored.claim_digest.is_none());
    // The claim token is spent, the reaper no longer sees it, a second transfer fails.
    assert!(store
        .find_project_by_claim(p.claim_digest.as_deref().unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(store.due_projects(t(5000), 10).await.unwrap().is_empty());
    assert!(!store.lease_project(&p.id, t(5000), t(5300)).await.unwrap());
    assert_eq!(
        store
            .transfer_project(&p.id, &partner, &user, t(11))
            .await
            .unwrap(),
        TransferOutcome::NotFound
    );
}
conformance!(transfer_moves_once_and_clears_expiry => transfer_sqlite, transfer_postgres);

async fn transfer_refused_while_the_reaper_holds_the_project(store: Arc<dyn Store>) {
    let (partner, other, user) = accounts(&store).await;
    let _ = (&partner, &other, &user);
    let (p, db, conn) = project(&partner, Some(100));
    store.create_project(&p, &db, &conn, t(600)).await.unwrap();
    store.activate_project(&p.id, t(1)).await.unwrap();
    assert!(store.lease_project(&p.id, t(100), t(400)).await.unwrap());
    assert_eq!(
        store
            .transfer_project(&p.id, &partner, &user, t(50))
            .await
            .unwrap(),
        TransferOutcome::Expired
    );
}
conformance!(transfer_refused_while_the_reaper_holds_the_project => transfer_leased_sqlite, transfer_leased_postgres);

async fn databases_and_connections(store: Arc<dyn Store>) {
    let (partner, other, user) = accounts(&store).await;
    let _ = (&partner, &other, &user);
    let (p, db, conn) = project(&partner, None);
    store.create_project(&p, &db, &conn, t(600)).await.unwrap();
    store.activate_project(&p.id, t(1)).await.unwrap();
    // Claimed/own projects without expiry are not scheduled once active.
    assert!(store.due_projects(t(100_000), 10).await.unwrap().is_empty());

    let (_, mut db2, mut conn2) = project(&partner, None);
    db2.project_id = p.id.clone();
    db2.is_default = false;
    conn2.database_id = db2.id.clone();
    store.add_database(&db2, &conn2).await.unwrap();
    store
        .set_database_status(&db2.id, DatabaseStatus::Ready)
        .await
        .unwrap();
    assert_eq!(store.list_databases(&p.id).await.unwrap().len(), 2);

    let extra = DatabaseConnection {
        id: new_id(IdKind::Connection),
        database_id: db2.id.clone(),
        name: "ci".into(),
        role_name: "kw_c_x".into(),
        is_owner: false,
        created_at: t(3),
        rotated_at: None,
    };
    store.add_connection(&extra).await.unwrap();
    store.connection_rotated(&extra.id, t(4)).await.unwrap();
    assert_eq!(
        store
            .get_connection(&extra.id)
            .await
            .unwrap()
            .unwrap()
            .rotated_at,
        Some(t(4))
    );
    assert_eq!(store.list_connections(&db2.id).await.unwrap().len(), 2);
    store.delete_connection(&extra.id).await.unwrap();
    assert_eq!(store.list_connections(&db2.id).await.unwrap().len(), 1);

    let orphan = DatabaseConnection {
        database_id: "db_missing".into(),
        ..extra.clone()
    };
    assert_err!(
        store.add_connection(&orphan).await,
        keyward_core::StoreError::NotFound("database")
    );
    store.delete_database(&db2.id).await.unwrap();
    assert_eq!(store.list_databases(&p.id).await.unwrap().len(), 1);
    assert_err!(
        store
            .set_database_status(&db2.id, DatabaseStatus::Ready)
            .await,
        keyward_core::StoreError::NotFound("database")
    );

    assert!(store.mark_project_deleting(&p.id, t(50)).await.unwrap());
    assert_eq!(
        store.get_project(&p.id).await.unwrap().unwrap().status,
        ProjectStatus::Deleting
    );
    assert_eq!(
        store.due_projects(t(50), 10).await.unwrap(),
        vec![p.id.clone()]
    );
}
conformance!(databases_and_connections => databases_sqlite, databases_postgres);

async fn accounts_owning_projects_are_not_deleted(store: Arc<dyn Store>) {
    let (partner, _, user) = accounts(&store).await;
    let child = account("child", Some(&user));
    store.create_account(&child).await.unwrap();
    let (p, db, conn) = project(&child.id, None);
    store.create_project(&p, &db, &conn, t(600)).await.unwrap();
    assert_err!(
        store.delete_account(&child.id, false).await,
        keyward_core::StoreError::Conflict("account_has_projects")
    );
    // Nor through a cascade from above.
    assert_err!(
        store.delete_account(&user, true).await,
        keyward_core::StoreError::Conflict("account_has_projects")
    );
    assert!(store.get_account(&child.id).await.unwrap().is_some());
    // A project cannot go to, or be created in, an account that does not exist.
    let (orphan, odb, oconn) = project("acc_01jd8q7k5v4h3g2f1e0d9c8b7a", None);
    assert_err!(
        store.create_project(&orphan, &odb, &oconn, t(600)).await,
        keyward_core::StoreError::NotFound("account")
    );
    store.activate_project(&p.id, t(1)).await.unwrap();
    assert_err!(
        store
            .transfer_project(&p.id, &child.id, "acc_01jd8q7k5v4h3g2f1e0d9c8b7a", t(2))
            .await,
        keyward_core::StoreError::NotFound("account")
    );
    // Once the project is gone, the accounts go.
    store.delete_project(&p.id).await.unwrap();
    assert_eq!(store.delete_account(&user, true).await.unwrap(), 2);
    store.delete_account(&partner, false).await.unwrap();
}
conformance!(accounts_owning_projects_are_not_deleted => account_projects_sqlite, account_projects_postgres);

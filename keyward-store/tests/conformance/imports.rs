//! User import jobs: batches, conflicts per row, idempotent re-runs, upsert, dry run,
//! stale jobs, and the identity index.

use std::sync::Arc;

use keyward_core::import::{
    ImportBatch, ImportCandidate, ImportCounts, ImportJob, ImportJobStatus, ImportMode,
    ImportRowError,
};
use keyward_core::model::User;
use keyward_core::store::{PageRequest, Store, UserFilter};
use keyward_core::{StoreError, UserStatus};
use serde_json::json;

use crate::support::{t, user};

fn job(id: &str, mode: ImportMode, dry_run: bool) -> ImportJob {
    ImportJob {
        id: id.to_owned(),
        status: ImportJobStatus::Running,
        mode,
        dry_run,
        format: "keyward".into(),
        source: "legacy".into(),
        actor: Some("app_test".into()),
        rows_processed: 0,
        counts: ImportCounts::default(),
        message: None,
        heartbeat_at: t(0),
        created_at: t(0),
        updated_at: t(0),
        finished_at: None,
    }
}

fn imported(row: u64, external_id: &str, email: &str) -> ImportCandidate {
    ImportCandidate {
        row,
        user: User {
            external_id: Some(external_id.to_owned()),
            external_source: Some("legacy".into()),
            password_digest: Some(format!("$2b$04$digest-of-{external_id}")),
            password_algorithm: Some("bcrypt".into()),
            created_at: t(-1000),
            ..user(None, Some(email))
        },
        preserved_id: false,
    }
}

fn batch(candidates: Vec<ImportCandidate>, errors: Vec<ImportRowError>) -> ImportBatch {
    let last_row = candidates
        .iter()
        .map(|c| c.row)
        .chain(errors.iter().map(|e| e.row))
        .max()
        .unwrap_or(0);
    ImportBatch {
        candidates,
        errors,
        last_row,
        follows_row: None,
        expect_new: false,
    }
}

async fn by_external(store: &Arc<dyn Store>, external_id: &str) -> Vec<User> {
    store
        .list_users(
            &UserFilter {
                external_id: Some(external_id.to_owned()),
                ..Default::default()
            },
            &PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .await
        .unwrap()
}

async fn rows_are_created_conflicts_reported_and_reruns_idempotent(store: Arc<dyn Store>) {
    // Someone who signed up here already has this address.
    let local = user(Some("taken"), Some("taken@example.com"));
    store.create_user(&local).await.unwrap();

    let rows = || {
        let mut social = imported(4, "4", "dora@example.com");
        social.user.identities = json!({ "github": { "user_id": "gh-4", "details": {} } });
        let mut clash = imported(5, "5", "eve@example.com");
        clash.user.identities = json!({ "github": { "user_id": "gh-4" } });
        vec![
            imported(1, "1", "ada@example.com"),
            imported(2, "2", "TAKEN@example.com"),
            social,
            clash,
            imported(7, "7", "grace@example.com"),
        ]
    };
    let parse_error = ImportRowError {
        row: 6,
        code: "unknown_digest_format".into(),
        field: Some("password_digest".into()),
        message: "not a known digest".into(),
        external_id: Some("6".into()),
    };

    store
        .create_import_job(&job("imp_1", ImportMode::Create, false))
        .await
        .unwrap();
    let outcome = store
        .apply_import_batch("imp_1", &batch(rows(), vec![parse_error.clone()]), t(5))
        .await
        .unwrap();
    assert_eq!(
        outcome.counts,
        ImportCounts {
            created: 3,
            failed: 3,
            ..Default::default()
        }
    );
    let job1 = store.get_import_job("imp_1").await.unwrap().unwrap();
    assert_eq!(job1.rows_processed, 7);
    assert_eq!(job1.counts, outcome.counts);
    // Whole seconds: it is compared in SQL.
    assert_eq!(job1.heartbeat_at.unix_timestamp(), t(5).unix_timestamp());
    let errors = store.list_import_errors("imp_1", 0, 100).await.unwrap();
    let codes: Vec<(u64, &str)> = errors.iter().map(|e| (e.row, e.code.as_str())).collect();
    assert_eq!(
        codes,
        [
            (2, "email_taken"),
            (5, "identity_taken"),
            (6, "unknown_digest_format")
        ]
    );
    assert_eq!(errors[0].external_id.as_deref(), Some("2"));
    // Paging through errors.
    assert_eq!(
        store.list_import_errors("imp_1", 2, 1).await.unwrap()[0].row,
        5
    );

    // The identity index answers the social sign-in lookup; the refused row left nothing.
    let dora = store
        .find_user_by_identity("github", "gh-4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dora.external_id.as_deref(), Some("4"));
    assert!(by_external(&store, "5").await.is_empty());
    assert!(by_external(&store, "2").await.is_empty());
    let ada = by_external(&store, "1").await.remove(0);
    assert_eq!(ada.external_source.as_deref(), Some("legacy"));
    assert_eq!(ada.created_at, t(-1000), "created_at comes from the source");

    store
        .finish_import_job("imp_1", ImportJobStatus::CompletedWithErrors, None, t(6))
        .await
        .unwrap();
    assert_err!(
        store
            .apply_import_batch("imp_1", &batch(rows(), vec![]), t(7))
            .await,
        StoreError::Conflict("job_not_running")
    );

    // The same file again: nothing new, nothing duplicated.
    store
        .create_import_job(&job("imp_2", ImportMode::Create, false))
        .await
        .unwrap();
    let again = store
        .apply_import_batch("imp_2", &batch(rows(), vec![]), t(8))
        .await
        .unwrap();
    assert_eq!(
        again.counts,
        ImportCounts {
            skipped: 3,
            failed: 2,
            ..Default::default()
        }
    );
    assert_eq!(by_external(&store, "1").await.len(), 1);

    // The same external id from another source is another user.
    let mut other_source = imported(1, "1", "ada@elsewhere.example");
    other_source.user.external_source = Some("other".into());
    store
        .create_import_job(&job("imp_3", ImportMode::Create, false))
        .await
        .unwrap();
    let outcome = store
        .apply_import_batch("imp_3", &batch(vec![other_source], vec![]), t(9))
        .await
        .unwrap();
    assert_eq!(outcome.counts.created, 1);
    assert_eq!(by_external(&store, "1").await.len(), 2);
    assert_eq!(
        store
            .list_import_jobs(&PageRequest {
                cursor: None,
                limit: 10
            })
            .await
            .unwrap()
            .iter()
            .map(|j| j.id.as_str())
            .collect::<Vec<_>>(),
        ["imp_3", "imp_2", "imp_1"]
    );
}
conformance!(rows_are_created_conflicts_reported_and_reruns_idempotent => import_create_sqlite, import_create_postgres);

async fn upsert_changes_only_what_changed(store: Arc<dyn Store>) {
    store
        .create_import_job(&job("imp_a", ImportMode::Create, false))
        .await
        .unwrap();
    let mut first = imported(1, "1", "ada@example.com");
    first.user.name = Some("Ada".into());
    first.user.username = Some("ada".into());
    store
        .apply_import_batch(
            "imp_a",
            &batch(
                vec![first.clone(), imported(2, "2", "bob@example.com")],
                vec![],
            ),
            t(1),
        )
        .await
        .unwrap();
    let ada = by_external(&store, "1").await.remove(0);
    // Ada signs in here: her digest is upgraded.
    assert!(store
        .upgrade_user_password(
            &ada.id,
            ada.password_digest.as_deref().unwrap(),
            "$argon2id$upgraded",
            "argon2id",
            t(2)
        )
        .await
        .unwrap());

    // A newer export: Ada's name changed and she was suspended; her old digest is the
    // same; Bob changed his password at the source; the source has no usernames.
    let mut second = first.clone();
    second.user.name = Some("Ada Lovelace".into());
    second.user.username = None;
    second.user.status = UserStatus::Suspended;
    let mut bob = imported(2, "2", "bob@example.com");
    bob.user.password_digest = Some("$2b$04$bobs-new-digest".into());
    store
        .create_import_job(&job("imp_b", ImportMode::Upsert, false))
        .await
        .unwrap();
    let outcome = store
        .apply_import_batch(
            "imp_b",
            &batch(
                vec![second, bob, imported(3, "3", "cy@example.com")],
                vec![],
            ),
            t(3),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome.counts,
        ImportCounts {
            created: 1,
            updated: 2,
            ..Default::default()
        }
    );
    let ada2 = store.get_user(&ada.id).await.unwrap().unwrap();
    assert_eq!(ada2.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(ada2.status, UserStatus::Suspended);
    assert_eq!(
        ada2.username.as_deref(),
        Some("ada"),
        "absent fields are kept"
    );
    assert_eq!(
        ada2.password_digest.as_deref(),
        Some("$argon2id$upgraded"),
        "an unchanged source digest does not undo the upgrade"
    );
    let bob2 = by_external(&store, "2").await.remove(0);
    assert_eq!(
        bob2.password_digest.as_deref(),
        Some("$2b$04$bobs-new-digest")
    );

    // Once more, unchanged.
    store
        .create_import_job(&job("imp_c", ImportMode::Upsert, false))
        .await
        .unwrap();
    let mut second = first.clone();
    second.user.name = Some("Ada Lovelace".into());
    second.user.status = UserStatus::Suspended;
    let mut bob = imported(2, "2", "bob@example.com");
    bob.user.password_digest = Some("$2b$04$bobs-new-digest".into());
    let outcome = store
        .apply_import_batch("imp_c", &batch(vec![second, bob], vec![]), t(4))
        .await
        .unwrap();
    assert_eq!(
        outcome.counts,
        ImportCounts {
            unchanged: 2,
            ..Default::default()
        }
    );

    // An update that would take another user's email is that row's error.
    let mut steal = imported(2, "2", "CY@example.com");
    steal.user.password_digest = Some("$2b$04$bobs-new-digest".into());
    store
        .create_import_job(&job("imp_d", ImportMode::Upsert, false))
        .await
        .unwrap();
    let outcome = store
        .apply_import_batch("imp_d", &batch(vec![steal], vec![]), t(5))
        .await
        .unwrap();
    assert_eq!(outcome.counts.failed, 1);
    assert_eq!(outcome.errors[0].code, "email_taken");
    assert_eq!(
        by_external(&store, "2").await[0].primary_email.as_deref(),
        Some("bob@example.com")
    );
}
conformance!(upsert_changes_only_what_changed => import_upsert_sqlite, import_upsert_postgres);

async fn dry_run_writes_nothing_but_reports(store: Arc<dyn Store>) {
    let local = user(None, Some("taken@example.com"));
    store.create_user(&local).await.unwrap();
    store
        .create_import_job(&job("imp_dry", ImportMode::Create, true))
        .await
        .unwrap();
    let outcome = store
        .apply_import_batch(
            "imp_dry",
            &batch(
                vec![
                    imported(1, "1", "new@example.com"),
                    imported(2, "2", "taken@example.com"),
                ],
                vec![],
            ),
            t(1),
        )
        .await
        .unwrap();
    assert_eq!(outcome.counts.created, 1);
    assert_eq!(outcome.counts.failed, 1);
    assert!(
        by_external(&store, "1").await.is_empty(),
        "a dry run stores no user"
    );
    let job = store.get_import_job("imp_dry").await.unwrap().unwrap();
    assert_eq!(job.counts.created, 1);
    assert_eq!(
        store
            .list_import_errors("imp_dry", 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
conformance!(dry_run_writes_nothing_but_reports => import_dry_run_sqlite, import_dry_run_postgres);

async fn stale_jobs_fail_and_preserved_ids_match(store: Arc<dyn Store>) {
    store
        .create_import_job(&job("imp_old", ImportMode::Create, false))
        .await
        .unwrap();
    let mut fresh = job("imp_new", ImportMode::Upsert, false);
    fresh.heartbeat_at = t(100);
    store.create_import_job(&fresh).await.unwrap();
    assert_eq!(
        store.fail_stale_import_jobs(t(50), t(101)).await.unwrap(),
        1
    );
    let old = store.get_import_job("imp_old").await.unwrap().unwrap();
    assert_eq!(old.status, ImportJobStatus::Failed);
    assert!(old.message.unwrap().contains("interrupted"));
    assert_eq!(old.finished_at, Some(t(101)));
    assert_eq!(
        store
            .get_import_job("imp_new")
            .await
            .unwrap()
            .unwrap()
            .status,
        ImportJobStatus::Running
    );

    // A preserved id (the `sub` applications already store) is kept and matched by.
    let mut kept = imported(1, "x", "kept@example.com");
    kept.user.id = "a1b2c3d4e5f6".into();
    kept.user.external_id = None;
    kept.preserved_id = true;
    store
        .apply_import_batch("imp_new", &batch(vec![kept.clone()], vec![]), t(102))
        .await
        .unwrap();
    let mut renamed = kept.clone();
    renamed.user.primary_email = Some("renamed@example.com".into());
    let outcome = store
        .apply_import_batch("imp_new", &batch(vec![renamed], vec![]), t(103))
        .await
        .unwrap();
    assert_eq!(outcome.counts.updated, 1);
    let got = store.get_user("a1b2c3d4e5f6").await.unwrap().unwrap();
    assert_eq!(got.primary_email.as_deref(), Some("renamed@example.com"));
    let matched = store.match_import_candidates(&[kept]).await.unwrap();
    assert_eq!(matched[0].as_ref().unwrap().0.id, "a1b2c3d4e5f6");
}
conformance!(stale_jobs_fail_and_preserved_ids_match => import_stale_sqlite, import_stale_postgres);

async fn identities_are_indexed_through_create_and_update(store: Arc<dyn Store>) {
    let mut a = user(Some("a"), None);
    a.identities = json!({ "google": { "user_id": "g-1", "details": { "email": "a@x.y" } } });
    store.create_user(&a).await.unwrap();
    let mut b = user(Some("b"), None);
    b.identities = json!({ "google": { "user_id": "g-1" } });
    assert_err!(
        store.create_user(&b).await,
        StoreError::Conflict("identity_taken")
    );
    assert!(
        store.get_user(&b.id).await.unwrap().is_none(),
        "no half-written user"
    );
    a.identities = json!({ "github": { "user_id": "gh-1" } });
    store.update_user(&a).await.unwrap();
    assert!(store
        .find_user_by_identity("google", "g-1")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .find_user_by_identity("github", "gh-1")
            .await
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    let listed = store
        .list_users(
            &UserFilter {
                identity: Some(("github".into(), "gh-1".into())),
                ..Default::default()
            },
            &PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    store.delete_user(&a.id, true).await.unwrap();
    b.identities = json!({ "github": { "user_id": "gh-1" } });
    store.create_user(&b).await.unwrap();
}
conformance!(identities_are_indexed_through_create_and_update => identities_index_sqlite, identities_index_postgres);

async fn conflicts_are_named_alike_and_never_touch_the_other_user(store: Arc<dyn Store>) {
    let mut local = user(Some("ann"), Some("ann@example.com"));
    local.primary_phone = Some("+14155550100".into());
    local.id = "legacy-id-1".into();
    store.create_user(&local).await.unwrap();
    store
        .create_import_job(&job("imp_x", ImportMode::Create, false))
        .await
        .unwrap();
    // Breaks the username, email and phone rules at once: the same code on both stores.
    let mut clash = imported(1, "1", "ANN@example.com");
    clash.user.username = Some("Ann".into());
    clash.user.primary_phone = Some("+14155550100".into());
    // Takes an existing user's id (a preserved id from the source).
    let mut same_id = imported(2, "2", "other@example.com");
    same_id.user.id = "legacy-id-1".into();
    same_id.preserved_id = false;
    let outcome = store
        .apply_import_batch("imp_x", &batch(vec![clash, same_id], vec![]), t(1))
        .await
        .unwrap();
    let codes: Vec<&str> = outcome.errors.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["username_taken", "id_taken"]);
    // The user whose id was taken is untouched.
    assert_eq!(store.get_user("legacy-id-1").await.unwrap().unwrap(), local);
}
conformance!(conflicts_are_named_alike_and_never_touch_the_other_user => import_conflict_names_sqlite, import_conflict_names_postgres);

async fn batches_commit_only_after_the_one_they_follow(store: Arc<dyn Store>) {
    store
        .create_import_job(&job("imp_o", ImportMode::Create, false))
        .await
        .unwrap();
    let first = ImportBatch {
        follows_row: Some(0),
        ..batch(vec![imported(1, "o1", "o1@example.com")], vec![])
    };
    let mut second = ImportBatch {
        follows_row: Some(1),
        ..batch(vec![imported(2, "o2", "o2@example.com")], vec![])
    };
    second.errors.push(ImportRowError {
        row: 3,
        code: "invalid_field".into(),
        field: Some("email".into()),
        message: "not an email address".into(),
        external_id: Some("o3".into()),
    });
    second.last_row = 3;
    // The second batch before the first has committed: nothing of it is kept.
    assert_err!(
        store.apply_import_batch("imp_o", &second, t(1)).await,
        StoreError::Conflict("import_batch_out_of_order")
    );
    assert!(by_external(&store, "o2").await.is_empty());
    assert!(store
        .list_import_errors("imp_o", 0, 10)
        .await
        .unwrap()
        .is_empty());
    let untouched = store.get_import_job("imp_o").await.unwrap().unwrap();
    assert_eq!(
        (untouched.rows_processed, untouched.counts),
        (0, ImportCounts::default())
    );

    // In order, both commit.
    store
        .apply_import_batch("imp_o", &first, t(2))
        .await
        .unwrap();
    store
        .apply_import_batch("imp_o", &second, t(3))
        .await
        .unwrap();
    let done = store.get_import_job("imp_o").await.unwrap().unwrap();
    assert_eq!(done.rows_processed, 3);
    assert_eq!((done.counts.created, done.counts.failed), (2, 1));
    assert_eq!(by_external(&store, "o2").await.len(), 1);

    // A batch replayed after its place has passed is refused too.
    assert_err!(
        store.apply_import_batch("imp_o", &first, t(4)).await,
        StoreError::Conflict("import_batch_out_of_order")
    );
    // And a stopped job still answers as such.
    store
        .finish_import_job("imp_o", ImportJobStatus::Failed, None, t(5))
        .await
        .unwrap();
    let third = ImportBatch {
        follows_row: Some(3),
        ..batch(vec![imported(4, "o4", "o4@example.com")], vec![])
    };
    assert_err!(
        store.apply_import_batch("imp_o", &third, t(6)).await,
        StoreError::Conflict("job_not_running")
    );
    assert!(by_external(&store, "o4").await.is_empty());
}
conformance!(batches_commit_only_after_the_one_they_follow => import_batch_order_sqlite, import_batch_order_postgres);

/// Runs `statement` on the store's database directly and returns its error, if any.
async fn raw_statement(backend: &str, url: &str, statement: &str) -> Result<u64, sqlx::Error> {
    if backend == "sqlite" {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let done = sqlx::query(statement).execute(&pool).await;
        pool.close().await;
        done.map(|d| d.rows_affected())
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        let done = sqlx::query(statement).execute(&pool).await;
        pool.close().await;
        done.map(|d| d.rows_affected())
    }
}

/// The identity index only names existing users and loses a user's rows with the user
/// (a foreign key on SQLite; statement-level triggers on PostgreSQL, which replaced its
/// row-by-row foreign key for import speed).
async fn identity_rows_follow_their_users(store: Arc<dyn Store>, url: String) {
    let backend = store.backend();
    let mut a = user(Some("a"), None);
    a.identities = json!({ "github": { "user_id": "gh-a" }, "google": { "user_id": "g-a" } });
    store.create_user(&a).await.unwrap();
    let mut b = user(Some("b"), None);
    b.identities = json!({ "github": { "user_id": "gh-b" } });
    store.create_user(&b).await.unwrap();

    let orphan = raw_statement(
        backend,
        &url,
        "INSERT INTO user_identities (provider, provider_user_id, user_id) \
         VALUES ('github', 'gh-x', 'usr_nobody')",
    )
    .await;
    assert!(
        orphan.is_err(),
        "{backend}: an identity of no user was stored"
    );
    let moved = raw_statement(
        backend,
        &url,
        "UPDATE user_identities SET user_id = 'usr_nobody' WHERE provider_user_id = 'gh-b'",
    )
    .await;
    assert!(
        moved.is_err(),
        "{backend}: an identity was moved to no user"
    );
    // A valid write passes the check.
    let swapped = raw_statement(
        backend,
        &url,
        &format!(
            "UPDATE user_identities SET user_id = '{}' WHERE provider_user_id = 'gh-b'",
            b.id
        ),
    )
    .await
    .unwrap();
    assert_eq!(swapped, 1);

    // Deleted by a statement of its own, so that the schema's rule is what removes the
    // identities, not the store's code.
    let deleted = raw_statement(
        backend,
        &url,
        &format!("DELETE FROM users WHERE id = '{}'", a.id),
    )
    .await
    .unwrap();
    assert_eq!(deleted, 1);
    let left = raw_statement(
        backend,
        &url,
        &format!("DELETE FROM user_identities WHERE user_id = '{}'", a.id),
    )
    .await
    .unwrap();
    assert_eq!(left, 0, "{backend}: the deleted user's identities stayed");
    assert!(store
        .find_user_by_identity("github", "gh-a")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .find_user_by_identity("github", "gh-b")
            .await
            .unwrap()
            .unwrap()
            .id,
        b.id
    );
}
conformance!(with_url identity_rows_follow_their_users
    => identity_rows_sqlite, identity_rows_postgres);

/// `expect_new` only changes how the store writes a batch: with rows that match stored
/// users or clash with them, the outcome is what the lookup path gives.
async fn expect_new_is_only_a_hint(store: Arc<dyn Store>) {
    let local = user(Some("taken"), Some("taken@example.com"));
    store.create_user(&local).await.unwrap();
    let hinted = |candidates| ImportBatch {
        expect_new: true,
        ..batch(candidates, vec![])
    };
    store
        .create_import_job(&job("imp_h1", ImportMode::Create, false))
        .await
        .unwrap();
    // All new: inserted without a lookup.
    let first = store
        .apply_import_batch(
            "imp_h1",
            &hinted(vec![
                imported(1, "1", "ada@example.com"),
                imported(2, "2", "bob@example.com"),
            ]),
            t(1),
        )
        .await
        .unwrap();
    assert_eq!(first.counts.created, 2);
    // A re-run row, a clash with a local user and a new row.
    let second = store
        .apply_import_batch(
            "imp_h1",
            &hinted(vec![
                imported(3, "1", "ada@example.com"),
                imported(4, "4", "TAKEN@example.com"),
                imported(5, "5", "cy@example.com"),
            ]),
            t(2),
        )
        .await
        .unwrap();
    assert_eq!(
        second.counts,
        ImportCounts {
            created: 1,
            skipped: 1,
            failed: 1,
            ..Default::default()
        }
    );
    assert_eq!(second.errors.len(), 1);
    assert_eq!(
        (second.errors[0].row, second.errors[0].code.as_str()),
        (4, "email_taken")
    );
    assert_eq!(by_external(&store, "1").await.len(), 1);
    assert_eq!(by_external(&store, "5").await.len(), 1);
    assert!(by_external(&store, "4").await.is_empty());

    // Upsert with the hint: a changed row is updated, an identical one left alone.
    store
        .create_import_job(&job("imp_h2", ImportMode::Upsert, false))
        .await
        .unwrap();
    let mut renamed = imported(1, "1", "ada@example.com");
    renamed.user.name = Some("Ada L.".into());
    let third = store
        .apply_import_batch(
            "imp_h2",
            &hinted(vec![renamed, imported(2, "2", "bob@example.com")]),
            t(3),
        )
        .await
        .unwrap();
    assert_eq!(
        third.counts,
        ImportCounts {
            updated: 1,
            unchanged: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        by_external(&store, "1").await[0].name.as_deref(),
        Some("Ada L.")
    );
}
conformance!(expect_new_is_only_a_hint => import_hint_sqlite, import_hint_postgres);

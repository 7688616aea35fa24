//! External applications (`ExternalAppStore`): applications per account with
//! case-insensitively unique names, one connection per (application, user) replaced whole
//! by a save, the refresh lease taken by exactly one caller, compare-and-swap re-sealing,
//! single-use authorizations, per-member permissions, and the cascades.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyward_core::external::{
    BodyFormat, ConnectionState, ExternalApplication, ExternalAuthorization, ExternalConnection,
    ExternalProtocol, RequestTemplate, ResponseMapping, TokenAuthMethod,
    MANAGE_EXTERNAL_APPLICATIONS,
};
use keyward_core::id::{new_id, IdKind};
use keyward_core::model::{Account, User};
use keyward_core::store::Store;
use keyward_core::{Role, StoreError};

use crate::support::{account, digest, ids, membership, page, sorted, t, user};

const NAME_TAKEN: &str = "external_application_name_taken";

fn direct() -> ExternalProtocol {
    ExternalProtocol::Direct {
        token_url: "https://github.com/login/oauth/access_token".to_owned(),
        revocation_url: Some("https://github.com/revoke".to_owned()),
        token_auth_method: TokenAuthMethod::ClientSecretPost,
    }
}

fn private() -> ExternalProtocol {
    let template = |url: &str, grant: &str| RequestTemplate {
        method: "POST".to_owned(),
        url: url.to_owned(),
        headers: BTreeMap::from([("X-Client".to_owned(), "{{client_id}}".to_owned())]),
        body_format: BodyFormat::Json,
        body: BTreeMap::from([
            ("client_id".to_owned(), "{{client_id}}".to_owned()),
            ("client_secret".to_owned(), "{{client_secret}}".to_owned()),
            ("grant".to_owned(), grant.to_owned()),
        ]),
    };
    ExternalProtocol::Private {
        token_request: template("https://legacy.example/token", "{{authorization_code}}"),
        refresh_request: Some(template(
            "https://legacy.example/refresh_token",
            "{{refresh_token}}",
        )),
        response_mapping: ResponseMapping {
            access_token: "data.token".to_owned(),
            expires_in: "data.ttl".to_owned(),
            ..ResponseMapping::default()
        },
    }
}

fn app(account_id: &str, name: &str) -> ExternalApplication {
    let id = new_id(IdKind::ExternalApplication);
    ExternalApplication {
        account_id: account_id.to_owned(),
        name: name.to_owned(),
        description: Some(format!("{name}, for the team")),
        approval_prompt: format!("Allow Keyward to reach {name} on your behalf?"),
        client_id: format!("client-{id}"),
        client_secret_sealed: vec![0, 1, 255, 7, 42],
        client_secret_key_id: "k1".to_owned(),
        scopes: vec!["repo".to_owned(), "read:user".to_owned()],
        default_expires_in_secs: Some(3600),
        use_pkce: true,
        issuer: Some("https://github.com".to_owned()),
        authorization_url: "https://github.com/login/oauth/authorize".to_owned(),
        egress_hosts: vec!["github.com".to_owned(), "api.github.com".to_owned()],
        protocol: direct(),
        enabled: true,
        created_at: t(0),
        updated_at: t(1),
        id,
    }
}

fn connection(application_id: &str, user_id: &str, at: i64) -> ExternalConnection {
    ExternalConnection {
        id: new_id(IdKind::Connection),
        external_application_id: application_id.to_owned(),
        user_id: user_id.to_owned(),
        state: ConnectionState::Active,
        tokens_sealed: digest(),
        key_id: "k1".to_owned(),
        scope: Some("repo read:user".to_owned()),
        expires_at: Some(t(at + 3600)),
        created_at: t(at),
        updated_at: t(at),
        last_refreshed_at: None,
    }
}

fn authorization(
    application_id: &str,
    user_id: &str,
    expires: i64,
    pkce: bool,
) -> ExternalAuthorization {
    ExternalAuthorization {
        state_digest: digest(),
        external_application_id: application_id.to_owned(),
        user_id: user_id.to_owned(),
        session_id: new_id(IdKind::Session),
        code_verifier_sealed: pkce.then(|| vec![9, 0, 255, 3]),
        return_to: pkce.then(|| "/account/connections?x=1".to_owned()),
        created_at: t(0),
        expires_at: t(expires),
    }
}

async fn new_account(store: &Arc<dyn Store>) -> String {
    let a = account("Team", None);
    store.create_account(&a).await.unwrap();
    a.id
}

async fn new_user(store: &Arc<dyn Store>) -> String {
    let u = user(None, None);
    store.create_user(&u).await.unwrap();
    u.id
}

/// An account with one application (saved) and `users` users.
async fn setup(store: &Arc<dyn Store>, users: usize) -> (String, ExternalApplication, Vec<String>) {
    let acc = new_account(store).await;
    let a = app(&acc, "GitHub");
    store.create_external_application(&a).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..users {
        ids.push(new_user(store).await);
    }
    (acc, a, ids)
}

async fn application_round_trip(store: Arc<dyn Store>) {
    let acc = new_account(&store).await;
    let other = new_account(&store).await;
    let gh = app(&acc, "GitHub");
    let mut legacy = app(&acc, "Legacy CRM");
    legacy.protocol = private();
    legacy.description = None;
    legacy.issuer = None;
    legacy.default_expires_in_secs = None;
    legacy.use_pkce = false;
    legacy.scopes = vec![];
    legacy.enabled = false;
    let elsewhere = app(&other, "Elsewhere");
    for a in [&gh, &legacy, &elsewhere] {
        store.create_external_application(a).await.unwrap();
    }

    // Both protocol modes and every optional field come back as stored.
    assert_eq!(
        store.get_external_application(&gh.id).await.unwrap(),
        Some(gh.clone())
    );
    assert_eq!(
        store.get_external_application(&legacy.id).await.unwrap(),
        Some(legacy.clone())
    );
    assert_eq!(
        store.get_external_application("xap_missing").await.unwrap(),
        None
    );

    // Listed per account, by id, with one extra row to signal more.
    let expected = sorted(vec![gh.id.clone(), legacy.id.clone()]);
    let all = store
        .list_external_applications(&acc, &page(None, 10))
        .await
        .unwrap();
    assert_eq!(ids(&all, |a| &a.id), expected);
    let first = store
        .list_external_applications(&acc, &page(None, 1))
        .await
        .unwrap();
    assert_eq!(ids(&first, |a| &a.id), expected);
    let rest = store
        .list_external_applications(&acc, &page(Some(&expected[0]), 1))
        .await
        .unwrap();
    assert_eq!(ids(&rest, |a| &a.id), vec![expected[1].clone()]);
    let theirs = store
        .list_external_applications(&other, &page(None, 10))
        .await
        .unwrap();
    assert_eq!(theirs, vec![elsewhere]);

    // An update replaces every configurable field, switching modes too, but keeps the
    // account, `enabled` and `created_at`.
    let updated = ExternalApplication {
        id: gh.id.clone(),
        account_id: other.clone(),
        name: "GitHub Enterprise".to_owned(),
        description: None,
        approval_prompt: "Connect?".to_owned(),
        client_id: "new-client".to_owned(),
        client_secret_sealed: vec![5, 5, 5],
        client_secret_key_id: "k2".to_owned(),
        scopes: vec!["session".to_owned()],
        default_expires_in_secs: None,
        use_pkce: false,
        issuer: None,
        authorization_url: "https://ghe.example/authorize".to_owned(),
        egress_hosts: vec!["ghe.example".to_owned()],
        protocol: private(),
        enabled: false,
        created_at: t(500),
        updated_at: t(600),
    };
    store.update_external_application(&updated).await.unwrap();
    assert_eq!(
        store.get_external_application(&gh.id).await.unwrap(),
        Some(ExternalApplication {
            account_id: acc.clone(),
            enabled: true,
            created_at: gh.created_at,
            ..updated.clone()
        })
    );
    // And back to direct mode.
    let back = ExternalApplication {
        protocol: direct(),
        updated_at: t(700),
        ..updated.clone()
    };
    store.update_external_application(&back).await.unwrap();
    let got = store
        .get_external_application(&gh.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.protocol, direct());
    assert_eq!(got.updated_at, t(700));

    let mut missing = app(&acc, "Nobody");
    assert_err!(
        store.update_external_application(&missing).await,
        StoreError::NotFound("external_application")
    );
    missing.account_id = "acc_missing".to_owned();
    assert_err!(
        store.create_external_application(&missing).await,
        StoreError::NotFound("account")
    );
}
conformance!(application_round_trip
    => application_round_trip_sqlite, application_round_trip_postgres);

async fn application_names_are_unique_per_account(store: Arc<dyn Store>) {
    let acc = new_account(&store).await;
    let other = new_account(&store).await;
    let gh = app(&acc, "GitHub");
    store.create_external_application(&gh).await.unwrap();
    // Case-insensitively, within the account.
    for name in ["GitHub", "github", "GITHUB"] {
        assert_err!(
            store.create_external_application(&app(&acc, name)).await,
            StoreError::Conflict(NAME_TAKEN)
        );
    }
    // Another account may use it.
    store
        .create_external_application(&app(&other, "github"))
        .await
        .unwrap();
    // Renaming onto a taken name conflicts; changing the case of one's own name does not.
    let gl = app(&acc, "GitLab");
    store.create_external_application(&gl).await.unwrap();
    assert_err!(
        store
            .update_external_application(&ExternalApplication {
                name: "GITHUB".to_owned(),
                ..gl.clone()
            })
            .await,
        StoreError::Conflict(NAME_TAKEN)
    );
    store
        .update_external_application(&ExternalApplication {
            name: "GITLAB".to_owned(),
            ..gl.clone()
        })
        .await
        .unwrap();
    // Beyond ASCII too, the same on both databases.
    store
        .create_external_application(&app(&acc, "Ünïcode Straße"))
        .await
        .unwrap();
    assert_err!(
        store
            .create_external_application(&app(&acc, "üNÏCODE STRAßE"))
            .await,
        StoreError::Conflict(NAME_TAKEN)
    );
    // The freed name is available again after a delete.
    store.delete_external_application(&gh.id).await.unwrap();
    store
        .create_external_application(&app(&acc, "github"))
        .await
        .unwrap();
}
conformance!(application_names_are_unique_per_account
    => application_names_unique_sqlite, application_names_unique_postgres);

async fn applications_are_enabled_and_disabled(store: Arc<dyn Store>) {
    let (_, a, _) = setup(&store, 0).await;
    store
        .set_external_application_enabled(&a.id, false, t(50))
        .await
        .unwrap();
    let got = store
        .get_external_application(&a.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!got.enabled);
    assert_eq!(got.updated_at, t(50));
    assert_eq!(
        got,
        ExternalApplication {
            enabled: false,
            updated_at: t(50),
            ..a.clone()
        }
    );
    store
        .set_external_application_enabled(&a.id, true, t(60))
        .await
        .unwrap();
    let got = store
        .get_external_application(&a.id)
        .await
        .unwrap()
        .unwrap();
    assert!(got.enabled);
    assert_eq!(got.updated_at, t(60));
    assert_err!(
        store
            .set_external_application_enabled("xap_missing", true, t(70))
            .await,
        StoreError::NotFound("external_application")
    );
}
conformance!(applications_are_enabled_and_disabled
    => applications_enabled_sqlite, applications_enabled_postgres);

async fn saving_a_connection_replaces_the_pairs_row(store: Arc<dyn Store>) {
    let (_, a, users) = setup(&store, 2).await;
    let first = connection(&a.id, &users[0], 0);
    store.save_external_connection(&first).await.unwrap();
    assert_eq!(
        store.get_external_connection(&first.id).await.unwrap(),
        Some(first.clone())
    );
    // A lease is live on the first row when it is replaced.
    assert!(store
        .lease_connection_refresh(&first.id, "node-a", t(10), t(40))
        .await
        .unwrap());

    let second = ExternalConnection {
        id: new_id(IdKind::Connection),
        state: ConnectionState::NeedsReauthorization,
        tokens_sealed: digest(),
        key_id: "k2".to_owned(),
        scope: None,
        expires_at: None,
        created_at: t(20),
        updated_at: t(21),
        last_refreshed_at: Some(t(22)),
        ..first.clone()
    };
    store.save_external_connection(&second).await.unwrap();
    // Whole: the old id is gone, every field is the new one's.
    assert_eq!(
        store.get_external_connection(&first.id).await.unwrap(),
        None
    );
    assert_eq!(
        store.get_external_connection(&second.id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        store
            .find_external_connection(&a.id, &users[0])
            .await
            .unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        store
            .list_user_external_connections(&users[0])
            .await
            .unwrap(),
        vec![second.clone()]
    );
    // The lease went with the old row: another node takes one at once.
    assert!(store
        .lease_connection_refresh(&second.id, "node-b", t(23), t(53))
        .await
        .unwrap());
    // The other user's connection is a separate row.
    let theirs = connection(&a.id, &users[1], 0);
    store.save_external_connection(&theirs).await.unwrap();
    assert_eq!(
        store
            .find_external_connection(&a.id, &users[1])
            .await
            .unwrap(),
        Some(theirs)
    );
    assert_eq!(
        store
            .find_external_connection(&a.id, "usr_missing")
            .await
            .unwrap(),
        None
    );

    assert_err!(
        store
            .save_external_connection(&connection("xap_missing", &users[0], 0))
            .await,
        StoreError::NotFound("external_application")
    );
    assert_err!(
        store
            .save_external_connection(&connection(&a.id, "usr_missing", 0))
            .await,
        StoreError::NotFound("user")
    );
}
conformance!(saving_a_connection_replaces_the_pairs_row
    => save_connection_replaces_sqlite, save_connection_replaces_postgres);

async fn connections_are_listed_and_deleted(store: Arc<dyn Store>) {
    let (acc, a, users) = setup(&store, 3).await;
    let b = app(&acc, "GitLab");
    store.create_external_application(&b).await.unwrap();
    let mut of_a = Vec::new();
    let mut of_user0 = Vec::new();
    for (n, u) in users.iter().enumerate() {
        let ca = connection(&a.id, u, n as i64);
        store.save_external_connection(&ca).await.unwrap();
        of_a.push(ca.id.clone());
        if n == 0 {
            of_user0.push(ca.id.clone());
            let cb = connection(&b.id, u, 100);
            store.save_external_connection(&cb).await.unwrap();
            of_user0.push(cb.id.clone());
        }
    }
    let of_a = sorted(of_a);
    let of_user0 = sorted(of_user0);

    let listed = store
        .list_user_external_connections(&users[0])
        .await
        .unwrap();
    assert_eq!(ids(&listed, |c| &c.id), of_user0);
    assert!(store
        .list_user_external_connections("usr_missing")
        .await
        .unwrap()
        .is_empty());
    let all = store
        .list_application_external_connections(&a.id, &page(None, 10))
        .await
        .unwrap();
    assert_eq!(ids(&all, |c| &c.id), of_a);
    assert!(all.iter().all(|c| c.external_application_id == a.id));
    let first = store
        .list_application_external_connections(&a.id, &page(None, 1))
        .await
        .unwrap();
    assert_eq!(ids(&first, |c| &c.id), of_a[..2].to_vec());
    let after = store
        .list_application_external_connections(&a.id, &page(Some(&of_a[1]), 5))
        .await
        .unwrap();
    assert_eq!(ids(&after, |c| &c.id), of_a[2..].to_vec());

    // Deleting returns the connection once.
    let victim = store.get_external_connection(&of_a[0]).await.unwrap();
    assert!(victim.is_some());
    assert_eq!(
        store.delete_external_connection(&of_a[0]).await.unwrap(),
        victim
    );
    assert_eq!(
        store.delete_external_connection(&of_a[0]).await.unwrap(),
        None
    );
    assert_eq!(store.get_external_connection(&of_a[0]).await.unwrap(), None);
    let left = store
        .list_application_external_connections(&a.id, &page(None, 10))
        .await
        .unwrap();
    assert_eq!(ids(&left, |c| &c.id), of_a[1..].to_vec());
}
conformance!(connections_are_listed_and_deleted
    => connections_listed_sqlite, connections_listed_postgres);

async fn reset_deletes_only_that_applications_connections(store: Arc<dyn Store>) {
    let (acc, a, users) = setup(&store, 2).await;
    let b = app(&acc, "GitLab");
    store.create_external_application(&b).await.unwrap();
    let mut expected = Vec::new();
    for u in &users {
        let c = connection(&a.id, u, 0);
        store.save_external_connection(&c).await.unwrap();
        expected.push(c);
    }
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    let kept = connection(&b.id, &users[0], 0);
    store.save_external_connection(&kept).await.unwrap();
    let pending_a = authorization(&a.id, &users[0], 600, true);
    let pending_b = authorization(&b.id, &users[0], 600, true);
    store
        .create_external_authorization(&pending_a)
        .await
        .unwrap();
    store
        .create_external_authorization(&pending_b)
        .await
        .unwrap();

    assert_eq!(
        store.reset_external_application(&a.id).await.unwrap(),
        expected
    );
    // The configuration stays; its connections and authorizations went.
    assert_eq!(
        store.get_external_application(&a.id).await.unwrap(),
        Some(a.clone())
    );
    assert!(store
        .list_application_external_connections(&a.id, &page(None, 10))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .take_external_authorization(&pending_a.state_digest, t(1))
            .await
            .unwrap(),
        None
    );
    // The other application's are untouched.
    assert_eq!(
        store.get_external_connection(&kept.id).await.unwrap(),
        Some(kept)
    );
    assert_eq!(
        store
            .take_external_authorization(&pending_b.state_digest, t(1))
            .await
            .unwrap(),
        Some(pending_b)
    );
    // Nothing left to reset.
    assert!(store
        .reset_external_application(&a.id)
        .await
        .unwrap()
        .is_empty());
    assert_err!(
        store.reset_external_application("xap_missing").await,
        StoreError::NotFound("external_application")
    );
}
conformance!(reset_deletes_only_that_applications_connections
    => reset_application_sqlite, reset_application_postgres);

async fn deleting_an_application_takes_everything(store: Arc<dyn Store>) {
    let (acc, a, users) = setup(&store, 2).await;
    let b = app(&acc, "GitLab");
    store.create_external_application(&b).await.unwrap();
    let mut expected = Vec::new();
    for u in &users {
        let c = connection(&a.id, u, 0);
        store.save_external_connection(&c).await.unwrap();
        expected.push(c);
    }
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    let kept = connection(&b.id, &users[0], 0);
    store.save_external_connection(&kept).await.unwrap();
    let pending = authorization(&a.id, &users[1], 600, false);
    store.create_external_authorization(&pending).await.unwrap();

    assert_eq!(
        store.delete_external_application(&a.id).await.unwrap(),
        expected
    );
    assert_eq!(store.get_external_application(&a.id).await.unwrap(), None);
    for c in &expected {
        assert_eq!(store.get_external_connection(&c.id).await.unwrap(), None);
    }
    assert_eq!(
        store
            .take_external_authorization(&pending.state_digest, t(1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_external_connection(&kept.id).await.unwrap(),
        Some(kept)
    );
    assert_err!(
        store.delete_external_application(&a.id).await,
        StoreError::NotFound("external_application")
    );
    // Nothing can be attached to it any more.
    assert_err!(
        store
            .save_external_connection(&connection(&a.id, &users[0], 0))
            .await,
        StoreError::NotFound("external_application")
    );
    assert_err!(
        store
            .create_external_authorization(&authorization(&a.id, &users[0], 600, false))
            .await,
        StoreError::NotFound("external_application")
    );
}
conformance!(deleting_an_application_takes_everything
    => delete_application_sqlite, delete_application_postgres);

async fn deleting_a_user_or_account_cascades(store: Arc<dyn Store>) {
    let (acc, a, users) = setup(&store, 2).await;
    let gone = connection(&a.id, &users[0], 0);
    let stays = connection(&a.id, &users[1], 0);
    store.save_external_connection(&gone).await.unwrap();
    store.save_external_connection(&stays).await.unwrap();
    let gone_pending = authorization(&a.id, &users[0], 600, true);
    let stays_pending = authorization(&a.id, &users[1], 600, true);
    store
        .create_external_authorization(&gone_pending)
        .await
        .unwrap();
    store
        .create_external_authorization(&stays_pending)
        .await
        .unwrap();

    store.delete_user(&users[0], true).await.unwrap();
    assert_eq!(store.get_external_connection(&gone.id).await.unwrap(), None);
    assert_eq!(
        store
            .take_external_authorization(&gone_pending.state_digest, t(1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_external_connection(&stays.id).await.unwrap(),
        Some(stays.clone())
    );

    store.delete_account(&acc, false).await.unwrap();
    assert_eq!(store.get_external_application(&a.id).await.unwrap(), None);
    assert_eq!(
        store.get_external_connection(&stays.id).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .take_external_authorization(&stays_pending.state_digest, t(1))
            .await
            .unwrap(),
        None
    );
    // The user is still there, with no connections.
    assert!(store.get_user(&users[1]).await.unwrap().is_some());
    assert!(store
        .list_user_external_connections(&users[1])
        .await
        .unwrap()
        .is_empty());
}
conformance!(deleting_a_user_or_account_cascades
    => cascades_sqlite, cascades_postgres);

async fn the_refresh_lease_is_taken_once(store: Arc<dyn Store>) {
    let (_, a, users) = setup(&store, 1).await;
    let c = connection(&a.id, &users[0], 0);
    store.save_external_connection(&c).await.unwrap();

    // Twenty nodes race for the lease: exactly one gets it.
    let mut tasks = Vec::new();
    for n in 0..20 {
        let store = store.clone();
        let id = c.id.clone();
        tasks.push(tokio::spawn(async move {
            let holder = format!("node-{n}");
            let won = store
                .lease_connection_refresh(&id, &holder, t(100), t(130))
                .await
                .unwrap();
            (holder, won)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (holder, won) = task.await.unwrap();
        if won {
            winners.push(holder);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let first = winners.remove(0);

    // Still live just before it runs out, even for the holder.
    assert!(!store
        .lease_connection_refresh(&c.id, "late", t(129), t(160))
        .await
        .unwrap());
    assert!(!store
        .lease_connection_refresh(&c.id, &first, t(129), t(160))
        .await
        .unwrap());
    // Expired (at its end): another holder takes over.
    assert!(store
        .lease_connection_refresh(&c.id, "node-late", t(130), t(160))
        .await
        .unwrap());

    // The first holder lost it: its completion writes nothing.
    assert!(!store
        .complete_connection_refresh(&c.id, &first, &[1, 2, 3], "k9", Some("x"), None, t(140))
        .await
        .unwrap());
    assert!(!store
        .release_connection_refresh(&c.id, &first, true, t(140))
        .await
        .unwrap());
    assert_eq!(
        store.get_external_connection(&c.id).await.unwrap(),
        Some(c.clone())
    );

    // The holder's completion writes the tokens and frees the lease.
    assert!(store
        .complete_connection_refresh(
            &c.id,
            "node-late",
            &[7, 0, 255],
            "k2",
            Some("repo"),
            Some(t(3745)),
            t(145)
        )
        .await
        .unwrap());
    assert_eq!(
        store.get_external_connection(&c.id).await.unwrap(),
        Some(ExternalConnection {
            tokens_sealed: vec![7, 0, 255],
            key_id: "k2".to_owned(),
            scope: Some("repo".to_owned()),
            expires_at: Some(t(3745)),
            updated_at: t(145),
            last_refreshed_at: Some(t(145)),
            ..c.clone()
        })
    );
    // Completed once: the same holder cannot complete again.
    assert!(!store
        .complete_connection_refresh(&c.id, "node-late", &[1], "k3", None, None, t(146))
        .await
        .unwrap());
    // Free again long before the old lease's end.
    assert!(store
        .lease_connection_refresh(&c.id, "node-next", t(146), t(176))
        .await
        .unwrap());
    // A connection that does not exist cannot be leased.
    assert!(!store
        .lease_connection_refresh("con_missing", "node-a", t(100), t(130))
        .await
        .unwrap());
}
conformance!(the_refresh_lease_is_taken_once
    => refresh_lease_sqlite, refresh_lease_postgres);

async fn a_failed_refresh_releases_the_lease(store: Arc<dyn Store>) {
    let (_, a, users) = setup(&store, 1).await;
    let c = connection(&a.id, &users[0], 0);
    store.save_external_connection(&c).await.unwrap();

    // A transient failure: released, state kept, nothing else written.
    assert!(store
        .lease_connection_refresh(&c.id, "node-a", t(100), t(130))
        .await
        .unwrap());
    assert!(!store
        .release_connection_refresh(&c.id, "node-b", false, t(101))
        .await
        .unwrap());
    assert!(store
        .release_connection_refresh(&c.id, "node-a", false, t(101))
        .await
        .unwrap());
    assert_eq!(
        store.get_external_connection(&c.id).await.unwrap(),
        Some(c.clone())
    );
    // Released twice is not held.
    assert!(!store
        .release_connection_refresh(&c.id, "node-a", false, t(102))
        .await
        .unwrap());

    // The server refused the refresh token: the user must authorize again.
    assert!(store
        .lease_connection_refresh(&c.id, "node-b", t(103), t(133))
        .await
        .unwrap());
    assert!(store
        .release_connection_refresh(&c.id, "node-b", true, t(104))
        .await
        .unwrap());
    let got = store.get_external_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(got.state, ConnectionState::NeedsReauthorization);
    assert_eq!(got.updated_at, t(104));
    assert_eq!(got.tokens_sealed, c.tokens_sealed);
    // The lease is free at once; a completed refresh makes it active again.
    assert!(store
        .lease_connection_refresh(&c.id, "node-c", t(105), t(135))
        .await
        .unwrap());
    assert!(store
        .complete_connection_refresh(&c.id, "node-c", &[1], "k1", None, None, t(106))
        .await
        .unwrap());
    let got = store.get_external_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(got.state, ConnectionState::Active);
    assert_eq!(got.scope, None);
    assert_eq!(got.expires_at, None);
}
conformance!(a_failed_refresh_releases_the_lease
    => failed_refresh_sqlite, failed_refresh_postgres);

async fn resealing_lists_stale_rows_and_compares_and_swaps(store: Arc<dyn Store>) {
    let (acc, a, users) = setup(&store, 3).await;
    let mut b = app(&acc, "GitLab");
    b.client_secret_key_id = "k2".to_owned();
    store.create_external_application(&b).await.unwrap();
    let c = app(&acc, "Bitbucket");
    store.create_external_application(&c).await.unwrap();
    let mut stale = Vec::new();
    for (n, u) in users.iter().enumerate() {
        let mut conn = connection(&a.id, u, 0);
        if n == 1 {
            conn.key_id = "k2".to_owned();
        } else {
            stale.push(conn.id.clone());
        }
        store.save_external_connection(&conn).await.unwrap();
    }
    let stale = sorted(stale);

    // Connections under another key than k2, by id, at most `limit`.
    let found = store
        .external_connections_sealed_with_other_keys("k2", 10)
        .await
        .unwrap();
    assert_eq!(ids(&found, |c| &c.id), stale);
    let one = store
        .external_connections_sealed_with_other_keys("k2", 1)
        .await
        .unwrap();
    assert_eq!(ids(&one, |c| &c.id), stale[..1].to_vec());

    // Compare-and-swap on the sealed bytes: a refresh in between wins.
    let target = &found[0];
    assert!(!store
        .reseal_external_connection(&target.id, &[0xde, 0xad], &[1, 1], "k2")
        .await
        .unwrap());
    assert!(store
        .reseal_external_connection(&target.id, &target.tokens_sealed, &[1, 1], "k2")
        .await
        .unwrap());
    let got = store
        .get_external_connection(&target.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.tokens_sealed, vec![1, 1]);
    assert_eq!(got.key_id, "k2");
    // The old bytes no longer match.
    assert!(!store
        .reseal_external_connection(&target.id, &target.tokens_sealed, &[2, 2], "k3")
        .await
        .unwrap());
    assert!(!store
        .reseal_external_connection("con_missing", &[1, 1], &[2, 2], "k3")
        .await
        .unwrap());
    let found = store
        .external_connections_sealed_with_other_keys("k2", 10)
        .await
        .unwrap();
    assert_eq!(ids(&found, |c| &c.id), stale[1..].to_vec());

    // Client secrets likewise.
    let stale_apps = sorted(vec![a.id.clone(), c.id.clone()]);
    let found = store
        .external_applications_sealed_with_other_keys("k2", 10)
        .await
        .unwrap();
    assert_eq!(ids(&found, |a| &a.id), stale_apps);
    let found = store
        .external_applications_sealed_with_other_keys("k2", 1)
        .await
        .unwrap();
    assert_eq!(ids(&found, |a| &a.id), stale_apps[..1].to_vec());
    assert!(!store
        .reseal_external_client_secret(&a.id, &[9, 9], &[3, 3], "k2")
        .await
        .unwrap());
    assert!(store
        .reseal_external_client_secret(&a.id, &a.client_secret_sealed, &[3, 3], "k2")
        .await
        .unwrap());
    let got = store
        .get_external_application(&a.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.client_secret_sealed, vec![3, 3]);
    assert_eq!(got.client_secret_key_id, "k2");
    assert!(!store
        .reseal_external_client_secret(&a.id, &a.client_secret_sealed, &[4, 4], "k3")
        .await
        .unwrap());
    let found = store
        .external_applications_sealed_with_other_keys("k2", 10)
        .await
        .unwrap();
    assert_eq!(ids(&found, |a| &a.id), vec![c.id.clone()]);
}
conformance!(resealing_lists_stale_rows_and_compares_and_swaps
    => reseal_sqlite, reseal_postgres);

async fn authorizations_are_single_use(store: Arc<dyn Store>) {
    let (_, a, users) = setup(&store, 1).await;
    for pkce in [true, false] {
        let pending = authorization(&a.id, &users[0], 600, pkce);
        store.create_external_authorization(&pending).await.unwrap();
        assert_eq!(
            store
                .take_external_authorization(&pending.state_digest, t(599))
                .await
                .unwrap(),
            Some(pending.clone())
        );
        assert_eq!(
            store
                .take_external_authorization(&pending.state_digest, t(599))
                .await
                .unwrap(),
            None
        );
    }

    // Of two concurrent callbacks, one gets it.
    let pending = authorization(&a.id, &users[0], 600, true);
    store.create_external_authorization(&pending).await.unwrap();
    let (x, y) = tokio::join!(
        store.take_external_authorization(&pending.state_digest, t(1)),
        store.take_external_authorization(&pending.state_digest, t(1)),
    );
    let taken = [x.unwrap(), y.unwrap()];
    assert_eq!(taken.iter().filter(|t| t.is_some()).count(), 1);
    assert!(taken.contains(&Some(pending.clone())));

    // And spawned on separate tasks, several at once.
    let pending = authorization(&a.id, &users[0], 600, true);
    store.create_external_authorization(&pending).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let digest = pending.state_digest.clone();
        tasks.push(tokio::spawn(async move {
            store
                .take_external_authorization(&digest, t(1))
                .await
                .unwrap()
        }));
    }
    let mut got = 0;
    for task in tasks {
        if task.await.unwrap().is_some() {
            got += 1;
        }
    }
    assert_eq!(got, 1);

    // Expired (at its end): deleted, not returned, and gone even for an earlier clock.
    let expired = authorization(&a.id, &users[0], 600, true);
    store.create_external_authorization(&expired).await.unwrap();
    assert_eq!(
        store
            .take_external_authorization(&expired.state_digest, t(600))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_external_authorization(&expired.state_digest, t(1))
            .await
            .unwrap(),
        None
    );

    // The purge takes the expired ones and leaves the live ones.
    let stale = authorization(&a.id, &users[0], 600, false);
    let live = authorization(&a.id, &users[0], 1200, true);
    store.create_external_authorization(&stale).await.unwrap();
    store.create_external_authorization(&live).await.unwrap();
    assert_eq!(
        store
            .purge_expired_external_authorizations(t(600))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .take_external_authorization(&stale.state_digest, t(1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_external_authorization(&live.state_digest, t(601))
            .await
            .unwrap(),
        Some(live)
    );

    assert_err!(
        store
            .create_external_authorization(&authorization("xap_missing", &users[0], 600, true))
            .await,
        StoreError::NotFound("external_application")
    );
    assert_err!(
        store
            .create_external_authorization(&authorization(&a.id, "usr_missing", 600, true))
            .await,
        StoreError::NotFound("user")
    );
}
conformance!(authorizations_are_single_use
    => authorizations_single_use_sqlite, authorizations_single_use_postgres);

async fn permissions_belong_to_memberships(store: Arc<dyn Store>) {
    let acc = new_account(&store).await;
    let other = new_account(&store).await;
    let owner = new_user(&store).await;
    let member = new_user(&store).await;
    let outsider = new_user(&store).await;
    store
        .add_member(&membership(&acc, &owner, Role::Owner))
        .await
        .unwrap();
    let m = membership(&acc, &member, Role::Viewer);
    store.add_member(&m).await.unwrap();
    store
        .add_member(&membership(&other, &member, Role::Viewer))
        .await
        .unwrap();

    assert!(store
        .list_account_permissions(&acc, &member)
        .await
        .unwrap()
        .is_empty());
    // Idempotent, sorted, per account.
    for permission in [
        MANAGE_EXTERNAL_APPLICATIONS,
        "billing",
        MANAGE_EXTERNAL_APPLICATIONS,
    ] {
        store
            .grant_account_permission(&acc, &member, permission)
            .await
            .unwrap();
    }
    assert_eq!(
        store.list_account_permissions(&acc, &member).await.unwrap(),
        vec![
            "billing".to_owned(),
            MANAGE_EXTERNAL_APPLICATIONS.to_owned()
        ]
    );
    assert!(store
        .list_account_permissions(&other, &member)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_account_permissions(&acc, &owner)
        .await
        .unwrap()
        .is_empty());

    assert!(store
        .revoke_account_permission(&acc, &member, "billing")
        .await
        .unwrap());
    assert!(!store
        .revoke_account_permission(&acc, &member, "billing")
        .await
        .unwrap());
    assert!(!store
        .revoke_account_permission(&other, &member, MANAGE_EXTERNAL_APPLICATIONS)
        .await
        .unwrap());
    assert_eq!(
        store.list_account_permissions(&acc, &member).await.unwrap(),
        vec![MANAGE_EXTERNAL_APPLICATIONS.to_owned()]
    );

    // Only members hold permissions.
    for (account_id, user_id) in [
        (acc.as_str(), outsider.as_str()),
        (acc.as_str(), "usr_missing"),
        ("acc_missing", member.as_str()),
    ] {
        assert_err!(
            store
                .grant_account_permission(account_id, user_id, MANAGE_EXTERNAL_APPLICATIONS)
                .await,
            StoreError::NotFound("membership")
        );
        assert!(store
            .list_account_permissions(account_id, user_id)
            .await
            .unwrap()
            .is_empty());
    }

    // Removing the membership removes its permissions: a new membership starts empty.
    store
        .grant_account_permission(&other, &member, "billing")
        .await
        .unwrap();
    store.remove_member(&acc, &m.id).await.unwrap();
    assert!(store
        .list_account_permissions(&acc, &member)
        .await
        .unwrap()
        .is_empty());
    assert_err!(
        store
            .grant_account_permission(&acc, &member, "billing")
            .await,
        StoreError::NotFound("membership")
    );
    store
        .add_member(&membership(&acc, &member, Role::Viewer))
        .await
        .unwrap();
    assert!(store
        .list_account_permissions(&acc, &member)
        .await
        .unwrap()
        .is_empty());
    // The other account's are untouched.
    assert_eq!(
        store
            .list_account_permissions(&other, &member)
            .await
            .unwrap(),
        vec!["billing".to_owned()]
    );

    // With the user, and with the account, they go too: recreated under the same ids,
    // they start empty.
    store
        .grant_account_permission(&acc, &owner, MANAGE_EXTERNAL_APPLICATIONS)
        .await
        .unwrap();
    store.delete_user(&member, true).await.unwrap();
    store
        .create_user(&User {
            id: member.clone(),
            ..user(None, None)
        })
        .await
        .unwrap();
    store
        .add_member(&membership(&other, &member, Role::Viewer))
        .await
        .unwrap();
    assert!(store
        .list_account_permissions(&other, &member)
        .await
        .unwrap()
        .is_empty());
    store.delete_account(&acc, false).await.unwrap();
    store
        .create_account(&Account {
            id: acc.clone(),
            ..account("Team again", None)
        })
        .await
        .unwrap();
    store
        .add_member(&membership(&acc, &owner, Role::Owner))
        .await
        .unwrap();
    assert!(store
        .list_account_permissions(&acc, &owner)
        .await
        .unwrap()
        .is_empty());
}
conformance!(permissions_belong_to_memberships
    => permissions_sqlite, permissions_postgres);

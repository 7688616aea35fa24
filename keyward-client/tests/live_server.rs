//! The whole client against a running Keyward server. Skipped (passes without doing
//! anything) unless these are set:
//!
//! ```text
//! KEYWARD_CLIENT_TEST_URL=http://127.0.0.1:8080
//! KEYWARD_CLIENT_TEST_CLIENT_ID=backend-admin
//! KEYWARD_CLIENT_TEST_CLIENT_SECRET=…
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use keyward_client::proto::{
    ApplicationKind, AuditOutcome, CreateAccount, CreateApiResource, CreateApplication,
    CreateChildAccount, CreateUser, Role, RotateSecret, ScopeDefinition, UpdateApiResource,
    UpdateApplication, UpdateUser, UserStatus,
};
use keyward_client::{
    AccountQuery, AdminClient, AuditQuery, Error, ListQuery, OAuthClient, UserQuery,
};

fn live() -> Option<(String, String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Some((
        var("KEYWARD_CLIENT_TEST_URL")?
            .trim_end_matches('/')
            .to_owned(),
        var("KEYWARD_CLIENT_TEST_CLIENT_ID")?,
        var("KEYWARD_CLIENT_TEST_CLIENT_SECRET")?,
    ))
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

#[tokio::test]
async fn the_whole_management_api() {
    let Some((base, client_id, client_secret)) = live() else {
        eprintln!("KEYWARD_CLIENT_TEST_URL not set: skipped");
        return;
    };
    let audience = format!("{base}/api");
    let oauth = Arc::new(OAuthClient::new(
        format!("{base}/oauth2/token"),
        client_id,
        client_secret,
    ));
    let api = AdminClient::with_oauth(&base, oauth.clone(), &audience);

    // Token errors are OAuth errors.
    let err = oauth
        .client_credentials("https://unknown.example.com")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OAuth { .. }), "{err:?}");
    let bad = OAuthClient::new(format!("{base}/oauth2/token"), "nobody", "wrong");
    assert_eq!(
        bad.client_credentials(&audience).await.unwrap_err().code(),
        Some("invalid_client")
    );

    // A static bearer token works too; a bad one is a problem+json 401.
    let token = oauth.client_credentials(&audience).await.unwrap();
    AdminClient::new(&base, &token.access_token)
        .list_applications(&ListQuery::default())
        .await
        .unwrap();
    let err = AdminClient::new(&base, "not-a-token")
        .list_users(&UserQuery::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");

    // Applications.
    let created = api
        .create_application(&CreateApplication {
            name: unique("client-test"),
            kind: ApplicationKind::Web,
            description: Some("to be cleared".into()),
            redirect_uris: vec!["http://127.0.0.1:3000/cb".into()],
            post_logout_redirect_uris: Vec::new(),
            grant_types: None,
            grants: Vec::new(),
            first_party: false,
            partner: false,
            claim_uri: None,
            account_id: None,
            access_token_ttl_secs: Some(600),
        })
        .await
        .unwrap();
    let app = created.application;
    assert!(created.client_secret.is_some());
    assert_eq!(api.get_application(&app.id).await.unwrap().id, app.id);
    // Only the name changes; description is cleared explicitly; the TTL is untouched.
    let updated = api
        .update_application(
            &app.id,
            &UpdateApplication {
                name: Some("renamed".into()),
                description: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.description, None);
    assert_eq!(updated.access_token_ttl_secs, Some(600));
    assert_eq!(updated.redirect_uris, app.redirect_uris);
    let rotated = api
        .rotate_application_secret(&app.id, &RotateSecret::default())
        .await
        .unwrap();
    assert!(!rotated.client_secret.is_empty());
    api.delete_application_secret(&app.id, &rotated.secret.id)
        .await
        .unwrap();
    let listed = api
        .list_applications(&ListQuery {
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.data.iter().any(|a| a.id == app.id));

    // Users: PATCH leaves untouched fields alone.
    let email = format!("{}@example.com", unique("ada"));
    let user = api
        .create_user(&CreateUser {
            primary_email: Some(email.clone()),
            name: Some("Ada".into()),
            username: Some(unique("ada")),
            ..Default::default()
        })
        .await
        .unwrap();
    let app_user = api
        .create_application_user(
            &app.id,
            &CreateUser {
                status: Some(UserStatus::Active),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(app_user.application_id.as_deref(), Some(app.id.as_str()));
    let patched = api
        .update_user(
            &user.id,
            &UpdateUser {
                name: Some(Some("Ada L.".into())),
                username: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.name.as_deref(), Some("Ada L."));
    assert_eq!(patched.username, None, "cleared explicitly");
    assert_eq!(
        patched.primary_email.as_deref(),
        Some(email.as_str()),
        "untouched"
    );
    assert_eq!(api.get_user(&user.id).await.unwrap().id, user.id);
    let found = api
        .list_users(&UserQuery {
            email: Some(email.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.data.len(), 1);
    let by_app = api
        .list_all_users(&UserQuery {
            application_id: Some(app.id.clone()),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_app.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        [app_user.id.as_str()]
    );

    // Accounts and members.
    let root = api
        .create_account(&CreateAccount {
            name: unique("root"),
            parent_account_id: None,
            custom_data: None,
        })
        .await
        .unwrap();
    let child = api
        .create_child_account(
            &root.id,
            &CreateChildAccount {
                name: "child".into(),
                custom_data: None,
            },
        )
        .await
        .unwrap();
    let children = api
        .list_all_accounts(&AccountQuery {
            parent_account_id: Some(root.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(api.get_account(&child.id).await.unwrap().name, "child");
    let membership = api
        .add_account_member(&child.id, &user.id, Role::Viewer)
        .await
        .unwrap();
    let members = api
        .list_account_members(&child.id, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(members.data.len(), 1);
    // member_id may be the user id or the membership id.
    let as_admin = api
        .update_account_member(&child.id, &user.id, Role::Admin)
        .await
        .unwrap();
    assert_eq!(as_admin.id, membership.id);
    let as_owner = api
        .update_account_member(&child.id, &membership.id, Role::Owner)
        .await
        .unwrap();
    assert_eq!(as_owner.role, Role::Owner);
    let err = api
        .update_account_member(&child.id, &membership.id, Role::Member)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("last_owner"), "{err}");
    let of_user = api
        .list_accounts(&AccountQuery {
            user_id: Some(user.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_user.data.len(), 1);

    // Conflicts carry stable codes.
    let err = api.delete_account(&root.id, false).await.unwrap_err();
    assert_eq!(err.code(), Some("account_has_children"), "{err}");
    assert_eq!(err.status(), Some(409));
    let err = api.delete_user(&user.id, false).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    api.delete_user(&user.id, true).await.unwrap();
    api.delete_account(&root.id, true).await.unwrap();
    assert!(api.get_account(&child.id).await.unwrap_err().is_not_found());
    let err = api.get_user("usr_does-not-exist").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    api.delete_user(&app_user.id, false).await.unwrap();

    // Resources.
    let resource = api
        .create_resource(&CreateApiResource {
            identifier: format!("https://{}.example.com", unique("api")),
            name: "Test API".into(),
            scopes: vec![ScopeDefinition {
                name: "things:read".into(),
                description: None,
            }],
            access_token_ttl_secs: None,
        })
        .await
        .unwrap();
    let renamed = api
        .update_resource(
            &resource.id,
            &UpdateApiResource {
                name: Some("Renamed API".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "Renamed API");
    assert_eq!(renamed.scopes, resource.scopes);
    assert_eq!(
        api.get_resource(&resource.id).await.unwrap().identifier,
        resource.identifier
    );
    let resources = api.list_resources(&ListQuery::default()).await.unwrap();
    assert!(resources.data.iter().any(|r| r.management));
    api.delete_resource(&resource.id).await.unwrap();
    api.delete_application(&app.id).await.unwrap();

    // Audit log.
    let events = api
        .list_audit_logs(&AuditQuery {
            target_id: Some(user.id.clone()),
            outcome: Some(AuditOutcome::Success),
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = events.data.iter().map(|e| e.action.as_str()).collect();
    for action in ["user.create", "user.update", "user.delete"] {
        assert!(actions.contains(&action), "{action} missing in {actions:?}");
    }
    let refused = api
        .list_audit_logs(&AuditQuery {
            action: Some("user.delete".into()),
            target_id: Some(user.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(refused
        .data
        .iter()
        .any(|e| e.outcome != AuditOutcome::Success));
}

//! Seed 001: a backend service gets an M2M token (JSON body) and runs the eight user /
//! account / membership calls, through the Rust client library.

use std::sync::Arc;

use keyward_client::{AdminClient, OAuthClient};
use keyward_proto::{
    ApplicationKind, CreateAccount, CreateApplication, CreateChildAccount, CreateUser, Role,
    UpdateAccount, UserStatus,
};

use crate::on_both_stores;
use crate::testkit::{Backend, TestServer, ADMIN_CLIENT_ID, ADMIN_SECRET};

on_both_stores!(seed_admin_flow_through_the_client_library);

async fn seed_admin_flow_through_the_client_library(backend: Backend) {
    let server = TestServer::start(backend).await;
    let auth = Arc::new(OAuthClient::new(
        server.url("/oauth2/token"),
        ADMIN_CLIENT_ID,
        ADMIN_SECRET,
    ));
    let token = auth.client_credentials(&server.audience()).await.unwrap();
    // Cached: the same token comes back until shortly before expiry.
    let again = auth.client_credentials(&server.audience()).await.unwrap();
    assert_eq!(token.access_token, again.access_token);

    let api = AdminClient::with_oauth(server.base.clone(), auth.clone(), server.audience());
    let app = api
        .create_application(&CreateApplication {
            name: "inbox web".into(),
            kind: ApplicationKind::Web,
            description: None,
            redirect_uris: vec!["https://inbox.example.com/callback".into()],
            post_logout_redirect_uris: vec![],
            grant_types: None,
            grants: vec![],
            first_party: true,
            partner: false,
            claim_uri: None,
            account_id: None,
            access_token_ttl_secs: None,
        })
        .await
        .unwrap();
    let parent = api
        .create_account(&CreateAccount {
            name: "inbox-manager".into(),
            parent_account_id: None,
            custom_data: None,
        })
        .await
        .unwrap();

    let user = api
        .create_application_user(
            &app.application.id,
            &CreateUser {
                status: Some(UserStatus::Active),
                ..CreateUser::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        user.application_id.as_deref(),
        Some(app.application.id.as_str())
    );
    assert_eq!(user.status, UserStatus::Active);
    let account = api
        .create_child_account(
            &parent.id,
            &CreateChildAccount {
                name: "ops-provisioned".into(),
                custom_data: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        account.parent_account_id.as_deref(),
        Some(parent.id.as_str())
    );
    let membership = api
        .add_account_member(&account.id, &user.id, Role::Viewer)
        .await
        .unwrap();
    assert_eq!(membership.role, Role::Viewer);
    let updated = api
        .update_account_member(&account.id, &membership.id, Role::Member)
        .await
        .unwrap();
    assert_eq!(updated.role, Role::Member);
    api.remove_account_member(&account.id, &membership.id)
        .await
        .unwrap();
    let renamed = api
        .update_account(
            &account.id,
            &UpdateAccount {
                name: Some("ops-renamed".into()),
                custom_data: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "ops-renamed");
    api.delete_account(&account.id, false).await.unwrap();
    api.delete_user(&user.id, false).await.unwrap();

    // Typed errors: a second delete is a 404 problem with a stable code.
    let error = api.delete_user(&user.id, false).await.unwrap_err();
    assert_eq!(error.code(), Some("not_found"));
}

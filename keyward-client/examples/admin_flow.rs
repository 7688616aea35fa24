//! The seed's backend admin flow with the Rust client: an M2M token, then the user /
//! account / member administration calls.
//!
//! ```text
//! KEYWARD_URL=http://127.0.0.1:8080 \
//! AUTH_BACKEND_ADMIN_CLIENT_ID=backend-admin AUTH_BACKEND_ADMIN_CLIENT_SECRET=… \
//!   cargo run -p keyward-client --example admin_flow
//! ```
//!
//! Optional: `AUDIENCE` (default `$KEYWARD_URL/api`), `PARENT_ACCOUNT_ID` (a root account is
//! created, and deleted at the end, when absent), `APPLICATION_ID` (a `web` application is
//! created, and deleted at the end, when absent).

use std::env;
use std::sync::Arc;

use anyhow::{Context, Result};
use keyward_client::proto::{
    ApplicationKind, CreateAccount, CreateApplication, CreateChildAccount, CreateUser, Role,
    UpdateAccount, UserStatus,
};
use keyward_client::{AdminClient, OAuthClient};

fn required(name: &str) -> Result<String> {
    env::var(name).with_context(|| format!("{name} must be set"))
}

fn optional(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<()> {
    let base = optional("KEYWARD_URL").unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let base = base.trim_end_matches('/').to_owned();
    let client_id = required("AUTH_BACKEND_ADMIN_CLIENT_ID")?;
    let client_secret = required("AUTH_BACKEND_ADMIN_CLIENT_SECRET")?;
    let audience = optional("AUDIENCE").unwrap_or_else(|| format!("{base}/api"));

    // 0. The M2M token (client credentials), then an admin client that reuses it.
    let oauth = Arc::new(OAuthClient::new(
        format!("{base}/oauth2/token"),
        client_id,
        client_secret,
    ));
    let token = oauth
        .client_credentials(&audience)
        .await
        .context("client credentials token")?;
    println!(
        "ok token: {} for {audience}, scope {:?}, expires in {}s",
        token.token_type,
        token.scope.as_deref().unwrap_or(""),
        token.remaining().as_secs()
    );
    let api = AdminClient::with_oauth(&base, oauth, &audience);

    // Setup: the application and parent account the flow works in.
    let (application_id, created_application) = match optional("APPLICATION_ID") {
        Some(id) => (id, false),
        None => {
            let created = api
                .create_application(&CreateApplication {
                    name: "ops-provisioning-flow".into(),
                    kind: ApplicationKind::Web,
                    description: Some("created by the admin_flow example".into()),
                    redirect_uris: vec!["http://127.0.0.1:3000/callback".into()],
                    post_logout_redirect_uris: Vec::new(),
                    grant_types: None,
                    grants: Vec::new(),
                    first_party: false,
                    partner: false,
                    claim_uri: None,
                    account_id: None,
                    access_token_ttl_secs: None,
                })
                .await
                .context("create application")?;
            println!("ok setup: application {}", created.application.id);
            (created.application.id, true)
        }
    };
    let (parent_id, created_parent) = match optional("PARENT_ACCOUNT_ID") {
        Some(id) => (id, false),
        None => {
            let parent = api
                .create_account(&CreateAccount {
                    name: "ops-root".into(),
                    parent_account_id: None,
                    custom_data: None,
                })
                .await
                .context("create parent account")?;
            println!("ok setup: parent account {}", parent.id);
            (parent.id, true)
        }
    };

    let mut leftovers = Leftovers::default();
    let flow = run_flow(&api, &application_id, &parent_id, &mut leftovers).await;

    // Cleanup of what the example created, also after a failed step.
    if let Some(account_id) = &leftovers.child_account_id {
        if let Err(e) = api.delete_account(account_id, true).await {
            eprintln!("cleanup: cannot delete child account {account_id}: {e}");
        }
    }
    if let Some(user_id) = &leftovers.user_id {
        if let Err(e) = api.delete_user(user_id, true).await {
            eprintln!("cleanup: cannot delete user {user_id}: {e}");
        }
    }
    if created_parent {
        match api.delete_account(&parent_id, true).await {
            Ok(()) => println!("ok cleanup: deleted parent account {parent_id}"),
            Err(e) => eprintln!("cleanup: cannot delete parent account {parent_id}: {e}"),
        }
    }
    if created_application {
        match api.delete_application(&application_id).await {
            Ok(()) => println!("ok cleanup: deleted application {application_id}"),
            Err(e) => eprintln!("cleanup: cannot delete application {application_id}: {e}"),
        }
    }
    flow?;
    println!("admin flow: 8 passed, 0 failed");
    Ok(())
}

/// What a failed flow leaves behind, for the cleanup.
#[derive(Default)]
struct Leftovers {
    user_id: Option<String>,
    child_account_id: Option<String>,
}

async fn run_flow(
    api: &AdminClient,
    application_id: &str,
    parent_id: &str,
    leftovers: &mut Leftovers,
) -> Result<()> {
    // 1. POST /api/applications/:application_id/users
    let user = api
        .create_application_user(
            application_id,
            &CreateUser {
                status: Some(UserStatus::Active),
                ..Default::default()
            },
        )
        .await
        .context("1. create application user")?;
    leftovers.user_id = Some(user.id.clone());
    println!(
        "ok 1 create_application_user: {} ({:?})",
        user.id, user.status
    );

    // 2. POST /api/accounts/:account_id/accounts
    let account = api
        .create_child_account(
            parent_id,
            &CreateChildAccount {
                name: "ops-provisioned".into(),
                custom_data: None,
            },
        )
        .await
        .context("2. create child account")?;
    leftovers.child_account_id = Some(account.id.clone());
    println!(
        "ok 2 create_child_account: {} under {parent_id}",
        account.id
    );

    // 3. POST /api/accounts/:account_id/members
    let membership = api
        .add_account_member(&account.id, &user.id, Role::Viewer)
        .await
        .context("3. add account member")?;
    println!(
        "ok 3 add_account_member: {} as {}",
        membership.id,
        membership.role.as_str()
    );

    // 4. PATCH /api/accounts/:account_id/members/:member_id
    let updated = api
        .update_account_member(&account.id, &membership.id, Role::Member)
        .await
        .context("4. update account member")?;
    println!(
        "ok 4 update_account_member: {} is now {}",
        updated.id,
        updated.role.as_str()
    );

    // 5. DELETE /api/accounts/:account_id/members/:member_id
    api.remove_account_member(&account.id, &membership.id)
        .await
        .context("5. remove account member")?;
    println!("ok 5 remove_account_member: {}", membership.id);

    // 6. PATCH /api/accounts/:account_id
    let renamed = api
        .update_account(
            &account.id,
            &UpdateAccount {
                name: Some("ops-provisioned-renamed".into()),
                custom_data: None,
            },
        )
        .await
        .context("6. update account")?;
    println!(
        "ok 6 update_account: {} is now {:?}",
        renamed.id, renamed.name
    );

    // 7. DELETE /api/accounts/:account_id
    api.delete_account(&account.id, false)
        .await
        .context("7. delete account")?;
    leftovers.child_account_id = None;
    println!("ok 7 delete_account: {}", account.id);

    // 8. DELETE /api/users/:user_id
    api.delete_user(&user.id, false)
        .await
        .context("8. delete user")?;
    leftovers.user_id = None;
    println!("ok 8 delete_user: {}", user.id);
    Ok(())
}

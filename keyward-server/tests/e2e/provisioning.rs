//! Partner provisioning and the claim flow against a real server and the real local
//! PostgreSQL (SPEC §2): databases are really created, connected to, transferred and
//! dropped.

use serde_json::{json, Value};
use sqlx::Connection as _;

use crate::interactive::{
    challenge, jwt_payload, run_flow, token_request, Browser, Client, CALLBACK, VERIFIER,
};
use crate::on_both_stores;
use crate::testkit::{Backend, Options, TestServer};

struct Partner {
    client: Client,
    account_id: String,
    token: String,
}

fn v1(server: &TestServer) -> String {
    format!("{}/v1", server.state.settings.issuer())
}

/// A workspace and a partner application in it, with an integration token.
async fn partner(server: &TestServer, name: &str) -> Partner {
    let admin = server.admin_token().await;
    let (status, account) = server
        .call(
            "POST",
            "/api/accounts",
            &admin,
            Some(json!({ "name": name })),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    let account_id = account["id"].as_str().unwrap().to_owned();
    let (status, body) = server
        .call(
            "POST",
            "/api/applications",
            &admin,
            Some(json!({
                "name": name,
                "kind": "web",
                "partner": true,
                "account_id": account_id,
                "claim_uri": "https://partner.example.test/claim",
                "redirect_uris": [CALLBACK],
                "grants": [{ "resource": v1(server), "scopes": ["projects:read", "projects:write"] }],
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let client = Client {
        client_id: body["application"]["client_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        secret: body["client_secret"].as_str().map(str::to_owned),
    };
    let token = server
        .token_for(
            &client.client_id,
            client.secret.as_deref().unwrap(),
            &v1(server),
            None,
        )
        .await;
    Partner {
        client,
        account_id,
        token,
    }
}

async fn create_project(server: &TestServer, partner: &Partner, ttl: i64) -> Value {
    let (status, body) = server
        .call(
            "POST",
            "/v1/projects",
            &partner.token,
            Some(json!({ "name": "my-app-db", "ttlSeconds": ttl })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"].clone()
}

fn claim_token(project: &Value) -> String {
    let url = project["claimUrl"].as_str().unwrap();
    url.split_once("?token=").unwrap().1.to_owned()
}

/// The user's side of a claim: authorize with the claim token (sign up, create a
/// workspace, consent), then the partner exchanges the code. Returns the callback query
/// and the user's access token.
async fn claim_authorization(
    server: &TestServer,
    partner: &Client,
    claim: Option<&str>,
    scope: &str,
    username: &str,
) -> (std::collections::HashMap<String, String>, String) {
    let mut params = vec![
        ("response_type", "code".to_owned()),
        ("client_id", partner.client_id.clone()),
        ("redirect_uri", CALLBACK.to_owned()),
        ("scope", scope.to_owned()),
        ("state", "claim-state".to_owned()),
        ("code_challenge", challenge(VERIFIER)),
        ("code_challenge_method", "S256".to_owned()),
    ];
    if let Some(claim) = claim {
        params.push(("claim_token", claim.to_owned()));
    }
    let start = format!(
        "/oauth2/authorize?{}",
        serde_urlencoded::to_string(&params).unwrap()
    );
    let mut browser = Browser::new(server);
    let callback = run_flow(&mut browser, &start, username).await;
    let code = callback
        .get("code")
        .unwrap_or_else(|| panic!("{callback:?}"));
    // client_secret_post, as the seed's partner does.
    let (status, tokens) = token_request(
        server,
        &Client {
            client_id: partner.client_id.clone(),
            secret: None,
        },
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
            ("client_secret", partner.secret.as_deref().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    (
        callback,
        tokens["access_token"].as_str().unwrap().to_owned(),
    )
}

async fn transfer(
    server: &TestServer,
    partner: &Partner,
    project_id: &str,
    recipient: &str,
) -> (u16, Value) {
    server
        .call(
            "POST",
            &format!("/v1/projects/{project_id}/transfer"),
            &partner.token,
            Some(json!({ "recipientAccessToken": recipient })),
        )
        .await
}

async fn database_exists(name: &str) -> bool {
    let mut admin =
        sqlx::PgConnection::connect(&keyward_store::test_support::test_postgres_server_url())
            .await
            .unwrap();
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
    found.is_some()
}

/// Moves a project's expiry (and its reaper schedule) into the past, as time would.
async fn expire(server: &TestServer, project_id: &str) {
    let past = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let statement =
        "UPDATE projects SET expires_at = $2, reap_at = $3 WHERE id = $1 AND claimed_at IS NULL";
    if server.database_url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(&server.database_url)
            .await
            .unwrap();
        sqlx::query(statement)
            .bind(project_id)
            .bind(past)
            .bind(past.unix_timestamp())
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&server.database_url)
            .await
            .unwrap();
        sqlx::query(statement)
            .bind(project_id)
            .bind(past)
            .bind(past.unix_timestamp())
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// Drops what a test left in the shared PostgreSQL cluster (claimed projects stay
/// otherwise).
async fn drop_projects(server: &TestServer, ids: &[&str]) {
    for id in ids {
        keyward_server::provisioning::service::drop_project(&server.state, id)
            .await
            .unwrap();
    }
}

async fn claim_flow_end_to_end(backend: Backend) {
    let server = TestServer::start(backend).await;
    let partner = partner(&server, "Partner Inc").await;

    let (status, regions) = server
        .call("GET", "/v1/regions", &partner.token, None)
        .await;
    assert_eq!(status, 200, "{regions}");
    assert_eq!(regions["data"][0]["id"], "local");
    assert_eq!(regions["data"][0]["status"], "available");

    let project = create_project(&server, &partner, 3600).await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    assert_eq!(project["workspace"]["id"], partner.account_id.as_str());
    assert!(project["expiresAt"].is_string());
    let database = &project["database"];
    assert_eq!(database["status"], "ready");
    let connection_string = database["connectionString"].as_str().unwrap().to_owned();
    assert!(
        connection_string.starts_with("postgresql://kw_u_"),
        "{connection_string}"
    );

    // The connection string works at once: write a table.
    let mut user_conn = sqlx::PgConnection::connect(&connection_string)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('hello')")
        .execute(&mut user_conn)
        .await
        .unwrap();
    // PUBLIC cannot connect: another project's role is refused.
    let other = create_project(&server, &partner, 3600).await;
    let other_cs = other["database"]["connectionString"].as_str().unwrap();
    let other_user = other_cs
        .split("://")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    let own_db = database["connections"][0]["database"].as_str().unwrap();
    let cross = connection_string
        .replace(
            &format!(
                "://{}:",
                database["connections"][0]["user"].as_str().unwrap()
            ),
            &format!("://{other_user}:"),
        )
        .replace(
            database["connections"][0]["password"].as_str().unwrap(),
            other["database"]["connections"][0]["password"]
                .as_str()
                .unwrap(),
        );
    assert!(cross.ends_with(own_db));
    assert!(sqlx::PgConnection::connect(&cross).await.is_err());

    // The partner's claim page resolves the token.
    let token = claim_token(&project);
    let (status, info) = server
        .call(
            "POST",
            "/v1/claims/lookup",
            &partner.token,
            Some(json!({ "token": token })),
        )
        .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["data"]["projectId"], project_id.as_str());
    assert_eq!(info["data"]["partnerName"], "Partner Inc");

    // The user claims: the redirect echoes the project id.
    let (callback, recipient) = claim_authorization(
        &server,
        &partner.client,
        Some(&token),
        "workspace:admin",
        "claimer",
    )
    .await;
    assert_eq!(callback["project_id"], project_id);
    assert_eq!(callback["state"], "claim-state");
    let user_workspace = jwt_payload(&recipient)["acc"].as_str().unwrap().to_owned();

    let (status, moved) = transfer(&server, &partner, &project_id, &recipient).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["data"]["workspace"]["id"], user_workspace.as_str());
    assert!(moved["data"]["expiresAt"].is_null());
    assert!(moved["data"]["claimedAt"].is_string());

    // The partner no longer sees it; a second transfer fails cleanly.
    let (status, _) = server
        .call(
            "GET",
            &format!("/v1/projects/{project_id}"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = transfer(&server, &partner, &project_id, &recipient).await;
    assert_eq!(status, 404, "{body}");
    // The claim link is spent.
    let (status, _) = server
        .call(
            "POST",
            "/v1/claims/lookup",
            &partner.token,
            Some(json!({ "token": token })),
        )
        .await;
    assert_eq!(status, 404);

    // The same connection still reads the table, and a new one can connect.
    let body: String = sqlx::query_scalar("SELECT body FROM notes")
        .fetch_one(&mut user_conn)
        .await
        .unwrap();
    assert_eq!(body, "hello");
    let mut again = sqlx::PgConnection::connect(&connection_string)
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&mut again)
        .await
        .unwrap();
    assert_eq!(count, 1);

    // The project is the user's workspace's now, and no longer expires.
    let stored = server
        .state
        .store
        .get_project(&project_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.account_id, user_workspace);
    assert!(stored.expires_at.is_none());

    // Every step is in the audit log.
    let admin = server.admin_token().await;
    for action in ["project.create", "project.transfer", "oauth.authorize"] {
        let (status, events) = server
            .call(
                "GET",
                &format!("/api/audit-logs?action={action}"),
                &admin,
                None,
            )
            .await;
        assert_eq!(status, 200, "{events}");
        assert!(
            !events["data"].as_array().unwrap().is_empty(),
            "no {action} event"
        );
    }

    // Deleting the partner's other project really drops it.
    let other_id = other["id"].as_str().unwrap();
    let other_db = other["database"]["connections"][0]["database"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(database_exists(&other_db).await);
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/v1/projects/{other_id}"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(!database_exists(&other_db).await);
    drop(user_conn);
    drop(again);
    drop_projects(&server, &[&project_id]).await;
    let own = database["connections"][0]["database"].as_str().unwrap();
    assert!(!database_exists(own).await);
}

async fn transfer_refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let partner_a = partner(&server, "Partner A").await;
    let partner_b = partner(&server, "Partner B").await;
    let project = create_project(&server, &partner_a, 3600).await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    let token = claim_token(&project);

    // Another workspace cannot read it, nor transfer it, nor resolve its claim link.
    let (status, body) = server
        .call(
            "GET",
            &format!("/v1/projects/{project_id}"),
            &partner_b.token,
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .call(
            "POST",
            "/v1/claims/lookup",
            &partner_b.token,
            Some(json!({ "token": token })),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // Partner B cannot start a claim of partner A's project.
    let start = format!(
        "/oauth2/authorize?{}",
        serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", partner_b.client.client_id.as_str()),
            ("redirect_uri", CALLBACK),
            ("scope", "workspace:admin"),
            ("code_challenge", &challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
            ("claim_token", &token),
        ])
        .unwrap()
    );
    let page = Browser::new(&server).get(&start).await;
    assert_eq!(page.status, 303);
    assert!(
        page.location().contains("error=invalid_request"),
        "{}",
        page.location()
    );

    // A recipient token without workspace:admin.
    let (_, plain) =
        claim_authorization(&server, &partner_a.client, None, "openid", "noscope").await;
    let (status, body) = transfer(&server, &partner_a, &project_id, &plain).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "recipient_token_scope");

    // A recipient token issued to another client.
    let (_, for_b) = claim_authorization(
        &server,
        &partner_b.client,
        None,
        "workspace:admin",
        "otheruser",
    )
    .await;
    let (status, body) = transfer(&server, &partner_a, &project_id, &for_b).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "recipient_token_wrong_client");

    // Partner B's integration token gets 404 even with a valid recipient token of its own.
    let (status, _) = transfer(&server, &partner_b, &project_id, &for_b).await;
    assert_eq!(status, 404);

    // A token that is not ours.
    let (status, body) =
        transfer(&server, &partner_a, &project_id, "eyJhbGciOiJub25lIn0.e30.").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_recipient_token");

    // A viewer's workspace: the user granted as owner, then was made a viewer.
    let (_, recipient) = claim_authorization(
        &server,
        &partner_a.client,
        Some(&token),
        "workspace:admin",
        "demoted",
    )
    .await;
    let claims = jwt_payload(&recipient);
    let (workspace, user) = (
        claims["acc"].as_str().unwrap(),
        claims["uid"].as_str().unwrap(),
    );
    let admin = server.admin_token().await;
    let (status, helper) = server
        .call(
            "POST",
            "/api/users",
            &admin,
            Some(json!({ "username": "co-owner" })),
        )
        .await;
    assert_eq!(status, 201, "{helper}");
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/accounts/{workspace}/members"),
            &admin,
            Some(json!({ "user_id": helper["id"], "role": "owner" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .call(
            "PATCH",
            &format!("/api/accounts/{workspace}/members/{user}"),
            &admin,
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = transfer(&server, &partner_a, &project_id, &recipient).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "recipient_not_workspace_admin");

    // Refusals are audited as denials.
    let (_, events) = server
        .call(
            "GET",
            "/api/audit-logs?action=project.transfer&outcome=denied",
            &admin,
            None,
        )
        .await;
    assert!(events["data"].as_array().unwrap().len() >= 2, "{events}");

    // An expired claim link: the lookup answers 410, authorize refuses, transfer too.
    expire(&server, &project_id).await;
    let (status, body) = server
        .call(
            "POST",
            "/v1/claims/lookup",
            &partner_a.token,
            Some(json!({ "token": token })),
        )
        .await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["code"], "claim_expired");
    let mut browser = Browser::new(&server);
    let start = format!(
        "/oauth2/authorize?{}",
        serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", partner_a.client.client_id.as_str()),
            ("redirect_uri", CALLBACK),
            ("scope", "workspace:admin"),
            ("code_challenge", &challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
            ("claim_token", &token),
        ])
        .unwrap()
    );
    let page = browser.get(&start).await;
    assert!(page.location().contains("expired"), "{}", page.location());
    // And an expired project cannot be transferred, even with a valid recipient token.
    let (_, late) = claim_authorization(
        &server,
        &partner_a.client,
        None,
        "workspace:admin",
        "latecomer",
    )
    .await;
    let (status, body) = transfer(&server, &partner_a, &project_id, &late).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["code"], "project_expired");
    drop_projects(&server, &[&project_id]).await;
}

async fn unclaimed_projects_expire_and_claimed_ones_stay(backend: Backend) {
    let server = TestServer::start(backend).await;
    let partner = partner(&server, "Partner E").await;
    let doomed = create_project(&server, &partner, 1800).await;
    let kept = create_project(&server, &partner, 1800).await;
    let doomed_db = doomed["database"]["connections"][0]["database"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept_db = kept["database"]["connections"][0]["database"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept_id = kept["id"].as_str().unwrap().to_owned();
    let (_, recipient) = claim_authorization(
        &server,
        &partner.client,
        Some(&claim_token(&kept)),
        "workspace:admin",
        "keeper",
    )
    .await;
    let (status, body) = transfer(&server, &partner, &kept_id, &recipient).await;
    assert_eq!(status, 200, "{body}");

    // Time passes for both; only the unclaimed one is due.
    expire(&server, doomed["id"].as_str().unwrap()).await;
    expire(&server, &kept_id).await;
    assert!(database_exists(&doomed_db).await);
    let dropped = keyward_server::provisioning::reaper::reap_due(&server.state).await;
    assert_eq!(dropped, 1);
    assert!(!database_exists(&doomed_db).await);
    assert!(database_exists(&kept_db).await);
    let (status, _) = server
        .call(
            "GET",
            &format!("/v1/projects/{}", doomed["id"].as_str().unwrap()),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(status, 404);
    // A second node's pass finds nothing left to do.
    assert_eq!(
        keyward_server::provisioning::reaper::reap_due(&server.state).await,
        0
    );
    drop_projects(&server, &[&kept_id]).await;
}

on_both_stores!(
    claim_flow_end_to_end,
    transfer_refusals,
    unclaimed_projects_expire_and_claimed_ones_stay,
    projects_databases_and_connections,
);

/// A region whose admin may create roles but not databases: creation fails after the role
/// exists, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_provisioning_leaves_nothing_behind() {
    let admin_url = keyward_store::test_support::test_postgres_server_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let limited = format!("kw_test_nocreatedb_{}", std::process::id());
    sqlx::raw_sql(&format!(
        "DROP ROLE IF EXISTS {limited}; CREATE ROLE {limited} LOGIN CREATEROLE NOCREATEDB PASSWORD 'pw'"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let mut limited_url = url::Url::parse(&admin_url).unwrap();
    limited_url.set_username(&limited).unwrap();
    limited_url.set_password(Some("pw")).unwrap();
    let region = keyward_provision::Region {
        id: "limited".into(),
        name: None,
        admin_url: limited_url.to_string(),
        public_host: None,
        public_port: None,
        connection_limit: 5,
        connection_options: None,
    };
    let server = TestServer::start_with(
        Backend::Sqlite,
        Options {
            regions: vec![region],
            ..Options::default()
        },
    )
    .await;
    let partner = partner(&server, "Partner F").await;
    let roles_before: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'kw\\_u\\_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let (status, body) = server
        .call(
            "POST",
            "/v1/projects",
            &partner.token,
            Some(json!({ "name": "fails", "region": "limited" })),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "provisioning_failed");
    // No project row, and no role this region created is left (roles made by other tests
    // running now come and go with their databases; ours must not be among those left).
    let (_, listed) = server
        .call("GET", "/v1/projects", &partner.token, None)
        .await;
    assert!(listed["data"].as_array().unwrap().is_empty(), "{listed}");
    let orphans: Vec<String> = sqlx::query_scalar(
        "SELECT r.rolname::text FROM pg_roles r WHERE r.rolname LIKE 'kw\\_u\\_%' \
         AND NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = 'kw_db_' || substr(r.rolname, 6))",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let new_orphans: Vec<&String> = orphans
        .iter()
        .filter(|r| !roles_before.contains(r))
        .collect();
    // Another test may be between CREATE ROLE and CREATE DATABASE right now; its role gets
    // its database within a moment, ours never would.
    if !new_orphans.is_empty() {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let still: Vec<String> = sqlx::query_scalar(
            "SELECT r.rolname::text FROM pg_roles r WHERE r.rolname LIKE 'kw\\_u\\_%' \
             AND NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = 'kw_db_' || substr(r.rolname, 6))",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap();
        let left: Vec<&&String> = new_orphans.iter().filter(|r| still.contains(r)).collect();
        assert!(left.is_empty(), "orphan roles left behind: {left:?}");
    }
    drop(server);
    let _ = sqlx::raw_sql(&format!("DROP ROLE IF EXISTS {limited}"))
        .execute(&mut admin)
        .await;
}

/// With no region at all, provisioning says which setting is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_region_is_a_clear_503() {
    let mut server = TestServer::start_with(
        Backend::Sqlite,
        Options {
            issuer: Some("https://auth.example.test".into()),
            ..Options::default()
        },
    )
    .await;
    // The issuer is public, so no local region was probed.
    assert!(server.state.regions.all().is_empty());
    server.base = server.base.clone();
    let partner = partner(&server, "Partner G").await;
    let (status, body) = server
        .call(
            "POST",
            "/v1/projects",
            &partner.token,
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "provisioning_not_configured");
    assert!(body["detail"].as_str().unwrap().contains("KEYWARD_REGIONS"));
}

/// The user and password of a connection string.
fn credentials(connection_string: &str) -> (String, String) {
    let url = url::Url::parse(connection_string).unwrap();
    (
        url.username().to_owned(),
        url.password().unwrap().to_owned(),
    )
}

/// Whether PostgreSQL would accept `password` for the role: recomputes the role's stored
/// SCRAM verifier with its salt and iterations. (The test cluster may trust every local
/// connection, so logging in proves nothing about the password.)
async fn password_accepted(connection_string: &str) -> bool {
    let (role, password) = credentials(connection_string);
    let mut admin =
        sqlx::PgConnection::connect(&keyward_store::test_support::test_postgres_server_url())
            .await
            .unwrap();
    let stored: Option<Option<String>> =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
            .bind(&role)
            .fetch_optional(&mut admin)
            .await
            .unwrap();
    let Some(Some(stored)) = stored else {
        return false;
    };
    let params = stored
        .strip_prefix("SCRAM-SHA-256$")
        .unwrap()
        .split('$')
        .next()
        .unwrap();
    let (iterations, salt) = params.split_once(':').unwrap();
    use base64::Engine as _;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(salt)
        .unwrap();
    keyward_provision::scram_sha256_verifier(&password, &salt, iterations.parse().unwrap())
        == stored
}

async fn role_exists(role: &str) -> bool {
    let mut admin =
        sqlx::PgConnection::connect(&keyward_store::test_support::test_postgres_server_url())
            .await
            .unwrap();
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
    found.is_some()
}

fn with_password(connection_string: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = connection_string.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    format!("{scheme}://{user}:{password}@{host}")
}

async fn projects_databases_and_connections(backend: Backend) {
    let server = TestServer::start(backend).await;
    let partner = partner(&server, "Partner H").await;

    // TTL bounds: 30 minutes to 24 hours.
    for ttl in [60, 86_401] {
        let (status, body) = server
            .call(
                "POST",
                "/v1/projects",
                &partner.token,
                Some(json!({ "name": "x", "ttlSeconds": ttl })),
            )
            .await;
        assert_eq!(status, 422, "{body}");
    }
    let (status, body) = server
        .call(
            "POST",
            "/v1/projects",
            &partner.token,
            Some(json!({ "name": "x", "region": "mars" })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = server
        .call(
            "POST",
            "/v1/projects",
            &partner.token,
            Some(json!({ "nme": "typo" })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("unknown field"));

    // Cursor pagination over three projects.
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(create_project(&server, &partner, 1800).await);
    }
    let (status, first) = server
        .call("GET", "/v1/projects?limit=2", &partner.token, None)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["pagination"]["hasMore"], true);
    let cursor = first["pagination"]["nextCursor"].as_str().unwrap();
    let (_, second) = server
        .call(
            "GET",
            &format!("/v1/projects?limit=2&cursor={cursor}"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["pagination"]["hasMore"], false);
    // Listed projects never carry secrets.
    assert!(!first.to_string().contains("password"), "{first}");

    let project = &created[0];
    let id = project["id"].as_str().unwrap();
    let (status, renamed) = server
        .call(
            "PATCH",
            &format!("/v1/projects/{id}"),
            &partner.token,
            Some(json!({ "name": "renamed" })),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["data"]["name"], "renamed");
    let (_, got) = server
        .call("GET", &format!("/v1/projects/{id}"), &partner.token, None)
        .await;
    assert_eq!(got["data"]["name"], "renamed");
    assert!(got["data"]["database"]["connectionString"].is_null());

    // A second database in the project: created for real, listed, fetched.
    let (status, added) = server
        .call(
            "POST",
            &format!("/v1/projects/{id}/databases"),
            &partner.token,
            Some(json!({ "name": "analytics" })),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let db = &added["data"];
    let db_id = db["id"].as_str().unwrap();
    let db_cs = db["connectionString"].as_str().unwrap().to_owned();
    let db_name = db["connections"][0]["database"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut owner = sqlx::PgConnection::connect(&db_cs).await.unwrap();
    sqlx::raw_sql("CREATE TABLE events (n int); INSERT INTO events VALUES (7)")
        .execute(&mut owner)
        .await
        .unwrap();
    let (_, listed) = server
        .call(
            "GET",
            &format!("/v1/projects/{id}/databases"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let (status, _) = server
        .call(
            "GET",
            &format!("/v1/databases/{db_id}"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(status, 200);

    // New credentials: a second login that acts as the owner.
    let (status, conn) = server
        .call(
            "POST",
            &format!("/v1/databases/{db_id}/connections"),
            &partner.token,
            Some(json!({ "name": "ci" })),
        )
        .await;
    assert_eq!(status, 201, "{conn}");
    let conn_id = conn["data"]["id"].as_str().unwrap().to_owned();
    let ci_cs = conn["data"]["connectionString"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ci = sqlx::PgConnection::connect(&ci_cs).await.unwrap();
    let n: i32 = sqlx::query_scalar("SELECT n FROM events")
        .fetch_one(&mut ci)
        .await
        .unwrap();
    assert_eq!(n, 7);
    // Tables it creates belong to the database owner.
    sqlx::raw_sql("CREATE TABLE from_ci (x int)")
        .execute(&mut ci)
        .await
        .unwrap();
    let table_owner: String =
        sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'from_ci'")
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert_eq!(table_owner, db["connections"][0]["user"].as_str().unwrap());
    drop(ci);

    // Rotation: the old password stops working, the new one works.
    assert!(password_accepted(&ci_cs).await);
    let (status, rotated) = server
        .call(
            "POST",
            &format!("/v1/connections/{conn_id}/rotate"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated["data"]["rotatedAt"].is_string());
    let new_cs = rotated["data"]["connectionString"].as_str().unwrap();
    assert!(!password_accepted(&ci_cs).await);
    assert!(password_accepted(new_cs).await);
    // The owner's own connection rotates too.
    let owner_conn = db["connections"][0]["id"].as_str().unwrap();
    let (status, owner_rotated) = server
        .call(
            "POST",
            &format!("/v1/connections/{owner_conn}/rotate"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{owner_rotated}");
    assert!(!password_accepted(&db_cs).await);
    let owner_user = db["connections"][0]["user"].as_str().unwrap();
    let owner_pw = owner_rotated["data"]["password"].as_str().unwrap();
    assert!(password_accepted(&with_password(&db_cs, owner_user, owner_pw)).await);
    drop(owner);

    // The owner's connection and the default database go only with their parents.
    let (status, body) = server
        .call(
            "DELETE",
            &format!("/v1/connections/{owner_conn}"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let default_db = project["database"]["id"].as_str().unwrap();
    let (status, body) = server
        .call(
            "DELETE",
            &format!("/v1/databases/{default_db}"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Deleting the extra connection removes the login.
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/v1/connections/{conn_id}"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(!role_exists(&credentials(new_cs).0).await);

    // Another workspace sees none of it.
    let other = self::partner(&server, "Partner I").await;
    for path in [
        format!("/v1/databases/{db_id}"),
        format!("/v1/projects/{id}/databases"),
    ] {
        let (status, _) = server.call("GET", &path, &other.token, None).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/v1/databases/{db_id}"),
            &other.token,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, others) = server.call("GET", "/v1/projects", &other.token, None).await;
    assert!(others["data"].as_array().unwrap().is_empty());

    // Deleting the extra database really drops it.
    assert!(database_exists(&db_name).await);
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/v1/databases/{db_id}"),
            &partner.token,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(!database_exists(&db_name).await);

    // An application that is not a partner gets no workspace, even with the scopes.
    let admin = server.admin_token().await;
    let (status, m2m) = server
        .call(
            "POST",
            "/api/applications",
            &admin,
            Some(json!({
                "name": "Not a partner",
                "kind": "m2m",
                "account_id": partner.account_id,
                "grants": [{ "resource": v1(&server), "scopes": ["projects:read", "projects:write"] }],
            })),
        )
        .await;
    assert_eq!(status, 201, "{m2m}");
    let m2m_token = server
        .token_for(
            m2m["application"]["client_id"].as_str().unwrap(),
            m2m["client_secret"].as_str().unwrap(),
            &v1(&server),
            None,
        )
        .await;
    let (status, body) = server.call("GET", "/v1/projects", &m2m_token, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "not_a_partner");
    // A management token is not a provisioning token.
    let (status, _) = server.call("GET", "/v1/projects", &admin, None).await;
    assert_eq!(status, 401);

    // A workspace that owns projects is not deleted.
    let (status, body) = server
        .call(
            "DELETE",
            &format!("/api/accounts/{}", partner.account_id),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "account_has_projects");

    for project in &created {
        let (status, _) = server
            .call(
                "DELETE",
                &format!("/v1/projects/{}", project["id"].as_str().unwrap()),
                &partner.token,
                None,
            )
            .await;
        assert_eq!(status, 204);
    }
}

/// Two nodes on one PostgreSQL store run their reapers at the same moment: each expired
/// project is dropped exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_reap_each_project_once() {
    let first = TestServer::start(Backend::Postgres).await;
    let second = TestServer::start_with(
        Backend::Postgres,
        Options {
            database_url: Some(first.database_url.clone()),
            bootstrap: false,
            ..Options::default()
        },
    )
    .await;
    let partner = partner(&first, "Partner R").await;
    let mut names = Vec::new();
    for _ in 0..6 {
        let project = create_project(&first, &partner, 1800).await;
        names.push(
            project["database"]["connections"][0]["database"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        expire(&first, project["id"].as_str().unwrap()).await;
    }
    let (a, b) = tokio::join!(
        keyward_server::provisioning::reaper::reap_due(&first.state),
        keyward_server::provisioning::reaper::reap_due(&second.state)
    );
    assert_eq!(a + b, 6, "dropped {a} + {b}");
    for name in &names {
        assert!(!database_exists(name).await);
    }
    let admin = first.admin_token().await;
    let (_, events) = first
        .call(
            "GET",
            "/api/audit-logs?action=project.reap&limit=100",
            &admin,
            None,
        )
        .await;
    let successes = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "success")
        .count();
    assert_eq!(successes, 6, "{events}");
}

/// A drop that fails is kept in the schedule with its error and retried later, here by
/// another node that can reach the region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_drop_is_retried() {
    let able = TestServer::start(Backend::Postgres).await;
    // Same store, but this node has no region configured (public issuer: no local probe).
    let unable = TestServer::start_with(
        Backend::Postgres,
        Options {
            database_url: Some(able.database_url.clone()),
            bootstrap: false,
            issuer: Some("https://elsewhere.example.test".into()),
            ..Options::default()
        },
    )
    .await;
    let partner = partner(&able, "Partner X").await;
    let project = create_project(&able, &partner, 1800).await;
    let id = project["id"].as_str().unwrap().to_owned();
    let name = project["database"]["connections"][0]["database"]
        .as_str()
        .unwrap()
        .to_owned();
    expire(&able, &id).await;
    // The node without the region fails the drop: the project stays, with the error, and
    // is rescheduled rather than lost.
    assert!(unable.state.regions.all().is_empty());
    assert_eq!(
        keyward_server::provisioning::reaper::reap_due(&unable.state).await,
        0
    );
    let (attempts, error) = able.state.store.reap_state(&id).await.unwrap().unwrap();
    assert_eq!(attempts, 1);
    assert!(error.unwrap().contains("not configured"));
    assert!(database_exists(&name).await);
    // Not due again until the retry time…
    assert_eq!(
        keyward_server::provisioning::reaper::reap_due(&able.state).await,
        0
    );
    // …which, once reached, lets a node that can reach the region finish it.
    expire(&able, &id).await;
    assert_eq!(
        keyward_server::provisioning::reaper::reap_due(&able.state).await,
        1
    );
    assert!(!database_exists(&name).await);
    assert!(able.state.store.get_project(&id).await.unwrap().is_none());
}

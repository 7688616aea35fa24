//! Command-line interface.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use keyward_core::id::{new_id, IdKind};
use keyward_core::keys::KeyAlgorithm;
use keyward_core::model::{AuditEvent, ResourceGrant};
use keyward_core::AuditOutcome;
use keyward_proto as proto;
use keyward_server::{AppState, Settings};
use time::OffsetDateTime;

#[derive(Parser)]
#[command(
    name = "keyward",
    version,
    about = "Self-hosted identity and access platform"
)]
pub struct Cli {
    /// TOML configuration file; `KEYWARD_<SETTING>` environment variables override it.
    #[arg(long, short, global = true, env = "KEYWARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates and bootstraps on start).
    Serve,
    /// Apply pending schema migrations and exit.
    Migrate,
    /// Manage OAuth applications directly in the store.
    #[command(subcommand)]
    Applications(ApplicationsCommand),
    /// Manage token-signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The token vault (external applications' secrets and users' connection tokens).
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Print the OpenAPI document.
    Openapi,
    /// The reference partner (`partner serve`: the create and claim service).
    #[command(subcommand)]
    Partner(PartnerCommand),
    /// Create a PostgreSQL database through a partner service, like `npx create-db`.
    CreateDb(keyward_partner::CreateDbArgs),
    /// Import users from another system's export (exit code 2 when rows failed).
    Import(crate::import_cmd::ImportArgs),
    /// Compare a newer export with the store by external id; report, and apply with --apply.
    Sync(crate::import_cmd::SyncArgs),
}

#[derive(Subcommand)]
enum PartnerCommand {
    /// Serve `POST /create`, the claim page and the OAuth callback.
    Serve(keyward_partner::PartnerServeArgs),
}

#[derive(Subcommand)]
enum ApplicationsCommand {
    /// Create an application; prints its client id and secret once.
    Create(CreateApplicationArgs),
    /// Add a new client secret; prints it once.
    RotateSecret {
        /// The application's client id.
        client_id: String,
        /// Let the existing secrets expire after this many seconds (0 = now).
        #[arg(long)]
        expire_existing_after_secs: Option<i64>,
    },
}

#[derive(Args)]
struct CreateApplicationArgs {
    #[arg(long)]
    name: String,
    /// m2m, web, spa or native.
    #[arg(long, default_value = "m2m")]
    kind: String,
    /// RESOURCE=scope1,scope2 (repeatable); `management` names the management API.
    #[arg(long = "grant")]
    grants: Vec<String>,
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    #[arg(long)]
    first_party: bool,
    /// A partner application: provisions databases in its account's workspace.
    #[arg(long)]
    partner: bool,
    /// The account (workspace) the application belongs to (required for partners).
    #[arg(long)]
    account: Option<String>,
    /// A partner's claim page (`claimUrl` links to it with `?token=`).
    #[arg(long)]
    claim_uri: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Create a new data-encryption key, re-encrypt every stored secret and token with
    /// it, then retire the older keys (they keep decrypting until nothing needs them).
    Rotate,
    /// List the data keys and how many rows each still seals.
    Status,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create the next signing key. It is published at once, signs after the delay, and
    /// the current key stays published until its tokens have expired.
    Rotate {
        /// EdDSA or ES256 (default: the configured algorithm).
        #[arg(long)]
        algorithm: Option<String>,
        /// Seconds before the new key starts signing; keep it above the nodes' key refresh
        /// interval and the JWKS cache time of your resource servers.
        #[arg(long, default_value_t = 300)]
        activate_in_secs: i64,
    },
    /// List the published keys.
    List,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // The partner commands are clients of a Keyward server; they need none of its settings.
    let command = match cli.command {
        Command::CreateDb(args) => {
            let code = keyward_partner::create_db(args).await?;
            if code != 0 {
                std::process::exit(code);
            }
            return Ok(());
        }
        Command::Partner(PartnerCommand::Serve(args)) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            return keyward_partner::serve(args).await;
        }
        other => other,
    };
    let settings = crate::config::load(cli.config.as_deref())?;
    init_tracing(&settings);
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let url = settings.database_url();
            let store = keyward_store::connect(&url, 2)
                .await
                .context("connecting to the store")?;
            store.migrate().await.context("migrating")?;
            println!("migrations applied to the {} store", store.backend());
            Ok(())
        }
        Command::Applications(command) => applications(settings, command).await,
        Command::Keys(command) => keys(settings, command).await,
        Command::Vault(command) => vault(settings, command).await,
        Command::Openapi => {
            println!("{}", keyward_server::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Import(args) => {
            let code = crate::import_cmd::import(Some(settings), args).await?;
            if code != 0 {
                std::process::exit(i32::from(code));
            }
            Ok(())
        }
        Command::Sync(args) => {
            let code = crate::import_cmd::sync(settings, args).await?;
            if code != 0 {
                std::process::exit(i32::from(code));
            }
            Ok(())
        }
        Command::CreateDb(_) | Command::Partner(_) => Ok(()),
    }
}

fn init_tracing(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if settings.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listen = settings.listen.clone();
    let (state, report) = keyward_server::prepare(settings).await?;
    if let Some((client_id, secret)) = report.generated_admin {
        println!("Created the admin application (shown once, store it now):");
        println!("  client_id:     {client_id}");
        println!("  client_secret: {secret}");
        println!("  audience:      {}", state.management_audience);
    }
    let refresh = keyward_server::spawn_key_refresh(state.clone());
    let reaper = keyward_server::provisioning::reaper::spawn(state.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(listen = %listen, issuer = state.settings.issuer(), store = state.store.backend(), "keyward is serving");
    axum::serve(
        listener,
        keyward_server::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    refresh.abort();
    reaper.abort();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// A state for administration commands: connected and migrated, not bootstrapped.
async fn admin_state(settings: Settings) -> anyhow::Result<AppState> {
    let (state, report) = keyward_server::prepare(settings).await?;
    if let Some((client_id, secret)) = report.generated_admin {
        println!("Created the admin application (shown once): client_id={client_id} client_secret={secret}");
    }
    Ok(state)
}

async fn record(state: &AppState, action: &str, target_type: &str, target_id: &str) {
    let event = AuditEvent {
        id: new_id(IdKind::AuditEvent),
        occurred_at: OffsetDateTime::now_utc(),
        actor_type: "cli".into(),
        actor_id: std::env::var("USER").ok(),
        action: action.into(),
        target_type: target_type.into(),
        target_id: Some(target_id.into()),
        outcome: AuditOutcome::Success,
        reason: None,
        request_id: None,
        details: serde_json::json!({}),
    };
    if let Err(e) = state.store.append_audit_event(&event).await {
        tracing::error!(error = %e, "could not write audit event");
    }
}

fn api_error(e: keyward_server::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{} ({e:?})", e.code())
}

async fn applications(settings: Settings, command: ApplicationsCommand) -> anyhow::Result<()> {
    let state = admin_state(settings).await?;
    match command {
        ApplicationsCommand::Create(args) => {
            let kind = proto::ApplicationKind::parse(&args.kind)
                .with_context(|| format!("unknown kind {:?} (m2m, web, spa, native)", args.kind))?;
            let mut grants = Vec::new();
            for grant in &args.grants {
                let (resource, scopes) = grant.split_once('=').with_context(|| {
                    format!("--grant {grant:?}: expected RESOURCE=scope1,scope2")
                })?;
                let resource = if resource == "management" {
                    state.management_audience.to_string()
                } else {
                    resource.to_owned()
                };
                grants.push(proto::ResourceGrant {
                    resource,
                    scopes: scopes
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                });
            }
            let body = proto::CreateApplication {
                name: args.name,
                kind,
                description: None,
                redirect_uris: args.redirect_uris,
                post_logout_redirect_uris: Vec::new(),
                grant_types: None,
                grants,
                first_party: args.first_party,
                partner: args.partner,
                claim_uri: args.claim_uri,
                account_id: args.account,
                access_token_ttl_secs: None,
            };
            let (app, secret) = keyward_server::api::applications::build_application(&state, body)
                .await
                .map_err(api_error)?;
            state.store.create_application(&app).await?;
            record(&state, "application.create", "application", &app.id).await;
            if args.json {
                let app_json = serde_json::to_value(proto::Application::from(app.clone()))?;
                println!(
                    "{}",
                    serde_json::json!({ "application": app_json, "client_secret": secret })
                );
            } else {
                println!("client_id:     {}", app.client_id);
                if let Some(secret) = secret {
                    println!("client_secret: {secret}   (shown once)");
                }
                for ResourceGrant { resource, scopes } in &app.grants {
                    println!("grant:         {resource} [{}]", scopes.join(" "));
                }
            }
            Ok(())
        }
        ApplicationsCommand::RotateSecret {
            client_id,
            expire_existing_after_secs,
        } => {
            let app = state
                .store
                .get_application_by_client_id(&client_id)
                .await?
                .with_context(|| format!("no application with client id {client_id}"))?;
            let (secret, plain) = keyward_server::api::applications::add_secret(
                &state,
                &app,
                expire_existing_after_secs,
            )
            .await
            .map_err(api_error)?;
            record(&state, "application.secret.create", "application", &app.id).await;
            println!("secret_id:     {}", secret.id);
            println!("client_secret: {plain}   (shown once)");
            Ok(())
        }
    }
}

async fn vault(settings: Settings, command: VaultCommand) -> anyhow::Result<()> {
    let state = admin_state(settings).await?;
    match command {
        VaultCommand::Rotate => {
            let rotation = keyward_server::vault::rotate(&state)
                .await
                .map_err(api_error)?;
            record(&state, "vault.rotate", "data_key", &rotation.new_key_id).await;
            println!("new key:                 {}", rotation.new_key_id);
            println!(
                "client secrets resealed: {}",
                rotation.client_secrets_resealed
            );
            println!("connections resealed:    {}", rotation.connections_resealed);
            println!("older keys retired:      {}", rotation.keys_retired);
            if rotation.unreadable > 0 {
                println!(
                    "unreadable connections:  {} (left as they are; their users must reconnect)",
                    rotation.unreadable
                );
            }
            Ok(())
        }
        VaultCommand::Status => {
            let current = state.vault().map_err(api_error)?.current_key_id();
            for key in state.store.list_data_keys().await? {
                let marker = if key.id == current {
                    "current"
                } else if key.retired_at.is_some() {
                    "retired"
                } else {
                    "active"
                };
                println!("{}  {:8} created {}", key.id, marker, key.created_at);
            }
            let stale_apps = state
                .store
                .external_applications_sealed_with_other_keys(&current, 1000)
                .await?
                .len();
            let stale_connections = state
                .store
                .external_connections_sealed_with_other_keys(&current, 1000)
                .await?
                .len();
            println!("rows under older keys: {stale_apps} client secrets, {stale_connections} connections (counted up to 1000)");
            Ok(())
        }
    }
}

async fn keys(settings: Settings, command: KeysCommand) -> anyhow::Result<()> {
    let default_algorithm = settings.signing_algorithm.clone();
    let state = admin_state(settings).await?;
    match command {
        KeysCommand::Rotate {
            algorithm,
            activate_in_secs,
        } => {
            let name = algorithm.unwrap_or(default_algorithm);
            let algorithm = KeyAlgorithm::parse(&name)
                .with_context(|| format!("unknown algorithm {name:?}"))?;
            anyhow::ensure!(
                activate_in_secs >= 0,
                "--activate-in-secs must not be negative"
            );
            let key = keyward_server::bootstrap::rotate_signing_key(
                &state,
                algorithm,
                time::Duration::seconds(activate_in_secs),
            )
            .await?;
            record(&state, "signing_key.rotate", "signing_key", &key.id).await;
            println!("kid:          {}", key.id);
            println!("algorithm:    {}", key.algorithm);
            println!("activates_at: {}", key.activates_at);
            Ok(())
        }
        KeysCommand::List => {
            for key in state
                .store
                .published_signing_keys(OffsetDateTime::now_utc())
                .await?
            {
                println!(
                    "{}  {:6}  activates {}  retires {}",
                    key.id,
                    key.algorithm,
                    key.activates_at,
                    key.retires_at
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
    }
}

//! Start-up: the master key, the first signing key, the management API resource and the
//! bootstrap admin application. Every step is idempotent, so each node runs it at start.

use std::path::Path;

use keyward_core::crypto::MasterKey;
use keyward_core::id::{new_id, IdKind};
use keyward_core::keys::{generate_signing_key, KeyAlgorithm};
use keyward_core::model::{ApiResource, Application, ClientSecret, ResourceGrant, ScopeDefinition};
use keyward_core::scope::MANAGEMENT_SCOPES;
use keyward_core::secret::{generate_client_secret, secret_digest, secret_hint, verify_secret};
use keyward_core::{ApplicationKind, StoreError};
use thiserror::Error;
use time::OffsetDateTime;

use crate::api::resources::DEFAULT_RESOURCE_TTL_SECS;
use crate::settings::Settings;
use crate::state::AppState;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

/// Reads the master secret from the settings or, in development, from
/// `{data_dir}/master.key`, generating that file on first start.
pub fn load_master_key(settings: &Settings) -> Result<MasterKey, StartError> {
    let secret = match &settings.master_secret {
        Some(secret) => secret.clone(),
        None => read_or_create_master_file(&settings.data_dir)?,
    };
    let mut key =
        MasterKey::new(&secret).map_err(|e| StartError::Config(format!("master secret: {e}")))?;
    for previous in &settings.previous_master_secrets {
        key = key
            .with_previous(previous)
            .map_err(|e| StartError::Config(format!("previous master secret: {e}")))?;
    }
    Ok(key)
}

fn read_or_create_master_file(data_dir: &Path) -> Result<String, StartError> {
    let io = |source| StartError::DataDir {
        path: data_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let path = data_dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(secret) => Ok(secret.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = keyward_core::secret::random_token(32);
            write_private_file(&path, &secret).map_err(io)?;
            tracing::warn!(path = %path.display(), "generated a master secret; set KEYWARD_MASTER_SECRET in production");
            Ok(secret)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// What bootstrap created that the operator must see once.
#[derive(Debug, Default)]
pub struct BootstrapReport {
    /// `(client_id, client_secret)` of a newly generated admin application.
    pub generated_admin: Option<(String, String)>,
}

pub async fn bootstrap(state: &AppState) -> Result<BootstrapReport, StartError> {
    let settings = &state.settings;
    let algorithm = KeyAlgorithm::parse(&settings.signing_algorithm).ok_or_else(|| {
        StartError::Config(format!(
            "unknown signing algorithm {:?} (EdDSA or ES256)",
            settings.signing_algorithm
        ))
    })?;
    let now = OffsetDateTime::now_utc();
    let first_key = generate_signing_key(algorithm, &state.master, now, now)
        .map_err(|e| StartError::Config(e.to_string()))?;
    if state.store.insert_first_signing_key(&first_key).await? {
        tracing::info!(kid = %first_key.id, algorithm = algorithm.as_str(), "created the first signing key");
    }
    state.reload_keys().await?;
    crate::vault::ensure(state)
        .await
        .map_err(|e| StartError::Config(format!("token vault: {e:?}")))?;
    ensure_management_resource(state, now).await?;
    ensure_provisioning_resource(state, now).await?;
    let report = ensure_admin_application(state, now).await?;
    Ok(report)
}

async fn ensure_management_resource(
    state: &AppState,
    now: OffsetDateTime,
) -> Result<(), StartError> {
    let identifier = state.management_audience.to_string();
    let scopes: Vec<ScopeDefinition> = MANAGEMENT_SCOPES
        .iter()
        .map(|(name, description)| ScopeDefinition {
            name: (*name).to_owned(),
            description: Some((*description).to_owned()),
        })
        .collect();
    match state.store.get_resource_by_identifier(&identifier).await? {
        Some(mut existing) => {
            // A newer version may define more management scopes.
            if existing.scopes != scopes || !existing.management {
                existing.scopes = scopes;
                existing.management = true;
                existing.updated_at = now;
                state.store.update_resource(&existing).await?;
            }
            Ok(())
        }
        None => {
            let resource = ApiResource {
                id: new_id(IdKind::ApiResource),
                identifier,
                name: "Keyward Management API".into(),
                scopes,
                access_token_ttl_secs: DEFAULT_RESOURCE_TTL_SECS,
                management: true,
                created_at: now,
                updated_at: now,
            };
            match state.store.create_resource(&resource).await {
                // Another node created it at the same moment.
                Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// The provisioning API (`/v1`): partners get integration tokens for it.
async fn ensure_provisioning_resource(
    state: &AppState,
    now: OffsetDateTime,
) -> Result<(), StartError> {
    let identifier = state.provisioning_audience.to_string();
    if state
        .store
        .get_resource_by_identifier(&identifier)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let scope = |name: &str, description: &str| ScopeDefinition {
        name: name.to_owned(),
        description: Some(description.to_owned()),
    };
    let resource = ApiResource {
        id: new_id(IdKind::ApiResource),
        identifier,
        name: "Keyward Provisioning API".into(),
        scopes: vec![
            scope("projects:read", "Read projects, databases and regions"),
            scope(
                "projects:write",
                "Create, change, transfer and delete projects",
            ),
        ],
        access_token_ttl_secs: DEFAULT_RESOURCE_TTL_SECS,
        management: false,
        created_at: now,
        updated_at: now,
    };
    match state.store.create_resource(&resource).await {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn admin_application(
    id: String,
    client_id: String,
    audience: &str,
    now: OffsetDateTime,
) -> Application {
    Application {
        id,
        client_id,
        name: "Keyward admin".into(),
        description: Some(
            "Bootstrap machine-to-machine client holding every management scope".into(),
        ),
        kind: ApplicationKind::M2m,
        redirect_uris: Vec::new(),
        post_logout_redirect_uris: Vec::new(),
        grant_types: vec!["client_credentials".into()],
        grants: vec![ResourceGrant {
            resource: audience.to_owned(),
            scopes: MANAGEMENT_SCOPES
                .iter()
                .map(|(name, _)| (*name).to_owned())
                .collect(),
        }],
        first_party: true,
        partner: false,
        claim_uri: None,
        account_id: None,
        access_token_ttl_secs: None,
        secrets: Vec::new(),
        created_at: now,
        updated_at: now,
    }
}

fn secret_record(application_id: &str, plain: &str, now: OffsetDateTime) -> ClientSecret {
    ClientSecret {
        id: new_id(IdKind::ClientSecret),
        application_id: application_id.to_owned(),
        digest: secret_digest(plain),
        hint: secret_hint(plain),
        created_at: now,
        expires_at: None,
    }
}

async fn ensure_admin_application(
    state: &AppState,
    now: OffsetDateTime,
) -> Result<BootstrapReport, StartError> {
    let settings = &state.settings;
    match (
        &settings.bootstrap_client_id,
        &settings.bootstrap_client_secret,
    ) {
        (Some(client_id), Some(secret)) => {
            if secret.len() < 32 {
                return Err(StartError::Config(
                    "KEYWARD_BOOTSTRAP_CLIENT_SECRET must be at least 32 characters".into(),
                ));
            }
            match state.store.get_application_by_client_id(client_id).await? {
                Some(app) => {
                    let now_live = app
                        .secrets
                        .iter()
                        .filter(|s| s.is_live(now))
                        .map(|s| s.digest.as_slice());
                    if !verify_secret(secret, now_live) {
                        state
                            .store
                            .add_client_secret(&secret_record(&app.id, secret, now), None)
                            .await?;
                        tracing::info!(
                            client_id,
                            "added the configured bootstrap secret to the admin application"
                        );
                    }
                }
                None => {
                    let id = new_id(IdKind::Application);
                    let mut app = admin_application(
                        id.clone(),
                        client_id.clone(),
                        &state.management_audience,
                        now,
                    );
                    app.secrets = vec![secret_record(&id, secret, now)];
                    match state.store.create_application(&app).await {
                        Ok(()) => {
                            tracing::info!(client_id, "created the bootstrap admin application")
                        }
                        Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(BootstrapReport::default())
        }
        (None, None) => {
            let existing = state
                .store
                .list_applications(&keyward_core::store::PageRequest {
                    cursor: None,
                    limit: 1,
                })
                .await?;
            if !existing.is_empty() {
                return Ok(BootstrapReport::default());
            }
            let id = new_id(IdKind::Application);
            let plain = generate_client_secret();
            let mut app =
                admin_application(id.clone(), id.clone(), &state.management_audience, now);
            app.secrets = vec![secret_record(&id, &plain, now)];
            state.store.create_application(&app).await?;
            Ok(BootstrapReport {
                generated_admin: Some((id, plain)),
            })
        }
        _ => Err(StartError::Config(
            "set both KEYWARD_BOOTSTRAP_CLIENT_ID and KEYWARD_BOOTSTRAP_CLIENT_SECRET, or neither"
                .into(),
        )),
    }
}

/// Longest access-token lifetime the server issues (see `validate::token_ttl`): a
/// superseded key stays published this long after its successor activates.
pub const MAX_TOKEN_TTL: time::Duration = time::Duration::days(1);

/// Creates a new signing key that activates after `activate_in` and schedules the
/// retirement of the current keys once every token they signed has expired.
pub async fn rotate_signing_key(
    state: &AppState,
    algorithm: KeyAlgorithm,
    activate_in: time::Duration,
) -> Result<keyward_core::model::SigningKey, StartError> {
    let now = OffsetDateTime::now_utc();
    let activates_at = now + activate_in;
    let key = generate_signing_key(algorithm, &state.master, now, activates_at)
        .map_err(|e| StartError::Config(e.to_string()))?;
    state
        .store
        .rotate_signing_key(&key, activates_at + MAX_TOKEN_TTL)
        .await?;
    Ok(key)
}

//! Creating and dropping the real databases behind projects.
//!
//! Order of work, so that a failure or crash at any point leaves nothing behind:
//! 1. the rows go in first, with the project `provisioning` and scheduled for the reaper
//!    a few minutes out (`PROVISIONING_DEADLINE_SECS`);
//! 2. the role and database are created; on failure the cluster side is cleaned up at
//!    once and the rows removed;
//! 3. the project becomes `active` and its schedule moves to its expiry.
//!
//! A crash between 1 and 3 leaves a `provisioning` project that the reaper drops (role,
//! database and rows) when its deadline passes.

use keyward_core::id::{new_id, IdKind};
use keyward_core::project::{
    cluster_names, connection_role, DatabaseConnection, DatabaseStatus, Project, ProjectDatabase,
    ProjectStatus, PROVISIONING_DEADLINE_SECS,
};
use keyward_core::secret::{random_token, secret_digest};
use keyward_proto::provisioning as wire;
use keyward_provision::{new_password, Cluster};
use time::{Duration, OffsetDateTime};

use crate::error::ApiError;
use crate::state::AppState;

/// A freshly created database and the one time its password is shown.
pub struct Created {
    pub database: ProjectDatabase,
    pub connection: DatabaseConnection,
    pub password: String,
}

/// A new project and the plain claim token (only in the create response).
pub struct CreatedProject {
    pub project: Project,
    pub created: Created,
    pub claim_token: Option<String>,
}

fn cluster_error(e: keyward_provision::ProvisionError) -> ApiError {
    tracing::error!(error = %e, "database provisioning failed");
    ApiError::Unavailable {
        code: "provisioning_failed",
        detail: "the database could not be created in this region; try again later".into(),
    }
}

pub fn region_cluster<'a>(state: &'a AppState, region: &str) -> Result<&'a Cluster, ApiError> {
    state
        .regions
        .get(region)
        .ok_or_else(|| ApiError::Unavailable {
            code: "region_unavailable",
            detail: format!("region {region:?} is not configured on this server"),
        })
}

fn new_database(
    project_id: &str,
    name: &str,
    region: &str,
    is_default: bool,
    now: OffsetDateTime,
) -> (ProjectDatabase, DatabaseConnection) {
    let id = new_id(IdKind::Database);
    let (database_name, owner_role) = cluster_names(&id);
    let database = ProjectDatabase {
        id: id.clone(),
        project_id: project_id.to_owned(),
        name: name.to_owned(),
        region: region.to_owned(),
        database_name,
        owner_role: owner_role.clone(),
        status: DatabaseStatus::Provisioning,
        is_default,
        created_at: now,
    };
    let connection = DatabaseConnection {
        id: new_id(IdKind::Connection),
        database_id: id,
        name: "default".into(),
        role_name: owner_role,
        is_owner: true,
        created_at: now,
        rotated_at: None,
    };
    (database, connection)
}

/// A failed creation, and whether the cluster side was undone (only then may the rows
/// that name it go).
struct CreateFailure {
    error: ApiError,
    cleaned_up: bool,
}

/// Creates the database and its owner role; on failure drops what the cluster made.
async fn create_in_cluster(
    cluster: &Cluster,
    database: &ProjectDatabase,
    password: &str,
) -> Result<(), CreateFailure> {
    let Err(e) = cluster
        .create_database(&database.database_name, &database.owner_role, password)
        .await
    else {
        return Ok(());
    };
    let cleanup = cluster
        .drop_database(
            &database.database_name,
            std::slice::from_ref(&database.owner_role),
        )
        .await;
    if let Err(cleanup) = &cleanup {
        tracing::error!(error = %cleanup, database = %database.id, "cleanup after a failed creation failed");
    }
    Err(CreateFailure {
        error: cluster_error(e),
        cleaned_up: cleanup.is_ok(),
    })
}

/// Creates a project with its default database in `cluster`'s region.
pub async fn create_project(
    state: &AppState,
    cluster: &Cluster,
    account_id: &str,
    application_id: Option<&str>,
    name: &str,
    expires_at: Option<OffsetDateTime>,
) -> Result<CreatedProject, ApiError> {
    let now = OffsetDateTime::now_utc();
    let region = cluster.region().id.clone();
    let claim_token = expires_at.map(|_| random_token(32));
    let project = Project {
        id: new_id(IdKind::Project),
        name: name.to_owned(),
        account_id: account_id.to_owned(),
        application_id: application_id.map(str::to_owned),
        region: region.clone(),
        status: ProjectStatus::Provisioning,
        claim_digest: claim_token.as_deref().map(secret_digest),
        expires_at,
        claimed_at: None,
        created_at: now,
        updated_at: now,
    };
    let (database, connection) = new_database(&project.id, name, &region, true, now);
    let deadline = now + Duration::seconds(PROVISIONING_DEADLINE_SECS);
    state
        .store
        .create_project(&project, &database, &connection, deadline)
        .await?;
    let password = new_password();
    if let Err(failure) = create_in_cluster(cluster, &database, &password).await {
        if failure.cleaned_up {
            if let Err(store) = state.store.delete_project(&project.id).await {
                tracing::error!(error = %store, project = %project.id, "could not remove a failed project's rows; the reaper will");
            }
        } else if let Err(store) = state.store.mark_project_deleting(&project.id, now).await {
            // Left as is, the provisioning deadline brings the reaper anyway.
            tracing::error!(error = %store, project = %project.id, "could not schedule the clean-up");
        }
        return Err(failure.error);
    }
    state.store.activate_project(&project.id, now).await?;
    Ok(CreatedProject {
        project: Project {
            status: ProjectStatus::Active,
            ..project
        },
        created: Created {
            database: ProjectDatabase {
                status: DatabaseStatus::Ready,
                ..database
            },
            connection,
            password,
        },
        claim_token,
    })
}

/// Adds a database to an existing project.
pub async fn add_database(
    state: &AppState,
    project: &Project,
    name: &str,
) -> Result<Created, ApiError> {
    let cluster = region_cluster(state, &project.region)?;
    let now = OffsetDateTime::now_utc();
    let (database, connection) = new_database(&project.id, name, &project.region, false, now);
    state.store.add_database(&database, &connection).await?;
    let password = new_password();
    if let Err(failure) = create_in_cluster(cluster, &database, &password).await {
        // Without a clean cluster the row stays (status provisioning) and names what to
        // drop; deleting the database or its project drops it.
        if failure.cleaned_up {
            if let Err(store) = state.store.delete_database(&database.id).await {
                tracing::error!(error = %store, database = %database.id, "could not remove a failed database row");
            }
        }
        return Err(failure.error);
    }
    state
        .store
        .set_database_status(&database.id, DatabaseStatus::Ready)
        .await?;
    Ok(Created {
        database: ProjectDatabase {
            status: DatabaseStatus::Ready,
            ..database
        },
        connection,
        password,
    })
}

/// New credentials for a database: a login role acting as its owner.
pub async fn add_connection(
    state: &AppState,
    database: &ProjectDatabase,
    name: &str,
) -> Result<(DatabaseConnection, String), ApiError> {
    let cluster = region_cluster(state, &database.region)?;
    let now = OffsetDateTime::now_utc();
    let id = new_id(IdKind::Connection);
    let connection = DatabaseConnection {
        role_name: connection_role(&id),
        id,
        database_id: database.id.clone(),
        name: name.to_owned(),
        is_owner: false,
        created_at: now,
        rotated_at: None,
    };
    let password = new_password();
    cluster
        .create_login_role(
            &database.database_name,
            &database.owner_role,
            &connection.role_name,
            &password,
        )
        .await
        .map_err(cluster_error)?;
    if let Err(e) = state.store.add_connection(&connection).await {
        let _ = cluster
            .drop_login_role(&database.database_name, &connection.role_name)
            .await;
        return Err(e.into());
    }
    Ok((connection, password))
}

/// A new password for a connection's role; its open sessions end.
pub async fn rotate_connection(
    state: &AppState,
    database: &ProjectDatabase,
    connection: &DatabaseConnection,
) -> Result<String, ApiError> {
    let cluster = region_cluster(state, &database.region)?;
    let password = new_password();
    cluster
        .set_password(&connection.role_name, &password)
        .await
        .map_err(cluster_error)?;
    state
        .store
        .connection_rotated(&connection.id, OffsetDateTime::now_utc())
        .await?;
    Ok(password)
}

pub async fn delete_connection(
    state: &AppState,
    database: &ProjectDatabase,
    connection: &DatabaseConnection,
) -> Result<(), ApiError> {
    let cluster = region_cluster(state, &database.region)?;
    cluster
        .drop_login_role(&database.database_name, &connection.role_name)
        .await
        .map_err(cluster_error)?;
    state.store.delete_connection(&connection.id).await?;
    Ok(())
}

/// Drops one database (and every role of it) and removes its rows.
pub async fn drop_database(state: &AppState, database: &ProjectDatabase) -> Result<(), String> {
    let cluster = state
        .regions
        .get(&database.region)
        .ok_or_else(|| format!("region {:?} is not configured", database.region))?;
    let connections = state
        .store
        .list_connections(&database.id)
        .await
        .map_err(|e| e.to_string())?;
    let mut roles: Vec<String> = connections
        .iter()
        .filter(|c| !c.is_owner)
        .map(|c| c.role_name.clone())
        .collect();
    roles.push(database.owner_role.clone());
    cluster
        .drop_database(&database.database_name, &roles)
        .await
        .map_err(|e| e.to_string())?;
    state
        .store
        .delete_database(&database.id)
        .await
        .map_err(|e| e.to_string())
}

/// Drops every database of the project, then its rows. Idempotent, so the reaper can
/// retry it after a partial failure.
pub async fn drop_project(state: &AppState, project_id: &str) -> Result<(), String> {
    let databases = state
        .store
        .list_databases(project_id)
        .await
        .map_err(|e| e.to_string())?;
    for database in &databases {
        drop_database(state, database).await?;
    }
    state
        .store
        .delete_project(project_id)
        .await
        .map_err(|e| e.to_string())
}

// ---- wire shapes --------------------------------------------------------------------------

pub fn region_ref(state: &AppState, region: &str) -> wire::RegionRef {
    wire::RegionRef {
        id: region.to_owned(),
        name: state
            .regions
            .get(region)
            .map(|c| c.region().display_name().to_owned())
            .unwrap_or_else(|| region.to_owned()),
    }
}

/// A connection as the API shows it; `password` only right after creation or rotation.
pub fn connection_view(
    state: &AppState,
    database: &ProjectDatabase,
    connection: &DatabaseConnection,
    password: Option<&str>,
) -> wire::Connection {
    let cluster = state.regions.get(&database.region);
    let (host, port) = cluster
        .map(|c| c.endpoint())
        .unwrap_or_else(|| (String::new(), 0));
    wire::Connection {
        id: connection.id.clone(),
        database_id: database.id.clone(),
        name: connection.name.clone(),
        endpoints: wire::Endpoints {
            direct: wire::Endpoint { host, port },
        },
        user: connection.role_name.clone(),
        database: database.database_name.clone(),
        created_at: connection.created_at,
        rotated_at: connection.rotated_at,
        password: password.map(str::to_owned),
        connection_string: password.and_then(|p| {
            cluster.map(|c| c.connection_string(&connection.role_name, p, &database.database_name))
        }),
    }
}

/// A database with its connections; the connection just created (with its password)
/// fills `connectionString`.
pub async fn database_view(
    state: &AppState,
    database: &ProjectDatabase,
    fresh: Option<(&DatabaseConnection, &str)>,
) -> Result<wire::Database, ApiError> {
    let connections = state.store.list_connections(&database.id).await?;
    let mut views: Vec<wire::Connection> = Vec::with_capacity(connections.len());
    let mut connection_string = None;
    for connection in &connections {
        let password = fresh.filter(|(c, _)| c.id == connection.id).map(|(_, p)| p);
        let view = connection_view(state, database, connection, password);
        if view.connection_string.is_some() {
            connection_string = view.connection_string.clone();
        }
        views.push(view);
    }
    Ok(wire::Database {
        id: database.id.clone(),
        kind: "database".into(),
        project_id: database.project_id.clone(),
        name: database.name.clone(),
        status: database.status.as_str().into(),
        is_default: database.is_default,
        region: region_ref(state, &database.region),
        created_at: database.created_at,
        connection_string,
        connections: views,
    })
}

/// The claim link: the partner's claim page with the token appended.
pub fn claim_url(claim_uri: &str, token: &str) -> String {
    let separator = if claim_uri.contains('?') { '&' } else { '?' };
    format!("{claim_uri}{separator}token={token}")
}

pub async fn project_view(
    state: &AppState,
    project: &Project,
    database: Option<wire::Database>,
    claim_url: Option<String>,
) -> Result<wire::Project, ApiError> {
    let workspace_name = state
        .store
        .get_account(&project.account_id)
        .await?
        .map(|a| a.name)
        .unwrap_or_default();
    Ok(wire::Project {
        id: project.id.clone(),
        kind: "project".into(),
        name: project.name.clone(),
        status: project.status.as_str().into(),
        workspace: wire::WorkspaceRef {
            id: project.account_id.clone(),
            name: workspace_name,
        },
        region: region_ref(state, &project.region),
        created_at: project.created_at,
        expires_at: project.expires_at,
        claimed_at: project.claimed_at,
        claim_url,
        database,
    })
}

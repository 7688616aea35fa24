//! `/v1` handlers: authorize the caller, validate, call `service`, answer in the
//! provisioning API's camelCase shapes, audit every mutation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::authz::WORKSPACE_ADMIN;
use keyward_core::id::IdKind;
use keyward_core::project::{
    Project, ProjectDatabase, ProjectStatus, TransferOutcome, DEFAULT_TTL_SECS, MAX_TTL_SECS,
    MIN_TTL_SECS,
};
use keyward_core::secret::secret_digest;
use keyward_core::validate;
use keyward_proto::provisioning as wire;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::caller::{require_workspace_admin, WorkspaceCaller, PROJECTS_READ, PROJECTS_WRITE};
use super::service;
use crate::api::{checked_id, page_request};
use crate::audit::Audit;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, RequestId};
use crate::state::AppState;

type Caller = Result<WorkspaceCaller, ApiError>;

fn start(
    state: &AppState,
    request_id: &RequestId,
    action: &'static str,
    target_type: &'static str,
    caller: &Caller,
) -> Audit {
    let mut audit = Audit::start(state, request_id, action, target_type);
    if let Ok(caller) = caller {
        audit.actor_as(caller.actor_type(), caller.actor_id());
        audit.detail("account_id", caller.account_id.clone());
    }
    audit
}

/// The project if it belongs to the caller's workspace; 404 otherwise, so other
/// workspaces cannot even learn that it exists.
async fn owned_project(
    state: &AppState,
    caller: &WorkspaceCaller,
    id: &str,
) -> Result<Project, ApiError> {
    checked_id(IdKind::Project, id, "project")?;
    match state.store.get_project(id).await? {
        Some(project) if project.account_id == caller.account_id => Ok(project),
        _ => Err(ApiError::NotFound("project")),
    }
}

async fn owned_database(
    state: &AppState,
    caller: &WorkspaceCaller,
    id: &str,
) -> Result<(Project, ProjectDatabase), ApiError> {
    checked_id(IdKind::Database, id, "database")?;
    let database = state
        .store
        .get_database(id)
        .await?
        .ok_or(ApiError::NotFound("database"))?;
    let project = owned_project(state, caller, &database.project_id)
        .await
        .map_err(|_| ApiError::NotFound("database"))?;
    Ok((project, database))
}

fn require_active(project: &Project) -> Result<(), ApiError> {
    if project.status == ProjectStatus::Active {
        Ok(())
    } else {
        Err(ApiError::Conflict {
            code: "project_not_active",
            detail: format!("the project is {}", project.status.as_str()),
        })
    }
}

fn no_regions() -> ApiError {
    ApiError::Unavailable {
        code: "provisioning_not_configured",
        detail: "no database region is configured: add a [[regions]] entry (id, admin_url) \
                 to the configuration file or set KEYWARD_REGIONS"
            .into(),
    }
}

#[utoipa::path(operation_id = "regions_list", get, path = "/v1/regions", tag = "provisioning",
    responses((status = 200, body = wire::Data<Vec<wire::Region>>)),
    security(("bearer" = ["projects:read"])))]
pub async fn regions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<wire::Data<Vec<wire::Region>>>, ApiError> {
    caller?.require(PROJECTS_READ)?;
    let mut regions = Vec::new();
    for cluster in state.regions.all() {
        let up = tokio::time::timeout(std::time::Duration::from_secs(2), cluster.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        regions.push(wire::Region {
            id: cluster.region().id.clone(),
            name: cluster.region().display_name().to_owned(),
            status: if up { "available" } else { "unavailable" }.into(),
        });
    }
    Ok(Json(wire::Data { data: regions }))
}

#[utoipa::path(operation_id = "projects_create", post, path = "/v1/projects", tag = "provisioning",
    request_body = wire::CreateProject,
    responses((status = 201, body = wire::Data<wire::Project>), (status = 422, body = keyward_proto::Problem),
              (status = 503, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:write"])))]
pub async fn create_project(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    body: Result<ApiJson<wire::CreateProject>, ApiError>,
) -> Result<(StatusCode, Json<wire::Data<wire::Project>>), ApiError> {
    let mut audit = start(&state, &request_id, "project.create", "project", &caller);
    let result = async {
        let caller = caller?;
        caller.require(PROJECTS_WRITE)?;
        let ApiJson(body) = body?;
        let name = validate::display_name("name", &body.name)?;
        let cluster = match body.region.as_deref() {
            Some(region) => state.regions.get(region).ok_or_else(|| {
                if state.regions.all().is_empty() {
                    no_regions()
                } else {
                    ApiError::validation("region", format!("unknown region {region:?}"))
                }
            })?,
            None => state.regions.default_region().ok_or_else(no_regions)?,
        };
        // Partner projects expire unless claimed; a workspace's own projects do not.
        let expires_at = match &caller.partner {
            Some(_) => {
                let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TTL_SECS);
                if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl) {
                    return Err(ApiError::validation(
                        "ttlSeconds",
                        format!("must be between {MIN_TTL_SECS} and {MAX_TTL_SECS} seconds"),
                    ));
                }
                Some(OffsetDateTime::now_utc() + Duration::seconds(ttl))
            }
            None if body.ttl_seconds.is_some() => {
                return Err(ApiError::validation(
                    "ttlSeconds",
                    "only partner projects expire; omit ttlSeconds",
                ))
            }
            None => None,
        };
        let application_id = caller.partner.as_ref().map(|app| app.id.clone());
        let created = service::create_project(
            &state,
            cluster,
            &caller.account_id,
            application_id.as_deref(),
            &name,
            expires_at,
        )
        .await?;
        audit.target(&created.project.id);
        audit.detail("region", created.project.region.clone());
        audit.detail("database_id", created.created.database.id.clone());
        let claim_url = match (&created.claim_token, &caller.partner) {
            (Some(token), Some(app)) => app
                .claim_uri
                .as_deref()
                .map(|uri| service::claim_url(uri, token)),
            _ => None,
        };
        let database = service::database_view(
            &state,
            &created.created.database,
            Some((&created.created.connection, &created.created.password)),
        )
        .await?;
        let project =
            service::project_view(&state, &created.project, Some(database), claim_url).await?;
        Ok((StatusCode::CREATED, Json(wire::Data { data: project })))
    }
    .await;
    audit.finish(result).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(operation_id = "projects_list", get, path = "/v1/projects", tag = "provisioning",
    params(ListQuery),
    responses((status = 200, body = wire::DataPage<wire::Project>)),
    security(("bearer" = ["projects:read"])))]
pub async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<ApiQuery<ListQuery>, ApiError>,
) -> Result<Json<wire::DataPage<wire::Project>>, ApiError> {
    let caller = caller?;
    caller.require(PROJECTS_READ)?;
    let ApiQuery(query) = query?;
    let page = page_request(query.cursor, query.limit)?;
    let mut projects = state.store.list_projects(&caller.account_id, &page).await?;
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let has_more = projects.len() > limit;
    projects.truncate(limit);
    let mut data = Vec::with_capacity(projects.len());
    for project in &projects {
        data.push(service::project_view(&state, project, None, None).await?);
    }
    Ok(Json(wire::DataPage {
        pagination: wire::CursorPagination {
            next_cursor: if has_more {
                projects.last().map(|p| p.id.clone())
            } else {
                None
            },
            has_more,
        },
        data,
    }))
}

async fn default_database_view(
    state: &AppState,
    project: &Project,
) -> Result<Option<wire::Database>, ApiError> {
    let databases = state.store.list_databases(&project.id).await?;
    match databases.iter().find(|d| d.is_default) {
        Some(database) => Ok(Some(service::database_view(state, database, None).await?)),
        None => Ok(None),
    }
}

#[utoipa::path(operation_id = "projects_get", get, path = "/v1/projects/{id}", tag = "provisioning",
    responses((status = 200, body = wire::Data<wire::Project>), (status = 404, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:read"])))]
pub async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<wire::Data<wire::Project>>, ApiError> {
    let caller = caller?;
    caller.require(PROJECTS_READ)?;
    let project = owned_project(&state, &caller, &id).await?;
    let database = default_database_view(&state, &project).await?;
    let view = service::project_view(&state, &project, database, None).await?;
    Ok(Json(wire::Data { data: view }))
}

#[utoipa::path(operation_id = "projects_update", patch, path = "/v1/projects/{id}", tag = "provisioning",
    request_body = wire::UpdateProject,
    responses((status = 200, body = wire::Data<wire::Project>), (status = 404, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:write"])))]
pub async fn update_project(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<wire::UpdateProject>, ApiError>,
) -> Result<Json<wire::Data<wire::Project>>, ApiError> {
    let mut audit = start(&state, &request_id, "project.update", "project", &caller);
    audit.target(&id);
    let result = async {
        let caller = caller?;
        caller.require(PROJECTS_WRITE)?;
        let ApiJson(body) = body?;
        let mut project = owned_project(&state, &caller, &id).await?;
        if let Some(name) = body.name {
            let name = validate::display_name("name", &name)?;
            let now = OffsetDateTime::now_utc();
            state.store.rename_project(&id, &name, now).await?;
            project.name = name;
            project.updated_at = now;
        }
        let database = default_database_view(&state, &project).await?;
        let view = service::project_view(&state, &project, database, None).await?;
        Ok(Json(wire::Data { data: view }))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "projects_delete", delete, path = "/v1/projects/{id}", tag = "provisioning",
    responses((status = 204, description = "deleted: databases and roles dropped"),
              (status = 202, description = "deletion scheduled: the reaper finishes it"),
              (status = 404, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:write"])))]
pub async fn delete_project(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut audit = start(&state, &request_id, "project.delete", "project", &caller);
    audit.target(&id);
    let result = async {
        let caller = caller?;
        caller.require(PROJECTS_WRITE)?;
        owned_project(&state, &caller, &id).await?;
        let now = OffsetDateTime::now_utc();
        // Scheduled first: if the drop below fails (or this node dies), the reaper
        // finishes it.
        state.store.mark_project_deleting(&id, now).await?;
        if !state
            .store
            .lease_project(&id, now, now + Duration::seconds(super::reaper::LEASE_SECS))
            .await?
        {
            return Ok(StatusCode::ACCEPTED);
        }
        match service::drop_project(&state, &id).await {
            Ok(()) => Ok(StatusCode::NO_CONTENT),
            Err(e) => {
                tracing::warn!(project = %id, error = %e, "drop failed; the reaper will retry");
                state
                    .store
                    .reap_failed(&id, now + keyward_core::project::reap_retry_delay(0), &e)
                    .await?;
                Ok(StatusCode::ACCEPTED)
            }
        }
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "databases_list", get, path = "/v1/projects/{id}/databases", tag = "provisioning",
    responses((status = 200, body = wire::Data<Vec<wire::Database>>), (status = 404, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:read"])))]
pub async fn list_databases(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<wire::Data<Vec<wire::Database>>>, ApiError> {
    let caller = caller?;
    caller.require(PROJECTS_READ)?;
    let project = owned_project(&state, &caller, &id).await?;
    let mut data = Vec::new();
    for database in state.store.list_databases(&project.id).await? {
        data.push(service::database_view(&state, &database, None).await?);
    }
    Ok(Json(wire::Data { data }))
}

#[utoipa::path(operation_id = "databases_create", post, path = "/v1/projects/{id}/databases", tag = "provisioning",
    request_body = wire::CreateDatabase,
    responses((status = 201, body = wire::Data<wire::Database>), (status = 404, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:write"])))]
pub async fn create_database(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<wire::CreateDatabase>, ApiError>,
) -> Result<(StatusCode, Json<wire::Data<wire::Database>>), ApiError> {
    let mut audit = start(&state, &request_id, "database.create", "database", &caller);
    audit.detail("project_id", id.clone());
    let result = async {
        let caller = caller?;
        caller.require(PROJECTS_WRITE)?;
        let ApiJson(body) = body?;
        let project = owned_project(&state, &caller, &id).await?;
        require_active(&project)?;
        let name = match body.name {
            Some(name) => validate::display_name("name", &name)?,
            None => project.name.clone(),
        };
        let created = service::add_database(&state, &project, &name).await?;
        audit.target(&created.database.id);
        let view = service::database_view(
            &state,
            &created.database,
            Some((&created.connection, &created.password)),
        )
        .await?;
        Ok((StatusCode::CREATED, Json(wire::Data { data: view })))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "databases_get", get, path = "/v1/databases/{id}", tag = "provisioning",
    responses((status = 200, body = wire::Data<wire::Database>), (status = 404, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:read"])))]
pub async fn get_database(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<wire::Data<wire::Database>>, ApiError> {
    let caller = caller?;
    caller.require(PROJECTS_READ)?;
    let (_, database) = owned_database(&state, &caller, &id).await?;
    let view = service::database_view(&state, &database, None).await?;
    Ok(Json(wire::Data { data: view }))
}

#[utoipa::path(operation_id = "databases_delete", delete, path = "/v1/databases/{id}", tag = "provisioning",
    responses((status = 204), (status = 404, body = keyward_proto::Problem), (status = 409, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:write"])))]
pub async fn delete_database(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut audit = start(&state, &request_id, "database.delete", "database", &caller);
    audit.target(&id);
    let result = async {
        let caller = caller?;
        caller.require(PROJECTS_WRITE)?;
        let (_, database) = owned_database(&state, &caller, &id).await?;
        if database.is_default {
            return Err(ApiError::Conflict {
                code: "default_database",
                detail: "the default database goes with its project; delete the project".into(),
            });
        }
        service::drop_database(&state, &database)
            .await
            .map_err(|e| {
                tracing::error!(database = %id, error = %e, "dropping a database failed");
                ApiError::Unavailable {
                    code: "provisioning_failed",
                    detail: "the database could not be dropped; try again later".into(),
                }
            })?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "connections_create", post, path = "/v1/databases/{id}/connections", tag = "provisioning",
    request_body = wire::CreateConnection,
    responses((status = 201, body = wire::Data<wire::Connection>), (status = 404, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:write"])))]
pub async fn create_connection(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<wire::CreateConnection>, ApiError>,
) -> Result<(StatusCode, Json<wire::Data<wire::Connection>>), ApiError> {
    let mut audit = start(
        &state,
        &request_id,
        "connection.create",
        "connection",
        &caller,
    );
    audit.detail("database_id", id.clone());
    let result = async {
        let caller = caller?;
        caller.require(PROJECTS_WRITE)?;
        let ApiJson(body) = body?;
        let (project, database) = owned_database(&state, &caller, &id).await?;
        require_active(&project)?;
        let name = match body.name {
            Some(name) => validate::display_name("name", &name)?,
            None => "connection".to_owned(),
        };
        let (connection, password) = service::add_connection(&state, &database, &name).await?;
        audit.target(&connection.id);
        let view = service::connection_view(&state, &database, &connection, Some(&password));
        Ok((StatusCode::CREATED, Json(wire::Data { data: view })))
    }
    .await;
    audit.finish(result).await
}

async fn owned_connection(
    state: &AppState,
    caller: &WorkspaceCaller,
    id: &str,
) -> Result<(ProjectDatabase, keyward_core::project::DatabaseConnection), ApiError> {
    checked_id(IdKind::Connection, id, "connection")?;
    let connection = state
        .store
        .get_connection(id)
        .await?
        .ok_or(ApiError::NotFound("connection"))?;
    let (_, database) = owned_database(state, caller, &connection.database_id)
        .await
        .map_err(|_| ApiError::NotFound("connection"))?;
    Ok((database, connection))
}

#[utoipa::path(operation_id = "connections_rotate", post, path = "/v1/connections/{id}/rotate", tag = "provisioning",
    responses((status = 200, body = wire::Data<wire::Connection>), (status = 404, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:write"])))]
pub async fn rotate_connection(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<wire::Data<wire::Connection>>, ApiError> {
    let mut audit = start(
        &state,
        &request_id,
        "connection.rotate",
        "connection",
        &caller,
    );
    audit.target(&id);
    let result = async {
        let caller = caller?;
        caller.require(PROJECTS_WRITE)?;
        let (database, mut connection) = owned_connection(&state, &caller, &id).await?;
        let password = service::rotate_connection(&state, &database, &connection).await?;
        connection.rotated_at = Some(OffsetDateTime::now_utc());
        let view = service::connection_view(&state, &database, &connection, Some(&password));
        Ok(Json(wire::Data { data: view }))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "connections_delete", delete, path = "/v1/connections/{id}", tag = "provisioning",
    responses((status = 204), (status = 404, body = keyward_proto::Problem), (status = 409, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:write"])))]
pub async fn delete_connection(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut audit = start(
        &state,
        &request_id,
        "connection.delete",
        "connection",
        &caller,
    );
    audit.target(&id);
    let result = async {
        let caller = caller?;
        caller.require(PROJECTS_WRITE)?;
        let (database, connection) = owned_connection(&state, &caller, &id).await?;
        if connection.is_owner {
            return Err(ApiError::Conflict {
                code: "owner_connection",
                detail: "the owner's connection goes with its database; rotate it instead".into(),
            });
        }
        service::delete_connection(&state, &database, &connection).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "claims_lookup", post, path = "/v1/claims/lookup", tag = "provisioning",
    request_body = wire::ClaimLookup,
    responses((status = 200, body = wire::Data<wire::ClaimInfo>), (status = 404, body = keyward_proto::Problem),
              (status = 410, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:read"])))]
pub async fn lookup_claim(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<wire::ClaimLookup>, ApiError>,
) -> Result<Json<wire::Data<wire::ClaimInfo>>, ApiError> {
    let caller = caller?;
    caller.require(PROJECTS_READ)?;
    let partner = caller.require_partner()?;
    let ApiJson(body) = body?;
    let project = claimable_project(&state, &body.token, &partner.id).await?;
    Ok(Json(wire::Data {
        data: wire::ClaimInfo {
            project_id: project.id.clone(),
            project_name: project.name.clone(),
            partner_name: partner.name.clone(),
            region: service::region_ref(&state, &project.region),
            expires_at: project.expires_at.unwrap_or(project.created_at),
        },
    }))
}

/// The project a claim token names, if `application_id` created it and it can still be
/// claimed: 404 `claim_not_found` (unknown, claimed, another partner's, being deleted) or
/// 410 `claim_expired`.
pub async fn claimable_project(
    state: &AppState,
    token: &str,
    application_id: &str,
) -> Result<Project, ApiError> {
    let not_found = || ApiError::NotFound("claim");
    if token.is_empty() || token.len() > 256 {
        return Err(not_found());
    }
    let project = state
        .store
        .find_project_by_claim(&secret_digest(token))
        .await?
        .filter(|p| p.application_id.as_deref() == Some(application_id))
        .filter(|p| p.status == ProjectStatus::Active)
        .ok_or_else(not_found)?;
    if project.is_expired(OffsetDateTime::now_utc()) {
        return Err(ApiError::Gone {
            code: "claim_expired",
            detail: "this claim link has expired; the project is being deleted".into(),
        });
    }
    Ok(project)
}

#[utoipa::path(operation_id = "projects_transfer", post, path = "/v1/projects/{id}/transfer", tag = "provisioning",
    request_body = wire::TransferProject,
    responses((status = 200, body = wire::Data<wire::Project>), (status = 400, body = keyward_proto::Problem),
              (status = 403, body = keyward_proto::Problem), (status = 404, body = keyward_proto::Problem),
              (status = 410, body = keyward_proto::Problem)),
    security(("bearer" = ["projects:write"])))]
pub async fn transfer_project(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<wire::TransferProject>, ApiError>,
) -> Result<Json<wire::Data<wire::Project>>, ApiError> {
    let mut audit = start(&state, &request_id, "project.transfer", "project", &caller);
    audit.target(&id);
    let result = async {
        let caller = caller?;
        caller.require(PROJECTS_WRITE)?;
        let partner = caller.require_partner()?.clone();
        let ApiJson(body) = body?;
        // Visibility first: a project outside the partner's workspace is a 404 whatever
        // the recipient token says.
        owned_project(&state, &caller, &id).await?;
        let recipient =
            verify_recipient(&state, &body.recipient_access_token, &partner.client_id).await?;
        audit.detail("recipient_user_id", recipient.0.clone());
        audit.detail("to_account_id", recipient.1.clone());
        let now = OffsetDateTime::now_utc();
        let project = match state
            .store
            .transfer_project(&id, &caller.account_id, &recipient.1, now)
            .await?
        {
            TransferOutcome::Transferred(project) => project,
            TransferOutcome::NotFound => return Err(ApiError::NotFound("project")),
            TransferOutcome::Expired => {
                return Err(ApiError::Gone {
                    code: "project_expired",
                    detail: "the project expired before it was claimed".into(),
                })
            }
        };
        let database = default_database_view(&state, &project).await?;
        let view = service::project_view(&state, &project, database, None).await?;
        Ok(Json(wire::Data { data: view }))
    }
    .await;
    audit.finish(result).await
}

/// Checks a recipient token (SPEC §2): issued by us (signature, issuer, unexpired), to
/// this same partner client, with `workspace:admin`, for a user who is an owner or admin
/// of the named workspace now, from a grant that is not revoked. Returns (user, account).
async fn verify_recipient(
    state: &AppState,
    token: &str,
    partner_client_id: &str,
) -> Result<(String, String), ApiError> {
    let invalid = |detail: &str| ApiError::BadRequest {
        code: "invalid_recipient_token",
        detail: detail.to_owned(),
    };
    let keys = state.keys.snapshot();
    let claims = keyward_core::token::verify_access_token_any_audience(
        &keys,
        token,
        state.settings.issuer(),
    )
    .map_err(|e| {
        tracing::debug!(error = %e, "recipient token refused");
        invalid("the recipient access token is invalid or expired")
    })?;
    if claims.client_id != partner_client_id {
        return Err(ApiError::Forbidden {
            code: "recipient_token_wrong_client",
            detail: "the recipient token was issued to another application".into(),
        });
    }
    let scopes = keyward_core::scope::parse_scopes(&claims.scope);
    if !scopes.iter().any(|s| s == WORKSPACE_ADMIN) {
        return Err(ApiError::Forbidden {
            code: "recipient_token_scope",
            detail: "the recipient token lacks the workspace:admin scope".into(),
        });
    }
    let (Some(user_id), Some(account_id)) = (claims.uid.clone(), claims.acc.clone()) else {
        return Err(invalid("the recipient token names no user workspace"));
    };
    if let Some(grant_id) = &claims.gid {
        let active = state
            .store
            .get_grant(grant_id)
            .await?
            .is_some_and(|g| g.is_active(OffsetDateTime::now_utc()));
        if !active {
            return Err(invalid("the recipient's authorization has been revoked"));
        }
    }
    require_workspace_admin(state, &account_id, &user_id)
        .await
        .map_err(|_| ApiError::Forbidden {
            code: "recipient_not_workspace_admin",
            detail: "the recipient is not an owner or admin of the chosen workspace".into(),
        })?;
    Ok((user_id, account_id))
}

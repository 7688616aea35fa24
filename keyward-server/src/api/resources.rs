//! `/api/resources`: the APIs tokens are issued for (audiences) and their scopes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::id::{new_id, IdKind};
use keyward_core::model::{ApiResource, ScopeDefinition};
use keyward_core::scope::is_valid_scope_token;
use keyward_core::validate;
use keyward_proto as proto;
use time::OffsetDateTime;

use super::{checked_id, page_request, to_page, ListQuery};
use crate::audit::Audit;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Caller, RequestId};
use crate::state::AppState;

pub const DEFAULT_RESOURCE_TTL_SECS: i64 = 3600;

fn check_scopes(scopes: Vec<proto::ScopeDefinition>) -> Result<Vec<ScopeDefinition>, ApiError> {
    let mut checked: Vec<ScopeDefinition> = Vec::with_capacity(scopes.len());
    for scope in scopes {
        if !is_valid_scope_token(&scope.name) {
            return Err(ApiError::validation(
                "scopes",
                format!("{:?} is not a valid scope name", scope.name),
            ));
        }
        if checked.iter().any(|s| s.name == scope.name) {
            return Err(ApiError::validation(
                "scopes",
                format!("{:?} is listed twice", scope.name),
            ));
        }
        checked.push(scope.into());
    }
    Ok(checked)
}

#[utoipa::path(operation_id = "resources_create", post, path = "/api/resources", tag = "resources",
    request_body = proto::CreateApiResource,
    responses((status = 201, body = proto::ApiResource), (status = 409, body = proto::Problem),
        (status = 422, body = proto::Problem)),
    security(("bearer" = ["resources:write"])))]
pub async fn create(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<proto::CreateApiResource>, ApiError>,
) -> Result<(StatusCode, Json<proto::ApiResource>), ApiError> {
    let mut audit = Audit::start(&state, &request_id, "resource.create", "resource");
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("resources:write")?;
        let ApiJson(body) = body?;
        let now = OffsetDateTime::now_utc();
        let resource = ApiResource {
            id: new_id(IdKind::ApiResource),
            identifier: validate::resource_identifier(&body.identifier)?,
            name: validate::display_name("name", &body.name)?,
            scopes: check_scopes(body.scopes)?,
            access_token_ttl_secs: validate::token_ttl(
                "access_token_ttl_secs",
                body.access_token_ttl_secs
                    .unwrap_or(DEFAULT_RESOURCE_TTL_SECS),
            )?,
            management: false,
            created_at: now,
            updated_at: now,
        };
        audit.target(&resource.id);
        state.store.create_resource(&resource).await?;
        state.resources.invalidate_all();
        Ok((StatusCode::CREATED, Json(resource.into())))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "resources_list", get, path = "/api/resources", tag = "resources", params(ListQuery),
    responses((status = 200, body = proto::Page<proto::ApiResource>)),
    security(("bearer" = ["resources:read"])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<proto::Page<proto::ApiResource>>, ApiError> {
    caller.require("resources:read")?;
    let page = page_request(query.cursor, query.limit)?;
    let rows = state.store.list_resources(&page).await?;
    Ok(Json(to_page(rows, &page, |r| &r.id)))
}

#[utoipa::path(operation_id = "resources_get", get, path = "/api/resources/{id}", tag = "resources",
    responses((status = 200, body = proto::ApiResource), (status = 404, body = proto::Problem)),
    security(("bearer" = ["resources:read"])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::ApiResource>, ApiError> {
    caller.require("resources:read")?;
    checked_id(IdKind::ApiResource, &id, "resource")?;
    let resource = state
        .store
        .get_resource(&id)
        .await?
        .ok_or(ApiError::NotFound("resource"))?;
    Ok(Json(resource.into()))
}

#[utoipa::path(operation_id = "resources_update", patch, path = "/api/resources/{id}", tag = "resources",
    request_body = proto::UpdateApiResource,
    responses((status = 200, body = proto::ApiResource), (status = 404, body = proto::Problem)),
    security(("bearer" = ["resources:write"])))]
pub async fn update(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Result<ApiJson<proto::UpdateApiResource>, ApiError>,
) -> Result<Json<proto::ApiResource>, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "resource.update", "resource");
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("resources:write")?;
        let ApiJson(body) = body?;
        checked_id(IdKind::ApiResource, &id, "resource")?;
        let mut resource = state
            .store
            .get_resource(&id)
            .await?
            .ok_or(ApiError::NotFound("resource"))?;
        if let Some(name) = body.name {
            resource.name = validate::display_name("name", &name)?;
        }
        if let Some(scopes) = body.scopes {
            if resource.management {
                return Err(ApiError::Conflict {
                    code: "management_resource",
                    detail: "the management API's scopes are fixed".into(),
                });
            }
            resource.scopes = check_scopes(scopes)?;
        }
        if let Some(ttl) = body.access_token_ttl_secs {
            resource.access_token_ttl_secs = validate::token_ttl("access_token_ttl_secs", ttl)?;
        }
        resource.updated_at = OffsetDateTime::now_utc();
        state.store.update_resource(&resource).await?;
        state.resources.invalidate_all();
        Ok(Json(resource.into()))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "resources_delete", delete, path = "/api/resources/{id}", tag = "resources",
    responses((status = 204), (status = 404, body = proto::Problem), (status = 409, body = proto::Problem)),
    security(("bearer" = ["resources:write"])))]
pub async fn delete(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "resource.delete", "resource");
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("resources:write")?;
        checked_id(IdKind::ApiResource, &id, "resource")?;
        let resource = state
            .store
            .get_resource(&id)
            .await?
            .ok_or(ApiError::NotFound("resource"))?;
        if resource.management {
            return Err(ApiError::Conflict {
                code: "management_resource",
                detail: "the management API resource cannot be deleted".into(),
            });
        }
        state.store.delete_resource(&id).await?;
        state.resources.invalidate_all();
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audit.finish(result).await
}

//! `/api/accounts/{id}/members`: memberships with roles. `{member_id}` is the membership id
//! or the member's user id.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::id::{is_valid_id, new_id, IdKind};
use keyward_core::model::Membership;
use keyward_proto as proto;
use time::OffsetDateTime;

use super::{checked_id, page_request, to_page, ListQuery};
use crate::audit::Audit;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Caller, RequestId};
use crate::state::AppState;

fn checked_member_ref(member_ref: &str) -> Result<(), ApiError> {
    if is_valid_id(IdKind::Membership, member_ref) || is_valid_id(IdKind::User, member_ref) {
        Ok(())
    } else {
        Err(ApiError::NotFound("member"))
    }
}

#[utoipa::path(operation_id = "members_list", get, path = "/api/accounts/{id}/members", tag = "members", params(ListQuery),
    responses((status = 200, body = proto::Page<proto::Membership>), (status = 404, body = proto::Problem)),
    security(("bearer" = ["accounts:read"])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<proto::Page<proto::Membership>>, ApiError> {
    caller.require("accounts:read")?;
    checked_id(IdKind::Account, &id, "account")?;
    let page = page_request(query.cursor, query.limit)?;
    if state.store.get_account(&id).await?.is_none() {
        return Err(ApiError::NotFound("account"));
    }
    let rows = state.store.list_members(&id, &page).await?;
    Ok(Json(to_page(rows, &page, |m| &m.id)))
}

#[utoipa::path(operation_id = "members_add", post, path = "/api/accounts/{id}/members", tag = "members",
    request_body = proto::AddMember,
    responses((status = 201, body = proto::Membership), (status = 404, body = proto::Problem),
        (status = 409, body = proto::Problem)),
    security(("bearer" = ["accounts:write"])))]
pub async fn add(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Result<ApiJson<proto::AddMember>, ApiError>,
) -> Result<(StatusCode, Json<proto::Membership>), ApiError> {
    let mut audit = Audit::start(&state, &request_id, "member.add", "membership");
    audit.detail("account_id", id.clone());
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("accounts:write")?;
        let ApiJson(body) = body?;
        checked_id(IdKind::Account, &id, "account")?;
        checked_id(IdKind::User, &body.user_id, "user")?;
        audit.detail("user_id", body.user_id.clone());
        audit.detail("role", body.role.as_str());
        let now = OffsetDateTime::now_utc();
        let membership = Membership {
            id: new_id(IdKind::Membership),
            account_id: id.clone(),
            user_id: body.user_id,
            role: body.role,
            created_at: now,
            updated_at: now,
        };
        audit.target(&membership.id);
        state.store.add_member(&membership).await?;
        Ok((StatusCode::CREATED, Json(membership.into())))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "members_update", patch, path = "/api/accounts/{id}/members/{member_id}", tag = "members",
    request_body = proto::UpdateMember,
    responses((status = 200, body = proto::Membership), (status = 404, body = proto::Problem),
        (status = 409, description = "Would demote the last owner", body = proto::Problem)),
    security(("bearer" = ["accounts:write"])))]
pub async fn update(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path((id, member_id)): Path<(String, String)>,
    body: Result<ApiJson<proto::UpdateMember>, ApiError>,
) -> Result<Json<proto::Membership>, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "member.update", "membership");
    audit.target(&member_id);
    audit.detail("account_id", id.clone());
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("accounts:write")?;
        let ApiJson(body) = body?;
        checked_id(IdKind::Account, &id, "account")?;
        checked_member_ref(&member_id)?;
        audit.detail("role", body.role.as_str());
        let membership = state
            .store
            .update_member_role(&id, &member_id, body.role, OffsetDateTime::now_utc())
            .await?;
        audit.target(&membership.id);
        Ok(Json(membership.into()))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "members_remove", delete, path = "/api/accounts/{id}/members/{member_id}", tag = "members",
    responses((status = 204), (status = 404, body = proto::Problem),
        (status = 409, description = "Would remove the last owner", body = proto::Problem)),
    security(("bearer" = ["accounts:write"])))]
pub async fn remove(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path((id, member_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "member.remove", "membership");
    audit.target(&member_id);
    audit.detail("account_id", id.clone());
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("accounts:write")?;
        checked_id(IdKind::Account, &id, "account")?;
        checked_member_ref(&member_id)?;
        let removed = state.store.remove_member(&id, &member_id).await?;
        audit.target(&removed.id);
        audit.detail("user_id", removed.user_id);
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audit.finish(result).await
}

//! `/api/accounts`: workspaces, nested through `parent_account_id`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::id::{new_id, IdKind};
use keyward_core::model::Account;
use keyward_core::store::AccountFilter;
use keyward_core::validate;
use keyward_proto as proto;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::{checked_id, page_request, to_page};
use crate::audit::Audit;
use crate::error::ApiError;
use crate::external::PendingRevocations;
use crate::extract::{ApiJson, ApiQuery, Caller, RequestId};
use crate::state::AppState;

async fn create_account(
    state: AppState,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    name: Result<(String, Option<Value>, Option<String>), ApiError>,
) -> Result<(StatusCode, Json<proto::Account>), ApiError> {
    let mut audit = Audit::start(&state, &request_id, "account.create", "account");
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("accounts:write")?;
        let (name, custom_data, parent_account_id) = name?;
        if let Some(parent) = &parent_account_id {
            audit.detail("parent_account_id", parent.clone());
            checked_id(IdKind::Account, parent, "parent account")?;
        }
        let custom_data = match custom_data {
            Some(v) => {
                validate::json_object("custom_data", &v)?;
                v
            }
            None => Value::Object(Default::default()),
        };
        let now = OffsetDateTime::now_utc();
        let account = Account {
            id: new_id(IdKind::Account),
            name: validate::display_name("name", &name)?,
            parent_account_id,
            custom_data,
            created_at: now,
            updated_at: now,
        };
        audit.target(&account.id);
        state.store.create_account(&account).await?;
        Ok((StatusCode::CREATED, Json(account.into())))
    }
    .await;
    audit.finish(result).await
}

/// Creates a root account, or a child account when `parent_account_id` is given.
#[utoipa::path(operation_id = "accounts_create", post, path = "/api/accounts", tag = "accounts",
    request_body = proto::CreateAccount,
    responses((status = 201, body = proto::Account), (status = 404, body = proto::Problem),
        (status = 422, body = proto::Problem)),
    security(("bearer" = ["accounts:write"])))]
pub async fn create(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<proto::CreateAccount>, ApiError>,
) -> Result<(StatusCode, Json<proto::Account>), ApiError> {
    let fields = body.map(|ApiJson(b)| (b.name, b.custom_data, b.parent_account_id));
    create_account(state, request_id, caller, fields).await
}

/// Creates a child account of `{id}`.
#[utoipa::path(operation_id = "accounts_create_child", post, path = "/api/accounts/{id}/accounts", tag = "accounts",
    request_body = proto::CreateChildAccount,
    responses((status = 201, body = proto::Account), (status = 404, body = proto::Problem),
        (status = 422, body = proto::Problem)),
    security(("bearer" = ["accounts:write"])))]
pub async fn create_child(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Result<ApiJson<proto::CreateChildAccount>, ApiError>,
) -> Result<(StatusCode, Json<proto::Account>), ApiError> {
    let fields = body.map(|ApiJson(b)| (b.name, b.custom_data, Some(id)));
    create_account(state, request_id, caller, fields).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// Only direct children of this account.
    pub parent_account_id: Option<String>,
    /// Only accounts this user is a member of.
    pub user_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(operation_id = "accounts_list", get, path = "/api/accounts", tag = "accounts", params(AccountQuery),
    responses((status = 200, body = proto::Page<proto::Account>)),
    security(("bearer" = ["accounts:read"])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AccountQuery>,
) -> Result<Json<proto::Page<proto::Account>>, ApiError> {
    caller.require("accounts:read")?;
    let page = page_request(query.cursor, query.limit)?;
    let filter = AccountFilter {
        parent_account_id: query.parent_account_id,
        member_user_id: query.user_id,
    };
    let rows = state.store.list_accounts(&filter, &page).await?;
    Ok(Json(to_page(rows, &page, |a| &a.id)))
}

#[utoipa::path(operation_id = "accounts_get", get, path = "/api/accounts/{id}", tag = "accounts",
    responses((status = 200, body = proto::Account), (status = 404, body = proto::Problem)),
    security(("bearer" = ["accounts:read"])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Account>, ApiError> {
    caller.require("accounts:read")?;
    checked_id(IdKind::Account, &id, "account")?;
    let account = state
        .store
        .get_account(&id)
        .await?
        .ok_or(ApiError::NotFound("account"))?;
    Ok(Json(account.into()))
}

#[utoipa::path(operation_id = "accounts_update", patch, path = "/api/accounts/{id}", tag = "accounts",
    request_body = proto::UpdateAccount,
    responses((status = 200, body = proto::Account), (status = 404, body = proto::Problem)),
    security(("bearer" = ["accounts:write"])))]
pub async fn update(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Result<ApiJson<proto::UpdateAccount>, ApiError>,
) -> Result<Json<proto::Account>, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "account.update", "account");
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("accounts:write")?;
        let ApiJson(body) = body?;
        checked_id(IdKind::Account, &id, "account")?;
        let mut account = state
            .store
            .get_account(&id)
            .await?
            .ok_or(ApiError::NotFound("account"))?;
        if let Some(name) = body.name {
            account.name = validate::display_name("name", &name)?;
        }
        if let Some(custom_data) = body.custom_data {
            validate::json_object("custom_data", &custom_data)?;
            account.custom_data = custom_data;
        }
        account.updated_at = OffsetDateTime::now_utc();
        state.store.update_account(&account).await?;
        Ok(Json(account.into()))
    }
    .await;
    audit.finish(result).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteAccountQuery {
    /// Also delete every descendant account. Without it, an account with children is
    /// not deleted (409 `account_has_children`).
    #[serde(default)]
    pub cascade: bool,
}

#[utoipa::path(operation_id = "accounts_delete", delete, path = "/api/accounts/{id}", tag = "accounts", params(DeleteAccountQuery),
    responses((status = 204), (status = 404, body = proto::Problem), (status = 409, body = proto::Problem)),
    security(("bearer" = ["accounts:write"])))]
pub async fn delete(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    query: Result<ApiQuery<DeleteAccountQuery>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "account.delete", "account");
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("accounts:write")?;
        let ApiQuery(query) = query?;
        checked_id(IdKind::Account, &id, "account")?;
        let connections = PendingRevocations::for_account(&state, &id, query.cascade).await?;
        let deleted = state.store.delete_account(&id, query.cascade).await?;
        audit.detail("accounts_deleted", deleted);
        if !connections.is_empty() {
            audit.detail("external_connections_deleted", connections.len());
        }
        connections.revoke_in_background(&state);
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audit.finish(result).await
}

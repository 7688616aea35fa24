//! `/api/users` and `/api/applications/{application_id}/users`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::id::{new_id, IdKind};
use keyward_core::model::User;
use keyward_core::password::MIN_PASSWORD_LEN;
use keyward_core::store::UserFilter;
use keyward_core::{validate, UserStatus};
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

fn object_or_empty(field: &'static str, value: Option<Value>) -> Result<Value, ApiError> {
    match value {
        None => Ok(Value::Object(Default::default())),
        Some(v) => {
            validate::json_object(field, &v)?;
            Ok(v)
        }
    }
}

fn identities_or_empty(value: Option<Value>) -> Result<Value, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(v) => {
            validate::identities(&v)?;
            Ok(v)
        }
    }
}

/// The algorithm name (`bcrypt`, `django_pbkdf2_sha256`, …) of an imported digest, after
/// checking that it is well formed and its cost is within bounds. Hashes nothing.
fn legacy_algorithm(digest: &str) -> Result<String, ApiError> {
    let parsed: keyward_digest::StoredDigest =
        digest.parse().map_err(|e: keyward_digest::DigestError| {
            ApiError::validation("password_digest", e.to_string())
        })?;
    let algorithm = parsed
        .algorithm()
        .map_err(|e| ApiError::validation("password_digest", e.to_string()))?;
    serde_json::to_value(algorithm)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| ApiError::Internal("unnamed digest algorithm".into()))
}

pub(crate) async fn build_user(
    state: &AppState,
    body: proto::CreateUser,
    application_id: Option<String>,
) -> Result<User, ApiError> {
    let now = OffsetDateTime::now_utc();
    let (password_digest, password_algorithm) = match (body.password, body.password_digest) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "password_digest",
                "give either password or password_digest, not both",
            ))
        }
        (Some(password), None) if password.chars().count() < MIN_PASSWORD_LEN => {
            return Err(ApiError::validation(
                "password",
                format!("must be at least {MIN_PASSWORD_LEN} characters"),
            ))
        }
        (Some(password), None) => (
            Some(state.hash_password(password).await?),
            Some("argon2id".to_owned()),
        ),
        (None, Some(digest)) => {
            let algorithm = legacy_algorithm(&digest)?;
            (Some(digest), Some(algorithm))
        }
        (None, None) => (None, None),
    };
    Ok(User {
        id: new_id(IdKind::User),
        username: body
            .username
            .as_deref()
            .map(validate::username)
            .transpose()?,
        primary_email: body
            .primary_email
            .as_deref()
            .map(validate::email)
            .transpose()?,
        primary_phone: body
            .primary_phone
            .as_deref()
            .map(validate::phone)
            .transpose()?,
        name: body
            .name
            .as_deref()
            .map(|n| validate::display_name("name", n))
            .transpose()?,
        avatar: body.avatar,
        profile: object_or_empty("profile", body.profile)?,
        custom_data: object_or_empty("custom_data", body.custom_data)?,
        identities: identities_or_empty(body.identities)?,
        status: body.status.unwrap_or(UserStatus::Active),
        application_id,
        external_id: body.external_id.filter(|id| !id.is_empty()),
        external_source: body.external_source.filter(|s| !s.is_empty()),
        password_algorithm,
        password_digest,
        last_sign_in_at: None,
        created_at: now,
        updated_at: now,
    })
}

async fn create_user(
    state: AppState,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<proto::CreateUser>, ApiError>,
    application_id: Option<String>,
) -> Result<(StatusCode, Json<proto::User>), ApiError> {
    let mut audit = Audit::start(&state, &request_id, "user.create", "user");
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("users:write")?;
        let ApiJson(body) = body?;
        if let Some(app_id) = &application_id {
            audit.detail("application_id", app_id.clone());
            checked_id(IdKind::Application, app_id, "application")?;
            if state.store.get_application(app_id).await?.is_none() {
                return Err(ApiError::NotFound("application"));
            }
        }
        let user = build_user(&state, body, application_id).await?;
        audit.target(&user.id);
        state.store.create_user(&user).await?;
        Ok((StatusCode::CREATED, Json(user.into())))
    }
    .await;
    audit.finish(result).await
}

/// Creates a user that belongs to an application (signed up through it).
#[utoipa::path(operation_id = "users_create_for_application", post, path = "/api/applications/{application_id}/users", tag = "users",
    request_body = proto::CreateUser,
    responses((status = 201, body = proto::User), (status = 404, body = proto::Problem),
        (status = 409, body = proto::Problem), (status = 422, body = proto::Problem)),
    security(("bearer" = ["users:write"])))]
pub async fn create_for_application(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(application_id): Path<String>,
    body: Result<ApiJson<proto::CreateUser>, ApiError>,
) -> Result<(StatusCode, Json<proto::User>), ApiError> {
    create_user(state, request_id, caller, body, Some(application_id)).await
}

#[utoipa::path(operation_id = "users_create", post, path = "/api/users", tag = "users",
    request_body = proto::CreateUser,
    responses((status = 201, body = proto::User), (status = 409, body = proto::Problem),
        (status = 422, body = proto::Problem)),
    security(("bearer" = ["users:write"])))]
pub async fn create(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<proto::CreateUser>, ApiError>,
) -> Result<(StatusCode, Json<proto::User>), ApiError> {
    create_user(state, request_id, caller, body, None).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Exact, case-insensitive.
    pub email: Option<String>,
    /// Exact, case-insensitive.
    pub username: Option<String>,
    /// Exact; normalized to E.164 first.
    pub phone: Option<String>,
    pub external_id: Option<String>,
    /// The source system of `external_id`.
    pub external_source: Option<String>,
    /// With `provider_user_id`: the user holding this social identity.
    pub provider: Option<String>,
    pub provider_user_id: Option<String>,
    pub application_id: Option<String>,
    pub status: Option<proto::UserStatus>,
    /// Case-insensitive substring of username, email or name.
    pub search: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(operation_id = "users_list", get, path = "/api/users", tag = "users", params(UserQuery),
    responses((status = 200, body = proto::Page<proto::User>)),
    security(("bearer" = ["users:read"])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> Result<Json<proto::Page<proto::User>>, ApiError> {
    caller.require("users:read")?;
    let page = page_request(query.cursor, query.limit)?;
    let filter = UserFilter {
        email: query.email,
        username: query.username,
        phone: query.phone.as_deref().map(validate::phone).transpose()?,
        external_id: query.external_id,
        external_source: query.external_source,
        identity: match (query.provider, query.provider_user_id) {
            (Some(provider), Some(user_id)) => Some((provider, user_id)),
            (None, None) => None,
            _ => {
                return Err(ApiError::validation(
                    "provider",
                    "give provider and provider_user_id together",
                ))
            }
        },
        application_id: query.application_id,
        status: query.status,
        search: query.search.filter(|s| !s.is_empty()),
    };
    let rows = state.store.list_users(&filter, &page).await?;
    Ok(Json(to_page(rows, &page, |u| &u.id)))
}

#[utoipa::path(operation_id = "users_get", get, path = "/api/users/{id}", tag = "users",
    responses((status = 200, body = proto::User), (status = 404, body = proto::Problem)),
    security(("bearer" = ["users:read"])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::User>, ApiError> {
    caller.require("users:read")?;
    checked_id(IdKind::User, &id, "user")?;
    let user = state
        .store
        .get_user(&id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(Json(user.into()))
}

#[utoipa::path(operation_id = "users_update", patch, path = "/api/users/{id}", tag = "users",
    request_body = proto::UpdateUser,
    responses((status = 200, body = proto::User), (status = 404, body = proto::Problem),
        (status = 409, body = proto::Problem)),
    security(("bearer" = ["users:write"])))]
pub async fn update(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Result<ApiJson<proto::UpdateUser>, ApiError>,
) -> Result<Json<proto::User>, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "user.update", "user");
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("users:write")?;
        let ApiJson(body) = body?;
        checked_id(IdKind::User, &id, "user")?;
        let mut user = state
            .store
            .get_user(&id)
            .await?
            .ok_or(ApiError::NotFound("user"))?;
        if let Some(v) = body.username {
            user.username = v.as_deref().map(validate::username).transpose()?;
        }
        if let Some(v) = body.primary_email {
            user.primary_email = v.as_deref().map(validate::email).transpose()?;
        }
        if let Some(v) = body.primary_phone {
            user.primary_phone = v.as_deref().map(validate::phone).transpose()?;
        }
        if let Some(v) = body.name {
            user.name = v
                .as_deref()
                .map(|n| validate::display_name("name", n))
                .transpose()?;
        }
        if let Some(v) = body.avatar {
            user.avatar = v;
        }
        if let Some(v) = body.profile {
            validate::json_object("profile", &v)?;
            user.profile = v;
        }
        if let Some(v) = body.custom_data {
            validate::json_object("custom_data", &v)?;
            user.custom_data = v;
        }
        if let Some(v) = body.status {
            user.status = v;
        }
        if let Some(v) = body.external_id {
            user.external_id = v.filter(|id| !id.is_empty());
        }
        if let Some(v) = body.external_source {
            user.external_source = v.filter(|s| !s.is_empty());
        }
        if let Some(v) = body.identities {
            user.identities = identities_or_empty(Some(v))?;
        }
        user.updated_at = OffsetDateTime::now_utc();
        state.store.update_user(&user).await?;
        Ok(Json(user.into()))
    }
    .await;
    audit.finish(result).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteUserQuery {
    /// Delete even when the user is the only owner of an account.
    #[serde(default)]
    pub force: bool,
}

/// Deletes the user, their memberships and their external connections (whose tokens are
/// then revoked at the servers, best effort).
#[utoipa::path(operation_id = "users_delete", delete, path = "/api/users/{id}", tag = "users", params(DeleteUserQuery),
    responses((status = 204), (status = 404, body = proto::Problem), (status = 409, body = proto::Problem)),
    security(("bearer" = ["users:write"])))]
pub async fn delete(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    query: Result<ApiQuery<DeleteUserQuery>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "user.delete", "user");
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("users:write")?;
        let ApiQuery(query) = query?;
        checked_id(IdKind::User, &id, "user")?;
        if query.force {
            audit.detail("force", true);
        }
        let connections = PendingRevocations::for_user(&state, &id).await?;
        state.store.delete_user(&id, query.force).await?;
        if !connections.is_empty() {
            audit.detail("external_connections_deleted", connections.len());
        }
        connections.revoke_in_background(&state);
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audit.finish(result).await
}

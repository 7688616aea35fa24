//! External applications over the management API.
//!
//! Administration (`external_applications:read|write`): machine callers with the scope;
//! user callers also need, in the application's account, the role owner or admin or the
//! `manage_external_applications` permission (members may read the list, to connect).
//! The users' side (`connections:read|write|use`) acts for the calling user; a machine
//! caller names the user. Every change is audited; handing out tokens is not (hot path,
//! no write).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use keyward_core::external::{
    check_template, ExternalApplication, ExternalConnection, ExternalProtocol, TokenAuthMethod,
    MANAGE_EXTERNAL_APPLICATIONS,
};
use keyward_core::id::{new_id, IdKind};
use keyward_core::Role;
use keyward_proto as proto;
use serde::Deserialize;
use time::OffsetDateTime;

use super::{access_token, authorize_url, callback_url, revoke_best_effort, seal_client_secret};
use crate::api::{checked_id, page_request, to_page, ListQuery};
use crate::audit::Audit;
use crate::egress::{EgressPolicy, EgressRequest, Method, Url};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Caller, RequestId};
use crate::state::AppState;

/// Permissions a member can be granted beyond their role.
const GRANTABLE_PERMISSIONS: &[&str] = &[MANAGE_EXTERNAL_APPLICATIONS];

// ---- authorization helpers ------------------------------------------------------------

/// What a user caller may do in an account.
async fn may_manage(state: &AppState, account_id: &str, user_id: &str) -> Result<bool, ApiError> {
    let Some(member) = state.store.get_member(account_id, user_id).await? else {
        return Ok(false);
    };
    if matches!(member.role, Role::Owner | Role::Admin) {
        return Ok(true);
    }
    Ok(state
        .store
        .list_account_permissions(account_id, user_id)
        .await?
        .iter()
        .any(|p| p == MANAGE_EXTERNAL_APPLICATIONS))
}

/// Administration of `account_id`'s external applications.
async fn require_manage(
    state: &AppState,
    caller: &Caller,
    account_id: &str,
) -> Result<(), ApiError> {
    if let Some(uid) = caller.claims.uid.as_deref() {
        if !may_manage(state, account_id, uid).await? {
            return Err(ApiError::Forbidden {
                code: "not_allowed",
                detail: format!(
                    "managing external applications needs the role owner or admin, or the {MANAGE_EXTERNAL_APPLICATIONS} permission"
                ),
            });
        }
    }
    Ok(())
}

/// Reading `account_id`'s applications: machine callers, or members of the account.
async fn require_member(
    state: &AppState,
    caller: &Caller,
    account_id: &str,
) -> Result<(), ApiError> {
    if let Some(uid) = caller.claims.uid.as_deref() {
        if state.store.get_member(account_id, uid).await?.is_none() {
            // Not a member: the application does not exist for them.
            return Err(ApiError::NotFound("external application"));
        }
    }
    Ok(())
}

async fn load(state: &AppState, id: &str) -> Result<ExternalApplication, ApiError> {
    checked_id(IdKind::ExternalApplication, id, "external application")?;
    state
        .store
        .get_external_application(id)
        .await?
        .ok_or(ApiError::NotFound("external application"))
}

// ---- views ----------------------------------------------------------------------------

pub fn view(state: &AppState, app: ExternalApplication) -> proto::ExternalApplication {
    let (mode, token_url, revocation_url, auth_method, token_request, refresh_request, mapping) =
        match app.protocol {
            ExternalProtocol::Direct {
                token_url,
                revocation_url,
                token_auth_method,
            } => (
                proto::ExternalApplicationMode::Direct,
                Some(token_url),
                revocation_url,
                Some(token_auth_method),
                None,
                None,
                None,
            ),
            ExternalProtocol::Private {
                token_request,
                refresh_request,
                response_mapping,
            } => (
                proto::ExternalApplicationMode::Private,
                None,
                None,
                None,
                Some(token_request),
                refresh_request,
                Some(response_mapping),
            ),
        };
    proto::ExternalApplication {
        callback_url: callback_url(state, &app.id),
        authorize_url: authorize_url(state, &app.id),
        id: app.id,
        account_id: app.account_id,
        name: app.name,
        description: app.description,
        approval_prompt: app.approval_prompt,
        client_id: app.client_id,
        scopes: app.scopes,
        default_expires_in: app.default_expires_in_secs,
        use_pkce: app.use_pkce,
        issuer: app.issuer,
        mode,
        authorization_url: app.authorization_url,
        token_url,
        revocation_url,
        token_endpoint_auth_method: auth_method,
        egress_hosts: app.egress_hosts,
        token_request,
        refresh_request,
        response_mapping: mapping,
        enabled: app.enabled,
        created_at: app.created_at,
        updated_at: app.updated_at,
    }
}

pub fn connection_view(state: &AppState, c: ExternalConnection) -> proto::ExternalConnection {
    proto::ExternalConnection {
        authorize_url: authorize_url(state, &c.external_application_id),
        id: c.id,
        external_application_id: c.external_application_id,
        user_id: c.user_id,
        state: match c.state {
            keyward_core::external::ConnectionState::Active => proto::ConnectionState::Active,
            keyward_core::external::ConnectionState::NeedsReauthorization => {
                proto::ConnectionState::NeedsReauthorization
            }
        },
        scope: c.scope,
        expires_at: c.expires_at,
        created_at: c.created_at,
        updated_at: c.updated_at,
        last_refreshed_at: c.last_refreshed_at,
    }
}

// ---- validation -----------------------------------------------------------------------

fn text(field: &'static str, value: &str, max: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > max {
        return Err(ApiError::validation(
            field,
            format!("must be 1-{max} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

fn http_url(field: &'static str, value: &str) -> Result<Url, ApiError> {
    let url = Url::parse(value.trim())
        .map_err(|_| ApiError::validation(field, "must be an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::validation(field, "must be an http or https URL"));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::validation(
            field,
            "must not carry a fragment or credentials",
        ));
    }
    Ok(url)
}

/// RFC 6749 §3.3 scope tokens.
fn scope_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The whole configuration, checked: every URL Keyward calls must be allowed by the
/// application's own egress policy.
fn validate(app: &ExternalApplication, client_secret: Option<&str>) -> Result<(), ApiError> {
    text("name", &app.name, 128)?;
    text("approval_prompt", &app.approval_prompt, 2000)?;
    if let Some(d) = &app.description {
        if d.chars().count() > 2000 {
            return Err(ApiError::validation(
                "description",
                "at most 2000 characters",
            ));
        }
    }
    text("client_id", &app.client_id, 512)?;
    if let Some(secret) = client_secret {
        if secret.is_empty() || secret.len() > 4096 {
            return Err(ApiError::validation(
                "client_secret",
                "must be 1-4096 bytes",
            ));
        }
    }
    if let Some(bad) = app.scopes.iter().find(|s| !scope_token(s)) {
        return Err(ApiError::validation(
            "scopes",
            format!("{bad:?} is not a scope token (RFC 6749 §3.3)"),
        ));
    }
    if let Some(secs) = app.default_expires_in_secs {
        if !(1..=31_536_000).contains(&secs) {
            return Err(ApiError::validation(
                "default_expires_in",
                "must be 1-31536000 seconds",
            ));
        }
    }
    if let Some(issuer) = &app.issuer {
        http_url("issuer", issuer)?;
    }
    http_url("authorization_url", &app.authorization_url)?;
    let policy = EgressPolicy::parse(&app.egress_hosts)
        .map_err(|e| ApiError::validation("egress_hosts", e.to_string()))?;
    let allowed = |field: &'static str, url: &str| -> Result<(), ApiError> {
        let parsed = http_url(field, url)?;
        policy.check_url(&parsed).map_err(|_| {
            ApiError::validation(
                "egress_hosts",
                format!("the egress policy must allow the host of {field}"),
            )
        })
    };
    match &app.protocol {
        ExternalProtocol::Direct {
            token_url,
            revocation_url,
            ..
        } => {
            allowed("token_url", token_url)?;
            if let Some(url) = revocation_url {
                allowed("revocation_url", url)?;
            }
        }
        ExternalProtocol::Private {
            token_request,
            refresh_request,
            ..
        } => {
            for (field, template) in std::iter::once(("token_request", token_request))
                .chain(refresh_request.as_ref().map(|r| ("refresh_request", r)))
            {
                check_template(template).map_err(|e| ApiError::validation(field, e))?;
                if template.url.contains("{{") {
                    return Err(ApiError::validation(
                        field,
                        "the URL must not contain placeholders",
                    ));
                }
                allowed(field, &template.url)?;
            }
        }
    }
    Ok(())
}

fn protocol_from(
    mode: proto::ExternalApplicationMode,
    token_url: Option<String>,
    revocation_url: Option<String>,
    auth_method: Option<TokenAuthMethod>,
    token_request: Option<proto::RequestTemplate>,
    refresh_request: Option<proto::RequestTemplate>,
    mapping: Option<proto::ResponseMapping>,
) -> Result<ExternalProtocol, ApiError> {
    match mode {
        proto::ExternalApplicationMode::Direct => {
            if token_request.is_some() || refresh_request.is_some() || mapping.is_some() {
                return Err(ApiError::validation(
                    "mode",
                    "request templates and a response mapping belong to private mode",
                ));
            }
            Ok(ExternalProtocol::Direct {
                token_url: token_url
                    .ok_or_else(|| ApiError::validation("token_url", "direct mode needs it"))?,
                revocation_url,
                token_auth_method: auth_method.unwrap_or(TokenAuthMethod::ClientSecretBasic),
            })
        }
        proto::ExternalApplicationMode::Private => {
            if token_url.is_some() || revocation_url.is_some() || auth_method.is_some() {
                return Err(ApiError::validation(
                    "mode",
                    "token_url, revocation_url and token_endpoint_auth_method belong to direct mode",
                ));
            }
            Ok(ExternalProtocol::Private {
                token_request: token_request.ok_or_else(|| {
                    ApiError::validation("token_request", "private mode needs it")
                })?,
                refresh_request,
                response_mapping: mapping.unwrap_or_default(),
            })
        }
    }
}

fn trimmed_list(values: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let v = v.trim().to_owned();
        if !v.is_empty() && !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

// ---- administration -------------------------------------------------------------------

#[utoipa::path(operation_id = "external_applications_create", post,
    path = "/api/accounts/{account_id}/external-applications", tag = "external applications",
    request_body = proto::CreateExternalApplication,
    responses((status = 201, body = proto::ExternalApplication), (status = 404, body = proto::Problem),
        (status = 409, body = proto::Problem), (status = 422, body = proto::Problem)),
    security(("bearer" = ["external_applications:write"])))]
pub async fn create(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(account_id): Path<String>,
    body: Result<ApiJson<proto::CreateExternalApplication>, ApiError>,
) -> Result<(StatusCode, Json<proto::ExternalApplication>), ApiError> {
    let mut audit = Audit::start(
        &state,
        &request_id,
        "external_application.create",
        "external_application",
    );
    audit.detail("account_id", account_id.clone());
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("external_applications:write")?;
        checked_id(IdKind::Account, &account_id, "account")?;
        require_manage(&state, &caller, &account_id).await?;
        let ApiJson(body) = body?;
        let id = new_id(IdKind::ExternalApplication);
        audit.target(&id);
        let protocol = protocol_from(
            body.mode,
            body.token_url.map(|s| s.trim().to_owned()),
            body.revocation_url.map(|s| s.trim().to_owned()),
            body.token_endpoint_auth_method,
            body.token_request,
            body.refresh_request,
            body.response_mapping,
        )?;
        let now = OffsetDateTime::now_utc();
        let mut app = ExternalApplication {
            id: id.clone(),
            account_id: account_id.clone(),
            name: body.name.trim().to_owned(),
            description: body.description.filter(|d| !d.trim().is_empty()),
            approval_prompt: body.approval_prompt.trim().to_owned(),
            client_id: body.client_id.trim().to_owned(),
            client_secret_sealed: Vec::new(),
            client_secret_key_id: String::new(),
            scopes: trimmed_list(body.scopes),
            default_expires_in_secs: body.default_expires_in,
            use_pkce: body.use_pkce,
            issuer: body.issuer.filter(|i| !i.trim().is_empty()),
            authorization_url: body.authorization_url.trim().to_owned(),
            egress_hosts: trimmed_list(body.egress_hosts),
            protocol,
            enabled: true,
            created_at: now,
            updated_at: now,
        };
        validate(&app, Some(&body.client_secret))?;
        audit.detail("name", app.name.clone());
        audit.detail("mode", app.protocol.mode());
        let (sealed, key_id) = seal_client_secret(&state, &id, &body.client_secret)?;
        app.client_secret_sealed = sealed;
        app.client_secret_key_id = key_id;
        state.store.create_external_application(&app).await?;
        Ok((StatusCode::CREATED, Json(view(&state, app))))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "external_applications_list", get,
    path = "/api/accounts/{account_id}/external-applications", tag = "external applications",
    params(ListQuery),
    responses((status = 200, body = proto::Page<proto::ExternalApplication>), (status = 404, body = proto::Problem)),
    security(("bearer" = ["external_applications:read"])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<proto::Page<proto::ExternalApplication>>, ApiError> {
    caller.require("external_applications:read")?;
    checked_id(IdKind::Account, &account_id, "account")?;
    require_member(&state, &caller, &account_id).await?;
    let page = page_request(query.cursor, query.limit)?;
    if state.store.get_account(&account_id).await?.is_none() {
        return Err(ApiError::NotFound("account"));
    }
    let rows = state
        .store
        .list_external_applications(&account_id, &page)
        .await?;
    let page = to_page::<_, ExternalApplication>(rows, &page, |a| &a.id);
    Ok(Json(proto::Page {
        data: page.data.into_iter().map(|a| view(&state, a)).collect(),
        pagination: page.pagination,
    }))
}

#[utoipa::path(operation_id = "external_applications_get", get,
    path = "/api/external-applications/{id}", tag = "external applications",
    responses((status = 200, body = proto::ExternalApplication), (status = 404, body = proto::Problem)),
    security(("bearer" = ["external_applications:read"])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::ExternalApplication>, ApiError> {
    caller.require("external_applications:read")?;
    let app = load(&state, &id).await?;
    require_member(&state, &caller, &app.account_id).await?;
    Ok(Json(view(&state, app)))
}

#[utoipa::path(operation_id = "external_applications_update", patch,
    path = "/api/external-applications/{id}", tag = "external applications",
    request_body = proto::UpdateExternalApplication,
    responses((status = 200, body = proto::ExternalApplication), (status = 404, body = proto::Problem),
        (status = 409, body = proto::Problem), (status = 422, body = proto::Problem)),
    security(("bearer" = ["external_applications:write"])))]
pub async fn update(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Result<ApiJson<proto::UpdateExternalApplication>, ApiError>,
) -> Result<Json<proto::ExternalApplication>, ApiError> {
    let mut audit = Audit::start(
        &state,
        &request_id,
        "external_application.update",
        "external_application",
    );
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("external_applications:write")?;
        let ApiJson(body) = body?;
        let current = load(&state, &id).await?;
        audit.detail("account_id", current.account_id.clone());
        require_manage(&state, &caller, &current.account_id).await?;
        // Start from the current configuration in wire form, apply the patch, rebuild.
        let wire = view(&state, current.clone());
        let mode = body.mode.unwrap_or(wire.mode);
        let switching = mode != wire.mode;
        let keep = |v: Option<String>| if switching { None } else { v };
        let protocol = protocol_from(
            mode,
            body.token_url.or(keep(wire.token_url)),
            match body.revocation_url {
                Some(v) => v,
                None => keep(wire.revocation_url),
            },
            body.token_endpoint_auth_method.or(if switching {
                None
            } else {
                wire.token_endpoint_auth_method
            }),
            body.token_request
                .or(if switching { None } else { wire.token_request }),
            match body.refresh_request {
                Some(v) => v,
                None if switching => None,
                None => wire.refresh_request,
            },
            body.response_mapping.or(if switching {
                None
            } else {
                wire.response_mapping
            }),
        )?;
        let mut changed: Vec<&str> = Vec::new();
        let mut app = current.clone();
        if let Some(name) = body.name {
            app.name = name.trim().to_owned();
            changed.push("name");
        }
        if let Some(description) = body.description {
            app.description = description.filter(|d| !d.trim().is_empty());
            changed.push("description");
        }
        if let Some(prompt) = body.approval_prompt {
            app.approval_prompt = prompt.trim().to_owned();
            changed.push("approval_prompt");
        }
        if let Some(client_id) = body.client_id {
            app.client_id = client_id.trim().to_owned();
            changed.push("client_id");
        }
        if let Some(scopes) = body.scopes {
            app.scopes = trimmed_list(scopes);
            changed.push("scopes");
        }
        if let Some(expiry) = body.default_expires_in {
            app.default_expires_in_secs = expiry;
            changed.push("default_expires_in");
        }
        if let Some(use_pkce) = body.use_pkce {
            app.use_pkce = use_pkce;
            changed.push("use_pkce");
        }
        if let Some(issuer) = body.issuer {
            app.issuer = issuer.filter(|i| !i.trim().is_empty());
            changed.push("issuer");
        }
        if let Some(url) = body.authorization_url {
            app.authorization_url = url.trim().to_owned();
            changed.push("authorization_url");
        }
        if let Some(hosts) = body.egress_hosts {
            app.egress_hosts = trimmed_list(hosts);
            changed.push("egress_hosts");
        }
        if protocol != app.protocol {
            app.protocol = protocol;
            changed.push("protocol");
        }
        validate(&app, body.client_secret.as_deref())?;
        if let Some(secret) = &body.client_secret {
            let (sealed, key_id) = seal_client_secret(&state, &id, secret)?;
            app.client_secret_sealed = sealed;
            app.client_secret_key_id = key_id;
            changed.push("client_secret");
        }
        audit.detail("changed", changed);
        app.updated_at = OffsetDateTime::now_utc();
        state.store.update_external_application(&app).await?;
        Ok(Json(view(&state, app)))
    }
    .await;
    audit.finish(result).await
}

/// Revokes deleted connections' tokens at the server, a few at a time.
async fn revoke_all(
    state: &AppState,
    app: &ExternalApplication,
    connections: &[ExternalConnection],
) {
    futures_util::stream::iter(connections)
        .for_each_concurrent(8, |c| revoke_best_effort(state, app, c))
        .await;
}

#[utoipa::path(operation_id = "external_applications_delete", delete,
    path = "/api/external-applications/{id}", tag = "external applications",
    responses((status = 204, description = "Deleted with every user's tokens (revoked at the server, best effort)"),
        (status = 404, body = proto::Problem)),
    security(("bearer" = ["external_applications:write"])))]
pub async fn delete(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut audit = Audit::start(
        &state,
        &request_id,
        "external_application.delete",
        "external_application",
    );
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("external_applications:write")?;
        let app = load(&state, &id).await?;
        audit.detail("account_id", app.account_id.clone());
        require_manage(&state, &caller, &app.account_id).await?;
        let deleted = state.store.delete_external_application(&id).await?;
        audit.detail("connections_deleted", deleted.len());
        revoke_all(&state, &app, &deleted).await;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audit.finish(result).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleAction {
    Enable,
    Disable,
    Reset,
}

#[utoipa::path(operation_id = "external_applications_action", post,
    path = "/api/external-applications/{id}/{action}", tag = "external applications",
    params(("action" = String, Path, description = "`enable`, `disable` (tokens kept, use and new authorizations blocked) or `reset` (every user's tokens deleted, revoked at the server best effort; configuration kept)")),
    responses((status = 200, body = proto::ExternalApplication), (status = 404, body = proto::Problem)),
    security(("bearer" = ["external_applications:write"])))]
pub async fn lifecycle(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<proto::ExternalApplication>, ApiError> {
    let action_name = match action.as_str() {
        "enable" => "external_application.enable",
        "disable" => "external_application.disable",
        "reset" => "external_application.reset",
        _ => return Err(ApiError::NotFound("action")),
    };
    let mut audit = Audit::start(&state, &request_id, action_name, "external_application");
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("external_applications:write")?;
        let app = load(&state, &id).await?;
        audit.detail("account_id", app.account_id.clone());
        require_manage(&state, &caller, &app.account_id).await?;
        let now = OffsetDateTime::now_utc();
        match action.as_str() {
            "enable" | "disable" => {
                state
                    .store
                    .set_external_application_enabled(&id, action == "enable", now)
                    .await?;
            }
            _ => {
                let deleted = state.store.reset_external_application(&id).await?;
                audit.detail("connections_deleted", deleted.len());
                revoke_all(&state, &app, &deleted).await;
            }
        }
        Ok(Json(view(&state, load(&state, &id).await?)))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "external_applications_connections", get,
    path = "/api/external-applications/{id}/connections", tag = "external applications",
    params(ListQuery),
    responses((status = 200, body = proto::Page<proto::ExternalConnection>), (status = 404, body = proto::Problem)),
    security(("bearer" = ["external_applications:read"])))]
pub async fn connections(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<proto::Page<proto::ExternalConnection>>, ApiError> {
    caller.require("external_applications:read")?;
    let app = load(&state, &id).await?;
    require_member(&state, &caller, &app.account_id).await?;
    require_manage(&state, &caller, &app.account_id).await?;
    let page = page_request(query.cursor, query.limit)?;
    let rows = state
        .store
        .list_application_external_connections(&id, &page)
        .await?;
    let page = to_page::<_, ExternalConnection>(rows, &page, |c| &c.id);
    Ok(Json(proto::Page {
        data: page
            .data
            .into_iter()
            .map(|c| connection_view(&state, c))
            .collect(),
        pagination: page.pagination,
    }))
}

// ---- member permissions -----------------------------------------------------------------

#[utoipa::path(operation_id = "member_permissions_get", get,
    path = "/api/accounts/{account_id}/members/{user_id}/permissions", tag = "members",
    responses((status = 200, body = proto::MemberPermissions), (status = 404, body = proto::Problem)),
    security(("bearer" = ["accounts:read"])))]
pub async fn permissions(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, user_id)): Path<(String, String)>,
) -> Result<Json<proto::MemberPermissions>, ApiError> {
    caller.require("accounts:read")?;
    checked_id(IdKind::Account, &account_id, "account")?;
    checked_id(IdKind::User, &user_id, "member")?;
    if state
        .store
        .get_member(&account_id, &user_id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("member"));
    }
    let permissions = state
        .store
        .list_account_permissions(&account_id, &user_id)
        .await?;
    Ok(Json(proto::MemberPermissions {
        account_id,
        user_id,
        permissions,
    }))
}

async fn change_permission(
    state: AppState,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    (account_id, user_id, permission): (String, String, String),
    grant: bool,
) -> Result<Json<proto::MemberPermissions>, ApiError> {
    let action = if grant {
        "member.permission.grant"
    } else {
        "member.permission.revoke"
    };
    let mut audit = Audit::start(&state, &request_id, action, "membership");
    audit.target(&user_id);
    audit.detail("account_id", account_id.clone());
    audit.detail("permission", permission.clone());
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("accounts:write")?;
        checked_id(IdKind::Account, &account_id, "account")?;
        checked_id(IdKind::User, &user_id, "member")?;
        let Some(permission) = GRANTABLE_PERMISSIONS.iter().find(|p| **p == permission) else {
            return Err(ApiError::NotFound("permission"));
        };
        // Only owners and admins hand out permissions (machine callers hold the scope).
        if let Some(uid) = caller.claims.uid.as_deref() {
            let role = state
                .store
                .get_member(&account_id, uid)
                .await?
                .map(|m| m.role);
            if !matches!(role, Some(Role::Owner | Role::Admin)) {
                return Err(ApiError::Forbidden {
                    code: "not_allowed",
                    detail: "only owners and admins grant permissions".into(),
                });
            }
        }
        if grant {
            state
                .store
                .grant_account_permission(&account_id, &user_id, permission)
                .await?;
        } else {
            state
                .store
                .revoke_account_permission(&account_id, &user_id, permission)
                .await?;
        }
        let permissions = state
            .store
            .list_account_permissions(&account_id, &user_id)
            .await?;
        Ok(Json(proto::MemberPermissions {
            account_id: account_id.clone(),
            user_id: user_id.clone(),
            permissions,
        }))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "member_permissions_grant", put,
    path = "/api/accounts/{account_id}/members/{user_id}/permissions/{permission}", tag = "members",
    responses((status = 200, body = proto::MemberPermissions), (status = 404, body = proto::Problem)),
    security(("bearer" = ["accounts:write"])))]
pub async fn grant_permission(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<proto::MemberPermissions>, ApiError> {
    change_permission(state, request_id, caller, path, true).await
}

#[utoipa::path(operation_id = "member_permissions_revoke", delete,
    path = "/api/accounts/{account_id}/members/{user_id}/permissions/{permission}", tag = "members",
    responses((status = 200, body = proto::MemberPermissions), (status = 404, body = proto::Problem)),
    security(("bearer" = ["accounts:write"])))]
pub async fn revoke_permission(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<proto::MemberPermissions>, ApiError> {
    change_permission(state, request_id, caller, path, false).await
}

// ---- the users' side --------------------------------------------------------------------

fn user_caller(caller: &Caller) -> Result<&str, ApiError> {
    caller.claims.uid.as_deref().ok_or(ApiError::Forbidden {
        code: "user_token_required",
        detail: "this route acts for a signed-in user; use a user's access token".into(),
    })
}

#[utoipa::path(operation_id = "my_connections_list", get, path = "/api/me/connections",
    tag = "external applications",
    responses((status = 200, body = Vec<proto::ExternalConnection>), (status = 403, body = proto::Problem)),
    security(("bearer" = ["connections:read"])))]
pub async fn my_connections(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<proto::ExternalConnection>>, ApiError> {
    caller.require("connections:read")?;
    let uid = user_caller(&caller)?;
    let rows = state.store.list_user_external_connections(uid).await?;
    Ok(Json(
        rows.into_iter()
            .map(|c| connection_view(&state, c))
            .collect(),
    ))
}

#[utoipa::path(operation_id = "my_connections_delete", delete, path = "/api/me/connections/{id}",
    tag = "external applications",
    responses((status = 204, description = "Deleted; its tokens revoked at the server (best effort)"),
        (status = 404, body = proto::Problem)),
    security(("bearer" = ["connections:write"])))]
pub async fn delete_my_connection(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "connection.delete", "connection");
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("connections:write")?;
        let uid = user_caller(&caller)?;
        checked_id(IdKind::Connection, &id, "connection")?;
        // Another user's connection does not exist for this caller.
        let connection = state
            .store
            .get_external_connection(&id)
            .await?
            .filter(|c| c.user_id == uid)
            .ok_or(ApiError::NotFound("connection"))?;
        audit.detail(
            "external_application_id",
            connection.external_application_id.clone(),
        );
        if let Some(deleted) = state.store.delete_external_connection(&id).await? {
            if let Some(app) = state
                .store
                .get_external_application(&deleted.external_application_id)
                .await?
            {
                revoke_best_effort(&state, &app, &deleted).await;
            }
        }
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audit.finish(result).await
}

/// The application and the user a token or proxy call acts for: the calling user (a
/// member of the application's account), or the user a machine caller names.
async fn subject(
    state: &AppState,
    caller: &Caller,
    id: &str,
    requested_user: Option<String>,
) -> Result<(ExternalApplication, String), ApiError> {
    caller.require("connections:use")?;
    let app = load(state, id).await?;
    let user_id = match caller.claims.uid.as_deref() {
        Some(uid) => {
            if requested_user.as_deref().is_some_and(|u| u != uid) {
                return Err(ApiError::Forbidden {
                    code: "not_allowed",
                    detail: "a user's token only reaches that user's own connections".into(),
                });
            }
            if state
                .store
                .get_member(&app.account_id, uid)
                .await?
                .is_none()
            {
                return Err(ApiError::NotFound("external application"));
            }
            uid.to_owned()
        }
        None => requested_user
            .ok_or_else(|| ApiError::validation("user_id", "a machine caller names the user"))?,
    };
    Ok((app, user_id))
}

#[utoipa::path(operation_id = "external_token", post, path = "/api/external-applications/{id}/token",
    tag = "external applications",
    request_body(content = proto::ExternalTokenRequest, description = "Optional; machine callers name the user"),
    responses((status = 200, body = proto::ExternalAccessToken),
        (status = 403, description = "Application disabled", body = proto::Problem),
        (status = 404, body = proto::Problem),
        (status = 409, description = "Not connected or needs re-authorization; `authorize_url` says where to reconnect", body = proto::Problem),
        (status = 502, body = proto::Problem)),
    security(("bearer" = ["connections:use"])))]
pub async fn token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: proto::ExternalTokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        proto::ExternalTokenRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
            code: "malformed_json",
            detail: e.to_string(),
        })?
    };
    let (app, user_id) = subject(&state, &caller, &id, request.user_id).await?;
    let (connection, tokens) = access_token(&state, &app, &user_id).await?;
    let now = OffsetDateTime::now_utc();
    let body = proto::ExternalAccessToken {
        access_token: tokens.access_token,
        token_type: bearer_type(tokens.token_type.as_deref()),
        expires_in: connection
            .expires_at
            .map(|at| (at - now).whole_seconds().max(0)),
        expires_at: connection.expires_at,
        scope: connection.scope,
        connection_id: connection.id,
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// `bearer` and friends are the same scheme (RFC 6750 §1 is case-insensitive about it).
fn bearer_type(token_type: Option<&str>) -> String {
    match token_type {
        None => "Bearer".into(),
        Some(t) if t.eq_ignore_ascii_case("bearer") => "Bearer".into(),
        Some(t) => t.to_owned(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProxyQuery {
    /// The absolute URL to call; its host must be on the application's egress policy.
    pub url: String,
    /// Machine callers: the user whose connection to use.
    pub user_id: Option<String>,
}

/// Request headers passed on to the external API; everything else (the caller's own
/// Authorization and cookies above all) stays here.
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "content-type",
    "if-match",
    "if-none-match",
    "if-modified-since",
];
const FORWARDED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "cache-control",
    "etag",
    "last-modified",
    "location",
    "retry-after",
];

#[utoipa::path(operation_id = "external_proxy", post, path = "/api/external-applications/{id}/proxy",
    tag = "external applications", params(ProxyQuery),
    description = "Forwards the request (any method) to `url` with the user's access token injected. Redirects are followed only to hosts the egress policy allows, with credentials stripped.",
    responses((status = 200, description = "The external API's response, passed through"),
        (status = 403, description = "Disabled, or refused by the egress policy", body = proto::Problem),
        (status = 409, body = proto::Problem), (status = 502, body = proto::Problem)),
    security(("bearer" = ["connections:use"])))]
pub async fn proxy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ProxyQuery>,
    method: HttpMethod,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (app, user_id) = subject(&state, &caller, &id, query.user_id).await?;
    let url = Url::parse(&query.url).map_err(|_| ApiError::BadRequest {
        code: "invalid_query",
        detail: "url must be an absolute URL".into(),
    })?;
    let policy = EgressPolicy::parse(&app.egress_hosts)
        .map_err(|e| ApiError::Internal(format!("stored egress policy: {e}")))?;
    // Refuse before spending a refresh on a request that cannot go out.
    policy
        .check_url(&url)
        .map_err(|e| ApiError::from(super::ExternalError::Egress(e)))?;
    let (_, tokens) = access_token(&state, &app, &user_id).await?;
    let mut outgoing = crate::egress::HeaderMap::new();
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = headers.get(*name) {
            outgoing.insert(*name, value.clone());
        }
    }
    let authorization = format!(
        "{} {}",
        bearer_type(tokens.token_type.as_deref()),
        tokens.access_token
    );
    outgoing.insert(
        axum::http::header::AUTHORIZATION,
        HeaderValue::from_str(&authorization)
            .map_err(|_| ApiError::Internal("access token is not a header value".into()))?,
    );
    let method =
        Method::from_bytes(method.as_str().as_bytes()).map_err(|_| ApiError::BadRequest {
            code: "invalid_method",
            detail: "unsupported method".into(),
        })?;
    let request = EgressRequest {
        method,
        url,
        headers: outgoing,
        body: (!body.is_empty()).then(|| body.to_vec()),
        follow_redirects: true,
    };
    let upstream = state
        .egress
        .send(&policy, request)
        .await
        .map_err(|e| ApiError::from(super::ExternalError::Egress(e)))?;
    let mut response = (
        StatusCode::from_u16(upstream.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        upstream.body,
    )
        .into_response();
    for name in FORWARDED_RESPONSE_HEADERS {
        if let Some(value) = upstream.headers.get(*name) {
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                response.headers_mut().insert(*name, value);
            }
        }
    }
    Ok(response)
}

//! `/api/applications`: OAuth clients and their secrets.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::id::{new_id, IdKind};
use keyward_core::model::{Application, ClientSecret, ResourceGrant};
use keyward_core::secret::{generate_client_secret, secret_digest, secret_hint};
use keyward_core::{validate, ApplicationKind};
use keyward_proto as proto;
use time::{Duration, OffsetDateTime};

use super::{checked_id, page_request, to_page, ListQuery};
use crate::audit::Audit;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Caller, RequestId};
use crate::state::AppState;

const GRANT_TYPES: &[&str] = &["client_credentials", "authorization_code", "refresh_token"];

fn default_grant_types(kind: ApplicationKind) -> Vec<String> {
    match kind {
        ApplicationKind::M2m => vec!["client_credentials".into()],
        _ => vec!["authorization_code".into(), "refresh_token".into()],
    }
}

fn check_grant_types(kind: ApplicationKind, grant_types: &[String]) -> Result<(), ApiError> {
    for grant_type in grant_types {
        if !GRANT_TYPES.contains(&grant_type.as_str()) {
            return Err(ApiError::validation(
                "grant_types",
                format!("unsupported grant type {grant_type:?}"),
            ));
        }
        if grant_type == "client_credentials" && !kind.is_confidential() {
            return Err(ApiError::validation(
                "grant_types",
                "public clients (spa, native) cannot use client_credentials",
            ));
        }
        if grant_type != "client_credentials" && kind == ApplicationKind::M2m {
            return Err(ApiError::validation(
                "grant_types",
                "m2m applications only use client_credentials",
            ));
        }
    }
    Ok(())
}

/// A partner provisions in its own workspace, so it must belong to one; its claim page is
/// an absolute URL like a redirect URI.
fn check_partner(
    partner: bool,
    account_id: Option<&str>,
    claim_uri: Option<&str>,
) -> Result<(), ApiError> {
    if partner && account_id.is_none() {
        return Err(ApiError::validation(
            "account_id",
            "a partner application must belong to an account (its workspace)",
        ));
    }
    if let Some(uri) = claim_uri {
        validate::redirect_uri("claim_uri", uri)?;
    }
    Ok(())
}

fn check_uris(field: &'static str, uris: &[String]) -> Result<(), ApiError> {
    for uri in uris {
        validate::redirect_uri(field, uri)?;
    }
    Ok(())
}

/// Each grant must name an existing resource and only scopes that resource defines.
async fn check_grants(
    state: &AppState,
    grants: &[proto::ResourceGrant],
) -> Result<Vec<ResourceGrant>, ApiError> {
    let mut checked: Vec<ResourceGrant> = Vec::with_capacity(grants.len());
    for grant in grants {
        if checked.iter().any(|g| g.resource == grant.resource) {
            return Err(ApiError::validation(
                "grants",
                format!("{} is listed twice", grant.resource),
            ));
        }
        let resource = state
            .store
            .get_resource_by_identifier(&grant.resource)
            .await?
            .ok_or_else(|| {
                ApiError::validation("grants", format!("unknown API resource {}", grant.resource))
            })?;
        for scope in &grant.scopes {
            if !resource.scopes.iter().any(|d| &d.name == scope) {
                return Err(ApiError::validation(
                    "grants",
                    format!("{} defines no scope {scope:?}", grant.resource),
                ));
            }
        }
        checked.push(grant.clone().into());
    }
    Ok(checked)
}

fn new_secret(application_id: &str, now: OffsetDateTime) -> (ClientSecret, String) {
    let plain = generate_client_secret();
    let secret = ClientSecret {
        id: new_id(IdKind::ClientSecret),
        application_id: application_id.to_owned(),
        digest: secret_digest(&plain),
        hint: secret_hint(&plain),
        created_at: now,
        expires_at: None,
    };
    (secret, plain)
}

/// Validates a new application and generates its client id and (for confidential clients)
/// its first secret. Shared by the API and the CLI.
pub async fn build_application(
    state: &AppState,
    body: proto::CreateApplication,
) -> Result<(Application, Option<String>), ApiError> {
    let name = validate::display_name("name", &body.name)?;
    let grant_types = body.grant_types.clone().unwrap_or_else(|| {
        let mut defaults = default_grant_types(body.kind);
        // A partner provisions with client credentials and claims with user grants.
        if body.partner && body.kind.is_confidential() && body.kind != ApplicationKind::M2m {
            defaults.push("client_credentials".to_owned());
        }
        defaults
    });
    check_grant_types(body.kind, &grant_types)?;
    check_partner(
        body.partner,
        body.account_id.as_deref(),
        body.claim_uri.as_deref(),
    )?;
    check_uris("redirect_uris", &body.redirect_uris)?;
    check_uris("post_logout_redirect_uris", &body.post_logout_redirect_uris)?;
    if let Some(ttl) = body.access_token_ttl_secs {
        validate::token_ttl("access_token_ttl_secs", ttl)?;
    }
    if let Some(account_id) = &body.account_id {
        checked_id(IdKind::Account, account_id, "account")?;
    }
    let grants = check_grants(state, &body.grants).await?;
    let now = OffsetDateTime::now_utc();
    let id = new_id(IdKind::Application);
    let (secrets, plain) = if body.kind.is_confidential() {
        let (secret, plain) = new_secret(&id, now);
        (vec![secret], Some(plain))
    } else {
        (Vec::new(), None)
    };
    let app = Application {
        client_id: id.clone(),
        id,
        name,
        description: body.description,
        kind: body.kind,
        redirect_uris: body.redirect_uris,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        grant_types,
        grants,
        first_party: body.first_party,
        partner: body.partner,
        claim_uri: body.claim_uri,
        account_id: body.account_id,
        access_token_ttl_secs: body.access_token_ttl_secs,
        secrets,
        created_at: now,
        updated_at: now,
    };
    Ok((app, plain))
}

/// Adds a secret to a confidential application, optionally limiting the others' lifetime.
/// Shared by the API and the CLI.
pub async fn add_secret(
    state: &AppState,
    app: &Application,
    expire_existing_after_secs: Option<i64>,
) -> Result<(ClientSecret, String), ApiError> {
    if !app.kind.is_confidential() {
        return Err(ApiError::Conflict {
            code: "public_client",
            detail: "public clients have no secrets".into(),
        });
    }
    let now = OffsetDateTime::now_utc();
    let expire_others_at = match expire_existing_after_secs {
        Some(secs) if secs < 0 => {
            return Err(ApiError::validation(
                "expire_existing_after_secs",
                "must not be negative",
            ))
        }
        Some(secs) => Some(now + Duration::seconds(secs)),
        None => None,
    };
    let (secret, plain) = new_secret(&app.id, now);
    state
        .store
        .add_client_secret(&secret, expire_others_at)
        .await?;
    state.clients.invalidate_all();
    Ok((secret, plain))
}

/// Creates an application. Confidential clients get a secret, shown only in this response.
#[utoipa::path(operation_id = "applications_create", post, path = "/api/applications", tag = "applications",
    request_body = proto::CreateApplication,
    responses((status = 201, body = proto::ApplicationWithSecret), (status = 422, body = proto::Problem)),
    security(("bearer" = ["applications:write"])))]
pub async fn create(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<proto::CreateApplication>, ApiError>,
) -> Result<(StatusCode, Json<proto::ApplicationWithSecret>), ApiError> {
    let mut audit = Audit::start(&state, &request_id, "application.create", "application");
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("applications:write")?;
        let ApiJson(body) = body?;
        let (app, plain) = build_application(&state, body).await?;
        audit.target(&app.id);
        state.store.create_application(&app).await?;
        state.clients.invalidate_all();
        Ok((
            StatusCode::CREATED,
            Json(proto::ApplicationWithSecret {
                application: app.into(),
                client_secret: plain,
            }),
        ))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "applications_list", get, path = "/api/applications", tag = "applications", params(ListQuery),
    responses((status = 200, body = proto::Page<proto::Application>)),
    security(("bearer" = ["applications:read"])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<proto::Page<proto::Application>>, ApiError> {
    caller.require("applications:read")?;
    let page = page_request(query.cursor, query.limit)?;
    let rows = state.store.list_applications(&page).await?;
    Ok(Json(to_page(rows, &page, |a| &a.id)))
}

#[utoipa::path(operation_id = "applications_get", get, path = "/api/applications/{id}", tag = "applications",
    responses((status = 200, body = proto::Application), (status = 404, body = proto::Problem)),
    security(("bearer" = ["applications:read"])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::Application>, ApiError> {
    caller.require("applications:read")?;
    checked_id(IdKind::Application, &id, "application")?;
    let app = state
        .store
        .get_application(&id)
        .await?
        .ok_or(ApiError::NotFound("application"))?;
    Ok(Json(app.into()))
}

#[utoipa::path(operation_id = "applications_update", patch, path = "/api/applications/{id}", tag = "applications",
    request_body = proto::UpdateApplication,
    responses((status = 200, body = proto::Application), (status = 404, body = proto::Problem)),
    security(("bearer" = ["applications:write"])))]
pub async fn update(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Result<ApiJson<proto::UpdateApplication>, ApiError>,
) -> Result<Json<proto::Application>, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "application.update", "application");
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("applications:write")?;
        let ApiJson(body) = body?;
        checked_id(IdKind::Application, &id, "application")?;
        let mut app = state
            .store
            .get_application(&id)
            .await?
            .ok_or(ApiError::NotFound("application"))?;
        if let Some(name) = body.name {
            app.name = validate::display_name("name", &name)?;
        }
        if let Some(description) = body.description {
            app.description = description;
        }
        if let Some(uris) = body.redirect_uris {
            check_uris("redirect_uris", &uris)?;
            app.redirect_uris = uris;
        }
        if let Some(uris) = body.post_logout_redirect_uris {
            check_uris("post_logout_redirect_uris", &uris)?;
            app.post_logout_redirect_uris = uris;
        }
        if let Some(grant_types) = body.grant_types {
            check_grant_types(app.kind, &grant_types)?;
            app.grant_types = grant_types;
        }
        if let Some(grants) = body.grants {
            app.grants = check_grants(&state, &grants).await?;
        }
        if let Some(first_party) = body.first_party {
            app.first_party = first_party;
        }
        if let Some(partner) = body.partner {
            app.partner = partner;
        }
        if let Some(claim_uri) = body.claim_uri {
            app.claim_uri = claim_uri;
        }
        check_partner(
            app.partner,
            app.account_id.as_deref(),
            app.claim_uri.as_deref(),
        )?;
        if let Some(ttl) = body.access_token_ttl_secs {
            if let Some(ttl) = ttl {
                validate::token_ttl("access_token_ttl_secs", ttl)?;
            }
            app.access_token_ttl_secs = ttl;
        }
        app.updated_at = OffsetDateTime::now_utc();
        state.store.update_application(&app).await?;
        state.clients.invalidate_all();
        Ok(Json(app.into()))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "applications_delete", delete, path = "/api/applications/{id}", tag = "applications",
    responses((status = 204), (status = 404, body = proto::Problem)),
    security(("bearer" = ["applications:write"])))]
pub async fn delete(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "application.delete", "application");
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("applications:write")?;
        checked_id(IdKind::Application, &id, "application")?;
        if caller.claims.app.as_deref() == Some(id.as_str()) {
            return Err(ApiError::Conflict {
                code: "cannot_delete_self",
                detail: "an application cannot delete itself".into(),
            });
        }
        state.store.delete_application(&id).await?;
        state.clients.invalidate_all();
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audit.finish(result).await
}

/// Adds a new client secret. Existing secrets stay valid (for a zero-downtime switch) unless
/// `expire_existing_after_secs` limits them.
#[utoipa::path(operation_id = "applications_rotate_secret", post, path = "/api/applications/{id}/secrets", tag = "applications",
    request_body = proto::RotateSecret,
    responses((status = 201, body = proto::CreatedSecret), (status = 404, body = proto::Problem)),
    security(("bearer" = ["applications:write"])))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<proto::CreatedSecret>), ApiError> {
    let mut audit = Audit::start(
        &state,
        &request_id,
        "application.secret.create",
        "application",
    );
    audit.target(&id);
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("applications:write")?;
        checked_id(IdKind::Application, &id, "application")?;
        // The body is optional: an empty POST rotates with the defaults.
        let body: proto::RotateSecret = if body.iter().all(u8::is_ascii_whitespace) {
            proto::RotateSecret::default()
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::validation("body", e.to_string()))?
        };
        let app = state
            .store
            .get_application(&id)
            .await?
            .ok_or(ApiError::NotFound("application"))?;
        let (secret, plain) = add_secret(&state, &app, body.expire_existing_after_secs).await?;
        audit.detail("secret_id", secret.id.clone());
        Ok((
            StatusCode::CREATED,
            Json(proto::CreatedSecret {
                secret: secret.into(),
                client_secret: plain,
            }),
        ))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "applications_delete_secret", delete, path = "/api/applications/{id}/secrets/{secret_id}", tag = "applications",
    responses((status = 204), (status = 404, body = proto::Problem)),
    security(("bearer" = ["applications:write"])))]
pub async fn delete_secret(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    Path((id, secret_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut audit = Audit::start(
        &state,
        &request_id,
        "application.secret.delete",
        "application",
    );
    audit.target(&id);
    audit.detail("secret_id", secret_id.clone());
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("applications:write")?;
        checked_id(IdKind::Application, &id, "application")?;
        checked_id(IdKind::ClientSecret, &secret_id, "secret")?;
        state.store.delete_client_secret(&id, &secret_id).await?;
        state.clients.invalidate_all();
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audit.finish(result).await
}

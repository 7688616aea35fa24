//! Handlers of the hosted pages. Each GET renders a template; each POST checks the CSRF
//! token, does one thing, and answers 303 to the next step (or re-renders with an error).

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use keyward_core::authz::{EMAIL, OFFLINE_ACCESS, OPENID, PHONE, PROFILE, WORKSPACE_ADMIN};
use keyward_core::id::{new_id, IdKind};
use keyward_core::model::{Account, Consent, Membership, User};
use keyward_core::password::MIN_PASSWORD_LEN;
use keyward_core::store::{AccountFilter, PageRequest};
use keyward_core::{validate, AuditOutcome, Role};
use keyward_proto as proto;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::flow::{self, expired_page, Pending};
use super::session::{self, SignIn};
use super::templates::{error_page, info_page, page};
use super::{enc, see_other, ClientAddr, Csrf};
use crate::audit::{self, Actor};
use crate::error::ApiError;
use crate::extract::RequestId;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct InteractionQuery {
    #[serde(default)]
    pub interaction: String,
    /// Sign-in outside an authorization request: a local path to continue at (the
    /// external-application prompt sends users here first).
    #[serde(default)]
    pub return_to: Option<String>,
}

/// `value` if it is a path on this server (`/x`, never `//host` or `/\\host`), which a
/// sign-in may continue at without becoming an open redirect.
pub fn local_path(value: Option<&str>) -> Option<&str> {
    value.filter(|v| {
        v.starts_with('/')
            && !v.starts_with("//")
            && !v.starts_with("/\\")
            && !v.contains(['\r', '\n'])
            && v.len() <= 512
    })
}

/// Any failure inside a page handler becomes an error page (details only in the log).
pub(super) fn failed(e: ApiError, request_id: &RequestId) -> Response {
    if let ApiError::Internal(message) = &e {
        tracing::error!(request_id = request_id.0.as_deref().unwrap_or("-"), error = %message, "page failed");
    }
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Please try again in a moment.",
    )
}

pub(super) fn csrf_refused() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "The form expired",
        "Go back, reload the page and submit it again.",
    )
}

pub(super) async fn client_name(state: &AppState, pending: &Pending) -> Option<String> {
    state
        .client(&pending.request.client_id)
        .await
        .ok()
        .flatten()
        .map(|c| c.name.clone())
}

// ---- sign-in ----------------------------------------------------------------------------

#[derive(Serialize)]
struct SignInPage<'a> {
    csrf_token: &'a str,
    interaction: &'a str,
    return_to: &'a str,
    login: &'a str,
    error: Option<&'a str>,
    client_name: Option<String>,
}

async fn render_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    interaction: &str,
    return_to: Option<&str>,
    login: &str,
    error: Option<&str>,
) -> Response {
    let csrf = Csrf::for_request(state, headers);
    let return_to = local_path(return_to).unwrap_or_default();
    let client_name = match flow::load(state, interaction).await {
        Ok(Some(p)) => client_name(state, &p).await,
        _ => None,
    };
    let mut response = page(
        status,
        "sign_in.html",
        SignInPage {
            csrf_token: &csrf.token,
            interaction,
            return_to,
            login,
            error,
            client_name,
        },
    );
    csrf.apply(&mut response);
    response
}

pub async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<InteractionQuery>,
) -> Response {
    let hint = match flow::load(&state, &query.interaction).await {
        Ok(Some(p)) => p.request.login_hint.unwrap_or_default(),
        _ => String::new(),
    };
    render_sign_in(
        &state,
        &headers,
        StatusCode::OK,
        &query.interaction,
        query.return_to.as_deref(),
        &hint,
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    interaction: String,
    #[serde(default)]
    return_to: Option<String>,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

pub async fn sign_in_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    ClientAddr(addr): ClientAddr,
    Form(form): Form<SignInForm>,
) -> Response {
    if !Csrf::verify(&headers, &form.csrf_token) {
        return csrf_refused();
    }
    let outcome =
        match session::verify_credentials(&state, &form.login, &form.password, &addr).await {
            Ok(outcome) => outcome,
            Err(e) => return failed(e, &request_id),
        };
    let user = match outcome {
        SignIn::Success(user) => user,
        other => {
            let (status, message, reason) = match other {
                SignIn::Throttled => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed attempts. Wait a few minutes and try again.",
                    "throttled",
                ),
                SignIn::Suspended => (
                    StatusCode::FORBIDDEN,
                    "This account is suspended.",
                    "suspended",
                ),
                _ => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong username, email, phone or password.",
                    "invalid_credentials",
                ),
            };
            audit::record(
                &state,
                &request_id,
                Actor {
                    kind: "anonymous",
                    id: None,
                },
                "auth.sign_in",
                "user",
                None,
                AuditOutcome::Denied,
                Some(reason),
                json!({ "client_address": addr }),
            )
            .await;
            return render_sign_in(
                &state,
                &headers,
                status,
                &form.interaction,
                form.return_to.as_deref(),
                &form.login,
                Some(message),
            )
            .await;
        }
    };
    signed_in(
        &state,
        &headers,
        &request_id,
        &user,
        Next {
            interaction: &form.interaction,
            return_to: local_path(form.return_to.as_deref()),
        },
        "auth.sign_in",
        json!({ "method": "password" }),
    )
    .await
}

/// Where a sign-in continues: the authorization request's interaction, or else a local
/// path (already checked with [`local_path`]).
pub(super) struct Next<'a> {
    pub interaction: &'a str,
    pub return_to: Option<&'a str>,
}

/// After a successful sign-in or sign-up: a new session, then the next step of the
/// interaction (or, without one, the set-password page for a user who has no password, else
/// the signed-in page). `details` go into the audit event (e.g. the sign-in `method`).
pub(super) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    request_id: &RequestId,
    user: &User,
    next: Next<'_>,
    action: &'static str,
    details: serde_json::Value,
) -> Response {
    let Next {
        interaction,
        return_to,
    } = next;
    let result = async {
        let (_session, cookie) = session::start(state, headers, &user.id).await?;
        audit::record(
            state,
            request_id,
            Actor {
                kind: "user",
                id: Some(&user.id),
            },
            action,
            "user",
            Some(&user.id),
            AuditOutcome::Success,
            None,
            details,
        )
        .await;
        let location = match flow::load(state, interaction).await? {
            Some(mut pending) => {
                pending.progress.signed_in_user = Some(user.id.clone());
                pending.save(state).await?;
                format!("/oauth2/authorize/resume?interaction={}", enc(interaction))
            }
            None if user.password_digest.is_none() => flow::SET_PASSWORD_PATH.to_owned(),
            None => return_to.unwrap_or("/").to_owned(),
        };
        let mut response = see_other(&location);
        response.headers_mut().append(header::SET_COOKIE, cookie);
        Ok::<_, ApiError>(response)
    }
    .await;
    result.unwrap_or_else(|e| failed(e, request_id))
}

// ---- sign-up ----------------------------------------------------------------------------

#[derive(Serialize)]
struct SignUpPage<'a> {
    csrf_token: &'a str,
    interaction: &'a str,
    username: &'a str,
    email: &'a str,
    name: &'a str,
    error: Option<&'a str>,
    min_password: usize,
    client_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    interaction: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

async fn render_sign_up(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    form: &SignUpForm,
    error: Option<&str>,
) -> Response {
    let csrf = Csrf::for_request(state, headers);
    let client_name = match flow::load(state, &form.interaction).await {
        Ok(Some(p)) => client_name(state, &p).await,
        _ => None,
    };
    let mut response = page(
        status,
        "sign_up.html",
        SignUpPage {
            csrf_token: &csrf.token,
            interaction: &form.interaction,
            username: &form.username,
            email: &form.email,
            name: &form.name,
            error,
            min_password: MIN_PASSWORD_LEN,
            client_name,
        },
    );
    csrf.apply(&mut response);
    response
}

pub async fn sign_up_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<InteractionQuery>,
) -> Response {
    let form = SignUpForm {
        interaction: query.interaction,
        ..SignUpForm::default()
    };
    render_sign_up(&state, &headers, StatusCode::OK, &form, None).await
}

/// Creates a self-registered user (shared with `POST /auth/sign-up`).
pub async fn register_user(
    state: &AppState,
    username: Option<String>,
    email: Option<String>,
    name: Option<String>,
    password: String,
    application_id: Option<String>,
) -> Result<User, ApiError> {
    if username.is_none() && email.is_none() {
        return Err(ApiError::validation(
            "username",
            "a username or an email is required",
        ));
    }
    let body = proto::CreateUser {
        username,
        primary_email: email,
        name,
        password: Some(password),
        ..Default::default()
    };
    let user = crate::api::users::build_user(state, body, application_id).await?;
    state.store.create_user(&user).await?;
    Ok(user)
}

pub async fn sign_up_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Form(form): Form<SignUpForm>,
) -> Response {
    if !Csrf::verify(&headers, &form.csrf_token) {
        return csrf_refused();
    }
    let non_empty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let application_id = match flow::load(&state, &form.interaction).await {
        Ok(Some(p)) => state
            .client(&p.request.client_id)
            .await
            .ok()
            .flatten()
            .map(|c| c.id.clone()),
        _ => None,
    };
    let created = register_user(
        &state,
        non_empty(&form.username),
        non_empty(&form.email),
        non_empty(&form.name),
        form.password.clone(),
        application_id,
    )
    .await;
    match created {
        Ok(user) => {
            signed_in(
                &state,
                &headers,
                &request_id,
                &user,
                Next {
                    interaction: &form.interaction,
                    return_to: None,
                },
                "auth.sign_up",
                json!({}),
            )
            .await
        }
        Err(e @ (ApiError::Validation(_) | ApiError::Conflict { .. })) => {
            let message = match &e {
                ApiError::Validation(v) => {
                    format!("Check the {}: {}.", v.field.replace('_', " "), v.message)
                }
                ApiError::Conflict {
                    code: "username_taken",
                    ..
                } => "That username is taken.".into(),
                ApiError::Conflict {
                    code: "email_taken",
                    ..
                } => "An account with this email already exists. Sign in instead.".into(),
                _ => "That account already exists.".into(),
            };
            render_sign_up(
                &state,
                &headers,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                Some(&message),
            )
            .await
        }
        Err(e) => failed(e, &request_id),
    }
}

// ---- the flow between steps --------------------------------------------------------------

/// `GET /oauth2/authorize/resume`: continue an interaction after a step.
pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(query): Query<InteractionQuery>,
) -> Response {
    let result = async {
        match flow::load(&state, &query.interaction).await? {
            Some(pending) => flow::advance(&state, &headers, &request_id, pending).await,
            None => Ok(expired_page()),
        }
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

/// Loads the interaction and the signed-in user for a step page; `Err` is the response
/// to send instead (expired interaction, or back to sign-in).
pub(super) async fn step_context(
    state: &AppState,
    headers: &HeaderMap,
    interaction: &str,
) -> Result<Result<(Pending, User), Response>, ApiError> {
    let Some(pending) = flow::load(state, interaction).await? else {
        return Ok(Err(expired_page()));
    };
    let session = session::current(state, headers).await?;
    let user = match session {
        Some(s) if pending.progress.user_id.as_deref() == Some(&s.user_id) => {
            state.store.get_user(&s.user_id).await?
        }
        _ => None,
    };
    match user {
        Some(user) => Ok(Ok((pending, user))),
        None => Ok(Err(see_other(&format!(
            "/oauth2/authorize/resume?interaction={}",
            enc(interaction)
        )))),
    }
}

// ---- workspace picker --------------------------------------------------------------------

#[derive(Serialize)]
struct WorkspaceChoice {
    id: String,
    name: String,
    role: Role,
}

#[derive(Serialize)]
struct WorkspacePage<'a> {
    csrf_token: &'a str,
    interaction: &'a str,
    workspaces: Vec<WorkspaceChoice>,
    error: Option<&'a str>,
    client_name: Option<String>,
}

/// Workspaces where the user is owner or admin (the ones `workspace:admin` may pick).
async fn administered_workspaces(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<WorkspaceChoice>, ApiError> {
    let filter = AccountFilter {
        member_user_id: Some(user_id.to_owned()),
        ..AccountFilter::default()
    };
    let accounts = state
        .store
        .list_accounts(
            &filter,
            &PageRequest {
                cursor: None,
                limit: 200,
            },
        )
        .await?;
    let mut choices = Vec::new();
    for account in accounts {
        if let Some(m) = state.store.get_member(&account.id, user_id).await? {
            if matches!(m.role, Role::Owner | Role::Admin) {
                choices.push(WorkspaceChoice {
                    id: account.id,
                    name: account.name,
                    role: m.role,
                });
            }
        }
    }
    Ok(choices)
}

async fn render_workspace(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    pending: &Pending,
    user_id: &str,
    error: Option<&str>,
) -> Result<Response, ApiError> {
    let csrf = Csrf::for_request(state, headers);
    let workspaces = administered_workspaces(state, user_id).await?;
    let mut response = page(
        status,
        "workspace.html",
        WorkspacePage {
            csrf_token: &csrf.token,
            interaction: &pending.interaction.id,
            workspaces,
            error,
            client_name: client_name(state, pending).await,
        },
    );
    csrf.apply(&mut response);
    Ok(response)
}

pub async fn workspace_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(query): Query<InteractionQuery>,
) -> Response {
    let result = async {
        match step_context(&state, &headers, &query.interaction).await? {
            Ok((pending, user)) => {
                render_workspace(&state, &headers, StatusCode::OK, &pending, &user.id, None).await
            }
            Err(response) => Ok(response),
        }
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

#[derive(Debug, Deserialize)]
pub struct WorkspaceForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    interaction: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    workspace_name: String,
}

pub async fn workspace_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Form(form): Form<WorkspaceForm>,
) -> Response {
    if !Csrf::verify(&headers, &form.csrf_token) {
        return csrf_refused();
    }
    let result = async {
        let (mut pending, user) = match step_context(&state, &headers, &form.interaction).await? {
            Ok(ctx) => ctx,
            Err(response) => return Ok(response),
        };
        let (account_id, role) = if form.action == "create" {
            let name = match validate::display_name("workspace_name", &form.workspace_name) {
                Ok(name) => name,
                Err(_) => {
                    return render_workspace(
                        &state,
                        &headers,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &pending,
                        &user.id,
                        Some("Give the new workspace a name."),
                    )
                    .await
                }
            };
            let account = create_workspace(&state, &request_id, &user, name).await?;
            (account.id, Role::Owner)
        } else {
            match state.store.get_member(&form.account_id, &user.id).await? {
                Some(m) if matches!(m.role, Role::Owner | Role::Admin) => (m.account_id, m.role),
                _ => {
                    return render_workspace(
                        &state,
                        &headers,
                        StatusCode::FORBIDDEN,
                        &pending,
                        &user.id,
                        Some("Pick a workspace where you are an owner or admin."),
                    )
                    .await
                }
            }
        };
        pending.progress.account_id = Some(account_id);
        pending.progress.role = Some(role);
        pending.save(&state).await?;
        Ok(see_other(&format!(
            "/oauth2/authorize/resume?interaction={}",
            enc(&pending.interaction.id)
        )))
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

/// A new root account with the user as its owner.
async fn create_workspace(
    state: &AppState,
    request_id: &RequestId,
    user: &User,
    name: String,
) -> Result<Account, ApiError> {
    let now = OffsetDateTime::now_utc();
    let account = Account {
        id: new_id(IdKind::Account),
        name,
        parent_account_id: None,
        custom_data: json!({}),
        created_at: now,
        updated_at: now,
    };
    state.store.create_account(&account).await?;
    let membership = Membership {
        id: new_id(IdKind::Membership),
        account_id: account.id.clone(),
        user_id: user.id.clone(),
        role: Role::Owner,
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = state.store.add_member(&membership).await {
        // Never leave an account without its owner behind.
        let _ = state.store.delete_account(&account.id, true).await;
        return Err(e.into());
    }
    audit::record(
        state,
        request_id,
        Actor {
            kind: "user",
            id: Some(&user.id),
        },
        "account.create",
        "account",
        Some(&account.id),
        AuditOutcome::Success,
        None,
        json!({ "via": "workspace_picker" }),
    )
    .await;
    Ok(account)
}

// ---- consent -----------------------------------------------------------------------------

#[derive(Serialize)]
struct ScopeLine {
    name: String,
    description: String,
}

#[derive(Serialize)]
struct ConsentPage<'a> {
    csrf_token: &'a str,
    interaction: &'a str,
    scopes: Vec<ScopeLine>,
    user_label: String,
    workspace: Option<String>,
    redirect_host: String,
    client_name: Option<String>,
    /// The project a partner's claim moves into the chosen workspace.
    claim_project: Option<String>,
}

fn identity_scope_description(scope: &str) -> Option<&'static str> {
    Some(match scope {
        OPENID => "Know who you are",
        PROFILE => "See your name, username and picture",
        EMAIL => "See your email address",
        PHONE => "See your phone number",
        OFFLINE_ACCESS => "Stay signed in to act for you while you are away",
        WORKSPACE_ADMIN => "Administer the workspace you choose",
        _ => return None,
    })
}

pub async fn consent_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(query): Query<InteractionQuery>,
) -> Response {
    let result = async {
        let (pending, user) = match step_context(&state, &headers, &query.interaction).await? {
            Ok(ctx) => ctx,
            Err(response) => return Ok(response),
        };
        let resource = match &pending.request.resource {
            Some(id) => state.resource(id).await?,
            None => None,
        };
        let scopes = pending
            .request
            .scopes
            .iter()
            .map(|name| {
                let description = identity_scope_description(name)
                    .map(str::to_owned)
                    .or_else(|| {
                        resource.as_ref().and_then(|r| {
                            r.scopes
                                .iter()
                                .find(|d| &d.name == name)
                                .and_then(|d| d.description.clone())
                        })
                    })
                    .unwrap_or_else(|| match &resource {
                        Some(r) => format!("Use {} ({})", r.name, name),
                        None => name.clone(),
                    });
                ScopeLine {
                    name: name.clone(),
                    description,
                }
            })
            .collect();
        let workspace = match &pending.progress.account_id {
            Some(id) => state.store.get_account(id).await?.map(|a| a.name),
            None => None,
        };
        let redirect_host = url::Url::parse(&pending.request.redirect_uri)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| pending.request.redirect_uri.clone());
        let user_label = user
            .primary_email
            .clone()
            .or(user.username.clone())
            .or(user.primary_phone.clone())
            .unwrap_or(user.id.clone());
        let claim_project = match &pending.request.claim_project_id {
            Some(id) => state.store.get_project(id).await?.map(|p| p.name),
            None => None,
        };
        let csrf = Csrf::for_request(&state, &headers);
        let mut response = page(
            StatusCode::OK,
            "consent.html",
            ConsentPage {
                csrf_token: &csrf.token,
                interaction: &pending.interaction.id,
                scopes,
                user_label,
                workspace,
                redirect_host,
                client_name: client_name(&state, &pending).await,
                claim_project,
            },
        );
        csrf.apply(&mut response);
        Ok(response)
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    interaction: String,
    #[serde(default)]
    decision: String,
}

pub async fn consent_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Form(form): Form<ConsentForm>,
) -> Response {
    if !Csrf::verify(&headers, &form.csrf_token) {
        return csrf_refused();
    }
    let result = async {
        let (mut pending, user) = match step_context(&state, &headers, &form.interaction).await? {
            Ok(ctx) => ctx,
            Err(response) => return Ok(response),
        };
        if form.decision != "allow" {
            state
                .store
                .delete_interaction(&pending.interaction.id)
                .await?;
            audit::record(
                &state,
                &request_id,
                Actor {
                    kind: "user",
                    id: Some(&user.id),
                },
                "oauth.consent",
                "application",
                Some(&pending.request.client_id),
                AuditOutcome::Denied,
                Some("user_denied"),
                json!({ "scope": pending.request.scopes.join(" ") }),
            )
            .await;
            return Ok(flow::error_redirect(
                &state,
                &pending.request,
                "access_denied",
                "the user denied the request",
            ));
        }
        let resource = pending.request.resource.clone().unwrap_or_default();
        let mut scopes = state
            .store
            .get_consent(&user.id, &pending.request.client_id, &resource)
            .await?
            .map(|c| c.scopes)
            .unwrap_or_default();
        for s in &pending.request.scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        state
            .store
            .save_consent(&Consent {
                user_id: user.id.clone(),
                client_id: pending.request.client_id.clone(),
                resource,
                scopes,
                updated_at: OffsetDateTime::now_utc(),
            })
            .await?;
        pending.progress.consented = true;
        pending.save(&state).await?;
        Ok(see_other(&format!(
            "/oauth2/authorize/resume?interaction={}",
            enc(&pending.interaction.id)
        )))
    }
    .await;
    result.unwrap_or_else(|e| failed(e, &request_id))
}

// ---- sign-out and the signed-in home -----------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct SignOutQuery {
    #[serde(default, rename = "continue")]
    pub continue_to: String,
}

#[derive(Serialize)]
struct SignOutPage<'a> {
    csrf_token: &'a str,
    #[serde(rename = "continue")]
    continue_to: &'a str,
    client_name: Option<String>,
}

pub async fn sign_out_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SignOutQuery>,
) -> Response {
    let csrf = Csrf::for_request(&state, &headers);
    let mut response = page(
        StatusCode::OK,
        "sign_out.html",
        SignOutPage {
            csrf_token: &csrf.token,
            continue_to: &query.continue_to,
            client_name: None,
        },
    );
    csrf.apply(&mut response);
    response
}

#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default, rename = "continue")]
    continue_to: String,
}

pub async fn sign_out_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Form(form): Form<SignOutForm>,
) -> Response {
    if !Csrf::verify(&headers, &form.csrf_token) {
        return csrf_refused();
    }
    let user = session::current(&state, &headers)
        .await
        .ok()
        .flatten()
        .map(|s| s.user_id);
    match session::end(&state, &headers).await {
        Ok(cookie) => {
            if let Some(user_id) = &user {
                audit::record(
                    &state,
                    &request_id,
                    Actor {
                        kind: "user",
                        id: Some(user_id),
                    },
                    "auth.sign_out",
                    "user",
                    Some(user_id),
                    AuditOutcome::Success,
                    None,
                    json!({}),
                )
                .await;
            }
            // `continue` is only ever a path on this server (set by end-session), never a
            // URL elsewhere: no open redirect.
            let target = if form.continue_to.starts_with('/') && !form.continue_to.starts_with("//")
            {
                form.continue_to.as_str()
            } else {
                "/signed-out"
            };
            let mut response = see_other(target);
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => failed(e, &request_id),
    }
}

pub async fn signed_out() -> Response {
    info_page("You are signed out", "You can close this window.", None)
}

pub async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
) -> Response {
    let result = async {
        let Some(session) = session::current(&state, &headers).await? else {
            return Ok(info_page(
                "Keyward",
                "You are not signed in. Applications that use Keyward will send you here to sign in.",
                None,
            ));
        };
        let label = state
            .store
            .get_user(&session.user_id)
            .await?
            .and_then(|u| u.primary_email.or(u.username))
            .unwrap_or(session.user_id);
        Ok(info_page(
            "You are signed in",
            &format!("Signed in as {label}."),
            Some(("/sign-out", "Sign out")),
        ))
    }
    .await;
    result.unwrap_or_else(|e: ApiError| failed(e, &request_id))
}

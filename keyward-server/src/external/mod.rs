//! External applications (SPEC §3): Keyward as an OAuth 2.0 client of other servers.
//!
//! - `api`: the management API (configure, disable/enable/reset/delete, who is connected,
//!   member permissions) and the users' side (their connections, a valid access token,
//!   the proxy);
//! - `pages`: the approval prompt, the redirect to the server's authorization page and the
//!   per-application callback;
//! - this module: sealing and opening secrets, talking to the server's token endpoint
//!   (direct: RFC 6749 §4.1.3 and §6; private: request templates) through the egress
//!   policy, and [`access_token`], which refreshes with one refresh in flight per
//!   connection across all nodes (the store's refresh lease).

pub mod api;
pub mod pages;

use std::time::Duration as StdDuration;

use base64::Engine;
use keyward_core::external::{
    client_secret_aad, connection_aad, read_token_response, render_request, ConnectionState,
    ConnectionTokens, ExternalApplication, ExternalConnection, ExternalProtocol, ResponseMapping,
    TemplateValues, TokenAuthMethod, TokenResponseFields, REFRESH_LEASE,
};
use keyward_core::secret::random_token;
use time::OffsetDateTime;

use crate::egress::{EgressError, EgressPolicy, EgressRequest, HeaderMap, Method, Url};
use crate::error::ApiError;
use crate::state::AppState;

/// How long a caller waits for another request's refresh of the same connection before
/// giving up (a little longer than the lease, after which it would take over anyway).
const REFRESH_WAIT: StdDuration = StdDuration::from_secs(35);
/// Poll interval while another request holds the refresh lease.
const REFRESH_POLL: StdDuration = StdDuration::from_millis(20);

/// Why an external token could not be had. Mapped to problem+json by `From<ExternalError>`.
#[derive(Debug)]
pub enum ExternalError {
    Disabled,
    /// The user has no connection yet.
    NotConnected {
        authorize_url: String,
    },
    /// The server refused the refresh token, or there is none and the token expired.
    ReauthorizationRequired {
        authorize_url: String,
    },
    /// The stored tokens failed authentication (tampered, or sealed under an unknown key).
    Unreadable {
        authorize_url: String,
    },
    /// The server answered `invalid_grant` (code or refresh token refused).
    InvalidGrant(String),
    /// The server failed or answered something unusable.
    Provider(String),
    /// The egress policy refused the request.
    Egress(EgressError),
    /// Another request's refresh did not finish in time.
    Busy,
    Api(ApiError),
}

impl From<ApiError> for ExternalError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<keyward_core::StoreError> for ExternalError {
    fn from(e: keyward_core::StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl From<ExternalError> for ApiError {
    fn from(e: ExternalError) -> Self {
        match e {
            ExternalError::Disabled => ApiError::Forbidden {
                code: "external_application_disabled",
                detail: "this external application is disabled by an administrator".into(),
            },
            ExternalError::NotConnected { authorize_url } => ApiError::Reconnect {
                code: "not_connected",
                detail: format!(
                    "you have not connected this application yet; open {authorize_url} in a browser to connect"
                ),
                authorize_url,
            },
            ExternalError::ReauthorizationRequired { authorize_url } => ApiError::Reconnect {
                code: "reauthorization_required",
                detail: format!(
                    "the external server no longer accepts this connection; open {authorize_url} in a browser to connect again"
                ),
                authorize_url,
            },
            ExternalError::Unreadable { authorize_url } => ApiError::Reconnect {
                code: "connection_unreadable",
                detail: format!(
                    "the stored tokens of this connection cannot be read; open {authorize_url} in a browser to connect again"
                ),
                authorize_url,
            },
            ExternalError::InvalidGrant(detail) | ExternalError::Provider(detail) => {
                ApiError::BadGateway {
                    code: "provider_error",
                    detail,
                }
            }
            ExternalError::Egress(e) if e.is_policy_refusal() => ApiError::Forbidden {
                code: "egress_refused",
                detail: format!("the egress policy refuses this request: {e}"),
            },
            ExternalError::Egress(e) => ApiError::BadGateway {
                code: "upstream_unreachable",
                detail: format!("the external server could not be reached: {e}"),
            },
            ExternalError::Busy => ApiError::Unavailable {
                code: "refresh_in_progress",
                detail: "another request is refreshing this connection; retry in a moment".into(),
            },
            ExternalError::Api(e) => e,
        }
    }
}

/// `{issuer}/external-applications/{id}/callback`: the redirect URI to register at the
/// server, one per application.
pub fn callback_url(state: &AppState, application_id: &str) -> String {
    format!(
        "{}/external-applications/{application_id}/callback",
        state.settings.issuer().trim_end_matches('/')
    )
}

/// `{issuer}/external-applications/{id}/authorize`: where a user (re)connects.
pub fn authorize_url(state: &AppState, application_id: &str) -> String {
    format!(
        "{}/external-applications/{application_id}/authorize",
        state.settings.issuer().trim_end_matches('/')
    )
}

/// Seals a client secret for application `id`: the sealed bytes and the key id.
pub fn seal_client_secret(
    state: &AppState,
    application_id: &str,
    secret: &str,
) -> Result<(Vec<u8>, String), ApiError> {
    crate::vault::seal(state, secret.as_bytes(), &client_secret_aad(application_id))
}

async fn open_client_secret(
    state: &AppState,
    app: &ExternalApplication,
) -> Result<String, ApiError> {
    let plain = crate::vault::open(
        state,
        &app.client_secret_sealed,
        &client_secret_aad(&app.id),
    )
    .await
    .map_err(|e| {
        ApiError::Internal(format!(
            "client secret of external application {} cannot be opened: {e}",
            app.id
        ))
    })?;
    String::from_utf8(plain).map_err(|_| ApiError::Internal("client secret is not UTF-8".into()))
}

/// Seals a connection's tokens, bound to its identity.
pub fn seal_tokens(
    state: &AppState,
    connection_id: &str,
    application_id: &str,
    user_id: &str,
    tokens: &ConnectionTokens,
) -> Result<(Vec<u8>, String), ApiError> {
    let json = serde_json::to_vec(tokens).map_err(|e| ApiError::Internal(e.to_string()))?;
    crate::vault::seal(
        state,
        &json,
        &connection_aad(connection_id, application_id, user_id),
    )
}

/// Opens a connection's tokens; anything but a clean open fails closed.
pub async fn open_tokens(
    state: &AppState,
    connection: &ExternalConnection,
) -> Result<ConnectionTokens, ExternalError> {
    let unreadable = || ExternalError::Unreadable {
        authorize_url: authorize_url(state, &connection.external_application_id),
    };
    let plain = crate::vault::open(
        state,
        &connection.tokens_sealed,
        &connection_aad(
            &connection.id,
            &connection.external_application_id,
            &connection.user_id,
        ),
    )
    .await
    .map_err(|e| {
        tracing::warn!(connection = %connection.id, error = %e, "stored external tokens refused");
        unreadable()
    })?;
    serde_json::from_slice(&plain).map_err(|_| unreadable())
}

fn policy(app: &ExternalApplication) -> Result<EgressPolicy, ExternalError> {
    EgressPolicy::parse(&app.egress_hosts).map_err(|e| {
        ExternalError::Api(ApiError::Internal(format!(
            "stored egress policy of {} is invalid: {e}",
            app.id
        )))
    })
}

fn parse_url(url: &str) -> Result<Url, ExternalError> {
    Url::parse(url).map_err(|e| ExternalError::Provider(format!("invalid URL {url}: {e}")))
}

/// `application/x-www-form-urlencoded` encoding of client credentials for HTTP Basic
/// (RFC 6749 §2.3.1).
fn basic_credentials(client_id: &str, client_secret: &str) -> String {
    let encode =
        |v: &str| -> String { url::form_urlencoded::byte_serialize(v.as_bytes()).collect() };
    let raw = format!("{}:{}", encode(client_id), encode(client_secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// What the token endpoint is asked for.
enum TokenGrant<'a> {
    AuthorizationCode {
        code: &'a str,
        code_verifier: Option<&'a str>,
    },
    Refresh {
        refresh_token: &'a str,
    },
}

/// Calls the server's token endpoint for `grant` and reads the response.
async fn token_request(
    state: &AppState,
    app: &ExternalApplication,
    grant: TokenGrant<'_>,
) -> Result<TokenResponseFields, ExternalError> {
    let policy = policy(app)?;
    let client_secret = open_client_secret(state, app).await?;
    let redirect_uri = callback_url(state, &app.id);
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::header::ACCEPT,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let (request, mapping) = match &app.protocol {
        ExternalProtocol::Direct {
            token_url,
            token_auth_method,
            ..
        } => {
            let mut form: Vec<(&str, &str)> = match &grant {
                TokenGrant::AuthorizationCode {
                    code,
                    code_verifier,
                } => {
                    let mut form = vec![
                        ("grant_type", "authorization_code"),
                        ("code", code),
                        ("redirect_uri", redirect_uri.as_str()),
                    ];
                    if let Some(verifier) = code_verifier {
                        form.push(("code_verifier", verifier));
                    }
                    form
                }
                TokenGrant::Refresh { refresh_token } => vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ],
            };
            match token_auth_method {
                TokenAuthMethod::ClientSecretBasic => {
                    let value = basic_credentials(&app.client_id, &client_secret);
                    headers.insert(
                        axum::http::header::AUTHORIZATION,
                        axum::http::HeaderValue::from_str(&value)
                            .map_err(|_| ExternalError::Provider("invalid client id".into()))?,
                    );
                    // RFC 6749 §2.3.1 lets the client id ride along; some servers need it.
                    form.push(("client_id", app.client_id.as_str()));
                }
                TokenAuthMethod::ClientSecretPost => {
                    form.push(("client_id", app.client_id.as_str()));
                    form.push(("client_secret", client_secret.as_str()));
                }
            }
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish()
                .into_bytes();
            (
                EgressRequest {
                    method: Method::POST,
                    url: parse_url(token_url)?,
                    headers,
                    body: Some(body),
                    follow_redirects: false,
                },
                ResponseMapping::default(),
            )
        }
        ExternalProtocol::Private {
            token_request,
            refresh_request,
            response_mapping,
        } => {
            let (template, values) = match &grant {
                TokenGrant::AuthorizationCode {
                    code,
                    code_verifier,
                } => (
                    token_request,
                    TemplateValues {
                        client_id: &app.client_id,
                        client_secret: &client_secret,
                        redirect_uri: &redirect_uri,
                        authorization_code: Some(code),
                        refresh_token: None,
                        code_verifier: *code_verifier,
                    },
                ),
                TokenGrant::Refresh { refresh_token } => (
                    refresh_request.as_ref().ok_or_else(|| {
                        ExternalError::Provider("the application has no refresh request".into())
                    })?,
                    TemplateValues {
                        client_id: &app.client_id,
                        client_secret: &client_secret,
                        redirect_uri: &redirect_uri,
                        authorization_code: None,
                        refresh_token: Some(refresh_token),
                        code_verifier: None,
                    },
                ),
            };
            let rendered = render_request(template, &values)
                .map_err(|e| ExternalError::Provider(format!("request template: {e}")))?;
            for (name, value) in &rendered.headers {
                let name = axum::http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ExternalError::Provider(format!("invalid header {name}")))?;
                let value = axum::http::HeaderValue::from_str(value)
                    .map_err(|_| ExternalError::Provider(format!("invalid value of {name}")))?;
                headers.insert(name, value);
            }
            let method = Method::from_bytes(rendered.method.as_bytes())
                .map_err(|_| ExternalError::Provider("invalid method".into()))?;
            let body = if method == Method::GET {
                None
            } else {
                headers
                    .entry(axum::http::header::CONTENT_TYPE)
                    .or_insert(axum::http::HeaderValue::from_static(rendered.content_type));
                Some(rendered.body)
            };
            (
                EgressRequest {
                    method,
                    url: parse_url(&rendered.url)?,
                    headers,
                    body,
                    follow_redirects: false,
                },
                response_mapping.clone(),
            )
        }
    };
    let private = matches!(app.protocol, ExternalProtocol::Private { .. });
    let response = state
        .egress
        .send(&policy, request)
        .await
        .map_err(ExternalError::Egress)?;
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    if !response.status.is_success() {
        let error = body.get("error").and_then(|v| v.as_str()).unwrap_or("");
        let description = body
            .get("error_description")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let message = format!(
            "the token endpoint answered {} {error} {description}",
            response.status.as_u16()
        );
        // RFC 6749 §5.2: `invalid_grant` means the code or refresh token is no longer
        // good. A private server may not speak RFC 6749 errors; a 400/401/403 there is
        // the same refusal.
        let refused = error == "invalid_grant"
            || (private && matches!(response.status.as_u16(), 400 | 401 | 403));
        return Err(if refused {
            ExternalError::InvalidGrant(message.trim().to_owned())
        } else {
            ExternalError::Provider(message.trim().to_owned())
        });
    }
    read_token_response(&body, &mapping)
        .map_err(|e| ExternalError::Provider(format!("unusable token response: {e}")))
}

/// Exchanges an authorization code (RFC 6749 §4.1.3).
pub async fn exchange_code(
    state: &AppState,
    app: &ExternalApplication,
    code: &str,
    code_verifier: Option<&str>,
) -> Result<TokenResponseFields, ExternalError> {
    token_request(
        state,
        app,
        TokenGrant::AuthorizationCode {
            code,
            code_verifier,
        },
    )
    .await
}

/// Best-effort RFC 7009 revocation of a deleted connection's tokens (refresh token first:
/// revoking it revokes its access tokens at most servers). Failures are logged only.
pub async fn revoke_best_effort(
    state: &AppState,
    app: &ExternalApplication,
    connection: &ExternalConnection,
) {
    let ExternalProtocol::Direct {
        revocation_url: Some(revocation_url),
        token_auth_method,
        ..
    } = &app.protocol
    else {
        return;
    };
    let Ok(tokens) = open_tokens(state, connection).await else {
        return;
    };
    let Ok(policy) = policy(app) else { return };
    let Ok(client_secret) = open_client_secret(state, app).await else {
        return;
    };
    let Ok(url) = Url::parse(revocation_url) else {
        return;
    };
    let mut to_revoke = Vec::new();
    if let Some(refresh) = &tokens.refresh_token {
        to_revoke.push((refresh.as_str(), "refresh_token"));
    }
    to_revoke.push((tokens.access_token.as_str(), "access_token"));
    for (token, hint) in to_revoke {
        let mut form = vec![("token", token), ("token_type_hint", hint)];
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        match token_auth_method {
            TokenAuthMethod::ClientSecretBasic => {
                if let Ok(value) = axum::http::HeaderValue::from_str(&basic_credentials(
                    &app.client_id,
                    &client_secret,
                )) {
                    headers.insert(axum::http::header::AUTHORIZATION, value);
                }
            }
            TokenAuthMethod::ClientSecretPost => {
                form.push(("client_id", app.client_id.as_str()));
                form.push(("client_secret", client_secret.as_str()));
            }
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish()
            .into_bytes();
        let request = EgressRequest {
            method: Method::POST,
            url: url.clone(),
            headers,
            body: Some(body),
            follow_redirects: false,
        };
        match state.egress.send(&policy, request).await {
            Ok(response) if response.status.is_success() => {}
            Ok(response) => {
                tracing::warn!(application = %app.id, status = response.status.as_u16(), "token revocation refused")
            }
            Err(e) => tracing::warn!(application = %app.id, error = %e, "token revocation failed"),
        }
    }
}

/// Connections a deletion is about to remove (with their applications), gathered before
/// it so that their tokens can still be opened and revoked at the servers once the rows
/// are gone, as when an application is reset.
#[derive(Default)]
pub struct PendingRevocations(Vec<(ExternalApplication, ExternalConnection)>);

/// Page size when gathering connections and accounts for a deletion.
const GATHER_PAGE: u32 = 500;

impl PendingRevocations {
    /// Every connection of the user.
    pub async fn for_user(state: &AppState, user_id: &str) -> Result<Self, ApiError> {
        let mut pending = Self::default();
        let mut apps: std::collections::HashMap<String, Option<ExternalApplication>> =
            std::collections::HashMap::new();
        for connection in state.store.list_user_external_connections(user_id).await? {
            let app_id = connection.external_application_id.clone();
            if !apps.contains_key(&app_id) {
                let app = state.store.get_external_application(&app_id).await?;
                apps.insert(app_id.clone(), app);
            }
            if let Some(Some(app)) = apps.get(&app_id) {
                pending.0.push((app.clone(), connection));
            }
        }
        Ok(pending)
    }

    /// Every connection to an application of the account and, with `cascade`, of its
    /// descendant accounts (which the deletion takes too).
    pub async fn for_account(
        state: &AppState,
        account_id: &str,
        cascade: bool,
    ) -> Result<Self, ApiError> {
        let mut pending = Self::default();
        let mut accounts = vec![account_id.to_owned()];
        while let Some(account) = accounts.pop() {
            if cascade {
                let filter = keyward_core::store::AccountFilter {
                    parent_account_id: Some(account.clone()),
                    member_user_id: None,
                };
                let filter = &filter;
                let children = every_page(
                    |page| async move { state.store.list_accounts(filter, &page).await },
                    |child: &keyward_core::model::Account| &child.id,
                )
                .await?;
                accounts.extend(children.into_iter().map(|child| child.id));
            }
            let account = account.as_str();
            let apps = every_page(
                |page| async move { state.store.list_external_applications(account, &page).await },
                |app: &ExternalApplication| &app.id,
            )
            .await?;
            for app in apps {
                let app_id = app.id.as_str();
                let connections = every_page(
                    |page| async move {
                        state
                            .store
                            .list_application_external_connections(app_id, &page)
                            .await
                    },
                    |connection: &ExternalConnection| &connection.id,
                )
                .await?;
                pending
                    .0
                    .extend(connections.into_iter().map(|c| (app.clone(), c)));
            }
        }
        Ok(pending)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Revokes them at their servers in the background (best effort, a few at a time):
    /// the deletion has happened and does not wait on other servers.
    pub fn revoke_in_background(self, state: &AppState) {
        if self.0.is_empty() {
            return;
        }
        let state = state.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            futures_util::stream::iter(self.0)
                .for_each_concurrent(8, |(app, connection)| {
                    let state = state.clone();
                    async move { revoke_best_effort(&state, &app, &connection).await }
                })
                .await;
        });
    }
}

/// Every row of a cursor-paged store list (the store answers up to `limit + 1` rows; the
/// last one kept is the next cursor).
async fn every_page<T, F, Fut>(mut fetch: F, id_of: impl Fn(&T) -> &str) -> Result<Vec<T>, ApiError>
where
    F: FnMut(keyward_core::store::PageRequest) -> Fut,
    Fut: std::future::Future<Output = keyward_core::store::StoreResult<Vec<T>>>,
{
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let mut rows = fetch(keyward_core::store::PageRequest {
            cursor: cursor.take(),
            limit: GATHER_PAGE,
        })
        .await?;
        let more = rows.len() > GATHER_PAGE as usize;
        rows.truncate(GATHER_PAGE as usize);
        cursor = rows.last().map(|row| id_of(row).to_owned());
        all.extend(rows);
        if !more {
            return Ok(all);
        }
    }
}

/// The connection and its tokens for (application, user), valid for at least the refresh
/// margin. Refreshes when needed, with exactly one refresh in flight per connection across
/// every request and node: the store's refresh lease is a conditional write on the
/// connection's row; whoever does not get it waits for the row to change.
pub async fn access_token(
    state: &AppState,
    app: &ExternalApplication,
    user_id: &str,
) -> Result<(ExternalConnection, ConnectionTokens), ExternalError> {
    if !app.enabled {
        return Err(ExternalError::Disabled);
    }
    let reconnect = || authorize_url(state, &app.id);
    let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
    loop {
        let connection = state
            .store
            .find_external_connection(&app.id, user_id)
            .await?
            .ok_or_else(|| ExternalError::NotConnected {
                authorize_url: reconnect(),
            })?;
        if connection.state == ConnectionState::NeedsReauthorization {
            return Err(ExternalError::ReauthorizationRequired {
                authorize_url: reconnect(),
            });
        }
        let now = OffsetDateTime::now_utc();
        if !connection.needs_refresh(now) {
            let tokens = open_tokens(state, &connection).await?;
            return Ok((connection, tokens));
        }
        let tokens = open_tokens(state, &connection).await?;
        let Some(refresh_token) = tokens
            .refresh_token
            .clone()
            .filter(|_| app.protocol.can_refresh())
        else {
            // Nothing to refresh with: usable until it actually expires, then the user
            // must connect again.
            if connection.expires_at.is_some_and(|at| at > now) {
                return Ok((connection, tokens));
            }
            return Err(ExternalError::ReauthorizationRequired {
                authorize_url: reconnect(),
            });
        };
        let holder = random_token(12);
        if state
            .store
            .lease_connection_refresh(&connection.id, &holder, now, now + REFRESH_LEASE)
            .await?
        {
            return refresh_under_lease(state, app, &connection.id, &holder, refresh_token).await;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ExternalError::Busy);
        }
        tokio::time::sleep(REFRESH_POLL).await;
    }
}

/// Holding the lease: re-reads the row (another node may have refreshed between our read
/// and the lease), refreshes at the server if still needed, stores the result and releases.
async fn refresh_under_lease(
    state: &AppState,
    app: &ExternalApplication,
    connection_id: &str,
    holder: &str,
    stale_refresh_token: String,
) -> Result<(ExternalConnection, ConnectionTokens), ExternalError> {
    let release = |needs_reauthorization: bool| async move {
        if let Err(e) = state
            .store
            .release_connection_refresh(
                connection_id,
                holder,
                needs_reauthorization,
                OffsetDateTime::now_utc(),
            )
            .await
        {
            tracing::error!(connection = connection_id, error = %e, "could not release the refresh lease");
        }
    };
    let current = match state.store.get_external_connection(connection_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(ExternalError::NotConnected {
                authorize_url: authorize_url(state, &app.id),
            })
        }
        Err(e) => {
            release(false).await;
            return Err(e.into());
        }
    };
    let now = OffsetDateTime::now_utc();
    let tokens = match open_tokens(state, &current).await {
        Ok(t) => t,
        Err(e) => {
            release(false).await;
            return Err(e);
        }
    };
    if !current.needs_refresh(now) {
        release(false).await;
        return Ok((current, tokens));
    }
    let refresh_token = tokens.refresh_token.clone().unwrap_or(stale_refresh_token);
    let fields = match token_request(
        state,
        app,
        TokenGrant::Refresh {
            refresh_token: &refresh_token,
        },
    )
    .await
    {
        Ok(fields) => fields,
        Err(ExternalError::InvalidGrant(detail)) => {
            tracing::info!(
                connection = connection_id,
                detail,
                "refresh refused; the user must reconnect"
            );
            release(true).await;
            return Err(ExternalError::ReauthorizationRequired {
                authorize_url: authorize_url(state, &app.id),
            });
        }
        Err(e) => {
            release(false).await;
            return Err(e);
        }
    };
    let refreshed = ConnectionTokens {
        access_token: fields.access_token,
        // RFC 6749 §6: the server may keep the refresh token; then the old one stays.
        refresh_token: fields.refresh_token.or(Some(refresh_token)),
        token_type: fields.token_type.or(tokens.token_type),
    };
    let expires_at =
        keyward_core::external::expiry(now, fields.expires_in, app.default_expires_in_secs);
    let scope = fields.scope.or(current.scope.clone());
    let (sealed, key_id) =
        match seal_tokens(state, &current.id, &app.id, &current.user_id, &refreshed) {
            Ok(s) => s,
            Err(e) => {
                release(false).await;
                return Err(e.into());
            }
        };
    let stored = state
        .store
        .complete_connection_refresh(
            connection_id,
            holder,
            &sealed,
            &key_id,
            scope.as_deref(),
            expires_at,
            now,
        )
        .await?;
    if !stored {
        // The lease ran out and someone else took over; our tokens may already be
        // superseded at the server. Use what is stored now.
        tracing::warn!(
            connection = connection_id,
            "refresh lease lost before the result was stored"
        );
    }
    state.metrics.external_refreshes.inc();
    let connection = ExternalConnection {
        tokens_sealed: sealed,
        key_id,
        scope,
        expires_at,
        state: ConnectionState::Active,
        last_refreshed_at: Some(now),
        updated_at: now,
        ..current
    };
    Ok((connection, refreshed))
}

/// Re-seals every stored external secret under the vault's current key (after a
/// rotation). Returns (client secrets, connections) re-sealed and the connections that
/// could not be opened (left as they are, and reported). Rows a concurrent refresh
/// rewrote are already current.
pub async fn reseal_all(state: &AppState) -> Result<(u64, u64, u64), ApiError> {
    let key_id = state.vault()?.current_key_id();
    let mut applications = 0u64;
    let mut skipped: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let batch = state
            .store
            .external_applications_sealed_with_other_keys(&key_id, 100)
            .await?;
        let fresh: Vec<_> = batch
            .into_iter()
            .filter(|a| !skipped.contains(&a.id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for app in fresh {
            let secret = match open_client_secret(state, &app).await {
                Ok(secret) => secret,
                Err(e) => {
                    tracing::error!(application = %app.id, error = ?e, "client secret cannot be re-sealed");
                    skipped.insert(app.id.clone());
                    continue;
                }
            };
            let (sealed, new_key) = seal_client_secret(state, &app.id, &secret)?;
            if state
                .store
                .reseal_external_client_secret(
                    &app.id,
                    &app.client_secret_sealed,
                    &sealed,
                    &new_key,
                )
                .await?
            {
                applications += 1;
            } else {
                skipped.insert(app.id.clone());
            }
        }
    }
    let mut connections = 0u64;
    let mut unreadable = 0u64;
    loop {
        let batch = state
            .store
            .external_connections_sealed_with_other_keys(&key_id, 100)
            .await?;
        let fresh: Vec<_> = batch
            .into_iter()
            .filter(|c| !skipped.contains(&c.id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for connection in fresh {
            let tokens = match open_tokens(state, &connection).await {
                Ok(tokens) => tokens,
                Err(_) => {
                    unreadable += 1;
                    skipped.insert(connection.id.clone());
                    continue;
                }
            };
            let (sealed, new_key) = seal_tokens(
                state,
                &connection.id,
                &connection.external_application_id,
                &connection.user_id,
                &tokens,
            )?;
            if state
                .store
                .reseal_external_connection(
                    &connection.id,
                    &connection.tokens_sealed,
                    &sealed,
                    &new_key,
                )
                .await?
            {
                connections += 1;
            } else {
                // Rewritten meanwhile (a refresh): re-read it on the next pass.
                tracing::debug!(connection = %connection.id, "changed while re-sealing; retrying");
            }
        }
    }
    Ok((applications, connections, unreadable))
}

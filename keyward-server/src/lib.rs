//! Keyward's HTTP server: the OAuth 2.0 endpoints, the management API, discovery,
//! health and metrics. Handlers are thin; rules live in `keyward-core`, persistence in
//! `keyward-store`.

pub mod api;
pub mod audit;
pub mod auth_json;
pub mod bootstrap;
pub mod egress;
pub mod error;
pub mod external;
pub mod extract;
pub mod hashing;
pub mod import;
pub mod mail;
pub mod metrics;
pub mod oauth;
pub mod ops;
pub mod provisioning;
pub mod settings;
pub mod state;
pub mod vault;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Request};
use axum::routing::{get, post};
use axum::Router;
use time::OffsetDateTime;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use bootstrap::{bootstrap, load_master_key, BootstrapReport, StartError};
pub use settings::Settings;
pub use state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Large enough for any management body; bulk endpoints set their own limit.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Keyward", description = "OAuth 2.0 authorization server and management API"),
    modifiers(&BearerAuth),
    // Documented here, served by its own lean router (see `router`).
    paths(oauth::token::token, import::api::import_users, external::api::proxy),
    tags(
        (name = "oauth", description = "OAuth 2.0 endpoints"),
        (name = "applications", description = "OAuth clients"),
        (name = "users"), (name = "accounts"), (name = "members"),
        (name = "resources", description = "APIs (audiences) and their scopes"),
        (name = "audit", description = "Audit log"),
        (name = "external applications", description = "Outbound OAuth clients, users' connections, their tokens and the proxy"),
        (name = "provisioning", description = "Partner database provisioning and claims (camelCase bodies)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token for the management API audience"))
                    .build(),
            ),
        );
    }
}

/// The documented routes, and the OpenAPI document generated from their annotations.
fn documented_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use api::{accounts, applications, audit_logs, members, resources, users};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(applications::create, applications::list))
        .routes(routes!(
            applications::get,
            applications::update,
            applications::delete
        ))
        .routes(routes!(applications::rotate_secret))
        .routes(routes!(applications::delete_secret))
        .routes(routes!(users::create_for_application))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(accounts::create, accounts::list))
        .routes(routes!(accounts::get, accounts::update, accounts::delete))
        .routes(routes!(accounts::create_child))
        .routes(routes!(members::list, members::add))
        .routes(routes!(members::update, members::remove))
        .routes(routes!(resources::create, resources::list))
        .routes(routes!(
            resources::get,
            resources::update,
            resources::delete
        ))
        .routes(routes!(audit_logs::list))
        .routes(routes!(provisioning::api::regions))
        .routes(routes!(
            provisioning::api::create_project,
            provisioning::api::list_projects
        ))
        .routes(routes!(
            provisioning::api::get_project,
            provisioning::api::update_project,
            provisioning::api::delete_project
        ))
        .routes(routes!(provisioning::api::transfer_project))
        .routes(routes!(
            provisioning::api::list_databases,
            provisioning::api::create_database
        ))
        .routes(routes!(
            provisioning::api::get_database,
            provisioning::api::delete_database
        ))
        .routes(routes!(provisioning::api::create_connection))
        .routes(routes!(provisioning::api::rotate_connection))
        .routes(routes!(provisioning::api::delete_connection))
        .routes(routes!(provisioning::api::lookup_claim))
        .routes(routes!(import::api::list_jobs))
        .routes(routes!(import::api::get_job))
        .routes(routes!(import::api::list_errors))
        .routes(routes!(external::api::create, external::api::list))
        .routes(routes!(
            external::api::get,
            external::api::update,
            external::api::delete
        ))
        .routes(routes!(external::api::lifecycle))
        .routes(routes!(external::api::connections))
        .routes(routes!(external::api::permissions))
        .routes(routes!(
            external::api::grant_permission,
            external::api::revoke_permission
        ))
        .routes(routes!(external::api::my_connections))
        .routes(routes!(external::api::delete_my_connection))
        .routes(routes!(external::api::token))
        .split_for_parts()
}

/// The OpenAPI 3.1 document of this server.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().1
}

/// The complete application router with its middleware.
pub fn router(state: AppState) -> Router {
    let (documented, openapi) = documented_routes();
    let openapi_json: Arc<str> = openapi.to_json().unwrap_or_default().into();
    let service_routes = Router::new()
        // Any method, so it is routed here and documented in `ApiDoc`.
        .route(
            "/api/external-applications/{id}/proxy",
            axum::routing::any(external::api::proxy),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(metrics::metrics_endpoint))
        .route(
            "/.well-known/openid-configuration",
            get(oauth::discovery::openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::discovery::oauth_authorization_server),
        )
        .route("/.well-known/jwks.json", get(oauth::discovery::jwks))
        .route(
            "/api/openapi.json",
            get(move || {
                let body = openapi_json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        body.to_string(),
                    )
                }
            }),
        )
        // The token endpoint also answers OPTIONS-less POSTs from the documented router.
        .route("/oauth2/token/", post(oauth::token::token))
        .route(
            "/oauth2/userinfo",
            get(oauth::endpoints::userinfo).post(oauth::endpoints::userinfo),
        )
        .route("/oauth2/revoke", post(oauth::endpoints::revoke))
        .route("/oauth2/introspect", post(oauth::endpoints::introspect))
        .route("/auth/csrf", get(auth_json::csrf))
        .route("/auth/sign-in", post(auth_json::sign_in))
        .route("/auth/sign-up", post(auth_json::sign_up))
        .route(
            "/api/accounts/{account_id}/token",
            post(auth_json::account_token),
        );
    // Hosted pages: HTML with the anti-framing and privacy headers.
    let pages = Router::new()
        .route("/", get(web::pages::home))
        .route("/assets/keyward.css", get(web::templates::stylesheet))
        .route(
            "/oauth2/authorize",
            get(oauth::authorize::authorize_get).post(oauth::authorize::authorize_post),
        )
        .route("/oauth2/authorize/resume", get(web::pages::resume))
        .route(
            "/oauth2/end-session",
            get(oauth::endpoints::end_session).post(oauth::endpoints::end_session),
        )
        .route(
            "/sign-in",
            get(web::pages::sign_in_page).post(web::pages::sign_in_submit),
        )
        .route(
            "/auth/sign-in/code",
            get(web::email_code::request_page).post(web::email_code::request_submit),
        )
        .route(
            "/auth/sign-in/code/verify",
            get(web::email_code::verify_page).post(web::email_code::verify_submit),
        )
        .route(
            "/auth/set-password",
            get(web::email_code::set_password_page).post(web::email_code::set_password_submit),
        )
        .route(
            "/sign-up",
            get(web::pages::sign_up_page).post(web::pages::sign_up_submit),
        )
        .route(
            "/workspace",
            get(web::pages::workspace_page).post(web::pages::workspace_submit),
        )
        .route(
            "/consent",
            get(web::pages::consent_page).post(web::pages::consent_submit),
        )
        .route(
            "/sign-out",
            get(web::pages::sign_out_page).post(web::pages::sign_out_submit),
        )
        .route("/signed-out", get(web::pages::signed_out))
        .route(
            "/external-applications/{id}/authorize",
            get(external::pages::prompt).post(external::pages::start),
        )
        .route(
            "/external-applications/{id}/callback",
            get(external::pages::callback),
        )
        .layer(axum::middleware::from_fn(web::security_headers));
    // The token endpoint is the hot path (one signature per request, thousands per
    // second): it gets only request ids and the body limit, and records its own metrics
    // and headers, instead of the whole stack below (trace span, metrics middleware,
    // panic catcher, header layers) — about a tenth of its CPU.
    let token_route = Router::new()
        .route("/oauth2/token", post(oauth::token::token))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeUlidRequestId));
    // User import streams bodies of any size through the parser: the same stack as every
    // other route, without the 1 MiB body limit.
    let import_route = with_shared_middleware(
        Router::new().route("/api/users/import", post(import::api::import_users)),
        &state,
    );
    let everything_else = with_shared_middleware(
        documented
            .merge(service_routes)
            .merge(pages)
            .fallback(ops::not_found)
            .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES)),
        &state,
    );
    token_route
        .merge(import_route)
        .merge(everything_else)
        .with_state(state)
}

/// The middleware every route but the token endpoint runs under: metrics, security and
/// cache headers, the panic catcher, a trace span carrying the request id.
fn with_shared_middleware(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(CatchPanicLayer::custom(ops::panic_response))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let request_id = request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), uri = %request.uri().path(), request_id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeUlidRequestId))
}

/// Request ids are ULIDs: unique, time-ordered, and made from the thread-local RNG (a UUID
/// v4 here costs a `getrandom` system call per request).
#[derive(Clone, Copy, Default)]
struct MakeUlidRequestId;

impl MakeRequestId for MakeUlidRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&ulid::Ulid::new().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// Reloads signing keys periodically (rotation activates keys later than this interval,
/// so every node knows a key before any node signs with it) and purges long-retired keys,
/// expired sessions, old sign-in failures and abandoned external authorizations.
pub fn spawn_key_refresh(state: AppState) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs(state.settings.key_refresh_interval_secs.max(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(e) = state.reload_keys().await {
                tracing::warn!(error = %e, "could not reload signing keys");
            }
            if let Err(e) = vault::reload(&state).await {
                tracing::warn!(error = ?e, "could not reload the token vault's keys");
            }
            let now = OffsetDateTime::now_utc();
            let week_ago = now - time::Duration::days(7);
            if let Err(e) = state.store.purge_retired_signing_keys(week_ago).await {
                tracing::warn!(error = %e, "could not purge retired signing keys");
            }
            // Expired sessions and interactions, and failures outside the throttle window
            // (kept at least as long as the sign-in code send limits look back).
            if let Err(e) = state.store.purge_expired_sessions(now).await {
                tracing::warn!(error = %e, "could not purge expired sessions");
            }
            let window = time::Duration::seconds(state.settings.signin_throttle_window_secs)
                .max(web::email_code::SEND_WINDOW);
            if let Err(e) = state.store.purge_failures(now - window).await {
                tracing::warn!(error = %e, "could not purge sign-in failures");
            }
            // Authorizations abandoned at an external provider's page.
            if let Err(e) = state.store.purge_expired_external_authorizations(now).await {
                tracing::warn!(error = %e, "could not purge expired external authorizations");
            }
        }
    })
}

/// Connects the store, migrates, bootstraps and returns the ready state.
pub async fn prepare(settings: Settings) -> Result<(AppState, BootstrapReport), StartError> {
    let master = load_master_key(&settings)?;
    let url = settings.database_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| StartError::DataDir {
            path: settings.data_dir.display().to_string(),
            source,
        })?;
    }
    let mut settings = settings;
    provisioning::Regions::validate(&settings.regions).map_err(StartError::Config)?;
    if settings.regions.is_empty() && settings.is_development() {
        match provisioning::probe_local_region(&settings.local_region_url).await {
            Some(region) => {
                tracing::info!("no region configured: provisioning into the local PostgreSQL (region \"local\")");
                settings.regions.push(region);
            }
            None => tracing::info!(
                "no region configured and no local PostgreSQL answered: provisioning is off"
            ),
        }
    }
    let mailer = mail::Mailer::from_settings(&settings).map_err(StartError::Config)?;
    tracing::info!(transport = %mailer.describe(), "outgoing mail");
    let store = keyward_store::connect(&url, settings.database_max_connections).await?;
    store.migrate().await?;
    let state = AppState::new(store, settings, master, mailer);
    let report = bootstrap(&state).await?;
    Ok((state, report))
}

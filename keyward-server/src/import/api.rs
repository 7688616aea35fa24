//! `POST /api/users/import` and `/api/import-jobs`.
//!
//! The import route lives outside the shared middleware stack because of its body: a
//! million users is hundreds of megabytes, streamed through the parser, while every other
//! route keeps the 1 MiB limit.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use futures_util::TryStreamExt;
use keyward_core::id::IdKind;
use keyward_core::import::{ImportJob, ImportMode, ImportRowError};
use keyward_proto as proto;
use serde::Deserialize;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{create_job, run_job, source_format, sweep_stale_jobs, ImportOptions};
use crate::api::{checked_id, page_request, to_page};
use crate::audit::Audit;
use crate::error::ApiError;
use crate::extract::{ApiQuery, Caller, RequestId};
use crate::state::AppState;

/// Errors shown inline with a job; the rest are paged at `/errors`.
const INLINE_ERRORS: u32 = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `keyward` (default; NDJSON or a JSON array of Keyward user rows), `logto`, `auth0`,
    /// `firebase` (`auth:export` JSON; needs `firebase_hash_config`) or `csv` (needs
    /// `csv_map`).
    pub format: Option<String>,
    /// `create` (default): rows matching a stored user are skipped. `upsert`: they are
    /// updated where the row differs.
    pub mode: Option<String>,
    /// Runs every rule and reports, storing no user.
    pub dry_run: Option<bool>,
    /// The source system's name (default: the format); users get it as
    /// `external_source`, and external ids are unique within it.
    pub source: Option<String>,
    /// The Firebase project's password hash parameters: the JSON form or the console's
    /// `hash_config { … }` block.
    pub firebase_hash_config: Option<String>,
    /// CSV column mapping, e.g. `email=Email,username=Login,external_id=UID,password_digest=Hash`.
    pub csv_map: Option<String>,
}

fn job_view(job: ImportJob, errors: Vec<ImportRowError>) -> proto::ImportJob {
    proto::ImportJob {
        id: job.id,
        status: job.status.as_str().to_owned(),
        mode: job.mode.as_str().to_owned(),
        dry_run: job.dry_run,
        format: job.format,
        source: job.source,
        rows_processed: job.rows_processed,
        counts: proto::ImportCounts {
            created: job.counts.created,
            updated: job.counts.updated,
            unchanged: job.counts.unchanged,
            skipped: job.counts.skipped,
            failed: job.counts.failed,
        },
        message: job.message,
        errors: errors.into_iter().map(error_view).collect(),
        created_at: job.created_at,
        finished_at: job.finished_at,
    }
}

fn error_view(e: ImportRowError) -> proto::ImportRowError {
    proto::ImportRowError {
        row: e.row,
        code: e.code,
        field: e.field,
        message: e.message,
        external_id: e.external_id,
    }
}

fn bad_option(detail: String) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_import_options",
        detail,
    }
}

fn options(query: ImportQuery, actor: &str) -> Result<ImportOptions, ApiError> {
    let format_name = query.format.unwrap_or_else(|| "keyward".to_owned());
    let format = source_format(
        &format_name,
        query.firebase_hash_config.as_deref(),
        query.csv_map.as_deref(),
    )
    .map_err(bad_option)?;
    let mode = match query.mode.as_deref() {
        None => ImportMode::Create,
        Some(m) => ImportMode::parse(m)
            .ok_or_else(|| bad_option(format!("unknown mode {m:?}: expected create or upsert")))?,
    };
    let source = query.source.unwrap_or_else(|| format_name.clone());
    if source.is_empty()
        || source.len() > 64
        || !source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(bad_option(
            "source must be 1-64 letters, digits, '_', '-' or '.'".into(),
        ));
    }
    Ok(ImportOptions {
        format,
        format_name,
        source,
        mode,
        dry_run: query.dry_run.unwrap_or(false),
        actor: Some(actor.to_owned()),
    })
}

async fn job_with_errors(state: &AppState, job: ImportJob) -> Result<proto::ImportJob, ApiError> {
    let errors = state
        .store
        .list_import_errors(&job.id, 0, INLINE_ERRORS)
        .await?;
    Ok(job_view(job, errors))
}

/// Imports users from the request body, streamed: the body is parsed as it arrives and
/// written in batches of 5,000 rows, each batch one transaction. Answers when the input
/// is read to its end, with the job's outcome; `GET /api/import-jobs/{id}` shows a job
/// while it runs (from another client) and afterwards.
#[utoipa::path(operation_id = "users_import", post, path = "/api/users/import", tag = "users",
    params(ImportQuery),
    request_body(content = Vec<proto::ImportUserRow>, description = "NDJSON (`application/x-ndjson`), a JSON array, a Firebase `auth:export` document or CSV, per `format`"),
    responses((status = 201, body = proto::ImportJob), (status = 400, body = proto::Problem),
        (status = 403, body = proto::Problem)),
    security(("bearer" = ["users:write"])))]
pub async fn import_users(
    State(state): State<AppState>,
    request_id: RequestId,
    caller: Result<Caller, ApiError>,
    query: Result<ApiQuery<ImportQuery>, ApiError>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let mut audit = Audit::start(&state, &request_id, "user.import", "import_job");
    let result = async {
        let caller = audit.actor(caller?);
        caller.require("users:write")?;
        let ApiQuery(query) = query?;
        let options = options(query, caller.actor_id())?;
        let job = create_job(state.store.as_ref(), &options).await?;
        audit.target(job.id.clone());
        let stream = body.into_data_stream().map_err(std::io::Error::other);
        let reader = SyncIoBridge::new(StreamReader::new(stream));
        let job = run_job(state.store.clone(), &job.id, reader, &options, None).await?;
        audit.detail("format", options.format_name.as_str());
        audit.detail("source", options.source.as_str());
        audit.detail("mode", options.mode.as_str());
        audit.detail("dry_run", options.dry_run);
        audit.detail("status", job.status.as_str());
        audit.detail("rows", job.rows_processed);
        audit.detail("created", job.counts.created);
        audit.detail("updated", job.counts.updated);
        audit.detail("failed", job.counts.failed);
        let location = format!("/api/import-jobs/{}", job.id);
        let view = job_with_errors(&state, job).await?;
        let mut headers = HeaderMap::new();
        if let Ok(value) = location.parse() {
            headers.insert(header::LOCATION, value);
        }
        Ok((StatusCode::CREATED, headers, Json(view)))
    }
    .await;
    audit.finish(result).await
}

#[utoipa::path(operation_id = "import_jobs_list", get, path = "/api/import-jobs", tag = "users",
    params(crate::api::ListQuery),
    responses((status = 200, body = proto::Page<proto::ImportJob>)),
    security(("bearer" = ["users:read"])))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<crate::api::ListQuery>,
) -> Result<Json<proto::Page<proto::ImportJob>>, ApiError> {
    caller.require("users:read")?;
    sweep_stale_jobs(state.store.as_ref()).await?;
    let page = page_request(query.cursor, query.limit)?;
    let jobs = state.store.list_import_jobs(&page).await?;
    let page: proto::Page<ImportJobNoErrors> = to_page(jobs, &page, |j| &j.id);
    Ok(Json(proto::Page {
        data: page.data.into_iter().map(|j| j.0).collect(),
        pagination: page.pagination,
    }))
}

/// A job listed without its errors.
struct ImportJobNoErrors(proto::ImportJob);

impl From<ImportJob> for ImportJobNoErrors {
    fn from(job: ImportJob) -> Self {
        Self(job_view(job, Vec::new()))
    }
}

#[utoipa::path(operation_id = "import_jobs_get", get, path = "/api/import-jobs/{id}", tag = "users",
    responses((status = 200, body = proto::ImportJob), (status = 404, body = proto::Problem)),
    security(("bearer" = ["users:read"])))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<proto::ImportJob>, ApiError> {
    caller.require("users:read")?;
    checked_id(IdKind::ImportJob, &id, "import_job")?;
    sweep_stale_jobs(state.store.as_ref()).await?;
    let job = state
        .store
        .get_import_job(&id)
        .await?
        .ok_or(ApiError::NotFound("import_job"))?;
    Ok(Json(job_with_errors(&state, job).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ErrorsQuery {
    /// Errors after this row (the last `row` of the previous page).
    pub after_row: Option<u64>,
    pub limit: Option<u32>,
}

#[utoipa::path(operation_id = "import_jobs_errors", get, path = "/api/import-jobs/{id}/errors", tag = "users",
    params(ErrorsQuery),
    responses((status = 200, body = Vec<proto::ImportRowError>), (status = 404, body = proto::Problem)),
    security(("bearer" = ["users:read"])))]
pub async fn list_errors(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ErrorsQuery>,
) -> Result<Json<Vec<proto::ImportRowError>>, ApiError> {
    caller.require("users:read")?;
    checked_id(IdKind::ImportJob, &id, "import_job")?;
    let limit = query.limit.unwrap_or(INLINE_ERRORS).clamp(1, 1000);
    state
        .store
        .get_import_job(&id)
        .await?
        .ok_or(ApiError::NotFound("import_job"))?;
    let errors = state
        .store
        .list_import_errors(&id, query.after_row.unwrap_or(0), limit)
        .await?;
    Ok(Json(errors.into_iter().map(error_view).collect()))
}

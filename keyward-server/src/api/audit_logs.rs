//! `GET /api/audit-logs`, newest first.

use axum::extract::State;
use axum::Json;
use keyward_core::store::AuditFilter;
use keyward_proto as proto;
use serde::Deserialize;

use super::{page_request, to_page};
use crate::error::ApiError;
use crate::extract::{ApiQuery, Caller};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// For example `user.delete`.
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub outcome: Option<proto::AuditOutcome>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(operation_id = "audit_logs_list", get, path = "/api/audit-logs", tag = "audit", params(AuditQuery),
    responses((status = 200, body = proto::Page<proto::AuditEvent>)),
    security(("bearer" = ["audit:read"])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<proto::Page<proto::AuditEvent>>, ApiError> {
    caller.require("audit:read")?;
    let page = page_request(query.cursor, query.limit)?;
    let filter = AuditFilter {
        action: query.action,
        actor_id: query.actor_id,
        target_id: query.target_id,
        outcome: query.outcome,
    };
    let rows = state.store.list_audit_events(&filter, &page).await?;
    Ok(Json(to_page(rows, &page, |e| &e.id)))
}

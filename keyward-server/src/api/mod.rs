//! The management API under `/api`. Handlers are thin: authenticate the caller, check the
//! route's scope, validate, call the store, map the error, audit.

pub mod accounts;
pub mod applications;
pub mod audit_logs;
pub mod members;
pub mod resources;
pub mod users;

use keyward_core::id::{is_valid_id, IdKind};
use keyward_core::store::PageRequest;
use keyward_proto::{Page, Pagination};

use crate::error::ApiError;

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

/// Builds the store's page request from `cursor`/`limit` query parameters.
pub fn page_request(cursor: Option<String>, limit: Option<u32>) -> Result<PageRequest, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            detail: format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
        });
    }
    Ok(PageRequest {
        cursor: cursor.filter(|c| !c.is_empty()),
        limit,
    })
}

/// Turns up to `limit + 1` store rows into a page with the next cursor.
pub fn to_page<T, W: From<T>>(
    mut rows: Vec<T>,
    page: &PageRequest,
    id_of: impl Fn(&T) -> &str,
) -> Page<W> {
    let limit = page.limit as usize;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if has_more {
        rows.last().map(|row| id_of(row).to_owned())
    } else {
        None
    };
    Page {
        data: rows.into_iter().map(W::from).collect(),
        pagination: Pagination {
            next_cursor,
            has_more,
        },
    }
}

/// A path id that cannot exist (wrong prefix or shape) is a plain 404.
pub fn checked_id(kind: IdKind, value: &str, what: &'static str) -> Result<(), ApiError> {
    if is_valid_id(kind, value) {
        Ok(())
    } else {
        Err(ApiError::NotFound(what))
    }
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    pub limit: Option<u32>,
}

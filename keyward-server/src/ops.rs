//! Liveness, readiness and fallbacks.

use std::any::Any;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// Liveness: the process answers.
pub async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Readiness: the store answers and a signing key is loaded.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store_ok = state.store.ping().await.is_ok();
    let keys_ok = !state.keys.snapshot().is_empty();
    let status = if store_ok && keys_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "unavailable" },
            "store": { "backend": state.store.backend(), "ok": store_ok },
            "signing_keys": keys_ok,
        })),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// A panic in a handler becomes a plain 500 problem; the panic message is logged only.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    ApiError::Internal(format!("handler panicked: {message}")).into_response()
}

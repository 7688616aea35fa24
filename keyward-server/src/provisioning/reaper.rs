//! The reaper: drops projects whose time has come — unclaimed ones past their expiry,
//! deleted ones whose drop failed, provisionings that never finished.
//!
//! The schedule is in the store (`reap_at`), so it survives restarts; every node runs a
//! reaper, and the lease (`ProjectStore::lease_project`, one conditional write) makes sure
//! one node at a time works on a project. A failed drop is rescheduled with a growing
//! delay; drops are idempotent, so a retry finishes what an earlier attempt began.

use std::time::Duration as StdDuration;

use keyward_core::project::reap_retry_delay;
use keyward_core::AuditOutcome;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::service;
use crate::audit::{self, Actor};
use crate::extract::RequestId;
use crate::state::AppState;

/// How long a node may work on one project before another may take over.
pub const LEASE_SECS: i64 = 5 * 60;
const BATCH: u32 = 20;

/// Runs the reaper every `reaper_interval_secs` until the task is dropped.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    let every = StdDuration::from_secs(state.settings.reaper_interval_secs.max(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            if state.regions.all().is_empty() {
                continue;
            }
            reap_due(&state).await;
        }
    })
}

/// One pass: drops every project due now that this node can lease. Returns how many it
/// dropped.
pub async fn reap_due(state: &AppState) -> usize {
    let now = OffsetDateTime::now_utc();
    let due = match state.store.due_projects(now, BATCH).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "reaper could not list due projects");
            return 0;
        }
    };
    let mut dropped = 0;
    for id in due {
        match state
            .store
            .lease_project(&id, now, now + Duration::seconds(LEASE_SECS))
            .await
        {
            Ok(true) => {}
            Ok(false) => continue, // another node has it, or it was claimed meanwhile
            Err(e) => {
                tracing::warn!(project = %id, error = %e, "reaper could not lease a project");
                continue;
            }
        }
        let project = state.store.get_project(&id).await.ok().flatten();
        let reason = project
            .as_ref()
            .map(|p| p.status.as_str())
            .unwrap_or("gone");
        match service::drop_project(state, &id).await {
            Ok(()) => {
                dropped += 1;
                tracing::info!(project = %id, reason, "reaper dropped a project");
                record(state, &id, AuditOutcome::Success, None, reason).await;
            }
            Err(e) => {
                let attempts = state
                    .store
                    .reap_state(&id)
                    .await
                    .ok()
                    .flatten()
                    .map(|(a, _)| a)
                    .unwrap_or(0);
                let retry_at = OffsetDateTime::now_utc() + reap_retry_delay(attempts);
                tracing::warn!(project = %id, error = %e, %retry_at, "reaper drop failed; will retry");
                if let Err(store) = state.store.reap_failed(&id, retry_at, &e).await {
                    tracing::error!(project = %id, error = %store, "could not reschedule a failed drop");
                }
                record(
                    state,
                    &id,
                    AuditOutcome::Failure,
                    Some("drop_failed"),
                    reason,
                )
                .await;
            }
        }
    }
    dropped
}

async fn record(
    state: &AppState,
    project_id: &str,
    outcome: AuditOutcome,
    reason: Option<&str>,
    status: &str,
) {
    audit::record(
        state,
        &RequestId(None),
        Actor {
            kind: "system",
            id: Some("reaper"),
        },
        "project.reap",
        "project",
        Some(project_id),
        outcome,
        reason,
        json!({ "status": status }),
    )
    .await;
}

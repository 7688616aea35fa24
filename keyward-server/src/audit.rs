//! Audit trail of the management API: every mutation, allowed or refused, becomes one
//! event with actor, action, target and outcome.

use keyward_core::id::{new_id, IdKind};
use keyward_core::model::AuditEvent;
use keyward_core::AuditOutcome;
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::extract::{Caller, RequestId};
use crate::state::AppState;

/// One audited operation. Create it first, fill in actor and target as they become known,
/// then pass the operation's result through [`Audit::finish`].
pub struct Audit {
    state: AppState,
    action: &'static str,
    target_type: &'static str,
    target_id: Option<String>,
    actor: Option<(&'static str, String)>,
    request_id: Option<String>,
    details: Value,
}

impl Audit {
    pub fn start(
        state: &AppState,
        request_id: &RequestId,
        action: &'static str,
        target_type: &'static str,
    ) -> Self {
        Self {
            state: state.clone(),
            action,
            target_type,
            target_id: None,
            actor: None,
            request_id: request_id.0.clone(),
            details: Value::Object(Default::default()),
        }
    }

    /// Records the caller and returns it, so handlers can write `let caller = audit.actor(caller?)`.
    pub fn actor(&mut self, caller: Caller) -> Caller {
        self.actor = Some((caller.actor_type(), caller.actor_id().to_owned()));
        caller
    }

    /// Records an actor that is not a management API caller (provisioning API callers).
    pub fn actor_as(&mut self, kind: &'static str, id: &str) {
        self.actor = Some((kind, id.to_owned()));
    }

    pub fn target(&mut self, id: impl Into<String>) {
        self.target_id = Some(id.into());
    }

    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        if let Value::Object(map) = &mut self.details {
            map.insert(key.to_owned(), value.into());
        }
    }

    /// Writes the event and passes the result through. A failure to write the audit event
    /// is logged; it does not undo or hide the operation's own outcome.
    pub async fn finish<T>(self, result: Result<T, ApiError>) -> Result<T, ApiError> {
        let (outcome, reason) = match &result {
            Ok(_) => (AuditOutcome::Success, None),
            Err(e) if e.is_denial() => (AuditOutcome::Denied, Some(e.code().to_owned())),
            Err(e) => (AuditOutcome::Failure, Some(e.code().to_owned())),
        };
        let (actor_type, actor_id) = match self.actor {
            Some((kind, id)) => (kind, Some(id)),
            None => ("anonymous", None),
        };
        let event = AuditEvent {
            id: new_id(IdKind::AuditEvent),
            occurred_at: OffsetDateTime::now_utc(),
            actor_type: actor_type.to_owned(),
            actor_id,
            action: self.action.to_owned(),
            target_type: self.target_type.to_owned(),
            target_id: self.target_id,
            outcome,
            reason,
            request_id: self.request_id.clone(),
            details: self.details,
        };
        if let Err(e) = self.state.store.append_audit_event(&event).await {
            tracing::error!(request_id = self.request_id.as_deref().unwrap_or("-"), action = self.action, error = %e, "could not write audit event");
        }
        result.map_err(|e| e.with_request_id(self.request_id.as_deref()))
    }
}

/// Who did something outside the management API (sign-in, authorization, token events).
pub struct Actor<'a> {
    pub kind: &'static str,
    pub id: Option<&'a str>,
}

/// Writes one audit event for the interactive and token flows. Failures are logged only.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    state: &AppState,
    request_id: &RequestId,
    actor: Actor<'_>,
    action: &'static str,
    target_type: &'static str,
    target_id: Option<&str>,
    outcome: AuditOutcome,
    reason: Option<&str>,
    details: Value,
) {
    let event = AuditEvent {
        id: new_id(IdKind::AuditEvent),
        occurred_at: OffsetDateTime::now_utc(),
        actor_type: actor.kind.to_owned(),
        actor_id: actor.id.map(str::to_owned),
        action: action.to_owned(),
        target_type: target_type.to_owned(),
        target_id: target_id.map(str::to_owned),
        outcome,
        reason: reason.map(str::to_owned),
        request_id: request_id.0.clone(),
        details,
    };
    if let Err(e) = state.store.append_audit_event(&event).await {
        tracing::error!(action, error = %e, "could not write audit event");
    }
}

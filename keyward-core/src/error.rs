//! Domain and storage errors. Each variant maps to one stable API error code.

use thiserror::Error;

/// A field failed validation. `field` names it as it appears in the request body.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// What the store (or a rule it enforces atomically) reports.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The entity named does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was broken; the string is the stable code, e.g. `email_taken`.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The operation would remove or demote an account's last owner.
    #[error("the account must keep at least one owner")]
    LastOwner,
    /// The account still has child accounts and the delete was not cascading.
    #[error("the account has child accounts")]
    HasChildren,
    /// The user is the last owner of at least one account and the delete was not forced.
    #[error("the user is the last owner of an account")]
    UserIsLastOwner,
    /// Anything else: connection loss, a bug. Logged, never shown to clients.
    #[error("storage failure: {0}")]
    Internal(String),
}

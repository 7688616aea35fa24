//! Mapping of database errors onto [`StoreError`].

use keyward_core::StoreError;
use sqlx::error::ErrorKind;

/// Unique indexes and the conflict code each one reports.
///
/// PostgreSQL names the violated index in `constraint()`. SQLite only has a message: it
/// names the index for expression indexes (`index 'users_email_key'`) and the columns
/// otherwise (`users.primary_phone`), so both spellings are listed.
const UNIQUE_CODES: &[(&str, &str, &str)] = &[
    ("users_username_key", "users.username", "username_taken"),
    ("users_email_key", "users.primary_email", "email_taken"),
    ("users_phone_key", "users.primary_phone", "phone_taken"),
    (
        "users_external_id_key",
        "users.external_id",
        "external_id_taken",
    ),
    (
        "user_identities_pkey",
        "user_identities.provider, user_identities.provider_user_id",
        "identity_taken",
    ),
    ("users_pkey", "users.id", "id_taken"),
    (
        "applications_client_id_key",
        "applications.client_id",
        "client_id_taken",
    ),
    (
        "api_resources_identifier_key",
        "api_resources.identifier",
        "identifier_taken",
    ),
    (
        "memberships_account_user_key",
        "memberships.account_id, memberships.user_id",
        "already_member",
    ),
    (
        "external_applications_account_name_key",
        "external_applications.account_id, external_applications.name_folded",
        "external_application_name_taken",
    ),
];

/// Anything without a more specific meaning.
pub(crate) fn internal(e: sqlx::Error) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// The conflict code of a unique violation on one of the known indexes.
pub(crate) fn conflict_code(e: &sqlx::Error) -> Option<&'static str> {
    let db = e.as_database_error()?;
    if db.kind() != ErrorKind::UniqueViolation {
        return None;
    }
    if let Some(constraint) = db.constraint() {
        if let Some((_, _, code)) = UNIQUE_CODES.iter().find(|(name, _, _)| *name == constraint) {
            return Some(code);
        }
    }
    let message = db.message();
    UNIQUE_CODES
        .iter()
        .find(|(name, columns, _)| {
            message.contains(&format!("'{name}'")) || message.ends_with(columns)
        })
        .map(|(_, _, code)| *code)
}

pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|db| db.kind() == ErrorKind::ForeignKeyViolation)
}

/// Maps the error of a write: known unique violations become `Conflict`, a foreign-key
/// violation becomes `on_foreign_key` (the caller knows which reference can fail), the rest
/// `Internal`.
pub(crate) fn write_error(e: sqlx::Error, on_foreign_key: StoreError) -> StoreError {
    if let Some(code) = conflict_code(&e) {
        StoreError::Conflict(code)
    } else if is_foreign_key_violation(&e) {
        on_foreign_key
    } else {
        internal(e)
    }
}

/// For writes that reference nothing: known unique violations become `Conflict`, the rest
/// `Internal`.
pub(crate) fn conflict_or_internal(e: sqlx::Error) -> StoreError {
    match conflict_code(&e) {
        Some(code) => StoreError::Conflict(code),
        None => internal(e),
    }
}

//! What `keyward sync` would change: the fields where a source row differs from the stored
//! user.

use keyward_core::model::User;
use keyward_core::UserStatus;
use serde_json::Value;

use crate::ImportRecord;

/// One field that differs. `from` is the stored value, `to` the source's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The field name as in the management API (`primary_email`, `custom_data`, `suspended`,
    /// …).
    pub field: &'static str,
    pub from: Value,
    pub to: Value,
}

/// The fields where `incoming` differs from `existing`.
///
/// A field the source row leaves absent is not compared: a source that does not carry a
/// field (Firebase has no usernames) never clears it. `profile`, `custom_data` and
/// `identities` are compared as whole objects when the row has a non-empty one. `suspended`
/// is always compared. The password is compared by digest, but reported by algorithm name
/// only (`from`/`to` are the algorithms, or null): digests never leave this function.
/// `id`, `created_at` and `last_sign_in_at` are not compared (the id is the join key; the
/// times are history, and Keyward keeps its own sign-in time).
pub fn diff(existing: &User, incoming: &ImportRecord) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    let mut text = |field: &'static str, from: &Option<String>, to: &Option<String>| {
        if let Some(to) = to {
            if from.as_deref() != Some(to.as_str()) {
                changes.push(FieldChange {
                    field,
                    from: from.clone().map_or(Value::Null, Value::String),
                    to: Value::String(to.clone()),
                });
            }
        }
    };
    text("external_id", &existing.external_id, &incoming.external_id);
    text("username", &existing.username, &incoming.username);
    text(
        "primary_email",
        &existing.primary_email,
        &incoming.primary_email,
    );
    text(
        "primary_phone",
        &existing.primary_phone,
        &incoming.primary_phone,
    );
    text("name", &existing.name, &incoming.name);
    text("avatar", &existing.avatar, &incoming.avatar);
    let mut object = |field: &'static str, from: &Value, to: Value| {
        let empty = to.as_object().is_none_or(serde_json::Map::is_empty);
        if !empty && *from != to {
            changes.push(FieldChange {
                field,
                from: from.clone(),
                to,
            });
        }
    };
    object("profile", &existing.profile, incoming.profile.clone());
    object(
        "custom_data",
        &existing.custom_data,
        incoming.custom_data.clone(),
    );
    object(
        "identities",
        &existing.identities,
        incoming.identities_json(),
    );
    let suspended = existing.status == UserStatus::Suspended;
    if suspended != incoming.suspended {
        changes.push(FieldChange {
            field: "suspended",
            from: Value::Bool(suspended),
            to: Value::Bool(incoming.suspended),
        });
    }
    if let Some(to) = &incoming.password_digest {
        if existing.password_digest.as_deref() != Some(to.as_str()) {
            let name = |a: &Option<String>| a.clone().map_or(Value::Null, Value::String);
            changes.push(FieldChange {
                field: "password_digest",
                from: name(&existing.password_algorithm),
                to: name(&incoming.password_algorithm),
            });
        }
    }
    changes
}

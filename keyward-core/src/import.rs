//! User import (migration from another identity system): jobs, their outcomes, and the rule
//! for what an upsert or a re-sync changes on a user who already exists.
//!
//! Matching: a row is the same user as a stored one when they share the external id within
//! the job's source (`external_source`, `external_id`); failing that, the preserved user id;
//! failing that, the primary email (case-insensitive). Re-running a file therefore finds
//! every user it created and creates no duplicate.

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::model::User;

/// What an import does with a row that matches a stored user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Creates new users; a row matching a stored user is left alone (`skipped`).
    Create,
    /// Creates new users and updates matched ones where the row differs (`updated`).
    Upsert,
}

impl ImportMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Upsert => "upsert",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create" | "create-only" | "create_only" => Some(Self::Create),
            "upsert" => Some(Self::Upsert),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportJobStatus {
    Running,
    /// Every row was imported (or was already there).
    Succeeded,
    /// The input was read to the end; some rows failed and are listed.
    CompletedWithErrors,
    /// The job stopped early: the input could not be read, or the worker died (`message`
    /// says which). Every row up to `rows_processed` is committed; re-running the same
    /// file finishes the rest without duplicates.
    Failed,
}

impl ImportJobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::CompletedWithErrors => "completed_with_errors",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "completed_with_errors" => Some(Self::CompletedWithErrors),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Row outcome counts of a job or a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Matched a stored user in create-only mode.
    pub skipped: u64,
    pub failed: u64,
}

impl ImportCounts {
    pub fn add(&mut self, other: &ImportCounts) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }

    pub fn total(&self) -> u64 {
        self.created + self.updated + self.unchanged + self.skipped + self.failed
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportJob {
    pub id: String,
    pub status: ImportJobStatus,
    pub mode: ImportMode,
    pub dry_run: bool,
    /// The source format (`keyward`, `logto`, `auth0`, `firebase`, `csv`).
    pub format: String,
    /// The source system's name; imported users get it as `external_source`.
    pub source: String,
    /// Who started it (application or user id).
    pub actor: Option<String>,
    /// The last source row whose outcome is committed.
    pub rows_processed: u64,
    pub counts: ImportCounts,
    pub message: Option<String>,
    pub heartbeat_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

/// A row that was not imported, with its 1-based row number in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRowError {
    pub row: u64,
    /// Stable: `malformed_row`, `invalid_field`, `unknown_digest_format`,
    /// `missing_identifier`, or a store conflict (`email_taken`, `username_taken`,
    /// `phone_taken`, `external_id_taken`, `identity_taken`, `id_taken`).
    pub code: String,
    pub field: Option<String>,
    pub message: String,
    pub external_id: Option<String>,
}

/// One parsed, validated row on its way into the store.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportCandidate {
    pub row: u64,
    /// The user as the row describes it: a new (or preserved) id, `external_source` set to
    /// the job's source, absent fields `None`/empty.
    pub user: User,
    /// Whether `user.id` came from the source (preserved) and may be used for matching.
    pub preserved_id: bool,
}

/// A batch of consecutive rows: the candidates and the rows that failed before reaching
/// the store. `last_row` is the highest row number the batch covers.
#[derive(Debug, Clone, Default)]
pub struct ImportBatch {
    pub candidates: Vec<ImportCandidate>,
    pub errors: Vec<ImportRowError>,
    pub last_row: u64,
    /// The job's resume point this batch continues from. When set, the store commits the
    /// batch only if the job's `rows_processed` is exactly this value at commit time, so
    /// that two batches written concurrently still commit in file order and a batch never
    /// commits after the one before it failed (`Conflict("import_batch_out_of_order")`).
    pub follows_row: Option<u64>,
    /// A hint that no candidate matches a stored user (the job's batches so far created
    /// every row they carried): the store may insert them without looking for matches
    /// first, and looks after all when any insert conflicts. The outcome never depends on
    /// it, only the number of statements.
    pub expect_new: bool,
}

impl ImportBatch {
    /// The values of this batch that a stored user is matched by or that a uniqueness
    /// rule covers (ids, external ids, emails and usernames case-folded, phones, social
    /// identities), each tagged with its kind. Two batches that share none of them cannot
    /// match the same user or collide on a unique value, so writing them concurrently
    /// gives what writing them one after the other gives.
    ///
    /// The keys are 64-bit hashes of (kind, value): two equal values always give equal
    /// keys, and the rare collision of different values only makes the second batch wait.
    pub fn unique_keys(&self) -> UniqueKeys {
        use std::hash::{Hash, Hasher};
        // A fixed-key hasher, so that keys of different batches compare.
        let key = |kind: u8, value: &str, fold_case: bool| {
            let mut hasher = std::hash::DefaultHasher::new();
            kind.hash(&mut hasher);
            // ASCII without capitals is its own lower case: no allocation for it.
            if fold_case && (!value.is_ascii() || value.bytes().any(|b| b.is_ascii_uppercase())) {
                value.to_lowercase().hash(&mut hasher);
            } else {
                value.hash(&mut hasher);
            }
            hasher.finish()
        };
        let mut keys =
            UniqueKeys::with_capacity_and_hasher(self.candidates.len() * 6, Default::default());
        for c in &self.candidates {
            let u = &c.user;
            keys.insert(key(b'i', &u.id, false));
            if let Some(v) = &u.external_id {
                keys.insert(key(b'x', v, false));
            }
            if let Some(v) = &u.primary_email {
                keys.insert(key(b'e', v, true));
            }
            if let Some(v) = &u.username {
                keys.insert(key(b'u', v, true));
            }
            if let Some(v) = &u.primary_phone {
                keys.insert(key(b'p', v, false));
            }
            if let Some(identities) = u.identities.as_object() {
                for (provider, identity) in identities {
                    let id = identity
                        .get("user_id")
                        .and_then(|v| v.as_str())
                        .unwrap_or("");
                    let mut hasher = std::hash::DefaultHasher::new();
                    b'g'.hash(&mut hasher);
                    provider.hash(&mut hasher);
                    id.hash(&mut hasher);
                    keys.insert(hasher.finish());
                }
            }
        }
        keys
    }
}

/// A batch's unique keys (`ImportBatch::unique_keys`): already hashes, so the set uses
/// them as they are instead of hashing them again.
pub type UniqueKeys = std::collections::HashSet<u64, std::hash::BuildHasherDefault<PrehashedKey>>;

/// The `Hasher` of a set of 64-bit hashes: the value is its own hash.
#[derive(Default)]
pub struct PrehashedKey(u64);

impl std::hash::Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach here through `write_u64`; anything else is still hashed.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// What the store did with a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    pub counts: ImportCounts,
    /// The rows that failed in the store (conflicts), besides the batch's own errors.
    pub errors: Vec<ImportRowError>,
}

/// One field that differs between a stored user and a source row.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: &'static str,
    pub from: Value,
    pub to: Value,
}

/// SHA-256 (hex) of a source digest: the store keeps it to tell whether the source's
/// password changed since the last import.
pub fn digest_fingerprint(digest: &str) -> String {
    hex::encode(Sha256::digest(digest.as_bytes()))
}

fn opt(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn time_value(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(Value::Null, Value::String)
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_none_or(|o| o.is_empty())
}

/// Applies a source row to the stored user it matched: every field the row carries and
/// that differs is taken over; fields the row leaves out stay as they are (a source that
/// has no usernames does not erase the ones set here). The password is replaced only when
/// the source's digest changed since the last import (`stored_fingerprint`), so a digest
/// upgraded to Argon2id at sign-in survives a re-sync of the unchanged old one.
///
/// Returns the merged user, the changes, and the fingerprint to store.
pub fn merge(
    existing: &User,
    stored_fingerprint: Option<&str>,
    incoming: &User,
) -> (User, Vec<FieldChange>, Option<String>) {
    let mut user = existing.clone();
    let mut changes = Vec::new();
    macro_rules! take_text {
        ($field:ident) => {
            if incoming.$field.is_some() && incoming.$field != existing.$field {
                changes.push(FieldChange {
                    field: stringify!($field),
                    from: opt(&existing.$field),
                    to: opt(&incoming.$field),
                });
                user.$field = incoming.$field.clone();
            }
        };
    }
    take_text!(username);
    take_text!(primary_email);
    take_text!(primary_phone);
    take_text!(name);
    take_text!(avatar);
    take_text!(external_id);
    macro_rules! take_object {
        ($field:ident) => {
            if !is_empty_object(&incoming.$field) && incoming.$field != existing.$field {
                changes.push(FieldChange {
                    field: stringify!($field),
                    from: existing.$field.clone(),
                    to: incoming.$field.clone(),
                });
                user.$field = incoming.$field.clone();
            }
        };
    }
    take_object!(profile);
    take_object!(custom_data);
    take_object!(identities);
    if incoming.status != existing.status {
        changes.push(FieldChange {
            field: "status",
            from: Value::String(existing.status.as_str().to_owned()),
            to: Value::String(incoming.status.as_str().to_owned()),
        });
        user.status = incoming.status;
    }
    if incoming.last_sign_in_at.is_some() && incoming.last_sign_in_at > existing.last_sign_in_at {
        changes.push(FieldChange {
            field: "last_sign_in_at",
            from: time_value(existing.last_sign_in_at),
            to: time_value(incoming.last_sign_in_at),
        });
        user.last_sign_in_at = incoming.last_sign_in_at;
    }
    let mut fingerprint = stored_fingerprint.map(str::to_owned);
    if let Some(digest) = &incoming.password_digest {
        let new = digest_fingerprint(digest);
        if stored_fingerprint != Some(new.as_str()) {
            // Never the digest itself in a report.
            changes.push(FieldChange {
                field: "password",
                from: Value::String("(stored digest)".into()),
                to: Value::String(format!(
                    "(source digest, {})",
                    incoming.password_algorithm.as_deref().unwrap_or("unknown")
                )),
            });
            user.password_digest = Some(digest.clone());
            user.password_algorithm = incoming.password_algorithm.clone();
            fingerprint = Some(new);
        }
    }
    if !changes.is_empty() {
        user.updated_at = incoming.updated_at;
    }
    (user, changes, fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserStatus;
    use serde_json::json;

    fn user() -> User {
        let t = OffsetDateTime::UNIX_EPOCH;
        User {
            id: "usr_1".into(),
            username: Some("ada".into()),
            primary_email: Some("ada@example.com".into()),
            primary_phone: None,
            name: Some("Ada".into()),
            avatar: None,
            profile: json!({}),
            custom_data: json!({"plan": "pro"}),
            identities: json!({}),
            status: UserStatus::Active,
            application_id: None,
            external_id: Some("42".into()),
            external_source: Some("legacy".into()),
            password_digest: Some("$argon2id$upgraded".into()),
            password_algorithm: Some("argon2id".into()),
            last_sign_in_at: None,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn unchanged_row_changes_nothing() {
        let stored = user();
        let mut row = stored.clone();
        row.username = None; // not carried by the source: kept
        row.password_digest = Some("$2b$10$old".into());
        let fp = digest_fingerprint("$2b$10$old");
        let (merged, changes, new_fp) = merge(&stored, Some(&fp), &row);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(merged, stored);
        assert_eq!(new_fp.as_deref(), Some(fp.as_str()));
    }

    #[test]
    fn only_changed_fields_are_taken_and_upgraded_password_survives() {
        let stored = user();
        let mut row = stored.clone();
        row.name = Some("Ada Lovelace".into());
        row.status = UserStatus::Suspended;
        row.password_digest = Some("$2b$10$old".into());
        let fp = digest_fingerprint("$2b$10$old");
        let (merged, changes, _) = merge(&stored, Some(&fp), &row);
        let fields: Vec<_> = changes.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["name", "status"]);
        assert_eq!(
            merged.password_digest.as_deref(),
            Some("$argon2id$upgraded")
        );
    }

    #[test]
    fn a_password_changed_at_the_source_is_taken() {
        let stored = user();
        let mut row = stored.clone();
        row.password_digest = Some("$2b$10$new".into());
        row.password_algorithm = Some("bcrypt".into());
        let (merged, changes, fp) = merge(&stored, Some(&digest_fingerprint("$2b$10$old")), &row);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, "password");
        assert!(!changes[0].to.to_string().contains("$2b$"));
        assert_eq!(merged.password_digest.as_deref(), Some("$2b$10$new"));
        assert_eq!(fp, Some(digest_fingerprint("$2b$10$new")));
    }

    #[test]
    fn batches_share_a_key_exactly_when_they_share_a_unique_value() {
        let batch = |id: &str, email: &str, username: &str, identity: serde_json::Value| {
            let mut u = user();
            u.id = id.into();
            u.primary_email = Some(email.into());
            u.username = Some(username.into());
            u.identities = identity;
            u.external_id = Some(format!("ext-{id}"));
            ImportBatch {
                candidates: vec![ImportCandidate {
                    row: 1,
                    user: u,
                    preserved_id: false,
                }],
                ..ImportBatch::default()
            }
            .unique_keys()
        };
        let none = json!({});
        let first = batch("usr_1", "Ada@Example.com", "ada", none.clone());
        // Case-folded email (also beyond ASCII) and username match.
        assert!(!first.is_disjoint(&batch("usr_2", "ada@example.COM", "other", none.clone())));
        assert!(!first.is_disjoint(&batch("usr_2", "b@example.com", "ADA", none.clone())));
        assert!(
            !batch("usr_3", "ÉLODIE@example.com", "e", none.clone()).is_disjoint(&batch(
                "usr_4",
                "élodie@example.com",
                "f",
                none.clone()
            ))
        );
        assert!(!first.is_disjoint(&batch("usr_1", "c@example.com", "c", none.clone())));
        assert!(first.is_disjoint(&batch("usr_9", "c@example.com", "c", none.clone())));
        // The same value under another kind is not shared.
        assert!(first.is_disjoint(&batch("ada", "d@example.com", "usr_1", none.clone())));
        let github = |id: &str| json!({"github": {"user_id": id}});
        assert!(
            !batch("usr_5", "e@x", "e", github("42")).is_disjoint(&batch(
                "usr_6",
                "f@x",
                "f",
                github("42")
            ))
        );
        assert!(batch("usr_5", "e@x", "e", github("42")).is_disjoint(&batch(
            "usr_6",
            "f@x",
            "f",
            github("43")
        )));
    }
}

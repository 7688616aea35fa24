//! Entity ids: a type prefix (`usr_`, `acc_` …) followed by a lowercase ULID.
//!
//! ULIDs sort by creation time, so ordering by id gives stable, time-ordered cursor
//! pagination without a separate sort key.

use ulid::Ulid;

/// The kinds of entity that carry prefixed ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Account,
    User,
    Membership,
    Application,
    ClientSecret,
    ApiResource,
    SigningKey,
    AuditEvent,
    Session,
    Grant,
    Project,
    Database,
    Connection,
    ImportJob,
    OneTimeCode,
    ExternalApplication,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Account => "acc_",
            Self::User => "usr_",
            Self::Membership => "mem_",
            Self::Application => "app_",
            Self::ClientSecret => "sec_",
            Self::ApiResource => "res_",
            Self::SigningKey => "key_",
            Self::AuditEvent => "evt_",
            Self::Session => "ses_",
            Self::Grant => "gnt_",
            Self::Project => "prj_",
            Self::Database => "db_",
            Self::Connection => "con_",
            Self::ImportJob => "imp_",
            Self::OneTimeCode => "otc_",
            Self::ExternalApplication => "xap_",
        }
    }
}

/// A new, time-ordered id of the given kind.
pub fn new_id(kind: IdKind) -> String {
    format!(
        "{}{}",
        kind.prefix(),
        Ulid::new().to_string().to_lowercase()
    )
}

/// True when `value` has the shape of an id of `kind`: the prefix and a 26-character ULID,
/// or, for users, a preserved id (see [`is_preserved_user_id`]). Used to answer malformed
/// ids with a 404 before touching the store.
pub fn is_valid_id(kind: IdKind, value: &str) -> bool {
    let generated = value
        .strip_prefix(kind.prefix())
        .map(|rest| rest.len() == 26 && Ulid::from_string(rest).is_ok())
        .unwrap_or(false);
    generated || (kind == IdKind::User && is_preserved_user_id(value))
}

const ALL_KINDS: [IdKind; 16] = [
    IdKind::Account,
    IdKind::User,
    IdKind::Membership,
    IdKind::Application,
    IdKind::ClientSecret,
    IdKind::ApiResource,
    IdKind::SigningKey,
    IdKind::AuditEvent,
    IdKind::Session,
    IdKind::Grant,
    IdKind::Project,
    IdKind::Database,
    IdKind::Connection,
    IdKind::ImportJob,
    IdKind::OneTimeCode,
    IdKind::ExternalApplication,
];

/// A user id kept from the system users were migrated from (applications store it as the
/// `sub` they know): 1–128 of `A-Z a-z 0-9 _ -`, and not starting with one of our own
/// prefixes, so it can never be mistaken for an id we generate.
pub fn is_preserved_user_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !ALL_KINDS.iter().any(|k| value.starts_with(k.prefix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_valid_and_ordered() {
        let a = new_id(IdKind::User);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(IdKind::User);
        assert!(a.starts_with("usr_"));
        assert!(is_valid_id(IdKind::User, &a));
        assert!(!is_valid_id(IdKind::Account, &a));
        assert!(!is_valid_id(IdKind::User, "usr_123"));
        // Preserved ids from a migration are users' ids too, but never in our own shape.
        assert!(is_valid_id(IdKind::User, "a1b2c3d4e5f6"));
        assert!(!is_valid_id(IdKind::Account, "a1b2c3d4e5f6"));
        assert!(!is_valid_id(IdKind::User, "acc_whatever"));
        assert!(!is_valid_id(IdKind::User, "auth0|123"));
        assert!(!is_valid_id(IdKind::User, &"x".repeat(129)));
        assert!(!is_valid_id(IdKind::User, "usr_../../etc/passwd0000000000"));
        assert!(a < b);
    }
}

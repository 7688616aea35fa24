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
    OneTimeCode,
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
            Self::OneTimeCode => "otc_",
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

/// True when `value` has the shape of an id of `kind`: the prefix and a 26-character ULID.
/// Used to answer malformed ids with a 404 before touching the store.
pub fn is_valid_id(kind: IdKind, value: &str) -> bool {
    value
        .strip_prefix(kind.prefix())
        .map(|rest| rest.len() == 26 && Ulid::from_string(rest).is_ok())
        .unwrap_or(false)
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
        assert!(!is_valid_id(IdKind::User, "usr_../../etc/passwd0000000000"));
        assert!(a < b);
    }
}

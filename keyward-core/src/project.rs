//! Projects: containers of real PostgreSQL databases, provisioned by partner applications
//! in their own workspace and claimed by users into theirs.

use time::{Duration, OffsetDateTime};

/// Shortest and longest lifetime of an unclaimed project, and the default.
pub const MIN_TTL_SECS: i64 = 30 * 60;
pub const MAX_TTL_SECS: i64 = 24 * 60 * 60;
pub const DEFAULT_TTL_SECS: i64 = MAX_TTL_SECS;

/// How long a crashed provisioning may sit before the reaper removes its leftovers.
pub const PROVISIONING_DEADLINE_SECS: i64 = 10 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectStatus {
    /// The default database is being created; becomes `Active` or is cleaned up.
    Provisioning,
    Active,
    /// Deletion requested: its databases are being dropped (by the request, else by the
    /// reaper).
    Deleting,
}

impl ProjectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Deleting => "deleting",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "provisioning" => Some(Self::Provisioning),
            "active" => Some(Self::Active),
            "deleting" => Some(Self::Deleting),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseStatus {
    Provisioning,
    Ready,
    Deleting,
}

impl DatabaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Ready => "ready",
            Self::Deleting => "deleting",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "provisioning" => Some(Self::Provisioning),
            "ready" => Some(Self::Ready),
            "deleting" => Some(Self::Deleting),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: String,
    pub name: String,
    /// The workspace that owns it: the partner's until claimed, then the user's.
    pub account_id: String,
    /// The partner application that created it.
    pub application_id: Option<String>,
    pub region: String,
    pub status: ProjectStatus,
    /// SHA-256 of the claim token; cleared once claimed.
    pub claim_digest: Option<Vec<u8>>,
    /// When it is deleted unless claimed; `None` once claimed.
    pub expires_at: Option<OffsetDateTime>,
    pub claimed_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Project {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// One PostgreSQL database of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectDatabase {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub region: String,
    /// The database's name in the cluster (`kw_…`).
    pub database_name: String,
    /// The role that owns it (also the default connection's login role).
    pub owner_role: String,
    pub status: DatabaseStatus,
    pub is_default: bool,
    pub created_at: OffsetDateTime,
}

/// A set of credentials for a database: a PostgreSQL login role. The password is never
/// stored (PostgreSQL keeps only a SCRAM verifier).
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConnection {
    pub id: String,
    pub database_id: String,
    pub name: String,
    pub role_name: String,
    /// The database owner's own login (the default connection): rotating it changes the
    /// owner's password; it goes only with the database.
    pub is_owner: bool,
    pub created_at: OffsetDateTime,
    pub rotated_at: Option<OffsetDateTime>,
}

/// PostgreSQL names for a database id (`db_01h…` → `kw_db_01h…`, role `kw_u_01h…`).
/// Generated, lower-case ASCII: no quoting surprises, under the 63-byte identifier limit.
pub fn cluster_names(database_id: &str) -> (String, String) {
    let suffix = database_id.trim_start_matches("db_");
    (format!("kw_db_{suffix}"), format!("kw_u_{suffix}"))
}

/// The login role of an extra connection.
pub fn connection_role(connection_id: &str) -> String {
    format!("kw_c_{}", connection_id.trim_start_matches("con_"))
}

/// The delay before the reaper retries a failed drop: doubling from 30 s, at most an hour.
pub fn reap_retry_delay(attempts: u32) -> Duration {
    let secs = 30i64.saturating_mul(1i64 << attempts.min(7));
    Duration::seconds(secs.min(3600))
}

/// Outcome of a transfer attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum TransferOutcome {
    Transferred(Box<Project>),
    /// Not in the source workspace (never was, or already moved) or being deleted.
    NotFound,
    /// Past its expiry, or the reaper is dropping it.
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_are_short_lowercase_identifiers() {
        let (db, role) = cluster_names("db_01jd8q7k5v4h3g2f1e0d9c8b7a");
        assert_eq!(db, "kw_db_01jd8q7k5v4h3g2f1e0d9c8b7a");
        assert_eq!(role, "kw_u_01jd8q7k5v4h3g2f1e0d9c8b7a");
        assert!(db.len() < 63);
        assert_eq!(
            connection_role("con_01jd8q7k5v4h3g2f1e0d9c8b7a"),
            "kw_c_01jd8q7k5v4h3g2f1e0d9c8b7a"
        );
    }

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        assert_eq!(reap_retry_delay(0), Duration::seconds(30));
        assert_eq!(reap_retry_delay(1), Duration::seconds(60));
        assert_eq!(reap_retry_delay(20), Duration::seconds(3600));
    }
}

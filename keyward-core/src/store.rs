//! Storage traits, one per aggregate. `keyward-store` implements them for SQLite and
//! PostgreSQL; its conformance suite runs the same tests against both.
//!
//! Conventions every implementation follows:
//! - Lists are ordered by id (ids are time-ordered ULIDs), ascending unless a method says
//!   otherwise, start strictly after `PageRequest::cursor`, and return at most
//!   `limit + 1` rows so the caller can tell whether there is another page.
//! - Rules that span rows (last owner, child accounts) are checked inside the same
//!   transaction as the write, so two concurrent requests cannot both pass them.
//! - Uniqueness violations are reported as `StoreError::Conflict(code)` with the stable codes
//!   listed on each method, never as `Internal`.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::{
    Account, ApiResource, Application, AuditEvent, AuthorizationCode, ClientSecret, Consent, Grant,
    Interaction, Membership, OneTimeCode, RefreshToken, Session, SigningKey, User,
};
use crate::project::{
    DatabaseConnection, DatabaseStatus, Project, ProjectDatabase, TransferOutcome,
};
use crate::{AuditOutcome, Role, StoreError, UserStatus};

pub type StoreResult<T> = Result<T, StoreError>;

/// Keyset pagination: rows strictly after `cursor` (an id), at most `limit` of them (the
/// store returns `limit + 1` to signal more).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub cursor: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Only direct children of this account.
    pub parent_account_id: Option<String>,
    /// Only accounts the user is a member of.
    pub member_user_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Case-insensitive exact match.
    pub email: Option<String>,
    /// Case-insensitive exact match.
    pub username: Option<String>,
    /// Exact match on the E.164 form.
    pub phone: Option<String>,
    pub external_id: Option<String>,
    pub external_source: Option<String>,
    /// (provider, provider user id) of a social identity.
    pub identity: Option<(String, String)>,
    pub application_id: Option<String>,
    pub status: Option<UserStatus>,
    /// Case-insensitive substring of username, primary email or name.
    pub search: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub outcome: Option<AuditOutcome>,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Errors: `NotFound("parent account")` when `parent_account_id` does not exist.
    async fn create_account(&self, account: &Account) -> StoreResult<()>;
    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>>;
    async fn list_accounts(
        &self,
        filter: &AccountFilter,
        page: &PageRequest,
    ) -> StoreResult<Vec<Account>>;
    /// Writes `name`, `custom_data` and `updated_at`. Errors: `NotFound("account")`.
    async fn update_account(&self, account: &Account) -> StoreResult<()>;
    /// Deletes the account and its memberships. With `cascade`, also every descendant
    /// account (and their memberships); without it, `HasChildren` when any child exists.
    /// Conflict `account_has_projects` when the account (or, with `cascade`, a descendant)
    /// owns a project: projects name real databases, which go first.
    /// Returns the number of accounts deleted. Errors: `NotFound("account")`.
    async fn delete_account(&self, id: &str, cascade: bool) -> StoreResult<u64>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Conflicts: `username_taken`, `email_taken` (case-insensitive), `phone_taken`,
    /// `external_id_taken` (per `external_source`), `identity_taken` (a (provider,
    /// user_id) pair of `identities` belongs to another user), `id_taken`. Errors: `NotFound("application")` for an unknown
    /// `application_id`.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn get_user(&self, id: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self, filter: &UserFilter, page: &PageRequest) -> StoreResult<Vec<User>>;
    /// Writes every mutable field and `updated_at`. Same conflicts as `create_user`.
    /// Errors: `NotFound("user")`.
    async fn update_user(&self, user: &User) -> StoreResult<()>;
    /// Deletes the user with their memberships, sessions, grants (and so their codes and
    /// refresh tokens) and consents. Without `force`, refuses with
    /// `UserIsLastOwner` when the user is the only owner of any account (the account would
    /// be left without an owner). Errors: `NotFound("user")`.
    async fn delete_user(&self, id: &str, force: bool) -> StoreResult<()>;
    /// The user whose username or primary email matches `login` case-insensitively, or
    /// whose primary phone equals it exactly (callers pass phones in E.164).
    async fn find_user_by_login(&self, login: &str) -> StoreResult<Option<User>>;
    /// Replaces the password digest and its algorithm (`argon2id`, or a legacy scheme).
    /// Errors: `NotFound("user")`.
    async fn set_user_password(
        &self,
        id: &str,
        digest: &str,
        algorithm: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Replaces the password digest only if it is still `expected_digest` (a sign-in that
    /// re-hashes a legacy digest must not undo a password change made meanwhile). Returns
    /// whether it did.
    async fn upgrade_user_password(
        &self,
        id: &str,
        expected_digest: &str,
        digest: &str,
        algorithm: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Sets `last_sign_in_at`. Errors: `NotFound("user")`.
    async fn record_sign_in(&self, id: &str, now: OffsetDateTime) -> StoreResult<()>;
    /// The user holding the social identity (provider, provider user id), for social
    /// sign-in of migrated users.
    async fn find_user_by_identity(
        &self,
        provider: &str,
        provider_user_id: &str,
    ) -> StoreResult<Option<User>>;
}

#[async_trait]
pub trait MembershipStore: Send + Sync {
    /// Errors: `NotFound("account")`, `NotFound("user")`; conflict `already_member`.
    async fn add_member(&self, membership: &Membership) -> StoreResult<()>;
    /// `member_ref` is either a membership id (`mem_…`) or a user id (`usr_…`) within
    /// `account_id`.
    async fn get_member(
        &self,
        account_id: &str,
        member_ref: &str,
    ) -> StoreResult<Option<Membership>>;
    async fn list_members(
        &self,
        account_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Vec<Membership>>;
    /// Changes the role; returns the updated membership. Errors: `NotFound("member")`,
    /// `LastOwner` when this demotes the account's only owner.
    async fn update_member_role(
        &self,
        account_id: &str,
        member_ref: &str,
        role: Role,
        now: OffsetDateTime,
    ) -> StoreResult<Membership>;
    /// Errors: `NotFound("member")`, `LastOwner` when this removes the only owner.
    async fn remove_member(&self, account_id: &str, member_ref: &str) -> StoreResult<Membership>;
}

#[async_trait]
pub trait ApplicationStore: Send + Sync {
    /// Inserts the application and its `secrets`. Conflict: `client_id_taken`.
    /// Errors: `NotFound("account")` for an unknown `account_id`.
    async fn create_application(&self, app: &Application) -> StoreResult<()>;
    /// With its secrets (expired ones included, newest first).
    async fn get_application(&self, id: &str) -> StoreResult<Option<Application>>;
    async fn get_application_by_client_id(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<Application>>;
    async fn list_applications(&self, page: &PageRequest) -> StoreResult<Vec<Application>>;
    /// Writes every field except `id`, `client_id`, `kind`, `secrets` and `created_at`.
    /// Errors: `NotFound("application")`.
    async fn update_application(&self, app: &Application) -> StoreResult<()>;
    /// Deletes the application and its secrets. Users that signed up through it keep
    /// existing, with `application_id` cleared. Errors: `NotFound("application")`.
    async fn delete_application(&self, id: &str) -> StoreResult<()>;
    /// Adds a secret, and sets `expires_at` of the application's other secrets that do not
    /// expire sooner to `expire_others_at` when given. Errors: `NotFound("application")`.
    async fn add_client_secret(
        &self,
        secret: &ClientSecret,
        expire_others_at: Option<OffsetDateTime>,
    ) -> StoreResult<()>;
    /// Errors: `NotFound("secret")` when it does not belong to the application.
    async fn delete_client_secret(&self, application_id: &str, secret_id: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait ResourceStore: Send + Sync {
    /// Conflict: `identifier_taken`.
    async fn create_resource(&self, resource: &ApiResource) -> StoreResult<()>;
    async fn get_resource(&self, id: &str) -> StoreResult<Option<ApiResource>>;
    async fn get_resource_by_identifier(
        &self,
        identifier: &str,
    ) -> StoreResult<Option<ApiResource>>;
    async fn list_resources(&self, page: &PageRequest) -> StoreResult<Vec<ApiResource>>;
    /// Writes name, scopes, ttl, updated_at. Errors: `NotFound("resource")`.
    async fn update_resource(&self, resource: &ApiResource) -> StoreResult<()>;
    /// Errors: `NotFound("resource")`.
    async fn delete_resource(&self, id: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Inserts `key` and, in the same transaction, sets `retires_at` on every key that has
    /// none yet to `retire_others_at` (the superseded keys stay published until then).
    async fn rotate_signing_key(
        &self,
        key: &SigningKey,
        retire_others_at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Inserts `key` only if there is no signing key at all; returns whether it did. Two
    /// nodes starting at once end with exactly one key.
    async fn insert_first_signing_key(&self, key: &SigningKey) -> StoreResult<bool>;
    /// Keys not retired at `now` (retires_at null or in the future), oldest first.
    async fn published_signing_keys(&self, now: OffsetDateTime) -> StoreResult<Vec<SigningKey>>;
    /// Every key, oldest first (re-sealing under a new master key, inspection).
    async fn all_signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    /// Deletes keys retired before `before`; returns how many.
    async fn purge_retired_signing_keys(&self, before: OffsetDateTime) -> StoreResult<u64>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit_event(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Newest first: rows with id strictly *before* the cursor.
    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Vec<AuditEvent>>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    /// The session whose handle digest matches, if it has not passed `expires_at`.
    async fn find_session(
        &self,
        handle_digest: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<Option<Session>>;
    /// Sets `last_seen_at` (idle tracking).
    async fn touch_session(&self, id: &str, now: OffsetDateTime) -> StoreResult<()>;
    async fn delete_session(&self, id: &str) -> StoreResult<()>;
    /// Signs the user out everywhere; returns how many sessions ended.
    async fn delete_user_sessions(&self, user_id: &str) -> StoreResult<u64>;

    async fn create_interaction(&self, interaction: &Interaction) -> StoreResult<()>;
    /// The interaction if it exists and has not expired at `now`.
    async fn get_interaction(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<Interaction>>;
    /// Writes `state`. Errors: `NotFound("interaction")`.
    async fn update_interaction_state(
        &self,
        id: &str,
        state: &serde_json::Value,
    ) -> StoreResult<()>;
    async fn delete_interaction(&self, id: &str) -> StoreResult<()>;
    /// Deletes expired sessions and interactions; returns how many rows went.
    async fn purge_expired_sessions(&self, now: OffsetDateTime) -> StoreResult<u64>;
}

/// Outcome of redeeming an authorization code.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeRedemption {
    /// First use: the code is now spent.
    Redeemed {
        code: AuthorizationCode,
        grant: Box<Grant>,
    },
    /// The code was already spent: the grant (and every token issued from it) has been
    /// revoked in the same transaction (RFC 9700 §4.5, RFC 6749 §4.1.2).
    Replayed { grant_id: String },
    /// Unknown, expired, or its grant is revoked or expired.
    Invalid,
}

/// Outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshRotation {
    /// The presented token is now used and `new` is stored in its place.
    Rotated(Box<Grant>),
    /// The token had already been rotated: the whole family (the grant) has been revoked
    /// in the same transaction (RFC 9700 §4.14.2).
    Replayed { grant_id: String },
    /// Unknown, idle-expired, or the grant is revoked or past its absolute lifetime.
    Invalid,
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Stores a new grant and its authorization code in one transaction.
    async fn create_grant_with_code(
        &self,
        grant: &Grant,
        code: &AuthorizationCode,
    ) -> StoreResult<()>;
    async fn get_grant(&self, id: &str) -> StoreResult<Option<Grant>>;
    /// Spends the code atomically: of two concurrent redemptions exactly one sees
    /// `Redeemed`.
    async fn redeem_code(&self, digest: &[u8], now: OffsetDateTime) -> StoreResult<CodeRedemption>;
    /// Adds a refresh token to its grant's family (after a code redemption).
    async fn add_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    /// Marks the presented token used and stores `new` (whose `grant_id` the store sets to
    /// the presented token's grant) atomically. `new.expires_at` is capped at the grant's
    /// `expires_at`.
    async fn rotate_refresh_token(
        &self,
        presented_digest: &[u8],
        new: &RefreshToken,
        now: OffsetDateTime,
    ) -> StoreResult<RefreshRotation>;
    /// The refresh token and its grant, whatever their state (introspection, revocation).
    async fn find_refresh_token(&self, digest: &[u8])
        -> StoreResult<Option<(RefreshToken, Grant)>>;
    /// Revokes the grant (idempotent). Returns false when it does not exist.
    async fn revoke_grant(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool>;
    /// Revokes every active grant of a session (sign-out); returns how many.
    async fn revoke_session_grants(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<u64>;
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
        resource: &str,
    ) -> StoreResult<Option<Consent>>;
    /// Inserts or replaces the consent for (user, client, resource).
    async fn save_consent(&self, consent: &Consent) -> StoreResult<()>;
}

/// Failed sign-in attempts, per key (`user:<id>`, `ip:<addr>`), in the database so every
/// node counts the same attempts.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    async fn record_failure(&self, key: &str, now: OffsetDateTime) -> StoreResult<()>;
    /// Failures for `key` at or after `since`.
    async fn count_failures(&self, key: &str, since: OffsetDateTime) -> StoreResult<u32>;
    async fn clear_failures(&self, key: &str) -> StoreResult<()>;
    /// Deletes failures older than `before`; returns how many.
    async fn purge_failures(&self, before: OffsetDateTime) -> StoreResult<u64>;
}

/// Outcome of presenting a one-time code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneTimeCodeRedemption {
    /// The code matched and is now spent.
    Redeemed,
    /// The code did not match; the attempt was counted. `attempts_left` is how many more
    /// may be made (0: the code is now locked).
    Wrong { attempts_left: u32 },
    /// Too many wrong attempts already: nothing was compared.
    Locked,
    /// The code has expired.
    Expired,
    /// No live code: none was issued, it was spent, or the user does not exist.
    NoCode,
}

/// One-time codes per (user, purpose). Both operations are single conditional writes, so
/// two concurrent redemptions cannot both succeed and every wrong attempt is counted.
#[async_trait]
pub trait OneTimeCodeStore: Send + Sync {
    /// Stores `code` for (`code.user_id`, `code.purpose`), replacing any earlier code for
    /// that pair (spent or not). Errors: `NotFound("user")`.
    async fn issue_one_time_code(&self, code: &OneTimeCode) -> StoreResult<()>;
    /// Checks `digest` against the live code for (user, purpose) in one write transaction:
    /// spends it when it matches (at most once), counts a wrong attempt otherwise, and
    /// compares nothing once `max_attempts` wrong attempts were made or the code expired
    /// (`expires_at <= now`). Digests are compared in constant time.
    async fn redeem_one_time_code(
        &self,
        user_id: &str,
        purpose: &str,
        digest: &[u8],
        max_attempts: u32,
        now: OffsetDateTime,
    ) -> StoreResult<OneTimeCodeRedemption>;
}

/// Projects, their databases and connections, and the reaper's schedule. The schedule
/// lives in the rows (`reap_at`, a lease), so deletions survive restarts and each due
/// project is dropped by exactly one node at a time.
#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Inserts the project (status `provisioning`), its default database and the owner's
    /// connection in one transaction, scheduled for the reaper at `reap_at` in case the
    /// provisioning never finishes. Errors: `NotFound("account")`.
    async fn create_project(
        &self,
        project: &Project,
        database: &ProjectDatabase,
        connection: &DatabaseConnection,
        reap_at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Provisioning finished: the project becomes `active`, its default database `ready`,
    /// and the reaper is scheduled at `expires_at` (none when it has no expiry).
    /// Errors: `NotFound("project")`.
    async fn activate_project(&self, id: &str, now: OffsetDateTime) -> StoreResult<()>;
    async fn get_project(&self, id: &str) -> StoreResult<Option<Project>>;
    async fn find_project_by_claim(&self, claim_digest: &[u8]) -> StoreResult<Option<Project>>;
    /// Projects of a workspace, by id.
    async fn list_projects(
        &self,
        account_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Vec<Project>>;
    /// Errors: `NotFound("project")`.
    async fn rename_project(&self, id: &str, name: &str, now: OffsetDateTime) -> StoreResult<()>;
    /// Moves an active project from `from_account` to `to_account` if it is still there,
    /// unexpired and not leased by the reaper: clears its expiry, claim token and schedule
    /// and sets `claimed_at`, in one conditional write (of two concurrent transfers one
    /// wins). Errors: `NotFound("account")` when `to_account` does not exist.
    async fn transfer_project(
        &self,
        id: &str,
        from_account: &str,
        to_account: &str,
        now: OffsetDateTime,
    ) -> StoreResult<TransferOutcome>;
    /// Marks the project `deleting` and due for the reaper now. False when it does not
    /// exist.
    async fn mark_project_deleting(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool>;

    /// Ids of projects due at `now` (`reap_at` passed, no live lease), earliest first.
    async fn due_projects(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<String>>;
    /// Takes the reaper lease on a due project until `lease_until`; true for exactly one
    /// of several concurrent callers. A project no longer due (claimed meanwhile) is not
    /// leased.
    async fn lease_project(
        &self,
        id: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// A drop failed: releases the lease, counts the attempt, keeps the error and
    /// reschedules at `retry_at`.
    async fn reap_failed(&self, id: &str, retry_at: OffsetDateTime, error: &str)
        -> StoreResult<()>;
    /// Reaper attempts so far and the last error (inspection, tests).
    async fn reap_state(&self, id: &str) -> StoreResult<Option<(u32, Option<String>)>>;
    /// Removes the project with its databases and connections (after they are dropped).
    async fn delete_project(&self, id: &str) -> StoreResult<()>;

    /// Adds a database (and its owner connection) to a project. Errors:
    /// `NotFound("project")`.
    async fn add_database(
        &self,
        database: &ProjectDatabase,
        connection: &DatabaseConnection,
    ) -> StoreResult<()>;
    /// Errors: `NotFound("database")`.
    async fn set_database_status(&self, id: &str, status: DatabaseStatus) -> StoreResult<()>;
    async fn get_database(&self, id: &str) -> StoreResult<Option<ProjectDatabase>>;
    /// A project's databases, by id.
    async fn list_databases(&self, project_id: &str) -> StoreResult<Vec<ProjectDatabase>>;
    /// Removes the database row and its connections.
    async fn delete_database(&self, id: &str) -> StoreResult<()>;

    /// Errors: `NotFound("database")`.
    async fn add_connection(&self, connection: &DatabaseConnection) -> StoreResult<()>;
    async fn get_connection(&self, id: &str) -> StoreResult<Option<DatabaseConnection>>;
    /// A database's connections, by id.
    async fn list_connections(&self, database_id: &str) -> StoreResult<Vec<DatabaseConnection>>;
    /// Errors: `NotFound("connection")`.
    async fn connection_rotated(&self, id: &str, now: OffsetDateTime) -> StoreResult<()>;
    async fn delete_connection(&self, id: &str) -> StoreResult<()>;
}

/// The whole store. `keyward-store` provides `SqliteStore` and `PostgresStore`.
#[async_trait]
pub trait Store:
    AccountStore
    + UserStore
    + MembershipStore
    + ApplicationStore
    + ResourceStore
    + SigningKeyStore
    + AuditStore
    + SessionStore
    + GrantStore
    + ConsentStore
    + ThrottleStore
    + OneTimeCodeStore
    + ProjectStore
    + ImportStore
    + ExternalAppStore
    + DataKeyStore
    + Send
    + Sync
{
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
    /// Applies the embedded schema migrations that are not applied yet. Safe to run
    /// concurrently from several nodes.
    async fn migrate(&self) -> StoreResult<()>;
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// User import jobs (`crate::import`). A batch is one store transaction: its users, their
/// identities, its row errors and the job's counters and resume point commit together, so
/// a crash leaves no half-written user and the job's figures match what is stored.
#[async_trait]
pub trait ImportStore: Send + Sync {
    async fn create_import_job(&self, job: &crate::import::ImportJob) -> StoreResult<()>;
    async fn get_import_job(&self, id: &str) -> StoreResult<Option<crate::import::ImportJob>>;
    /// Newest first.
    async fn list_import_jobs(
        &self,
        page: &PageRequest,
    ) -> StoreResult<Vec<crate::import::ImportJob>>;
    /// Row errors in row order, after row `after_row`.
    async fn list_import_errors(
        &self,
        job_id: &str,
        after_row: u64,
        limit: u32,
    ) -> StoreResult<Vec<crate::import::ImportRowError>>;
    /// Creates or (in upsert mode) updates the batch's users, skipping each row that
    /// breaks a uniqueness rule with its conflict code as the row error; records the
    /// errors, adds the counts to the job, moves its resume point to `batch.last_row` and
    /// renews its heartbeat. With `dry_run` the user writes are rolled back and only the
    /// job's figures are kept. With `batch.follows_row` set, nothing is committed unless the
    /// job's resume point is that row when the batch is done (the batch before it has
    /// committed): the job's row is locked only at that last step, so a second batch can be
    /// written while the first is still in its transaction.
    /// Errors: `NotFound("import_job")`, `Conflict("job_not_running")`,
    /// `Conflict("import_batch_out_of_order")`.
    async fn apply_import_batch(
        &self,
        job_id: &str,
        batch: &crate::import::ImportBatch,
        now: OffsetDateTime,
    ) -> StoreResult<crate::import::BatchOutcome>;
    /// Ends a running job. Errors: `NotFound("import_job")`.
    async fn finish_import_job(
        &self,
        id: &str,
        status: crate::import::ImportJobStatus,
        message: Option<&str>,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Marks failed every running job whose heartbeat is older than `stale_before` (its
    /// worker died); returns how many.
    async fn fail_stale_import_jobs(
        &self,
        stale_before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64>;
    /// For each candidate, the stored user it matches (see `crate::import`) and the
    /// fingerprint of the digest last imported for them.
    async fn match_import_candidates(
        &self,
        candidates: &[crate::import::ImportCandidate],
    ) -> StoreResult<Vec<Option<(User, Option<String>)>>>;
}

/// External applications, their users' connections, authorizations in progress and the
/// per-member permission to manage them (`crate::external`).
///
/// The refresh lease is the cross-node lock of "one refresh in flight per connection":
/// [`ExternalAppStore::lease_connection_refresh`] is one conditional write on the
/// connection's row, so of any number of requests on any number of nodes exactly one gets
/// it; the others wait for the row to change. A crashed holder's lease runs out.
#[async_trait]
pub trait ExternalAppStore: Send + Sync {
    /// Errors: `NotFound("account")`, `Conflict("external_application_name_taken")` (names
    /// are unique per account, case-insensitively).
    async fn create_external_application(
        &self,
        application: &crate::external::ExternalApplication,
    ) -> StoreResult<()>;
    async fn get_external_application(
        &self,
        id: &str,
    ) -> StoreResult<Option<crate::external::ExternalApplication>>;
    /// An account's applications, by id.
    async fn list_external_applications(
        &self,
        account_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Vec<crate::external::ExternalApplication>>;
    /// Replaces every configurable field (not `account_id`, `enabled`, `created_at`).
    /// Errors: `NotFound("external_application")`,
    /// `Conflict("external_application_name_taken")`.
    async fn update_external_application(
        &self,
        application: &crate::external::ExternalApplication,
    ) -> StoreResult<()>;
    /// Errors: `NotFound("external_application")`.
    async fn set_external_application_enabled(
        &self,
        id: &str,
        enabled: bool,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Deletes every connection of the application (and its authorizations in progress),
    /// keeping the configuration; returns the deleted connections (for revocation at the
    /// server). Errors: `NotFound("external_application")`.
    async fn reset_external_application(
        &self,
        id: &str,
    ) -> StoreResult<Vec<crate::external::ExternalConnection>>;
    /// Deletes the application with its connections and authorizations in one
    /// transaction; returns the deleted connections. Errors:
    /// `NotFound("external_application")`.
    async fn delete_external_application(
        &self,
        id: &str,
    ) -> StoreResult<Vec<crate::external::ExternalConnection>>;

    /// Stores the connection of (application, user), replacing an earlier one of the pair
    /// whole (id included, since the sealed tokens are bound to the id) and clearing any
    /// refresh lease. Errors: `NotFound("external_application")`, `NotFound("user")`.
    async fn save_external_connection(
        &self,
        connection: &crate::external::ExternalConnection,
    ) -> StoreResult<()>;
    async fn get_external_connection(
        &self,
        id: &str,
    ) -> StoreResult<Option<crate::external::ExternalConnection>>;
    async fn find_external_connection(
        &self,
        application_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<crate::external::ExternalConnection>>;
    /// A user's connections (every application), by id.
    async fn list_user_external_connections(
        &self,
        user_id: &str,
    ) -> StoreResult<Vec<crate::external::ExternalConnection>>;
    /// An application's connections, by id.
    async fn list_application_external_connections(
        &self,
        application_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Vec<crate::external::ExternalConnection>>;
    /// Returns the deleted connection, if it existed.
    async fn delete_external_connection(
        &self,
        id: &str,
    ) -> StoreResult<Option<crate::external::ExternalConnection>>;

    /// Takes the connection's refresh lease for `holder` until `lease_until` when nobody
    /// holds a live one (none, or expired at `now`). True for exactly one of several
    /// concurrent callers; false also when the connection does not exist.
    async fn lease_connection_refresh(
        &self,
        id: &str,
        holder: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// The holder's refresh succeeded: new sealed tokens, key id, scope and expiry,
    /// `state` active, `last_refreshed_at = now`, and the lease released — only while
    /// `holder` still holds the lease (false otherwise, nothing written).
    #[allow(clippy::too_many_arguments)]
    async fn complete_connection_refresh(
        &self,
        id: &str,
        holder: &str,
        tokens_sealed: &[u8],
        key_id: &str,
        scope: Option<&str>,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// The holder's refresh failed: releases the lease and, with `needs_reauthorization`,
    /// sets that state. Only while `holder` holds the lease.
    async fn release_connection_refresh(
        &self,
        id: &str,
        holder: &str,
        needs_reauthorization: bool,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;

    /// Connections whose tokens are sealed under a key other than `current_key_id`, at
    /// most `limit`, by id (for re-sealing after a master-key rotation).
    async fn external_connections_sealed_with_other_keys(
        &self,
        current_key_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<crate::external::ExternalConnection>>;
    /// Replaces the sealed tokens only if they are still `expected` (a refresh in between
    /// wins; the caller re-reads). True when replaced.
    async fn reseal_external_connection(
        &self,
        id: &str,
        expected: &[u8],
        tokens_sealed: &[u8],
        key_id: &str,
    ) -> StoreResult<bool>;
    async fn external_applications_sealed_with_other_keys(
        &self,
        current_key_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<crate::external::ExternalApplication>>;
    /// Replaces the sealed client secret only if it is still `expected`.
    async fn reseal_external_client_secret(
        &self,
        id: &str,
        expected: &[u8],
        client_secret_sealed: &[u8],
        key_id: &str,
    ) -> StoreResult<bool>;

    /// Errors: `NotFound("external_application")`, `NotFound("user")`.
    async fn create_external_authorization(
        &self,
        authorization: &crate::external::ExternalAuthorization,
    ) -> StoreResult<()>;
    /// Spends the authorization with this state digest: deletes and returns it, unless it
    /// expired at `now` (then only deletes). Single use: of two concurrent callers one
    /// gets it.
    async fn take_external_authorization(
        &self,
        state_digest: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<Option<crate::external::ExternalAuthorization>>;
    /// Deletes the pending authorizations that expired at `now` (abandoned at the
    /// provider's page); returns how many.
    async fn purge_expired_external_authorizations(&self, now: OffsetDateTime) -> StoreResult<u64>;

    /// Grants a per-member permission (idempotent). Errors: `NotFound("membership")` when
    /// the user is not a member of the account.
    async fn grant_account_permission(
        &self,
        account_id: &str,
        user_id: &str,
        permission: &str,
    ) -> StoreResult<()>;
    /// True when it was granted.
    async fn revoke_account_permission(
        &self,
        account_id: &str,
        user_id: &str,
        permission: &str,
    ) -> StoreResult<bool>;
    /// The member's permissions, sorted; empty for a non-member (removing a membership
    /// removes its permissions).
    async fn list_account_permissions(
        &self,
        account_id: &str,
        user_id: &str,
    ) -> StoreResult<Vec<String>>;
}

/// The token vault's data-encryption keys (`crate::model::DataKey`).
#[async_trait]
pub trait DataKeyStore: Send + Sync {
    /// Errors: `Conflict("data_key_exists")` for a taken id.
    async fn insert_data_key(&self, key: &crate::model::DataKey) -> StoreResult<()>;
    /// Every key, oldest first.
    async fn list_data_keys(&self) -> StoreResult<Vec<crate::model::DataKey>>;
    /// Retires every key but `keep` that is not retired yet; returns how many.
    async fn retire_data_keys_except(&self, keep: &str, now: OffsetDateTime) -> StoreResult<u64>;
}

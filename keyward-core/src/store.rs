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
    Account, ApiResource, Application, AuditEvent, ClientSecret, Membership, SigningKey, User,
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
    /// Returns the number of accounts deleted. Errors: `NotFound("account")`.
    async fn delete_account(&self, id: &str, cascade: bool) -> StoreResult<u64>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Conflicts: `username_taken`, `email_taken` (case-insensitive), `phone_taken`,
    /// `external_id_taken`. Errors: `NotFound("application")` for an unknown
    /// `application_id`.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn get_user(&self, id: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self, filter: &UserFilter, page: &PageRequest) -> StoreResult<Vec<User>>;
    /// Writes every mutable field and `updated_at`. Same conflicts as `create_user`.
    /// Errors: `NotFound("user")`.
    async fn update_user(&self, user: &User) -> StoreResult<()>;
    /// Deletes the user and their memberships. Without `force`, refuses with
    /// `UserIsLastOwner` when the user is the only owner of any account (the account would
    /// be left without an owner). Errors: `NotFound("user")`.
    async fn delete_user(&self, id: &str, force: bool) -> StoreResult<()>;
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

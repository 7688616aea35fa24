//! SQL text shared by both backends (`$N` placeholders work on SQLite and PostgreSQL), and
//! the builder for filtered, keyset-paginated lists.

use keyward_core::store::{AccountFilter, AuditFilter, PageRequest, UserFilter};

macro_rules! account_columns {
    () => {
        "id, name, parent_account_id, custom_data, created_at, updated_at"
    };
}
macro_rules! user_columns {
    () => {
        "id, username, primary_email, primary_phone, name, avatar, profile, custom_data, \
         identities, status, application_id, external_id, password_digest, \
         password_algorithm, last_sign_in_at, created_at, updated_at, external_source"
    };
}
macro_rules! membership_columns {
    () => {
        "id, account_id, user_id, role, created_at, updated_at"
    };
}
macro_rules! application_columns {
    () => {
        "id, client_id, name, description, kind, redirect_uris, post_logout_redirect_uris, \
         grant_types, grants, first_party, partner, account_id, access_token_ttl_secs, \
         created_at, updated_at, claim_uri"
    };
}
macro_rules! secret_columns {
    () => {
        "id, application_id, digest, hint, created_at, expires_at"
    };
}
macro_rules! resource_columns {
    () => {
        "id, identifier, name, scopes, access_token_ttl_secs, management, created_at, updated_at"
    };
}
macro_rules! signing_key_columns {
    () => {
        "id, algorithm, sealed_private_key, public_jwk, created_at, activates_at, retires_at"
    };
}
macro_rules! session_columns {
    () => {
        "id, handle_digest, user_id, auth_time, created_at, last_seen_at, expires_at"
    };
}
macro_rules! interaction_columns {
    () => {
        "id, client_id, request, state, created_at, expires_at"
    };
}
macro_rules! grant_columns {
    () => {
        "id, user_id, client_id, scopes, resource, account_id, role, session_id, auth_time, \
         created_at, expires_at, revoked_at"
    };
}
macro_rules! code_columns {
    () => {
        "digest, grant_id, redirect_uri, code_challenge, nonce, created_at, expires_at, \
         redeemed_at"
    };
}
macro_rules! refresh_token_columns {
    () => {
        "digest, grant_id, created_at, expires_at, used_at"
    };
}
pub(crate) use {code_columns, grant_columns, refresh_token_columns};
macro_rules! consent_columns {
    () => {
        "user_id, client_id, resource, scopes, updated_at"
    };
}
macro_rules! audit_columns {
    () => {
        "id, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome, \
         reason, request_id, details"
    };
}

// ---- accounts -----------------------------------------------------------------------------

pub(crate) const SELECT_ACCOUNTS: &str = concat!("SELECT ", account_columns!(), " FROM accounts");
pub(crate) const ACCOUNT_BY_ID: &str = concat!(
    "SELECT ",
    account_columns!(),
    " FROM accounts WHERE id = $1"
);
pub(crate) const INSERT_ACCOUNT: &str = concat!(
    "INSERT INTO accounts (",
    account_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6)"
);
pub(crate) const UPDATE_ACCOUNT: &str =
    "UPDATE accounts SET name = $2, custom_data = $3, updated_at = $4 WHERE id = $1";
pub(crate) const ACCOUNT_EXISTS: &str = "SELECT id FROM accounts WHERE id = $1";
pub(crate) const COUNT_CHILD_ACCOUNTS: &str =
    "SELECT COUNT(*) FROM accounts WHERE parent_account_id = $1";
pub(crate) const DELETE_ACCOUNT: &str = "DELETE FROM accounts WHERE id = $1";
/// The account and all its descendants, in one statement (both databases check the
/// self-referencing foreign key at the end of the statement).
pub(crate) const DELETE_ACCOUNT_TREE: &str = "WITH RECURSIVE subtree (id) AS ( \
         SELECT id FROM accounts WHERE id = $1 \
         UNION \
         SELECT a.id FROM accounts a JOIN subtree s ON a.parent_account_id = s.id \
     ) \
     DELETE FROM accounts WHERE id IN (SELECT id FROM subtree)";

/// Whether the account or any descendant owns a project (projects name real databases;
/// their accounts are not deleted under them).
pub(crate) const SUBTREE_HAS_PROJECTS: &str = "WITH RECURSIVE subtree (id) AS ( \
         SELECT id FROM accounts WHERE id = $1 \
         UNION \
         SELECT a.id FROM accounts a JOIN subtree s ON a.parent_account_id = s.id \
     ) \
     SELECT p.id FROM projects p WHERE p.account_id IN (SELECT id FROM subtree) LIMIT 1";

// ---- users --------------------------------------------------------------------------------

pub(crate) const SELECT_USERS: &str = concat!("SELECT ", user_columns!(), " FROM users");
pub(crate) const USER_COLUMNS: &str = user_columns!();
pub(crate) const INSERT_IMPORTED_USER: &str = concat!(
    "INSERT INTO users (",
    user_columns!(),
    ", source_digest_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
     $14, $15, $16, $17, $18, $19)"
);
pub(crate) const USER_BY_ID: &str =
    concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
pub(crate) const INSERT_USER: &str = concat!(
    "INSERT INTO users (",
    user_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
);
pub(crate) const UPDATE_USER: &str = "UPDATE users SET username = $2, primary_email = $3, \
     primary_phone = $4, name = $5, avatar = $6, profile = $7, custom_data = $8, \
     identities = $9, status = $10, application_id = $11, external_id = $12, \
     password_digest = $13, password_algorithm = $14, last_sign_in_at = $15, updated_at = $16, \
     external_source = $17 WHERE id = $1";
pub(crate) const DELETE_USER_IDENTITIES: &str = "DELETE FROM user_identities WHERE user_id = $1";
pub(crate) const INSERT_USER_IDENTITY: &str =
    "INSERT INTO user_identities (provider, provider_user_id, user_id) VALUES ($1, $2, $3)";
pub(crate) const USER_BY_IDENTITY: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE id = (SELECT user_id FROM user_identities \
     WHERE provider = $1 AND provider_user_id = $2)"
);
pub(crate) const USER_EXISTS: &str = "SELECT id FROM users WHERE id = $1";
pub(crate) const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";
/// The user whose username or primary email equals `$1` case-insensitively (through the
/// same `lower()` expressions as the unique indexes), or whose phone equals it exactly.
/// Validation keeps the three disjoint; should they ever overlap, a username match wins
/// over an email match, which wins over a phone match.
pub(crate) const USER_BY_LOGIN: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE lower(username) = lower($1) OR lower(primary_email) = lower($1) \
     OR primary_phone = $1 \
     ORDER BY CASE WHEN lower(username) = lower($1) THEN 0 \
     WHEN lower(primary_email) = lower($1) THEN 1 ELSE 2 END, id LIMIT 1"
);
pub(crate) const SET_USER_PASSWORD: &str = "UPDATE users SET password_digest = $2, \
     password_algorithm = $3, updated_at = $4 WHERE id = $1";
pub(crate) const UPGRADE_USER_PASSWORD: &str = "UPDATE users SET password_digest = $2, \
     password_algorithm = $3, updated_at = $4 WHERE id = $1 AND password_digest = $5";
pub(crate) const RECORD_SIGN_IN: &str = "UPDATE users SET last_sign_in_at = $2 WHERE id = $1";
/// How many accounts have user `$1` as their only owner.
pub(crate) const COUNT_SOLELY_OWNED: &str = "SELECT COUNT(*) FROM memberships m \
     WHERE m.user_id = $1 AND m.role = 'owner' AND NOT EXISTS ( \
         SELECT 1 FROM memberships o \
         WHERE o.account_id = m.account_id AND o.role = 'owner' AND o.user_id <> $1)";

// ---- memberships --------------------------------------------------------------------------

pub(crate) const SELECT_MEMBERSHIPS: &str =
    concat!("SELECT ", membership_columns!(), " FROM memberships");
const MEMBER_BY_ID: &str = concat!(
    "SELECT ",
    membership_columns!(),
    " FROM memberships WHERE account_id = $1 AND id = $2"
);
const MEMBER_BY_USER: &str = concat!(
    "SELECT ",
    membership_columns!(),
    " FROM memberships WHERE account_id = $1 AND user_id = $2"
);
pub(crate) const INSERT_MEMBERSHIP: &str = concat!(
    "INSERT INTO memberships (",
    membership_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6)"
);
pub(crate) const COUNT_OWNERS: &str =
    "SELECT COUNT(*) FROM memberships WHERE account_id = $1 AND role = 'owner'";
pub(crate) const UPDATE_MEMBER_ROLE: &str =
    "UPDATE memberships SET role = $2, updated_at = $3 WHERE id = $1";
pub(crate) const DELETE_MEMBERSHIP: &str = "DELETE FROM memberships WHERE id = $1";

/// Looks a member up by user id (`usr_…`) or else by membership id; binds `$1` account id,
/// `$2` the reference.
pub(crate) fn member_by_ref(member_ref: &str) -> &'static str {
    if member_ref.starts_with("usr_") {
        MEMBER_BY_USER
    } else {
        MEMBER_BY_ID
    }
}

// ---- applications -------------------------------------------------------------------------

pub(crate) const SELECT_APPLICATIONS: &str =
    concat!("SELECT ", application_columns!(), " FROM applications");
pub(crate) const APPLICATION_BY_ID: &str = concat!(
    "SELECT ",
    application_columns!(),
    " FROM applications WHERE id = $1"
);
pub(crate) const APPLICATION_BY_CLIENT_ID: &str = concat!(
    "SELECT ",
    application_columns!(),
    " FROM applications WHERE client_id = $1"
);
pub(crate) const INSERT_APPLICATION: &str = concat!(
    "INSERT INTO applications (",
    application_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
);
pub(crate) const UPDATE_APPLICATION: &str = "UPDATE applications SET name = $2, \
     description = $3, redirect_uris = $4, post_logout_redirect_uris = $5, grant_types = $6, \
     grants = $7, first_party = $8, partner = $9, account_id = $10, \
     access_token_ttl_secs = $11, updated_at = $12, claim_uri = $13 WHERE id = $1";
pub(crate) const DELETE_APPLICATION: &str = "DELETE FROM applications WHERE id = $1";

pub(crate) const SECRETS_OF_APPLICATION: &str = concat!(
    "SELECT ",
    secret_columns!(),
    " FROM application_secrets WHERE application_id = $1"
);
pub(crate) const INSERT_SECRET: &str = concat!(
    "INSERT INTO application_secrets (",
    secret_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6)"
);
pub(crate) const OTHER_SECRETS_EXPIRY: &str =
    "SELECT id, expires_at FROM application_secrets WHERE application_id = $1 AND id <> $2";
pub(crate) const SET_SECRET_EXPIRY: &str =
    "UPDATE application_secrets SET expires_at = $2 WHERE id = $1";
pub(crate) const DELETE_SECRET: &str =
    "DELETE FROM application_secrets WHERE application_id = $1 AND id = $2";

/// Secrets of `count` applications, bound as `$1 … $count`.
pub(crate) fn secrets_of_applications(count: usize) -> String {
    let placeholders = (1..=count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        concat!(
            "SELECT ",
            secret_columns!(),
            " FROM application_secrets WHERE application_id IN ({})"
        ),
        placeholders
    )
}

// ---- API resources ------------------------------------------------------------------------

pub(crate) const SELECT_RESOURCES: &str =
    concat!("SELECT ", resource_columns!(), " FROM api_resources");
pub(crate) const RESOURCE_BY_ID: &str = concat!(
    "SELECT ",
    resource_columns!(),
    " FROM api_resources WHERE id = $1"
);
pub(crate) const RESOURCE_BY_IDENTIFIER: &str = concat!(
    "SELECT ",
    resource_columns!(),
    " FROM api_resources WHERE identifier = $1"
);
pub(crate) const INSERT_RESOURCE: &str = concat!(
    "INSERT INTO api_resources (",
    resource_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);
pub(crate) const UPDATE_RESOURCE: &str = "UPDATE api_resources SET name = $2, scopes = $3, \
     access_token_ttl_secs = $4, updated_at = $5 WHERE id = $1";
pub(crate) const DELETE_RESOURCE: &str = "DELETE FROM api_resources WHERE id = $1";

// ---- signing keys -------------------------------------------------------------------------

pub(crate) const SELECT_SIGNING_KEYS: &str =
    concat!("SELECT ", signing_key_columns!(), " FROM signing_keys");
pub(crate) const INSERT_SIGNING_KEY: &str = concat!(
    "INSERT INTO signing_keys (",
    signing_key_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
);
pub(crate) const RETIRE_CURRENT_SIGNING_KEYS: &str =
    "UPDATE signing_keys SET retires_at = $1 WHERE retires_at IS NULL";
pub(crate) const COUNT_SIGNING_KEYS: &str = "SELECT COUNT(*) FROM signing_keys";
pub(crate) const SIGNING_KEY_RETIREMENTS: &str =
    "SELECT id, retires_at FROM signing_keys WHERE retires_at IS NOT NULL";
pub(crate) const DELETE_SIGNING_KEY: &str = "DELETE FROM signing_keys WHERE id = $1";

// ---- audit --------------------------------------------------------------------------------

pub(crate) const SELECT_AUDIT_EVENTS: &str =
    concat!("SELECT ", audit_columns!(), " FROM audit_events");
pub(crate) const INSERT_AUDIT_EVENT: &str = concat!(
    "INSERT INTO audit_events (",
    audit_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
);

// ---- sessions and interactions ------------------------------------------------------------

pub(crate) const INSERT_SESSION: &str = concat!(
    "INSERT INTO sessions (",
    session_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
);
pub(crate) const SESSION_BY_HANDLE: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE handle_digest = $1"
);
pub(crate) const TOUCH_SESSION: &str = "UPDATE sessions SET last_seen_at = $2 WHERE id = $1";
pub(crate) const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id = $1";
pub(crate) const DELETE_USER_SESSIONS: &str = "DELETE FROM sessions WHERE user_id = $1";
pub(crate) const SESSION_EXPIRIES: &str = "SELECT id, expires_at FROM sessions";

pub(crate) const INSERT_INTERACTION: &str = concat!(
    "INSERT INTO interactions (",
    interaction_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6)"
);
pub(crate) const INTERACTION_BY_ID: &str = concat!(
    "SELECT ",
    interaction_columns!(),
    " FROM interactions WHERE id = $1"
);
pub(crate) const UPDATE_INTERACTION_STATE: &str =
    "UPDATE interactions SET state = $2 WHERE id = $1";
pub(crate) const DELETE_INTERACTION: &str = "DELETE FROM interactions WHERE id = $1";
pub(crate) const INTERACTION_EXPIRIES: &str = "SELECT id, expires_at FROM interactions";

// ---- grants, codes, refresh tokens --------------------------------------------------------

pub(crate) const INSERT_GRANT: &str = concat!(
    "INSERT INTO grants (",
    grant_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);
pub(crate) const GRANT_BY_ID: &str =
    concat!("SELECT ", grant_columns!(), " FROM grants WHERE id = $1");
pub(crate) const GRANT_EXPIRY: &str = "SELECT expires_at FROM grants WHERE id = $1";
/// Sets `revoked_at` unless the grant is revoked already (the first revocation time stays).
pub(crate) const REVOKE_GRANT: &str =
    "UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
pub(crate) const GRANT_EXISTS: &str = "SELECT id FROM grants WHERE id = $1";
pub(crate) const UNREVOKED_SESSION_GRANTS: &str =
    "SELECT id, expires_at FROM grants WHERE session_id = $1 AND revoked_at IS NULL";

pub(crate) const INSERT_CODE: &str = concat!(
    "INSERT INTO authorization_codes (",
    code_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);
pub(crate) const CODE_GRANT_ID: &str = "SELECT grant_id FROM authorization_codes WHERE digest = $1";
pub(crate) const CODE_BY_DIGEST: &str = concat!(
    "SELECT ",
    code_columns!(),
    " FROM authorization_codes WHERE digest = $1"
);
pub(crate) const REDEEM_CODE: &str =
    "UPDATE authorization_codes SET redeemed_at = $2 WHERE digest = $1";

pub(crate) const INSERT_REFRESH_TOKEN: &str = concat!(
    "INSERT INTO refresh_tokens (",
    refresh_token_columns!(),
    ") VALUES ($1, $2, $3, $4, $5)"
);
pub(crate) const REFRESH_TOKEN_GRANT_ID: &str =
    "SELECT grant_id FROM refresh_tokens WHERE digest = $1";
pub(crate) const REFRESH_TOKEN_BY_DIGEST: &str = concat!(
    "SELECT ",
    refresh_token_columns!(),
    " FROM refresh_tokens WHERE digest = $1"
);
pub(crate) const USE_REFRESH_TOKEN: &str =
    "UPDATE refresh_tokens SET used_at = $2 WHERE digest = $1";

// ---- consents -----------------------------------------------------------------------------

pub(crate) const CONSENT_BY_KEY: &str = concat!(
    "SELECT ",
    consent_columns!(),
    " FROM consents WHERE user_id = $1 AND client_id = $2 AND resource = $3"
);
/// Insert or replace (both databases support `ON CONFLICT … DO UPDATE` with `excluded`).
pub(crate) const UPSERT_CONSENT: &str = concat!(
    "INSERT INTO consents (",
    consent_columns!(),
    ") VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (user_id, client_id, resource) \
     DO UPDATE SET scopes = excluded.scopes, updated_at = excluded.updated_at"
);

// ---- sign-in throttling -------------------------------------------------------------------

pub(crate) const INSERT_FAILURE: &str = "INSERT INTO sign_in_failures (key, at) VALUES ($1, $2)";
pub(crate) const FAILURE_TIMES: &str = "SELECT at FROM sign_in_failures WHERE key = $1";
pub(crate) const CLEAR_FAILURES: &str = "DELETE FROM sign_in_failures WHERE key = $1";
pub(crate) const ALL_FAILURE_TIMES: &str = "SELECT id, at FROM sign_in_failures";

/// `DELETE FROM <table> WHERE <column> IN ($1 … $count)`.
pub(crate) fn delete_where_in(table: &str, column: &str, count: usize) -> String {
    let placeholders = (1..=count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("DELETE FROM {table} WHERE {column} IN ({placeholders})")
}

/// How many values one `delete_where_in` statement binds at most.
pub(crate) const DELETE_BATCH: usize = 500;

pub(crate) const PING: &str = "SELECT 1";

// ---- lists --------------------------------------------------------------------------------

/// A list query: `sql` binds `args` (all text) as `$1 … $n`, then `limit` as `$n+1`.
#[derive(Debug)]
pub(crate) struct Listing {
    pub sql: String,
    pub args: Vec<String>,
    pub limit: i64,
}

#[derive(Default)]
struct Conditions {
    conds: Vec<String>,
    args: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    Ascending,
    Descending,
}

impl Conditions {
    /// Adds a bound value and returns its placeholder.
    fn arg(&mut self, value: impl Into<String>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    fn push(&mut self, cond: String) {
        self.conds.push(cond);
    }

    fn finish(mut self, select: &str, page: &PageRequest, order: Order) -> Listing {
        if let Some(cursor) = &page.cursor {
            let p = self.arg(cursor.as_str());
            let op = match order {
                Order::Ascending => ">",
                Order::Descending => "<",
            };
            self.push(format!("id {op} {p}"));
        }
        let mut sql = String::from(select);
        if !self.conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.conds.join(" AND "));
        }
        let direction = match order {
            Order::Ascending => "ASC",
            Order::Descending => "DESC",
        };
        sql.push_str(&format!(
            " ORDER BY id {direction} LIMIT ${}",
            self.args.len() + 1
        ));
        Listing {
            sql,
            args: self.args,
            limit: i64::from(page.limit) + 1,
        }
    }
}

/// `%` and `_` in user input match literally (escape character `\`).
fn like_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

pub(crate) fn list_accounts(filter: &AccountFilter, page: &PageRequest) -> Listing {
    let mut c = Conditions::default();
    if let Some(parent) = &filter.parent_account_id {
        let p = c.arg(parent.as_str());
        c.push(format!("parent_account_id = {p}"));
    }
    if let Some(user) = &filter.member_user_id {
        let p = c.arg(user.as_str());
        c.push(format!(
            "id IN (SELECT account_id FROM memberships WHERE user_id = {p})"
        ));
    }
    c.finish(SELECT_ACCOUNTS, page, Order::Ascending)
}

pub(crate) fn list_users(filter: &UserFilter, page: &PageRequest) -> Listing {
    let mut c = Conditions::default();
    if let Some(email) = &filter.email {
        let p = c.arg(email.as_str());
        c.push(format!("lower(primary_email) = lower({p})"));
    }
    if let Some(username) = &filter.username {
        let p = c.arg(username.as_str());
        c.push(format!("lower(username) = lower({p})"));
    }
    if let Some(phone) = &filter.phone {
        let p = c.arg(phone.as_str());
        c.push(format!("primary_phone = {p}"));
    }
    if let Some(external_id) = &filter.external_id {
        let p = c.arg(external_id.as_str());
        c.push(format!("external_id = {p}"));
    }
    if let Some(source) = &filter.external_source {
        let p = c.arg(source.as_str());
        c.push(format!("external_source = {p}"));
    }
    if let Some((provider, provider_user_id)) = &filter.identity {
        let p = c.arg(provider.as_str());
        let q = c.arg(provider_user_id.as_str());
        c.push(format!(
            "id IN (SELECT user_id FROM user_identities \
             WHERE provider = {p} AND provider_user_id = {q})"
        ));
    }
    if let Some(application_id) = &filter.application_id {
        let p = c.arg(application_id.as_str());
        c.push(format!("application_id = {p}"));
    }
    if let Some(status) = filter.status {
        let p = c.arg(status.as_str());
        c.push(format!("status = {p}"));
    }
    if let Some(search) = &filter.search {
        let p = c.arg(like_pattern(search));
        c.push(format!(
            "(lower(username) LIKE lower({p}) ESCAPE '\\' \
             OR lower(primary_email) LIKE lower({p}) ESCAPE '\\' \
             OR lower(name) LIKE lower({p}) ESCAPE '\\')"
        ));
    }
    c.finish(SELECT_USERS, page, Order::Ascending)
}

pub(crate) fn list_members(account_id: &str, page: &PageRequest) -> Listing {
    let mut c = Conditions::default();
    let p = c.arg(account_id);
    c.push(format!("account_id = {p}"));
    c.finish(SELECT_MEMBERSHIPS, page, Order::Ascending)
}

pub(crate) fn list_applications(page: &PageRequest) -> Listing {
    Conditions::default().finish(SELECT_APPLICATIONS, page, Order::Ascending)
}

pub(crate) fn list_resources(page: &PageRequest) -> Listing {
    Conditions::default().finish(SELECT_RESOURCES, page, Order::Ascending)
}

/// Newest first: ids strictly before the cursor.
pub(crate) fn list_audit_events(filter: &AuditFilter, page: &PageRequest) -> Listing {
    let mut c = Conditions::default();
    if let Some(action) = &filter.action {
        let p = c.arg(action.as_str());
        c.push(format!("action = {p}"));
    }
    if let Some(actor_id) = &filter.actor_id {
        let p = c.arg(actor_id.as_str());
        c.push(format!("actor_id = {p}"));
    }
    if let Some(target_id) = &filter.target_id {
        let p = c.arg(target_id.as_str());
        c.push(format!("target_id = {p}"));
    }
    if let Some(outcome) = filter.outcome {
        let p = c.arg(outcome.as_str());
        c.push(format!("outcome = {p}"));
    }
    c.finish(SELECT_AUDIT_EVENTS, page, Order::Descending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::Role;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
    }

    #[test]
    fn listing_numbers_placeholders_and_limit() {
        let listing = list_users(
            &UserFilter {
                email: Some("A@x".into()),
                search: Some("bo".into()),
                ..UserFilter::default()
            },
            &PageRequest {
                cursor: Some("usr_1".into()),
                limit: 10,
            },
        );
        assert_eq!(listing.args, vec!["A@x", "%bo%", "usr_1"]);
        assert_eq!(listing.limit, 11);
        assert!(listing.sql.contains("id > $3 ORDER BY id ASC LIMIT $4"));
        let audit = list_audit_events(
            &AuditFilter::default(),
            &PageRequest {
                cursor: Some("evt_1".into()),
                limit: 5,
            },
        );
        assert!(audit
            .sql
            .ends_with("WHERE id < $1 ORDER BY id DESC LIMIT $2"));
    }

    /// The SQL above spells the owner role as the literal `'owner'`.
    #[test]
    fn owner_literal_matches_role() {
        assert_eq!(Role::Owner.as_str(), "owner");
    }
}

//! The storage traits, implemented once for both backends.
//!
//! [`impl_store!`] is expanded by `sqlite.rs` and `postgres.rs`. The SQL is shared (see
//! [`crate::sql`]); the dialect hooks are:
//!
//! - `begin_write`: the statement that opens a write transaction. SQLite uses
//!   `BEGIN IMMEDIATE`, taking the database write lock up front so that a transaction that
//!   reads before it writes can't fail to upgrade its lock (and so that rules checked
//!   inside it see no concurrent writer). PostgreSQL uses a plain `BEGIN`.
//! - `for_update`: appended to the `SELECT`s that lock the rows a rule depends on
//!   (`" FOR UPDATE"` on PostgreSQL, empty on SQLite where `BEGIN IMMEDIATE` serialises
//!   writers already).
//! - `lock_signing_keys`: an optional statement that serialises signing-key writes across
//!   processes (a transaction-scoped advisory lock on PostgreSQL).
//! - `migrator` and `migrate_attempts`: the embedded migrations and how many times to try
//!   them (SQLite's migrator takes no lock, so a node that loses a race with another one
//!   migrating the same file retries and then finds the migrations applied).
//!
//! Timestamps are compared in Rust, never in SQL, because SQLite stores them as RFC 3339
//! text whose lexical order is not always chronological.

macro_rules! impl_store {
    (
        store: $store:ident,
        db: $db:ty,
        backend: $backend:literal,
        begin_write: $begin_write:literal,
        for_update: $for_update:literal,
        lock_signing_keys: $lock_signing_keys:expr,
        migrator: $migrator:expr,
        migrate_attempts: $migrate_attempts:expr $(,)?
    ) => {
        const _: () = {
            use ::async_trait::async_trait;
            use ::keyward_core::model::{
                Account, ApiResource, Application, AuditEvent, AuthorizationCode, ClientSecret,
                Consent, Grant, Interaction, Membership, RefreshToken, Session, SigningKey, User,
            };
            use ::keyward_core::store::{
                AccountFilter, AccountStore, ApplicationStore, AuditFilter, AuditStore,
                CodeRedemption, ConsentStore, GrantStore, MembershipStore, PageRequest,
                RefreshRotation, ResourceStore, SessionStore, SigningKeyStore, Store, StoreResult,
                ThrottleStore, UserFilter, UserStore,
            };
            use ::keyward_core::{Role, StoreError};
            use ::sqlx::types::Json;
            use ::std::collections::HashMap;
            use ::time::OffsetDateTime;
            use $crate::error::{
                conflict_or_internal, internal, is_foreign_key_violation, write_error,
            };
            use $crate::rows::{
                convert_all, grants_json, scopes_json, sort_keys_oldest_first,
                sort_secrets_newest_first, utc, AccountRow, ApplicationRow, AuditRow, CodeRow,
                ConsentRow, GrantRow, InteractionRow, MembershipRow, RefreshTokenRow, ResourceRow,
                SecretRow, SessionRow, SigningKeyRow, UserRow,
            };
            use $crate::sql;

            type Tx = ::sqlx::Transaction<'static, $db>;

            /// Writes the (provider, provider user id) index of `user.identities`; a pair
            /// another user holds is the conflict `identity_taken`.
            async fn index_identities(tx: &mut Tx, user: &User) -> StoreResult<()> {
                let pairs = ::keyward_core::validate::identities(&user.identities)
                    .map_err(|e| StoreError::Internal(format!("user {}: {e}", user.id)))?;
                for (provider, provider_user_id) in pairs {
                    ::sqlx::query(sql::INSERT_USER_IDENTITY)
                        .bind(provider)
                        .bind(provider_user_id)
                        .bind(&user.id)
                        .execute(&mut **tx)
                        .await
                        .map_err(conflict_or_internal)?;
                }
                Ok(())
            }

            /// Locks the account row for the rest of the transaction.
            const LOCK_ACCOUNT: &str =
                concat!("SELECT id FROM accounts WHERE id = $1", $for_update);
            /// Locks the accounts user `$1` owns, in id order (no deadlocks between two
            /// such transactions).
            const LOCK_ACCOUNTS_OWNED_BY: &str = concat!(
                "SELECT id FROM accounts WHERE id IN (SELECT account_id FROM memberships \
                 WHERE user_id = $1 AND role = 'owner') ORDER BY id",
                $for_update
            );
            /// Locks the application row (serialises secret rotations).
            const LOCK_APPLICATION: &str =
                concat!("SELECT id FROM applications WHERE id = $1", $for_update);

            /// Locks the grant row: redemptions, rotations and revocations of one grant
            /// take turns. Every path locks the grant before its codes or tokens (and a
            /// user delete cascades in the same order), so they cannot deadlock.
            const LOCK_GRANT: &str = concat!(
                "SELECT ",
                $crate::sql::grant_columns!(),
                " FROM grants WHERE id = $1",
                $for_update
            );
            const LOCK_CODE: &str = concat!(
                "SELECT ",
                $crate::sql::code_columns!(),
                " FROM authorization_codes WHERE digest = $1",
                $for_update
            );
            const LOCK_REFRESH_TOKEN: &str = concat!(
                "SELECT ",
                $crate::sql::refresh_token_columns!(),
                " FROM refresh_tokens WHERE digest = $1",
                $for_update
            );

            /// How often a cascading delete is retried when a concurrent insert adds a
            /// child under the tree between reading and deleting it.
            const CASCADE_ATTEMPTS: u32 = 3;

            /// Locks the account and its descendants (cascading delete).
            const LOCK_ACCOUNT_TREE: &str = concat!(
                "WITH RECURSIVE subtree (id) AS ( \
                 SELECT id FROM accounts WHERE id = $1 \
                 UNION \
                 SELECT a.id FROM accounts a JOIN subtree s ON a.parent_account_id = s.id) \
                 SELECT id FROM accounts WHERE id IN (SELECT id FROM subtree) ORDER BY id",
                $for_update
            );

            impl $store {
                /// Conflict `account_has_projects` when the account or a descendant still
                /// owns a project: its rows name real databases, dropped first.
                async fn refuse_if_projects(tx: &mut Tx, id: &str) -> StoreResult<()> {
                    let project: Option<String> = ::sqlx::query_scalar(sql::SUBTREE_HAS_PROJECTS)
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(internal)?;
                    match project {
                        Some(_) => Err(StoreError::Conflict("account_has_projects")),
                        None => Ok(()),
                    }
                }

                async fn begin_write(&self) -> StoreResult<Tx> {
                    self.writer.begin_with($begin_write).await.map_err(internal)
                }

                async fn exists(&self, query: &'static str, id: &str) -> StoreResult<bool> {
                    let row: Option<(String,)> = ::sqlx::query_as(query)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    Ok(row.is_some())
                }

                /// Which side of a membership is missing after a foreign-key violation
                /// (SQLite does not say which key failed).
                async fn missing_member_reference(
                    &self,
                    account_id: &str,
                    user_id: &str,
                ) -> StoreError {
                    match self.exists(sql::ACCOUNT_EXISTS, account_id).await {
                        Ok(true) => {}
                        Ok(false) => return StoreError::NotFound("account"),
                        Err(e) => return e,
                    }
                    match self.exists(sql::USER_EXISTS, user_id).await {
                        Ok(false) => StoreError::NotFound("user"),
                        Err(e) => e,
                        // Both exist again: the missing one was deleted and its id
                        // reused between the insert and this check; report the account.
                        Ok(true) => StoreError::NotFound("account"),
                    }
                }

                async fn fetch_listing<R>(&self, listing: sql::Listing) -> StoreResult<Vec<R>>
                where
                    R: for<'r> ::sqlx::FromRow<'r, <$db as ::sqlx::Database>::Row> + Send + Unpin,
                {
                    let sql::Listing {
                        sql: text,
                        args,
                        limit,
                    } = listing;
                    let mut query = ::sqlx::query_as::<$db, R>(&text);
                    for arg in args {
                        query = query.bind(arg);
                    }
                    query
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(internal)
                }

                async fn secrets_of(&self, application_id: &str) -> StoreResult<Vec<ClientSecret>> {
                    let rows: Vec<SecretRow> = ::sqlx::query_as(sql::SECRETS_OF_APPLICATION)
                        .bind(application_id)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(internal)?;
                    let mut secrets: Vec<ClientSecret> = rows.into_iter().map(Into::into).collect();
                    sort_secrets_newest_first(&mut secrets);
                    Ok(secrets)
                }

                async fn with_secrets(
                    &self,
                    row: Option<ApplicationRow>,
                ) -> StoreResult<Option<Application>> {
                    match row {
                        None => Ok(None),
                        Some(row) => {
                            let secrets = self.secrets_of(&row.id).await?;
                            row.into_model(secrets).map(Some)
                        }
                    }
                }

                async fn fetch_member(
                    tx: &mut Tx,
                    account_id: &str,
                    member_ref: &str,
                ) -> StoreResult<Option<Membership>> {
                    let row: Option<MembershipRow> =
                        ::sqlx::query_as(sql::member_by_ref(member_ref))
                            .bind(account_id)
                            .bind(member_ref)
                            .fetch_optional(&mut **tx)
                            .await
                            .map_err(internal)?;
                    row.map(Membership::try_from).transpose()
                }

                /// Locks the account and loads the member; refuses with `LastOwner` when
                /// `losing_owner` and the member is the account's only owner.
                async fn member_for_change(
                    tx: &mut Tx,
                    account_id: &str,
                    member_ref: &str,
                    losing_owner: bool,
                ) -> StoreResult<Membership> {
                    let locked: Option<(String,)> = ::sqlx::query_as(LOCK_ACCOUNT)
                        .bind(account_id)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(internal)?;
                    if locked.is_none() {
                        return Err(StoreError::NotFound("member"));
                    }
                    let member = Self::fetch_member(tx, account_id, member_ref)
                        .await?
                        .ok_or(StoreError::NotFound("member"))?;
                    if member.role == Role::Owner && losing_owner {
                        let owners: i64 = ::sqlx::query_scalar(sql::COUNT_OWNERS)
                            .bind(account_id)
                            .fetch_one(&mut **tx)
                            .await
                            .map_err(internal)?;
                        if owners <= 1 {
                            return Err(StoreError::LastOwner);
                        }
                    }
                    Ok(member)
                }

                async fn lock_signing_keys(tx: &mut Tx) -> StoreResult<()> {
                    let lock: Option<&'static str> = $lock_signing_keys;
                    if let Some(statement) = lock {
                        ::sqlx::query(statement)
                            .execute(&mut **tx)
                            .await
                            .map_err(internal)?;
                    }
                    Ok(())
                }

                async fn insert_signing_key(tx: &mut Tx, key: &SigningKey) -> StoreResult<()> {
                    ::sqlx::query(sql::INSERT_SIGNING_KEY)
                        .bind(&key.id)
                        .bind(&key.algorithm)
                        .bind(&key.sealed_private_key)
                        .bind(Json(&key.public_jwk))
                        .bind(utc(key.created_at))
                        .bind(utc(key.activates_at))
                        .bind(key.retires_at.map(utc))
                        .execute(&mut **tx)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }

                /// Deletes the rows of `table` whose `column` is one of `keys`, a batch of
                /// keys per statement; returns how many went.
                async fn delete_in_batches<K>(
                    &self,
                    table: &str,
                    column: &str,
                    keys: Vec<K>,
                ) -> StoreResult<u64>
                where
                    K: for<'q> ::sqlx::Encode<'q, $db> + ::sqlx::Type<$db> + Send + 'static,
                {
                    let mut deleted = 0;
                    let mut keys = keys.into_iter().peekable();
                    while keys.peek().is_some() {
                        let batch: Vec<K> = keys.by_ref().take(sql::DELETE_BATCH).collect();
                        let text = sql::delete_where_in(table, column, batch.len());
                        let mut query = ::sqlx::query::<$db>(&text);
                        for key in batch {
                            query = query.bind(key);
                        }
                        deleted += query
                            .execute(&self.writer)
                            .await
                            .map_err(internal)?
                            .rows_affected();
                    }
                    Ok(deleted)
                }

                /// Looks up the grant id of a code or refresh token (`lookup` binds the
                /// digest) and locks that grant. `None` when either is gone.
                async fn lock_grant_of(
                    tx: &mut Tx,
                    lookup: &'static str,
                    digest: &[u8],
                ) -> StoreResult<Option<Grant>> {
                    let grant_id: Option<String> = ::sqlx::query_scalar(lookup)
                        .bind(digest)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(internal)?;
                    let Some(grant_id) = grant_id else {
                        return Ok(None);
                    };
                    let row: Option<GrantRow> = ::sqlx::query_as(LOCK_GRANT)
                        .bind(&grant_id)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(internal)?;
                    row.map(Grant::try_from).transpose()
                }

                async fn revoke_in(
                    tx: &mut Tx,
                    grant_id: &str,
                    now: OffsetDateTime,
                ) -> StoreResult<()> {
                    ::sqlx::query(sql::REVOKE_GRANT)
                        .bind(grant_id)
                        .bind(utc(now))
                        .execute(&mut **tx)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }

                async fn insert_refresh_token(
                    tx: &mut Tx,
                    token: &RefreshToken,
                    grant_id: &str,
                    expires_at: OffsetDateTime,
                ) -> StoreResult<()> {
                    ::sqlx::query(sql::INSERT_REFRESH_TOKEN)
                        .bind(&token.digest)
                        .bind(grant_id)
                        .bind(utc(token.created_at))
                        .bind(utc(expires_at))
                        .bind(token.used_at.map(utc))
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("grant")))?;
                    Ok(())
                }

                async fn insert_secret(
                    tx: &mut Tx,
                    application_id: &str,
                    secret: &ClientSecret,
                ) -> StoreResult<()> {
                    ::sqlx::query(sql::INSERT_SECRET)
                        .bind(&secret.id)
                        .bind(application_id)
                        .bind(&secret.digest)
                        .bind(&secret.hint)
                        .bind(utc(secret.created_at))
                        .bind(secret.expires_at.map(utc))
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("application")))?;
                    Ok(())
                }
            }

            // ---- accounts -----------------------------------------------------------------

            #[async_trait]
            impl AccountStore for $store {
                async fn create_account(&self, account: &Account) -> StoreResult<()> {
                    ::sqlx::query(sql::INSERT_ACCOUNT)
                        .bind(&account.id)
                        .bind(&account.name)
                        .bind(&account.parent_account_id)
                        .bind(Json(&account.custom_data))
                        .bind(utc(account.created_at))
                        .bind(utc(account.updated_at))
                        .execute(&self.writer)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("parent account")))?;
                    Ok(())
                }

                async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
                    let row: Option<AccountRow> = ::sqlx::query_as(sql::ACCOUNT_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    Ok(row.map(Into::into))
                }

                async fn list_accounts(
                    &self,
                    filter: &AccountFilter,
                    page: &PageRequest,
                ) -> StoreResult<Vec<Account>> {
                    let rows: Vec<AccountRow> =
                        self.fetch_listing(sql::list_accounts(filter, page)).await?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn update_account(&self, account: &Account) -> StoreResult<()> {
                    let done = ::sqlx::query(sql::UPDATE_ACCOUNT)
                        .bind(&account.id)
                        .bind(&account.name)
                        .bind(Json(&account.custom_data))
                        .bind(utc(account.updated_at))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("account"));
                    }
                    Ok(())
                }

                async fn delete_account(&self, id: &str, cascade: bool) -> StoreResult<u64> {
                    if cascade {
                        // One statement: the tree as of its snapshot. A child inserted under
                        // it concurrently makes the foreign-key check fail; run it again.
                        let mut attempt = 1;
                        loop {
                            let mut tx = self.begin_write().await?;
                            // Lock the tree, so no project is created in it (creation locks
                            // its account) between the check and the delete.
                            ::sqlx::query(LOCK_ACCOUNT_TREE)
                                .bind(id)
                                .execute(&mut *tx)
                                .await
                                .map_err(internal)?;
                            Self::refuse_if_projects(&mut tx, id).await?;
                            let deleted = match ::sqlx::query(sql::DELETE_ACCOUNT_TREE)
                                .bind(id)
                                .execute(&mut *tx)
                                .await
                            {
                                Ok(done) if done.rows_affected() == 0 => {
                                    return Err(StoreError::NotFound("account"));
                                }
                                Ok(done) => done.rows_affected(),
                                Err(e)
                                    if is_foreign_key_violation(&e)
                                        && attempt < CASCADE_ATTEMPTS =>
                                {
                                    attempt += 1;
                                    continue;
                                }
                                Err(e) => return Err(write_error(e, StoreError::HasChildren)),
                            };
                            match tx.commit().await {
                                Ok(()) => return Ok(deleted),
                                Err(e)
                                    if is_foreign_key_violation(&e)
                                        && attempt < CASCADE_ATTEMPTS =>
                                {
                                    attempt += 1;
                                }
                                Err(e) => return Err(write_error(e, StoreError::HasChildren)),
                            }
                        }
                    }
                    let mut tx = self.begin_write().await?;
                    let locked: Option<(String,)> = ::sqlx::query_as(LOCK_ACCOUNT)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(internal)?;
                    if locked.is_none() {
                        return Err(StoreError::NotFound("account"));
                    }
                    Self::refuse_if_projects(&mut tx, id).await?;
                    let children: i64 = ::sqlx::query_scalar(sql::COUNT_CHILD_ACCOUNTS)
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(internal)?;
                    if children > 0 {
                        return Err(StoreError::HasChildren);
                    }
                    // A child inserted after the count fails the foreign-key check here.
                    let done = ::sqlx::query(sql::DELETE_ACCOUNT)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| write_error(e, StoreError::HasChildren))?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("account"));
                    }
                    tx.commit()
                        .await
                        .map_err(|e| write_error(e, StoreError::HasChildren))?;
                    Ok(done.rows_affected())
                }
            }

            // ---- users --------------------------------------------------------------------

            #[async_trait]
            impl UserStore for $store {
                async fn create_user(&self, user: &User) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    ::sqlx::query(sql::INSERT_USER)
                        .bind(&user.id)
                        .bind(&user.username)
                        .bind(&user.primary_email)
                        .bind(&user.primary_phone)
                        .bind(&user.name)
                        .bind(&user.avatar)
                        .bind(Json(&user.profile))
                        .bind(Json(&user.custom_data))
                        .bind(Json(&user.identities))
                        .bind(user.status.as_str())
                        .bind(&user.application_id)
                        .bind(&user.external_id)
                        .bind(&user.password_digest)
                        .bind(&user.password_algorithm)
                        .bind(user.last_sign_in_at.map(utc))
                        .bind(utc(user.created_at))
                        .bind(utc(user.updated_at))
                        .bind(&user.external_source)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("application")))?;
                    index_identities(&mut tx, user).await?;
                    tx.commit().await.map_err(internal)?;
                    Ok(())
                }

                async fn get_user(&self, id: &str) -> StoreResult<Option<User>> {
                    let row: Option<UserRow> = ::sqlx::query_as(sql::USER_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    row.map(User::try_from).transpose()
                }

                async fn list_users(
                    &self,
                    filter: &UserFilter,
                    page: &PageRequest,
                ) -> StoreResult<Vec<User>> {
                    let rows: Vec<UserRow> =
                        self.fetch_listing(sql::list_users(filter, page)).await?;
                    convert_all(rows)
                }

                async fn update_user(&self, user: &User) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let done = ::sqlx::query(sql::UPDATE_USER)
                        .bind(&user.id)
                        .bind(&user.username)
                        .bind(&user.primary_email)
                        .bind(&user.primary_phone)
                        .bind(&user.name)
                        .bind(&user.avatar)
                        .bind(Json(&user.profile))
                        .bind(Json(&user.custom_data))
                        .bind(Json(&user.identities))
                        .bind(user.status.as_str())
                        .bind(&user.application_id)
                        .bind(&user.external_id)
                        .bind(&user.password_digest)
                        .bind(&user.password_algorithm)
                        .bind(user.last_sign_in_at.map(utc))
                        .bind(utc(user.updated_at))
                        .bind(&user.external_source)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("application")))?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("user"));
                    }
                    ::sqlx::query(sql::DELETE_USER_IDENTITIES)
                        .bind(&user.id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    index_identities(&mut tx, user).await?;
                    tx.commit().await.map_err(internal)?;
                    Ok(())
                }

                async fn delete_user(&self, id: &str, force: bool) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    if !force {
                        // Lock every account the user owns, then count those where no one
                        // else is an owner. Demotions and removals lock the account too, so
                        // they cannot take away the other owner in between.
                        let _locked: Vec<(String,)> = ::sqlx::query_as(LOCK_ACCOUNTS_OWNED_BY)
                            .bind(id)
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(internal)?;
                        let solely_owned: i64 = ::sqlx::query_scalar(sql::COUNT_SOLELY_OWNED)
                            .bind(id)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(internal)?;
                        if solely_owned > 0 {
                            return Err(StoreError::UserIsLastOwner);
                        }
                    }
                    // Memberships go with the user (ON DELETE CASCADE).
                    let done = ::sqlx::query(sql::DELETE_USER)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("user"));
                    }
                    tx.commit().await.map_err(internal)
                }

                async fn find_user_by_login(&self, login: &str) -> StoreResult<Option<User>> {
                    let row: Option<UserRow> = ::sqlx::query_as(sql::USER_BY_LOGIN)
                        .bind(login)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    row.map(User::try_from).transpose()
                }

                async fn set_user_password(
                    &self,
                    id: &str,
                    digest: &str,
                    algorithm: &str,
                    now: OffsetDateTime,
                ) -> StoreResult<()> {
                    let done = ::sqlx::query(sql::SET_USER_PASSWORD)
                        .bind(id)
                        .bind(digest)
                        .bind(algorithm)
                        .bind(utc(now))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("user"));
                    }
                    Ok(())
                }

                async fn upgrade_user_password(
                    &self,
                    id: &str,
                    expected_digest: &str,
                    digest: &str,
                    algorithm: &str,
                    now: OffsetDateTime,
                ) -> StoreResult<bool> {
                    let done = ::sqlx::query(sql::UPGRADE_USER_PASSWORD)
                        .bind(id)
                        .bind(digest)
                        .bind(algorithm)
                        .bind(utc(now))
                        .bind(expected_digest)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn find_user_by_identity(
                    &self,
                    provider: &str,
                    provider_user_id: &str,
                ) -> StoreResult<Option<User>> {
                    let row: Option<UserRow> = ::sqlx::query_as(sql::USER_BY_IDENTITY)
                        .bind(provider)
                        .bind(provider_user_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    row.map(User::try_from).transpose()
                }

                async fn record_sign_in(&self, id: &str, now: OffsetDateTime) -> StoreResult<()> {
                    let done = ::sqlx::query(sql::RECORD_SIGN_IN)
                        .bind(id)
                        .bind(utc(now))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("user"));
                    }
                    Ok(())
                }
            }

            // ---- memberships --------------------------------------------------------------

            #[async_trait]
            impl MembershipStore for $store {
                async fn add_member(&self, membership: &Membership) -> StoreResult<()> {
                    let inserted = ::sqlx::query(sql::INSERT_MEMBERSHIP)
                        .bind(&membership.id)
                        .bind(&membership.account_id)
                        .bind(&membership.user_id)
                        .bind(membership.role.as_str())
                        .bind(utc(membership.created_at))
                        .bind(utc(membership.updated_at))
                        .execute(&self.writer)
                        .await;
                    match inserted {
                        Ok(_) => Ok(()),
                        Err(e) if is_foreign_key_violation(&e) => Err(self
                            .missing_member_reference(&membership.account_id, &membership.user_id)
                            .await),
                        Err(e) => Err(write_error(e, StoreError::NotFound("account"))),
                    }
                }

                async fn get_member(
                    &self,
                    account_id: &str,
                    member_ref: &str,
                ) -> StoreResult<Option<Membership>> {
                    let row: Option<MembershipRow> =
                        ::sqlx::query_as(sql::member_by_ref(member_ref))
                            .bind(account_id)
                            .bind(member_ref)
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(internal)?;
                    row.map(Membership::try_from).transpose()
                }

                async fn list_members(
                    &self,
                    account_id: &str,
                    page: &PageRequest,
                ) -> StoreResult<Vec<Membership>> {
                    let rows: Vec<MembershipRow> = self
                        .fetch_listing(sql::list_members(account_id, page))
                        .await?;
                    convert_all(rows)
                }

                async fn update_member_role(
                    &self,
                    account_id: &str,
                    member_ref: &str,
                    role: Role,
                    now: OffsetDateTime,
                ) -> StoreResult<Membership> {
                    let mut tx = self.begin_write().await?;
                    let member = Self::member_for_change(
                        &mut tx,
                        account_id,
                        member_ref,
                        role != Role::Owner,
                    )
                    .await?;
                    ::sqlx::query(sql::UPDATE_MEMBER_ROLE)
                        .bind(&member.id)
                        .bind(role.as_str())
                        .bind(utc(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    // Read back what was stored (PostgreSQL keeps microseconds only).
                    let updated = Self::fetch_member(&mut tx, account_id, &member.id)
                        .await?
                        .ok_or(StoreError::NotFound("member"))?;
                    tx.commit().await.map_err(internal)?;
                    Ok(updated)
                }

                async fn remove_member(
                    &self,
                    account_id: &str,
                    member_ref: &str,
                ) -> StoreResult<Membership> {
                    let mut tx = self.begin_write().await?;
                    let member =
                        Self::member_for_change(&mut tx, account_id, member_ref, true).await?;
                    ::sqlx::query(sql::DELETE_MEMBERSHIP)
                        .bind(&member.id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    tx.commit().await.map_err(internal)?;
                    Ok(member)
                }
            }

            // ---- applications -------------------------------------------------------------

            #[async_trait]
            impl ApplicationStore for $store {
                async fn create_application(&self, app: &Application) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    ::sqlx::query(sql::INSERT_APPLICATION)
                        .bind(&app.id)
                        .bind(&app.client_id)
                        .bind(&app.name)
                        .bind(&app.description)
                        .bind(app.kind.as_str())
                        .bind(Json(&app.redirect_uris))
                        .bind(Json(&app.post_logout_redirect_uris))
                        .bind(Json(&app.grant_types))
                        .bind(grants_json(&app.grants))
                        .bind(app.first_party)
                        .bind(app.partner)
                        .bind(&app.account_id)
                        .bind(app.access_token_ttl_secs)
                        .bind(utc(app.created_at))
                        .bind(utc(app.updated_at))
                        .bind(&app.claim_uri)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("account")))?;
                    for secret in &app.secrets {
                        Self::insert_secret(&mut tx, &app.id, secret).await?;
                    }
                    tx.commit()
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("account")))
                }

                async fn get_application(&self, id: &str) -> StoreResult<Option<Application>> {
                    let row: Option<ApplicationRow> = ::sqlx::query_as(sql::APPLICATION_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    self.with_secrets(row).await
                }

                async fn get_application_by_client_id(
                    &self,
                    client_id: &str,
                ) -> StoreResult<Option<Application>> {
                    let row: Option<ApplicationRow> =
                        ::sqlx::query_as(sql::APPLICATION_BY_CLIENT_ID)
                            .bind(client_id)
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(internal)?;
                    self.with_secrets(row).await
                }

                async fn list_applications(
                    &self,
                    page: &PageRequest,
                ) -> StoreResult<Vec<Application>> {
                    let rows: Vec<ApplicationRow> =
                        self.fetch_listing(sql::list_applications(page)).await?;
                    if rows.is_empty() {
                        return Ok(Vec::new());
                    }
                    let text = sql::secrets_of_applications(rows.len());
                    let mut query = ::sqlx::query_as::<$db, SecretRow>(&text);
                    for row in &rows {
                        query = query.bind(row.id.as_str());
                    }
                    let secret_rows = query.fetch_all(&self.pool).await.map_err(internal)?;
                    let mut by_app: HashMap<String, Vec<ClientSecret>> = HashMap::new();
                    for secret in secret_rows.into_iter().map(ClientSecret::from) {
                        by_app
                            .entry(secret.application_id.clone())
                            .or_default()
                            .push(secret);
                    }
                    rows.into_iter()
                        .map(|row| {
                            let mut secrets = by_app.remove(&row.id).unwrap_or_default();
                            sort_secrets_newest_first(&mut secrets);
                            row.into_model(secrets)
                        })
                        .collect()
                }

                async fn update_application(&self, app: &Application) -> StoreResult<()> {
                    let done = ::sqlx::query(sql::UPDATE_APPLICATION)
                        .bind(&app.id)
                        .bind(&app.name)
                        .bind(&app.description)
                        .bind(Json(&app.redirect_uris))
                        .bind(Json(&app.post_logout_redirect_uris))
                        .bind(Json(&app.grant_types))
                        .bind(grants_json(&app.grants))
                        .bind(app.first_party)
                        .bind(app.partner)
                        .bind(&app.account_id)
                        .bind(app.access_token_ttl_secs)
                        .bind(utc(app.updated_at))
                        .bind(&app.claim_uri)
                        .execute(&self.writer)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("account")))?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("application"));
                    }
                    Ok(())
                }

                async fn delete_application(&self, id: &str) -> StoreResult<()> {
                    // Secrets cascade; users.application_id is set to NULL.
                    let done = ::sqlx::query(sql::DELETE_APPLICATION)
                        .bind(id)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("application"));
                    }
                    Ok(())
                }

                async fn add_client_secret(
                    &self,
                    secret: &ClientSecret,
                    expire_others_at: Option<OffsetDateTime>,
                ) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let locked: Option<(String,)> = ::sqlx::query_as(LOCK_APPLICATION)
                        .bind(&secret.application_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(internal)?;
                    if locked.is_none() {
                        return Err(StoreError::NotFound("application"));
                    }
                    Self::insert_secret(&mut tx, &secret.application_id, secret).await?;
                    if let Some(at) = expire_others_at.map(utc) {
                        let others: Vec<(String, Option<OffsetDateTime>)> =
                            ::sqlx::query_as(sql::OTHER_SECRETS_EXPIRY)
                                .bind(&secret.application_id)
                                .bind(&secret.id)
                                .fetch_all(&mut *tx)
                                .await
                                .map_err(internal)?;
                        // Only ever bring an expiry forward.
                        for (id, expires_at) in others {
                            if expires_at.is_none_or(|current| current > at) {
                                ::sqlx::query(sql::SET_SECRET_EXPIRY)
                                    .bind(&id)
                                    .bind(at)
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(internal)?;
                            }
                        }
                    }
                    tx.commit().await.map_err(internal)
                }

                async fn delete_client_secret(
                    &self,
                    application_id: &str,
                    secret_id: &str,
                ) -> StoreResult<()> {
                    let done = ::sqlx::query(sql::DELETE_SECRET)
                        .bind(application_id)
                        .bind(secret_id)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("secret"));
                    }
                    Ok(())
                }
            }

            // ---- API resources ------------------------------------------------------------

            #[async_trait]
            impl ResourceStore for $store {
                async fn create_resource(&self, resource: &ApiResource) -> StoreResult<()> {
                    ::sqlx::query(sql::INSERT_RESOURCE)
                        .bind(&resource.id)
                        .bind(&resource.identifier)
                        .bind(&resource.name)
                        .bind(scopes_json(&resource.scopes))
                        .bind(resource.access_token_ttl_secs)
                        .bind(resource.management)
                        .bind(utc(resource.created_at))
                        .bind(utc(resource.updated_at))
                        .execute(&self.writer)
                        .await
                        .map_err(conflict_or_internal)?;
                    Ok(())
                }

                async fn get_resource(&self, id: &str) -> StoreResult<Option<ApiResource>> {
                    let row: Option<ResourceRow> = ::sqlx::query_as(sql::RESOURCE_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    Ok(row.map(Into::into))
                }

                async fn get_resource_by_identifier(
                    &self,
                    identifier: &str,
                ) -> StoreResult<Option<ApiResource>> {
                    let row: Option<ResourceRow> = ::sqlx::query_as(sql::RESOURCE_BY_IDENTIFIER)
                        .bind(identifier)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    Ok(row.map(Into::into))
                }

                async fn list_resources(
                    &self,
                    page: &PageRequest,
                ) -> StoreResult<Vec<ApiResource>> {
                    let rows: Vec<ResourceRow> =
                        self.fetch_listing(sql::list_resources(page)).await?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn update_resource(&self, resource: &ApiResource) -> StoreResult<()> {
                    let done = ::sqlx::query(sql::UPDATE_RESOURCE)
                        .bind(&resource.id)
                        .bind(&resource.name)
                        .bind(scopes_json(&resource.scopes))
                        .bind(resource.access_token_ttl_secs)
                        .bind(utc(resource.updated_at))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("resource"));
                    }
                    Ok(())
                }

                async fn delete_resource(&self, id: &str) -> StoreResult<()> {
                    let done = ::sqlx::query(sql::DELETE_RESOURCE)
                        .bind(id)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("resource"));
                    }
                    Ok(())
                }
            }

            // ---- signing keys -------------------------------------------------------------

            #[async_trait]
            impl SigningKeyStore for $store {
                async fn rotate_signing_key(
                    &self,
                    key: &SigningKey,
                    retire_others_at: OffsetDateTime,
                ) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    Self::lock_signing_keys(&mut tx).await?;
                    ::sqlx::query(sql::RETIRE_CURRENT_SIGNING_KEYS)
                        .bind(utc(retire_others_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    Self::insert_signing_key(&mut tx, key).await?;
                    tx.commit().await.map_err(internal)
                }

                async fn insert_first_signing_key(&self, key: &SigningKey) -> StoreResult<bool> {
                    let mut tx = self.begin_write().await?;
                    Self::lock_signing_keys(&mut tx).await?;
                    let count: i64 = ::sqlx::query_scalar(sql::COUNT_SIGNING_KEYS)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(internal)?;
                    if count > 0 {
                        return Ok(false);
                    }
                    Self::insert_signing_key(&mut tx, key).await?;
                    tx.commit().await.map_err(internal)?;
                    Ok(true)
                }

                async fn published_signing_keys(
                    &self,
                    now: OffsetDateTime,
                ) -> StoreResult<Vec<SigningKey>> {
                    let mut keys = self.all_signing_keys().await?;
                    keys.retain(|key| key.retires_at.is_none_or(|at| at > now));
                    Ok(keys)
                }

                async fn all_signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
                    let rows: Vec<SigningKeyRow> = ::sqlx::query_as(sql::SELECT_SIGNING_KEYS)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(internal)?;
                    let mut keys: Vec<SigningKey> = rows.into_iter().map(Into::into).collect();
                    sort_keys_oldest_first(&mut keys);
                    Ok(keys)
                }

                async fn purge_retired_signing_keys(
                    &self,
                    before: OffsetDateTime,
                ) -> StoreResult<u64> {
                    let mut tx = self.begin_write().await?;
                    Self::lock_signing_keys(&mut tx).await?;
                    let retired: Vec<(String, Option<OffsetDateTime>)> =
                        ::sqlx::query_as(sql::SIGNING_KEY_RETIREMENTS)
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(internal)?;
                    let mut purged = 0;
                    for (id, retires_at) in retired {
                        if retires_at.is_some_and(|at| at < before) {
                            purged += ::sqlx::query(sql::DELETE_SIGNING_KEY)
                                .bind(&id)
                                .execute(&mut *tx)
                                .await
                                .map_err(internal)?
                                .rows_affected();
                        }
                    }
                    tx.commit().await.map_err(internal)?;
                    Ok(purged)
                }
            }

            // ---- audit --------------------------------------------------------------------

            #[async_trait]
            impl AuditStore for $store {
                async fn append_audit_event(&self, event: &AuditEvent) -> StoreResult<()> {
                    ::sqlx::query(sql::INSERT_AUDIT_EVENT)
                        .bind(&event.id)
                        .bind(utc(event.occurred_at))
                        .bind(&event.actor_type)
                        .bind(&event.actor_id)
                        .bind(&event.action)
                        .bind(&event.target_type)
                        .bind(&event.target_id)
                        .bind(event.outcome.as_str())
                        .bind(&event.reason)
                        .bind(&event.request_id)
                        .bind(Json(&event.details))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }

                async fn list_audit_events(
                    &self,
                    filter: &AuditFilter,
                    page: &PageRequest,
                ) -> StoreResult<Vec<AuditEvent>> {
                    let rows: Vec<AuditRow> = self
                        .fetch_listing(sql::list_audit_events(filter, page))
                        .await?;
                    convert_all(rows)
                }
            }

            // ---- sessions and interactions ------------------------------------------------

            #[async_trait]
            impl SessionStore for $store {
                async fn create_session(&self, session: &Session) -> StoreResult<()> {
                    ::sqlx::query(sql::INSERT_SESSION)
                        .bind(&session.id)
                        .bind(&session.handle_digest)
                        .bind(&session.user_id)
                        .bind(utc(session.auth_time))
                        .bind(utc(session.created_at))
                        .bind(utc(session.last_seen_at))
                        .bind(utc(session.expires_at))
                        .execute(&self.writer)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("user")))?;
                    Ok(())
                }

                async fn find_session(
                    &self,
                    handle_digest: &[u8],
                    now: OffsetDateTime,
                ) -> StoreResult<Option<Session>> {
                    let row: Option<SessionRow> = ::sqlx::query_as(sql::SESSION_BY_HANDLE)
                        .bind(handle_digest)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    Ok(row
                        .map(Session::from)
                        .filter(|session| session.expires_at > now))
                }

                async fn touch_session(&self, id: &str, now: OffsetDateTime) -> StoreResult<()> {
                    ::sqlx::query(sql::TOUCH_SESSION)
                        .bind(id)
                        .bind(utc(now))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }

                async fn delete_session(&self, id: &str) -> StoreResult<()> {
                    ::sqlx::query(sql::DELETE_SESSION)
                        .bind(id)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }

                async fn delete_user_sessions(&self, user_id: &str) -> StoreResult<u64> {
                    let done = ::sqlx::query(sql::DELETE_USER_SESSIONS)
                        .bind(user_id)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(done.rows_affected())
                }

                async fn create_interaction(&self, interaction: &Interaction) -> StoreResult<()> {
                    ::sqlx::query(sql::INSERT_INTERACTION)
                        .bind(&interaction.id)
                        .bind(&interaction.client_id)
                        .bind(Json(&interaction.request))
                        .bind(Json(&interaction.state))
                        .bind(utc(interaction.created_at))
                        .bind(utc(interaction.expires_at))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }

                async fn get_interaction(
                    &self,
                    id: &str,
                    now: OffsetDateTime,
                ) -> StoreResult<Option<Interaction>> {
                    let row: Option<InteractionRow> = ::sqlx::query_as(sql::INTERACTION_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    Ok(row
                        .map(Interaction::from)
                        .filter(|interaction| interaction.expires_at > now))
                }

                async fn update_interaction_state(
                    &self,
                    id: &str,
                    state: &::serde_json::Value,
                ) -> StoreResult<()> {
                    let done = ::sqlx::query(sql::UPDATE_INTERACTION_STATE)
                        .bind(id)
                        .bind(Json(state))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("interaction"));
                    }
                    Ok(())
                }

                async fn delete_interaction(&self, id: &str) -> StoreResult<()> {
                    ::sqlx::query(sql::DELETE_INTERACTION)
                        .bind(id)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }

                async fn purge_expired_sessions(&self, now: OffsetDateTime) -> StoreResult<u64> {
                    // Expiry times never change, so rows found expired here can be deleted
                    // by id without holding a transaction open.
                    let mut purged = 0;
                    for (select, table) in [
                        (sql::SESSION_EXPIRIES, "sessions"),
                        (sql::INTERACTION_EXPIRIES, "interactions"),
                    ] {
                        let rows: Vec<(String, OffsetDateTime)> = ::sqlx::query_as(select)
                            .fetch_all(&self.pool)
                            .await
                            .map_err(internal)?;
                        let expired: Vec<String> = rows
                            .into_iter()
                            .filter(|(_, expires_at)| *expires_at <= now)
                            .map(|(id, _)| id)
                            .collect();
                        purged += self.delete_in_batches(table, "id", expired).await?;
                    }
                    Ok(purged)
                }
            }

            // ---- grants, codes and refresh tokens -----------------------------------------

            #[async_trait]
            impl GrantStore for $store {
                async fn create_grant_with_code(
                    &self,
                    grant: &Grant,
                    code: &AuthorizationCode,
                ) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    ::sqlx::query(sql::INSERT_GRANT)
                        .bind(&grant.id)
                        .bind(&grant.user_id)
                        .bind(&grant.client_id)
                        .bind(Json(&grant.scopes))
                        .bind(&grant.resource)
                        .bind(&grant.account_id)
                        .bind(grant.role.map(Role::as_str))
                        .bind(&grant.session_id)
                        .bind(utc(grant.auth_time))
                        .bind(utc(grant.created_at))
                        .bind(utc(grant.expires_at))
                        .bind(grant.revoked_at.map(utc))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("user")))?;
                    // The code belongs to this grant whatever its `grant_id` says.
                    ::sqlx::query(sql::INSERT_CODE)
                        .bind(&code.digest)
                        .bind(&grant.id)
                        .bind(&code.redirect_uri)
                        .bind(&code.code_challenge)
                        .bind(&code.nonce)
                        .bind(utc(code.created_at))
                        .bind(utc(code.expires_at))
                        .bind(code.redeemed_at.map(utc))
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    tx.commit()
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("user")))
                }

                async fn get_grant(&self, id: &str) -> StoreResult<Option<Grant>> {
                    let row: Option<GrantRow> = ::sqlx::query_as(sql::GRANT_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    row.map(Grant::try_from).transpose()
                }

                async fn redeem_code(
                    &self,
                    digest: &[u8],
                    now: OffsetDateTime,
                ) -> StoreResult<CodeRedemption> {
                    let mut tx = self.begin_write().await?;
                    let Some(grant) =
                        Self::lock_grant_of(&mut tx, sql::CODE_GRANT_ID, digest).await?
                    else {
                        return Ok(CodeRedemption::Invalid);
                    };
                    let row: Option<CodeRow> = ::sqlx::query_as(LOCK_CODE)
                        .bind(digest)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(internal)?;
                    let Some(code) = row.map(AuthorizationCode::from) else {
                        return Ok(CodeRedemption::Invalid);
                    };
                    if code.expires_at <= now || !grant.is_active(now) {
                        return Ok(CodeRedemption::Invalid);
                    }
                    if code.redeemed_at.is_some() {
                        Self::revoke_in(&mut tx, &grant.id, now).await?;
                        tx.commit().await.map_err(internal)?;
                        return Ok(CodeRedemption::Replayed { grant_id: grant.id });
                    }
                    ::sqlx::query(sql::REDEEM_CODE)
                        .bind(digest)
                        .bind(utc(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    // Read back what was stored (PostgreSQL keeps microseconds only).
                    let redeemed: CodeRow = ::sqlx::query_as(sql::CODE_BY_DIGEST)
                        .bind(digest)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(internal)?;
                    tx.commit().await.map_err(internal)?;
                    Ok(CodeRedemption::Redeemed {
                        code: redeemed.into(),
                        grant: Box::new(grant),
                    })
                }

                async fn add_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
                    // Capped like a rotated token. A grant's expiry never changes, so it
                    // needs no lock; the foreign key catches a grant deleted meanwhile.
                    let mut tx = self.begin_write().await?;
                    let grant_expires_at: Option<OffsetDateTime> =
                        ::sqlx::query_scalar(sql::GRANT_EXPIRY)
                            .bind(&token.grant_id)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(internal)?;
                    let grant_expires_at = grant_expires_at.ok_or(StoreError::NotFound("grant"))?;
                    Self::insert_refresh_token(
                        &mut tx,
                        token,
                        &token.grant_id,
                        token.expires_at.min(grant_expires_at),
                    )
                    .await?;
                    tx.commit()
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("grant")))
                }

                async fn rotate_refresh_token(
                    &self,
                    presented_digest: &[u8],
                    new: &RefreshToken,
                    now: OffsetDateTime,
                ) -> StoreResult<RefreshRotation> {
                    let mut tx = self.begin_write().await?;
                    let Some(grant) =
                        Self::lock_grant_of(&mut tx, sql::REFRESH_TOKEN_GRANT_ID, presented_digest)
                            .await?
                    else {
                        return Ok(RefreshRotation::Invalid);
                    };
                    let row: Option<RefreshTokenRow> = ::sqlx::query_as(LOCK_REFRESH_TOKEN)
                        .bind(presented_digest)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(internal)?;
                    let Some(presented) = row.map(RefreshToken::from) else {
                        return Ok(RefreshRotation::Invalid);
                    };
                    if presented.used_at.is_some() {
                        Self::revoke_in(&mut tx, &grant.id, now).await?;
                        tx.commit().await.map_err(internal)?;
                        return Ok(RefreshRotation::Replayed { grant_id: grant.id });
                    }
                    if presented.expires_at <= now || !grant.is_active(now) {
                        return Ok(RefreshRotation::Invalid);
                    }
                    ::sqlx::query(sql::USE_REFRESH_TOKEN)
                        .bind(presented_digest)
                        .bind(utc(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    Self::insert_refresh_token(
                        &mut tx,
                        new,
                        &grant.id,
                        new.expires_at.min(grant.expires_at),
                    )
                    .await?;
                    tx.commit().await.map_err(internal)?;
                    Ok(RefreshRotation::Rotated(Box::new(grant)))
                }

                async fn find_refresh_token(
                    &self,
                    digest: &[u8],
                ) -> StoreResult<Option<(RefreshToken, Grant)>> {
                    let row: Option<RefreshTokenRow> =
                        ::sqlx::query_as(sql::REFRESH_TOKEN_BY_DIGEST)
                            .bind(digest)
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(internal)?;
                    let Some(token) = row.map(RefreshToken::from) else {
                        return Ok(None);
                    };
                    // None if the grant (and with it the token) went in between.
                    Ok(self
                        .get_grant(&token.grant_id)
                        .await?
                        .map(|grant| (token, grant)))
                }

                async fn revoke_grant(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
                    let done = ::sqlx::query(sql::REVOKE_GRANT)
                        .bind(id)
                        .bind(utc(now))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    if done.rows_affected() > 0 {
                        return Ok(true);
                    }
                    // Revoked already, or missing.
                    self.exists(sql::GRANT_EXISTS, id).await
                }

                async fn revoke_session_grants(
                    &self,
                    session_id: &str,
                    now: OffsetDateTime,
                ) -> StoreResult<u64> {
                    // Only ever from unrevoked to revoked, and expiry never changes: each
                    // grant is revoked by its own statement, counted only when this call
                    // revoked it.
                    let unrevoked: Vec<(String, OffsetDateTime)> =
                        ::sqlx::query_as(sql::UNREVOKED_SESSION_GRANTS)
                            .bind(session_id)
                            .fetch_all(&self.pool)
                            .await
                            .map_err(internal)?;
                    let mut revoked = 0;
                    for (id, expires_at) in unrevoked {
                        if expires_at > now {
                            revoked += ::sqlx::query(sql::REVOKE_GRANT)
                                .bind(&id)
                                .bind(utc(now))
                                .execute(&self.writer)
                                .await
                                .map_err(internal)?
                                .rows_affected();
                        }
                    }
                    Ok(revoked)
                }
            }

            // ---- consents -----------------------------------------------------------------

            #[async_trait]
            impl ConsentStore for $store {
                async fn get_consent(
                    &self,
                    user_id: &str,
                    client_id: &str,
                    resource: &str,
                ) -> StoreResult<Option<Consent>> {
                    let row: Option<ConsentRow> = ::sqlx::query_as(sql::CONSENT_BY_KEY)
                        .bind(user_id)
                        .bind(client_id)
                        .bind(resource)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(internal)?;
                    Ok(row.map(Into::into))
                }

                async fn save_consent(&self, consent: &Consent) -> StoreResult<()> {
                    ::sqlx::query(sql::UPSERT_CONSENT)
                        .bind(&consent.user_id)
                        .bind(&consent.client_id)
                        .bind(&consent.resource)
                        .bind(Json(&consent.scopes))
                        .bind(utc(consent.updated_at))
                        .execute(&self.writer)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("user")))?;
                    Ok(())
                }
            }

            // ---- sign-in throttling -------------------------------------------------------

            #[async_trait]
            impl ThrottleStore for $store {
                async fn record_failure(&self, key: &str, now: OffsetDateTime) -> StoreResult<()> {
                    ::sqlx::query(sql::INSERT_FAILURE)
                        .bind(key)
                        .bind(utc(now))
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }

                async fn count_failures(
                    &self,
                    key: &str,
                    since: OffsetDateTime,
                ) -> StoreResult<u32> {
                    let times: Vec<OffsetDateTime> = ::sqlx::query_scalar(sql::FAILURE_TIMES)
                        .bind(key)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(internal)?;
                    let count = times.into_iter().filter(|at| *at >= since).count();
                    Ok(u32::try_from(count).unwrap_or(u32::MAX))
                }

                async fn clear_failures(&self, key: &str) -> StoreResult<()> {
                    ::sqlx::query(sql::CLEAR_FAILURES)
                        .bind(key)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }

                async fn purge_failures(&self, before: OffsetDateTime) -> StoreResult<u64> {
                    let rows: Vec<(i64, OffsetDateTime)> = ::sqlx::query_as(sql::ALL_FAILURE_TIMES)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(internal)?;
                    let old: Vec<i64> = rows
                        .into_iter()
                        .filter(|(_, at)| *at < before)
                        .map(|(id, _)| id)
                        .collect();
                    self.delete_in_batches("sign_in_failures", "id", old).await
                }
            }

            // ---- the whole store ----------------------------------------------------------

            #[async_trait]
            impl Store for $store {
                async fn ping(&self) -> StoreResult<()> {
                    ::sqlx::query(sql::PING)
                        .execute(&self.writer)
                        .await
                        .map_err(internal)?;
                    Ok(())
                }

                async fn migrate(&self) -> StoreResult<()> {
                    let attempts: u32 = $migrate_attempts;
                    let mut attempt = 1;
                    loop {
                        match $migrator.run(&self.writer).await {
                            Ok(()) => return Ok(()),
                            Err(e) if attempt < attempts => {
                                ::tracing::debug!(
                                    error = %e,
                                    attempt,
                                    "migration failed, retrying (another node may be migrating)"
                                );
                                attempt += 1;
                            }
                            Err(e) => {
                                return Err(StoreError::Internal(format!("migration failed: {e}")))
                            }
                        }
                    }
                }

                fn backend(&self) -> &'static str {
                    $backend
                }
            }
        };
    };
}

pub(crate) use impl_store;

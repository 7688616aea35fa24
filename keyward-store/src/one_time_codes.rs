//! `OneTimeCodeStore` for both backends (emailed sign-in codes). Expanded by `sqlite.rs`
//! and `postgres.rs` next to `impl_store!`, whose `begin_write` it uses.
//!
//! One row per (user, purpose): issuing is one upsert that resets digest, expiry, attempts
//! and `consumed_at`, so a new code invalidates the earlier one by construction. Redeeming
//! locks the row in a write transaction and either spends it or counts the attempt, so of
//! two concurrent redemptions at most one succeeds and no wrong attempt goes uncounted.
//! Timestamps are compared in Rust (see `store_impl.rs`).

pub(crate) const UPSERT_ONE_TIME_CODE: &str = "INSERT INTO one_time_codes \
     (id, user_id, purpose, digest, attempts, created_at, expires_at, consumed_at) \
     VALUES ($1, $2, $3, $4, 0, $5, $6, NULL) \
     ON CONFLICT (user_id, purpose) DO UPDATE SET id = excluded.id, digest = excluded.digest, \
     attempts = 0, created_at = excluded.created_at, expires_at = excluded.expires_at, \
     consumed_at = NULL";
pub(crate) const COUNT_ONE_TIME_CODE_ATTEMPT: &str =
    "UPDATE one_time_codes SET attempts = attempts + 1 WHERE id = $1";
pub(crate) const CONSUME_ONE_TIME_CODE: &str =
    "UPDATE one_time_codes SET consumed_at = $2 WHERE id = $1 AND consumed_at IS NULL";

macro_rules! impl_one_time_code_store {
    (store: $store:ident, for_update: $for_update:literal $(,)?) => {
        const _: () = {
            use ::async_trait::async_trait;
            use ::keyward_core::model::OneTimeCode;
            use ::keyward_core::store::{OneTimeCodeRedemption, OneTimeCodeStore, StoreResult};
            use ::keyward_core::StoreError;
            use ::time::OffsetDateTime;
            use $crate::error::{internal, write_error};
            use $crate::one_time_codes::{
                CONSUME_ONE_TIME_CODE, COUNT_ONE_TIME_CODE_ATTEMPT, UPSERT_ONE_TIME_CODE,
            };
            use $crate::rows::utc;

            /// The live row of (user, purpose), locked for the rest of the transaction
            /// (on SQLite `BEGIN IMMEDIATE` already serialises writers).
            const LOCK_ONE_TIME_CODE: &str = concat!(
                "SELECT id, digest, attempts, expires_at, consumed_at FROM one_time_codes \
                 WHERE user_id = $1 AND purpose = $2",
                $for_update
            );

            type CodeState = (String, Vec<u8>, i32, OffsetDateTime, Option<OffsetDateTime>);

            #[async_trait]
            impl OneTimeCodeStore for $store {
                async fn issue_one_time_code(&self, code: &OneTimeCode) -> StoreResult<()> {
                    ::sqlx::query(UPSERT_ONE_TIME_CODE)
                        .bind(&code.id)
                        .bind(&code.user_id)
                        .bind(&code.purpose)
                        .bind(&code.digest)
                        .bind(utc(code.created_at))
                        .bind(utc(code.expires_at))
                        .execute(&self.writer)
                        .await
                        .map_err(|e| write_error(e, StoreError::NotFound("user")))?;
                    Ok(())
                }

                async fn redeem_one_time_code(
                    &self,
                    user_id: &str,
                    purpose: &str,
                    digest: &[u8],
                    max_attempts: u32,
                    now: OffsetDateTime,
                ) -> StoreResult<OneTimeCodeRedemption> {
                    let mut tx = self.begin_write().await?;
                    let row: Option<CodeState> = ::sqlx::query_as(LOCK_ONE_TIME_CODE)
                        .bind(user_id)
                        .bind(purpose)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(internal)?;
                    let Some((id, stored, attempts, expires_at, consumed_at)) = row else {
                        return Ok(OneTimeCodeRedemption::NoCode);
                    };
                    let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
                    if consumed_at.is_some() {
                        return Ok(OneTimeCodeRedemption::NoCode);
                    }
                    if attempts >= max_attempts {
                        return Ok(OneTimeCodeRedemption::Locked);
                    }
                    if utc(expires_at) <= now {
                        return Ok(OneTimeCodeRedemption::Expired);
                    }
                    if ::keyward_core::secret::digests_equal(&stored, digest) {
                        let done = ::sqlx::query(CONSUME_ONE_TIME_CODE)
                            .bind(&id)
                            .bind(utc(now))
                            .execute(&mut *tx)
                            .await
                            .map_err(internal)?;
                        tx.commit().await.map_err(internal)?;
                        return Ok(if done.rows_affected() == 1 {
                            OneTimeCodeRedemption::Redeemed
                        } else {
                            OneTimeCodeRedemption::NoCode
                        });
                    }
                    ::sqlx::query(COUNT_ONE_TIME_CODE_ATTEMPT)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await
                        .map_err(internal)?;
                    tx.commit().await.map_err(internal)?;
                    Ok(OneTimeCodeRedemption::Wrong {
                        attempts_left: max_attempts.saturating_sub(attempts + 1),
                    })
                }
            }
        };
    };
}

pub(crate) use impl_one_time_code_store;

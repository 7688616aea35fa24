//! `DataKeyStore` for both backends: the token vault's data-encryption keys, each sealed
//! under the master key. Expanded by `sqlite.rs` and `postgres.rs`.

macro_rules! impl_data_key_store {
    (store: $store:ident $(,)?) => {
        const _: () = {
            use ::async_trait::async_trait;
            use ::keyward_core::model::DataKey;
            use ::keyward_core::store::{DataKeyStore, StoreResult};
            use ::keyward_core::StoreError;
            use ::time::OffsetDateTime;
            use $crate::error::internal;
            use $crate::rows::utc;

            type DataKeyRow = (String, Vec<u8>, OffsetDateTime, Option<OffsetDateTime>);

            #[async_trait]
            impl DataKeyStore for $store {
                async fn insert_data_key(&self, key: &DataKey) -> StoreResult<()> {
                    ::sqlx::query(
                        "INSERT INTO data_keys (id, sealed_key, created_at, retired_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&key.id)
                    .bind(&key.sealed_key)
                    .bind(utc(key.created_at))
                    .bind(key.retired_at.map(utc))
                    .execute(&self.writer)
                    .await
                    .map_err(|e| {
                        let unique = e.as_database_error().is_some_and(|db| {
                            db.kind() == ::sqlx::error::ErrorKind::UniqueViolation
                        });
                        if unique {
                            StoreError::Conflict("data_key_exists")
                        } else {
                            internal(e)
                        }
                    })?;
                    Ok(())
                }

                async fn list_data_keys(&self) -> StoreResult<Vec<DataKey>> {
                    let rows: Vec<DataKeyRow> = ::sqlx::query_as(
                        "SELECT id, sealed_key, created_at, retired_at FROM data_keys \
                         ORDER BY created_at, id",
                    )
                    .fetch_all(&self.pool)
                    .await
                    .map_err(internal)?;
                    Ok(rows
                        .into_iter()
                        .map(|(id, sealed_key, created_at, retired_at)| DataKey {
                            id,
                            sealed_key,
                            created_at: utc(created_at),
                            retired_at: retired_at.map(utc),
                        })
                        .collect())
                }

                async fn retire_data_keys_except(
                    &self,
                    keep: &str,
                    now: OffsetDateTime,
                ) -> StoreResult<u64> {
                    let done = ::sqlx::query(
                        "UPDATE data_keys SET retired_at = $2 WHERE id <> $1 AND retired_at IS NULL",
                    )
                    .bind(keep)
                    .bind(utc(now))
                    .execute(&self.writer)
                    .await
                    .map_err(internal)?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}

pub(crate) use impl_data_key_store;

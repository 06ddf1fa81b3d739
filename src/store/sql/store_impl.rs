//! The one implementation of `KeyStore` and `ManageKeys` over SQL, instantiated per
//! database by `postgres.rs` and `sqlite.rs`.

/// `KeyStore` and `ManageKeys` for one database, written once: each database module
/// defines `begin_for_owner` (a transaction serialised per owner) and `announce` (tell
/// other instances a key changed, inside the transaction) and invokes this.
macro_rules! impl_sql_store {
    ($db:ty, $backend:literal) => {
        impl<S: $crate::scope::Scope> $crate::store::SqlKeyStore<S, $db> {
            /// Applies the shipped migrations: idempotent, and safe when several instances
            /// start together on a fresh database (PostgreSQL: under an advisory lock, as
            /// `CREATE TABLE IF NOT EXISTS` is not safe concurrently; SQLite: in one
            /// `BEGIN IMMEDIATE` transaction).
            ///
            /// # Errors
            /// [`StoreError`](crate::store::StoreError) when the database refuses.
            pub async fn migrate(&self) -> Result<(), $crate::store::StoreError> {
                let mut tx = begin_migration(&self.pool).await.map_err(super::store_error)?;
                let migration = self.queries.migration::<$db>();
                for statement in super::statements(&migration) {
                    sqlx::raw_sql(&statement)
                        .execute(&mut *tx)
                        .await
                        .map_err(super::store_error)?;
                }
                for (column, statement) in <$db as super::SqlDatabase>::UPGRADES {
                    if !has_column(&mut tx, &self.queries, column).await.map_err(super::store_error)? {
                        let statement = self.queries.for_table(statement);
                        sqlx::raw_sql(&statement)
                            .execute(&mut *tx)
                            .await
                            .map_err(super::store_error)?;
                    }
                }
                tx.commit().await.map_err(super::store_error)
            }

            async fn select(
                &self,
                statement: &str,
                value: &[u8],
                text: Option<&str>,
                listing: bool,
            ) -> Result<Vec<std::sync::Arc<$crate::store::KeyRecord<S>>>, $crate::store::StoreError> {
                let query = sqlx::query_as::<$db, super::row::Row>(statement);
                let query = match text {
                    Some(text) => query.bind(text.to_owned()),
                    None => query.bind(value.to_vec()),
                };
                let rows = query.fetch_all(&self.pool).await.map_err(super::store_error)?;
                let families = self.policy.accepted_families();
                let mut records = Vec::with_capacity(rows.len());
                for row in rows {
                    // A row of a family this store does not accept (a session in a shared
                    // table) is not one of its records: absent, never an error.
                    if families.find(&row.prefix).is_none() {
                        continue;
                    }
                    match row.record(families) {
                        Ok(record) => records.push(std::sync::Arc::new(record)),
                        // One unreadable row does not take an owner's listing down; a
                        // lookup of that very row still fails closed.
                        Err(error) if listing => {
                            #[cfg(feature = "tracing")]
                            tracing::warn!(target: "tower_api_key", error = %error, "unreadable key row left out of a listing");
                            let _ = error;
                        }
                        Err(error) => return Err(error),
                    }
                }
                Ok(records)
            }

            /// Runs one `UPDATE`/`DELETE` of key `id` with `announce`, in a transaction.
            async fn change<'q>(
                &'q self,
                statement: &'q str,
                id: &$crate::store::KeyId,
                bind: impl FnOnce(
                    sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
                ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            ) -> Result<u64, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await.map_err(super::store_error)?;
                let query = bind(sqlx::query(statement).bind(id.as_str().to_owned()));
                let changed = query.execute(&mut *tx).await.map_err(super::store_error)?.rows_affected();
                if changed > 0 {
                    announce(&mut tx, &self.queries, id).await.map_err(super::store_error)?;
                }
                tx.commit().await.map_err(super::store_error)?;
                Ok(changed)
            }

            /// Deletes every row past the policy's retention (revoked or expired longer
            /// ago than it); answers how many. Runs by itself every 1,024th insert.
            ///
            /// # Errors
            /// [`StoreError`](crate::store::StoreError) when the database refuses.
            pub async fn sweep(&self) -> Result<u64, $crate::store::StoreError> {
                let Some(before) = self.policy.purge_before(self.policy.now()) else {
                    return Ok(0);
                };
                let deleted = sqlx::query(self.queries.purge_all.as_str())
                    .bind(super::row::millis(before))
                    .execute(&self.pool)
                    .await
                    .map_err(super::store_error)?
                    .rows_affected();
                Ok(deleted)
            }

            async fn record_of(
                &self,
                id: &$crate::store::KeyId,
            ) -> Result<std::sync::Arc<$crate::store::KeyRecord<S>>, $crate::store::ManageError> {
                use $crate::store::ManageKeys;
                self.get(id)
                    .await?
                    .ok_or_else(|| $crate::store::ManageError::NotFound(id.clone()))
            }
        }

        impl<S: $crate::scope::Scope> $crate::store::KeyStore for $crate::store::SqlKeyStore<S, $db> {
            type Scope = S;

            async fn lookup(&self, digest: &$crate::key::KeyDigest) -> $crate::store::LookupResult<S> {
                let mut found = self.select(&self.queries.by_digest, digest.as_bytes(), None, false).await?;
                Ok(found.pop())
            }

            fn hasher(&self) -> &$crate::key::KeyHasher {
                &self.hasher
            }

            fn policy(&self) -> &$crate::store::KeyPolicy {
                &self.policy
            }

            fn backend(&self) -> &'static str {
                $backend
            }

            /// `SELECT 1` on a pooled connection.
            async fn ready(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map(drop)
                    .map_err(super::store_error)
            }
        }

        impl<S: $crate::scope::Scope> $crate::store::ManageKeys for $crate::store::SqlKeyStore<S, $db> {
            async fn insert(
                &self,
                insert: $crate::store::Insert<S>,
            ) -> Result<std::sync::Arc<$crate::store::KeyRecord<S>>, $crate::store::ManageError> {
                use $crate::store::{KeyId, ManageError};
                let record = insert.record();
                let row = super::row::Row::of(record)?;
                let error = |e| ManageError::Store(super::store_error(e));
                let mut tx = begin_for_owner(&self.pool, &record.owner()).await.map_err(error)?;
                let freed = insert.frees_slot_of().map_or("", KeyId::as_str).to_owned();
                // Only this store's families count: a session row in the same table is no key.
                let prefixes: Vec<String> = sqlx::query_scalar(self.queries.count_active.as_str())
                    .bind(row.owner.clone())
                    .bind(super::row::millis(insert.now()))
                    .bind(freed)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(error)?;
                let families = self.policy.accepted_families();
                let active = prefixes.iter().filter(|p| families.find(p).is_some()).count();
                let limit = insert.max_active().get();
                if active >= limit {
                    return Err(ManageError::KeyLimitReached { limit });
                }
                if let Some((id, revocation)) = insert.replacing() {
                    let updated = sqlx::query(self.queries.revoke.as_str())
                        .bind(id.as_str().to_owned())
                        .bind(super::row::millis(revocation.at()))
                        .bind(revocation.is_immediate())
                        .execute(&mut *tx)
                        .await
                        .map_err(error)?
                        .rows_affected();
                    if updated == 0 {
                        return Err(ManageError::NotFound(id.clone()));
                    }
                    announce(&mut tx, &self.queries, id).await.map_err(error)?;
                }
                let inserted = sqlx::query(self.queries.insert.as_str())
                    .bind(row.id)
                    .bind(row.digest)
                    .bind(row.owner)
                    .bind(row.name)
                    .bind(row.prefix)
                    .bind(row.environment)
                    .bind(row.hint)
                    .bind(row.scopes)
                    .bind(row.rate_limits)
                    .bind(row.created_at)
                    .bind(row.expires_at)
                    .bind(row.revoked_at)
                    .bind(row.revoked)
                    .bind(row.disabled)
                    .bind(row.metadata)
                    .bind(row.allowed_networks)
                    .bind(row.last_used_at)
                    .bind(row.lineage)
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?
                    .rows_affected();
                if inserted == 0 {
                    return Err(ManageError::Duplicate);
                }
                tx.commit().await.map_err(error)?;
                let count = self.queries.inserts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if count % super::SWEEP_EVERY == 0 {
                    // Best effort: the key is in; a failed sweep is retried 1,024 inserts on.
                    let _ = self.sweep().await;
                }
                Ok(std::sync::Arc::new(insert.into_record()))
            }

            async fn get(
                &self,
                id: &$crate::store::KeyId,
            ) -> Result<Option<std::sync::Arc<$crate::store::KeyRecord<S>>>, $crate::store::ManageError> {
                Ok(self.select(&self.queries.by_id, &[], Some(id.as_str()), false).await?.pop())
            }

            async fn records_of(
                &self,
                owner: &str,
            ) -> Result<Vec<std::sync::Arc<$crate::store::KeyRecord<S>>>, $crate::store::ManageError> {
                Ok(self.select(&self.queries.by_owner, &[], Some(owner), true).await?)
            }

            async fn records_after(
                &self,
                after: Option<&$crate::store::KeyId>,
                limit: std::num::NonZeroUsize,
            ) -> Result<$crate::store::KeyPage<S>, $crate::store::ManageError> {
                let rows = sqlx::query_as::<$db, super::row::Row>(self.queries.page.as_str())
                    .bind(after.map_or_else(String::new, |id| id.as_str().to_owned()))
                    .bind(i64::try_from(limit.get()).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(super::store_error)?;
                let next = if rows.len() == limit.get() {
                    rows.last().and_then(|row| $crate::store::KeyId::new(row.id.clone()).ok())
                } else {
                    None
                };
                let families = self.policy.accepted_families();
                let mut records = Vec::with_capacity(rows.len());
                for row in rows {
                    // Another family's row (a session in a shared table) is not a record
                    // of this store; an unreadable one is left out, as a listing does.
                    if families.find(&row.prefix).is_some() {
                        if let Ok(record) = row.record(families) {
                            records.push(std::sync::Arc::new(record));
                        }
                    }
                }
                Ok($crate::store::KeyPage { records, next })
            }

            async fn revoke_at(
                &self,
                id: &$crate::store::KeyId,
                revocation: $crate::store::Revocation,
            ) -> Result<std::sync::Arc<$crate::store::KeyRecord<S>>, $crate::store::ManageError> {
                let at = super::row::millis(revocation.at());
                self.change(&self.queries.revoke, id, |q| q.bind(at).bind(revocation.is_immediate()))
                    .await?;
                self.record_of(id).await
            }

            async fn set_disabled(
                &self,
                id: &$crate::store::KeyId,
                disabled: bool,
            ) -> Result<std::sync::Arc<$crate::store::KeyRecord<S>>, $crate::store::ManageError> {
                self.change(&self.queries.set_disabled, id, |q| q.bind(disabled)).await?;
                self.record_of(id).await
            }

            async fn replace(
                &self,
                record: $crate::store::KeyRecord<S>,
                expected: u64,
            ) -> Result<std::sync::Arc<$crate::store::KeyRecord<S>>, $crate::store::ManageError> {
                let row = super::row::Row::of(&record)?;
                let id = record.id();
                let version = i64::try_from(expected).unwrap_or(i64::MAX);
                let changed = self
                    .change(&self.queries.replace, id, |q| {
                        q.bind(row.name)
                            .bind(row.scopes)
                            .bind(row.expires_at)
                            .bind(row.metadata)
                            .bind(row.allowed_networks)
                            .bind(row.rate_limits)
                            .bind(version)
                    })
                    .await?;
                let current = self.record_of(id).await?;
                if changed == 0 {
                    return Err($crate::store::ManageError::VersionMismatch { id: id.clone(), expected });
                }
                Ok(current)
            }

            async fn delete(
                &self,
                id: &$crate::store::KeyId,
            ) -> Result<std::sync::Arc<$crate::store::KeyRecord<S>>, $crate::store::ManageError> {
                let record = self.record_of(id).await?;
                self.change(&self.queries.delete, id, |q| q).await?;
                Ok(record)
            }

            /// One `DELETE` of the owner's rows refused before `before`; nothing to
            /// announce (they were refused already).
            async fn purge(
                &self,
                owner: &str,
                before: std::time::SystemTime,
            ) -> Result<usize, $crate::store::ManageError> {
                let deleted = sqlx::query(self.queries.purge_owner.as_str())
                    .bind(owner.to_owned())
                    .bind(super::row::millis(before))
                    .execute(&self.pool)
                    .await
                    .map_err(super::store_error)?
                    .rows_affected();
                Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
            }

            async fn touch(
                &self,
                id: &$crate::store::KeyId,
                at: std::time::SystemTime,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(self.queries.touch.as_str())
                    .bind(id.as_str().to_owned())
                    .bind(super::row::millis(at))
                    .execute(&self.pool)
                    .await
                    .map_err(super::store_error)?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_sql_store;

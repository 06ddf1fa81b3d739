//! [`SqlKeyStore`]: keys in PostgreSQL or SQLite through `sqlx`.

#[cfg(feature = "postgres")]
mod listener;
#[cfg(feature = "postgres")]
mod postgres;
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

#[cfg(feature = "postgres")]
pub use listener::PgRevocationListener;

use crate::key::KeyHasher;
use crate::scope::Scope;
use crate::store::{KeyPolicy, StoreError, StoreErrorKind};

/// A database `SqlKeyStore` runs on: PostgreSQL or SQLite. Sealed.
pub trait SqlDatabase: sqlx::Database + private::Sealed {
    /// The shipped migration, for the default table name `api_keys`.
    const MIGRATION: &'static str;
    /// The columns added after it: each column's name and the statement that adds it
    /// (applied when the column is missing).
    const UPGRADES: &'static [(&'static str, &'static str)];
    /// `min` of two values in this dialect.
    const LEAST: &'static str;
}

mod private {
    pub trait Sealed {}
}

/// A table name that is not `[A-Za-z_][A-Za-z0-9_]*`, optionally after `schema.`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid table name: use [A-Za-z_][A-Za-z0-9_]*, optionally `schema.table`")]
pub struct InvalidTableName(String);

fn identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 63
}

/// The statements of one table, written once at construction.
#[derive(Debug)]
pub(crate) struct Queries {
    pub(crate) schema: Option<String>,
    pub(crate) table: String,
    pub(crate) bare: String,
    pub(crate) by_digest: String,
    pub(crate) by_id: String,
    pub(crate) by_owner: String,
    pub(crate) count_active: String,
    pub(crate) insert: String,
    pub(crate) revoke: String,
    pub(crate) set_disabled: String,
    pub(crate) delete: String,
    pub(crate) touch: String,
    pub(crate) purge_owner: String,
    pub(crate) purge_all: String,
    /// Inserts through this table's stores so far: every [`SWEEP_EVERY`]th also sweeps the
    /// whole table.
    pub(crate) inserts: std::sync::atomic::AtomicU64,
}

/// How often (in inserts) a store deletes every record past retention, not only the
/// inserting owner's: the sweep for owners who never come back, on the store's own
/// schedule, with no task to spawn.
pub(crate) const SWEEP_EVERY: u64 = 1024;

const COLUMNS: &str = "id, digest, owner, name, prefix, environment, hint, scopes, rate_limits, created_at, expires_at, revoked_at, revoked, disabled, metadata, allowed_networks, last_used_at, lineage";

impl Queries {
    fn new<DB: SqlDatabase>(schema: Option<&str>, bare: &str) -> Self {
        let table = match schema {
            Some(schema) => format!("{schema}.{bare}"),
            None => bare.to_owned(),
        };
        let least = DB::LEAST;
        Self {
            by_digest: format!("SELECT {COLUMNS} FROM {table} WHERE digest = $1"),
            by_id: format!("SELECT {COLUMNS} FROM {table} WHERE id = $1"),
            by_owner: format!("SELECT {COLUMNS} FROM {table} WHERE owner = $1"),
            count_active: format!(
                "SELECT prefix FROM {table} WHERE owner = $1 AND id <> $3 AND NOT revoked
                   AND (revoked_at IS NULL OR revoked_at > $2)
                   AND (expires_at IS NULL OR expires_at > $2)"
            ),
            insert: format!(
                "INSERT INTO {table} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT DO NOTHING"
            ),
            // The earlier time wins; an immediate revocation sets `revoked`.
            revoke: format!(
                "UPDATE {table} SET revoked_at = {least}(coalesce(revoked_at, $2), $2), revoked = (revoked OR $3) WHERE id = $1"
            ),
            set_disabled: format!("UPDATE {table} SET disabled = $2 WHERE id = $1"),
            delete: format!("DELETE FROM {table} WHERE id = $1"),
            touch: format!(
                "UPDATE {table} SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)"
            ),
            // Refused (revoked or expired) before $2: no longer able to authenticate.
            purge_owner: format!(
                "DELETE FROM {table} WHERE owner = $1 AND (revoked_at < $2 OR expires_at < $2)"
            ),
            purge_all: format!("DELETE FROM {table} WHERE revoked_at < $1 OR expires_at < $1"),
            inserts: std::sync::atomic::AtomicU64::new(0),
            schema: schema.map(str::to_owned),
            bare: bare.to_owned(),
            table,
        }
    }

    /// The shipped migration, for this table.
    fn migration<DB: SqlDatabase>(&self) -> String {
        let migration = self.for_table(DB::MIGRATION);
        match &self.schema {
            Some(schema) => format!("CREATE SCHEMA IF NOT EXISTS {schema};\n{migration}"),
            None => migration,
        }
    }

    /// A shipped statement, for this table.
    fn for_table(&self, sql: &str) -> String {
        sql.replace("api_keys_", &format!("{}_", self.bare))
            .replace("api_keys", &self.table)
    }
}

/// Keys in PostgreSQL (feature `postgres`) or SQLite (feature `sqlite`)
/// through `sqlx`, with the migrations shipped in `migrations/`.
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use tower_api_key::key::KeyFamily;
/// use tower_api_key::store::SqlKeyStore;
/// use tower_api_key::{ForgScope, KeyStore, ManageKeys, NewKey};
///
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
/// let store = SqlKeyStore::<ForgScope, sqlx::Sqlite>::new(pool);
/// store.migrate().await.unwrap(); // idempotent
/// let issued = store.issue(NewKey::new("org_1", "ci", &KeyFamily::FORG_LIVE)).await.unwrap();
/// let digest = store.hasher().digest(issued.key().expose_secret());
/// assert_eq!(store.lookup(&digest).await.unwrap().unwrap().id(), issued.record().id());
/// # }
/// # #[cfg(not(feature = "sqlite"))]
/// # fn main() {}
/// ```
///
/// What each database does:
/// - one row per key, digests only (unique index), an index on the owner;
/// - a lookup is one prepared statement on the pool (`sqlx` caches statements per
///   connection), so one round trip;
/// - the owner limit is checked and the row inserted in one transaction, serialised per
///   owner (PostgreSQL: `pg_advisory_xact_lock` on the owner; SQLite: `BEGIN IMMEDIATE`), so
///   100 concurrent issues for one owner end with exactly the limit;
/// - database failures are [`StoreError`]s (503 at the layer), never 401;
/// - PostgreSQL publishes every revocation, disabling and deletion with `NOTIFY` in the same
///   transaction; [`PgRevocationListener`] turns them into cache invalidations on every
///   instance, as the Redis store's pub/sub does;
/// - rows that can no longer authenticate are deleted once past the policy's
///   [retention](KeyPolicy::retention): the owner's with one `DELETE` before each issue,
///   and the whole table's every 1,024th insert through a store ([`sweep`](Self::sweep),
///   which you may also call on a schedule of your own). The store runs no task of its
///   own: a library should not hold timers on your database, and an idle table does not
///   grow.
///
/// `S` is the scope vocabulary, `DB` is `sqlx::Postgres` or `sqlx::Sqlite`. Cheap to clone
/// (the pool is shared).
pub struct SqlKeyStore<S: Scope, DB: SqlDatabase> {
    pool: sqlx::Pool<DB>,
    queries: Arc<Queries>,
    hasher: KeyHasher,
    policy: KeyPolicy,
    /// Whether `with_table` named the table (then sessions stay where it says).
    named_table: bool,
    _scope: PhantomData<fn() -> S>,
}

impl<S: Scope, DB: SqlDatabase> Clone for SqlKeyStore<S, DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            queries: Arc::clone(&self.queries),
            hasher: self.hasher.clone(),
            policy: self.policy.clone(),
            named_table: self.named_table,
            _scope: PhantomData,
        }
    }
}

/// Where keys are kept unless [`SqlKeyStore::with_table`] says otherwise.
const DEFAULT_TABLE: &str = "api_keys";
/// Where a store of sessions ([`KeyPolicy::sessions`]) keeps them by default.
const SESSIONS_TABLE: &str = "api_sessions";

impl<S: Scope, DB: SqlDatabase> SqlKeyStore<S, DB> {
    /// Keys in table `api_keys` of `pool`'s database, with the default [`KeyPolicy`] and
    /// plain SHA-256 digests. Call [`migrate`](Self::migrate) once (or run the SQL in
    /// `migrations/` with your own tool).
    pub fn new(pool: sqlx::Pool<DB>) -> Self {
        Self {
            pool,
            queries: Arc::new(Queries::new::<DB>(None, DEFAULT_TABLE)),
            hasher: KeyHasher::sha256(),
            policy: KeyPolicy::default(),
            named_table: false,
            _scope: PhantomData,
        }
    }

    /// Keys in `table`, or `schema.table` (PostgreSQL).
    ///
    /// # Errors
    /// [`InvalidTableName`] unless each part is `[A-Za-z_][A-Za-z0-9_]*` (at most 63).
    pub fn with_table(mut self, table: &str) -> Result<Self, InvalidTableName> {
        let (schema, bare) = match table.split_once('.') {
            Some((schema, bare)) => (Some(schema), bare),
            None => (None, table),
        };
        if !identifier(bare) || schema.is_some_and(|s| !identifier(s)) {
            return Err(InvalidTableName(table.to_owned()));
        }
        self.queries = Arc::new(Queries::new::<DB>(schema, bare));
        self.named_table = true;
        Ok(self)
    }

    /// The families, owner limit, clock and plans (default [`KeyPolicy::default`]).
    ///
    /// A store for browser sessions ([`KeyPolicy::sessions`]) without a table named by
    /// [`with_table`](Self::with_table) uses its own default table, `api_sessions`:
    /// sessions never share the keys' table unless `with_table` says so (and even then a key store never
    /// reads a session as a key). Run [`migrate`](Self::migrate) on it too.
    #[must_use]
    pub fn with_policy(mut self, policy: KeyPolicy) -> Self {
        let sessions_only = policy
            .accepted_families()
            .iter()
            .all(|family| family.prefix() == crate::key::KeyFamily::SESSION.prefix());
        if sessions_only && !self.named_table {
            self.queries = Arc::new(Queries::new::<DB>(None, SESSIONS_TABLE));
        }
        self.policy = policy;
        self
    }

    /// How keys are digested (default SHA-256; a pepper makes it HMAC-SHA-256).
    #[must_use]
    pub fn with_hasher(mut self, hasher: KeyHasher) -> Self {
        self.hasher = hasher;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    /// The table, as used in statements (`schema.table` or `table`).
    pub fn table(&self) -> &str {
        &self.queries.table
    }
}

impl<S: Scope, DB: SqlDatabase> fmt::Debug for SqlKeyStore<S, DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlKeyStore")
            .field("table", &self.queries.table)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A database error as a store failure: 503 at the layer, never 401. The message is
/// sqlx's, which never holds bound values (digests, ids).
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    let kind = match &error {
        sqlx::Error::PoolTimedOut => StoreErrorKind::Timeout,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(kind, error)
}

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
                for statement in migration.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    let statement: String = statement
                        .lines()
                        .filter(|line| !line.trim_start().starts_with("--"))
                        .collect::<Vec<_>>()
                        .join("\n");
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

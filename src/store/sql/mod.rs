//! [`SqlKeyStore`]: keys in PostgreSQL or SQLite through `sqlx`.

#[cfg(feature = "postgres")]
mod listener;
#[cfg(feature = "postgres")]
mod postgres;
mod queries;
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store_impl;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

#[cfg(feature = "postgres")]
pub use listener::PgRevocationListener;

use crate::key::KeyHasher;
use crate::scope::Scope;
use crate::store::{KeyPolicy, StoreError, StoreErrorKind};
pub(crate) use queries::{Queries, SWEEP_EVERY};

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

/// `table` as its schema (if any) and bare name.
///
/// # Errors
/// [`InvalidTableName`] unless each part is `[A-Za-z_][A-Za-z0-9_]*` (at most 63).
pub(crate) fn table_name(table: &str) -> Result<(Option<&str>, &str), InvalidTableName> {
    let (schema, bare) = match table.split_once('.') {
        Some((schema, bare)) => (Some(schema), bare),
        None => (None, table),
    };
    if !identifier(bare) || schema.is_some_and(|s| !identifier(s)) {
        return Err(InvalidTableName(table.to_owned()));
    }
    Ok((schema, bare))
}

/// A shipped migration written for table `shipped` (its indexes named `shipped_…`), for
/// `table` (`schema.table` creates the schema first; index names take no schema).
pub(crate) fn migration_for(sql: &str, shipped: &str, table: &str) -> String {
    let (schema, bare) = table.split_once('.').unwrap_or(("", table));
    let create = if schema.is_empty() {
        String::new()
    } else {
        format!("CREATE SCHEMA IF NOT EXISTS {schema};\n")
    };
    create
        + &sql
            .replace(&format!("{shipped}_"), &format!("{bare}_"))
            .replace(shipped, table)
}

/// The statements of a shipped migration, in order: comment lines dropped first (a
/// comment may hold a `;`), then split on `;`.
pub(crate) fn statements(migration: &str) -> Vec<String> {
    let code: String = migration
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_owned)
        .collect()
}

fn identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 63
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
/// let store = SqlKeyStore::<ForgScope, sqlx::Sqlite>::new(pool).with_policy(tower_api_key::forg::key_policy());
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
        let (schema, bare) = table_name(table)?;
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

pub(crate) use store_impl::impl_sql_store;

//! [`SqlAuditLog`]: the audit log in an append-only table of PostgreSQL or SQLite
//! (features `postgres`, `sqlite`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::store::{table_name, InvalidTableName, SqlDatabase};
use crate::support::unix_millis::millis;

/// How often (in appends through one log) the table's entries past retention are deleted.
const SWEEP_EVERY: u64 = 256;

/// One row per entry in table `api_audit` (or the one [`with_table`](Self::with_table)
/// names): the owner, time, key, action and environment as columns (indexed by owner and
/// by time), the entry as JSON. `seq` (the cursor) is the table's own increasing key.
/// Entries older than [`retention`](Self::retention) are never read, and are deleted by
/// every 256th append through a log (no task of its own). Call [`migrate`](Self::migrate)
/// once, or apply `migrations/*/audit_0001.sql` with your own tool.
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tower_api_key::audit::{Actor, AuditAction, AuditEntry, AuditLog, AuditQuery, SqlAuditLog};
///
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
/// let log = SqlAuditLog::new(pool);
/// log.migrate().await.unwrap();
/// let entry = AuditEntry::new(std::time::SystemTime::now(), "org_1", Actor::System, AuditAction::TrialStarted);
/// let seq = log.append(entry).await.unwrap();
/// assert_eq!(log.page(&AuditQuery::new("org_1")).await.unwrap()[0].seq(), seq);
/// # }
/// # #[cfg(not(feature = "sqlite"))]
/// # fn main() {}
/// ```
pub struct SqlAuditLog<DB: SqlDatabase> {
    pool: sqlx::Pool<DB>,
    table: String,
    retention: Duration,
    clock: Arc<dyn Clock>,
    appends: Arc<AtomicU64>,
    _db: PhantomData<fn() -> DB>,
}

impl<DB: SqlDatabase> Clone for SqlAuditLog<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            retention: self.retention,
            clock: Arc::clone(&self.clock),
            appends: Arc::clone(&self.appends),
            _db: PhantomData,
        }
    }
}

impl<DB: SqlDatabase> SqlAuditLog<DB> {
    /// Entries in table `api_audit` of `pool`'s database, kept 90 days, on the system clock.
    pub fn new(pool: sqlx::Pool<DB>) -> Self {
        Self {
            pool,
            table: "api_audit".to_owned(),
            retention: Duration::from_secs(90 * 86_400),
            clock: Arc::new(SystemClock),
            appends: Arc::default(),
            _db: PhantomData,
        }
    }

    /// Entries in `table`, or `schema.table` (PostgreSQL).
    ///
    /// # Errors
    /// [`InvalidTableName`] unless each part is `[A-Za-z_][A-Za-z0-9_]*` (at most 63).
    pub fn with_table(mut self, table: &str) -> Result<Self, InvalidTableName> {
        table_name(table)?;
        table.clone_into(&mut self.table);
        Ok(self)
    }

    /// Entries older than `age` are not read and are deleted (`Duration::MAX`: kept).
    #[must_use]
    pub fn retention(mut self, age: Duration) -> Self {
        self.retention = age;
        self
    }

    /// Times entries on `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The oldest time kept now, in ms.
    fn oldest_kept(&self) -> i64 {
        self.clock
            .now()
            .checked_sub(self.retention)
            .map_or(i64::MIN, millis)
    }

    /// Whether this append also deletes what is past retention.
    fn sweeps(&self) -> bool {
        (self.appends.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(SWEEP_EVERY)
    }
}

impl<DB: SqlDatabase> fmt::Debug for SqlAuditLog<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlAuditLog")
            .field("table", &self.table)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// `migrate` and `AuditLog` for one database, written once.
macro_rules! impl_sql_audit {
    ($db:ty, $migration:literal, $serialise:literal) => {
        impl SqlAuditLog<$db> {
            /// Creates the table and its indexes if missing: idempotent, and safe when
            /// several instances start together (PostgreSQL: under the advisory lock the
            /// key store's migration takes).
            ///
            /// # Errors
            /// [`StoreError`](crate::store::StoreError) when the database refuses.
            pub async fn migrate(&self) -> Result<(), crate::store::StoreError> {
                let migration =
                    crate::store::migration_for(include_str!($migration), "api_audit", &self.table);
                let mut tx = self.pool.begin().await.map_err(crate::store::store_error)?;
                sqlx::raw_sql($serialise)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::store::store_error)?;
                for statement in crate::store::statements(&migration) {
                    sqlx::raw_sql(&statement)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::store::store_error)?;
                }
                tx.commit().await.map_err(crate::store::store_error)
            }
        }

        impl super::AuditLog for SqlAuditLog<$db> {
            fn append(&self, entry: super::AuditEntry) -> super::AuditFuture<'_, u64> {
                Box::pin(async move {
                    let json = serde_json::to_string(&entry).map_err(|error| {
                        crate::store::StoreError::new(crate::store::StoreErrorKind::Other, error)
                    })?;
                    let insert = format!(
                        "INSERT INTO {} (owner, at, key_id, action, environment, entry)
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
                        self.table
                    );
                    let seq: i64 = sqlx::query_scalar(&insert)
                        .bind(entry.owner().to_owned())
                        .bind(millis(entry.at()))
                        .bind(entry.key_id().map(|id| id.as_str().to_owned()))
                        .bind(entry.action().as_str())
                        .bind(entry.environment_of().map(|e| e.as_str()))
                        .bind(json)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(crate::store::store_error)?;
                    if self.sweeps() {
                        // Best effort: the entry is in; a failed sweep is retried later.
                        let sweep = format!("DELETE FROM {} WHERE at < $1", self.table);
                        let _ = sqlx::query(&sweep)
                            .bind(self.oldest_kept())
                            .execute(&self.pool)
                            .await;
                    }
                    Ok(u64::try_from(seq).unwrap_or(0))
                })
            }

            fn page<'a>(
                &'a self,
                query: &'a super::AuditQuery,
            ) -> super::AuditFuture<'a, Vec<super::AuditEntry>> {
                Box::pin(async move {
                    let select = format!(
                        "SELECT seq, entry FROM {} WHERE owner = $1 AND seq < $2 AND at >= $3
                           AND ($4 IS NULL OR key_id = $4) AND ($5 IS NULL OR action = $5)
                         ORDER BY seq DESC LIMIT $6",
                        self.table
                    );
                    let before = query
                        .before_seq()
                        .map_or(i64::MAX, |seq| i64::try_from(seq).unwrap_or(i64::MAX));
                    // The environment filter is the query's own (few rows per owner pass the
                    // indexed ones): read in batches until the page is full.
                    let mut page = Vec::new();
                    let mut cursor = before;
                    loop {
                        let rows: Vec<(i64, String)> = sqlx::query_as(&select)
                            .bind(query.owner().to_owned())
                            .bind(cursor)
                            .bind(self.oldest_kept())
                            .bind(query.key_id().map(|id| id.as_str().to_owned()))
                            .bind(query.action_filter().map(|a| a.as_str()))
                            .bind(i64::try_from(query.page_size().max(50)).unwrap_or(50))
                            .fetch_all(&self.pool)
                            .await
                            .map_err(crate::store::store_error)?;
                        let Some((last, _)) = rows.last() else { break };
                        cursor = *last;
                        for (seq, json) in rows {
                            let mut entry: super::AuditEntry = serde_json::from_str(&json)
                                .map_err(|_| {
                                    crate::store::StoreError::new(
                                        crate::store::StoreErrorKind::Other,
                                        "corrupt audit entry",
                                    )
                                })?;
                            entry.set_seq(u64::try_from(seq).unwrap_or(0));
                            if query.matches(&entry) && page.len() < query.page_size() {
                                page.push(entry);
                            }
                        }
                        if page.len() >= query.page_size() {
                            break;
                        }
                    }
                    Ok(page)
                })
            }
        }
    };
}

#[cfg(feature = "postgres")]
impl_sql_audit!(
    sqlx::Postgres,
    "../../migrations/postgres/audit_0001.sql",
    "SELECT pg_advisory_xact_lock(hashtextextended('tower_api_key.migrate', 0))"
);
#[cfg(feature = "sqlite")]
// One writer at a time already: the first statement takes the database's write lock.
impl_sql_audit!(
    sqlx::Sqlite,
    "../../migrations/sqlite/audit_0001.sql",
    "SELECT 1"
);

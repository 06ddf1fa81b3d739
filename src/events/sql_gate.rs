//! [`SqlEventGate`]: "once per crossing" decided by PostgreSQL or SQLite, for every
//! instance on the database (features `postgres`, `sqlite`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{EventGate, GateFuture};
use crate::clock::{Clock, SystemClock};
use crate::store::{table_name, InvalidTableName, SqlDatabase};
use crate::support::unix_millis::millis;

/// How often (in claims through one gate) rows whose time is up are deleted.
const SWEEP_EVERY: u64 = 256;

/// One row per crossing in table `api_event_gate` (or the one
/// [`with_table`](Self::with_table) names): an upsert that inserts the crossing, or takes
/// over a row whose time is up, answers "first" by the rows it changed, so of instances
/// asking together exactly one is first. Times are the gate's clock's (instances' clocks
/// should agree to within what a crossing is remembered); rows whose time is up are
/// deleted by every 256th claim, so the table follows the crossings remembered. Call
/// [`migrate`](Self::migrate) once, or apply `migrations/*/gate_0001.sql`.
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use tower_api_key::events::{EventGate, SqlEventGate};
///
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
/// let gate = SqlEventGate::new(pool);
/// gate.migrate().await.unwrap();
/// let day = Duration::from_secs(86_400);
/// assert!(gate.first("org_1:live:2026-12:80", day).await.unwrap());
/// assert!(!gate.first("org_1:live:2026-12:80", day).await.unwrap());
/// # }
/// # #[cfg(not(feature = "sqlite"))]
/// # fn main() {}
/// ```
pub struct SqlEventGate<DB: SqlDatabase> {
    pool: sqlx::Pool<DB>,
    table: String,
    bare: String,
    clock: Arc<dyn Clock>,
    claims: Arc<AtomicU64>,
    _db: PhantomData<fn() -> DB>,
}

impl<DB: SqlDatabase> Clone for SqlEventGate<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            bare: self.bare.clone(),
            clock: Arc::clone(&self.clock),
            claims: Arc::clone(&self.claims),
            _db: PhantomData,
        }
    }
}

impl<DB: SqlDatabase> SqlEventGate<DB> {
    /// Crossings in table `api_event_gate` of `pool`'s database, on the system clock.
    pub fn new(pool: sqlx::Pool<DB>) -> Self {
        Self {
            pool,
            table: "api_event_gate".to_owned(),
            bare: "api_event_gate".to_owned(),
            clock: Arc::new(SystemClock),
            claims: Arc::default(),
            _db: PhantomData,
        }
    }

    /// Crossings in `table`, or `schema.table` (PostgreSQL).
    ///
    /// # Errors
    /// [`InvalidTableName`] unless each part is `[A-Za-z_][A-Za-z0-9_]*` (at most 63).
    pub fn with_table(mut self, table: &str) -> Result<Self, InvalidTableName> {
        let (_, bare) = table_name(table)?;
        bare.clone_into(&mut self.bare);
        table.clone_into(&mut self.table);
        Ok(self)
    }

    /// Times crossings on `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Whether this claim also deletes the rows whose time is up.
    fn sweeps(&self) -> bool {
        (self.claims.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(SWEEP_EVERY)
    }
}

impl<DB: SqlDatabase> fmt::Debug for SqlEventGate<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlEventGate")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// `migrate` and `EventGate` for one database, written once.
macro_rules! impl_sql_gate {
    ($db:ty, $migration:literal, $serialise:literal) => {
        impl SqlEventGate<$db> {
            /// Creates the table and its index if missing: idempotent, and safe when
            /// several instances start together.
            ///
            /// # Errors
            /// [`StoreError`](crate::store::StoreError) when the database refuses.
            pub async fn migrate(&self) -> Result<(), crate::store::StoreError> {
                let migration = crate::store::migration_for(
                    include_str!($migration),
                    "api_event_gate",
                    &self.table,
                );
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

        impl EventGate for SqlEventGate<$db> {
            fn first<'a>(&'a self, crossing: &'a str, remember: Duration) -> GateFuture<'a> {
                Box::pin(async move {
                    let now = self.clock.now();
                    let until = now.checked_add(remember).map_or(i64::MAX, millis);
                    // Inserted, or taken over from a row whose time is up: one row
                    // changed. A row still remembered: none.
                    let claim = format!(
                        "INSERT INTO {table} (crossing, until_ms) VALUES ($1, $2)
                         ON CONFLICT (crossing) DO UPDATE SET until_ms = excluded.until_ms
                         WHERE {bare}.until_ms <= $3",
                        table = self.table,
                        bare = self.bare,
                    );
                    let changed = sqlx::query(&claim)
                        .bind(crossing.to_owned())
                        .bind(until)
                        .bind(millis(now))
                        .execute(&self.pool)
                        .await
                        .map_err(crate::store::store_error)?
                        .rows_affected();
                    if self.sweeps() {
                        // Best effort: the claim is made; a failed sweep is retried later.
                        let sweep = format!("DELETE FROM {} WHERE until_ms <= $1", self.table);
                        let _ = sqlx::query(&sweep)
                            .bind(millis(now))
                            .execute(&self.pool)
                            .await;
                    }
                    Ok(changed == 1)
                })
            }

            fn forget<'a>(&'a self, crossing: &'a str) -> GateFuture<'a> {
                Box::pin(async move {
                    let forget = format!("DELETE FROM {} WHERE crossing = $1", self.table);
                    let removed = sqlx::query(&forget)
                        .bind(crossing.to_owned())
                        .execute(&self.pool)
                        .await
                        .map_err(crate::store::store_error)?
                        .rows_affected();
                    Ok(removed > 0)
                })
            }
        }
    };
}

#[cfg(feature = "postgres")]
impl_sql_gate!(
    sqlx::Postgres,
    "../../migrations/postgres/gate_0001.sql",
    "SELECT pg_advisory_xact_lock(hashtextextended('tower_api_key.migrate', 0))"
);
#[cfg(feature = "sqlite")]
// One writer at a time already: the first statement takes the database's write lock.
impl_sql_gate!(
    sqlx::Sqlite,
    "../../migrations/sqlite/gate_0001.sql",
    "SELECT 1"
);

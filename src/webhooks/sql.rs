//! [`SqlWebhookStore`]: endpoints and the outbox in two tables of PostgreSQL or SQLite
//! (features `postgres`, `sqlite`).

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use super::{Attempt, Delivery, WebhookEndpoint, WebhookFuture, WebhookStore};
use crate::store::{
    store_error, table_name, InvalidTableName, SqlDatabase, StoreError, StoreErrorKind,
};
use crate::support::unix_millis::millis;

/// Endpoints in `api_webhooks` (one row each: the endpoint as JSON, secret included, for
/// the sender), deliveries in `api_webhooks_deliveries` (one row per event and endpoint:
/// a second enqueue of the same is a no-op), indexed by state and due time. A claim is one
/// statement that moves the due time to the lease's end (PostgreSQL: `FOR UPDATE SKIP
/// LOCKED`, so concurrent senders take different rows; SQLite: one writer at a time). The
/// owner limit is checked and the endpoint inserted in one statement (PostgreSQL: under
/// an advisory lock on the owner). Call [`migrate`](Self::migrate) once, or apply
/// `migrations/*/webhooks_0001.sql` with your own tool.
pub struct SqlWebhookStore<DB: SqlDatabase> {
    pool: sqlx::Pool<DB>,
    table: String,
    bare: String,
    _db: PhantomData<fn() -> DB>,
}

impl<DB: SqlDatabase> Clone for SqlWebhookStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            bare: self.bare.clone(),
            _db: PhantomData,
        }
    }
}

fn corrupt(_: serde_json::Error) -> StoreError {
    StoreError::new(StoreErrorKind::Other, "corrupt webhook row")
}

impl<DB: SqlDatabase> SqlWebhookStore<DB> {
    /// Tables `api_webhooks` and `api_webhooks_deliveries` of `pool`'s database.
    pub fn new(pool: sqlx::Pool<DB>) -> Self {
        Self {
            pool,
            table: "api_webhooks".to_owned(),
            bare: "api_webhooks".to_owned(),
            _db: PhantomData,
        }
    }

    /// Tables `table` and `table_deliveries` (optionally `schema.table`, PostgreSQL).
    ///
    /// # Errors
    /// [`InvalidTableName`] unless each part is `[A-Za-z_][A-Za-z0-9_]*` (at most 63).
    pub fn with_table(mut self, table: &str) -> Result<Self, InvalidTableName> {
        let (_, bare) = table_name(table)?;
        bare.clone_into(&mut self.bare);
        table.clone_into(&mut self.table);
        Ok(self)
    }

    /// The pool.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    /// The endpoints' table, as used in statements.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn deliveries_table(&self) -> String {
        format!("{}_deliveries", self.table)
    }

    /// The shipped migration, for these tables: index names first (they take no schema).
    fn migration(&self, sql: &str) -> String {
        let schema = self
            .table
            .split_once('.')
            .map(|(schema, _)| format!("CREATE SCHEMA IF NOT EXISTS {schema};\n"))
            .unwrap_or_default();
        let bare = &self.bare;
        let sql = sql
            .replace(
                "api_webhooks_deliveries_due",
                &format!("{bare}_deliveries_due"),
            )
            .replace(
                "api_webhooks_deliveries_endpoint",
                &format!("{bare}_deliveries_endpoint"),
            )
            .replace("api_webhooks_owner", &format!("{bare}_owner"))
            .replace(
                "api_webhooks_deliveries (",
                &format!("{} (", self.deliveries_table()),
            )
            .replace("api_webhooks (", &format!("{} (", self.table));
        schema + &sql
    }
}

impl<DB: SqlDatabase> fmt::Debug for SqlWebhookStore<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlWebhookStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// `migrate` and `WebhookStore` for one database, written once; `$lock` serialises the
/// owner's endpoint inserts (binds the owner), `$claim` leases due rows (binds now, the
/// lease's end, the limit; `{d}` is the deliveries table).
macro_rules! impl_sql_webhooks {
    ($db:ty, $migration:literal, $lock:literal, $claim:literal) => {
        impl SqlWebhookStore<$db> {
            /// Creates the tables and indexes if missing: idempotent.
            ///
            /// # Errors
            /// [`StoreError`] when the database refuses.
            pub async fn migrate(&self) -> Result<(), StoreError> {
                let migration = self.migration(include_str!($migration));
                let mut tx = self.pool.begin().await.map_err(store_error)?;
                sqlx::query($lock).bind("tower_api_key.migrate").execute(&mut *tx).await.map_err(store_error)?;
                for statement in crate::store::statements(&migration) {
                    sqlx::raw_sql(&statement).execute(&mut *tx).await.map_err(store_error)?;
                }
                tx.commit().await.map_err(store_error)
            }
        }

        impl WebhookStore for SqlWebhookStore<$db> {
            fn add_endpoint<'a>(&'a self, endpoint: &'a WebhookEndpoint, max: usize) -> WebhookFuture<'a, bool> {
                Box::pin(async move {
                    let json = serde_json::to_string(endpoint).map_err(corrupt)?;
                    let insert = format!(
                        "INSERT INTO {t} (id, owner, endpoint, created_at)
                           SELECT $1, $2, $3, $4 WHERE (SELECT count(*) FROM {t} WHERE owner = $2) < $5
                         ON CONFLICT DO NOTHING",
                        t = self.table
                    );
                    let mut tx = self.pool.begin().await.map_err(store_error)?;
                    sqlx::query($lock).bind(endpoint.owner().to_owned()).execute(&mut *tx).await.map_err(store_error)?;
                    let added = sqlx::query(&insert)
                        .bind(endpoint.id().to_owned())
                        .bind(endpoint.owner().to_owned())
                        .bind(json)
                        .bind(millis(endpoint.created_at()))
                        .bind(i64::try_from(max).unwrap_or(i64::MAX))
                        .execute(&mut *tx)
                        .await
                        .map_err(store_error)?
                        .rows_affected();
                    tx.commit().await.map_err(store_error)?;
                    Ok(added == 1)
                })
            }

            fn endpoints<'a>(&'a self, owner: &'a str) -> WebhookFuture<'a, Vec<WebhookEndpoint>> {
                Box::pin(async move {
                    let select = format!("SELECT endpoint FROM {} WHERE owner = $1 ORDER BY created_at, id", self.table);
                    let rows: Vec<String> = sqlx::query_scalar(&select)
                        .bind(owner.to_owned())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(store_error)?;
                    rows.iter().map(|json| serde_json::from_str(json).map_err(corrupt)).collect()
                })
            }

            fn endpoint<'a>(&'a self, id: &'a str) -> WebhookFuture<'a, Option<WebhookEndpoint>> {
                Box::pin(async move {
                    let select = format!("SELECT endpoint FROM {} WHERE id = $1", self.table);
                    let row: Option<String> = sqlx::query_scalar(&select)
                        .bind(id.to_owned())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(store_error)?;
                    row.map(|json| serde_json::from_str(&json).map_err(corrupt)).transpose()
                })
            }

            fn remove_endpoint<'a>(&'a self, owner: &'a str, id: &'a str) -> WebhookFuture<'a, bool> {
                Box::pin(async move {
                    let delete = format!("DELETE FROM {} WHERE owner = $1 AND id = $2", self.table);
                    let deliveries = format!("DELETE FROM {} WHERE endpoint_id = $1", self.deliveries_table());
                    let mut tx = self.pool.begin().await.map_err(store_error)?;
                    let removed = sqlx::query(&delete)
                        .bind(owner.to_owned())
                        .bind(id.to_owned())
                        .execute(&mut *tx)
                        .await
                        .map_err(store_error)?
                        .rows_affected();
                    if removed > 0 {
                        sqlx::query(&deliveries).bind(id.to_owned()).execute(&mut *tx).await.map_err(store_error)?;
                    }
                    tx.commit().await.map_err(store_error)?;
                    Ok(removed > 0)
                })
            }

            fn enqueue(&self, deliveries: Vec<Delivery>) -> WebhookFuture<'_, ()> {
                Box::pin(async move {
                    let insert = format!(
                        "INSERT INTO {} (event_id, endpoint_id, state, next_at, created_at, delivery)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        self.deliveries_table()
                    );
                    let mut tx = self.pool.begin().await.map_err(store_error)?;
                    for delivery in &deliveries {
                        sqlx::query(&insert)
                            .bind(delivery.event_id.clone())
                            .bind(delivery.endpoint_id.clone())
                            .bind(delivery.state.as_str())
                            .bind(millis(delivery.next_at))
                            .bind(millis(delivery.created_at))
                            .bind(serde_json::to_string(delivery).map_err(corrupt)?)
                            .execute(&mut *tx)
                            .await
                            .map_err(store_error)?;
                    }
                    tx.commit().await.map_err(store_error)
                })
            }

            fn claim(&self, now: SystemTime, lease: Duration, limit: usize) -> WebhookFuture<'_, Vec<Delivery>> {
                Box::pin(async move {
                    let until = now.checked_add(lease).unwrap_or(now);
                    let claim = $claim.replace("{d}", &self.deliveries_table());
                    let rows: Vec<String> = sqlx::query_scalar(&claim)
                        .bind(millis(now))
                        .bind(millis(until))
                        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(store_error)?;
                    rows.iter()
                        .map(|json| {
                            serde_json::from_str::<Delivery>(json).map_err(corrupt).map(|mut delivery| {
                                delivery.next_at = until;
                                delivery
                            })
                        })
                        .collect()
                })
            }

            fn finish<'a>(&'a self, delivery: &'a Delivery, attempt: Attempt) -> WebhookFuture<'a, ()> {
                Box::pin(async move {
                    let updated = delivery.after(attempt);
                    let update = format!(
                        "UPDATE {} SET state = $3, next_at = $4, delivery = $5 WHERE event_id = $1 AND endpoint_id = $2",
                        self.deliveries_table()
                    );
                    sqlx::query(&update)
                        .bind(updated.event_id.clone())
                        .bind(updated.endpoint_id.clone())
                        .bind(updated.state.as_str())
                        .bind(millis(updated.next_at))
                        .bind(serde_json::to_string(&updated).map_err(corrupt)?)
                        .execute(&self.pool)
                        .await
                        .map_err(store_error)?;
                    Ok(())
                })
            }

            fn deliveries<'a>(&'a self, endpoint_id: &'a str, limit: usize) -> WebhookFuture<'a, Vec<Delivery>> {
                Box::pin(async move {
                    let select = format!(
                        "SELECT delivery FROM {} WHERE endpoint_id = $1 ORDER BY created_at DESC, event_id DESC LIMIT $2",
                        self.deliveries_table()
                    );
                    let rows: Vec<String> = sqlx::query_scalar(&select)
                        .bind(endpoint_id.to_owned())
                        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(store_error)?;
                    rows.iter().map(|json| serde_json::from_str(json).map_err(corrupt)).collect()
                })
            }

            fn purge(&self, before: SystemTime) -> WebhookFuture<'_, usize> {
                Box::pin(async move {
                    let delete = format!(
                        "DELETE FROM {} WHERE state <> 'pending' AND next_at < $1",
                        self.deliveries_table()
                    );
                    let purged = sqlx::query(&delete)
                        .bind(millis(before))
                        .execute(&self.pool)
                        .await
                        .map_err(store_error)?
                        .rows_affected();
                    Ok(usize::try_from(purged).unwrap_or(usize::MAX))
                })
            }
        }
    };
}

#[cfg(feature = "postgres")]
impl_sql_webhooks!(
    sqlx::Postgres,
    "../../migrations/postgres/webhooks_0001.sql",
    "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))",
    "UPDATE {d} SET next_at = $2 WHERE (event_id, endpoint_id) IN (
       SELECT event_id, endpoint_id FROM {d} WHERE state = 'pending' AND next_at <= $1
       ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
     RETURNING delivery"
);
// One writer at a time: each statement is serialised by the database itself.
#[cfg(feature = "sqlite")]
impl_sql_webhooks!(
    sqlx::Sqlite,
    "../../migrations/sqlite/webhooks_0001.sql",
    "SELECT $1",
    "UPDATE {d} SET next_at = $2 WHERE rowid IN (
       SELECT rowid FROM {d} WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at LIMIT $3)
     RETURNING delivery"
);

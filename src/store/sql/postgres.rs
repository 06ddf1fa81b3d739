//! PostgreSQL: a transaction-scoped advisory lock per owner serialises issues for that
//! owner (other owners go on in parallel); changes are announced with `NOTIFY` in the same
//! transaction, so a listener hears of them only once they are committed.

use sqlx::{Pool, Postgres, Transaction};

use super::{Queries, SqlDatabase};
use crate::store::KeyId;

impl super::private::Sealed for Postgres {}

impl SqlDatabase for Postgres {
    const MIGRATION: &'static str = include_str!("../../../migrations/postgres/0001_api_keys.sql");
    const UPGRADES: &'static [(&'static str, &'static str)] = &[
        (
            "lineage",
            include_str!("../../../migrations/postgres/0002_lineage.sql"),
        ),
        (
            "version",
            include_str!("../../../migrations/postgres/0003_version.sql"),
        ),
    ];
    const LEAST: &'static str = "LEAST";
}

/// One migration at a time across every instance: `CREATE TABLE IF NOT EXISTS` races
/// when two run at once on a fresh database (a unique violation on `pg_type`). The lock
/// is the transaction's, released when it ends, however it ends.
async fn begin_migration(pool: &Pool<Postgres>) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('tower_api_key.migrate', 0))")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

async fn has_column(
    tx: &mut Transaction<'_, Postgres>,
    queries: &Queries,
    column: &str,
) -> Result<bool, sqlx::Error> {
    let found: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns
           WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2 AND column_name = $3",
    )
    .bind(queries.schema.as_deref())
    .bind(queries.bare.as_str())
    .bind(column)
    .fetch_one(&mut **tx)
    .await?;
    Ok(found > 0)
}

impl Queries {
    /// The `NOTIFY` channel of this table: `<table>_revocations`.
    pub(crate) fn channel(&self) -> String {
        format!("{}_revocations", self.bare)
    }
}

async fn begin_for_owner<'p>(
    pool: &'p Pool<Postgres>,
    owner: &str,
) -> Result<Transaction<'p, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

async fn announce(
    tx: &mut Transaction<'_, Postgres>,
    queries: &Queries,
    id: &KeyId,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(queries.channel())
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

super::impl_sql_store!(Postgres, "postgres");

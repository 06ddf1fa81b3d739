//! SQLite: `BEGIN IMMEDIATE` serialises writers, so the owner limit holds under
//! concurrency; nothing to announce (one database file, one process).

use sqlx::{Pool, Sqlite, Transaction};

use super::{Queries, SqlDatabase};
use crate::store::KeyId;

impl super::private::Sealed for Sqlite {}

impl SqlDatabase for Sqlite {
    const MIGRATION: &'static str = include_str!("../../../migrations/sqlite/0001_api_keys.sql");
    const UPGRADES: &'static [(&'static str, &'static str)] = &[
        (
            "lineage",
            include_str!("../../../migrations/sqlite/0002_lineage.sql"),
        ),
        (
            "version",
            include_str!("../../../migrations/sqlite/0003_version.sql"),
        ),
    ];
    const LEAST: &'static str = "min";
}

/// One writer at a time: the migration runs as one transaction.
async fn begin_migration(pool: &Pool<Sqlite>) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

async fn has_column(
    tx: &mut Transaction<'_, Sqlite>,
    queries: &Queries,
    column: &str,
) -> Result<bool, sqlx::Error> {
    let found: i64 = match &queries.schema {
        Some(schema) => {
            sqlx::query_scalar("SELECT count(*) FROM pragma_table_info($1, $2) WHERE name = $3")
                .bind(queries.bare.as_str())
                .bind(schema.as_str())
                .bind(column)
                .fetch_one(&mut **tx)
                .await?
        }
        None => {
            sqlx::query_scalar("SELECT count(*) FROM pragma_table_info($1) WHERE name = $2")
                .bind(queries.bare.as_str())
                .bind(column)
                .fetch_one(&mut **tx)
                .await?
        }
    };
    Ok(found > 0)
}

async fn begin_for_owner<'p>(
    pool: &'p Pool<Sqlite>,
    _owner: &str,
) -> Result<Transaction<'p, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

async fn announce(
    _tx: &mut Transaction<'_, Sqlite>,
    _queries: &Queries,
    _id: &KeyId,
) -> Result<(), sqlx::Error> {
    Ok(())
}

super::impl_sql_store!(Sqlite, "sqlite");

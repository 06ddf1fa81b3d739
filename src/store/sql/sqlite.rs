//! SQLite: `BEGIN IMMEDIATE` serialises writers, so the owner limit holds under
//! concurrency; nothing to announce (one database file, one process).

use sqlx::{Pool, Sqlite, Transaction};

use super::{Queries, SqlDatabase};
use crate::store::KeyId;

impl super::private::Sealed for Sqlite {}

impl SqlDatabase for Sqlite {
    const MIGRATION: &'static str = include_str!("../../../migrations/sqlite/0001_api_keys.sql");
    const LEAST: &'static str = "min";
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

//! [`Queries`]: the SQL statements of one table, written once when the store is built.

use super::*;

/// The statements of one table, written once at construction.
#[derive(Debug)]
pub(crate) struct Queries {
    pub(crate) schema: Option<String>,
    pub(crate) table: String,
    pub(crate) bare: String,
    pub(crate) by_digest: String,
    pub(crate) by_id: String,
    pub(crate) by_owner: String,
    pub(crate) page: String,
    pub(crate) count_active: String,
    pub(crate) insert: String,
    pub(crate) revoke: String,
    pub(crate) set_disabled: String,
    pub(crate) replace: String,
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

/// The columns an insert writes (the version starts at the column's default, 0).
const COLUMNS: &str = "id, digest, owner, name, prefix, environment, hint, scopes, rate_limits, created_at, expires_at, revoked_at, revoked, disabled, metadata, allowed_networks, last_used_at, lineage";
/// The columns a select reads.
const SELECTED: &str = "id, digest, owner, name, prefix, environment, hint, scopes, rate_limits, created_at, expires_at, revoked_at, revoked, disabled, metadata, allowed_networks, last_used_at, lineage, version";

impl Queries {
    pub(crate) fn new<DB: SqlDatabase>(schema: Option<&str>, bare: &str) -> Self {
        let table = match schema {
            Some(schema) => format!("{schema}.{bare}"),
            None => bare.to_owned(),
        };
        let least = DB::LEAST;
        Self {
            by_digest: format!("SELECT {SELECTED} FROM {table} WHERE digest = $1"),
            by_id: format!("SELECT {SELECTED} FROM {table} WHERE id = $1"),
            by_owner: format!("SELECT {SELECTED} FROM {table} WHERE owner = $1"),
            // Every id is longer than '': the first page is `id > ''`.
            page: format!("SELECT {SELECTED} FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"),
            count_active: format!(
                "SELECT prefix FROM {table} WHERE owner = $1 AND id <> $3 AND NOT revoked
                   AND (revoked_at IS NULL OR revoked_at > $2)
                   AND (expires_at IS NULL OR expires_at > $2)"
            ),
            insert: format!(
                "INSERT INTO {table} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT DO NOTHING"
            ),
            // The earlier time wins; an immediate revocation sets `revoked`; the version
            // moves when either changes (SET reads the row as it was).
            revoke: format!(
                "UPDATE {table} SET revoked_at = {least}(coalesce(revoked_at, $2), $2), revoked = (revoked OR $3),
                   version = version + CASE WHEN revoked_at <= $2 AND (revoked OR NOT $3) THEN 0 ELSE 1 END
                 WHERE id = $1"
            ),
            set_disabled: format!(
                "UPDATE {table} SET disabled = $2, version = version + CASE WHEN disabled = $2 THEN 0 ELSE 1 END WHERE id = $1"
            ),
            replace: format!(
                "UPDATE {table} SET name = $2, scopes = $3, expires_at = $4, metadata = $5, allowed_networks = $6,
                   rate_limits = $7, version = version + 1
                 WHERE id = $1 AND version = $8"
            ),
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
    pub(crate) fn migration<DB: SqlDatabase>(&self) -> String {
        let migration = self.for_table(DB::MIGRATION);
        match &self.schema {
            Some(schema) => format!("CREATE SCHEMA IF NOT EXISTS {schema};\n{migration}"),
            None => migration,
        }
    }

    /// A shipped statement, for this table.
    pub(crate) fn for_table(&self, sql: &str) -> String {
        sql.replace("api_keys_", &format!("{}_", self.bare))
            .replace("api_keys", &self.table)
    }
}

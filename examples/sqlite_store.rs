//! A [`KeyStore`] on SQLite: the model for writing a Postgres, MySQL or Redis store.
//!
//! ```text
//! cargo run --example sqlite_store               # in-memory SQLite, server on 127.0.0.1:8082
//! ```
//!
//! What a store must get right, and how this one does it:
//! - Keep only digests. The `digest` column holds the 32-byte SHA-256 of the key (the
//!   store's [`KeyHasher`]); the plaintext is returned once by `issue` and never written.
//! - Look up by digest, nothing else, and return `Ok(None)` for an unknown digest. Return
//!   `Err` only when the database failed: the layer then answers 503 and fails closed.
//! - Never block the async runtime: SQLite calls run on Tokio's blocking pool.
//! - Enforce the per-owner key limit in the same transaction as the insert (`BEGIN
//!   IMMEDIATE`), so concurrent issues cannot exceed it.
//! - Revocation is one `UPDATE`; the next lookup sees it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use tower_api_key::activity::{LastUsedRecorder, TouchKey};
use tower_api_key::key::{KeyDigest, KeyFamilies, KeyHasher};
use tower_api_key::rate_limit::{ClassName, Quota};
use tower_api_key::store::{
    IssuedKey, KeyId, KeyRecord, LookupResult, ManageError, NewKey, StoreError, StoreErrorKind,
};
use tower_api_key::{require, AuthLayer, ForgScope, KeyStore, Principal, ScopeSet};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,
    digest      BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
    owner       TEXT NOT NULL,
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    hint        TEXT NOT NULL,
    scopes      TEXT NOT NULL,              -- space-separated scope names
    rate_limits TEXT NOT NULL DEFAULT '{}', -- JSON: class -> {requests, window_secs}
    created_at  INTEGER NOT NULL,           -- Unix milliseconds
    expires_at  INTEGER,
    revoked_at  INTEGER,
    last_used_at INTEGER                    -- written at most once per key per interval
);
CREATE INDEX IF NOT EXISTS api_keys_owner ON api_keys (owner);
";

const COLUMNS: &str =
    "id, digest, owner, name, prefix, hint, scopes, rate_limits, created_at, expires_at, revoked_at, last_used_at";

/// Keys in one SQLite database.
#[derive(Clone)]
pub struct SqliteKeyStore {
    connection: Arc<Mutex<Connection>>,
    hasher: KeyHasher,
    families: KeyFamilies,
    max_keys_per_owner: i64,
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn store_error(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, error)
}

impl SqliteKeyStore {
    /// Opens (and if needed creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> rusqlite::Result<Self> {
        Self::with_connection(Connection::open(path)?)
    }

    /// A private in-memory database.
    pub fn open_in_memory() -> rusqlite::Result<Self> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(connection: Connection) -> rusqlite::Result<Self> {
        connection.execute_batch(SCHEMA)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            hasher: KeyHasher::sha256(),
            families: KeyFamilies::default(),
            max_keys_per_owner: 10,
        })
    }

    /// Runs `work` on the blocking pool with the connection.
    async fn with_db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .map_err(|_| StoreError::new(StoreErrorKind::Other, "connection lock poisoned"))?;
            work(&mut connection)
        })
        .await
        .map_err(|e| StoreError::new(StoreErrorKind::Panicked, e))?
    }

    /// Issues a key: generates it, stores its record, returns the plaintext once.
    pub async fn issue(&self, new: NewKey<ForgScope>) -> Result<IssuedKey<ForgScope>, ManageError> {
        let (key, record) = new.issue(&self.hasher, SystemTime::now())?;
        let limit = self.max_keys_per_owner;
        let record = self
            .with_db(move |db| {
                let tx = db
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(store_error)?;
                let now = millis(SystemTime::now());
                let active: i64 = tx
                    .query_row(
                        "SELECT count(*) FROM api_keys WHERE owner = ?1
                           AND (revoked_at IS NULL OR revoked_at > ?2)
                           AND (expires_at IS NULL OR expires_at > ?2)",
                        params![record.owner, now],
                        |row| row.get(0),
                    )
                    .map_err(store_error)?;
                if active >= limit {
                    return Ok(Err(ManageError::KeyLimitReached { limit: limit as usize }));
                }
                let rate_limits = serde_json::to_string(&record.rate_limits).map_err(store_error)?;
                tx.execute(
                    &format!("INSERT INTO api_keys ({COLUMNS}, environment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                    params![
                        record.id.as_str(),
                        &record.digest.as_bytes()[..],
                        record.owner,
                        record.name,
                        record.prefix,
                        record.hint,
                        record.scopes.to_string(),
                        rate_limits,
                        millis(record.created_at),
                        record.expires_at.map(millis),
                        record.revoked_at.map(millis),
                        record.last_used_at.map(millis),
                        record.environment.as_str(),
                    ],
                )
                .map_err(store_error)?;
                tx.commit().map_err(store_error)?;
                Ok(Ok(record))
            })
            .await??;
        Ok(IssuedKey::new(key, Arc::new(record)))
    }

    /// Revokes a key now; the next lookup sees it.
    pub async fn revoke(&self, id: &KeyId) -> Result<(), ManageError> {
        let owned = id.clone();
        let updated = self
            .with_db(move |db| {
                db.execute(
                    "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND (revoked_at IS NULL OR revoked_at > ?2)",
                    params![owned.as_str(), millis(SystemTime::now())],
                )
                .map_err(store_error)
            })
            .await?;
        if updated == 0 && self.get(id).await?.is_none() {
            return Err(ManageError::NotFound(id.clone()));
        }
        Ok(())
    }

    /// The record with id `id`.
    pub async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord<ForgScope>>, ManageError> {
        let id = id.clone();
        let families = self.families.clone();
        Ok(self
            .with_db(move |db| {
                db.query_row(
                    &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"),
                    params![id.as_str()],
                    |row| Ok(record_from_row(row, &families)),
                )
                .optional()
                .map_err(store_error)?
                .transpose()
            })
            .await?)
    }

    /// Every record of `owner`, oldest first.
    pub async fn list(&self, owner: &str) -> Result<Vec<KeyRecord<ForgScope>>, ManageError> {
        let owner = owner.to_owned();
        let families = self.families.clone();
        Ok(self
            .with_db(move |db| {
                let mut statement = db
                    .prepare(&format!(
                        "SELECT {COLUMNS} FROM api_keys WHERE owner = ?1 ORDER BY created_at, id"
                    ))
                    .map_err(store_error)?;
                let rows = statement
                    .query_map(params![owner], |row| Ok(record_from_row(row, &families)))
                    .map_err(store_error)?;
                rows.map(|row| row.map_err(store_error)?).collect()
            })
            .await?)
    }
}

/// One row to a record. A row that does not make a valid record is an error of the store
/// (corrupt data), never a silent `None`.
fn record_from_row(
    row: &Row<'_>,
    families: &KeyFamilies,
) -> Result<KeyRecord<ForgScope>, StoreError> {
    let corrupt =
        |what: &str| StoreError::new(StoreErrorKind::Other, format!("corrupt key row: {what}"));
    let id: String = row.get(0).map_err(store_error)?;
    let digest: Vec<u8> = row.get(1).map_err(store_error)?;
    let prefix: String = row.get(4).map_err(store_error)?;
    let scopes: String = row.get(6).map_err(store_error)?;
    let rate_limits: String = row.get(7).map_err(store_error)?;

    let digest: [u8; 32] = digest.try_into().map_err(|_| corrupt("digest length"))?;
    let family = families
        .find(&prefix)
        .ok_or_else(|| corrupt("unknown prefix"))?;
    let mut record = KeyRecord::new(
        KeyId::new(id).map_err(|_| corrupt("id"))?,
        KeyDigest::from_bytes(digest),
        row.get::<_, String>(2).map_err(store_error)?,
        row.get::<_, String>(3).map_err(store_error)?,
        family,
        row.get::<_, String>(5).map_err(store_error)?,
        scopes
            .parse::<ScopeSet<ForgScope>>()
            .map_err(|_| corrupt("scopes"))?,
        time(row.get(8).map_err(store_error)?),
    );
    record.expires_at = row.get::<_, Option<i64>>(9).map_err(store_error)?.map(time);
    record.revoked_at = row
        .get::<_, Option<i64>>(10)
        .map_err(store_error)?
        .map(time);
    record.last_used_at = row
        .get::<_, Option<i64>>(11)
        .map_err(store_error)?
        .map(time);
    record.rate_limits = serde_json::from_str::<BTreeMap<ClassName, Quota>>(&rate_limits)
        .map_err(|_| corrupt("rate limits"))?;
    Ok(record)
}

impl KeyStore for SqliteKeyStore {
    type Scope = ForgScope;

    async fn lookup(&self, digest: &KeyDigest) -> LookupResult<ForgScope> {
        let digest = *digest;
        let families = self.families.clone();
        let record = self
            .with_db(move |db| {
                db.query_row(
                    &format!("SELECT {COLUMNS} FROM api_keys WHERE digest = ?1"),
                    params![&digest.as_bytes()[..]],
                    |row| Ok(record_from_row(row, &families)),
                )
                .optional()
                .map_err(store_error)?
                .transpose()
            })
            .await?;
        Ok(record.map(Arc::new))
    }

    fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }
}

/// `last_used_at` for the activity log; called by `LastUsedRecorder`, at most once per key
/// per interval, never on the request path.
impl TouchKey for SqliteKeyStore {
    async fn touch(&self, id: &KeyId, at: SystemTime) -> Result<(), StoreError> {
        let id = id.clone();
        self.with_db(move |db| {
            db.execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                params![id.as_str(), millis(at)],
            )
            .map(drop)
            .map_err(store_error)
        })
        .await
    }
}

/// An axum app on the SQLite store.
pub fn app(store: SqliteKeyStore) -> Router {
    Router::new()
        .route(
            "/v1/sessions",
            get(|identity: Principal| async move {
                Json(serde_json::json!({ "caller": identity.key_id().as_str(), "data": [] }))
            })
            .route_layer(require(ForgScope::ReadSessions)),
        )
        .layer(
            AuthLayer::new(Arc::new(store.clone())).observe(LastUsedRecorder::spawn(
                Arc::new(store),
                Duration::from_secs(60),
            )),
        )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `SqliteKeyStore::open("keys.sqlite3")` for a file; in memory here so that every run
    // starts with an empty table.
    let store = SqliteKeyStore::open_in_memory()?;
    let issued = store
        .issue(
            NewKey::new(
                "org_acme",
                "sqlite demo",
                &tower_api_key::key::KeyFamily::FORG_LIVE,
            )
            .scopes(ForgScope::ReadSessions),
        )
        .await?;
    println!("keys in SQLite (digests only):");
    for record in store.list("org_acme").await? {
        let state = if record.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        println!(
            "  {}  {}  {}  {}",
            record.id, record.hint, record.scopes, state
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8082").await?;
    let key = issued.key().expose_secret();
    println!("\nnew key (shown once): {key}");
    println!("  curl -i http://127.0.0.1:8082/v1/sessions -H 'Authorization: Bearer {key}'");
    axum::serve(listener, app(store)).await?;
    Ok(())
}

//! Write your own store: [`KeyStore`] and [`ManageKeys`] on SQLite, the template for a
//! MySQL, DynamoDB or HTTP-backed store.
//!
//! ```text
//! cargo run --example sqlite_store               # in-memory SQLite, server on 127.0.0.1:8082
//! ```
//!
//! A store implements a lookup by digest and seven primitives, each atomic on its own;
//! issuing, rotation, the owner limit and the family checks are `ManageKeys`' provided
//! methods, the same for every store. What each primitive must get right:
//! - Keep only digests: the `digest` column holds the 32-byte SHA-256 of the key.
//! - `lookup`: by digest, `Ok(None)` when unknown, `Err` only when the database failed (the
//!   layer then answers 503 and fails closed). A row that is not a valid record is an error.
//! - `insert`: count the owner's active keys and insert in one transaction (`BEGIN
//!   IMMEDIATE`), and schedule a replaced key's revocation in the same one.
//! - Never block the async runtime: SQLite calls run on Tokio's blocking pool.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use rusqlite::{params, Connection, Row, TransactionBehavior};
use tower::ServiceBuilder;
use tower_api_key::activity::LastUsedRecorder;
use tower_api_key::key::{KeyDigest, KeyHasher};
use tower_api_key::rate_limit::{ClassName, Quota};
use tower_api_key::store::{
    Insert, KeyId, KeyPolicy, KeyRecord, LookupResult, ManageError, ManageKeys, NewKey, Revocation,
    StoreError, StoreErrorKind,
};
use tower_api_key::{require, ForgScope, KeyStore, Principal, ScopeSet, ServiceBuilderExt};

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
    revoked     INTEGER NOT NULL DEFAULT 0, -- 1: revoked now, whatever the clocks say
    disabled    INTEGER NOT NULL DEFAULT 0, -- 1: refused until enabled again
    metadata    TEXT NOT NULL DEFAULT '{}', -- JSON: name -> value
    allowed_networks TEXT NOT NULL DEFAULT '[]', -- JSON: CIDR strings
    last_used_at INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_owner ON api_keys (owner);
";

const COLUMNS: &str =
    "id, digest, owner, name, prefix, hint, scopes, rate_limits, created_at, expires_at, revoked_at, last_used_at, revoked, disabled, metadata, allowed_networks";

/// Applies a revocation: the earlier time wins, an immediate one sets `revoked`.
const REVOKE: &str = "UPDATE api_keys SET revoked_at = min(coalesce(revoked_at, ?2), ?2),
    revoked = max(revoked, ?3) WHERE id = ?1";

/// Keys in one SQLite database.
#[derive(Clone)]
pub struct SqliteKeyStore {
    connection: Arc<Mutex<Connection>>,
    hasher: KeyHasher,
    policy: KeyPolicy,
}

impl std::fmt::Debug for SqliteKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKeyStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
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
    pub fn open(path: impl AsRef<Path>, policy: KeyPolicy) -> rusqlite::Result<Self> {
        Self::with_connection(Connection::open(path)?, policy)
    }

    /// A private in-memory database.
    pub fn open_in_memory(policy: KeyPolicy) -> rusqlite::Result<Self> {
        Self::with_connection(Connection::open_in_memory()?, policy)
    }

    fn with_connection(connection: Connection, policy: KeyPolicy) -> rusqlite::Result<Self> {
        connection.execute_batch(SCHEMA)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            hasher: KeyHasher::sha256(),
            policy,
        })
    }

    /// Runs `work` on the blocking pool with the connection.
    async fn with_db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, ManageError> + Send + 'static,
    ) -> Result<T, ManageError> {
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

    /// Runs one `UPDATE` of key `id`, then reads the record back.
    async fn update(
        &self,
        id: &KeyId,
        statement: impl FnOnce(&Connection, &KeyId) -> rusqlite::Result<usize> + Send + 'static,
    ) -> Result<Arc<KeyRecord<ForgScope>>, ManageError> {
        let owned = id.clone();
        self.with_db(move |db| statement(db, &owned).map_err(|e| store_error(e).into()))
            .await?;
        self.get(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(id.clone()))
    }

    /// The records `filter` (a `WHERE` clause on `?1`) selects.
    async fn select(
        &self,
        filter: &'static str,
        value: impl rusqlite::ToSql + Send + 'static,
    ) -> Result<Vec<Arc<KeyRecord<ForgScope>>>, ManageError> {
        let policy = self.policy.clone();
        self.with_db(move |db| {
            let mut statement = db
                .prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE {filter}"))
                .map_err(store_error)?;
            let rows = statement
                .query_map(params![value], |row| Ok(record_from_row(row, &policy)))
                .map_err(store_error)?;
            let mut records = Vec::new();
            for row in rows {
                records.push(Arc::new(row.map_err(store_error)??));
            }
            Ok(records)
        })
        .await
    }
}

fn revocation_params(id: &KeyId, revocation: Revocation) -> (String, i64, bool) {
    (
        id.as_str().to_owned(),
        millis(revocation.at()),
        revocation.is_immediate(),
    )
}

/// One row to a record. A row that does not make a valid record is an error of the store
/// (corrupt data), never a silent `None`.
fn record_from_row(row: &Row<'_>, policy: &KeyPolicy) -> Result<KeyRecord<ForgScope>, StoreError> {
    let corrupt =
        |what: &str| StoreError::new(StoreErrorKind::Other, format!("corrupt key row: {what}"));
    let id: String = row.get(0).map_err(store_error)?;
    let digest: Vec<u8> = row.get(1).map_err(store_error)?;
    let prefix: String = row.get(4).map_err(store_error)?;
    let scopes: String = row.get(6).map_err(store_error)?;
    let rate_limits: String = row.get(7).map_err(store_error)?;

    let digest: [u8; 32] = digest.try_into().map_err(|_| corrupt("digest length"))?;
    let family = policy
        .accepted_families()
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
    let optional_time = |i: usize| {
        Ok::<_, StoreError>(row.get::<_, Option<i64>>(i).map_err(store_error)?.map(time))
    };
    record.expires_at = optional_time(9)?;
    record.revoked_at = optional_time(10)?;
    record.last_used_at = optional_time(11)?;
    record.revoked = row.get::<_, i64>(12).map_err(store_error)? != 0;
    record.disabled = row.get::<_, i64>(13).map_err(store_error)? != 0;
    let metadata: String = row.get(14).map_err(store_error)?;
    record.metadata = serde_json::from_str(&metadata).map_err(|_| corrupt("metadata"))?;
    let networks: String = row.get(15).map_err(store_error)?;
    record.allowed_networks =
        serde_json::from_str(&networks).map_err(|_| corrupt("allowed networks"))?;
    record.rate_limits = serde_json::from_str::<BTreeMap<ClassName, Quota>>(&rate_limits)
        .map_err(|_| corrupt("rate limits"))?;
    Ok(record)
}

impl KeyStore for SqliteKeyStore {
    type Scope = ForgScope;

    async fn lookup(&self, digest: &KeyDigest) -> LookupResult<ForgScope> {
        let found = self.select("digest = ?1", digest.as_bytes().to_vec()).await;
        match found {
            Ok(mut records) => Ok(records.pop()),
            Err(ManageError::Store(error)) => Err(error),
            Err(other) => Err(StoreError::new(StoreErrorKind::Other, other.to_string())),
        }
    }

    fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    fn policy(&self) -> &KeyPolicy {
        &self.policy
    }
}

impl ManageKeys for SqliteKeyStore {
    async fn insert(
        &self,
        insert: Insert<ForgScope>,
    ) -> Result<Arc<KeyRecord<ForgScope>>, ManageError> {
        self.with_db(move |db| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_error)?;
            let now = millis(insert.now());
            let freed = insert.frees_slot_of().map_or("", KeyId::as_str).to_owned();
            let record = insert.record();
            let active: i64 = tx
                .query_row(
                    "SELECT count(*) FROM api_keys WHERE owner = ?1 AND id != ?3
                       AND (revoked_at IS NULL OR revoked_at > ?2)
                       AND (expires_at IS NULL OR expires_at > ?2)",
                    params![record.owner, now, freed],
                    |row| row.get(0),
                )
                .map_err(store_error)?;
            let limit = insert.max_active().get();
            if usize::try_from(active).unwrap_or(usize::MAX) >= limit {
                return Err(ManageError::KeyLimitReached { limit });
            }
            if let Some((id, revocation)) = insert.replacing() {
                let updated = tx
                    .execute(REVOKE, revocation_params(id, revocation))
                    .map_err(store_error)?;
                if updated == 0 {
                    return Err(ManageError::NotFound(id.clone()));
                }
            }
            let rate_limits = serde_json::to_string(&record.rate_limits).map_err(store_error)?;
            let inserted = tx.execute(
                &format!("INSERT OR IGNORE INTO api_keys ({COLUMNS}, environment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"),
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
                    record.revoked,
                    record.disabled,
                    serde_json::to_string(&record.metadata).map_err(store_error)?,
                    serde_json::to_string(&record.allowed_networks).map_err(store_error)?,
                    record.environment.as_str(),
                ],
            )
            .map_err(store_error)?;
            if inserted == 0 {
                return Err(ManageError::Duplicate);
            }
            tx.commit().map_err(store_error)?;
            Ok(Arc::new(insert.into_record()))
        })
        .await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord<ForgScope>>>, ManageError> {
        Ok(self.select("id = ?1", id.as_str().to_owned()).await?.pop())
    }

    async fn records_of(&self, owner: &str) -> Result<Vec<Arc<KeyRecord<ForgScope>>>, ManageError> {
        self.select("owner = ?1", owner.to_owned()).await
    }

    async fn revoke_at(
        &self,
        id: &KeyId,
        revocation: Revocation,
    ) -> Result<Arc<KeyRecord<ForgScope>>, ManageError> {
        self.update(id, move |db, id| {
            db.execute(REVOKE, revocation_params(id, revocation))
        })
        .await
    }

    async fn set_disabled(
        &self,
        id: &KeyId,
        disabled: bool,
    ) -> Result<Arc<KeyRecord<ForgScope>>, ManageError> {
        self.update(id, move |db, id| {
            db.execute(
                "UPDATE api_keys SET disabled = ?2 WHERE id = ?1",
                params![id.as_str(), disabled],
            )
        })
        .await
    }

    async fn delete(&self, id: &KeyId) -> Result<Arc<KeyRecord<ForgScope>>, ManageError> {
        let record = self
            .get(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(id.clone()))?;
        let owned = id.clone();
        self.with_db(move |db| {
            db.execute(
                "DELETE FROM api_keys WHERE id = ?1",
                params![owned.as_str()],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await?;
        Ok(record)
    }

    async fn touch(&self, id: &KeyId, at: SystemTime) -> Result<(), StoreError> {
        let id = id.clone();
        let touched = self
            .with_db(move |db| {
                db.execute(
                    "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                    params![id.as_str(), millis(at)],
                )
                .map_err(store_error)?;
                Ok(())
            })
            .await;
        match touched {
            Ok(()) => Ok(()),
            Err(ManageError::Store(error)) => Err(error),
            Err(other) => Err(StoreError::new(StoreErrorKind::Other, other.to_string())),
        }
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
            ServiceBuilder::new()
                .activity(LastUsedRecorder::spawn(
                    Arc::new(store.clone()),
                    Duration::from_secs(60),
                ))
                .authenticate(Arc::new(store)),
        )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `SqliteKeyStore::open("keys.sqlite3", policy)` for a file; in memory here so that every run
    // starts with an empty table.
    let store = SqliteKeyStore::open_in_memory(KeyPolicy::default())?;
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

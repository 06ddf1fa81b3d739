//! [`RedisKeyStore`]: key records shared by several service instances (feature `redis`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{AsyncCommands, Script, ScriptInvocation};

use super::{
    Insert, KeyId, KeyPage, KeyPolicy, KeyRecord, KeyStore, LookupResult, ManageError, ManageKeys,
    Revocation, StoreError, StoreErrorKind,
};
use crate::key::{KeyDigest, KeyHasher};
use crate::scope::Scope;
use crate::RedisConnection;

mod listener;
mod manage;
pub(crate) mod scripts;

pub use listener::RevocationListener;
use scripts::{DELETE, ISSUE, PURGE, REPLACE, REVOKE, SET_DISABLED, TOUCH};

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A Lua script's boolean argument.
fn flag(set: bool) -> &'static str {
    if set {
        "1"
    } else {
        "0"
    }
}

fn redis_error(error: redis::RedisError) -> StoreError {
    StoreError::unavailable(error)
}

/// Key records in Redis, by digest (never the plaintext), shared by every instance that
/// points at the same server and namespace.
///
/// Layout, all under the hash tag `{<namespace>}` so one Lua script may touch them together
/// (on a Redis Cluster they share one slot, see below):
/// `{ns}:digest:<hex>` (hash: `record` JSON, `revoked_at`, `last_used_at`),
/// `{ns}:id:<id>` (digest), `{ns}:owner:<owner>` (set of ids, for listing),
/// `{ns}:active:<owner>` (ids that may still be active, for the owner limit), `{ns}:ids`
/// (every id, in order, for a scan over all keys),
/// `{ns}:refused:<owner>` (ids by when they stop authenticating, for the purge of records
/// past the policy's retention; each such record also expires then). Issue, revoke and the per-owner
/// limit run as Lua scripts, so no race lets an owner pass the limit. Revocations are
/// published on `{ns}:revocations`; [`RevocationListener`] turns them into cache
/// invalidations on every instance.
///
/// A lookup is one round trip (`HGETALL`); put a [`CachedKeyStore`](super::CachedKeyStore) in front to make hits
/// free. Connection failures are store errors: the layer answers 503 (fail closed), and the
/// connection reconnects by itself.
///
/// **On a Redis Cluster** the records stay in the one slot of their hash tag, on one
/// master: a lookup has only the digest, so the record cannot be placed by owner, and
/// issuing must count the owner's keys and write the record and its indexes atomically.
/// That is sound because writes are rare (issue, revoke) and lookups of known keys are
/// answered by the cache; what reaches that master per request is a cache miss (a new
/// key, an unknown or mistyped key: one `HGETALL` each). The per-request state (rate
/// limits, spend, activity) is tagged per key, owner or address and spreads over every
/// slot. Every script gets its keys in `KEYS`.
pub struct RedisKeyStore<S: Scope> {
    connection: RedisConnection,
    namespace: String,
    hasher: KeyHasher,
    policy: KeyPolicy,
    scripts: Arc<Scripts>,
    scope: PhantomData<fn() -> S>,
}

struct Scripts {
    issue: Script,
    revoke: Script,
    set_disabled: Script,
    delete: Script,
    touch: Script,
    purge: Script,
    replace: Script,
}

impl<S: Scope> RedisKeyStore<S> {
    /// Connects to one server at `url` (e.g. `redis://127.0.0.1:6379`), namespace `tak`.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self::new(
            RedisConnection::open(url).await.map_err(redis_error)?,
        ))
    }

    /// A store on `connection` (standalone or cluster), namespace `tak`.
    pub fn new(connection: RedisConnection) -> Self {
        Self {
            connection,
            namespace: "tak".to_owned(),
            hasher: KeyHasher::sha256(),
            policy: KeyPolicy::default(),
            scripts: Arc::new(Scripts {
                issue: Script::new(ISSUE),
                revoke: Script::new(REVOKE),
                set_disabled: Script::new(SET_DISABLED),
                delete: Script::new(DELETE),
                touch: Script::new(TOUCH),
                purge: Script::new(PURGE),
                replace: Script::new(REPLACE),
            }),
            scope: PhantomData,
        }
    }

    /// The connection, for a readiness probe ([`RedisConnection::ping`]).
    pub fn connection(&self) -> &RedisConnection {
        &self.connection
    }

    /// Keys live under `{namespace}:` (default `tak`); instances sharing keys share it.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Hash keys with `hasher` (every instance must use the same).
    #[must_use]
    pub fn with_hasher(mut self, hasher: KeyHasher) -> Self {
        self.hasher = hasher;
        self
    }

    /// Issues, verifies and counts keys under `policy` (every instance should use the
    /// same).
    #[must_use]
    pub fn with_policy(mut self, policy: KeyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Adds `owner`'s keys to the index a [`KeyScan`](crate::events::KeyScan) walks, and
    /// answers how many it holds: for keys issued before the index existed (0.x), once per
    /// owner the application knows. Keys issued since are indexed as they are issued.
    ///
    /// # Errors
    /// The server's.
    pub async fn index_owner(&self, owner: &str) -> Result<usize, StoreError> {
        let mut connection = self.connection.clone();
        let ids: Vec<String> = connection
            .smembers(self.owner_key(owner))
            .await
            .map_err(redis_error)?;
        if !ids.is_empty() {
            let members: Vec<(u8, &str)> = ids.iter().map(|id| (0, id.as_str())).collect();
            let _: usize = connection
                .zadd_multiple(self.ids_key(), &members)
                .await
                .map_err(redis_error)?;
        }
        Ok(ids.len())
    }

    fn prefix(&self) -> String {
        format!("{{{}}}:", self.namespace)
    }

    /// The pub/sub channel revocations are published on.
    pub fn revocation_channel(&self) -> String {
        format!("{}revocations", self.prefix())
    }

    /// A record's hash, by its digest (lower-case hex, as its id key holds it).
    fn record_key(&self, digest: impl fmt::Display) -> String {
        format!("{}digest:{digest}", self.prefix())
    }

    fn id_key(&self, id: &str) -> String {
        format!("{}id:{id}", self.prefix())
    }

    /// The digest `id`'s id key holds: the name of its record.
    async fn digest_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut connection = self.connection.clone();
        connection.get(self.id_key(id)).await.map_err(redis_error)
    }

    /// Every id, in a sorted set of equal scores (so in id order), for a scan's cursor.
    fn ids_key(&self) -> String {
        format!("{}ids", self.prefix())
    }

    fn owner_key(&self, owner: &str) -> String {
        format!("{}owner:{owner}", self.prefix())
    }

    /// The owner's ids that may still be active: what the owner limit counts.
    fn active_key(&self, owner: &str) -> String {
        format!("{}active:{owner}", self.prefix())
    }

    /// The owner's ids by when they stop authenticating: what the purge reads.
    fn refused_key(&self, owner: &str) -> String {
        format!("{}refused:{owner}", self.prefix())
    }

    async fn read(&self, digest: &KeyDigest) -> LookupResult<S> {
        let mut connection = self.connection.clone();
        let fields: Vec<(String, String)> = connection
            .hgetall(self.record_key(digest))
            .await
            .map_err(redis_error)?;
        let corrupt =
            |what: &str| StoreError::new(StoreErrorKind::Other, format!("corrupt {what}"));
        let mut record: Option<KeyRecord<S>> = None;
        let (mut revoked_at, mut last_used_at, mut revoked, mut disabled, mut version) =
            (None, None, false, false, None);
        for (field, value) in fields {
            match field.as_str() {
                "record" => {
                    record = Some(serde_json::from_str(&value).map_err(|_| corrupt("record"))?)
                }
                // Fail closed: a revocation that cannot be read is not "no revocation".
                "revoked_at" => {
                    revoked_at = Some(value.parse::<u64>().map_err(|_| corrupt("revoked_at"))?)
                }
                "revoked" if value == "1" => revoked = true,
                "revoked" => return Err(corrupt("revoked")),
                "disabled" if value == "1" => disabled = true,
                "disabled" => return Err(corrupt("disabled")),
                "last_used_at" => last_used_at = value.parse::<u64>().ok(),
                // Fail closed: an `If-Match` must never match a version that cannot be read.
                "version" => version = Some(value.parse::<u64>().map_err(|_| corrupt("version"))?),
                _ => {}
            }
        }
        Ok(record.map(|mut record| {
            let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
            if let Some(ms) = revoked_at {
                record.set_revoked_at(Some(at(ms)));
            }
            if let Some(ms) = last_used_at {
                record.set_last_used_at(Some(at(ms)));
            }
            record.set_revoked(record.revoked() || revoked);
            record.set_disabled(record.disabled() || disabled);
            if let Some(version) = version {
                record.set_version(version);
            }
            Arc::new(record)
        }))
    }

    /// The policy's retention in milliseconds, or "" (kept forever) when it has no end.
    fn retention_ms(&self) -> String {
        let retention = self.policy.retention_period();
        match u64::try_from(retention.as_millis()) {
            Ok(ms) if ms < 1 << 53 => ms.to_string(),
            _ => String::new(),
        }
    }

    async fn revoke_script(&self, id: &KeyId, revocation: Revocation) -> Result<bool, ManageError> {
        let Some(record) = self.get(id).await? else {
            return Ok(false);
        };
        let mut connection = self.connection.clone();
        let found: i64 = self
            .scripts
            .revoke
            .key(self.id_key(id.as_str()))
            .key(self.record_key(record.digest()))
            .key(self.refused_key(record.owner()))
            .arg(record.digest().to_string())
            .arg(millis(revocation.at()))
            .arg(self.revocation_channel())
            .arg(id.as_str())
            .arg(flag(revocation.is_immediate()))
            .arg(millis(self.policy.now()))
            .arg(self.retention_ms())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(found == 1)
    }

    /// Adds an (id key, record hash) pair per id to `invocation`, and returns the digests
    /// (`""` for an id key that was missing, whose pair names a record hash never used).
    async fn declare_records(
        &self,
        invocation: &mut ScriptInvocation<'_>,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let keys: Vec<String> = ids.iter().map(|id| self.id_key(id)).collect();
        let digests: Vec<Option<String>> = connection.mget(&keys).await.map_err(redis_error)?;
        Ok(keys
            .into_iter()
            .zip(digests)
            .map(|(id_key, digest)| {
                let digest = digest.unwrap_or_default();
                invocation.key(id_key).key(self.record_key(&digest));
                digest
            })
            .collect())
    }
}

/// How often issuing reads an owner's active keys again when they changed between the read
/// and the script (another instance issued or revoked for the same owner meanwhile).
const ISSUE_ATTEMPTS: usize = 8;

impl<S: Scope> KeyStore for RedisKeyStore<S> {
    type Scope = S;

    async fn lookup(&self, digest: &KeyDigest) -> LookupResult<S> {
        self.read(digest).await
    }

    fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    /// `PING` (on a cluster, every master).
    async fn ready(&self) -> Result<(), StoreError> {
        self.connection.ping().await.map(drop).map_err(redis_error)
    }
}

impl<S: Scope> fmt::Debug for RedisKeyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKeyStore")
            .field("namespace", &self.namespace)
            .field("hasher", &self.hasher)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

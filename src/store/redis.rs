//! [`RedisKeyStore`]: key records shared by several service instances (feature `redis`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::{
    CachedKeyStore, Insert, KeyId, KeyPolicy, KeyRecord, KeyStore, LookupResult, ManageError,
    ManageKeys, StoreError, StoreErrorKind,
};
use crate::key::{KeyDigest, KeyHasher};
use crate::scope::Scope;

/// Counts the owner's active keys and inserts the new one only below the limit; when it
/// replaces a key, schedules that key's revocation in the same step. KEYS: owner set,
/// record hash, id key. ARGV: record JSON, id, limit, now (ms), key prefix, id not to
/// count or "", digest, replaced id or "", its revocation time (ms) or "", channel.
/// Returns 1, 0 (limit), -1 (duplicate), -2 (replaced key unknown).
const ISSUE: &str = r"
local now = tonumber(ARGV[4])
if ARGV[8] ~= '' and redis.call('SISMEMBER', KEYS[1], ARGV[8]) == 0 then return -2 end
local active = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[6] then
    local digest = redis.call('GET', ARGV[5] .. 'id:' .. id)
    if digest then
      local fields = redis.call('HMGET', ARGV[5] .. 'digest:' .. digest, 'record', 'revoked_at')
      if fields[1] then
        local expires = cjson.decode(fields[1]).expires_at
        local revoked = tonumber(fields[2])
        local is_revoked = revoked ~= nil and revoked <= now
        local is_expired = type(expires) == 'number' and expires <= now
        if not is_revoked and not is_expired then active = active + 1 end
      end
    end
  end
end
if active >= tonumber(ARGV[3]) then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if redis.call('HSETNX', KEYS[2], 'record', ARGV[1]) == 0 then return -1 end
redis.call('SET', KEYS[3], ARGV[7])
redis.call('SADD', KEYS[1], ARGV[2])
if ARGV[8] ~= '' then
  local old = ARGV[5] .. 'digest:' .. redis.call('GET', ARGV[5] .. 'id:' .. ARGV[8])
  local current = tonumber(redis.call('HGET', old, 'revoked_at'))
  if current == nil or current > tonumber(ARGV[9]) then
    redis.call('HSET', old, 'revoked_at', ARGV[9])
  end
  redis.call('PUBLISH', ARGV[10], ARGV[8])
end
return 1
";

/// Sets `revoked_at` (earlier wins) and tells every instance. KEYS: id key. ARGV: key
/// prefix, revocation time (ms), channel, id.
const REVOKE: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
local key = ARGV[1] .. 'digest:' .. digest
if redis.call('EXISTS', key) == 0 then return 0 end
local current = tonumber(redis.call('HGET', key, 'revoked_at'))
if current == nil or current > tonumber(ARGV[2]) then
  redis.call('HSET', key, 'revoked_at', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Removes a record, its id and its owner-set entry, and tells every instance. KEYS: id
/// key, owner set. ARGV: key prefix, id, channel.
const DELETE: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
redis.call('DEL', ARGV[1] .. 'digest:' .. digest, KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
";

/// Sets `last_used_at` when later than the stored one. KEYS: id key. ARGV: key prefix,
/// time (ms).
const TOUCH: &str = r"
local digest = redis.call('GET', KEYS[1])
if not digest then return 0 end
local key = ARGV[1] .. 'digest:' .. digest
if redis.call('EXISTS', key) == 0 then return 0 end
local current = tonumber(redis.call('HGET', key, 'last_used_at'))
if current == nil or current < tonumber(ARGV[2]) then
  redis.call('HSET', key, 'last_used_at', ARGV[2])
end
return 1
";

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn redis_error(error: redis::RedisError) -> StoreError {
    StoreError::unavailable(error)
}

/// Key records in Redis, by digest (never the plaintext), shared by every instance that
/// points at the same server and namespace.
///
/// Layout, all under the hash tag `{<namespace>}` so one Lua script may touch them together:
/// `{ns}:digest:<hex>` (hash: `record` JSON, `revoked_at`, `last_used_at`),
/// `{ns}:id:<id>` (digest), `{ns}:owner:<owner>` (set of ids). Issue, revoke and the per-owner
/// limit run as Lua scripts, so no race lets an owner pass the limit. Revocations are
/// published on `{ns}:revocations`; [`RevocationListener`] turns them into cache
/// invalidations on every instance.
///
/// A lookup is one round trip (`HGETALL`); put a [`CachedKeyStore`] in front to make hits
/// free. Connection failures are store errors: the layer answers 503 (fail closed), and the
/// connection manager reconnects by itself.
pub struct RedisKeyStore<S: Scope> {
    client: redis::Client,
    connection: ConnectionManager,
    namespace: String,
    hasher: KeyHasher,
    policy: KeyPolicy,
    scripts: Arc<Scripts>,
    scope: PhantomData<fn() -> S>,
}

struct Scripts {
    issue: Script,
    revoke: Script,
    delete: Script,
    touch: Script,
}

impl<S: Scope> RedisKeyStore<S> {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`), namespace `tak`.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_client(redis::Client::open(url).map_err(redis_error)?).await
    }

    /// Connects with `client`.
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub async fn connect_client(client: redis::Client) -> Result<Self, StoreError> {
        let connection = client.get_connection_manager().await.map_err(redis_error)?;
        Ok(Self {
            client,
            connection,
            namespace: "tak".to_owned(),
            hasher: KeyHasher::sha256(),
            policy: KeyPolicy::default(),
            scripts: Arc::new(Scripts {
                issue: Script::new(ISSUE),
                revoke: Script::new(REVOKE),
                delete: Script::new(DELETE),
                touch: Script::new(TOUCH),
            }),
            scope: PhantomData,
        })
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

    fn prefix(&self) -> String {
        format!("{{{}}}:", self.namespace)
    }

    /// The pub/sub channel revocations are published on.
    pub fn revocation_channel(&self) -> String {
        format!("{}revocations", self.prefix())
    }

    fn record_key(&self, digest: &KeyDigest) -> String {
        format!("{}digest:{digest}", self.prefix())
    }

    fn id_key(&self, id: &KeyId) -> String {
        format!("{}id:{id}", self.prefix())
    }

    fn owner_key(&self, owner: &str) -> String {
        format!("{}owner:{owner}", self.prefix())
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
        let (mut revoked_at, mut last_used_at) = (None, None);
        for (field, value) in fields {
            match field.as_str() {
                "record" => {
                    record = Some(serde_json::from_str(&value).map_err(|_| corrupt("record"))?)
                }
                // Fail closed: a revocation that cannot be read is not "no revocation".
                "revoked_at" => {
                    revoked_at = Some(value.parse::<u64>().map_err(|_| corrupt("revoked_at"))?)
                }
                "last_used_at" => last_used_at = value.parse::<u64>().ok(),
                _ => {}
            }
        }
        Ok(record.map(|mut record| {
            let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
            if let Some(ms) = revoked_at {
                record.revoked_at = Some(at(ms));
            }
            if let Some(ms) = last_used_at {
                record.last_used_at = Some(at(ms));
            }
            Arc::new(record)
        }))
    }

    async fn revoke_script(&self, id: &KeyId, at: SystemTime) -> Result<bool, ManageError> {
        let mut connection = self.connection.clone();
        let found: i64 = self
            .scripts
            .revoke
            .key(self.id_key(id))
            .arg(self.prefix())
            .arg(millis(at))
            .arg(self.revocation_channel())
            .arg(id.as_str())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(found == 1)
    }
}

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
}

/// Issue (with the owner limit and a rotation's revocation), revoke, delete and last use
/// each run as one Lua script: atomic, with no race between instances. Revocations and
/// deletions are published for [`RevocationListener`].
impl<S: Scope> ManageKeys for RedisKeyStore<S> {
    async fn insert(&self, insert: Insert<S>) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let record = insert.record();
        let json =
            serde_json::to_string(record).map_err(|e| StoreError::new(StoreErrorKind::Other, e))?;
        let replaced_id = insert.replacing().map(|(id, _)| id.clone());
        let (replaced, replaced_at) = match insert.replacing() {
            Some((id, at)) => (id.as_str(), millis(at).to_string()),
            None => ("", String::new()),
        };
        let mut connection = self.connection.clone();
        let outcome: i64 = self
            .scripts
            .issue
            .key(self.owner_key(&record.owner))
            .key(self.record_key(&record.digest))
            .key(self.id_key(&record.id))
            .arg(json)
            .arg(record.id.as_str())
            .arg(insert.max_active().get())
            .arg(millis(insert.now()))
            .arg(self.prefix())
            .arg(insert.frees_slot_of().map_or("", KeyId::as_str))
            .arg(record.digest.to_string())
            .arg(replaced)
            .arg(replaced_at)
            .arg(self.revocation_channel())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        match outcome {
            1 => Ok(Arc::new(insert.into_record())),
            0 => Err(ManageError::KeyLimitReached {
                limit: insert.max_active().get(),
            }),
            -2 => match replaced_id {
                Some(id) => Err(ManageError::NotFound(id)),
                None => Err(ManageError::Duplicate),
            },
            _ => Err(ManageError::Duplicate),
        }
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord<S>>>, ManageError> {
        let mut connection = self.connection.clone();
        let digest: Option<String> = connection.get(self.id_key(id)).await.map_err(redis_error)?;
        let Some(digest) = digest.and_then(|d| d.parse::<KeyDigest>().ok()) else {
            return Ok(None);
        };
        Ok(self.read(&digest).await?)
    }

    async fn records_of(&self, owner: &str) -> Result<Vec<Arc<KeyRecord<S>>>, ManageError> {
        let mut connection = self.connection.clone();
        let ids: Vec<String> = connection
            .smembers(self.owner_key(owner))
            .await
            .map_err(redis_error)?;
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            if let Ok(id) = KeyId::new(id) {
                if let Some(record) = self.get(&id).await? {
                    records.push(record);
                }
            }
        }
        Ok(records)
    }

    async fn revoke_at(
        &self,
        id: &KeyId,
        at: SystemTime,
    ) -> Result<Arc<KeyRecord<S>>, ManageError> {
        if !self.revoke_script(id, at).await? {
            return Err(ManageError::NotFound(id.clone()));
        }
        self.get(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(id.clone()))
    }

    async fn delete(&self, id: &KeyId) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let record = self
            .get(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(id.clone()))?;
        let mut connection = self.connection.clone();
        let found: i64 = self
            .scripts
            .delete
            .key(self.id_key(id))
            .key(self.owner_key(&record.owner))
            .arg(self.prefix())
            .arg(id.as_str())
            .arg(self.revocation_channel())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        match found {
            1 => Ok(record),
            _ => Err(ManageError::NotFound(id.clone())),
        }
    }

    async fn touch(&self, id: &KeyId, at: SystemTime) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let _found: i64 = self
            .scripts
            .touch
            .key(self.id_key(id))
            .arg(self.prefix())
            .arg(millis(at))
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
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

/// Keeps a [`CachedKeyStore`] over a [`RedisKeyStore`] in step with revocations made by any
/// instance: it subscribes to the store's revocation channel and invalidates each revoked
/// key. When the subscription drops it reconnects with backoff, and on every (re)connect it
/// clears the cache, since messages may have been missed; in between, the cache's TTL bounds
/// staleness. The task stops when the listener is dropped.
pub struct RevocationListener {
    task: tokio::task::JoinHandle<()>,
    received: Arc<AtomicU64>,
    connects: Arc<AtomicU64>,
}

impl RevocationListener {
    /// Spawns the listener on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn<S: Scope>(cache: Arc<CachedKeyStore<RedisKeyStore<S>>>) -> Self {
        let received = Arc::new(AtomicU64::new(0));
        let connects = Arc::new(AtomicU64::new(0));
        let (counted, connected) = (Arc::clone(&received), Arc::clone(&connects));
        let task = tokio::spawn(async move {
            let client = cache.inner().client.clone();
            let channel = cache.inner().revocation_channel();
            let mut backoff = Duration::from_millis(50);
            loop {
                if let Ok(mut pubsub) = client.get_async_pubsub().await {
                    if pubsub.subscribe(&channel).await.is_ok() {
                        backoff = Duration::from_millis(50);
                        cache.invalidate_all();
                        connected.fetch_add(1, Ordering::SeqCst);
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            let id = message
                                .get_payload::<String>()
                                .ok()
                                .and_then(|id| KeyId::new(id).ok());
                            if let Some(id) = id {
                                cache.invalidate(&id).await;
                            }
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                #[cfg(feature = "tracing")]
                tracing::warn!(target: "tower_api_key", "revocation channel lost; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        Self {
            task,
            received,
            connects,
        }
    }

    /// Revocation messages received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Successful subscriptions so far (1 after start, more after reconnects).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }
}

impl Drop for RevocationListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for RevocationListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationListener")
            .field("received", &self.received())
            .field("connects", &self.connects())
            .finish()
    }
}

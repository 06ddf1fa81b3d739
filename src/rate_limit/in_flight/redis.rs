//! [`RedisInFlight`]: slots shared by every instance, each a lease that its holder renews
//! (feature `redis`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::{InFlightBackend, InFlightLimit};
use crate::backend_error::BackendError;
use crate::rate_limit::backend::LimitKey;
use crate::redis_connection::{subject_key, Subject};
use crate::RedisConnection;

/// Takes a slot when fewer than `max` leases are live: the ended ones leave first. KEYS:
/// the holder's set of leases (member → when it ends, ms on the server's clock). ARGV:
/// max, lease (ms), member. Returns 1, or 0 when full.
pub(crate) const ACQUIRE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
";

/// Extends a live lease (a long response still streaming). KEYS: the set. ARGV: lease
/// (ms), member. Returns 1, or 0 when the lease had ended.
pub(crate) const RENEW: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ends = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]))
if ends == nil or ends <= now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
end
return 1
";

/// Slots in Redis, shared by every instance on the same server and namespace: per key (or
/// owner) a sorted set of leases, `<namespace>:{k:<key id>}:inflight:<limit>` (tagged per
/// subject, so a cluster spreads them). A request's lease lasts `lease` (30 s by default)
/// and its holder renews it every third of that while the request lasts; a crashed
/// instance's slots come back when their leases end. Times are the server's.
#[derive(Clone)]
pub struct RedisInFlight {
    connection: RedisConnection,
    namespace: Arc<str>,
    lease: Duration,
    scripts: Arc<(Script, Script)>,
}

impl RedisInFlight {
    /// Slots through `connection`, namespace `tak`, leases of 30 s.
    pub fn new(connection: RedisConnection) -> Self {
        Self {
            connection,
            namespace: Arc::from("tak"),
            lease: Duration::from_secs(30),
            scripts: Arc::new((Script::new(ACQUIRE), Script::new(RENEW))),
        }
    }

    /// Keys live under `namespace:` (default `tak`).
    #[must_use]
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Arc::from(namespace);
        self
    }

    /// Each slot's lease (at least 1 s, at most a day): how long a crashed instance's
    /// slots stay taken.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.clamp(Duration::from_secs(1), Duration::from_secs(86_400));
        self
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }
}

impl fmt::Debug for RedisInFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisInFlight")
            .field("namespace", &self.namespace)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// A slot of [`RedisInFlight`]: renewed while held, given back (`ZREM`) when dropped.
pub struct RedisSlot {
    backend: RedisInFlight,
    key: String,
    member: String,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for RedisSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSlot").finish_non_exhaustive()
    }
}

impl InFlightBackend for RedisInFlight {
    type Slot = RedisSlot;

    async fn acquire(
        &self,
        limit: &InFlightLimit,
        key: LimitKey<'_>,
    ) -> Result<Option<RedisSlot>, BackendError> {
        let name = limit.name();
        let state = match key {
            LimitKey::ApiKey(id) => subject_key(
                &self.namespace,
                Subject::Key(id.as_str()),
                format_args!("inflight:{name}"),
            ),
            LimitKey::Owner { owner, environment } => subject_key(
                &self.namespace,
                Subject::Owner(owner),
                format_args!("inflight:{name}:{environment}"),
            ),
            LimitKey::ClientIp(ip) => subject_key(
                &self.namespace,
                Subject::Client(ip),
                format_args!("inflight:{name}"),
            ),
        };
        let mut random = [0_u8; 12];
        getrandom::fill(&mut random).map_err(BackendError::new)?;
        let member = base16ct::lower::encode_string(&random);
        let mut connection = self.connection.clone();
        let taken: i64 = self
            .scripts
            .0
            .key(&state)
            .arg(limit.max().get())
            .arg(self.lease_ms())
            .arg(&member)
            .invoke_async(&mut connection)
            .await
            .map_err(BackendError::new)?;
        if taken != 1 {
            return Ok(None);
        }
        let mut slot = RedisSlot {
            backend: self.clone(),
            key: state,
            member,
            renewal: None,
        };
        slot.renewal = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            runtime.spawn(renew(
                slot.backend.clone(),
                slot.key.clone(),
                slot.member.clone(),
            ))
        });
        Ok(Some(slot))
    }
}

/// Renews the lease every third of it until the slot is given back (the task aborted).
async fn renew(backend: RedisInFlight, key: String, member: String) {
    loop {
        tokio::time::sleep(backend.lease / 3).await;
        let mut connection = backend.connection.clone();
        let renewed: Result<i64, _> = backend
            .scripts
            .1
            .key(&key)
            .arg(backend.lease_ms())
            .arg(&member)
            .invoke_async(&mut connection)
            .await;
        if matches!(renewed, Ok(0)) {
            return; // the lease ended (a long pause): nothing left to renew
        }
    }
}

impl Drop for RedisSlot {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the lease ends by itself
        };
        let mut connection = self.backend.connection.clone();
        let (key, member) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.member),
        );
        runtime.spawn(async move {
            let _: Result<i64, _> = redis::cmd("ZREM")
                .arg(&key)
                .arg(&member)
                .query_async(&mut connection)
                .await;
        });
    }
}

//! [`RedisRateLimiter`]: quotas shared by several service instances (feature `redis`).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::backend::{Decision, LimitKey, RateLimitBackend};
use super::Quota;
use super::RateClass;
use crate::backend_error::BackendError;
use crate::redis_connection::{subject_key, Subject};
use crate::redis_script::ScriptRunner;
use crate::RedisConnection;

/// GCRA in one atomic step on the server's clock. KEYS: the state key. ARGV: emission
/// interval and window in microseconds, and the request's units. Returns allowed (0/1),
/// remaining (units), retry-after and reset in microseconds.
pub(crate) const GCRA: &str = r"
local period = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + period * tonumber(ARGV[3])
local allow_at = next_tat - window
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1)
return {1, math.floor((now + window - next_tat) / period), 0, next_tat - now}
";

/// Gives units back: the state moves back by their emission intervals, never before the
/// server's now (a window already passed is not credited twice). KEYS: the state key.
/// ARGV: emission interval (µs), units. Returns 1.
pub(crate) const GCRA_REFUND: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 1 end
local back = tat - tonumber(ARGV[1]) * tonumber(ARGV[2])
if back <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.0f', back), 'PX', math.ceil((back - now) / 1000) + 1)
end
return 1
";

/// The decision for every instance at once: GCRA as a Lua script in Redis, one round trip
/// per request (`EVALSHA`), no read-modify-write from the client. State keys are namespaced
/// and tagged per subject (`<namespace>:{k:<key id>}:rl:<class>:<quota>`, `{ip:<address>}`,
/// `{o:<owner>}`), so on a Redis Cluster the buckets spread over every master; they
/// expire by themselves once the bucket is
/// full again. Time is Redis's own (`TIME`), so instances need no synchronised clocks.
///
/// A connection failure is a [`BackendError`]; the layer then follows its
/// [`OnBackendError`](super::OnBackendError) policy (allow by default).
#[derive(Clone)]
pub struct RedisRateLimiter {
    runner: ScriptRunner,
    refund: Arc<redis::Script>,
}

impl RedisRateLimiter {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`), namespace `tak`.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Ok(Self::from_runner(ScriptRunner::connect(url, GCRA).await?))
    }

    /// Uses `connection` (standalone or cluster), namespace `tak`.
    pub fn new(connection: RedisConnection) -> Self {
        Self::from_runner(ScriptRunner::new(connection, GCRA))
    }

    fn from_runner(runner: ScriptRunner) -> Self {
        Self {
            runner,
            refund: Arc::new(redis::Script::new(GCRA_REFUND)),
        }
    }

    /// The state key of `key` in `class` under `quota`.
    fn state_key(&self, class: &str, key: LimitKey<'_>, quota: Quota) -> String {
        let (requests, window) = (quota.requests().get(), quota.window().as_secs());
        match key {
            LimitKey::ApiKey(id) => subject_key(
                &self.runner.namespace,
                Subject::Key(id.as_str()),
                format_args!("rl:{class}:{requests}/{window}"),
            ),
            LimitKey::ClientIp(ip) => subject_key(
                &self.runner.namespace,
                Subject::Client(ip),
                format_args!("rl:{class}:{requests}/{window}"),
            ),
            LimitKey::Owner { owner, environment } => subject_key(
                &self.runner.namespace,
                Subject::Owner(owner),
                format_args!("rl:{class}:{requests}/{window}:{environment}"),
            ),
        }
    }

    /// State keys live under `{namespace}:rl:` (default `tak`).
    #[must_use]
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.runner.namespace = Arc::from(namespace);
        self
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.runner.fmt_as("RedisRateLimiter", f)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl RateLimitBackend for RedisRateLimiter {
    type Class = Arc<str>;

    fn register(&self, class: &RateClass) -> Arc<str> {
        Arc::from(class.name().as_str())
    }

    async fn check(
        &self,
        class: &Arc<str>,
        key: LimitKey<'_>,
        quota: Quota,
    ) -> Result<Decision, BackendError> {
        self.check_units(class, key, quota, NonZeroU32::MIN).await
    }

    async fn check_units(
        &self,
        class: &Arc<str>,
        key: LimitKey<'_>,
        quota: Quota,
        units: NonZeroU32,
    ) -> Result<Decision, BackendError> {
        let state_key = self.state_key(class, key, quota);
        let period = micros(quota.interval()).max(1);
        let units = units.get().min(quota.requests().get());
        let mut connection = self.runner.connection.clone();
        let (allowed, remaining, retry_us, reset_us): (i64, i64, i64, i64) = self
            .runner
            .script
            .key(state_key)
            .arg(period)
            .arg(period * u64::from(quota.requests().get()))
            .arg(units)
            .invoke_async(&mut connection)
            .await
            .map_err(BackendError::new)?;
        let duration = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Ok(if allowed == 1 {
            let remaining = u32::try_from(remaining).unwrap_or(0);
            Decision::allowed(quota, remaining, duration(reset_us))
        } else {
            Decision::limited(quota, duration(retry_us), duration(reset_us))
        })
    }

    async fn refund(
        &self,
        class: &Arc<str>,
        key: LimitKey<'_>,
        quota: Quota,
        units: NonZeroU32,
    ) -> Result<(), BackendError> {
        let state_key = self.state_key(class, key, quota);
        let units = units.get().min(quota.requests().get());
        let mut connection = self.runner.connection.clone();
        let _: i64 = self
            .refund
            .key(state_key)
            .arg(micros(quota.interval()).max(1))
            .arg(units)
            .invoke_async(&mut connection)
            .await
            .map_err(BackendError::new)?;
        Ok(())
    }
}

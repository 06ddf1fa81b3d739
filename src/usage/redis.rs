//! [`RedisUsage`]: spend counters shared by every instance (feature `redis`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::Script;

use super::backend::{Charge, Counter, Spent, UsageBackend};
use super::budget::BudgetPer;
use crate::rate_limit::BackendError;

/// One charge, atomically, on Redis's clock. The window (UTC hour or calendar month) is
/// computed here from `TIME` with the same civil-calendar algorithm as `Period::window`,
/// so instances with skewed clocks still agree on when a period ends. KEYS: the counter's
/// prefix (the window's index is appended; same hash slot). ARGV: cost, cap, 1 to
/// reserve / 0 to record, `hour` or `month`. Returns allowed (0/1), spent, the window's
/// end (Unix seconds) and the milliseconds left until then.
const CHARGE: &str = r"
local cost = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1])
local index, finish
if ARGV[4] == 'hour' then
  index = math.floor(now / 3600)
  finish = (index + 1) * 3600
else
  local z = math.floor(now / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  index = year * 12 + month - 1
  local y, m = year, month + 1
  if m == 13 then y, m = year + 1, 1 end
  if m <= 2 then y = y - 1 end
  local e = math.floor(y / 400)
  local ye = y - e * 400
  local mq = m > 2 and m - 3 or m + 9
  local de = ye * 365 + math.floor(ye / 4) - math.floor(ye / 100) + math.floor((153 * mq + 2) / 5)
  finish = (e * 146097 + de - 719468) * 86400
end
local key = KEYS[1] .. ':' .. index
local spent = tonumber(redis.call('GET', key)) or 0
local allowed = true
if ARGV[3] == '1' then
  if cost == 0 then allowed = spent < cap else allowed = spent + cost <= cap end
end
if allowed and cost > 0 then
  spent = redis.call('INCRBY', key, ARGV[1])
  redis.call('EXPIREAT', key, finish + 3600)
end
return {allowed and 1 or 0, spent, finish, (finish - now) * 1000 - math.floor(tonumber(time[2]) / 1000)}
";

/// Spend counters in Redis: one script per charge (one round trip), atomic, on the
/// server's clock, so every instance shares each budget exactly. Counters live under
/// `{<namespace>}:spend:` and expire an hour after their period ends.
///
/// A connection failure is a [`BackendError`]; the layer then follows its
/// [`OnBackendError`](crate::rate_limit::OnBackendError) policy (503 by default).
#[derive(Clone)]
pub struct RedisUsage {
    connection: ConnectionManager,
    namespace: Arc<str>,
    script: Arc<Script>,
}

impl RedisUsage {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`), namespace `tak`.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let client = redis::Client::open(url).map_err(BackendError::new)?;
        let connection = client
            .get_connection_manager()
            .await
            .map_err(BackendError::new)?;
        Ok(Self::new(connection))
    }

    /// Uses an existing connection manager.
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            namespace: Arc::from("tak"),
            script: Arc::new(Script::new(CHARGE)),
        }
    }

    /// Counters live under `{namespace}:spend:` (default `tak`).
    #[must_use]
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Arc::from(namespace);
        self
    }
}

impl fmt::Debug for RedisUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUsage")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl UsageBackend for RedisUsage {
    async fn charge(
        &self,
        counter: Counter<'_>,
        cost: u64,
        cap: u64,
        charge: Charge,
    ) -> Result<Spent, BackendError> {
        let per = match counter.per {
            BudgetPer::Owner => "o",
            BudgetPer::Key => "k",
        };
        let prefix = format!(
            "{{{}}}:spend:{}:{per}:{}:{}",
            self.namespace,
            counter.environment,
            counter.period.as_str(),
            counter.subject
        );
        let mut connection = self.connection.clone();
        let (allowed, spent, finish, reset_ms): (i64, i64, i64, i64) = self
            .script
            .key(prefix)
            .arg(cost)
            .arg(cap)
            .arg(u8::from(charge == Charge::Reserve))
            .arg(counter.period.as_str())
            .invoke_async(&mut connection)
            .await
            .map_err(BackendError::new)?;
        let non_negative = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Spent {
            allowed: allowed == 1,
            spent: non_negative(spent),
            resets_at: UNIX_EPOCH + Duration::from_secs(non_negative(finish)),
            reset_after: Duration::from_millis(non_negative(reset_ms)),
        })
    }
}

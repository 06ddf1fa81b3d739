//! [`RedisUsage`]: spend counters shared by every instance (feature `redis`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::backend::{Charge, Counter, Spent, UsageBackend, MAX_AMOUNT};
use super::budget::BudgetPer;
use crate::backend_error::BackendError;
use crate::clock::Clock;
use crate::redis_connection::{subject_key, Subject};
use crate::redis_script::ScriptRunner;
use crate::RedisConnection;

/// One charge, atomically, on Redis's clock (or on `ARGV[5]`, Unix milliseconds, when the
/// backend was given a clock). The window (UTC hour, day or calendar month, or the one
/// lifetime window) is computed here from `TIME` with the same civil-calendar algorithm as
/// `Period::window`, so instances with skewed clocks still agree on when a period ends.
/// KEYS: the counter of the window the client expects (its name ends with that window's
/// index). ARGV: cost, cap (both at most 2^53 − 1, so exact as Lua numbers), `reserve` or
/// the end of the period a refund belongs to (Unix seconds, `never` for a lifetime budget),
/// `hour`, `day`, `month` or `lifetime`, the time or "", and the expected index. Returns
/// allowed (0/1), spent, the window's end (Unix seconds, -1: never) and the milliseconds
/// left until then (-1: never); or -1 and the window's index when the client expected
/// another window (its clock and Redis's disagree near a boundary): the client asks again
/// with that counter, so the script touches only the key it was given. Amounts are written
/// with `%.0f`, never through Lua's `%.14g` number-to-string conversion. Counters expire an
/// hour after their period ends, counted from `now` (`EX`), so a given clock works too; a
/// lifetime counter never expires (it is the credit's whole history).
pub(crate) const CHARGE: &str = r"
local cost = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local now, micros
if ARGV[5] ~= '' then
  local ms = tonumber(ARGV[5])
  now = math.floor(ms / 1000)
  micros = (ms - now * 1000) * 1000
else
  local time = redis.call('TIME')
  now = tonumber(time[1])
  micros = tonumber(time[2])
end
local index, finish
if ARGV[4] == 'hour' then
  index = math.floor(now / 3600)
  finish = (index + 1) * 3600
elseif ARGV[4] == 'day' then
  index = math.floor(now / 86400)
  finish = (index + 1) * 86400
elseif ARGV[4] == 'lifetime' then
  index = 0
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
if index ~= tonumber(ARGV[6]) then return {-1, string.format('%.0f', index), 0, 0} end
local key = KEYS[1]
local spent = tonumber(redis.call('GET', key)) or 0
local function store()
  if finish then
    redis.call('SET', key, string.format('%.0f', spent), 'EX', finish + 3600 - now)
  else
    redis.call('SET', key, string.format('%.0f', spent))
  end
end
local allowed = true
if ARGV[3] == 'reserve' then
  if cost == 0 then allowed = spent < cap else allowed = spent + cost <= cap end
  if allowed and cost > 0 then
    spent = spent + cost
    store()
  end
elseif (finish and tonumber(ARGV[3]) == finish or not finish and ARGV[3] == 'never') and spent > 0 and cost > 0 then
  spent = math.max(spent - cost, 0)
  store()
end
if not finish then return {allowed and 1 or 0, string.format('%.0f', spent), -1, -1} end
return {allowed and 1 or 0, string.format('%.0f', spent), finish, (finish - now) * 1000 - math.floor(micros / 1000)}
";

/// Spend counters in Redis: one script per charge (one round trip), atomic, on the
/// server's clock, so every instance shares each budget exactly. Counters are tagged per
/// subject (`<namespace>:{k:<key id>}:spend:…` or `{o:<owner>}`), so on a Redis Cluster
/// they spread over every master, and expire an hour after their period ends.
///
/// A connection failure is a [`BackendError`]; the layer then follows its
/// [`OnBackendError`](crate::OnBackendError) policy (503 by default).
#[derive(Clone)]
pub struct RedisUsage {
    runner: ScriptRunner,
    /// `None`: Redis's own clock (`TIME`), which every instance shares.
    clock: Option<Arc<dyn Clock>>,
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl RedisUsage {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`), namespace `tak`.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Ok(Self {
            runner: ScriptRunner::connect(url, CHARGE).await?,
            clock: None,
        })
    }

    /// Uses `connection` (standalone or cluster), namespace `tak`.
    pub fn new(connection: RedisConnection) -> Self {
        Self {
            runner: ScriptRunner::new(connection, CHARGE),
            clock: None,
        }
    }

    /// Periods follow `clock` instead of Redis's `TIME`: for tests on a
    /// [`ManualClock`](crate::clock::ManualClock). In production keep Redis's clock, which
    /// every instance shares whatever their own clocks say.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Counters live under `namespace:` (default `tak`).
    #[must_use]
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.runner.namespace = Arc::from(namespace);
        self
    }
}

impl fmt::Debug for RedisUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.runner.fmt_as("RedisUsage", f)
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
        let subject = match counter.per {
            BudgetPer::Owner => Subject::Owner(counter.subject),
            BudgetPer::Key => Subject::Key(counter.subject),
        };
        let now_ms = self.clock.as_ref().map(|clock| {
            clock
                .now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        let now = self
            .clock
            .as_ref()
            .map_or_else(SystemTime::now, |clock| clock.now());
        // The window this instance expects; Redis's clock decides, and names another one
        // near a boundary when the clocks disagree (then, once more, with that one).
        let mut index = counter.period.window(now).index;
        for _ in 0..2 {
            let key = subject_key(
                &self.runner.namespace,
                subject,
                format_args!(
                    "spend:{}:{}:{index}",
                    counter.environment,
                    counter.period.as_str()
                ),
            );
            let mut connection = self.runner.connection.clone();
            let mut invocation = self.runner.script.key(key);
            invocation
                .arg(cost.min(MAX_AMOUNT))
                .arg(cap.min(MAX_AMOUNT));
            match charge {
                Charge::Reserve => invocation.arg("reserve"),
                Charge::Refund {
                    period_ends: Some(at),
                } => invocation.arg(unix_seconds(at)),
                Charge::Refund { period_ends: None } => invocation.arg("never"),
            };
            invocation
                .arg(counter.period.as_str())
                .arg(now_ms.map_or(String::new(), |ms| ms.to_string()))
                .arg(index);
            let (allowed, spent, finish, reset_ms): (i64, u64, i64, i64) = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(BackendError::new)?;
            if allowed == -1 {
                index = spent;
                continue;
            }
            // -1: a lifetime budget, which never resets.
            return Ok(Spent {
                allowed: allowed == 1,
                spent,
                resets_at: u64::try_from(finish)
                    .ok()
                    .map(|secs| UNIX_EPOCH + Duration::from_secs(secs)),
                reset_after: u64::try_from(reset_ms).ok().map(Duration::from_millis),
            });
        }
        Err(BackendError::new(std::io::Error::other(
            "Redis and this instance kept disagreeing about the spend period",
        )))
    }
}

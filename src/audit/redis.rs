//! [`RedisAuditLog`]: the audit log in one Redis stream per owner, shared by every instance
//! (feature `redis`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redis::Script;

use super::{AuditEntry, AuditFuture, AuditLog, AuditQuery};
use crate::clock::{Clock, SystemClock};
use crate::redis_connection::{subject_key, Subject};
use crate::store::{StoreError, StoreErrorKind};
use crate::RedisConnection;

/// Appends to the owner's stream with an id at the appending instance's time (or just
/// after the stream's last, when another instance's clock is ahead), trims it to the
/// owner's bound and past retention, and lets it expire once idle for the retention.
/// KEYS: the stream. ARGV: time (ms), most entries, the entry (JSON), the oldest time kept
/// (ms, or "" for none), the retention (ms, or "" for none). Returns the new id.
const APPEND: &str = r"
local ms = tonumber(ARGV[1])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then
  local top = tonumber(string.match(last[1][1], '^(%d+)-'))
  if top > ms then ms = top end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], string.format('%.0f', ms) .. '-*', 'e', ARGV[3])
if ARGV[4] ~= '' then redis.call('XTRIM', KEYS[1], 'MINID', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return id
";

/// One stream per owner, `<namespace>:{o:<owner>}:audit` (tagged per owner: a Redis
/// Cluster spreads owners over its masters, and each append is one script on one slot),
/// trimmed to [`per_owner`](Self::per_owner) entries (an exact `MAXLEN`, so each append
/// drops at most one: O(1)) and to [`retention`](Self::retention) by age (`XTRIM MINID`),
/// and expiring when idle that long. Appends are awaited: an entry is in before the
/// management API answers.
///
/// An entry's `seq` is its stream id (`<ms>-<n>`) as `ms × 1024 + n` (below 2^53, so a
/// JavaScript client keeps it exact). Needs Redis 7 (`XADD` with `<ms>-*`).
#[derive(Clone)]
pub struct RedisAuditLog {
    shared: Arc<Shared>,
}

struct Shared {
    connection: RedisConnection,
    namespace: String,
    per_owner: usize,
    retention: Duration,
    clock: Arc<dyn Clock>,
    append: Script,
}

/// `t` in Unix milliseconds, as stream ids count (never before 1970).
fn millis(t: SystemTime) -> u64 {
    u64::try_from(crate::support::unix_millis::millis(t)).unwrap_or(0)
}

fn seq_of(id: &str) -> Option<u64> {
    let (ms, n) = id.split_once('-')?;
    Some(ms.parse::<u64>().ok()? * 1024 + n.parse::<u64>().ok()?.min(1023))
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, error)
}

impl RedisAuditLog {
    /// Entries through `connection` under `namespace:`: 90 days, 1,000 per owner, on the
    /// system clock.
    pub fn new(connection: RedisConnection, namespace: &str) -> Self {
        Self {
            shared: Arc::new(Shared {
                connection,
                namespace: namespace.to_owned(),
                per_owner: 1_000,
                retention: Duration::from_secs(90 * 86_400),
                clock: Arc::new(SystemClock),
                append: Script::new(APPEND),
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|shared| Shared {
            connection: shared.connection.clone(),
            namespace: shared.namespace.clone(),
            per_owner: shared.per_owner,
            retention: shared.retention,
            clock: Arc::clone(&shared.clock),
            append: Script::new(APPEND),
        });
        change(&mut shared);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// At most `entries` per owner (at least 1).
    #[must_use]
    pub fn per_owner(self, entries: usize) -> Self {
        self.with(|shared| shared.per_owner = entries.max(1))
    }

    /// Entries older than `age` leave (`Duration::MAX`: kept until the size bound).
    #[must_use]
    pub fn retention(self, age: Duration) -> Self {
        self.with(|shared| shared.retention = age)
    }

    /// Times entries on `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests).
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        self.with(|shared| shared.clock = Arc::new(clock))
    }

    fn stream(&self, owner: &str) -> String {
        subject_key(
            &self.shared.namespace,
            Subject::Owner(owner),
            format_args!("audit"),
        )
    }

    /// The oldest time kept at `now`, in ms (`None`: no age bound a stream id can say).
    fn oldest_kept(&self, now: SystemTime) -> Option<u64> {
        now.checked_sub(self.shared.retention).map(millis)
    }

    /// The retention in ms, if it is one Redis can count.
    fn retention_ms(&self) -> Option<u64> {
        u64::try_from(self.shared.retention.as_millis())
            .ok()
            .filter(|ms| *ms < 1 << 53)
    }
}

impl AuditLog for RedisAuditLog {
    fn append(&self, entry: AuditEntry) -> AuditFuture<'_, u64> {
        Box::pin(async move {
            let json = serde_json::to_string(&entry)
                .map_err(|error| StoreError::new(StoreErrorKind::Other, error))?;
            let now = self.shared.clock.now();
            let mut connection = self.shared.connection.clone();
            let id: String = self
                .shared
                .append
                .key(self.stream(entry.owner()))
                .arg(millis(now))
                .arg(self.shared.per_owner)
                .arg(json)
                .arg(
                    self.oldest_kept(now)
                        .map_or(String::new(), |ms| ms.to_string()),
                )
                .arg(
                    self.retention_ms()
                        .map_or(String::new(), |ms| ms.to_string()),
                )
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            seq_of(&id).ok_or_else(|| StoreError::new(StoreErrorKind::Other, "corrupt stream id"))
        })
    }

    fn page<'a>(&'a self, query: &'a AuditQuery) -> AuditFuture<'a, Vec<AuditEntry>> {
        Box::pin(async move {
            let stream = self.stream(query.owner());
            let oldest_kept = self.oldest_kept(self.shared.clock.now());
            let mut end = query.before_seq().map_or("+".to_owned(), |seq| {
                format!("({}-{}", seq / 1024, seq % 1024)
            });
            let mut page = Vec::new();
            // Filters are applied here: batches of the stream, newest first, until the page
            // is full or the stream (at most `per_owner` entries) is read.
            let batch = query.page_size().max(50);
            let mut read = 0;
            while page.len() < query.page_size() && read < self.shared.per_owner {
                let mut connection = self.shared.connection.clone();
                let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                    .arg(&stream)
                    .arg(&end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(batch)
                    .query_async(&mut connection)
                    .await
                    .map_err(unavailable)?;
                let Some((last, _)) = entries.last() else {
                    break;
                };
                end = format!("({last}");
                read += entries.len();
                for (id, fields) in entries {
                    let Some(json) = fields.iter().find(|(k, _)| k == "e").map(|(_, v)| v) else {
                        continue;
                    };
                    let mut entry: AuditEntry = serde_json::from_str(json).map_err(|_| {
                        StoreError::new(StoreErrorKind::Other, "corrupt audit entry")
                    })?;
                    entry.set_seq(seq_of(&id).unwrap_or(0));
                    let kept = oldest_kept.is_none_or(|kept| millis(entry.at()) >= kept);
                    if kept && query.matches(&entry) && page.len() < query.page_size() {
                        page.push(entry);
                    }
                }
            }
            Ok(page)
        })
    }
}

impl fmt::Debug for RedisAuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAuditLog")
            .field("namespace", &self.shared.namespace)
            .field("per_owner", &self.shared.per_owner)
            .field("retention", &self.shared.retention)
            .finish_non_exhaustive()
    }
}

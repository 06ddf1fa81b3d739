//! [`RedisDailyUsage`]: each key's daily use in Redis hashes, shared by every instance
//! (feature `redis`).

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{window, zero_days, History, UsageHistory, DAYS};
use crate::activity::redis_queue::RedisQueue;
use crate::activity::{ActivityEvent, ActivityObserver, Outcome};
use crate::redis_connection::{subject_key, Subject};
use crate::reject::RejectionKind;
use crate::store::{KeyId, StoreError, StoreErrorKind};
use crate::RedisConnection;

/// One hash per key and UTC day, `<namespace>:{k:<key id>}:day:<day number>`, with the
/// fields `requests`, `spent` and `refused:<code>` (`HINCRBY`), expiring [`DAYS`] + 1 days
/// after the day began (counted from the event's time, so a fake clock works too): bounded
/// by the keys in use. Tagged per key, so a Redis Cluster
/// spreads them and a key's 30 days are read in one pipeline from one node. Written by a
/// background task through a bounded queue (10,000 events), as
/// [`RedisActivityLog`](crate::activity::RedisActivityLog): the request path never waits for Redis;
/// events beyond the queue are dropped and counted.
#[derive(Clone)]
pub struct RedisDailyUsage {
    shared: Arc<Shared>,
}

struct Shared {
    connection: RedisConnection,
    namespace: String,
    writes: RedisQueue<Increment>,
}

/// One event's counts: the key, the event's time (Unix seconds), its refusal, its spend.
type Increment = (KeyId, u64, Option<RejectionKind>, u64);

impl RedisDailyUsage {
    /// Writes through `connection`, under `namespace:`.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(connection: RedisConnection, namespace: &str) -> Self {
        let ns = namespace.to_owned();
        let writes = RedisQueue::spawn(
            connection.clone(),
            "daily usage",
            move |(key, at, refused, spent): Increment| {
                let day = at / 86_400;
                let hash = day_key(&ns, &key, day);
                let mut pipe = redis::pipe();
                pipe.cmd("HINCRBY")
                    .arg(&hash)
                    .arg("requests")
                    .arg(1)
                    .ignore();
                if let Some(kind) = refused {
                    let field = format!("refused:{}", kind.code());
                    pipe.cmd("HINCRBY").arg(&hash).arg(field).arg(1).ignore();
                }
                if spent > 0 {
                    pipe.cmd("HINCRBY")
                        .arg(&hash)
                        .arg("spent")
                        .arg(spent)
                        .ignore();
                }
                // Kept until the day leaves the window: its start plus DAYS + 1 days.
                let ttl = (day + DAYS as u64 + 1) * 86_400 - at;
                pipe.cmd("EXPIRE").arg(&hash).arg(ttl).ignore();
                pipe
            },
        );
        Self {
            shared: Arc::new(Shared {
                connection,
                namespace: namespace.to_owned(),
                writes,
            }),
        }
    }

    /// Events dropped because the queue was full (Redis slow or down).
    pub fn dropped(&self) -> u64 {
        self.shared.writes.dropped()
    }
}

fn day_key(namespace: &str, key: &KeyId, day: u64) -> String {
    subject_key(
        namespace,
        Subject::Key(key.as_str()),
        format_args!("day:{day}"),
    )
}

impl ActivityObserver for RedisDailyUsage {
    fn observe(&self, event: &ActivityEvent) {
        let Some(key) = event.usage_subject() else {
            return;
        };
        let refused = match event.outcome {
            Outcome::Ok => None,
            Outcome::Refused(kind) => Some(kind),
        };
        let at = event
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let entry = (key.into_owned(), at, refused, event.spent);
        self.shared.writes.push(entry);
    }
}

impl UsageHistory for RedisDailyUsage {
    fn days<'a>(&'a self, key: &'a KeyId, today: SystemTime) -> History<'a> {
        Box::pin(async move {
            let days: Vec<u64> = window(today).collect();
            let mut pipe = redis::pipe();
            for day in &days {
                pipe.cmd("HGETALL")
                    .arg(day_key(&self.shared.namespace, key, *day));
            }
            let mut connection = self.shared.connection.clone();
            let hashes: Vec<Vec<(String, u64)>> = pipe
                .query_async(&mut connection)
                .await
                .map_err(|error| StoreError::new(StoreErrorKind::Unavailable, error))?;
            Ok(zero_days(today)
                .into_iter()
                .zip(hashes)
                .map(|(mut usage, fields)| {
                    for (field, n) in fields {
                        match field.as_str() {
                            "requests" => usage.requests = n,
                            "spent" => usage.spent = n,
                            other => {
                                let code = other.strip_prefix("refused:");
                                let kind = RejectionKind::ALL
                                    .into_iter()
                                    .find(|kind| Some(kind.code()) == code);
                                if let Some(kind) = kind {
                                    usage.refused.insert(kind.code(), n);
                                }
                            }
                        }
                    }
                    usage
                })
                .collect())
        })
    }
}

impl fmt::Debug for RedisDailyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDailyUsage")
            .field("namespace", &self.shared.namespace)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

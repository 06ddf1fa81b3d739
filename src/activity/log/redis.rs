//! [`RedisActivityLog`]: the activity log in Redis streams, shared by every instance
//! (feature `redis`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{ActivityStore, LoggedRequest, Recent};
use crate::activity::redis_queue::RedisQueue;
use crate::activity::{ActivityEvent, ActivityObserver};
use crate::redis_connection::{subject_key, Subject};
use crate::store::{KeyId, StoreError, StoreErrorKind};
use crate::RedisConnection;

/// One stream per key, `<namespace>:{k:<key id>}:activity` (tagged per key, so a Redis
/// Cluster spreads the streams over its masters), trimmed to about `per_key`
/// entries (`XADD … MAXLEN ~`) and expiring 30 days after its last entry. Events are
/// written by a background task through a bounded queue (10,000 events): the request path
/// never waits for Redis, and when Redis is slow or down, events beyond the queue are
/// dropped and counted ([`dropped`](Self::dropped)), so memory stays bounded.
///
/// An entry's `seq` is its stream id (`<ms>-<n>`) as `ms × 1024 + n`, for paging.
#[derive(Clone)]
pub struct RedisActivityLog {
    shared: Arc<Shared>,
}

struct Shared {
    connection: RedisConnection,
    namespace: String,
    writes: RedisQueue<(KeyId, Vec<(&'static str, String)>)>,
}

const TTL_SECS: i64 = 30 * 86_400;

impl RedisActivityLog {
    /// Writes through `connection`, under `namespace:`, about `per_key` entries
    /// per key.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(connection: RedisConnection, namespace: &str, per_key: usize) -> Self {
        let ns = namespace.to_owned();
        let writes = RedisQueue::spawn(connection.clone(), "activity", move |(key, fields)| {
            let stream = stream_key(&ns, &key);
            let mut pipe = redis::pipe();
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(per_key.max(1))
                .arg("*")
                .arg(&fields)
                .ignore()
                .cmd("EXPIRE")
                .arg(&stream)
                .arg(TTL_SECS)
                .ignore();
            pipe
        });
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

impl ActivityObserver for RedisActivityLog {
    fn observe(&self, event: &ActivityEvent) {
        let Some(key) = &event.key_id else { return };
        let at_ms = event
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let fields = vec![
            ("at_ms", at_ms.to_string()),
            ("outcome", event.outcome.as_str().to_owned()),
            (
                "status",
                event
                    .status
                    .map_or(String::new(), |s| s.as_u16().to_string()),
            ),
            ("method", event.method.to_string()),
            ("path", super::logged_path(&event.path).to_owned()),
            (
                "client",
                event.client.map_or(String::new(), |ip| ip.to_string()),
            ),
        ];
        self.shared.writes.push((key.clone(), fields));
    }
}

fn stream_key(namespace: &str, key: &KeyId) -> String {
    subject_key(
        namespace,
        Subject::Key(key.as_str()),
        format_args!("activity"),
    )
}

fn seq_of(id: &str) -> Option<u64> {
    let (ms, n) = id.split_once('-')?;
    Some(ms.parse::<u64>().ok()? * 1024 + n.parse::<u64>().ok()?.min(1023))
}

impl ActivityStore for RedisActivityLog {
    fn recent<'a>(&'a self, key: &'a KeyId, limit: usize, before: Option<u64>) -> Recent<'a> {
        Box::pin(async move {
            let stream = stream_key(&self.shared.namespace, key);
            let end = before.map_or("+".to_owned(), |seq| {
                format!("({}-{}", seq / 1024, seq % 1024)
            });
            let mut connection = self.shared.connection.clone();
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                .arg(&stream)
                .arg(end)
                .arg("-")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut connection)
                .await
                .map_err(|error| StoreError::new(StoreErrorKind::Unavailable, error))?;
            Ok(entries
                .into_iter()
                .filter_map(|(id, fields)| {
                    let field = |name: &str| {
                        fields
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.as_str())
                            .unwrap_or("")
                    };
                    Some(LoggedRequest {
                        seq: seq_of(&id)?,
                        at: SystemTime::UNIX_EPOCH
                            + Duration::from_millis(field("at_ms").parse().unwrap_or(0)),
                        outcome: field("outcome").to_owned().into(),
                        status: field("status").parse().ok(),
                        method: field("method").to_owned(),
                        path: field("path").to_owned(),
                        client: field("client").parse().ok(),
                    })
                })
                .collect())
        })
    }
}

impl fmt::Debug for RedisActivityLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisActivityLog")
            .field("namespace", &self.shared.namespace)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

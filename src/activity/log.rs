//! [`ActivityLog`]: the recent authentication outcomes of each key, bounded.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use dashmap::DashMap;
use serde::Serialize;

use crate::activity::{ActivityEvent, ActivityObserver};
use crate::store::{KeyId, StoreError};

/// What [`ActivityStore::recent`] answers.
pub type Recent<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<LoggedRequest>, StoreError>> + Send + 'a>>;

/// Where the management API reads a key's recent outcomes from: [`ActivityLog`] (in
/// memory) or `RedisActivityLog` (feature `redis`).
pub trait ActivityStore: Send + Sync + 'static {
    /// `key`'s outcomes, newest first: at most `limit`, older than `before` (a `seq`).
    fn recent<'a>(&'a self, key: &'a KeyId, limit: usize, before: Option<u64>) -> Recent<'a>;
}

/// One logged outcome. Never a secret: the key id, not the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
pub struct LoggedRequest {
    /// A sequence number, increasing over the log's life (for paging: `before`).
    pub seq: u64,
    /// When (RFC 3339 on the wire, to the millisecond).
    #[serde(serialize_with = "crate::timestamp::rfc3339")]
    #[cfg_attr(feature = "axum", schema(value_type = String, format = DateTime))]
    pub at: SystemTime,
    /// `ok` or the rejection's code.
    #[cfg_attr(feature = "axum", schema(value_type = String))]
    pub outcome: Cow<'static, str>,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// The request's method.
    pub method: String,
    /// The request's path, without the query string.
    pub path: String,
    /// The client's address, when known.
    #[cfg_attr(feature = "axum", schema(value_type = Option<String>))]
    pub client: Option<IpAddr>,
}

/// The last `per_key` outcomes of each key (default 100), for at most `keys` keys (default
/// 10,000: past that, the key whose last event is oldest is forgotten), so memory stays
/// bounded under a flood of requests with distinct keys. An [`ActivityObserver`]: give it
/// to the [`ActivityLayer`](crate::activity::ActivityLayer); the management API serves it
/// at `GET /keys/{id}/activity`. Clones share the log.
#[derive(Clone)]
pub struct ActivityLog {
    inner: Arc<Inner>,
}

struct Inner {
    rings: DashMap<KeyId, Mutex<VecDeque<LoggedRequest>>>,
    per_key: usize,
    keys: usize,
    seq: AtomicU64,
}

impl Default for ActivityLog {
    fn default() -> Self {
        Self::new(100, 10_000)
    }
}

impl ActivityLog {
    /// The last `per_key` outcomes of at most `keys` keys (each at least 1).
    pub fn new(per_key: usize, keys: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                rings: DashMap::new(),
                per_key: per_key.max(1),
                keys: keys.max(1),
                seq: AtomicU64::new(0),
            }),
        }
    }

    /// `key`'s outcomes, newest first: at most `limit`, older than `before` (a `seq`) when
    /// given.
    pub fn recent(&self, key: &KeyId, limit: usize, before: Option<u64>) -> Vec<LoggedRequest> {
        let Some(ring) = self.inner.rings.get(key) else {
            return Vec::new();
        };
        let ring = ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ring.iter()
            .rev()
            .filter(|entry| before.is_none_or(|before| entry.seq < before))
            .take(limit)
            .cloned()
            .collect()
    }

    /// How many keys have entries.
    pub fn keys(&self) -> usize {
        self.inner.rings.len()
    }

    fn forget_stalest(&self) {
        let stalest = self
            .inner
            .rings
            .iter()
            .filter_map(|entry| {
                let ring = entry.value().lock().ok()?;
                Some((ring.back().map_or(0, |last| last.seq), entry.key().clone()))
            })
            .min();
        if let Some((_, key)) = stalest {
            self.inner.rings.remove(&key);
        }
    }
}

impl ActivityStore for ActivityLog {
    fn recent<'a>(&'a self, key: &'a KeyId, limit: usize, before: Option<u64>) -> Recent<'a> {
        Box::pin(std::future::ready(Ok(ActivityLog::recent(
            self, key, limit, before,
        ))))
    }
}

impl ActivityObserver for ActivityLog {
    fn observe(&self, event: &ActivityEvent) {
        let Some(key) = &event.key_id else { return };
        let inner = &*self.inner;
        if !inner.rings.contains_key(key) && inner.rings.len() >= inner.keys {
            self.forget_stalest();
        }
        let entry = LoggedRequest {
            seq: inner.seq.fetch_add(1, Ordering::Relaxed),
            at: event.at,
            outcome: Cow::Borrowed(event.outcome.as_str()),
            status: event.status.map(|status| status.as_u16()),
            method: event.method.to_string(),
            path: event.path.chars().take(256).collect(),
            client: event.client,
        };
        let ring = inner.rings.entry(key.clone()).or_default();
        let mut ring = ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ring.len() >= inner.per_key {
            ring.pop_front();
        }
        ring.push_back(entry);
    }
}

impl std::fmt::Debug for ActivityLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityLog")
            .field("keys", &self.keys())
            .field("per_key", &self.inner.per_key)
            .finish_non_exhaustive()
    }
}

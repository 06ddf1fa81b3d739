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
use http::Method;
use serde::Serialize;

use crate::activity::{ActivityEvent, ActivityObserver};
use crate::store::{KeyId, StoreError};

#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use redis::RedisActivityLog;

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
    #[serde(serialize_with = "crate::support::timestamp::rfc3339")]
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
/// 10,000), so memory stays bounded under a flood of requests with distinct keys. Past
/// `keys`, a key that has seen no event since it was last passed over is forgotten (the
/// "second chance" of the CLOCK algorithm: close to least recently used, and O(1) per
/// event, amortised, whatever the number of keys). An [`ActivityObserver`]: give it
/// to the [`ActivityLayer`](crate::activity::ActivityLayer); the management API serves it
/// at `GET /keys/{id}/activity`. Clones share the log.
#[derive(Clone)]
pub struct ActivityLog {
    inner: Arc<Inner>,
}

struct Inner {
    // foldhash (seeded per map): looked up on every event.
    rings: DashMap<KeyId, Mutex<Ring>, foldhash::fast::RandomState>,
    /// Every key in `rings`, in the order the eviction hand passes them.
    hand: Mutex<VecDeque<KeyId>>,
    per_key: usize,
    keys: usize,
    seq: AtomicU64,
    #[cfg(test)]
    visited: AtomicU64,
}

/// A logged outcome as kept: the method as `http` holds it (no allocation for the standard
/// ones), made a [`LoggedRequest`] when read.
struct Kept {
    seq: u64,
    at: SystemTime,
    outcome: &'static str,
    status: Option<u16>,
    method: Method,
    path: String,
    client: Option<IpAddr>,
}

impl From<&Kept> for LoggedRequest {
    fn from(kept: &Kept) -> Self {
        Self {
            seq: kept.seq,
            at: kept.at,
            outcome: Cow::Borrowed(kept.outcome),
            status: kept.status,
            method: kept.method.to_string(),
            path: kept.path.clone(),
            client: kept.client,
        }
    }
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<Kept>,
    /// An event arrived since the hand last passed this key.
    touched: bool,
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
                rings: DashMap::default(),
                per_key: per_key.max(1),
                keys: keys.max(1),
                seq: AtomicU64::new(0),
                hand: Mutex::new(VecDeque::new()),
                #[cfg(test)]
                visited: AtomicU64::new(0),
            }),
        }
    }

    /// `key`'s outcomes, newest first: at most `limit`, older than `before` (a `seq`) when
    /// given.
    pub fn recent(&self, key: &KeyId, limit: usize, before: Option<u64>) -> Vec<LoggedRequest> {
        let Some(ring) = self.inner.rings.get(key) else {
            return Vec::new();
        };
        let ring = lock(&ring);
        ring.entries
            .iter()
            .rev()
            .filter(|entry| before.is_none_or(|before| entry.seq < before))
            .take(limit)
            .map(LoggedRequest::from)
            .collect()
    }

    /// How many keys have entries.
    pub fn keys(&self) -> usize {
        self.inner.rings.len()
    }

    /// Forgets one key: the first the hand finds untouched since it last passed, giving
    /// each touched key a second chance. Each key passed over had an event since, so the
    /// work is O(1) per event, amortised (at most two turns of the hand in the worst case).
    fn forget_one(&self) {
        let inner = &*self.inner;
        let mut hand = lock(&inner.hand);
        let mut turns = 2 * hand.len() + 1;
        while let Some(key) = hand.pop_front() {
            #[cfg(test)]
            inner.visited.fetch_add(1, Ordering::Relaxed);
            turns -= 1;
            // One lookup: the ring is read, given its second chance or removed under the
            // same shard lock (the key's entry is cold: a second lookup was a second miss).
            let mut kept = false;
            let removed = inner.rings.remove_if(&key, |_, ring| {
                let touched = std::mem::replace(&mut lock(ring).touched, false);
                kept = touched && turns > 0;
                !kept
            });
            if removed.is_some() {
                return;
            }
            // Kept for another turn, or not in the log any more (nothing to forget).
            if kept {
                hand.push_back(key);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let entry = Kept {
            seq: inner.seq.fetch_add(1, Ordering::Relaxed),
            at: event.at,
            outcome: event.outcome.as_str(),
            status: event.status.map(|status| status.as_u16()),
            method: event.method.clone(),
            path: logged_path(&event.path).to_owned(),
            client: event.client,
        };
        if let Some(ring) = inner.rings.get(key) {
            let mut ring = lock(&ring);
            ring.touched = true;
            push(&mut ring.entries, entry, inner.per_key);
            return;
        }
        if inner.rings.len() >= inner.keys {
            self.forget_one();
        }
        let mut created = false;
        {
            let ring = inner.rings.entry(key.clone()).or_insert_with(|| {
                created = true;
                Mutex::default()
            });
            push(&mut lock(&ring).entries, entry, inner.per_key);
        }
        if created {
            lock(&inner.hand).push_back(key.clone());
        }
    }
}

/// The path as logged: its first 256 characters (all of it when shorter).
fn logged_path(path: &str) -> &str {
    const MAX_CHARS: usize = 256;
    // At most 256 bytes is at most 256 characters: the common case, without decoding.
    if path.len() <= MAX_CHARS {
        return path;
    }
    path.char_indices()
        .nth(MAX_CHARS)
        .map_or(path, |(end, _)| &path[..end])
}

fn push(entries: &mut VecDeque<Kept>, entry: Kept, per_key: usize) {
    if entries.len() >= per_key {
        entries.pop_front();
    }
    entries.push_back(entry);
}

impl std::fmt::Debug for ActivityLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityLog")
            .field("keys", &self.keys())
            .field("per_key", &self.inner.per_key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::ActivityEvent;

    fn event(key: &KeyId) -> ActivityEvent {
        let mut event = ActivityEvent::arrived(&Method::GET, "/", None, SystemTime::UNIX_EPOCH);
        event.key_id = Some(key.clone());
        event
    }

    /// The logged path is what `chars().take(256)` gives, without decoding short paths.
    #[test]
    fn a_logged_path_is_its_first_256_characters() {
        let long_ascii = "/a".repeat(200);
        let multibyte = "/é".repeat(200); // 400 characters, 600 bytes
        let edge = format!("{}é", "a".repeat(255)); // 256 characters, 257 bytes
        for path in [
            "",
            "/v1/rules",
            &long_ascii,
            &multibyte,
            &edge,
            &"ü".repeat(256),
        ] {
            let expected: String = path.chars().take(256).collect();
            assert_eq!(logged_path(path), expected, "{} bytes", path.len());
        }
        assert_eq!(logged_path(&long_ascii).len(), 256);
        assert_eq!(logged_path(&multibyte).chars().count(), 256);
    }

    /// Entries are kept in their own form (the method as `http` holds it) and read back as
    /// [`LoggedRequest`]s: the same fields, a standard and an extension method alike.
    #[test]
    fn entries_read_back_as_they_were_logged() {
        let log = ActivityLog::new(10, 10);
        let key = KeyId::new("key_0123456789abcdef01234567").unwrap();
        let purge = Method::from_bytes(b"PURGE").unwrap();
        for (method, path) in [(Method::GET, "/v1/rules"), (purge, "/v1/cache")] {
            let mut event = ActivityEvent::arrived(&method, path, None, SystemTime::UNIX_EPOCH);
            event.key_id = Some(key.clone());
            event.status = Some(http::StatusCode::CREATED);
            log.observe(&event);
        }
        let read: Vec<(String, String, Option<u16>, String)> = log
            .recent(&key, 10, None)
            .into_iter()
            .map(|entry| {
                (
                    entry.method,
                    entry.path,
                    entry.status,
                    entry.outcome.into_owned(),
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                ("PURGE".into(), "/v1/cache".into(), Some(201), "ok".into()),
                ("GET".into(), "/v1/rules".into(), Some(201), "ok".into()),
            ]
        );
    }

    /// Issue 36.3: with the log full, every event of a new key scanned all rings (100,000
    /// of them here, locking each). Now the hand visits O(1) rings per event, amortised.
    #[test]
    fn a_full_log_forgets_in_constant_time_per_event() {
        let capacity = 100_000;
        let log = ActivityLog::new(1, capacity);
        let keys: Vec<KeyId> = (0..2 * capacity)
            .map(|i| KeyId::new(format!("key_{i:024x}")).unwrap())
            .collect();
        for key in &keys[..capacity] {
            log.observe(&event(key));
        }
        // Half the keys in the log are used again: they get their second chance.
        for key in keys[..capacity].iter().step_by(2) {
            log.observe(&event(key));
        }
        let before = log.inner.visited.load(Ordering::Relaxed);
        for key in &keys[capacity..] {
            log.observe(&event(key));
        }
        let visited = log.inner.visited.load(Ordering::Relaxed) - before;
        assert_eq!(log.keys(), capacity);
        assert!(
            visited <= 2 * capacity as u64,
            "{visited} rings visited for {capacity} evictions"
        );
        // The untouched keys went first; the touched ones outlived them.
        assert!(log.recent(&keys[capacity - 1], 1, None).is_empty());
        assert!(!log.recent(&keys[capacity - 2], 1, None).is_empty());
        assert!(!log.recent(&keys[2 * capacity - 1], 1, None).is_empty());
    }
}

//! [`CachedKeyStore`]: a bounded cache in front of a slow store (feature `cache`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use futures_util::FutureExt;
use moka::future::Cache;

use super::{KeyId, KeyPolicy, KeyRecord, KeyStatus, KeyStore, LookupResult, StoreError};
use crate::clock::Clock;
use crate::key::{KeyDigest, KeyHasher};
use crate::scope::Scope;
use crate::support::sweep::SweepAt;

mod builder;
mod manage;
mod stale;
mod sync;

pub use builder::CachedKeyStoreBuilder;
pub use stale::StaleIfError;
use stale::{patiently, Stale};

/// A cached record, with when its fetch started (wall clock and invalidation epoch).
#[derive(Clone)]
struct Cached<S: Scope> {
    record: Arc<KeyRecord<S>>,
    fetched_at: SystemTime,
    epoch: u64,
}

/// Why a coalesced fetch produced nothing to cache.
enum Miss {
    Unknown,
    Store(StoreError),
}

/// Caches a slow [`KeyStore`] (SQL, Redis, HTTP) by digest, with [moka].
///
/// - Bounded: at most `max_capacity` records (default 100,000) and `negative_capacity`
///   unknown digests (default 10,000), each with its own TTL (60 s and 5 s). moka's
///   TinyLFU admission keeps a flood of random keys from pushing out the keys in use.
/// - Single-flight: concurrent misses for one digest make one store call.
/// - Store errors are never cached.
/// - [`invalidate`](Self::invalidate) by key id is immediate, including for a fetch that
///   was in flight when the key was revoked: its result is not served.
/// - Hits are answered by [`KeyStore::lookup_now`], so the layer neither boxes nor arms a
///   timer for them.
///
/// - A record that is no longer accepted (revoked, expired) is kept only as long as an
///   unknown digest, so the store calls a refused key causes do not tell whether it exists.
///
/// - Stale-if-error, when configured ([`CachedKeyStoreBuilder::stale_if_error`], off by
///   default): while the store fails or does not answer in time, a key whose record was
///   last fetched active within the window is answered from that record; see
///   [`StaleIfError`] for what is never served stale.
///
/// TTLs are checked against the inner store's policy [`Clock`] (or
/// [`CachedKeyStoreBuilder::clock`]), so they can be tested on a
/// [`ManualClock`](crate::clock::ManualClock).
///
/// moka was chosen over a hand-written cache: it is bounded by size and by time, coalesces
/// concurrent initialisations (`try_get_with`) and is widely used in production.
pub struct CachedKeyStore<St: KeyStore> {
    inner: Arc<St>,
    records: Cache<KeyDigest, Cached<St::Scope>>,
    unknown: Cache<KeyDigest, SystemTime>,
    ids: Arc<DashMap<KeyId, KeyDigest>>,
    epoch: AtomicU64,
    /// The epoch of the last `invalidate_all`: every record fetched before it is stale.
    all_invalidated: AtomicU64,
    /// Key id -> (epoch of invalidation, when); records fetched before are stale.
    invalidated: DashMap<KeyId, (u64, SystemTime)>,
    invalidated_len: AtomicUsize,
    /// When `invalidated` sweeps its entries older than the TTL next.
    sweep_invalidated_at: SweepAt,
    ttl: Duration,
    negative_ttl: Duration,
    /// `None`: the inner store's policy clock.
    clock: Option<Arc<dyn Clock>>,
    /// False while a revocation listener watching this cache is disconnected: revocations
    /// made elsewhere may be missed, so nothing is answered from the cache.
    synced: AtomicBool,
    /// Stale-if-error: its settings and the last known-good record per digest.
    stale: Option<Stale<St::Scope>>,
    metrics: crate::metrics::CacheCounters,
}

impl<St: KeyStore> CachedKeyStore<St> {
    /// A cache in front of `inner`, with the defaults.
    pub fn new(inner: Arc<St>) -> Self {
        Self::builder(inner).build()
    }

    /// Configures a cache in front of `inner`.
    pub fn builder(inner: Arc<St>) -> CachedKeyStoreBuilder<St> {
        CachedKeyStoreBuilder::new(inner)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<St> {
        &self.inner
    }

    /// Forgets key `id` at once. Call it after revoking, rotating or editing the key in
    /// the inner store; the next request with that key asks the inner store.
    pub async fn invalidate(&self, id: &KeyId) {
        let now = self.now();
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        // Records of fetches that started before this epoch are stale: a fetch in flight
        // may still insert one, so hits check this map too.
        if self.invalidated.insert(id.clone(), (epoch, now)).is_none() {
            self.invalidated_len.fetch_add(1, Ordering::SeqCst);
        }
        // Entries older than the TTL (or the stale window) can go (no record that old is
        // served); swept each
        // time the map has doubled, so an invalidation costs O(1) amortised, not a scan.
        if self
            .sweep_invalidated_at
            .due(self.invalidated_len.load(Ordering::SeqCst))
        {
            let ttl = self.remembered();
            self.invalidated.retain(|_, (_, at)| {
                let keep = now.duration_since(*at).map_or(true, |age| age <= ttl);
                if !keep {
                    self.invalidated_len.fetch_sub(1, Ordering::SeqCst);
                }
                keep
            });
            self.sweep_invalidated_at
                .swept(self.invalidated_len.load(Ordering::SeqCst));
        }
        if let Some((_, digest)) = self.ids.remove(id) {
            self.records.invalidate(&digest).await;
            if let Some(stale) = &self.stale {
                stale.last_good.invalidate(&digest).await;
            }
        }
    }

    /// Forgets everything.
    ///
    /// A fetch in flight when this is called may still insert what it read; such a record
    /// is never served (it belongs to an older epoch).
    pub fn invalidate_all(&self) {
        let epoch = self.forget_cached();
        if let Some(stale) = &self.stale {
            stale.floor.store(epoch, Ordering::SeqCst);
            stale.last_good.invalidate_all();
        }
    }

    /// Forgets what the cache answers from (not the last known-good records); returns the
    /// new epoch.
    fn forget_cached(&self) -> u64 {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.all_invalidated.store(epoch, Ordering::SeqCst);
        self.records.invalidate_all();
        self.unknown.invalidate_all();
        epoch
    }

    /// How long an invalidation must be remembered: as long as a record may answer.
    fn remembered(&self) -> Duration {
        self.stale
            .as_ref()
            .map_or(self.ttl, |stale| self.ttl.max(stale.settings.window))
    }

    /// Whether `cached` was invalidated after it was fetched: by id, or by everything
    /// since `floor`.
    fn invalidated_since(&self, cached: &Cached<St::Scope>, floor: u64) -> bool {
        cached.epoch < floor
            || (self.invalidated_len.load(Ordering::SeqCst) > 0
                && self
                    .invalidated
                    .get(cached.record.id())
                    .is_some_and(|entry| entry.0 > cached.epoch))
    }

    /// How many records and unknown digests are cached (after pending maintenance).
    pub async fn entry_counts(&self) -> (u64, u64) {
        self.records.run_pending_tasks().await;
        self.unknown.run_pending_tasks().await;
        (self.records.entry_count(), self.unknown.entry_count())
    }

    fn now(&self) -> SystemTime {
        match &self.clock {
            Some(clock) => clock.now(),
            None => self.inner.policy().now(),
        }
    }

    /// A record that is no longer accepted lives as long as an unknown digest: how long the
    /// cache serves a refused key must not tell whether it ever existed.
    fn is_stale(&self, cached: &Cached<St::Scope>, now: SystemTime) -> bool {
        let active = |at| cached.record.status_at(at) == KeyStatus::Active;
        let lifetime = if active(now) {
            self.ttl
        } else if active(cached.fetched_at) {
            // Became refused while cached (expired): asked again, as an unknown key would be.
            Duration::ZERO
        } else {
            self.negative_ttl
        };
        let expired = now
            .duration_since(cached.fetched_at)
            .is_ok_and(|age| age >= lifetime);
        expired || self.invalidated_since(cached, self.all_invalidated.load(Ordering::SeqCst))
    }

    /// A fresh cached answer, if any.
    fn hit(
        &self,
        record: Option<Cached<St::Scope>>,
        unknown: Option<SystemTime>,
    ) -> Option<Option<Arc<KeyRecord<St::Scope>>>> {
        if !self.synced.load(Ordering::Relaxed) {
            return None;
        }
        let now = self.now();
        if let Some(cached) = record {
            if !self.is_stale(&cached, now) {
                self.metrics.hit();
                return Some(Some(cached.record));
            }
        }
        let fresh_unknown = unknown.is_some_and(|at| {
            now.duration_since(at)
                .map_or(true, |age| age < self.negative_ttl)
        });
        if fresh_unknown {
            self.metrics.hit();
        }
        fresh_unknown.then_some(None)
    }
}

impl<St: KeyStore> KeyStore for CachedKeyStore<St> {
    type Scope = St::Scope;

    async fn lookup(&self, digest: &KeyDigest) -> LookupResult<St::Scope> {
        let digest = *digest;
        let cached = self.records.get(&digest).await;
        if let Some(cached) = &cached {
            if self.is_stale(cached, self.now()) {
                self.records.invalidate(&digest).await;
            }
        }
        if let Some(answer) = self.hit(cached, self.unknown.get(&digest).await) {
            return Ok(answer);
        }
        self.metrics.miss();
        if !self.synced.load(Ordering::SeqCst) {
            return self.ask_uncached(digest).await;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let fetched_at = self.now();
        let inner = Arc::clone(&self.inner);
        let patience = self.stale.as_ref().map(|stale| stale.settings.patience);
        let fetched = self
            .records
            .try_get_with(digest, async move {
                match patiently(&*inner, &digest, patience).await {
                    Ok(Some(record)) => Ok(Cached {
                        record,
                        fetched_at,
                        epoch,
                    }),
                    Ok(None) => Err(Miss::Unknown),
                    Err(error) => Err(Miss::Store(error)),
                }
            })
            .await;
        match fetched {
            // Coalesced with a fetch that began before the key was invalidated, while this
            // lookup began after: that answer may be the one revocation was meant to stop.
            Ok(cached) if cached.epoch < epoch && self.is_stale(&cached, self.now()) => {
                self.records.invalidate(&digest).await;
                self.inner.lookup(&digest).await
            }
            Ok(cached) => {
                self.ids.insert(cached.record.id().clone(), digest);
                self.remember(digest, Some(&cached)).await;
                Ok(Some(cached.record))
            }
            Err(miss) => match &*miss {
                Miss::Unknown => {
                    self.unknown.insert(digest, fetched_at).await;
                    self.remember(digest, None).await;
                    Ok(None)
                }
                Miss::Store(error) => match self.stale_answer(&digest, error).await {
                    Some(record) => Ok(Some(record)),
                    // Shared by every coalesced caller, so it is rebuilt rather than moved.
                    None => Err(StoreError::new(error.kind(), error.to_string())),
                },
            },
        }
    }

    fn lookup_now(&self, digest: &KeyDigest) -> Option<LookupResult<St::Scope>> {
        // moka's `get` completes on its first poll unless maintenance must wait; then the
        // asynchronous path answers instead.
        let record = self.records.get(digest).now_or_never()?;
        let unknown = match &record {
            Some(_) => None,
            None => self.unknown.get(digest).now_or_never()?,
        };
        self.hit(record, unknown).map(Ok)
    }

    fn hasher(&self) -> &KeyHasher {
        self.inner.hasher()
    }

    fn policy(&self) -> &KeyPolicy {
        self.inner.policy()
    }

    /// The inner store's readiness: a cache answering stale is not a ready store.
    fn ready(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        self.inner.ready()
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

impl<St: KeyStore + fmt::Debug> fmt::Debug for CachedKeyStore<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedKeyStore")
            .field("inner", &self.inner)
            .field("records", &self.records.entry_count())
            .field("unknown", &self.unknown.entry_count())
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, any(feature = "redis", feature = "postgres")))]
mod stale_tests;

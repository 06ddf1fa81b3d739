//! [`CachedKeyStoreBuilder`]: capacities, lifetimes, clock and stale-if-error.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use moka::future::Cache;
use moka::notification::RemovalCause;

use super::stale::{Stale, StaleIfError};
use super::{Cached, CachedKeyStore};
use crate::clock::Clock;
use crate::key::KeyDigest;
use crate::store::{KeyId, KeyStore};
use crate::support::sweep::SweepAt;

/// Builds a [`CachedKeyStore`]; see [`CachedKeyStore::builder`].
#[must_use]
pub struct CachedKeyStoreBuilder<St: KeyStore> {
    inner: Arc<St>,
    max_capacity: u64,
    negative_capacity: u64,
    ttl: Duration,
    negative_ttl: Duration,
    /// `None`: the inner store's policy clock.
    clock: Option<Arc<dyn Clock>>,
    stale_if_error: Option<StaleIfError>,
}

impl<St: KeyStore> fmt::Debug for CachedKeyStoreBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedKeyStoreBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("negative_capacity", &self.negative_capacity)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("stale_if_error", &self.stale_if_error)
            .finish_non_exhaustive()
    }
}

impl<St: KeyStore> CachedKeyStoreBuilder<St> {
    /// The defaults: 100,000 records for 60 s, 10,000 unknown digests for 5 s.
    pub(super) fn new(inner: Arc<St>) -> Self {
        Self {
            inner,
            max_capacity: 100_000,
            negative_capacity: 10_000,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            clock: None,
            stale_if_error: None,
        }
    }

    /// At most `records` cached records (default 100,000).
    pub fn max_capacity(mut self, records: u64) -> Self {
        self.max_capacity = records;
        self
    }

    /// At most `digests` cached unknown digests (default 10,000; 0 disables negative caching).
    pub fn negative_capacity(mut self, digests: u64) -> Self {
        self.negative_capacity = digests;
        self
    }

    /// How long a record is served from the cache (default 60 s). A revocation made
    /// elsewhere, without [`CachedKeyStore::invalidate`], is seen after at most this long.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long an unknown digest is remembered (default 5 s).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The clock TTLs are checked against (default: the inner store's
    /// [`KeyPolicy`](crate::store::KeyPolicy) clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Answer from a key's last known-good record while the store fails (off by
    /// default); see [`StaleIfError`].
    pub fn stale_if_error(mut self, stale: StaleIfError) -> Self {
        self.stale_if_error = Some(stale);
        self
    }

    /// The cache.
    pub fn build(self) -> CachedKeyStore<St> {
        let ids: Arc<DashMap<KeyId, KeyDigest>> = Arc::new(DashMap::new());
        let evicted = Arc::clone(&ids);
        let records = Cache::builder()
            .max_capacity(self.max_capacity)
            .time_to_live(moka_ttl(self.ttl))
            .eviction_listener(
                move |digest: Arc<KeyDigest>, cached: Cached<St::Scope>, cause| {
                    evicted.remove_if(cached.record.id(), |_, d| d == &*digest);
                    match cause {
                        RemovalCause::Expired => crate::metrics::cache_eviction("expired"),
                        RemovalCause::Size => crate::metrics::cache_eviction("size"),
                        RemovalCause::Explicit | RemovalCause::Replaced => {}
                    }
                },
            )
            .build();
        let unknown = Cache::builder()
            .max_capacity(self.negative_capacity)
            .time_to_live(moka_ttl(self.negative_ttl))
            .build();
        CachedKeyStore {
            inner: self.inner,
            records,
            unknown,
            ids,
            epoch: AtomicU64::new(0),
            all_invalidated: AtomicU64::new(0),
            invalidated: DashMap::new(),
            invalidated_len: AtomicUsize::new(0),
            sweep_invalidated_at: SweepAt::new(),
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            clock: self.clock,
            synced: AtomicBool::new(true),
            stale: self.stale_if_error.map(|settings| Stale {
                settings,
                last_good: Cache::builder()
                    .max_capacity(self.max_capacity)
                    .time_to_live(moka_ttl(settings.window))
                    .build(),
                floor: AtomicU64::new(0),
                failing: AtomicBool::new(false),
                answers: AtomicU64::new(0),
            }),
            metrics: crate::metrics::CacheCounters::default(),
        }
    }
}

/// The longest time to live moka keeps (it panics past 1,000 years): longer TTLs and windows
/// are taken as 100 years, which no cache entry outlives; zero is taken as 1 ns.
const MOKA_LONGEST: Duration = Duration::from_secs(100 * 365 * 86_400);

fn moka_ttl(ttl: Duration) -> Duration {
    ttl.clamp(Duration::from_nanos(1), MOKA_LONGEST)
}

//! [`CachedKeyStore`]: a bounded cache in front of a slow store (feature `cache`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use futures_util::FutureExt;
use moka::future::Cache;
use moka::notification::RemovalCause;

use super::{
    Insert, KeyId, KeyPolicy, KeyRecord, KeyStatus, KeyStore, LookupResult, ManageError,
    ManageKeys, Revocation, StoreError, StoreErrorKind,
};
use crate::clock::Clock;
use crate::key::{KeyDigest, KeyHasher};
use crate::scope::Scope;
use crate::sweep::SweepAt;

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

/// When the store fails, how long a key's last known-good record may still answer
/// (RFC 5861's `stale-if-error`, for keys): for [`CachedKeyStoreBuilder::stale_if_error`].
///
/// A stale answer is given only when the store fails (an error, or no answer within the
/// patience) and only from a record that:
/// - was fetched from the store, active, at most `window` ago (on the cache's clock);
/// - is still active now: a record revoked, expired or disabled when it was fetched is
///   never served, and one whose revocation or expiry time has passed since is refused;
/// - was not invalidated since (a revocation message, [`CachedKeyStore::invalidate`], a
///   rotation or deletion through the cache, [`CachedKeyStore::invalidate_all`]), and was
///   fetched after the revocation listener last reconnected (messages may have been missed
///   while it was away).
///
/// Unknown keys stay unknown: nothing is invented for a digest the store never answered.
/// Every stale answer is counted ([`CachedKeyStore::stale_answers`]) and, with feature
/// `tracing`, logged as a warning with the key id and the record's age. The cost is that
/// a key revoked *in the store* while that store is unreachable from this instance (so
/// no message arrives) keeps working here until the window ends; SECURITY.md weighs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleIfError {
    window: Duration,
    patience: Duration,
}

impl StaleIfError {
    /// Records fetched at most `window` ago may answer while the store fails; the store
    /// gets 500 ms before it counts as failing.
    pub const fn within(window: Duration) -> Self {
        Self {
            window,
            patience: Duration::from_millis(500),
        }
    }

    /// How long a lookup waits for the store before answering stale (default 500 ms;
    /// keep it below the layer's lookup timeout, 2 s by default, or the layer answers 503
    /// first).
    #[must_use]
    pub const fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }
}

/// `store`'s answer for `digest`, waiting at most `patience` when one is set.
async fn patiently<St: KeyStore>(
    store: &St,
    digest: &KeyDigest,
    patience: Option<Duration>,
) -> LookupResult<St::Scope> {
    let lookup = store.lookup(digest);
    match patience {
        None => lookup.await,
        Some(patience) => tokio::time::timeout(patience, lookup)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::new(
                    StoreErrorKind::Timeout,
                    "the key store did not answer within the stale-if-error patience",
                ))
            }),
    }
}

/// Stale-if-error's state.
struct Stale<S: Scope> {
    settings: StaleIfError,
    /// The last record fetched active, per digest; bounded like the records.
    last_good: Cache<KeyDigest, Cached<S>>,
    /// Records fetched before this epoch never answer stale: set when the listener comes
    /// back (messages may have been missed), when it is lost while the store answers (a
    /// revocation may be missed before the store fails), and by `invalidate_all`.
    floor: AtomicU64,
    /// The store's last answer was a failure: an outage is under way.
    failing: AtomicBool,
    answers: AtomicU64,
}

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

impl<St: KeyStore> CachedKeyStore<St> {
    /// A cache in front of `inner`, with the defaults.
    pub fn new(inner: Arc<St>) -> Self {
        Self::builder(inner).build()
    }

    /// Configures a cache in front of `inner`.
    pub fn builder(inner: Arc<St>) -> CachedKeyStoreBuilder<St> {
        CachedKeyStoreBuilder {
            inner,
            max_capacity: 100_000,
            negative_capacity: 10_000,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            clock: None,
            stale_if_error: None,
        }
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

    /// A revocation listener lost its connection (or has not connected yet): from now on,
    /// until [`listener_connected`](Self::listener_connected), nothing is answered from the
    /// cache, and what was cached is forgotten. Every lookup asks the store, and fails
    /// closed when the store is unreachable too.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    pub(crate) async fn listener_lost(&self) {
        let epoch = self.listener_away();
        // A record answers stale only if the listener stayed connected from its fetch to
        // the start of the outage. Lost in an outage (the usual case: one server, or the
        // store already failing), the last known-good records stay: messages up to the loss
        // were heard. Lost while the store still answers, a revocation may now be missed
        // before the store fails: none of them may answer stale (and nothing fetched until
        // the listener is back is kept, see `remember`).
        if let Some(stale) = &self.stale {
            let outage = stale.failing.load(Ordering::SeqCst)
                || !matches!(
                    tokio::time::timeout(stale.settings.patience, self.inner.ready()).await,
                    Ok(Ok(()))
                );
            if !outage {
                stale.floor.store(epoch, Ordering::SeqCst);
            }
        }
    }

    /// The listener is not (yet) connected: the cache answers nothing. Returns the new
    /// epoch.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    pub(crate) fn listener_away(&self) -> u64 {
        self.synced.store(false, Ordering::SeqCst);
        self.forget_cached()
    }

    /// A revocation listener (re)connected: messages from now on arrive, so what was
    /// fetched before (when messages may have been missed) is forgotten and caching resumes.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    pub(crate) fn listener_connected(&self) {
        self.invalidate_all();
        self.synced.store(true, Ordering::SeqCst);
    }

    /// Whether the cache answers: `false` while a revocation listener is away (lost its
    /// connection, or has not connected yet), when every lookup goes to the store. A
    /// revocation made between a connection's loss and the listener noticing it (at once
    /// for a closed connection, within two heartbeats for a silent one) is missed until
    /// then: that window is the bound on how stale an answer can be.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// How many lookups were answered from a stale record because the store failed
    /// (always 0 without [`CachedKeyStoreBuilder::stale_if_error`]).
    pub fn stale_answers(&self) -> u64 {
        self.stale
            .as_ref()
            .map_or(0, |stale| stale.answers.load(Ordering::Relaxed))
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

    /// The last known-good record of `digest`, when the store failed with `error` and
    /// [`StaleIfError`] allows it.
    async fn stale_answer(
        &self,
        digest: &KeyDigest,
        _error: &StoreError,
    ) -> Option<Arc<KeyRecord<St::Scope>>> {
        let stale = self.stale.as_ref()?;
        stale.failing.store(true, Ordering::SeqCst);
        let cached = stale.last_good.get(digest).await?;
        let now = self.now();
        let age = now.duration_since(cached.fetched_at).unwrap_or_default();
        if age > stale.settings.window
            || cached.record.status_at(now) != KeyStatus::Active
            || self.invalidated_since(&cached, stale.floor.load(Ordering::SeqCst))
        {
            return None;
        }
        stale.answers.fetch_add(1, Ordering::Relaxed);
        crate::metrics::counted(crate::metrics::CACHE_STALE_ANSWERS);
        #[cfg(feature = "tracing")]
        tracing::warn!(
            target: "tower_api_key::store",
            key_id = cached.record.id().as_str(),
            age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
            error = %_error,
            "the key store failed; answered from the key's last known-good record"
        );
        Some(cached.record)
    }

    /// Keeps (or forgets) `cached` as the last known-good record of `digest`.
    async fn remember(&self, digest: KeyDigest, cached: Option<&Cached<St::Scope>>) {
        let Some(stale) = &self.stale else { return };
        stale.failing.store(false, Ordering::SeqCst);
        // Fetched while the listener was away: a later revocation may never be heard.
        let heard = self.synced.load(Ordering::SeqCst);
        match cached {
            Some(cached)
                if heard && cached.record.status_at(cached.fetched_at) == KeyStatus::Active =>
            {
                stale.last_good.insert(digest, cached.clone()).await;
            }
            _ => stale.last_good.invalidate(&digest).await,
        }
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

    /// While a revocation listener is away: the store's answer, never cached (a revocation
    /// made elsewhere meanwhile would not be heard), and a stale one only as
    /// [`StaleIfError`] allows.
    async fn ask_uncached(&self, digest: KeyDigest) -> LookupResult<St::Scope> {
        let patience = self.stale.as_ref().map(|stale| stale.settings.patience);
        match patiently(&*self.inner, &digest, patience).await {
            Ok(found) => {
                if let Some(stale) = &self.stale {
                    stale.failing.store(false, Ordering::SeqCst);
                    if found
                        .as_ref()
                        .is_none_or(|record| record.status_at(self.now()) != KeyStatus::Active)
                    {
                        stale.last_good.invalidate(&digest).await;
                    }
                }
                Ok(found)
            }
            Err(error) => match self.stale_answer(&digest, &error).await {
                Some(record) => Ok(Some(record)),
                None => Err(error),
            },
        }
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

/// Every call goes to the inner store; a call that changes whether a key is accepted
/// (revoking, replacing, deleting) forgets the key here before it returns, so the next
/// request on this instance gets 401.
impl<St: ManageKeys> ManageKeys for CachedKeyStore<St> {
    async fn insert(
        &self,
        insert: Insert<St::Scope>,
    ) -> Result<Arc<KeyRecord<St::Scope>>, ManageError> {
        let replaced = insert.replacing().map(|(id, _)| id.clone());
        let record = self.inner.insert(insert).await?;
        if let Some(id) = replaced {
            self.invalidate(&id).await;
        }
        Ok(record)
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord<St::Scope>>>, ManageError> {
        self.inner.get(id).await
    }

    async fn records_of(&self, owner: &str) -> Result<Vec<Arc<KeyRecord<St::Scope>>>, ManageError> {
        self.inner.records_of(owner).await
    }

    async fn revoke_at(
        &self,
        id: &KeyId,
        revocation: Revocation,
    ) -> Result<Arc<KeyRecord<St::Scope>>, ManageError> {
        let revoked = self.inner.revoke_at(id, revocation).await;
        // Forgotten even when the store failed: the revocation may have landed.
        self.invalidate(id).await;
        revoked
    }

    async fn set_disabled(
        &self,
        id: &KeyId,
        disabled: bool,
    ) -> Result<Arc<KeyRecord<St::Scope>>, ManageError> {
        let changed = self.inner.set_disabled(id, disabled).await;
        self.invalidate(id).await;
        changed
    }

    async fn delete(&self, id: &KeyId) -> Result<Arc<KeyRecord<St::Scope>>, ManageError> {
        let deleted = self.inner.delete(id).await;
        self.invalidate(id).await;
        deleted
    }

    async fn touch(&self, id: &KeyId, at: SystemTime) -> Result<(), StoreError> {
        self.inner.touch(id, at).await
    }

    /// The inner store's purge: what it deletes was refused already, cached or not.
    async fn purge(&self, owner: &str, before: SystemTime) -> Result<usize, ManageError> {
        self.inner.purge(owner, before).await
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
#[path = "cached_stale_tests.rs"]
mod stale_tests;

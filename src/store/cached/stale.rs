//! Stale-if-error: when the store fails, a key's last known-good record may answer, for a
//! bounded window and only for records the revocation listener covered.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::{Cached, CachedKeyStore};
use crate::key::KeyDigest;
use crate::scope::Scope;
use crate::store::{KeyRecord, KeyStatus, KeyStore, LookupResult, StoreError, StoreErrorKind};

/// When the store fails, how long a key's last known-good record may still answer
/// (RFC 5861's `stale-if-error`, for keys): for [`CachedKeyStoreBuilder::stale_if_error`](super::CachedKeyStoreBuilder::stale_if_error).
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
    pub(super) window: Duration,
    pub(super) patience: Duration,
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
pub(super) async fn patiently<St: KeyStore>(
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
pub(super) struct Stale<S: Scope> {
    pub(super) settings: StaleIfError,
    /// The last record fetched active, per digest; bounded like the records.
    pub(super) last_good: Cache<KeyDigest, Cached<S>>,
    /// Records fetched before this epoch never answer stale: set when the listener comes
    /// back (messages may have been missed), when it is lost while the store answers (a
    /// revocation may be missed before the store fails), and by `invalidate_all`.
    pub(super) floor: AtomicU64,
    /// The store's last answer was a failure: an outage is under way.
    pub(super) failing: AtomicBool,
    pub(super) answers: AtomicU64,
}

impl<St: KeyStore> CachedKeyStore<St> {
    /// How many lookups were answered from a stale record because the store failed
    /// (always 0 without [`CachedKeyStoreBuilder::stale_if_error`](super::CachedKeyStoreBuilder::stale_if_error)).
    pub fn stale_answers(&self) -> u64 {
        self.stale
            .as_ref()
            .map_or(0, |stale| stale.answers.load(Ordering::Relaxed))
    }

    /// The last known-good record of `digest`, when the store failed with `error` and
    /// [`StaleIfError`] allows it.
    pub(super) async fn stale_answer(
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
    pub(super) async fn remember(&self, digest: KeyDigest, cached: Option<&Cached<St::Scope>>) {
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
}

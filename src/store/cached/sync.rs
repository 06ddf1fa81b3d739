//! The cache and its revocation listener: while the listener is away the cache answers
//! nothing, and what stale-if-error may serve depends on when it was lost.

use std::sync::atomic::Ordering;

use super::stale::patiently;
use super::CachedKeyStore;
use crate::key::KeyDigest;
use crate::store::{KeyStatus, KeyStore, LookupResult};

impl<St: KeyStore> CachedKeyStore<St> {
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

    /// While a revocation listener is away: the store's answer, never cached (a revocation
    /// made elsewhere meanwhile would not be heard), and a stale one only as
    /// [`StaleIfError`] allows.
    pub(super) async fn ask_uncached(&self, digest: KeyDigest) -> LookupResult<St::Scope> {
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
}

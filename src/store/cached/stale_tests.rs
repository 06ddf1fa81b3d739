//! Issue 36.2: stale-if-error after a missed revocation. A record may answer stale only if
//! the revocation listener stayed connected from its fetch to the start of the outage.
//! Failed before: the listener lost its connection while the store still answered, another
//! instance revoked the key, the store then failed, and the revoked key was answered stale
//! (`listener_lost` kept the known-good records; the floor rose only on reconnect).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::ManualClock;
use crate::forg::ForgScope;
use crate::key::{KeyDigest, KeyFamily};
use crate::store::{
    CachedKeyStore, KeyPolicy, KeyStore, LookupResult, ManageKeys, MemoryKeyStore, NewKey,
    StaleIfError, StoreError,
};

/// A memory store that fails on demand (the shared store, as every instance sees it).
struct Flaky {
    inner: MemoryKeyStore<ForgScope>,
    failing: AtomicBool,
}

impl KeyStore for Flaky {
    type Scope = ForgScope;

    async fn lookup(&self, digest: &KeyDigest) -> LookupResult<ForgScope> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("down"));
        }
        self.inner.lookup(digest).await
    }

    fn policy(&self) -> &KeyPolicy {
        self.inner.policy()
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("down"));
        }
        Ok(())
    }
}

async fn world() -> (
    Arc<Flaky>,
    CachedKeyStore<Flaky>,
    KeyDigest,
    crate::store::KeyId,
) {
    let clock = ManualClock::default();
    let inner = MemoryKeyStore::new().with_policy(crate::forg::key_policy().clock(clock));
    let issued = inner
        .issue(NewKey::new("org_1", "k", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let digest = *issued.record().digest();
    let id = issued.record().id().clone();
    let flaky = Arc::new(Flaky {
        inner,
        failing: AtomicBool::new(false),
    });
    let cache = CachedKeyStore::builder(Arc::clone(&flaky))
        .stale_if_error(StaleIfError::within(Duration::from_secs(60)))
        .build();
    cache.listener_connected();
    (flaky, cache, digest, id)
}

#[tokio::test]
async fn a_listener_lost_while_the_store_answers_ends_stale_answers() {
    let (flaky, cache, digest, id) = world().await;
    assert!(
        cache.lookup(&digest).await.unwrap().is_some(),
        "fetched, known good"
    );
    cache.listener_lost().await; // the store still answers
    flaky.inner.revoke(&id).await.unwrap(); // another instance; no message arrives
    assert!(cache
        .lookup(&digest)
        .await
        .unwrap()
        .is_none_or(|r| r.revoked()));
    flaky.failing.store(true, Ordering::SeqCst);
    assert!(
        cache.lookup(&digest).await.is_err(),
        "never answered stale: the revocation may have been missed"
    );
    assert_eq!(cache.stale_answers(), 0);
}

#[tokio::test]
async fn a_record_fetched_while_the_listener_is_away_never_answers_stale() {
    let (flaky, cache, digest, _) = world().await;
    cache.listener_lost().await;
    assert!(cache.lookup(&digest).await.unwrap().is_some());
    flaky.failing.store(true, Ordering::SeqCst);
    assert!(cache.lookup(&digest).await.is_err());
}

#[tokio::test]
async fn an_outage_that_takes_the_listener_with_it_still_answers_stale() {
    let (flaky, cache, digest, _) = world().await;
    assert!(cache.lookup(&digest).await.unwrap().is_some());
    flaky.failing.store(true, Ordering::SeqCst);
    // Cached: answered before anyone notices the outage.
    assert!(cache.lookup(&digest).await.unwrap().is_some());
    cache.listener_lost().await; // the same server: its subscription goes too
    assert!(
        cache.lookup(&digest).await.unwrap().is_some(),
        "connected until the outage"
    );
    assert_eq!(cache.stale_answers(), 1);
}

//! `CachedKeyStore` against a counting store: hits, TTLs on a fake clock, bounded negative
//! caching, single-flight, invalidation (also of a fetch in flight), errors never cached.
#![cfg(feature = "cache")]

use crate::common;
use crate::conformance;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;
use tower::Layer;
use tower_api_key::clock::ManualClock;
use tower_api_key::key::KeyFamily;
use tower_api_key::store::ManageKeys;
use tower_api_key::store::{CachedKeyStore, KeyStatus, KeyStore};
use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore};

/// Fresh memory stores behind a cache: the shared lifecycle suite, including "the next
/// lookup after revoke returned sees it" through the cache.
struct CachedMemory;

impl conformance::Fixture for CachedMemory {
    type Store = CachedKeyStore<MemoryKeyStore<ForgScope>>;

    async fn store(&self, policy: tower_api_key::store::KeyPolicy) -> Arc<Self::Store> {
        Arc::new(CachedKeyStore::new(Arc::new(
            MemoryKeyStore::new().with_policy(policy),
        )))
    }
}

conformance_suite!(Some(CachedMemory));

fn unknown_digest(i: u32) -> tower_api_key::key::KeyDigest {
    tower_api_key::key::KeyHasher::sha256().digest(&format!("fos_{i:032x}"))
}

#[tokio::test]
async fn positive_hits_skip_the_store_until_the_ttl() {
    let (memory, _) = store_with_clock();
    let issued = issue(&memory, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let counting = ScriptedStore::new(memory, Script::Delegate);
    let clock = ManualClock::new(start_time());
    let cache = CachedKeyStore::builder(Arc::clone(&counting))
        .ttl(Duration::from_secs(60))
        .clock(clock.clone())
        .build();
    let digest = digest_of(&issued);

    assert!(
        cache.lookup_now(&digest).is_none(),
        "a miss goes the asynchronous way"
    );
    assert_eq!(
        cache.lookup(&digest).await.unwrap().unwrap().id(),
        issued.record().id()
    );
    for _ in 0..10 {
        let hit = cache
            .lookup_now(&digest)
            .expect("answered from memory")
            .unwrap();
        assert_eq!(hit.unwrap().id(), issued.record().id());
        cache.lookup(&digest).await.unwrap().unwrap();
    }
    assert_eq!(counting.lookups(), 1);

    clock.advance(Duration::from_secs(60));
    assert!(
        cache.lookup_now(&digest).is_none(),
        "expired on the cache's clock"
    );
    cache.lookup(&digest).await.unwrap().unwrap();
    assert_eq!(counting.lookups(), 2);
}

#[tokio::test]
async fn unknown_digests_are_cached_briefly_and_bounded() {
    let (memory, _) = store_with_clock();
    let counting = ScriptedStore::new(memory, Script::Delegate);
    let clock = ManualClock::new(start_time());
    let cache = CachedKeyStore::builder(Arc::clone(&counting))
        .negative_ttl(Duration::from_secs(5))
        .negative_capacity(100)
        .clock(clock.clone())
        .build();
    let digest = unknown_digest(0);

    assert!(cache.lookup(&digest).await.unwrap().is_none());
    assert!(matches!(cache.lookup_now(&digest), Some(Ok(None))));
    assert!(cache.lookup(&digest).await.unwrap().is_none());
    assert_eq!(counting.lookups(), 1);
    clock.advance(Duration::from_secs(5));
    assert!(cache.lookup_now(&digest).is_none());
    assert!(cache.lookup(&digest).await.unwrap().is_none());
    assert_eq!(counting.lookups(), 2);

    for i in 1..=5_000 {
        cache.lookup(&unknown_digest(i)).await.unwrap();
    }
    let (records, unknown) = cache.entry_counts().await;
    assert_eq!(records, 0);
    assert!(unknown <= 100, "negative cache bounded: {unknown}");
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_make_one_store_call() {
    let (memory, _) = store_with_clock();
    let issued = issue(&memory, &KeyFamily::FOS, ForgScope::ReadRules);
    let counting = ScriptedStore::new(memory, Script::Slow(Duration::from_millis(50)));
    let cache = Arc::new(CachedKeyStore::new(Arc::clone(&counting)));
    let digest = digest_of(&issued);

    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.lookup(&digest).await.unwrap().unwrap().id().clone() })
        })
        .collect();
    for task in tasks {
        assert_eq!(&task.await.unwrap(), issued.record().id());
    }
    assert_eq!(counting.lookups(), 1);

    let unknown = unknown_digest(7);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.lookup(&unknown).await.unwrap().is_none() })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    assert_eq!(
        counting.lookups(),
        2,
        "one call for 100 requests with the same unknown key"
    );
}

#[tokio::test]
async fn store_errors_are_never_cached() {
    let (memory, _) = store_with_clock();
    let issued = issue(&memory, &KeyFamily::FOS, ForgScope::ReadRules);
    let counting = ScriptedStore::new(memory, Script::Fail);
    let cache = CachedKeyStore::new(Arc::clone(&counting));
    let digest = digest_of(&issued);

    for attempt in 1..=3 {
        assert!(cache.lookup(&digest).await.is_err());
        assert!(
            cache.lookup_now(&digest).is_none(),
            "no cached failure, no cached miss"
        );
        assert_eq!(counting.lookups(), attempt);
    }
    counting.set(Script::Delegate);
    assert!(cache.lookup(&digest).await.unwrap().is_some());
}

#[tokio::test]
async fn revoking_through_the_wrapper_is_immediate() {
    let (memory, _) = store_with_clock();
    let issued = issue(&memory, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let cache = Arc::new(CachedKeyStore::new(Arc::clone(&memory)));
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&cache)).layer(probe.service::<String>());
    let key = issued.key().expose_secret();

    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
    cache.revoke(issued.record().id()).await.unwrap();
    assert_eq!(
        send(service, bearer(key)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(probe.calls(), 2);
}

/// How the cache is told to forget after the revocation.
enum Forget {
    /// `invalidate(id)`: what a revocation message does.
    Key,
    /// `invalidate_all()`: what a revocation channel that reconnects does (messages may
    /// have been missed).
    All,
}

/// A key revoked (and forgotten) while a fetch that read it still active is sleeping.
struct RevokedDuringFetch {
    counting: Arc<ScriptedStore>,
    cache: Arc<CachedKeyStore<ScriptedStore>>,
    digest: tower_api_key::key::KeyDigest,
    early: tokio::task::JoinHandle<Arc<tower_api_key::store::KeyRecord<ForgScope>>>,
    revoked_at: std::time::SystemTime,
}

async fn revoked_during_a_fetch(forget: Forget) -> RevokedDuringFetch {
    let (memory, _) = store_with_clock();
    let issued = issue(&memory, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let counting = ScriptedStore::new(
        Arc::clone(&memory),
        Script::ReadThenWait(Duration::from_millis(100)),
    );
    let cache = Arc::new(CachedKeyStore::new(Arc::clone(&counting)));
    let digest = digest_of(&issued);
    // The fetch starts and reads the record while the key is still active ...
    let early = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move { cache.lookup(&digest).await.unwrap().unwrap() })
    };
    tokio::task::yield_now().await;
    // ... and the key is revoked and invalidated while the fetch sleeps.
    let revoked = memory.revoke(issued.record().id()).await.unwrap();
    match forget {
        Forget::Key => cache.invalidate(issued.record().id()).await,
        Forget::All => cache.invalidate_all(),
    }
    RevokedDuringFetch {
        counting,
        cache,
        digest,
        early,
        revoked_at: revoked.revoked_at().unwrap(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_fetch_in_flight_during_revocation_is_not_served() {
    let race = revoked_during_a_fetch(Forget::Key).await;
    // The fetch completes with the old record and caches it ...
    let stale = race.early.await.unwrap();
    assert_eq!(stale.revoked_at(), None);
    // ... but that entry is not served.
    assert!(
        race.cache.lookup_now(&race.digest).is_none(),
        "the stale entry is not served"
    );
    race.counting.set(Script::Delegate);
    let fresh = race.cache.lookup(&race.digest).await.unwrap().unwrap();
    assert_eq!(fresh.status_at(race.revoked_at), KeyStatus::Revoked);
    assert_eq!(race.counting.lookups(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_lookup_after_revocation_does_not_join_an_older_fetch() {
    let race = revoked_during_a_fetch(Forget::Key).await;
    // Revocation has returned; a lookup that starts now would be coalesced with the fetch.
    race.counting.set(Script::Delegate);
    let late = race.cache.lookup(&race.digest).await.unwrap().unwrap();
    assert_eq!(late.status_at(race.revoked_at), KeyStatus::Revoked);
    assert_eq!(
        race.early.await.unwrap().revoked_at(),
        None,
        "the early caller began before"
    );
}

#[tokio::test]
async fn cache_uses_the_inner_hasher() {
    let hasher = tower_api_key::key::KeyHasher::peppered(&[9u8; 32]).unwrap();
    let memory = Arc::new(
        MemoryKeyStore::new()
            .with_policy(tower_api_key::forg::key_policy())
            .with_hasher(hasher),
    );
    let issued = issue(&memory, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let cache = Arc::new(CachedKeyStore::new(memory));
    let probe = Probe::new();
    let service = AuthLayer::new(cache).layer(probe.service::<String>());
    assert_eq!(
        send(service, bearer(issued.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revoked_expired_and_unknown_keys_cost_the_same_store_calls() {
    let (memory, clock) = store_with_clock();
    let revoked = issue(&memory, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    memory.revoke(revoked.record().id()).await.unwrap();
    let expiring = memory
        .issue(
            tower_api_key::NewKey::new("org_1", "short", &KeyFamily::FORG_LIVE)
                .expires_in(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let counting = ScriptedStore::new(Arc::clone(&memory), Script::Delegate);
    // Default TTLs (60 s, 5 s), on the store's clock.
    let cache = CachedKeyStore::new(Arc::clone(&counting));
    // Warm the expiring key while it is still valid, then let it expire.
    cache.lookup(&digest_of(&expiring)).await.unwrap().unwrap();
    clock.advance(Duration::from_secs(2));

    let digests = [digest_of(&revoked), digest_of(&expiring), unknown_digest(7)];
    // The store calls each of them causes, step by step, must be the same sequence.
    let mut calls: Vec<Vec<usize>> = vec![Vec::new(); digests.len()];
    for step in 0..8 {
        for (i, digest) in digests.iter().enumerate() {
            let before = counting.lookups();
            let found = cache.lookup(digest).await.unwrap();
            assert!(
                found.is_none_or(
                    |r| r.status_at(start_time() + Duration::from_secs(2 + 3 * step))
                        != KeyStatus::Active
                ),
                "never an accepted record"
            );
            calls[i].push(counting.lookups() - before);
        }
        clock.advance(Duration::from_secs(3));
    }
    assert_eq!(calls[0], calls[2], "revoked vs unknown: {calls:?}");
    assert_eq!(calls[1], calls[2], "expired vs unknown: {calls:?}");
    assert!(calls[2].contains(&0) && calls[2].contains(&1), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn a_fetch_in_flight_during_invalidate_all_is_not_served() {
    let race = revoked_during_a_fetch(Forget::All).await;
    let stale = race.early.await.unwrap();
    assert_eq!(stale.revoked_at(), None, "the fetch read the old record");
    assert!(
        race.cache.lookup_now(&race.digest).is_none(),
        "the stale entry is not served"
    );
    race.counting.set(Script::Delegate);
    let fresh = race.cache.lookup(&race.digest).await.unwrap().unwrap();
    assert!(fresh.revoked());
    assert_eq!(fresh.status_at(race.revoked_at), KeyStatus::Revoked);
    assert_eq!(race.counting.lookups(), 2);
}

/// Stale-if-error on a fake clock: while the store fails, a key whose record was fetched
/// active answers 200 until the window ends, then 503; revoked, disabled, invalidated,
/// expired and never-seen keys never get a stale 200.
#[tokio::test]
async fn stale_if_error_answers_known_good_keys_for_the_window_only() {
    use tower_api_key::store::StaleIfError;
    let (keys, clock) = store_with_clock();
    let good = issue(&keys, &KeyFamily::FOS, ForgScope::ReadRules);
    let revoked = issue(&keys, &KeyFamily::FOS, ForgScope::ReadRules);
    let disabled = issue(&keys, &KeyFamily::FOS, ForgScope::ReadRules);
    let invalidated = issue(&keys, &KeyFamily::FOS, ForgScope::ReadRules);
    let expiring = memory(
        keys.issue(
            tower_api_key::NewKey::new("org_1", "expiring", &KeyFamily::FOS)
                .expires_in(Duration::from_secs(120)),
        ),
    )
    .unwrap();
    let never_seen = issue(&keys, &KeyFamily::FOS, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(Arc::clone(&keys), Script::Delegate);
    let cache = Arc::new(
        CachedKeyStore::builder(Arc::clone(&scripted))
            .ttl(Duration::from_secs(60))
            .stale_if_error(StaleIfError::within(Duration::from_secs(300)))
            .build(),
    );
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&cache)).layer(probe.service::<String>());
    let status = |key: &tower_api_key::store::IssuedKey<ForgScope>| {
        let service = service.clone();
        let key = key.key().expose_secret().to_owned();
        async move { send(service, bearer(&key)).await.status }
    };

    memory(keys.revoke(revoked.record().id())).unwrap();
    memory(keys.set_disabled(disabled.record().id(), true)).unwrap();
    for (key, expected) in [
        (&good, StatusCode::OK),
        (&revoked, StatusCode::UNAUTHORIZED),
        (&disabled, StatusCode::UNAUTHORIZED),
        (&invalidated, StatusCode::OK),
        (&expiring, StatusCode::OK),
    ] {
        assert_eq!(status(key).await, expected);
    }
    cache.invalidate(invalidated.record().id()).await;
    assert_eq!(probe.calls(), 3);

    // The store goes away; the cached answers expire.
    scripted.set(Script::Fail);
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(&good).await, StatusCode::OK, "known good: stale");
    assert_eq!(status(&expiring).await, StatusCode::OK, "not expired yet");
    assert_eq!(cache.stale_answers(), 2);
    for key in [&revoked, &disabled, &invalidated, &never_seen] {
        assert_eq!(status(key).await, StatusCode::SERVICE_UNAVAILABLE);
    }
    // Expiry passes during the outage: refused, even stale.
    clock.advance(Duration::from_secs(60));
    assert_eq!(status(&expiring).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status(&good).await, StatusCode::OK);
    // A revocation message still evicts the record.
    let other = issue(&keys, &KeyFamily::FOS, ForgScope::ReadRules);
    scripted.set(Script::Delegate);
    assert_eq!(status(&other).await, StatusCode::OK);
    scripted.set(Script::Fail);
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(&other).await, StatusCode::OK, "stale");
    cache.invalidate(other.record().id()).await;
    assert_eq!(
        status(&other).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "evicted"
    );
    // The window ends 300 s after the last successful fetch.
    clock.advance(Duration::from_secs(300 - 182));
    assert_eq!(
        status(&good).await,
        StatusCode::OK,
        "at 300 s: the window's last moment"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        status(&good).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "after the window"
    );
    assert_eq!(cache.stale_answers(), 5);
    assert_eq!(
        probe.calls(),
        3 + 1 + 5,
        "3 fresh, then 1 fresh and 5 stale"
    );
}

/// Without `stale_if_error` a failing store is a 503 once the cached answer expires.
#[tokio::test]
async fn without_stale_if_error_a_failing_store_is_a_503() {
    let (keys, clock) = store_with_clock();
    let good = issue(&keys, &KeyFamily::FOS, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(Arc::clone(&keys), Script::Delegate);
    let cache = Arc::new(CachedKeyStore::new(Arc::clone(&scripted)));
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&cache)).layer(probe.service::<String>());
    let key = good.key().expose_secret();
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
    scripted.set(Script::Fail);
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        send(service, bearer(key)).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(cache.stale_answers(), 0);
    assert_eq!(probe.calls(), 1);
}

/// A store that does not answer counts as failing after the patience, well before the
/// layer's 2 s timeout (tokio's paused clock: no real waiting).
#[tokio::test(start_paused = true)]
async fn a_hanging_store_answers_stale_after_the_patience() {
    use tower_api_key::store::StaleIfError;
    let (keys, clock) = store_with_clock();
    let good = issue(&keys, &KeyFamily::FOS, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(Arc::clone(&keys), Script::Delegate);
    let cache = Arc::new(
        CachedKeyStore::builder(Arc::clone(&scripted))
            .stale_if_error(
                StaleIfError::within(Duration::from_secs(300)).patience(Duration::from_millis(250)),
            )
            .build(),
    );
    let service = AuthLayer::new(Arc::clone(&cache)).layer(Probe::new().service::<String>());
    let key = good.key().expose_secret();
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
    scripted.set(Script::Hang);
    clock.advance(Duration::from_secs(61));
    let started = tokio::time::Instant::now();
    assert_eq!(send(service, bearer(key)).await.status, StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    assert_eq!(cache.stale_answers(), 1);
}

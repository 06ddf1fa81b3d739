//! Many tasks issuing, rotating, revoking and verifying at once on a multi-thread runtime:
//! no key is accepted after `revoke` returns, no valid key is refused, and the per-owner limit
//! holds exactly. The revocation race runs through every store and cache combination:
//! memory, cached memory, Redis, cached Redis.

use crate::common;

use futures_util::FutureExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{bearer, send, Probe};
use http::StatusCode;
use tower::Layer;
use tower_api_key::key::KeyFamily;
use tower_api_key::store::ManageKeys;
use tower_api_key::store::{KeyId, ManageError};
use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore, NewKey};

const KEYS: usize = 8;
const CHECKS: usize = 200;

/// Revokes half of the keys through `store` while 16 tasks verify all of them through it.
async fn run<St: ManageKeys<Scope = ForgScope>>(store: Arc<St>) {
    let mut keys = Vec::new();
    for i in 0..KEYS {
        let new =
            NewKey::new(format!("org{i}"), "k", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules);
        keys.push(store.issue(new).await.unwrap());
    }
    let revoked: Arc<Vec<AtomicBool>> =
        Arc::new((0..KEYS).map(|_| AtomicBool::new(false)).collect());
    let violations = Arc::new(AtomicUsize::new(0));
    let refused_valid = Arc::new(AtomicUsize::new(0));
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>());

    let mut tasks = Vec::new();
    for (i, issued) in keys.iter().enumerate() {
        for _ in 0..2 {
            let (service, key) = (service.clone(), issued.key().expose_secret().to_owned());
            let (revoked, violations, refused_valid) = (
                Arc::clone(&revoked),
                Arc::clone(&violations),
                Arc::clone(&refused_valid),
            );
            tasks.push(tokio::spawn(async move {
                for _ in 0..CHECKS {
                    let was_revoked = revoked[i].load(Ordering::SeqCst);
                    let status = send(service.clone(), bearer(&key)).await.status;
                    if was_revoked && status == StatusCode::OK {
                        violations.fetch_add(1, Ordering::SeqCst);
                    }
                    if i % 2 == 1 && status != StatusCode::OK {
                        refused_valid.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
    }
    for (i, issued) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let (store, revoked, id) = (
            Arc::clone(&store),
            Arc::clone(&revoked),
            issued.record().id().clone(),
        );
        tasks.push(tokio::spawn(async move {
            tokio::task::yield_now().await;
            store.revoke(&id).await.unwrap();
            revoked[i].store(true, Ordering::SeqCst);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a key was accepted after revoke returned"
    );
    assert_eq!(
        refused_valid.load(Ordering::SeqCst),
        0,
        "a valid key was refused"
    );
    for (i, issued) in keys.iter().enumerate() {
        let expected = if i % 2 == 0 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(
            send(service.clone(), bearer(issued.key().expose_secret()))
                .await
                .status,
            expected
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_and_verification_race_on_the_memory_store() {
    run(Arc::new(
        MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()),
    ))
    .await;
}

#[cfg(feature = "cache")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_and_verification_race_behind_the_cache() {
    use tower_api_key::store::CachedKeyStore;
    run(Arc::new(CachedKeyStore::new(Arc::new(
        MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()),
    ))))
    .await;
}

#[cfg(feature = "redis")]
mod on_redis {
    use super::*;
    use common::redis_server::Redis;
    use tower_api_key::store::{CachedKeyStore, RedisKeyStore};

    async fn redis_store(redis: &Redis) -> RedisKeyStore<ForgScope> {
        let namespace = format!("c{}", KeyId::generate().unwrap().as_str());
        RedisKeyStore::connect(&redis.url)
            .await
            .unwrap()
            .with_namespace(namespace)
            .with_policy(tower_api_key::forg::key_policy())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn revocation_and_verification_race_on_redis() {
        let Some(redis) = Redis::start() else { return };
        run(Arc::new(redis_store(&redis).await)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn revocation_and_verification_race_behind_the_cache_on_redis() {
        let Some(redis) = Redis::start() else { return };
        let cached = CachedKeyStore::new(Arc::new(redis_store(&redis).await));
        run(Arc::new(cached)).await;
    }
}

/// Active keys of the owner `busy`. The time is taken after the listing: a rotation that
/// runs while we list revokes its old key at its own "now", which must not be in our future.
fn active_keys(store: &MemoryKeyStore<ForgScope>) -> usize {
    let records = store
        .list("busy")
        .now_or_never()
        .expect("the memory store answers at once")
        .unwrap();
    let now = std::time::SystemTime::now();
    records
        .iter()
        .filter(|r| r.status_at(now) == tower_api_key::store::KeyStatus::Active)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_rotate_and_revoke_at_once_keep_the_owner_limit() {
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let seed: Vec<KeyId> = (0..5)
        .map(|_| {
            store
                .issue(NewKey::new("busy", "seed", &KeyFamily::FOS))
                .now_or_never()
                .expect("the memory store answers at once")
                .unwrap()
                .record()
                .id()
                .clone()
        })
        .collect();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = Arc::clone(&store);
        let target = seed[i % seed.len()].clone();
        tasks.push(tokio::spawn(async move {
            match i % 4 {
                0 | 1 => match store
                    .issue(NewKey::new("busy", "new", &KeyFamily::FOS))
                    .await
                {
                    Ok(_) | Err(ManageError::KeyLimitReached { limit: 10 }) => {}
                    Err(other) => panic!("{other}"),
                },
                2 => match store.rotate(&target, Some(std::time::Duration::ZERO)).await {
                    Ok(_) | Err(ManageError::NotFound(_) | ManageError::KeyLimitReached { .. }) => {
                    }
                    Err(other) => panic!("{other}"),
                },
                _ => {
                    let _ = store.revoke(&target).await;
                }
            }
            assert!(
                active_keys(&store) <= 10,
                "{} active keys",
                active_keys(&store)
            );
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let active = active_keys(&store);
    assert!(active <= 10);
    // Fill to the limit exactly.
    let mut issued = active;
    while store
        .issue(NewKey::new("busy", "fill", &KeyFamily::FOS))
        .await
        .is_ok()
    {
        issued += 1;
    }
    assert_eq!(issued, 10);
}

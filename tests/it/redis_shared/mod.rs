//! Several instances on one real `redis-server`: shared quotas, shared keys, revocation seen
//! by the other instance, Redis killed mid-run and brought back; and the shared lifecycle suite
//! for `RedisKeyStore`, bare and behind a `CachedKeyStore`.
//!
//! Each test starts a private `redis-server` on a free loopback port (data in a temporary
//! directory, append-only file on so a restart keeps it), or uses `REDIS_URL` when set (the
//! kill-and-restart test then needs its own server and says so). Without `redis-server` the
//! tests fail with instructions, unless `TOWER_API_KEY_SKIP_REDIS=1` says to skip them.
#![cfg(feature = "redis")]

use crate::common;
use crate::conformance;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tower_api_key::rate_limit::ClassName;
use tower_api_key::rate_limit::Quota;
use tower_api_key::store::ManageKeys;

use common::proxy::{Mode, Proxy};
use common::redis_server::Redis;
use common::{
    accepted_key, bearer, from, never_accepted_for, refused_from_now_on, send, until, Probe,
};
use http::StatusCode;
use tower::Layer;
use tower_api_key::clock::ManualClock;
use tower_api_key::failure_limit::{FailureLimit, FailureLimitLayer};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::{OnBackendError, RateClass, RateLimits, RedisRateLimiter};
use tower_api_key::store::{
    CachedKeyStore, KeyPolicy, KeyStore, RedisKeyStore, RevocationListener,
};
use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore, NewKey, RedisConnection};

mod outages;
mod revocations;

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap())
}

/// A unique namespace per test, so tests sharing a `REDIS_URL` do not meet.
fn namespace() -> String {
    format!(
        "t{}",
        tower_api_key::store::KeyId::generate().unwrap().as_str()
    )
}

async fn store(url: &str, ns: &str) -> RedisKeyStore<ForgScope> {
    RedisKeyStore::connect(url)
        .await
        .unwrap()
        .with_namespace(ns)
        .with_policy(tower_api_key::forg::key_policy())
}

#[tokio::test]
async fn two_instances_grant_exactly_one_quota() {
    let Some(redis) = Redis::start() else { return };
    let connect = || async { RedisConnection::open(&redis.url).await.unwrap() };
    one_quota(vec![connect().await, connect().await], 1).await;
}

/// Instances, one per connection, each with its own key store and limiter: for each of
/// `keys` keys, requests sent to the instances in turn are granted the quota of 5 once,
/// with the policy and `Retry-After` headers (here and on a cluster, with instances seeded
/// by different nodes and keys whose buckets land on different masters).
pub(crate) async fn one_quota(connections: Vec<RedisConnection>, keys: usize) {
    let ns = namespace();
    let issuer = RedisKeyStore::<ForgScope>::new(connections[0].clone())
        .with_policy(tower_api_key::forg::key_policy())
        .with_namespace(&ns);
    let class = RateClass::per_key(ClassName::from_static("shared"), per_minute(5));
    let probe = Probe::new();
    let instances: Vec<_> = connections
        .into_iter()
        .map(|connection| {
            let store = RedisKeyStore::<ForgScope>::new(connection.clone())
                .with_policy(tower_api_key::forg::key_policy())
                .with_namespace(&ns);
            AuthLayer::new(Arc::new(store)).layer(
                RateLimits::backed_by(RedisRateLimiter::new(connection).with_namespace(&ns))
                    .layer(class.clone())
                    .layer(probe.service::<String>()),
            )
        })
        .collect();
    for k in 0..keys {
        let issued = issuer
            .issue(
                NewKey::new("org", format!("shared {k}"), &KeyFamily::FORG_LIVE)
                    .scopes(ForgScope::ReadRules),
            )
            .await
            .unwrap();
        let key = issued.key().expose_secret();
        let mut allowed = 0;
        for i in 0..12 {
            let answer = send(instances[i % instances.len()].clone(), bearer(key)).await;
            match answer.status {
                StatusCode::OK => {
                    allowed += 1;
                    assert_eq!(
                        answer.header("ratelimit-policy"),
                        Some(r#""shared";q=5;w=60"#)
                    );
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
                    assert!((1..=12).contains(&retry), "{retry}");
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(
            allowed, 5,
            "key {k}: the instances together grant the quota once"
        );
    }
    assert_eq!(probe.calls(), 5 * keys);
}

#[tokio::test]
async fn a_revocation_on_one_instance_is_seen_by_the_other() {
    let Some(redis) = Redis::start() else { return };
    let connect = || async { RedisConnection::open(&redis.url).await.unwrap() };
    a_revocation_reaches_the_other_instance(connect().await, connect().await).await;
}

#[tokio::test]
async fn an_update_on_one_instance_is_seen_by_the_other() {
    let Some(redis) = Redis::start() else { return };
    let ns = namespace();
    let cached = || async {
        let connection = RedisConnection::open(&redis.url).await.unwrap();
        let store = RedisKeyStore::<ForgScope>::new(connection)
            .with_policy(tower_api_key::forg::key_policy())
            .with_namespace(&ns);
        Arc::new(CachedKeyStore::new(Arc::new(store)))
    };
    let (a, b) = (cached().await, cached().await);
    let (listener_a, listener_b) = (
        RevocationListener::spawn(Arc::clone(&a)),
        RevocationListener::spawn(Arc::clone(&b)),
    );
    until("both subscriptions", || {
        listener_a.connects() == 1 && listener_b.connects() == 1
    })
    .await;
    common::instances::a_narrowed_scope_reaches_the_other_instance(a, b, || listener_b.received())
        .await;
}

/// Two cached instances, A on connection `a` and B on `b`, each with its listener: a key
/// both have cached, revoked through A, is refused by B (and A) as soon as the message
/// arrives (here on one server; on a cluster with A and B seeded by different nodes).
pub(crate) async fn a_revocation_reaches_the_other_instance(
    a: RedisConnection,
    b: RedisConnection,
) {
    let ns = namespace();
    let cached = |connection| {
        let store = RedisKeyStore::<ForgScope>::new(connection)
            .with_policy(tower_api_key::forg::key_policy())
            .with_namespace(&ns);
        Arc::new(CachedKeyStore::new(Arc::new(store)))
    };
    let (cache_a, cache_b) = (cached(a), cached(b));
    let (listener_a, listener_b) = (
        RevocationListener::spawn(Arc::clone(&cache_a)),
        RevocationListener::spawn(Arc::clone(&cache_b)),
    );
    until("both subscriptions", || {
        listener_a.connects() == 1 && listener_b.connects() == 1
    })
    .await;
    let issued = cache_a
        .inner()
        .issue(NewKey::new("org", "revoke me", &KeyFamily::FOS).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    let probe = Probe::new();
    let a = AuthLayer::new(Arc::clone(&cache_a)).layer(probe.service::<String>());
    let b = AuthLayer::new(Arc::clone(&cache_b)).layer(probe.service::<String>());
    let key = issued.key().expose_secret();

    // Both instances have the record cached now.
    for _ in 0..3 {
        assert_eq!(send(a.clone(), bearer(key)).await.status, StatusCode::OK);
        assert_eq!(send(b.clone(), bearer(key)).await.status, StatusCode::OK);
    }
    cache_a.inner().revoke(issued.record().id()).await.unwrap();
    until("the revocation on B", || listener_b.received() >= 1).await;
    assert_eq!(
        send(b.clone(), bearer(key)).await.status,
        StatusCode::UNAUTHORIZED,
        "B, cached, sees it"
    );
    until("the revocation on A", || listener_a.received() >= 1).await;
    assert_eq!(send(a, bearer(key)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(probe.calls(), 6);
}

#[tokio::test]
async fn redis_killed_mid_run_fails_as_configured_and_recovers() {
    let Some(mut redis) = Redis::start_durable() else {
        return;
    };
    if !redis.owned() {
        panic!("this test stops and restarts Redis: unset REDIS_URL so it can start its own");
    }
    let ns = namespace();
    let cache = Arc::new(CachedKeyStore::new(Arc::new(store(&redis.url, &ns).await)));
    let listener = RevocationListener::spawn(Arc::clone(&cache));
    until("the subscription", || listener.connects() == 1).await;
    let cached_key = cache
        .inner()
        .issue(NewKey::new("org", "cached", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    let cold_key = cache
        .inner()
        .issue(NewKey::new("org", "cold", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    let limiter = RedisRateLimiter::connect(&redis.url)
        .await
        .unwrap()
        .with_namespace(&ns);
    let class = RateClass::per_key(ClassName::from_static("outage"), per_minute(100));
    let probe = Probe::new();
    let allow = AuthLayer::new(Arc::clone(&cache)).layer(
        RateLimits::backed_by(limiter.clone())
            .layer(class.clone())
            .layer(probe.service::<String>()),
    );
    // The limiter's own failure policy, behind keys that do not need Redis.
    let local =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let local_key = local
        .issue(NewKey::new("org", "local", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let limited = |policy: OnBackendError| {
        AuthLayer::new(Arc::clone(&local)).layer(
            RateLimits::backed_by(limiter.clone())
                .on_backend_error(policy)
                .layer(class.clone())
                .layer(probe.service::<String>()),
        )
    };
    let (cached, cold) = (
        cached_key.key().expose_secret(),
        cold_key.key().expose_secret(),
    );
    assert_eq!(
        send(allow.clone(), bearer(cached)).await.status,
        StatusCode::OK
    );

    redis.kill();
    let answer = send(allow.clone(), bearer(cold)).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "key store down: fail closed"
    );
    assert_eq!(answer.json()["code"], "auth_unavailable");
    // The revocation channel is down too: revocations may be missed, so the cache stops
    // answering as soon as the listener notices, and the cached key fails closed as well.
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = send(allow.clone(), bearer(cached)).await.status;
        if status != StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "no cached answers while away"
    );
    let local_key = local_key.key().expose_secret();
    let answer = send(limited(OnBackendError::Allow), bearer(local_key)).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "limiter down, default: allow"
    );
    assert_eq!(answer.header("ratelimit"), None);
    let answer = send(limited(OnBackendError::Deny), bearer(local_key)).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "limiter down, configured: deny"
    );
    let deny = AuthLayer::new(Arc::clone(&cache)).layer(
        RateLimits::backed_by(limiter)
            .on_backend_error(OnBackendError::Deny)
            .layer(class)
            .layer(probe.service::<String>()),
    );

    redis.spawn().unwrap();
    let mut recovered = false;
    for _ in 0..500 {
        let answer = send(allow.clone(), bearer(cold)).await;
        if answer.status == StatusCode::OK && answer.header("ratelimit").is_some() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(recovered, "store and limiter reconnect by themselves");
    until("the revocation channel to reconnect", || {
        listener.connects() >= 2
    })
    .await;
    assert_eq!(send(deny, bearer(cached)).await.status, StatusCode::OK);
}

/// Fresh stores on one private server, each in its own namespace.
struct RedisStores(Redis);

impl conformance::Fixture for RedisStores {
    type Store = RedisKeyStore<ForgScope>;

    /// Each cycle is several round trips: fewer than in memory, the same bound checked.
    fn login_cycles(&self) -> usize {
        2_500 // past the SQL sweep's 1,024 inserts twice; each cycle is four round trips
    }

    async fn store(&self, policy: KeyPolicy) -> Arc<Self::Store> {
        Arc::new(store(&self.0.url, &namespace()).await.with_policy(policy))
    }
}

/// The same, behind a cache.
struct CachedRedisStores(Redis);

impl conformance::Fixture for CachedRedisStores {
    type Store = CachedKeyStore<RedisKeyStore<ForgScope>>;

    /// Each cycle is several round trips: fewer than in memory, the same bound checked.
    fn login_cycles(&self) -> usize {
        2_500 // past the SQL sweep's 1,024 inserts twice; each cycle is four round trips
    }

    async fn store(&self, policy: KeyPolicy) -> Arc<Self::Store> {
        let redis = store(&self.0.url, &namespace()).await.with_policy(policy);
        Arc::new(CachedKeyStore::new(Arc::new(redis)))
    }
}

mod redis_store {
    use super::*;
    conformance_suite!(Redis::start().map(RedisStores));
}

mod cached_redis_store {
    use super::*;
    conformance_suite!(Redis::start().map(CachedRedisStores));
}

#[tokio::test]
async fn two_instances_share_one_failed_authentication_budget() {
    let Some(redis) = Redis::start() else { return };
    let connect = || async { RedisConnection::open(&redis.url).await.unwrap() };
    one_failed_authentication_budget([connect().await, connect().await]).await;
}

/// Two instances, each on its own connection, guessing keys from one address in turn:
/// one budget between them (here and on a cluster, with instances seeded by different
/// nodes).
pub(crate) async fn one_failed_authentication_budget(connections: [RedisConnection; 2]) {
    let ns = namespace();
    let budget = 3;
    let probe = Probe::new();
    let mut instances = Vec::new();
    for connection in connections {
        let limiter = RedisRateLimiter::new(connection.clone()).with_namespace(&ns);
        let failures = FailureLimit::backed_by(per_minute(budget), limiter);
        let store = Arc::new(
            RedisKeyStore::<ForgScope>::new(connection)
                .with_policy(tower_api_key::forg::key_policy())
                .with_namespace(&ns),
        );
        instances.push(
            FailureLimitLayer::new(failures)
                .layer(AuthLayer::new(store).layer(probe.service::<String>())),
        );
    }
    // An attacker guessing keys against both instances, in turn.
    let mut refused = 0;
    let mut limited = [false, false];
    for attempt in 0..20u32 {
        let i = (attempt % 2) as usize;
        let guess = from("198.51.100.9", bearer(&format!("fos_{attempt:064x}")));
        match send(instances[i].clone(), guess).await.status {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => limited[i] = true,
            other => panic!("unexpected {other}"),
        }
        if limited == [true, true] {
            break;
        }
        // The failure is counted off the response path, by one round trip: let it land.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(limited, [true, true], "both instances refuse the address");
    // One shared budget, plus the failure each instance needs to learn it is spent; two
    // separate budgets would have allowed 2 × (3 + 1).
    assert!(
        (budget as usize..=budget as usize + 2).contains(&refused),
        "{refused} refused guesses"
    );
    assert_eq!(probe.calls(), 0);
}

/// Over `instance` (a connection to a TLS server here, to a TLS cluster elsewhere): the
/// key store behind a cache, its revocation listener and the rate limiter work, and a
/// revocation made through `revoking` reaches the listener and evicts the record.
pub(crate) async fn store_limiter_and_revocations_work(
    revoking: RedisConnection,
    instance: RedisConnection,
) {
    let ns = namespace();
    let direct = RedisKeyStore::<ForgScope>::new(revoking)
        .with_policy(tower_api_key::forg::key_policy())
        .with_namespace(&ns);
    let store = RedisKeyStore::<ForgScope>::new(instance.clone())
        .with_policy(tower_api_key::forg::key_policy())
        .with_namespace(&ns);
    let cache = Arc::new(CachedKeyStore::new(Arc::new(store)));
    let listener = RevocationListener::spawn(Arc::clone(&cache));
    until("the subscription", || listener.connects() == 1).await;
    let issued = direct
        .issue(NewKey::new("org", "tls", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    let probe = Probe::new();
    let class = RateClass::per_key(ClassName::from_static("tls"), per_minute(1));
    let service = AuthLayer::new(Arc::clone(&cache)).layer(
        RateLimits::backed_by(RedisRateLimiter::new(instance).with_namespace(&ns))
            .layer(class)
            .layer(probe.service::<String>()),
    );
    let key = issued.key().expose_secret();
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the quota is counted in Redis"
    );
    direct.revoke(issued.record().id()).await.unwrap();
    until("the revocation message", || listener.received() >= 1).await;
    assert_eq!(
        send(service, bearer(key)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(probe.calls(), 1);
}

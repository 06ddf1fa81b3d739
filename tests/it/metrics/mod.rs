//! Every row of the metrics table (`tower_api_key::metrics`, the README): each counter and
//! histogram moves as documented, under a recorder of its own (metrics-util's debugging
//! recorder, the test thread's default: the tests run on current-thread runtimes). And no
//! label value carries a key, a session token or a CSRF value, whatever the input.
#![cfg(feature = "metrics")]

use crate::common;
use tower_api_key::forg;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use tower::Layer;
use tower_api_key::failure_limit::{FailureLimit, FailureLimitLayer};
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::metrics::*;
use tower_api_key::rate_limit::{ClassName, Quota, RateClass, RateLimits};
use tower_api_key::store::KeyPolicy;
use tower_api_key::usage::{Budgets, PlanTable, SpendCaps};
use tower_api_key::{require, AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

mod labels;
mod prometheus;

/// What was recorded: (kind, name, sorted labels, value).
type Recorded = Vec<(MetricKind, String, Vec<(String, String)>, DebugValue)>;

fn recorded(snapshotter: &Snapshotter) -> Recorded {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            (key.kind(), key.key().name().to_owned(), labels, value)
        })
        .collect()
}

/// The counter `name` with exactly `labels` (0 when never recorded).
fn counter(recorded: &Recorded, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wanted.sort();
    recorded
        .iter()
        .filter(|(kind, n, l, _)| *kind == MetricKind::Counter && n == name && *l == wanted)
        .map(|(_, _, _, value)| match value {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum()
}

/// How many values the histogram `name` with `labels` holds.
fn histogram_len(recorded: &Recorded, name: &str, labels: &[(&str, &str)]) -> usize {
    recorded
        .iter()
        .filter(|(kind, n, l, _)| {
            *kind == MetricKind::Histogram
                && n == name
                && l.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .eq(labels.iter().copied())
        })
        .map(|(_, _, _, value)| match value {
            DebugValue::Histogram(values) => values.len(),
            _ => 0,
        })
        .sum()
}

/// A debugging recorder made the thread's default for the guard's life.
struct Recording {
    snapshotter: Snapshotter,
    _guard: metrics::LocalRecorderGuard<'static>,
}

fn recording() -> Recording {
    let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
    Recording {
        snapshotter: recorder.snapshotter(),
        _guard: metrics::set_default_local_recorder(recorder),
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap())
}

#[tokio::test(flavor = "current_thread")]
async fn requests_are_counted_by_credential_and_outcome() {
    let metrics = recording();
    let (store, _) = store_with_clock();
    let reader = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let limits = RateLimits::new();
    let class = RateClass::per_key(ClassName::from_static("metered"), per_minute(2));
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&store)).layer(
        limits
            .layer(class)
            .layer(require(ForgScope::ReadRules).layer(probe.service::<String>())),
    );
    let writer_only = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::WriteRules);
    let key = reader.key().expose_secret();
    for expected in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        assert_eq!(send(service.clone(), bearer(key)).await.status, expected);
    }
    let other = writer_only.key().expose_secret();
    assert_eq!(
        send(service.clone(), bearer(other)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(service.clone(), http::Request::new(String::new()))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(service, bearer("forg_live_not-even-hex")).await.status,
        StatusCode::UNAUTHORIZED
    );

    let seen = recorded(&metrics.snapshotter);
    let requests = |credential, outcome| {
        counter(
            &seen,
            REQUESTS,
            &[("credential", credential), ("outcome", outcome)],
        )
    };
    assert_eq!(requests("api_key", "ok"), 2);
    assert_eq!(requests("api_key", "rate_limited"), 1, "refused further in");
    assert_eq!(requests("api_key", "insufficient_scope"), 1);
    assert_eq!(requests("none", "invalid_api_key"), 2, "missing, malformed");
    assert_eq!(probe.calls(), 2);
    // The rate-limit row: by class and outcome.
    let decisions = |outcome| {
        counter(
            &seen,
            RATE_LIMIT_DECISIONS,
            &[("class", "metered"), ("outcome", outcome)],
        )
    };
    assert_eq!((decisions("allowed"), decisions("limited")), (3, 1));
}

#[tokio::test(flavor = "current_thread")]
async fn lookups_are_counted_by_backend_and_result_and_waits_are_timed() {
    let metrics = recording();
    let (store, _) = store_with_clock();
    let known = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
    let memory = AuthLayer::new(Arc::clone(&store)).layer(Probe::new().service::<String>());
    send(memory.clone(), bearer(known.key().expose_secret())).await;
    send(memory, bearer(&format!("fos_{:064x}", 7))).await;

    let scripted = ScriptedStore::new(Arc::clone(&store), Script::Slow(Duration::from_millis(5)));
    let slow = AuthLayer::new(Arc::clone(&scripted)).layer(Probe::new().service::<String>());
    send(slow.clone(), bearer(known.key().expose_secret())).await;
    scripted.set(Script::Fail);
    assert_eq!(
        send(slow, bearer(known.key().expose_secret())).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let seen = recorded(&metrics.snapshotter);
    let lookups = |backend, result| {
        counter(
            &seen,
            STORE_LOOKUPS,
            &[("backend", backend), ("result", result)],
        )
    };
    assert_eq!(lookups("memory", "found"), 1);
    assert_eq!(lookups("memory", "unknown"), 1);
    assert_eq!(
        lookups("custom", "found"),
        1,
        "a store of the application's"
    );
    assert_eq!(lookups("custom", "error"), 1);
    // Only lookups that waited are timed: the two of the scripted store.
    assert_eq!(
        histogram_len(&seen, STORE_LOOKUP_DURATION, &[("backend", "memory")]),
        0
    );
    assert_eq!(
        histogram_len(&seen, STORE_LOOKUP_DURATION, &[("backend", "custom")]),
        2
    );
}

#[cfg(feature = "cache")]
#[tokio::test(flavor = "current_thread")]
async fn the_cache_counts_hits_misses_evictions_and_stale_answers() {
    use tower_api_key::store::{CachedKeyStore, StaleIfError};
    let metrics = recording();
    let (store, clock) = store_with_clock();
    let keys: Vec<_> = (0..3)
        .map(|_| issue(&store, &KeyFamily::FOS, ForgScope::ReadRules))
        .collect();
    let scripted = ScriptedStore::new(Arc::clone(&store), Script::Delegate);
    let cache = Arc::new(
        CachedKeyStore::builder(Arc::clone(&scripted))
            .max_capacity(1)
            .stale_if_error(StaleIfError::within(Duration::from_secs(300)))
            .build(),
    );
    let service = AuthLayer::new(Arc::clone(&cache)).layer(Probe::new().service::<String>());
    let first = keys[0].key().expose_secret();
    send(service.clone(), bearer(first)).await; // miss
    send(service.clone(), bearer(first)).await; // hit
    for key in &keys[1..] {
        send(service.clone(), bearer(key.key().expose_secret())).await; // misses
    }
    cache.entry_counts().await; // runs the cache's maintenance: past capacity, evicted
    scripted.set(Script::Fail);
    clock.advance(Duration::from_secs(61));
    assert_eq!(send(service, bearer(first)).await.status, StatusCode::OK);

    let seen = recorded(&metrics.snapshotter);
    assert_eq!(counter(&seen, CACHE_HITS, &[]), 1);
    assert_eq!(
        counter(&seen, CACHE_MISSES, &[]),
        4,
        "three keys, then the stale one"
    );
    assert!(counter(&seen, CACHE_EVICTIONS, &[("cause", "size")]) >= 1);
    assert_eq!(counter(&seen, CACHE_STALE_ANSWERS, &[]), 1);
    assert_eq!(cache.stale_answers(), 1, "the method and the metric agree");
}

#[tokio::test(flavor = "current_thread")]
async fn failed_authentication_blocks_are_counted() {
    let metrics = recording();
    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let service = FailureLimitLayer::new(FailureLimit::new(per_minute(2)))
        .layer(AuthLayer::new(store).layer(Probe::new().service::<String>()));
    let mut statuses = Vec::new();
    for attempt in 0..5u32 {
        let guess = from("198.51.100.7", bearer(&format!("fos_{attempt:064x}")));
        statuses.push(send(service.clone(), guess).await.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "a budget of two failures a minute (and the one that spends it) per address"
    );
    let seen = recorded(&metrics.snapshotter);
    assert_eq!(counter(&seen, FAILED_AUTH_BLOCKS, &[]), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn spend_is_counted_by_environment_and_402s_too() {
    let metrics = recording();
    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let live = store
        .issue(NewKey::new("org", "live", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let caps = SpendCaps::new(Budgets::new().default_cap(Environment::Live, 10));
    let service =
        AuthLayer::new(store).layer(caps.layer(4).layer(Probe::new().service::<String>()));
    let key = live.key().expose_secret();
    let statuses = [
        send(service.clone(), bearer(key)).await.status,
        send(service.clone(), bearer(key)).await.status,
        send(service, bearer(key)).await.status,
    ];
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::OK, StatusCode::PAYMENT_REQUIRED]
    );
    let seen = recorded(&metrics.snapshotter);
    assert_eq!(counter(&seen, SPEND_CHARGED, &[("environment", "live")]), 8);
    assert_eq!(
        counter(&seen, SPEND_REFUSALS, &[("environment", "live")]),
        1
    );
    assert_eq!(counter(&seen, SPEND_CHARGED, &[("environment", "test")]), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn plan_refusals_are_counted_by_environment() {
    use tower_api_key::usage::{Plan, PlanLayer};
    let metrics = recording();
    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let live = store
        .issue(NewKey::new("free_org", "live", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let plans = PlanTable::new(Plan::Free).require(Environment::Live, Plan::Team);
    let service =
        AuthLayer::new(store).layer(PlanLayer::new(plans).layer(Probe::new().service::<String>()));
    assert_eq!(
        send(service, bearer(live.key().expose_secret()))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let seen = recorded(&metrics.snapshotter);
    assert_eq!(counter(&seen, PLAN_REFUSALS, &[("environment", "live")]), 1);
    assert_eq!(
        counter(
            &seen,
            REQUESTS,
            &[("credential", "api_key"), ("outcome", "plan_required")]
        ),
        1
    );
}

#[cfg(feature = "redis")]
mod on_redis {
    use super::*;
    use crate::common::redis_server::Redis;
    use tower_api_key::activity::{ActivityLayer, RedisActivityLog};
    use tower_api_key::store::{CachedKeyStore, RedisKeyStore, RevocationListener};
    use tower_api_key::RedisConnection;

    /// Revocation messages, heartbeats missed and reconnects of the Redis listener, behind
    /// a loopback proxy that goes silent, then drops and forwards again.
    #[tokio::test(flavor = "current_thread")]
    async fn revocation_messages_missed_heartbeats_and_reconnects_are_counted() {
        use crate::common::proxy::{Mode, Proxy};
        let metrics = recording();
        let Some(redis) = Redis::start() else { return };
        if !redis.owned() {
            eprintln!("needs its own redis-server, not REDIS_URL: skipped");
            return;
        }
        let proxy = Proxy::to(redis.port).await;
        let ns = format!(
            "m{}",
            tower_api_key::store::KeyId::generate().unwrap().as_str()
        );
        let through = |url: String| {
            let ns = ns.clone();
            async move {
                RedisKeyStore::<ForgScope>::new(RedisConnection::open(&url).await.unwrap())
                    .with_policy(tower_api_key::forg::key_policy())
                    .with_namespace(&ns)
            }
        };
        let cache = Arc::new(CachedKeyStore::new(Arc::new(
            through(format!("redis://127.0.0.1:{}", proxy.port)).await,
        )));
        let listener = RevocationListener::spawn_with_heartbeat(
            Arc::clone(&cache),
            Duration::from_millis(100),
        );
        until("the subscription", || listener.connects() == 1).await;
        let direct = through(redis.url.clone()).await;
        let issued = direct
            .issue(NewKey::new("org", "k", &KeyFamily::FOS))
            .await
            .unwrap();
        direct.revoke(issued.record().id()).await.unwrap();
        until("the message", || listener.received() == 1).await;
        proxy.set(Mode::Silent);
        until("the stall", || listener.stalls() >= 1).await;
        proxy.set(Mode::Down);
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.set(Mode::Forward);
        until("the resubscription", || listener.connects() >= 2).await;

        let seen = recorded(&metrics.snapshotter);
        let by_redis = |name| counter(&seen, name, &[("backend", "redis")]);
        assert_eq!(by_redis(REVOCATION_MESSAGES), 1);
        assert_eq!(by_redis(REVOCATION_HEARTBEATS_MISSED), listener.stalls());
        assert!(by_redis(REVOCATION_HEARTBEATS_MISSED) >= 1);
        assert_eq!(by_redis(REVOCATION_RECONNECTS), listener.connects() - 1);
    }

    /// Activity events beyond the Redis writer's queue (10,000) are dropped and counted: a
    /// current-thread runtime never lets the writer run while requests are sent without
    /// waiting.
    #[tokio::test(flavor = "current_thread")]
    async fn dropped_activity_events_are_counted() {
        let metrics = recording();
        let Some(redis) = Redis::start() else { return };
        let ns = format!(
            "m{}",
            tower_api_key::store::KeyId::generate().unwrap().as_str()
        );
        let log = RedisActivityLog::new(RedisConnection::open(&redis.url).await.unwrap(), &ns, 10);
        let (store, _) = store_with_clock();
        let issued = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
        let service = ActivityLayer::new(log.clone())
            .layer(AuthLayer::new(store).layer(Probe::new().service::<String>()));
        for _ in 0..10_005 {
            send(service.clone(), bearer(issued.key().expose_secret())).await;
        }
        assert_eq!(log.dropped(), 5);
        let seen = recorded(&metrics.snapshotter);
        assert_eq!(counter(&seen, ACTIVITY_DROPPED, &[("sink", "redis")]), 5);
    }
}

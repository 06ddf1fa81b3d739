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

/// Hostile input of every kind (keys, cookies, CSRF values, a class name is the
/// application's): no label value holds any of it, and every value is short.
#[tokio::test(flavor = "current_thread")]
async fn no_label_carries_a_secret() {
    let metrics = recording();
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let key = issued.key().expose_secret().to_owned();
    let sessions = tower_api_key::session::Sessions::new(
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(KeyPolicy::sessions())),
        tower_api_key::session::CsrfSecret::generate().unwrap(),
    );
    let started = sessions
        .start(&http::HeaderMap::new(), "user", ForgScope::ReadRules)
        .await
        .unwrap();
    let csrf = started.cookies().csrf_token().unwrap().to_owned();
    let cookie_header = started
        .cookies()
        .set_cookie_values()
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let token = cookie_header
        .split("; ")
        .find_map(|c| c.strip_prefix("session="))
        .unwrap()
        .to_owned();
    let service = AuthLayer::new(Arc::clone(&store))
        .sources(forg::credential_sources())
        .sessions(sessions)
        .layer(Probe::new().service::<String>());
    let mut hostile = vec![
        key.clone(),
        format!("{key}x"),
        key.replace('a', "b"),
        "forg_live_\u{202e}0123456789abcdef0123456789abcde".to_owned(),
        "x".repeat(10_000),
    ];
    hostile.push(token.clone());
    for value in &hostile {
        let _ = send(service.clone(), bearer(value)).await;
        let mut request = http::Request::new(String::new());
        if let Ok(v) = http::HeaderValue::from_str(value) {
            request.headers_mut().insert("x-forgeos-api-key", v);
        }
        let _ = send(service.clone(), request).await;
    }
    // The session cookie with a wrong, then a right CSRF value on a write.
    for csrf_value in ["not-the-token", csrf.as_str()] {
        let request = http::Request::post("/")
            .header("cookie", &cookie_header)
            .header("x-csrf-token", csrf_value)
            .body(String::new())
            .unwrap();
        let _ = send(service.clone(), request).await;
    }
    let seen = recorded(&metrics.snapshotter);
    assert!(!seen.is_empty());
    // Any eight characters in a row of a secret's random part, of a key id, of an owner.
    let random = |secret: &str| secret.rsplit('_').next().unwrap().to_owned();
    let pieces: Vec<String> = [random(&key), random(&token), csrf.clone()]
        .iter()
        .chain(
            [
                issued.record().id().as_str().to_owned(),
                "user".to_owned(),
                "org_1".to_owned(),
            ]
            .iter(),
        )
        .flat_map(|secret| {
            let chars: Vec<char> = secret.chars().collect();
            let width = chars.len().min(8);
            chars
                .windows(width)
                .map(|w| w.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect();
    for (_, name, labels, _) in &seen {
        for (label, value) in labels {
            assert!(
                value.len() <= 32,
                "{name}{{{label}={value}}}: too long for a label"
            );
            for piece in &pieces {
                assert!(
                    !value.contains(piece.as_str()),
                    "{name}{{{label}={value}}} carries {piece}"
                );
            }
        }
    }
}

/// A Prometheus series: name, labels (sorted), value.
type Series = (String, Vec<(String, String)>, f64);

/// `name{labels} value` lines of a Prometheus text page.
fn scraped(page: &str) -> Vec<Series> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut labels: Vec<(String, String)> = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .filter_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            labels.sort();
            Some((name.to_owned(), labels, value.parse().ok()?))
        })
        .collect()
}

/// The quickstart's `/metrics`, scraped over HTTP after a scripted session of requests
/// (200, 401, 403, 429, 402, a login and a request on its session): the counts as sent.
#[tokio::test(flavor = "current_thread")]
async fn the_quickstart_serves_prometheus_metrics_of_real_traffic() {
    use crate::examples::quickstart;
    use metrics_exporter_prometheus::PrometheusBuilder;
    // The test thread's recorder: the server's tasks run on it (current-thread runtime).
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let recorder: &'static _ = Box::leak(Box::new(recorder));
    let _guard = metrics::set_default_local_recorder(recorder);

    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let keys = quickstart::issue_demo_keys(&store).await.unwrap();
    let mut demo = quickstart::Demo::new(store, &keys);
    demo.metrics = Some(handle);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = quickstart::app(&demo).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let live = format!("Bearer {}", keys.live.key().expose_secret());
    let fos = keys.fos.key().expose_secret().to_owned();
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };

    assert_eq!(
        status(
            client
                .get(format!("{base}/v1/sessions"))
                .header("authorization", &live)
        )
        .await,
        200
    );
    assert_eq!(status(client.get(format!("{base}/v1/sessions"))).await, 401);
    assert_eq!(
        status(
            client
                .post(format!("{base}/v1/rules"))
                .header("authorization", &live)
        )
        .await,
        403
    );
    for expected in [200; 10].into_iter().chain([429]) {
        let review = client
            .post(format!("{base}/v1/reviews"))
            .header("x-forgeos-api-key", &fos);
        assert_eq!(status(review).await, expected);
    }
    for expected in [200, 200, 200, 402] {
        let review = client
            .post(format!("{base}/v1/reviews"))
            .header("authorization", &live);
        assert_eq!(status(review).await, expected);
    }
    let login = client
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({ "email": quickstart::DEMO_EMAIL, "password": quickstart::DEMO_PASSWORD }));
    assert_eq!(status(login).await, 200);
    assert_eq!(
        status(client.get(format!("{base}/v1/me"))).await,
        200,
        "by the session cookie"
    );

    let page = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = scraped(&page);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let mut wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wanted.sort();
        series
            .iter()
            .filter(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
            .sum()
    };
    let requests = "tower_api_key_requests";
    assert_eq!(
        value(requests, &[("credential", "api_key"), ("outcome", "ok")]),
        14.0,
        "{page}"
    );
    assert_eq!(
        value(
            requests,
            &[("credential", "none"), ("outcome", "invalid_api_key")]
        ),
        1.0
    );
    assert_eq!(
        value(
            requests,
            &[("credential", "api_key"), ("outcome", "insufficient_scope")]
        ),
        1.0
    );
    assert_eq!(
        value(
            requests,
            &[("credential", "api_key"), ("outcome", "rate_limited")]
        ),
        1.0
    );
    assert_eq!(
        value(
            requests,
            &[("credential", "api_key"), ("outcome", "spend_cap_exceeded")]
        ),
        1.0
    );
    assert_eq!(
        value(requests, &[("credential", "session"), ("outcome", "ok")]),
        1.0
    );
    assert_eq!(
        value(
            "tower_api_key_rate_limit_decisions",
            &[("class", "ai"), ("outcome", "limited")]
        ),
        1.0
    );
    // Ten reviews of the fos_ key and three of the live key (both live), 10 units each.
    assert_eq!(
        value("tower_api_key_spend_charged", &[("environment", "live")]),
        130.0
    );
    assert_eq!(
        value("tower_api_key_spend_refusals", &[("environment", "live")]),
        1.0
    );
    assert_eq!(
        value(
            "tower_api_key_store_lookups",
            &[("backend", "memory"), ("result", "found")]
        ),
        18.0
    );
}

/// `docs/grafana-dashboard.json` queries only the documented names (as Prometheus writes
/// them), and shows every one of them.
#[test]
fn the_grafana_dashboard_uses_the_documented_names() {
    let documented: Vec<String> = [
        REQUESTS,
        STORE_LOOKUPS,
        STORE_LOOKUP_DURATION,
        CACHE_HITS,
        CACHE_MISSES,
        CACHE_EVICTIONS,
        CACHE_STALE_ANSWERS,
        RATE_LIMIT_DECISIONS,
        FAILED_AUTH_BLOCKS,
        SPEND_CHARGED,
        SPEND_REFUSALS,
        PLAN_REFUSALS,
        REVOCATION_MESSAGES,
        REVOCATION_RECONNECTS,
        REVOCATION_HEARTBEATS_MISSED,
        ACTIVITY_DROPPED,
    ]
    .iter()
    .map(|name| name.replace('.', "_"))
    .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let names = regex::Regex::new(r"tower_api_key_[a-z_]+").unwrap();
    let mut used = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            for found in names.find_iter(target["expr"].as_str().unwrap()) {
                let name = found.as_str().trim_end_matches("_bucket").to_owned();
                assert!(
                    documented.contains(&name),
                    "{name} is not a documented metric"
                );
                used.insert(name);
            }
        }
    }
    for name in &documented {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
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

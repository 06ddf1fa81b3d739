//! Issue 39.1: `budget.threshold` once per crossing. Requests reserve 10 and spend 1, so
//! the reserved spend goes past 80 % again and again as refunds bring it back: the owner
//! hears of 80 % and of 100 % once each; a new period crosses again; two instances sharing
//! a Redis backend and a Redis gate announce each crossing once between them.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::StatusCode;
use tower::Layer;
use tower_api_key::events::{KeyEvent, KeyEventKind, KeyEvents, MemoryEventGate};
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::usage::{Budgets, MemoryUsage, ReportedCost, SpendCaps, UsageBackend};
use tower_api_key::{AuthLayer, ForgScope};

type Seen = Arc<Mutex<Vec<KeyEvent>>>;

fn collecting(seen: &Seen) -> KeyEvents {
    let sink = Arc::clone(seen);
    KeyEvents::new().sink(move |event: &KeyEvent| sink.lock().unwrap().push(event.clone()))
}

/// The thresholds announced so far, in order.
fn crossed(seen: &Seen) -> Vec<u8> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event.kind() {
            KeyEventKind::BudgetCrossed { percent, .. } => Some(*percent),
            _ => None,
        })
        .collect()
}

fn caps<B: UsageBackend>(backend: B) -> SpendCaps<B> {
    SpendCaps::backed_by(Budgets::new().default_cap(Environment::Live, 100), backend)
}

/// The spend-capped route: reserves 10, the handler reports 1 (the rest is refunded).
macro_rules! route {
    ($store:expr, $caps:expr) => {{
        let handler = tower::service_fn(|_: http::Request<String>| async {
            let body = http_body_util::Full::new(bytes::Bytes::from_static(b"done"));
            let mut response = http::Response::new(body);
            response.extensions_mut().insert(ReportedCost(1));
            Ok::<_, std::convert::Infallible>(response)
        });
        AuthLayer::new(Arc::clone($store)).layer($caps.layer(0).reports_at_most(10).layer(handler))
    }};
}

/// Lets the announcements spawned so far run (a current-thread runtime runs them in order).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn each_threshold_is_announced_once_per_period() {
    let (store, clock) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let seen: Seen = Arc::default();
    let events = collecting(&seen).gate(MemoryEventGate::new().with_clock(clock.clone()));
    let caps = caps(MemoryUsage::new().with_clock(clock.clone())).events(events);
    let service = route!(&store, &caps);
    let key = key.key().expose_secret();
    let mut statuses = Vec::new();
    for _ in 0..95 {
        statuses.push(send(service.clone(), bearer(key)).await.status);
    }
    // Admitted while 10 more fit: 91 requests (spent 91), then 402.
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        91
    );
    settle().await;
    assert_eq!(
        crossed(&seen),
        [80, 100],
        "once each, not once per request past the line"
    );
    let event = seen.lock().unwrap()[0].clone();
    assert_eq!(event.owner(), "org_1");
    let body: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
    assert_eq!(body["type"], "budget.threshold");
    assert_eq!(body["data"]["cap"], 100);
    assert_eq!(body["data"]["spent"], 80, "70 spent and 10 reserved");
    assert_eq!(body["data"]["environment"], "live");

    // The next month: whole again, and crossing again.
    clock.advance(Duration::from_secs(32 * 86_400));
    for _ in 0..75 {
        assert_eq!(
            send(service.clone(), bearer(key)).await.status,
            StatusCode::OK
        );
    }
    settle().await;
    assert_eq!(crossed(&seen), [80, 100, 80]);
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn two_instances_announce_a_crossing_once_between_them() {
    use common::redis_server::Redis;
    use tower_api_key::events::RedisEventGate;
    use tower_api_key::usage::RedisUsage;
    use tower_api_key::RedisConnection;

    let Some(redis) = Redis::start() else { return };
    let (store, _clock) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let namespace = format!("budget{}", std::process::id());
    let mut instances = Vec::new();
    let mut sinks = Vec::new();
    for _ in 0..2 {
        let connection = RedisConnection::open(&redis.url).await.unwrap();
        let seen: Seen = Arc::default();
        let events = collecting(&seen).gate(RedisEventGate::new(connection.clone(), &namespace));
        let backend = RedisUsage::new(connection).with_namespace(&namespace);
        let caps = caps(backend).events(events);
        instances.push(route!(&store, &caps));
        sinks.push(seen);
    }
    let key = key.key().expose_secret();
    for n in 0..95 {
        send(instances[n % 2].clone(), bearer(key)).await;
    }
    let total = || crossed(&sinks[0]).len() + crossed(&sinks[1]).len();
    until("both crossings", || total() >= 2).await;
    let mut all = crossed(&sinks[0]);
    all.extend(crossed(&sinks[1]));
    all.sort_unstable();
    assert_eq!(
        all,
        [80, 100],
        "one announcement per crossing for both instances"
    );
}

//! Usage charts' numbers (issue 25.4): requests, refusals by kind and spend per key and per
//! owner per UTC day, the last 30 days, recorded from the activity layer and read through
//! the management API; on a fake clock in process, and shared by instances on Redis.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::Router;
use common::*;
use http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::{Layer, ServiceBuilder};
use tower_api_key::activity::{ActivityLayer, ActivityObserver, DailyUsage, UsageHistory, DAYS};
use tower_api_key::clock::ManualClock;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::manage::KeysApi;
use tower_api_key::store::KeyId;
use tower_api_key::usage::{Budgets, MemoryUsage, SpendCaps};
use tower_api_key::{require, AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

/// 2026-01-31T12:00:00Z.
const NOON: u64 = 1_769_860_800;
const DAY: Duration = Duration::from_secs(86_400);

type Store = MemoryKeyStore<ForgScope>;

/// A key with `read:rules`, and `admin` (the management API) when `admin`.
async fn issue(store: &Store, owner: &str, name: &str, admin: bool) -> (String, KeyId) {
    let family = &KeyFamily::FORG_LIVE;
    let scope = if admin {
        ForgScope::Admin
    } else {
        ForgScope::ReadRules
    };
    let issued = store
        .issue(NewKey::new(owner, name, family).scopes(scope))
        .await
        .unwrap();
    (
        issued.key().expose_secret().to_owned(),
        issued.record().id().clone(),
    )
}

/// Live keys may spend 25 units a month.
fn caps(clock: &ManualClock) -> SpendCaps {
    SpendCaps::backed_by(
        Budgets::new().default_cap(Environment::Live, 25),
        MemoryUsage::new().with_clock(clock.clone()),
    )
}

/// `/work` (10 units) and `/write` (write:rules, which only `admin` has), observed by
/// `observer`, beside the management API with `history`.
fn app(
    store: &Arc<Store>,
    clock: &ManualClock,
    caps: &SpendCaps,
    observer: impl ActivityObserver,
    history: impl UsageHistory,
) -> Router {
    let ok = || {
        tower::service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        })
    };
    let routes = Router::new()
        .route_service(
            "/work",
            ServiceBuilder::new().layer(caps.layer(10)).service(ok()),
        )
        .route_service("/write", require(ForgScope::WriteRules).layer(ok()))
        .nest(
            "/api",
            KeysApi::new(Arc::clone(store))
                .allow_keys_with(ForgScope::Admin)
                .usage(history)
                .router(),
        );
    let stack = ServiceBuilder::new()
        .layer(ActivityLayer::new(observer).clock(clock.clone()))
        .layer(AuthLayer::new(Arc::clone(store)))
        .service(routes);
    Router::new().fallback_service(stack)
}

async fn call(app: &Router, path: &str, key: &str) -> Answer {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    send(app.clone(), request).await
}

async fn days(app: &Router, path: &str, key: &str) -> Vec<Value> {
    let answer = call(app, path, key).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.json()["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn each_key_and_owner_has_thirty_days_of_requests_refusals_and_spend() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOON));
    let store =
        Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy().clock(clock.clone())));
    let daily = DailyUsage::default();
    let app = app(&store, &clock, &caps(&clock), daily.clone(), daily.clone());
    let (a, a_id) = issue(&store, "org_1", "a", false).await;
    let (b, _) = issue(&store, "org_1", "b", true).await;
    let (other, _) = issue(&store, "org_2", "other", true).await;

    // January 31st: key a works twice (20 units) and is refused once (402).
    for status in [StatusCode::OK, StatusCode::OK, StatusCode::PAYMENT_REQUIRED] {
        assert_eq!(call(&app, "/work", &a).await.status, status);
    }
    // February 1st: a once more (a new month: whole again), refused by scope once; b once.
    clock.set(UNIX_EPOCH + Duration::from_secs(NOON) + DAY);
    assert_eq!(call(&app, "/work", &a).await.status, StatusCode::OK);
    assert_eq!(call(&app, "/write", &a).await.status, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, "/work", &b).await.status, StatusCode::OK);
    assert_eq!(call(&app, "/work", &other).await.status, StatusCode::OK);

    let key = days(&app, &format!("/api/keys/{a_id}/usage"), &b).await;
    assert_eq!(key.len(), DAYS);
    assert_eq!(key[DAYS - 1]["date"], "2026-02-01");
    assert_eq!(key[0]["date"], "2026-01-03");
    assert_eq!(
        key[DAYS - 2],
        json!({"date": "2026-01-31", "requests": 3, "refused": {"spend_cap_exceeded": 1}, "spent": 20})
    );
    assert_eq!(
        key[DAYS - 1],
        json!({"date": "2026-02-01", "requests": 2, "refused": {"insufficient_scope": 1}, "spent": 10})
    );
    assert!(key[..DAYS - 2].iter().all(|day| day["requests"] == 0));
    // The owner's: a and b summed; b's read above is one of b's requests too.
    let owner = days(&app, "/api/usage", &b).await;
    assert_eq!(owner[DAYS - 2]["requests"], 3);
    assert_eq!(owner[DAYS - 1]["spent"], 20, "a's 10 and b's 10");
    assert_eq!(owner[DAYS - 1]["refused"], json!({"insufficient_scope": 1}));
    let requests_today = owner[DAYS - 1]["requests"].as_u64().unwrap();
    assert_eq!(
        requests_today,
        2 + 1 + 1,
        "a twice, b's work and its first read"
    );
    // Another owner's key is a 404, like an unknown id.
    assert_eq!(
        call(&app, &format!("/api/keys/{a_id}/usage"), &other)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // A month on, yesterday's day has left the window.
    clock.advance(29 * DAY);
    let key = days(&app, &format!("/api/keys/{a_id}/usage"), &b).await;
    assert_eq!(key[0]["date"], "2026-02-01");
    assert_eq!(key[0]["requests"], 2);
    assert!(key.iter().all(|day| day["date"] != "2026-01-31"));
}

#[tokio::test]
async fn the_in_process_history_is_bounded() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOON));
    let store =
        Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy().clock(clock.clone())));
    let daily = DailyUsage::new().capacity(2);
    let app = app(&store, &clock, &caps(&clock), daily.clone(), daily.clone());
    let mut keys = Vec::new();
    for name in ["a", "b", "c"] {
        keys.push(issue(&store, "org_1", name, false).await);
    }
    for (key, _) in &keys {
        call(&app, "/work", key).await;
    }
    assert_eq!(
        (daily.tracked(), daily.dropped()),
        (2, 1),
        "the third key is not recorded"
    );
    // Thirty days without use: swept.
    daily.housekeeping(UNIX_EPOCH + Duration::from_secs(NOON) + 30 * DAY);
    assert_eq!(daily.tracked(), 0);
    let _ = keys;
}

/// Without a history the API answers thirty days of zeros.
#[tokio::test]
async fn without_a_history_the_days_are_zeros() {
    let store = Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy()));
    let (key, id) = issue(&store, "org_1", "a", true).await;
    let app = AuthLayer::new(Arc::clone(&store)).layer(
        KeysApi::new(Arc::clone(&store))
            .allow_keys_with(ForgScope::Admin)
            .router::<()>(),
    );
    let request = Request::get(format!("/keys/{id}/usage"))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let answer = send(app, request).await;
    let days = answer.json()["data"].as_array().unwrap().clone();
    assert_eq!(days.len(), DAYS);
    assert!(days
        .iter()
        .all(|day| day["requests"] == 0 && day["spent"] == 0));
}

/// Two instances record through Redis; a third reads the sum.
#[cfg(feature = "redis")]
#[tokio::test]
async fn instances_share_the_redis_history() {
    use common::redis_server::Redis;
    use tower_api_key::activity::RedisDailyUsage;
    use tower_api_key::RedisConnection;

    let Some(redis) = Redis::start() else { return };
    let ns = format!("t{}", KeyId::generate().unwrap().as_str());
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOON));
    let store =
        Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy().clock(clock.clone())));
    let (a, a_id) = issue(&store, "org_1", "a", true).await;
    // One budget (the spend counters are not the point here), three history writers.
    let caps = caps(&clock);
    let mut apps = Vec::new();
    for _ in 0..3 {
        let connection = RedisConnection::open(&redis.url).await.unwrap();
        let daily = RedisDailyUsage::new(connection, &ns);
        apps.push(app(&store, &clock, &caps, daily.clone(), daily));
    }
    for (i, status) in [StatusCode::OK, StatusCode::OK, StatusCode::PAYMENT_REQUIRED]
        .into_iter()
        .enumerate()
    {
        assert_eq!(call(&apps[i % 2], "/work", &a).await.status, status);
    }
    // Written by background tasks: read until they landed (at most 5 s).
    let path = format!("/api/keys/{a_id}/usage");
    let mut today = Value::Null;
    for _ in 0..500 {
        today = days(&apps[2], &path, &a).await[DAYS - 1].clone();
        // The reads are requests too, so wait for what the work events bring.
        if today["spent"] == 20 && today["refused"]["spend_cap_exceeded"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (&today["date"], &today["spent"], &today["refused"]),
        (
            &json!("2026-01-31"),
            &json!(20),
            &json!({"spend_cap_exceeded": 1})
        )
    );
    assert!(today["requests"].as_u64().unwrap() >= 3, "{today}");
    // The hashes expire when their day leaves the window.
    let mut connection = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let hash = format!("{ns}:{{k:{}}}:day:{}", a_id.as_str(), NOON / 86_400);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&hash)
        .query_async(&mut connection)
        .await
        .unwrap();
    // Half a day of January 31st left, then 30 more days.
    let expected = (DAYS as i64 + 1) * 86_400 - 43_200;
    assert!(
        (expected - 10..=expected).contains(&ttl),
        "{ttl} vs {expected}"
    );
}

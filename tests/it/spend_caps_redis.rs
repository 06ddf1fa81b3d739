//! Spend caps on a real `redis-server`: two instances share one budget exactly, the period
//! and its end come from Redis's clock with the same calendar as in process, a reported
//! cost recorded on Redis blocks the next request, and Redis going away is a 503.
#![cfg(feature = "redis")]

use crate::common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use common::redis_server::Redis;
use common::{bearer, send, InFlight, Probe};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::Layer;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::store::KeyId;
use tower_api_key::usage::{Budgets, Period, RedisUsage, ReportedCost, SpendCaps};
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

fn namespace() -> String {
    format!("t{}", KeyId::generate().unwrap().as_str())
}

async fn usage(redis: &Redis, ns: &str) -> RedisUsage {
    RedisUsage::connect(&redis.url)
        .await
        .unwrap()
        .with_namespace(ns)
}

#[tokio::test]
async fn two_instances_share_one_budget_exactly() {
    let Some(redis) = Redis::start() else { return };
    let ns = namespace();
    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let live = store
        .issue(NewKey::new("org", "live", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let test = store
        .issue(NewKey::new("org", "test", &KeyFamily::FORG_TEST))
        .await
        .unwrap();
    let budgets = Budgets::new()
        .default_cap(Environment::Live, 15)
        .default_cap(Environment::Test, 4);
    let probe = Probe::new();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let caps = SpendCaps::backed_by(budgets.clone(), usage(&redis, &ns).await);
        instances.push(
            AuthLayer::new(store.clone()).layer(caps.layer(1).layer(probe.service::<String>())),
        );
    }

    let key = live.key().expose_secret();
    let answers = futures_util::future::join_all(
        (0..40).map(|i| send(instances[i % 2].clone(), bearer(key))),
    )
    .await;
    let allowed = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert_eq!(allowed, 15, "two instances together grant the budget once");
    assert_eq!(probe.calls(), 15);

    // Redis computes the month's end as the crate does.
    let month = Period::Monthly.window(SystemTime::now());
    let refused = answers
        .iter()
        .find(|a| a.status == StatusCode::PAYMENT_REQUIRED)
        .expect("25 were refused");
    assert_eq!(
        refused.json()["resets_at"],
        rfc3339(month.end.unwrap()),
        "the month ends where the in-process calendar says"
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    let expected = month.end.unwrap() - now_secs();
    assert!(retry.abs_diff(expected) <= 2, "{retry} vs {expected}");

    // Test keys: hourly, and their own counter.
    let test = test.key().expose_secret();
    for _ in 0..4 {
        assert_eq!(
            send(instances[1].clone(), bearer(test)).await.status,
            StatusCode::OK
        );
    }
    let over = send(instances[0].clone(), bearer(test)).await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED);
    let hour = Period::Hourly.window(SystemTime::now());
    assert_eq!(over.json()["resets_at"], rfc3339(hour.end.unwrap()));
}

#[tokio::test]
async fn a_cost_reported_on_one_instance_blocks_the_next_request_on_the_other() {
    let Some(redis) = Redis::start() else { return };
    let ns = namespace();
    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = store
        .issue(NewKey::new("org", "ai", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let budgets = Budgets::new().default_cap(Environment::Live, 100);
    let handler = tower::service_fn(|_: Request<String>| async {
        let mut response = Response::new(Full::new(Bytes::from_static(b"tokens")));
        response.extensions_mut().insert(ReportedCost(50));
        Ok::<_, Infallible>(response)
    });
    let a = AuthLayer::new(store.clone()).layer(
        SpendCaps::backed_by(budgets.clone(), usage(&redis, &ns).await)
            .layer(0)
            .reports_at_most(60)
            .layer(handler),
    );
    let b = AuthLayer::new(store).layer(
        SpendCaps::backed_by(budgets, usage(&redis, &ns).await)
            .layer(0)
            .reports_at_most(60)
            .layer(handler),
    );
    let key = issued.key().expose_secret();
    let first = send(a, bearer(key)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(
        first.header("spend-cap").unwrap().contains("remaining=50"),
        "settled before the response was returned: {:?}",
        first.header("spend-cap")
    );
    assert_eq!(
        send(b, bearer(key)).await.status,
        StatusCode::PAYMENT_REQUIRED,
        "50 left: a request that may cost 60 does not run"
    );
}

/// Issue 21.4 across instances: cap 100, handlers that report 10, 100 requests in flight
/// at once over two instances sharing Redis: 10 run, 100 is spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_on_two_instances_never_spend_past_the_cap() {
    let Some(redis) = Redis::start() else { return };
    let ns = namespace();
    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = store
        .issue(NewKey::new("org", "ai", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let budgets = Budgets::new().default_cap(Environment::Live, 100);
    let handler = InFlight::default();
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(
            AuthLayer::new(store.clone()).layer(
                SpendCaps::backed_by(budgets.clone(), usage(&redis, &ns).await)
                    .layer(0)
                    .reports_at_most(10)
                    .layer(handler.service(10)),
            ),
        );
    }
    let (entered, answers) = handler
        .send_at_once(&instances, issued.key().expose_secret(), 100)
        .await;
    assert_eq!(entered, 10);
    let last_remaining: Vec<&str> = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .map(|a| a.header("spend-cap").unwrap())
        .collect();
    assert_eq!(last_remaining.len(), 10);
    // Each admission took 10 of the 100, on whichever instance.
    let mut remaining: Vec<u64> = last_remaining
        .iter()
        .map(|h| {
            h.split("remaining=")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..10).map(|i| i * 10).collect::<Vec<u64>>());
}

use crate::usage_conformance;

struct RedisFixture(Redis);

impl usage_conformance::Fixture for RedisFixture {
    type Backend = RedisUsage;

    async fn backend(&self, clock: tower_api_key::clock::ManualClock) -> RedisUsage {
        usage(&self.0, &namespace()).await.with_clock(clock)
    }
}

usage_suite!(Redis::start().map(RedisFixture));

#[tokio::test]
async fn redis_going_away_is_a_503_not_a_free_pass() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    if !redis.owned() {
        eprintln!("skipped: needs its own redis-server, not REDIS_URL");
        return;
    }
    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = store
        .issue(NewKey::new("org", "ai", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let caps = SpendCaps::backed_by(
        Budgets::new().default_cap(Environment::Live, 100),
        usage(&redis, &namespace()).await,
    );
    let probe = Probe::new();
    let service = AuthLayer::new(store).layer(caps.layer(1).layer(probe.service::<String>()));
    let key = issued.key().expose_secret();
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
    redis.kill();
    let answer = send(service, bearer(key)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["code"], "auth_unavailable");
    assert_eq!(probe.calls(), 1);
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The RFC 3339 form the body uses, computed independently of the crate.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    // Walk the calendar: slow and obviously right.
    let (mut year, mut left) = (1970u64, days);
    loop {
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let length = if leap { 366 } else { 365 };
        if left < length {
            let months = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let mut month = 0;
            while left >= months[month] {
                left -= months[month];
                month += 1;
            }
            let of_day = secs % 86_400;
            return format!(
                "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                month + 1,
                left + 1,
                of_day / 3600,
                of_day % 3600 / 60,
                of_day % 60
            );
        }
        left -= length;
        year += 1;
    }
}

#[tokio::test]
async fn two_instances_share_lifetime_credits_and_refuse_without_a_reset() {
    let Some(redis) = Redis::start() else { return };
    let ns = namespace();
    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let trial = store
        .issue(NewKey::new("org", "trial", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let budgets = Budgets::new().default_cap(Environment::Live, 1_000_000);
    budgets.set_key_credits(trial.record().id().clone(), 5);
    let probe = Probe::new();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let caps = SpendCaps::backed_by(budgets.clone(), usage(&redis, &ns).await)
            .per(tower_api_key::usage::BudgetPer::Key);
        instances.push(
            AuthLayer::new(store.clone()).layer(caps.layer(1).layer(probe.service::<String>())),
        );
    }
    let key = trial.key().expose_secret();
    for i in 0..5 {
        let answer = send(instances[i % 2].clone(), bearer(key)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.header("spend-cap"),
            Some(&*format!("limit=5, remaining={}", 4 - i))
        );
    }
    let over = send(instances[1].clone(), bearer(key)).await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED);
    assert!(over.json().get("resets_at").is_none(), "{}", over.json());
    assert_eq!(over.header("retry-after"), None);
    assert_eq!(probe.calls(), 5);
    // The counter never expires.
    let mut connection = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let counter = format!(
        "{ns}:{{k:{}}}:spend:live:lifetime:0",
        trial.record().id().as_str()
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(&counter)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "{counter} has no expiry");
}

/// `GET /billing/spend` on one instance reads what another charged (issue 25.1).
#[tokio::test]
async fn the_spend_report_reads_what_other_instances_charged() {
    use axum::body::Body;
    use tower_api_key::manage::SpendApi;

    let Some(redis) = Redis::start() else { return };
    let ns = namespace();
    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let admin = store
        .issue(NewKey::new("org", "admin", &KeyFamily::FORG_LIVE).scopes(ForgScope::Admin))
        .await
        .unwrap();
    let budgets = Budgets::new().default_cap(Environment::Live, 100);
    let charging = SpendCaps::backed_by(budgets.clone(), usage(&redis, &ns).await);
    let probe = Probe::new();
    let instance =
        AuthLayer::new(store.clone()).layer(charging.layer(7).layer(probe.service::<String>()));
    for _ in 0..3 {
        let answer = send(instance.clone(), bearer(admin.key().expose_secret())).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let reading = SpendCaps::backed_by(budgets, usage(&redis, &ns).await);
    let api = SpendApi::new(store.clone(), &reading)
        .allow_keys_with(ForgScope::Admin)
        .router::<()>();
    let other = AuthLayer::new(store).layer(api);
    let request = Request::get("/billing/spend")
        .header(
            "authorization",
            format!("Bearer {}", admin.key().expose_secret()),
        )
        .body(Body::empty())
        .unwrap();
    let answer = send(other, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    let budget = &answer.json()["data"]["budgets"][0];
    assert_eq!(
        (&budget["spent"], &budget["remaining"]),
        (&21.into(), &79.into())
    );
    let month = Period::Monthly.window(SystemTime::now());
    assert_eq!(budget["period_start"], rfc3339(month.start));
    assert_eq!(budget["period_end"], rfc3339(month.end.unwrap()));
}

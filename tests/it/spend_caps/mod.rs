//! Spend caps on a fake clock: the budget is spent, 402 with `Retry-After` up to the
//! period's end and `resets_at` in the body, the period rolls over (31-day months,
//! February, hourly for test keys), handler-reported costs block the next request, test and
//! live never share a counter, and a failing backend follows its mode.

use crate::common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::Layer;
use tower_api_key::clock::ManualClock;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::rate_limit::OnBackendError;
use tower_api_key::usage::{
    Budget, BudgetPer, Budgets, Charge, Counter, MemoryUsage, Period, ReportedCost, SpendCaps,
    UsageBackend,
};
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, NewKey};

mod periods;

/// 2026-01-31T23:00:00Z: an hour before a 31-day month ends.
const JANUARY_LAST_HOUR: u64 = 1_769_900_400;

/// A handler that reports the cost it is told to, counts calls and keeps the budget it saw.
#[derive(Clone, Default)]
struct Metered {
    cost: Arc<AtomicU64>,
    calls: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Option<Budget>>>,
}

impl Metered {
    fn service(
        &self,
    ) -> impl tower::Service<
        Request<String>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future: Send,
    > + Clone {
        let this = self.clone();
        tower::service_fn(move |request: Request<String>| {
            let this = this.clone();
            async move {
                this.calls.fetch_add(1, Ordering::SeqCst);
                *this.seen.lock().unwrap() = request.extensions().get::<Budget>().copied();
                let mut response = Response::new(Full::new(Bytes::from_static(b"done")));
                let cost = this.cost.load(Ordering::SeqCst);
                if cost > 0 {
                    response.extensions_mut().insert(ReportedCost(cost));
                }
                Ok::<_, Infallible>(response)
            }
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn caps(clock: &ManualClock, live: u64, test: u64) -> SpendCaps {
    let budgets = Budgets::new()
        .default_cap(Environment::Live, live)
        .default_cap(Environment::Test, test);
    SpendCaps::backed_by(budgets, MemoryUsage::new().with_clock(clock.clone()))
        .budget_in_request(true)
}

#[tokio::test]
async fn a_spent_budget_is_402_until_the_month_ends_then_whole_again() {
    let (store, clock) = store_with_clock();
    clock.set(UNIX_EPOCH + Duration::from_secs(JANUARY_LAST_HOUR));
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let handler = Metered::default();
    let service =
        AuthLayer::new(store).layer(caps(&clock, 10, 0).layer(4).layer(handler.service()));
    let key = key.key().expose_secret();

    let first = send(service.clone(), bearer(key)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.header("spend-cap"),
        Some("limit=10, remaining=6, reset=3600")
    );
    let budget = handler
        .seen
        .lock()
        .unwrap()
        .expect("the budget is in the request");
    assert_eq!(
        (budget.cap(), budget.spent(), budget.remaining()),
        (10, 4, 6)
    );
    assert_eq!(budget.period(), Period::Monthly);
    assert_eq!(
        budget.resets_at(),
        Some(UNIX_EPOCH + Duration::from_secs(JANUARY_LAST_HOUR + 3600))
    );
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );

    // 8 spent, 2 left: a request costing 4 would overspend and is refused up front.
    clock.advance(Duration::from_secs(1800));
    let refused = send(service.clone(), bearer(key)).await;
    assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        refused.body,
        r#"{"error":"AI spend cap exceeded: upgrade plan or wait for the reset","code":"spend_cap_exceeded","status":402,"resets_at":"2026-02-01T00:00:00Z"}"#
    );
    assert_eq!(refused.header("retry-after"), Some("1800"));
    assert_eq!(
        refused.header("spend-cap"),
        Some("limit=10, remaining=2, reset=1800")
    );
    assert_eq!(
        handler.calls(),
        2,
        "the refused request never reached the handler"
    );

    // February: the budget is whole again, and lasts 28 days.
    clock.advance(Duration::from_secs(1800));
    let february = send(service.clone(), bearer(key)).await;
    assert_eq!(february.status, StatusCode::OK);
    assert_eq!(
        february.header("spend-cap"),
        Some("limit=10, remaining=6, reset=2419200")
    );
    send(service.clone(), bearer(key)).await;
    let over = send(service.clone(), bearer(key)).await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(over.json()["resets_at"], "2026-03-01T00:00:00Z");
    assert_eq!(over.header("retry-after"), Some("2419200"));
    clock.advance(Duration::from_secs(28 * 86_400));
    assert_eq!(
        send(service, bearer(key)).await.status,
        StatusCode::OK,
        "March"
    );
}

#[tokio::test]
async fn test_keys_reset_every_hour_and_never_share_the_live_budget() {
    let (store, clock) = store_with_clock();
    let live = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let test = issue(&store, &KeyFamily::FORG_TEST, ForgScope::ReadRules);
    let handler = Metered::default();
    let service = AuthLayer::new(store).layer(caps(&clock, 1, 2).layer(1).layer(handler.service()));
    let (live, test) = (live.key().expose_secret(), test.key().expose_secret());

    assert_eq!(
        send(service.clone(), bearer(live)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service.clone(), bearer(live)).await.status,
        StatusCode::PAYMENT_REQUIRED,
        "the live budget is spent"
    );
    for _ in 0..2 {
        assert_eq!(
            send(service.clone(), bearer(test)).await.status,
            StatusCode::OK,
            "the same owner's test keys have a budget of their own"
        );
    }
    let over = send(service.clone(), bearer(test)).await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(over.json()["resets_at"], "2026-01-01T01:00:00Z");
    assert_eq!(over.header("retry-after"), Some("3600"));

    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        send(service.clone(), bearer(test)).await.status,
        StatusCode::OK,
        "a new hour"
    );
    assert_eq!(
        send(service, bearer(live)).await.status,
        StatusCode::PAYMENT_REQUIRED,
        "the live budget lasts the month"
    );
}

#[tokio::test]
async fn a_request_runs_only_when_the_most_it_may_cost_fits_and_the_report_settles_it() {
    let (store, clock) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let handler = Metered::default();
    handler.cost.store(45, Ordering::SeqCst);
    // Cost known only afterwards: nothing fixed, at most 70.
    let layer = caps(&clock, 100, 0).layer(0).reports_at_most(70);
    let service = AuthLayer::new(store).layer(layer.layer(handler.service()));
    let key = key.key().expose_secret();

    let first = send(service.clone(), bearer(key)).await;
    assert_eq!(
        first.header("spend-cap"),
        Some("limit=100, remaining=55, reset=2678400"),
        "70 reserved, 25 given back"
    );
    assert_eq!(handler.seen.lock().unwrap().unwrap().spent(), 70);
    let second = send(service.clone(), bearer(key)).await;
    assert_eq!(
        second.status,
        StatusCode::PAYMENT_REQUIRED,
        "55 left: a request that may cost 70 does not run"
    );
    assert_eq!(handler.calls(), 1);
    // A report over the declared most is charged as the most.
    handler.cost.store(500, Ordering::SeqCst);
    let (store, clock) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let service = AuthLayer::new(store).layer(
        caps(&clock, 100, 0)
            .layer(5)
            .reports_at_most(20)
            .layer(handler.service()),
    );
    let over = send(service, bearer(key.key().expose_secret())).await;
    assert_eq!(
        over.header("spend-cap"),
        Some("limit=100, remaining=75, reset=2678400")
    );
}

/// Issue 21.4: cap 100, a handler that reports 10, 100 requests in flight at once: 10 run
/// and 100 is spent. Failed before the fix: all 100 ran and 1,000 was spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_never_spend_past_the_cap() {
    let (store, clock) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let usage = MemoryUsage::new().with_clock(clock.clone());
    let budgets = Budgets::new().default_cap(Environment::Live, 100);
    let handler = InFlight::default();
    let service = AuthLayer::new(store).layer(
        SpendCaps::backed_by(budgets, usage.clone())
            .layer(0)
            .reports_at_most(10)
            .layer(handler.service(10)),
    );
    let (entered, answers) = handler
        .send_at_once(&[service], key.key().expose_secret(), 100)
        .await;
    assert_eq!(entered, 10);
    let served = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert_eq!(served, 10);
    let owner = Counter {
        environment: Environment::Live,
        per: BudgetPer::Owner,
        subject: "org_1",
        period: Period::Monthly,
    };
    assert_eq!(usage.spent(owner), 100);
}

#[tokio::test]
async fn an_owners_keys_share_a_budget_unless_counted_per_key() {
    let (store, clock) = store_with_clock();
    let first = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let second = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let other_owner =
        memory(store.issue(NewKey::new("org_2", "theirs", &KeyFamily::FORG_LIVE))).unwrap();
    let keys = [&first, &second, &other_owner].map(|issued| issued.key().expose_secret());

    let handler = Metered::default();
    let shared =
        AuthLayer::new(store.clone()).layer(caps(&clock, 1, 0).layer(1).layer(handler.service()));
    assert_eq!(
        send(shared.clone(), bearer(keys[0])).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(shared.clone(), bearer(keys[1])).await.status,
        StatusCode::PAYMENT_REQUIRED,
        "a second key does not multiply the owner's budget"
    );
    assert_eq!(
        send(shared, bearer(keys[2])).await.status,
        StatusCode::OK,
        "another owner"
    );

    let per_key = caps(&clock, 1, 0).per(BudgetPer::Key);
    let service = AuthLayer::new(store).layer(per_key.layer(1).layer(handler.service()));
    assert_eq!(
        send(service.clone(), bearer(keys[0])).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service.clone(), bearer(keys[1])).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service, bearer(keys[1])).await.status,
        StatusCode::PAYMENT_REQUIRED
    );
}

#[tokio::test]
async fn owner_and_key_overrides_change_the_cap_at_run_time() {
    let (store, clock) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let budgets = Budgets::new().default_cap(Environment::Live, 1);
    let caps = SpendCaps::backed_by(
        budgets.clone(),
        MemoryUsage::new().with_clock(clock.clone()),
    );
    let handler = Metered::default();
    let service = AuthLayer::new(store).layer(caps.layer(1).layer(handler.service()));
    let secret = key.key().expose_secret();

    assert_eq!(
        send(service.clone(), bearer(secret)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service.clone(), bearer(secret)).await.status,
        StatusCode::PAYMENT_REQUIRED
    );
    budgets.set_owner_cap("org_1", Environment::Live, Some(3));
    let upgraded = send(service.clone(), bearer(secret)).await;
    assert_eq!(
        upgraded.header("spend-cap"),
        Some("limit=3, remaining=1, reset=2678400")
    );
    budgets.set_key_cap(key.record().id().clone(), None);
    let uncapped = send(service.clone(), bearer(secret)).await;
    assert_eq!(uncapped.status, StatusCode::OK);
    assert_eq!(
        uncapped.header("spend-cap"),
        None,
        "an uncapped key is not counted"
    );
    budgets.set_key_cap(key.record().id().clone(), Some(2));
    assert_eq!(
        send(service, bearer(secret)).await.status,
        StatusCode::PAYMENT_REQUIRED
    );
}

#[tokio::test]
async fn a_backend_outage_is_503_by_default_or_a_pass_when_allowed() {
    let (store, _clock) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let key = key.key().expose_secret();
    let budgets = || Budgets::new().default_cap(Environment::Live, 10);
    let handler = Metered::default();

    for panics in [false, true] {
        let deny = SpendCaps::backed_by(budgets(), BrokenUsage { panics });
        let service = AuthLayer::new(store.clone()).layer(deny.layer(1).layer(handler.service()));
        let answer = send(service, bearer(key)).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "panics: {panics}"
        );
        assert_eq!(answer.json()["code"], "auth_unavailable");
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
    assert_eq!(handler.calls(), 0);

    let allow = SpendCaps::backed_by(budgets(), BrokenUsage { panics: false })
        .on_backend_error(OnBackendError::Allow);
    let service = AuthLayer::new(store).layer(allow.layer(1).layer(handler.service()));
    let answer = send(service, bearer(key)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("spend-cap"), None, "nothing was counted");
    assert_eq!(handler.calls(), 1);
}

#[tokio::test]
async fn without_the_auth_layer_the_route_is_500_and_grpc_gets_resource_exhausted() {
    let (store, clock) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let handler = Metered::default();
    let caps = caps(&clock, 0, 0);
    let alone = send(caps.layer(1).layer(handler.service()), bearer("x")).await;
    assert_eq!(alone.status, StatusCode::INTERNAL_SERVER_ERROR);

    let service =
        AuthLayer::new(store).layer(caps.headers(false).layer(1).layer(handler.service()));
    let mut request = bearer(key.key().expose_secret());
    request
        .headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let grpc = send(service, request).await;
    assert_eq!(grpc.status, StatusCode::OK);
    assert_eq!(grpc.header("grpc-status"), Some("8"));
    assert_eq!(grpc.header("spend-cap"), None, "headers off");
    assert_eq!(handler.calls(), 0);
}

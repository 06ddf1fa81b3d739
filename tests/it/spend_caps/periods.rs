//! Periods and their counters: past periods dropped and swept, the usage suite on memory, a
//! daily period, one-time credits, the budget in the request when asked for.

use super::*;

#[test]
fn memory_counters_of_past_periods_are_dropped() {
    let clock = ManualClock::new(start_time());
    let usage = MemoryUsage::new().with_clock(clock.clone());
    let counter = |subject| Counter {
        environment: Environment::Test,
        per: BudgetPer::Owner,
        subject,
        period: Period::Hourly,
    };
    for owner in ["a", "b", "c"] {
        let spent = usage
            .charge_now(counter(owner), 5, 10, Charge::Reserve)
            .unwrap()
            .unwrap();
        assert!(spent.allowed);
    }
    assert_eq!(usage.spent(counter("a")), 5);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(usage.spent(counter("a")), 0, "a new hour");
    usage.housekeeping();
    assert_eq!(usage.tracked(), 0);
    let over = usage
        .charge_now(counter("a"), 25, 10, Charge::Reserve)
        .unwrap()
        .unwrap();
    assert!(!over.allowed, "never past the cap");
    assert_eq!(over.spent, 0);
}

#[test]
fn memory_counters_of_past_periods_are_swept_as_the_map_grows() {
    let clock = ManualClock::new(start_time());
    let usage = MemoryUsage::new().with_clock(clock.clone());
    let charge = |subject: &str| {
        let counter = Counter {
            environment: Environment::Live,
            per: BudgetPer::Key,
            subject,
            period: Period::Hourly,
        };
        let spent = usage
            .charge_now(counter, 1, 10, Charge::Reserve)
            .unwrap()
            .unwrap();
        assert!(spent.allowed);
    };
    // The first sweep runs at 1,024 counters and keeps them all (this hour's): the next is
    // due at 2,048.
    for i in 0..1024 {
        charge(&format!("key_{i}"));
    }
    assert_eq!(usage.tracked(), 1024);
    // Charging the same counters again inserts nothing and sweeps nothing.
    for i in 0..1024 {
        charge(&format!("key_{i}"));
    }
    assert_eq!(usage.tracked(), 1024);
    // An hour later, 1,024 other subjects: the 2,048th counter sweeps last hour's away,
    // without a call to `housekeeping`.
    clock.advance(Duration::from_secs(3600));
    for i in 0..1023 {
        charge(&format!("other_{i}"));
    }
    assert_eq!(usage.tracked(), 2047, "not due yet");
    charge("other_1023");
    assert_eq!(usage.tracked(), 1024, "last hour's counters swept");
}

use crate::usage_conformance;

struct MemoryFixture;

impl usage_conformance::Fixture for MemoryFixture {
    type Backend = MemoryUsage;

    async fn backend(&self, clock: ManualClock) -> MemoryUsage {
        MemoryUsage::new().with_clock(clock)
    }
}

usage_suite!(Some(MemoryFixture));

#[tokio::test]
async fn a_daily_period_resets_at_utc_midnight() {
    let (store, clock) = store_with_clock();
    // 2026-01-31T23:00:00Z: an hour before the day ends.
    clock.set(UNIX_EPOCH + Duration::from_secs(JANUARY_LAST_HOUR));
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let handler = Metered::default();
    let caps = caps(&clock, 8, 0).period(Environment::Live, Period::Daily);
    let service = AuthLayer::new(store).layer(caps.layer(4).layer(handler.service()));
    let key = key.key().expose_secret();
    for left in [4, 0] {
        let response = send(service.clone(), bearer(key)).await;
        assert_eq!(
            response.header("spend-cap"),
            Some(&*format!("limit=8, remaining={left}, reset=3600"))
        );
    }
    let over = send(service.clone(), bearer(key)).await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(over.header("retry-after"), Some("3600"));
    assert_eq!(over.json()["resets_at"], "2026-02-01T00:00:00Z");
    assert_eq!(handler.calls(), 2);
    clock.advance(Duration::from_secs(3600));
    let next_day = send(service.clone(), bearer(key)).await;
    assert_eq!(next_day.status, StatusCode::OK);
    assert_eq!(
        next_day.header("spend-cap"),
        Some("limit=8, remaining=4, reset=86400")
    );
}

#[tokio::test]
async fn credits_are_spent_once_and_their_402_names_no_reset() {
    let (store, clock) = store_with_clock();
    clock.set(UNIX_EPOCH + Duration::from_secs(JANUARY_LAST_HOUR));
    let trial = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let other = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let budgets = Budgets::new().default_cap(Environment::Live, 1_000_000);
    budgets.set_key_credits(trial.record().id().clone(), 1000);
    let caps = SpendCaps::backed_by(budgets, MemoryUsage::new().with_clock(clock.clone()))
        .per(BudgetPer::Key)
        .budget_in_request(true);
    let handler = Metered::default();
    let service = AuthLayer::new(store).layer(caps.layer(400).layer(handler.service()));
    let key = trial.key().expose_secret();
    for left in [600, 200] {
        let response = send(service.clone(), bearer(key)).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            response.header("spend-cap"),
            Some(&*format!("limit=1000, remaining={left}")),
            "no reset: credits never come back"
        );
    }
    let budget = handler
        .seen
        .lock()
        .unwrap()
        .expect("the budget is in the request");
    assert_eq!(
        (budget.period(), budget.resets_at()),
        (Period::Lifetime, None)
    );
    // A month later, nothing came back.
    clock.advance(Duration::from_secs(40 * 86_400));
    let over = send(service.clone(), bearer(key)).await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(over.json()["code"], "spend_cap_exceeded");
    assert!(over.json().get("resets_at").is_none(), "{}", over.json());
    assert_eq!(over.header("retry-after"), None);
    assert_eq!(over.header("spend-cap"), Some("limit=1000, remaining=200"));
    assert!(over.json()["error"]
        .as_str()
        .unwrap()
        .contains("do not reset"));
    assert_eq!(handler.calls(), 2);
    // Another key of the same owner keeps the monthly default.
    let response = send(service.clone(), bearer(other.key().expose_secret())).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.header("spend-cap").unwrap().contains("reset="));
}

/// The `Budget` extension costs an allocation per request: only when asked for.
#[tokio::test]
async fn the_budget_is_in_the_request_only_when_asked_for() {
    let (store, clock) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let budgets = Budgets::new().default_cap(Environment::Live, 10);
    let handler = Metered::default();
    let caps = SpendCaps::backed_by(budgets, MemoryUsage::new().with_clock(clock.clone()));
    let service = AuthLayer::new(store).layer(caps.layer(4).layer(handler.service()));
    let answer = send(service, bearer(key.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header("spend-cap"),
        Some("limit=10, remaining=6, reset=2678400"),
        "charged all the same"
    );
    assert_eq!(handler.calls(), 1);
    assert_eq!(*handler.seen.lock().unwrap(), None);
}

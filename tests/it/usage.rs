//! The plan policy per request: a downgraded owner's live keys get 403 `plan_required` (not
//! 401) once the cached answer expires on a fake clock; test keys stay allowed; a failing
//! policy is a 503, never a pass.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;
use tower::Layer;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::store::StoreError;
use tower_api_key::usage::PlanLayer;
use tower_api_key::usage::{PlanAnswer, PlanPolicy};
use tower_api_key::{AuthLayer, ForgScope};

/// Team or higher for live keys, switchable; counts questions; can fail.
#[derive(Clone, Default)]
struct Billing {
    downgraded: Arc<AtomicBool>,
    failing: Arc<AtomicBool>,
    asked: Arc<AtomicUsize>,
}

impl PlanPolicy for Billing {
    fn allows<'a>(&'a self, _owner: &'a str, environment: Environment) -> PlanAnswer<'a> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let answer = if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("billing is down"))
        } else {
            Ok(environment == Environment::Test || !self.downgraded.load(Ordering::SeqCst))
        };
        Box::pin(std::future::ready(answer))
    }
}

#[tokio::test]
async fn a_downgraded_owners_live_keys_get_403_once_the_answer_expires() {
    let (store, clock) = store_with_clock();
    let live = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let test = issue(&store, &KeyFamily::FORG_TEST, ForgScope::ReadRules);
    let billing = Billing::default();
    let probe = Probe::new();
    let plans = PlanLayer::new(billing.clone())
        .cache_ttl(Duration::from_secs(60))
        .clock(clock.clone());
    let service = AuthLayer::new(store).layer(plans.layer(probe.service::<String>()));
    let (live, test) = (live.key().expose_secret(), test.key().expose_secret());

    assert_eq!(
        send(service.clone(), bearer(live)).await.status,
        StatusCode::OK
    );
    billing.downgraded.store(true, Ordering::SeqCst);
    assert_eq!(
        send(service.clone(), bearer(live)).await.status,
        StatusCode::OK,
        "the cached answer holds for its TTL"
    );
    assert_eq!(billing.asked.load(Ordering::SeqCst), 1);

    clock.advance(Duration::from_secs(60));
    let refused = send(service.clone(), bearer(live)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.body,
        r#"{"error":"Live keys require a higher plan: upgrade to use them","code":"plan_required","status":403}"#
    );
    assert_eq!(
        send(service.clone(), bearer(test)).await.status,
        StatusCode::OK
    );
    assert_eq!(probe.calls(), 3, "refused requests never reach the service");

    billing.failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(60));
    let unavailable = send(service, bearer(live)).await;
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.header("retry-after"), Some("5"));
    assert_eq!(probe.calls(), 3);
}

#[tokio::test]
async fn without_the_authentication_layer_the_plan_layer_fails_closed() {
    let probe = Probe::new();
    let service = PlanLayer::new(Billing::default()).layer(probe.service::<String>());
    let answer = send(
        service,
        bearer("forg_live_0123456789abcdef0123456789abcdef"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(probe.calls(), 0);
}

/// `ServiceBuilderExt` has the usage steps too: plans, then spend caps, after the scopes.
#[tokio::test]
async fn the_service_builder_stacks_plans_and_spend_caps() {
    use tower::ServiceBuilder;
    use tower_api_key::usage::{Budgets, SpendCaps};
    use tower_api_key::usage::{Plan, PlanTable};
    use tower_api_key::ServiceBuilderExt;

    let (store, _clock) = store_with_clock();
    let live = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let test = issue(&store, &KeyFamily::FORG_TEST, ForgScope::ReadRules);
    let caps = SpendCaps::new(Budgets::new().default_cap(Environment::Test, 1));
    let probe = Probe::new();
    let service = ServiceBuilder::new()
        .authenticate(store)
        .check_plans(PlanTable::new(Plan::Free).require(Environment::Live, Plan::Team))
        .spend_capped(&caps, 1)
        .service(probe.service::<String>());
    let refused = send(service.clone(), bearer(live.key().expose_secret())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["code"], "plan_required");
    let test = test.key().expose_secret();
    assert_eq!(
        send(service.clone(), bearer(test)).await.status,
        StatusCode::OK
    );
    let spent = send(service, bearer(test)).await;
    assert_eq!(spent.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(probe.calls(), 1);
}

/// "New accounts receive a 14-day Pro trial. After the trial, accounts revert to the Free
/// tier." On one fake clock: issue, rotation and every request follow the trial's end.
#[tokio::test]
async fn a_trial_ends_on_the_clock_and_its_live_keys_are_refused_after() {
    use tower_api_key::clock::ManualClock;
    use tower_api_key::store::ManageError;
    use tower_api_key::usage::{Plan, PlanTable};
    use tower_api_key::{ManageKeys, MemoryKeyStore, NewKey};

    let clock = ManualClock::new(start_time());
    let plans = PlanTable::new(Plan::Free)
        .require(Environment::Live, Plan::Pro)
        .clock(clock.clone());
    let store = Arc::new(
        MemoryKeyStore::<ForgScope>::new().with_policy(
            tower_api_key::forg::key_policy()
                .clock(clock.clone())
                .plans(plans.clone()),
        ),
    );
    let fourteen_days = Duration::from_secs(14 * 86_400);
    let ends = plans.start_trial("agent_1", Plan::Pro, fourteen_days);
    assert_eq!(ends, start_time() + fourteen_days);
    assert_eq!(plans.trial_ends_at("agent_1"), Some(ends));
    let live = store
        .issue(NewKey::new("agent_1", "bot", &KeyFamily::FORG_LIVE))
        .await
        .expect("the trial's plan allows live keys");
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&store)).layer(
        PlanLayer::new(plans.clone())
            .cache_ttl(Duration::from_secs(60))
            .clock(clock.clone())
            .layer(probe.service::<String>()),
    );
    let key = live.key().expose_secret();
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );

    // One second before the end: still Pro. At the end: Free.
    clock.advance(fourteen_days - Duration::from_secs(1));
    assert_eq!(plans.plan_of("agent_1"), Plan::Pro);
    clock.advance(Duration::from_secs(1));
    assert_eq!(plans.plan_of("agent_1"), Plan::Free);
    assert_eq!(plans.trial_ends_at("agent_1"), None);
    // The layer's cached answer lives its TTL, then the key is refused.
    clock.advance(Duration::from_secs(60));
    let refused = send(service.clone(), bearer(key)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["code"], "plan_required");
    assert_eq!(probe.calls(), 1);
    // Neither a new live key nor a rotation of the old one; test keys still.
    assert!(matches!(
        store
            .issue(NewKey::new("agent_1", "again", &KeyFamily::FORG_LIVE))
            .await,
        Err(ManageError::PlanRequired(Environment::Live))
    ));
    assert!(matches!(
        store.rotate(live.record().id(), None).await,
        Err(ManageError::PlanRequired(Environment::Live))
    ));
    assert!(store
        .issue(NewKey::new("agent_1", "ci", &KeyFamily::FORG_TEST))
        .await
        .is_ok());
    // An upgrade: allowed again once the cached refusal ages out.
    plans.set_owner("agent_1", Plan::Team);
    clock.advance(Duration::from_secs(60));
    assert_eq!(send(service, bearer(key)).await.status, StatusCode::OK);
    assert_eq!(probe.calls(), 2);
}

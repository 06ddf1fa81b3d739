//! Issue 36.4: configuration cannot panic. Every `Duration` a user can configure, at
//! `Duration::MAX` and at zero, builds and serves requests; amounts at `u64::MAX` too.
//! Failed before: `PlanTable::start_trial(.., Duration::MAX)` ("overflow when adding
//! duration to instant") and `StaleIfError::within(Duration::MAX)` (moka: "time_to_live is
//! longer than 1000 years").
#![cfg(feature = "cache")]

use crate::common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::{send, store_with_clock, Probe};
use http::{HeaderMap, Request, StatusCode};
use tower::ServiceBuilder;
use tower_api_key::activity::{ActivityLayer, LastUsedRecorder};
use tower_api_key::clock::Clock;
use tower_api_key::failure_limit::FailureLimit;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::rate_limit::{ClassName, GovernorBackend, Quota, RateClass, RateLimits};
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::{CachedKeyStore, KeyPolicy, ManageError, StaleIfError};
use tower_api_key::usage::{Budgets, MemoryUsage, Plan, PlanLayer, PlanTable, SpendCaps};
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey, ServiceBuilderExt};

type Store = MemoryKeyStore<ForgScope>;

/// The whole stack with every duration set to `d` and every amount to `amount`.
async fn serve_with(d: Duration, amount: u64) {
    let (_, clock) = store_with_clock();
    let policy = tower_api_key::forg::key_policy()
        .clock(clock.clone())
        .retention(d)
        .rotation_age(d)
        .max_lifetime(d);
    let keys = Arc::new(Store::new().with_policy(policy));
    let issued = keys
        .issue(
            NewKey::new("org_1", "k", &KeyFamily::FORG_LIVE)
                .scopes(ForgScope::ReadRules)
                .expires_in(d),
        )
        .await;
    // A key that expires at once cannot be rotated: a clear error, not a panic.
    let rotated = keys.rotate(issued.unwrap().record().id(), Some(d)).await;
    assert!(
        matches!(rotated, Ok(_) | Err(ManageError::NotFound(_))),
        "{d:?}: {rotated:?}"
    );
    let cached = Arc::new(
        CachedKeyStore::builder(Arc::clone(&keys))
            .ttl(d)
            .negative_ttl(d)
            .stale_if_error(StaleIfError::within(d).patience(d))
            .build(),
    );
    let sessions = Sessions::new(
        Arc::new(Store::new().with_policy(KeyPolicy::sessions().clock(clock.clone()))),
        CsrfSecret::generate().unwrap(),
    )
    .ttl(d)
    .idle_timeout(d);
    let started = sessions
        .start(&HeaderMap::new(), "org_1", ForgScope::ReadRules)
        .await;
    let plans = PlanTable::new(Plan::Free)
        .require(Environment::Live, Plan::Pro)
        .clock(clock.clone());
    let ends = plans.start_trial("org_1", Plan::Pro, d);
    assert!(ends >= clock.now());
    let budgets = Budgets::new().default_cap(Environment::Live, amount);
    let caps = SpendCaps::backed_by(budgets, MemoryUsage::new().with_clock(clock.clone()))
        .backend_timeout(d);
    let limits =
        RateLimits::backed_by(GovernorBackend::on_clock(clock.clone()).housekeeping_interval(d))
            .backend_timeout(d);
    let class = RateClass::per_key(
        ClassName::from_static("std"),
        Quota::per_minute(NonZeroU32::MAX),
    );
    let failures = FailureLimit::on_clock(Quota::per_minute(NonZeroU32::MAX), clock.clone())
        .housekeeping_interval(d);
    let recorder = LastUsedRecorder::spawn(Arc::clone(&keys), d);
    let probe = Probe::new();
    let service = ServiceBuilder::new()
        .layer(ActivityLayer::new(recorder))
        .limit_failures(failures)
        .layer(
            AuthLayer::new(cached)
                .sessions(sessions)
                .lookup_timeout(d)
                .retry_after(d)
                .expiry_notice(d),
        )
        .layer(PlanLayer::new(plans).require(Plan::Pro).cache_ttl(d))
        .layer(limits.layer(class))
        .layer(caps.layer(amount))
        .service(probe.service::<String>());
    let mut requests = vec![Request::get("/")
        .header(
            "authorization",
            "Bearer forg_live_00000000000000000000000000000000",
        )
        .body(String::new())
        .unwrap()];
    if let Ok(started) = &started {
        requests.push(
            Request::get("/")
                .header("cookie", started.cookies().cookie_header())
                .body(String::new())
                .unwrap(),
        );
    }
    for request in requests {
        let answer = send(service.clone(), common::from("203.0.113.7", request)).await;
        assert!(
            answer.status != StatusCode::INTERNAL_SERVER_ERROR,
            "{d:?}: {:?}",
            answer.body
        );
    }
}

#[tokio::test]
async fn every_duration_at_its_extremes_serves_without_a_panic() {
    for d in [Duration::MAX, Duration::ZERO, Duration::from_nanos(1)] {
        for amount in [u64::MAX, 0, 1] {
            serve_with(d, amount).await;
        }
    }
}

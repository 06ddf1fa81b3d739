//! Rate limiting on governor's fake clock: bursts, exact Retry-After, classes, overrides,
//! client addresses and proxies, failed-auth limits, headers, backend seam, memory bounds.

use crate::common;

use futures_util::FutureExt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower_api_key::forg;
use tower_api_key::store::ManageKeys;

use common::*;
use http::{Request, StatusCode};
use tower::Layer;
use tower_api_key::client_ip::{
    ClientAddr, ClientIp, ClientIpLayer, ForwardedHeader, Ipv6Grouping,
};
use tower_api_key::clock::ManualClock;
use tower_api_key::failure_limit::{FailureLimit, FailureLimitLayer};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::{
    BackendError, ClassName, Decision, GovernorBackend, LimitKey, OnBackendError, Quota, RateClass,
    RateLimitBackend, RateLimits,
};
use tower_api_key::reject::{AuthRejection, RetryAfter, Unavailable};
use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore, NewKey};

mod backends;
mod client_addresses;
mod failed_authentication;

fn fake_limits() -> (RateLimits<GovernorBackend<ManualClock>>, ManualClock) {
    let clock = ManualClock::default();
    (
        RateLimits::backed_by(GovernorBackend::on_clock(clock.clone())),
        clock,
    )
}

/// `POST /auth/login` from `peer`, with an `X-Forwarded-For` when given.
fn login_from(peer: &str, forwarded_for: Option<&str>) -> Request<String> {
    let mut request = Request::post("/auth/login");
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    from(peer, request.body(String::new()).unwrap())
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap())
}

/// A quota above the 4,096 requests whose values are made at start: the values from the
/// table (up to 4,096 used) and those written per request (past it) say the same.
#[tokio::test]
async fn a_large_quotas_ratelimit_values_are_exact_on_both_sides_of_the_table() {
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let (limits, clock) = fake_limits();
    // 10,000 per 10 s: a request period of 1 ms.
    let bulk = RateClass::per_key(
        ClassName::from_static("bulk"),
        Quota::new(
            NonZeroU32::new(10_000).unwrap(),
            NonZeroU32::new(10).unwrap(),
        ),
    );
    let service = AuthLayer::new(store).layer(limits.layer(bulk).layer(Probe::new().service()));
    let key = issued.key().expose_secret();
    let state = |answer: &Answer| answer.header("ratelimit").map(str::to_owned);

    let first = send(service.clone(), bearer(key)).await;
    assert_eq!(
        first.header("ratelimit-policy"),
        Some(r#""bulk";q=10000;w=10"#)
    );
    assert_eq!(state(&first).as_deref(), Some(r#""bulk";r=9999;t=1"#));
    let mut last = first;
    for _ in 1..5_000 {
        last = send(service.clone(), bearer(key)).await;
    }
    assert_eq!(last.status, StatusCode::OK);
    assert_eq!(
        state(&last).as_deref(),
        Some(r#""bulk";r=5000;t=5"#),
        "5,000 used: past the table"
    );
    clock.advance(Duration::from_millis(2_500));
    let refilled = send(service.clone(), bearer(key)).await;
    assert_eq!(
        state(&refilled).as_deref(),
        Some(r#""bulk";r=7499;t=3"#),
        "2,501 used: from the table"
    );
}

#[tokio::test]
async fn burst_then_exact_retry_after_then_allowed_again() {
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let (limits, clock) = fake_limits();
    let probe = Probe::new();
    let service =
        AuthLayer::new(store).layer(limits.layer(forg::AI).layer(probe.service::<String>()));
    let key = issued.key().expose_secret();

    let first = send(service.clone(), bearer(key)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("ratelimit-policy"), Some(r#""ai";q=10;w=60"#));
    assert_eq!(first.header("ratelimit"), Some(r#""ai";r=9;t=6"#));
    for remaining in (0..9).rev() {
        let answer = send(service.clone(), bearer(key)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.header("ratelimit"),
            Some(format!(r#""ai";r={remaining};t={}"#, (10 - remaining) * 6).as_str())
        );
    }

    let limited = send(service.clone(), bearer(key)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), Some("6"));
    assert_eq!(
        limited.body,
        r#"{"error":"Rate limit exceeded","code":"rate_limited","status":429}"#
    );
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some(r#""ai";q=10;w=60"#)
    );
    assert_eq!(limited.header("ratelimit"), Some(r#""ai";r=0;t=60"#));
    assert_eq!(probe.calls(), 10);

    clock.advance(Duration::from_millis(4_500));
    let limited = send(service.clone(), bearer(key)).await;
    assert_eq!(
        limited.header("retry-after"),
        Some("2"),
        "1.5 s left, rounded up"
    );
    clock.advance(Duration::from_millis(1_499));
    let limited = send(service.clone(), bearer(key)).await;
    assert_eq!(
        limited.header("retry-after"),
        Some("1"),
        "1 ms left is never 0"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service, bearer(key)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(probe.calls(), 11);
}

#[tokio::test]
async fn classes_and_keys_have_separate_budgets() {
    let (store, _) = store_with_clock();
    let a = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let b = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let (limits, _clock) = fake_limits();
    let probe = Probe::new();
    let auth = AuthLayer::new(store);
    let ai = auth.layer(limits.layer(forg::AI).layer(probe.service::<String>()));
    let standard = auth.layer(
        limits
            .layer(forg::STANDARD)
            .layer(probe.service::<String>()),
    );
    let (ka, kb) = (a.key().expose_secret(), b.key().expose_secret());

    for _ in 0..10 {
        assert_eq!(send(ai.clone(), bearer(ka)).await.status, StatusCode::OK);
    }
    assert_eq!(
        send(ai.clone(), bearer(ka)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let answer = send(standard.clone(), bearer(ka)).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "AI budget spent, standard untouched"
    );
    assert_eq!(answer.header("ratelimit"), Some(r#""standard";r=99;t=1"#));
    assert_eq!(
        send(ai, bearer(kb)).await.status,
        StatusCode::OK,
        "another key, another budget"
    );
    for _ in 0..99 {
        assert_eq!(
            send(standard.clone(), bearer(ka)).await.status,
            StatusCode::OK
        );
    }
    let limited = send(standard, bearer(ka)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), Some("1"), "0.6 s rounded up");
    assert_eq!(
        limits.tracked(),
        3,
        "state for (ai, a), (ai, b), (standard, a)"
    );
}

#[tokio::test]
async fn per_key_override_applies_to_that_key_and_class_only() {
    let (store, _) = store_with_clock();
    let enterprise = store
        .issue(
            NewKey::new("big_corp", "enterprise", &KeyFamily::FORG_LIVE)
                .scopes(ForgScope::ReadRules)
                .rate_limit(&forg::AI, per_minute(2)),
        )
        .await
        .unwrap();
    let plain = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let (limits, clock) = fake_limits();
    let probe = Probe::new();
    let auth = AuthLayer::new(store);
    let ai = auth.layer(limits.layer(forg::AI).layer(probe.service::<String>()));
    let standard = auth.layer(
        limits
            .layer(forg::STANDARD)
            .layer(probe.service::<String>()),
    );
    let key = enterprise.key().expose_secret();

    let first = send(ai.clone(), bearer(key)).await;
    assert_eq!(first.header("ratelimit-policy"), Some(r#""ai";q=2;w=60"#));
    assert_eq!(first.header("ratelimit"), Some(r#""ai";r=1;t=30"#));
    assert_eq!(send(ai.clone(), bearer(key)).await.status, StatusCode::OK);
    let limited = send(ai.clone(), bearer(key)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), Some("30"));
    clock.advance(Duration::from_secs(30));
    assert_eq!(send(ai.clone(), bearer(key)).await.status, StatusCode::OK);

    let standard_answer = send(standard, bearer(key)).await;
    assert_eq!(
        standard_answer.header("ratelimit-policy"),
        Some(r#""standard";q=100;w=60"#),
        "no override for this class"
    );
    assert_eq!(
        send(ai, bearer(plain.key().expose_secret()))
            .await
            .header("ratelimit-policy"),
        Some(r#""ai";q=10;w=60"#)
    );
}

#[tokio::test]
async fn headers_can_be_switched_off_and_grpc_gets_resource_exhausted() {
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
    let (limits, _clock) = fake_limits();
    let limits = limits.headers(false);
    let probe = Probe::new();
    let class = RateClass::per_key(ClassName::from_static("tiny"), per_minute(1));
    let service = AuthLayer::new(store)
        .sources(forg::credential_sources())
        .layer(limits.layer(class).layer(probe.service::<String>()));
    let grpc = || {
        Request::post("/svc/Method")
            .header("content-type", "application/grpc")
            .header("x-forgeos-api-key", issued.key().expose_secret())
            .body(String::new())
            .unwrap()
    };
    let ok = send(service.clone(), grpc()).await;
    assert_eq!(ok.header("ratelimit"), None);
    assert_eq!(ok.header("ratelimit-policy"), None);
    let limited = send(service, grpc()).await;
    assert_eq!(limited.status, StatusCode::OK);
    assert_eq!(limited.header("grpc-status"), Some("8"));
    assert_eq!(limited.header("grpc-message"), Some("Rate limit exceeded"));
    assert_eq!(limited.header("retry-after"), Some("60"));
}

#[test]
fn class_names_are_validated() {
    assert!(ClassName::new("reports-v2").is_ok());
    assert!(ClassName::new("").is_err());
    assert!(ClassName::new("Has Space").is_err());
    assert!(ClassName::new("x\"y").is_err());
    assert!(
        "AI".parse::<ClassName>().is_err(),
        "class names are lower-case"
    );
    assert_eq!(forg::STANDARD.quota(), per_minute(100));
    assert_eq!(forg::AUTH.with_quota(per_minute(7)).quota(), per_minute(7));
}

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
async fn public_class_is_keyed_by_peer_address_and_ignores_untrusted_forwarding() {
    let (limits, _clock) = fake_limits();
    let probe = Probe::new();
    let login = limits.layer(forg::AUTH).layer(probe.service::<String>());
    let request = |xff: &str| login_from("203.0.113.9", Some(xff));

    for i in 0..5 {
        let answer = send(login.clone(), request(&format!("198.51.100.{i}"))).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let limited = send(login.clone(), request("198.51.100.77")).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "spoofed XFF from an untrusted peer changes nothing"
    );
    assert_eq!(limited.header("retry-after"), Some("12"));
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some(r#""auth";q=5;w=60"#)
    );

    let other = login_from("203.0.113.10", None);
    assert_eq!(send(login, other).await.status, StatusCode::OK);
    assert_eq!(probe.calls(), 6);
}

#[tokio::test]
async fn trusted_proxies_forward_the_rightmost_untrusted_address() {
    let (limits, _clock) = fake_limits();
    let probe = Probe::new();
    let login = ClientIpLayer::new(ClientIp::peer().trust_proxies(["10.0.0.0/8"]).unwrap())
        .layer(limits.layer(forg::AUTH).layer(probe.service::<String>()));
    let via_proxy = |xff: &str| login_from("10.0.0.2", Some(xff));

    for _ in 0..5 {
        // The client forged the leftmost entry; the proxy appended the real address.
        assert_eq!(
            send(login.clone(), via_proxy("1.1.1.1, 198.51.100.7, 10.0.0.5"))
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        send(login.clone(), via_proxy("2.2.2.2, 198.51.100.7, 10.0.0.5"))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS,
        "forging the left does not buy a new budget"
    );
    assert_eq!(
        send(login.clone(), via_proxy("198.51.100.8")).await.status,
        StatusCode::OK
    );

    let malformed = send(login.clone(), via_proxy("1.1.1.1, not-an-address")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json()["error"], "Malformed forwarded header");
    assert_eq!(probe.calls(), 6);
}

#[test]
fn client_ip_resolution_rules() {
    use http::{Extensions, HeaderMap};
    let resolve = |client_ip: &ClientIp, peer: &str, headers: &[(&str, &str)]| {
        let mut extensions = Extensions::new();
        extensions.insert(ClientAddr(peer.parse().unwrap()));
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        client_ip.resolve(&map, &extensions)
    };
    let ip = |s: &str| Ok::<IpAddr, _>(s.parse().unwrap());
    let trusting = ClientIp::peer()
        .trust_proxies(["10.0.0.0/8", "fd00::/8"])
        .unwrap();
    assert_eq!(
        ClientIp::peer()
            .trust_proxies(["10.0.0.0/8", "not a network"])
            .unwrap_err()
            .to_string(),
        "`not a network` is not a network (CIDR) or an IP address"
    );

    assert_eq!(
        resolve(
            &ClientIp::peer(),
            "192.0.2.1",
            &[("x-forwarded-for", "8.8.8.8")]
        ),
        ip("192.0.2.1")
    );
    assert_eq!(
        resolve(&trusting, "10.0.0.1", &[]),
        ip("10.0.0.1"),
        "no header: the proxy itself"
    );
    assert_eq!(
        resolve(
            &trusting,
            "::ffff:10.0.0.1",
            &[("x-forwarded-for", "192.0.2.9")]
        ),
        ip("192.0.2.9"),
        "mapped IPv4"
    );
    assert_eq!(
        resolve(
            &trusting,
            "10.0.0.1",
            &[
                ("x-forwarded-for", "192.0.2.1"),
                ("x-forwarded-for", "192.0.2.2, 10.1.1.1")
            ]
        ),
        ip("192.0.2.2"),
        "repeated headers are one list"
    );
    assert_eq!(
        resolve(
            &trusting,
            "10.0.0.1",
            &[("x-forwarded-for", "10.2.2.2, 10.1.1.1")]
        ),
        ip("10.2.2.2"),
        "all trusted"
    );
    assert_eq!(
        resolve(
            &trusting,
            "10.0.0.1",
            &[("x-forwarded-for", "[2001:db8::1]:443")]
        ),
        ip("2001:db8::1")
    );
    assert_eq!(
        resolve(
            &trusting,
            "10.0.0.1",
            &[("x-forwarded-for", "192.0.2.1:8080")]
        ),
        ip("192.0.2.1")
    );

    let forwarded = trusting
        .clone()
        .forwarded_header(ForwardedHeader::Forwarded);
    assert_eq!(
        resolve(
            &forwarded,
            "fd00::1",
            &[(
                "forwarded",
                r#"for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711", for=10.0.0.3"#
            )]
        ),
        ip("2001:db8:cafe::17")
    );
    assert!(resolve(&forwarded, "10.0.0.1", &[("forwarded", "for=unknown")]).is_err());
    assert!(resolve(&trusting, "10.0.0.1", &[("x-forwarded-for", "garbage")]).is_err());

    let none = ClientIp::peer().resolve(&HeaderMap::new(), &Extensions::new());
    assert_eq!(
        none,
        Err(tower_api_key::client_ip::ClientIpError::NoPeerAddress)
    );
}

#[tokio::test]
async fn ipv6_clients_share_a_budget_per_64() {
    let (limits, _clock) = fake_limits();
    let probe = Probe::new();
    let login = limits.layer(forg::AUTH).layer(probe.service::<String>());
    for i in 0..5 {
        let request = from(
            &format!("2001:db8:1:2::{i:x}"),
            Request::post("/").body(String::new()).unwrap(),
        );
        assert_eq!(send(login.clone(), request).await.status, StatusCode::OK);
    }
    let same_64 = from(
        "2001:db8:1:2:ffff::1",
        Request::post("/").body(String::new()).unwrap(),
    );
    assert_eq!(
        send(login.clone(), same_64).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let other_64 = from(
        "2001:db8:1:3::1",
        Request::post("/").body(String::new()).unwrap(),
    );
    assert_eq!(send(login, other_64).await.status, StatusCode::OK);
}

#[tokio::test]
async fn requests_without_a_client_address_or_identity_fail_closed() {
    let (limits, _clock) = fake_limits();
    let probe = Probe::new();
    let login = limits.layer(forg::AUTH).layer(probe.service::<String>());
    let answer = send(
        login,
        Request::post("/auth/login").body(String::new()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        answer.json()["error"],
        "Server misconfigured: the client address (ConnectInfo or ClientAddr) is missing for this route"
    );

    let standard = limits
        .layer(forg::STANDARD)
        .layer(probe.service::<String>());
    let answer = send(standard, Request::get("/").body(String::new()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        answer.json()["error"],
        "Server misconfigured: AuthLayer is missing for this route"
    );
    assert_eq!(probe.calls(), 0);
    assert_eq!(limits.tracked(), 0, "no shared bucket was created");
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

#[tokio::test]
async fn failed_authentication_is_limited_per_address_before_the_store() {
    let (store, _) = store_with_clock();
    let good = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(Arc::clone(&store), Script::Delegate);
    let clock = ManualClock::default();
    let failures = FailureLimit::on_clock(per_minute(3), clock.clone());
    let probe = Probe::new();
    let service = FailureLimitLayer::new(failures.clone())
        .layer(AuthLayer::new(Arc::clone(&scripted)).layer(probe.service::<String>()));
    let attacker = |key: &str| from("198.51.100.66", bearer(key));
    let bad = |i: u32| format!("forg_live_{i:032x}");

    for i in 0..3 {
        assert_eq!(
            send(service.clone(), attacker(&bad(i))).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(scripted.lookups(), 3);
    // The fourth failure is refused by the store, and spends past the budget.
    assert_eq!(
        send(service.clone(), attacker(&bad(3))).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(scripted.lookups(), 4);
    let blocked = send(service.clone(), attacker(&bad(4))).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.header("retry-after"), Some("20"));
    assert_eq!(scripted.lookups(), 4, "answered before the store is asked");
    let blocked = send(service.clone(), attacker(good.key().expose_secret())).await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address is blocked, whatever the key"
    );

    // Another address is unaffected; missing keys do not count.
    for _ in 0..10 {
        let anonymous = from(
            "198.51.100.1",
            Request::get("/").body(String::new()).unwrap(),
        );
        assert_eq!(
            send(service.clone(), anonymous).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        send(
            service.clone(),
            from("198.51.100.1", bearer(good.key().expose_secret()))
        )
        .await
        .status,
        StatusCode::OK
    );

    clock.advance(Duration::from_secs(20));
    assert_eq!(
        send(service.clone(), attacker(good.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(probe.calls(), 2);
}

#[tokio::test]
async fn store_outages_do_not_count_as_failures() {
    let (store, _) = store_with_clock();
    let good = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(Arc::clone(&store), Script::Fail);
    let failures = FailureLimit::on_clock(per_minute(2), ManualClock::default());
    let probe = Probe::new();
    let service = FailureLimitLayer::new(failures.clone())
        .layer(AuthLayer::new(Arc::clone(&scripted)).layer(probe.service::<String>()));
    for _ in 0..10 {
        let answer = send(
            service.clone(),
            from("192.0.2.5", bearer(good.key().expose_secret())),
        )
        .await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(failures.tracked(), 0);
    scripted.set(Script::Delegate);
    assert_eq!(
        send(
            service,
            from("192.0.2.5", bearer(good.key().expose_secret()))
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn many_invalid_keys_leave_no_per_key_state_and_bounded_per_address_state() {
    let (store, _) = store_with_clock();
    let (limits, clock) = fake_limits();
    let failures = FailureLimit::on_clock(per_minute(20), clock.clone());
    let probe = Probe::new();
    let service = FailureLimitLayer::new(failures.clone()).layer(
        AuthLayer::new(store).layer(
            limits
                .layer(forg::STANDARD)
                .layer(probe.service::<String>()),
        ),
    );

    let mut refused = 0;
    for i in 0..100_000u32 {
        let address = format!("10.{}.{}.{}", i % 7, (i / 7) % 250, i % 113);
        let answer = send(
            service.clone(),
            from(&address, bearer(&format!("forg_live_{i:032x}"))),
        )
        .await;
        refused += usize::from(answer.status != StatusCode::OK);
    }
    assert_eq!(refused, 100_000);
    assert_eq!(probe.calls(), 0);
    assert_eq!(
        limits.tracked(),
        0,
        "no per-key state for keys that never authenticated"
    );
    let before = failures.tracked();
    assert!(
        before > 0 && before <= 2 * 7 * 250 * 113,
        "at most one limiter entry and one block per address: {before}"
    );

    clock.advance(Duration::from_secs(61));
    failures.housekeeping();
    limits.housekeeping();
    assert_eq!(failures.tracked(), 0, "idle addresses evicted");
}

#[test]
fn housekeeping_runs_by_itself_on_the_request_path() {
    // No Tokio runtime here: housekeeping runs inline, so its effect is visible at once.
    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let keys: Vec<_> = (0..5)
        .map(|i| {
            store
                .issue(NewKey::new(format!("o{i}"), "k", &KeyFamily::FOS))
                .now_or_never()
                .expect("the memory store answers at once")
                .unwrap()
        })
        .collect();
    let clock = ManualClock::default();
    let limits = RateLimits::backed_by(
        GovernorBackend::on_clock(clock.clone()).housekeeping_interval(Duration::from_secs(120)),
    );
    let probe = Probe::new();
    let service = AuthLayer::new(store).layer(
        limits
            .layer(forg::STANDARD)
            .layer(probe.service::<String>()),
    );
    let run = |key: &str| {
        futures_util::FutureExt::now_or_never(send(service.clone(), bearer(key)))
            .expect("ready at once")
    };

    for issued in &keys {
        assert_eq!(run(issued.key().expose_secret()).status, StatusCode::OK);
    }
    assert_eq!(limits.tracked(), 5);
    clock.advance(Duration::from_secs(119));
    run(keys[0].key().expose_secret());
    assert_eq!(limits.tracked(), 5, "interval not reached");
    clock.advance(Duration::from_secs(1));
    run(keys[0].key().expose_secret());
    assert_eq!(
        limits.tracked(),
        1,
        "the four idle keys were evicted; the active one stays"
    );
}

/// A backend that answers asynchronously, counts calls and can fail.
#[derive(Clone, Default)]
struct RemoteBackend {
    calls: Arc<AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl RateLimitBackend for RemoteBackend {
    type Class = RateClass;

    fn register(&self, class: &RateClass) -> RateClass {
        class.clone()
    }

    async fn check(
        &self,
        _class: &RateClass,
        key: LimitKey<'_>,
        quota: Quota,
    ) -> Result<Decision, BackendError> {
        tokio::task::yield_now().await;
        assert!(matches!(key, LimitKey::ApiKey(_)));
        if self.failing.load(Ordering::SeqCst) {
            return Err(BackendError::new("connection refused"));
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) as u32;
        if n < quota.requests().get() {
            Ok(Decision::allowed(
                quota,
                quota.requests().get() - n - 1,
                Duration::from_secs(6),
            ))
        } else {
            Ok(Decision::limited(
                quota,
                Duration::from_millis(5_500),
                Duration::from_secs(60),
            ))
        }
    }
}

#[tokio::test]
async fn asynchronous_backends_plug_into_the_same_layer() {
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let backend = RemoteBackend::default();
    let probe = Probe::new();
    let allow = AuthLayer::new(Arc::clone(&store)).layer(
        RateLimits::backed_by(backend.clone())
            .layer(forg::AI)
            .layer(probe.service::<String>()),
    );
    let deny = AuthLayer::new(store).layer(
        RateLimits::backed_by(backend.clone())
            .on_backend_error(OnBackendError::Deny)
            .layer(forg::AI)
            .layer(probe.service::<String>()),
    );
    let key = issued.key().expose_secret();

    let answer = send(allow.clone(), bearer(key)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("ratelimit"), Some(r#""ai";r=9;t=6"#));
    for _ in 0..9 {
        send(allow.clone(), bearer(key)).await;
    }
    let limited = send(allow.clone(), bearer(key)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), Some("6"));
    assert_eq!(probe.calls(), 10);

    backend.failing.store(true, Ordering::SeqCst);
    let allowed = send(allow, bearer(key)).await;
    assert_eq!(
        allowed.status,
        StatusCode::OK,
        "default: a limiter outage is not an API outage"
    );
    assert_eq!(allowed.header("ratelimit"), None);
    let denied = send(deny, bearer(key)).await;
    assert_eq!(denied.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(denied.header("retry-after"), Some("1"));
    assert_eq!(
        denied.extensions.get::<AuthRejection>(),
        Some(&AuthRejection::unavailable(
            Unavailable::RateLimiter,
            RetryAfter::ONE_SECOND
        ))
    );
    assert_eq!(probe.calls(), 11);
}

#[tokio::test]
async fn one_class_on_two_routes_is_one_budget_per_key() {
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let (limits, _clock) = fake_limits();
    let (first_probe, second_probe) = (Probe::new(), Probe::new());
    // Two layers of the same class, each on its own route, as `route_layer` makes them.
    let first = AuthLayer::new(Arc::clone(&store)).layer(
        limits
            .layer(forg::AI)
            .layer(first_probe.service::<String>()),
    );
    let second = AuthLayer::new(store).layer(
        limits
            .layer(forg::AI)
            .layer(second_probe.service::<String>()),
    );
    let key = issued.key().expose_secret();

    let mut allowed = 0;
    for _ in 0..10 {
        for service in [first.clone(), second.clone()] {
            if send(service, bearer(key)).await.status == StatusCode::OK {
                allowed += 1;
            }
        }
    }
    assert_eq!(allowed, 10, "10 per minute per key, not per route");
    assert_eq!(first_probe.calls() + second_probe.calls(), 10);
}

#[test]
fn an_asynchronous_backend_on_a_runtime_without_timers_fails_as_configured() {
    // No `enable_time`: the backend timeout cannot be armed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (store, _) = store_with_clock();
        let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
        let probe = Probe::new();
        let deny = AuthLayer::new(store).layer(
            RateLimits::backed_by(RemoteBackend::default())
                .on_backend_error(OnBackendError::Deny)
                .layer(forg::AI)
                .layer(probe.service::<String>()),
        );
        let answer = send(deny, bearer(issued.key().expose_secret())).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(probe.calls(), 0);
    });
}

#[tokio::test]
async fn ipv6_clients_are_grouped_as_configured() {
    // Same /48, different /56 and /64.
    let (a, b) = ("2001:db8:1:100::1", "2001:db8:1:200::1");
    let cases = [
        (None, false),
        (Some(Ipv6Grouping::Prefix64), false),
        (Some(Ipv6Grouping::Prefix56), false),
        (Some(Ipv6Grouping::Prefix48), true),
    ];
    for (grouping, one_client) in cases {
        let (limits, _clock) = fake_limits();
        let probe = Probe::new();
        let one_a_minute = RateClass::per_client_ip(ClassName::from_static("tiny"), per_minute(1));
        let limited = limits.layer(one_a_minute).layer(probe.service::<String>());
        let service = match grouping {
            Some(grouping) => {
                ClientIpLayer::new(ClientIp::peer().ipv6_grouping(grouping)).layer(limited)
            }
            None => ClientIpLayer::new(ClientIp::peer()).layer(limited),
        };
        assert_eq!(
            send(service.clone(), login_from(a, None)).await.status,
            StatusCode::OK
        );
        let expected = if one_client {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::OK
        };
        assert_eq!(
            send(service, login_from(b, None)).await.status,
            expected,
            "{grouping:?}"
        );
    }
}

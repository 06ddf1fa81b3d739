//! The failed-authentication limit: per address, before the store; outages do not count;
//! invalid keys leave bounded state.

use super::*;

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

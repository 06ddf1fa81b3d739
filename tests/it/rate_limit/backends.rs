//! Backends: housekeeping on the request path, asynchronous backends in the same layer, one
//! class on two routes, a runtime without timers.

use super::*;

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

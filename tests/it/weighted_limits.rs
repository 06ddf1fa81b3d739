//! Issue 40.2: weighted rate classes. A class whose requests cost units (fixed, or
//! reserved and settled with what the handler reports), on the in-process GCRA (fake
//! clock) and on Redis and the Redis Cluster; the `RateLimit` headers count units.
//! 10,000 tokens a minute, requests reserving 3,000: the fourth in flight is refused; what
//! a request did not use is given back while its window lasts, never beyond a full quota.

use crate::common::{bearer, issue, send, store_with_clock};

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::{
    ClassName, GovernorBackend, Quota, RateClass, RateLimitBackend, RateLimits, ReportedUnits,
};
use tower_api_key::{AuthLayer, ForgScope};

fn tokens() -> RateClass {
    RateClass::per_key(
        ClassName::from_static("tokens"),
        Quota::per_minute(NonZeroU32::new(10_000).unwrap()),
    )
    .reported_up_to(NonZeroU32::new(3_000).unwrap())
}

/// A handler that waits for its gate (`x-gate`: 0 to 7) to open, then reports the units
/// in `x-report`.
#[derive(Clone)]
struct Model {
    entered: Arc<AtomicUsize>,
    gates: Arc<Vec<Semaphore>>,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            entered: Arc::default(),
            gates: Arc::new((0..8).map(|_| Semaphore::new(0)).collect()),
        }
    }
}

impl Model {
    fn service(
        &self,
    ) -> impl tower::Service<
        Request<String>,
        Response = Response<Full<Bytes>>,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
           + Send {
        let model = self.clone();
        tower::service_fn(move |request: Request<String>| {
            let model = model.clone();
            async move {
                model.entered.fetch_add(1, Ordering::SeqCst);
                let gate: usize = request
                    .headers()
                    .get("x-gate")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                model.gates[gate].acquire().await.unwrap().forget();
                let report: Option<u32> = request
                    .headers()
                    .get("x-report")
                    .and_then(|v| v.to_str().ok()?.parse().ok());
                let mut response = Response::new(Full::new(Bytes::from_static(b"answer")));
                if let Some(units) = report {
                    response.extensions_mut().insert(ReportedUnits(units));
                }
                Ok(response)
            }
        })
    }

    fn open(&self, gate: usize) {
        self.gates[gate].add_permits(1);
    }

    async fn until_entered(&self, n: usize) {
        let entered = || self.entered.load(Ordering::SeqCst) >= n;
        crate::common::until("requests in the handler", entered).await;
    }
}

fn reporting(key: &str, units: Option<u32>, gate: usize) -> Request<String> {
    let mut request = bearer(key);
    request
        .headers_mut()
        .insert("x-gate", gate.to_string().parse().unwrap());
    if let Some(units) = units {
        request
            .headers_mut()
            .insert("x-report", units.to_string().parse().unwrap());
    }
    request
}

/// The story on `backend`; the window part on `clock` (a backend on its fake clock; Redis
/// keeps its own time, so there it is the in-process test's).
async fn reserve_then_settle<B: RateLimitBackend>(
    backend: B,
    clock: Option<tower_api_key::clock::ManualClock>,
) {
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let key = issued.key().expose_secret().to_owned();
    let model = Model::default();
    let service = AuthLayer::new(store).layer(
        RateLimits::backed_by(backend)
            .layer(tokens())
            .layer(model.service()),
    );
    let state = |response: &Response<_>| {
        response
            .headers()
            .get("ratelimit")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    // Three in flight: 9,000 of 10,000 reserved.
    let mut flying = Vec::new();
    for (gate, units) in [Some(1_000), Some(3_000), None].into_iter().enumerate() {
        let request = reporting(&key, units, gate);
        flying.push(tokio::spawn(service.clone().oneshot(request)));
    }
    model.until_entered(3).await;
    let fourth = send(service.clone(), reporting(&key, Some(3_000), 7)).await;
    assert_eq!(fourth.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        fourth.header("ratelimit-policy"),
        Some(r#""tokens";q=10000;w=60"#)
    );
    assert!(fourth.header("retry-after").is_some());

    // The first reports 1,000: 2,000 back, and 3,000 fit again (1,000 + 3,000 + 3,000 +
    // 3,000 = 10,000).
    model.open(0);
    let first = flying.remove(0).await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    // Admitted once the refund has landed (at once in process; on the runtime for Redis).
    let mut admitted = None;
    for _ in 0..200 {
        model.open(3);
        let request = reporting(&key, Some(3_000), 3);
        let response = service.clone().oneshot(request).await.unwrap();
        if response.status() == StatusCode::OK {
            admitted = Some(response);
            break;
        }
        model.gates[3].forget_permits(1);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let admitted = admitted.expect("the refund was credited");
    let header = state(&admitted).unwrap();
    let remaining: u32 = header
        .split(";r=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|r| r.parse().ok())
        .unwrap();
    // Units, not requests: 10,000 less 10,000 in use (on Redis's own clock a few units
    // have come back meanwhile, one per 6 ms).
    let slack = if clock.is_some() { 0 } else { 50 };
    assert!(remaining <= slack, "{header}");
    model.open(1);
    model.open(2);
    for flight in flying {
        assert_eq!(flight.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    // A window later the quota is whole, and refunds of what the window restored add
    // nothing: the next 3,000 leave 7,000.
    let Some(clock) = clock else { return };
    clock.advance(Duration::from_secs(60));
    model.open(4);
    let next = service
        .clone()
        .oneshot(reporting(&key, Some(3_000), 4))
        .await
        .unwrap();
    assert_eq!(state(&next).as_deref(), Some(r#""tokens";r=7000;t=18"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_then_settle_in_process_on_a_fake_clock() {
    let clock = tower_api_key::clock::ManualClock::default();
    let backend = GovernorBackend::on_clock(clock.clone());
    reserve_then_settle(backend, Some(clock)).await;
}

#[tokio::test]
async fn a_fixed_cost_counts_units_and_the_headers_say_so() {
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let key = issued.key().expose_secret();
    let clock = tower_api_key::clock::ManualClock::default();
    let exports = RateClass::per_key(
        ClassName::from_static("exports"),
        Quota::per_minute(NonZeroU32::new(100).unwrap()),
    )
    .costs(NonZeroU32::new(30).unwrap());
    let probe = crate::common::Probe::new();
    let service = AuthLayer::new(store).layer(
        RateLimits::backed_by(GovernorBackend::on_clock(clock.clone()))
            .layer(exports)
            .layer(probe.service()),
    );
    for remaining in [70, 40, 10] {
        let answer = send(service.clone(), bearer(key)).await;
        assert_eq!(answer.status, StatusCode::OK);
        let expected = format!(
            r#""exports";r={remaining};t={}"#,
            (100 - remaining) * 60 / 100
        );
        assert_eq!(answer.header("ratelimit"), Some(expected.as_str()));
    }
    let refused = send(service.clone(), bearer(key)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.header("retry-after"),
        Some("12"),
        "20 more units: 12 s"
    );
    assert_eq!(
        probe.calls(),
        3,
        "the refused one never reached the handler"
    );
    clock.advance(Duration::from_secs(12));
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_then_settle_on_redis_and_the_cluster() {
    use crate::common::{unique, AnyRedis};
    use tower_api_key::rate_limit::RedisRateLimiter;

    for redis in AnyRedis::every() {
        let backend = RedisRateLimiter::new(redis.connection().await).with_namespace(&unique("w"));
        reserve_then_settle(backend, None).await;
    }
}

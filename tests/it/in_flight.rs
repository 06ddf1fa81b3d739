//! Issue 40.2: concurrent requests per key. N+1 slow requests at once: exactly N served,
//! the other 429 with `Retry-After: 1`; a slot is held until the response body ends and
//! given back when a request is dropped or its handler panics; on Redis and the Redis
//! Cluster two instances share N, a crashed instance's slots come back within the lease,
//! and a long response keeps its slot by renewing the lease.

use crate::common::{bearer, issue, send, store_with_clock};

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::{
    ClassName, InFlightBackend, InFlightLimit, InFlightLimits, MemoryInFlight,
};
use tower_api_key::{AuthLayer, ForgScope};

fn two_reviews() -> InFlightLimit {
    InFlightLimit::per_key(
        ClassName::from_static("reviews"),
        NonZeroU32::new(2).unwrap(),
    )
}

/// A handler that waits for a permit (or panics on `x-panic`), counting entries.
#[derive(Clone)]
struct Slow {
    entered: Arc<AtomicUsize>,
    permits: Arc<Semaphore>,
}

impl Slow {
    fn new() -> Self {
        Self {
            entered: Arc::default(),
            permits: Arc::new(Semaphore::new(0)),
        }
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<String>,
        Response = Response<Full<Bytes>>,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
           + Send
           + 'static {
        let slow = self.clone();
        tower::service_fn(move |request: Request<String>| {
            let slow = slow.clone();
            async move {
                slow.entered.fetch_add(1, Ordering::SeqCst);
                assert!(
                    !request.headers().contains_key("x-panic"),
                    "the handler panics"
                );
                slow.permits.acquire().await.unwrap().forget();
                Ok(Response::new(Full::new(Bytes::from_static(b"review"))))
            }
        })
    }

    async fn until_entered(&self, n: usize) {
        let entered = || self.entered.load(Ordering::SeqCst) >= n;
        crate::common::until("requests in the handler", entered).await;
    }
}

/// N+1 at once on `limits`: N served, one 429 `Retry-After: 1`; the slots come back.
async fn n_plus_one<B: InFlightBackend>(limits: InFlightLimits<B>) {
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let key = issued.key().expose_secret().to_owned();
    let slow = Slow::new();
    let service = AuthLayer::new(store).layer(limits.layer(two_reviews()).layer(slow.service()));
    let flying: Vec<_> = (0..2)
        .map(|_| tokio::spawn(service.clone().oneshot(bearer(&key))))
        .collect();
    slow.until_entered(2).await;
    let third = send(service.clone(), bearer(&key)).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.header("retry-after"), Some("1"));
    assert_eq!(third.json()["code"], "rate_limited");
    assert_eq!(
        slow.entered.load(Ordering::SeqCst),
        2,
        "the third never reached the handler"
    );
    slow.permits.add_permits(2);
    for flight in flying {
        let response = flight.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap(); // the body ends: the slot is back
    }
    // Given back (on Redis by a ZREM on the runtime: a moment).
    slow.permits.add_permits(1);
    let mut again = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..100 {
        again = send(service.clone(), bearer(&key)).await.status;
        if again == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(again, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_plus_one_at_once_in_process() {
    let limits = InFlightLimits::new();
    let backend = limits.backend().clone();
    n_plus_one(limits).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(backend.in_flight(), 0, "nothing left held");
    assert_eq!(backend.holders(), 0, "no entry without a request in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_is_held_until_the_body_ends_and_freed_by_a_drop_or_a_panic() {
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let key = issued.key().expose_secret().to_owned();
    let backend = MemoryInFlight::new();
    let one = InFlightLimit::per_key(ClassName::from_static("stream"), NonZeroU32::MIN);
    let limits = InFlightLimits::backed_by(backend.clone());

    // A streaming response: the slot is held while the body streams.
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(1);
    let receiver = Arc::new(std::sync::Mutex::new(Some(receiver)));
    let streaming = tower::service_fn(move |_: Request<String>| {
        let receiver = receiver.lock().unwrap().take();
        async move {
            let stream = tokio_stream_from(receiver.expect("one stream"));
            Ok::<_, std::convert::Infallible>(Response::new(StreamBody::new(stream)))
        }
    });
    let service =
        AuthLayer::new(Arc::clone(&store)).layer(limits.layer(one.clone()).layer(streaming));
    let response = service.clone().oneshot(bearer(&key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(backend.in_flight(), 1, "held while the body streams");
    let refused = service.clone().oneshot(bearer(&key)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    sender
        .send(Ok(http_body::Frame::data(Bytes::from_static(b"part"))))
        .await
        .unwrap();
    drop(sender);
    response.into_body().collect().await.unwrap();
    assert_eq!(backend.in_flight(), 0, "given back at the end of the body");

    // A request dropped mid-way (the client gone): given back.
    let slow = Slow::new();
    let service =
        AuthLayer::new(Arc::clone(&store)).layer(limits.layer(one.clone()).layer(slow.service()));
    let flight = tokio::spawn(service.clone().oneshot(bearer(&key)));
    slow.until_entered(1).await;
    assert_eq!(backend.in_flight(), 1);
    flight.abort();
    let _ = flight.await;
    assert_eq!(
        backend.in_flight(),
        0,
        "given back when the request is dropped"
    );

    // A handler that panics: given back as the panic unwinds.
    let mut panicking = bearer(&key);
    panicking
        .headers_mut()
        .insert("x-panic", "1".parse().unwrap());
    let flight = tokio::spawn(service.clone().oneshot(panicking));
    assert!(flight.await.unwrap_err().is_panic());
    assert_eq!(backend.in_flight(), 0, "given back by the unwinding");
    assert_eq!(backend.holders(), 0);
}

/// A stream of the frames `receiver` gets.
fn tokio_stream_from<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[cfg(feature = "redis")]
mod on_redis {
    use super::*;
    use crate::common::{unique, AnyRedis};
    use tower_api_key::rate_limit::LimitKey;
    use tower_api_key::rate_limit::RedisInFlight;
    use tower_api_key::store::KeyId;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn n_plus_one_at_once() {
        for redis in AnyRedis::every() {
            let backend =
                RedisInFlight::new(redis.connection().await).with_namespace(&unique("if"));
            n_plus_one(InFlightLimits::backed_by(backend)).await;
        }
    }

    /// A lease of `Duration::MAX` is a day: slots are taken and renewed, nothing panics.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_longest_lease_is_a_day() {
        for redis in AnyRedis::every() {
            let backend = RedisInFlight::new(redis.connection().await)
                .with_namespace(&unique("if"))
                .lease(Duration::MAX);
            let id = KeyId::new("key_000000000000000000000002").unwrap();
            let key = LimitKey::ApiKey(&id);
            let slot = backend.acquire(&two_reviews(), key).await.unwrap();
            assert!(slot.is_some(), "taken under a lease the server accepts");
            drop(slot);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_share_n_and_a_crashed_ones_slots_come_back_within_the_lease() {
        for redis in AnyRedis::every() {
            let namespace = unique("if");
            let lease = Duration::from_secs(1);
            let instance = |connection| {
                RedisInFlight::new(connection)
                    .with_namespace(&namespace)
                    .lease(lease)
            };
            let a = instance(redis.connection().await);
            let b = instance(redis.connection().await);
            let id = KeyId::new("key_000000000000000000000001").unwrap();
            let limit = two_reviews();
            let key = LimitKey::ApiKey(&id);
            let first = a.acquire(&limit, key).await.unwrap().expect("a takes one");
            let second = b
                .acquire(&limit, key)
                .await
                .unwrap()
                .expect("b takes the other");
            assert!(
                a.acquire(&limit, key).await.unwrap().is_none(),
                "two between them"
            );
            assert!(b.acquire(&limit, key).await.unwrap().is_none());

            // Long responses: held past three leases, renewed all along.
            tokio::time::sleep(lease * 3).await;
            assert!(b.acquire(&limit, key).await.unwrap().is_none(), "renewed");
            drop((first, second));

            // An instance that crashes holding a slot (its runtime, and so its renewal,
            // gone; the slot never given back).
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        let crashing = instance(redis.connection().await);
                        // The slots dropped above are given back in the background: wait
                        // for one (CI once found both still held here).
                        let mut slot = None;
                        for _ in 0..50 {
                            slot = crashing.acquire(&limit, key).await.unwrap();
                            if slot.is_some() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        // The crash: never given back (the process is gone, not unwound).
                        #[allow(clippy::mem_forget)]
                        std::mem::forget(slot.expect("a free slot"));
                    });
                });
            });
            let mut held = None;
            for _ in 0..50 {
                held = b.acquire(&limit, key).await.unwrap();
                if held.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(held.is_some(), "the other slot is free");
            assert!(
                b.acquire(&limit, key).await.unwrap().is_none(),
                "the crashed one's lease runs"
            );
            tokio::time::sleep(lease * 2).await;
            assert!(
                b.acquire(&limit, key).await.unwrap().is_some(),
                "the crashed instance's slot came back once its lease ended"
            );
        }
    }
}

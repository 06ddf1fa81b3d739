//! The full stack (auth + scope + rate limit) driven from 1 and from 2 worker threads of a
//! multi-thread Tokio runtime, each thread with its own key. Reports time per batch of
//! requests; throughput ratio = time(1 thread) / time(2 threads) for the same total.

use futures_util::FutureExt;
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_api_key::rate_limit::ClassName;
use tower_api_key::store::ManageKeys;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{header::AUTHORIZATION, HeaderValue, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::Quota;
use tower_api_key::rate_limit::{RateClass, RateLimits};
use tower_api_key::{require, AuthLayer, ForgScope, MemoryKeyStore, NewKey};

fn stack() -> (
    impl Service<Request<()>, Response = Response<impl Send>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
    Vec<HeaderValue>,
) {
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let keys = (0..2)
        .map(|i| {
            let issued = store
                .issue(
                    NewKey::new(format!("org{i}"), "bench", &KeyFamily::FORG_LIVE)
                        .scopes(ForgScope::ReadSessions),
                )
                .now_or_never()
                .expect("the memory store answers at once")
                .expect("issue");
            HeaderValue::try_from(format!("Bearer {}", issued.key().expose_secret()))
                .expect("header")
        })
        .collect();
    let class = RateClass::per_key(
        ClassName::from_static("bench"),
        Quota::new(NonZeroU32::MAX, NonZeroU32::MIN),
    );
    let inner = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    let service = AuthLayer::new(store).layer(
        RateLimits::new()
            .layer(class)
            .layer(require(ForgScope::ReadSessions).layer(inner)),
    );
    (service, keys)
}

fn drive(threads: usize, total: u64) -> Duration {
    let (service, keys) = stack();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..threads)
            .map(|t| {
                let mut service = service.clone();
                let key = keys[t].clone();
                let n = total / threads as u64;
                tokio::spawn(async move {
                    for _ in 0..n {
                        let mut request = Request::new(());
                        request.headers_mut().insert(AUTHORIZATION, key.clone());
                        let response = service
                            .ready()
                            .await
                            .expect("ready")
                            .call(request)
                            .await
                            .expect("ok");
                        assert!(response.status().is_success());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        start.elapsed()
    })
}

fn contention(c: &mut Criterion) {
    let mut group = c.benchmark_group("contention");
    group.sample_size(20);
    for threads in [1usize, 2] {
        group.bench_function(format!("full_stack_{threads}_threads_100k"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| drive(threads, 100_000)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, contention);
criterion_main!(benches);

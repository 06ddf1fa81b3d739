//! `SqlKeyStore` on PostgreSQL behind the authentication layer, with and without
//! `CachedKeyStore`: time per request (criterion), requests per second from 16 concurrent
//! clients, and lookups that reach the database per request (each is one round trip: one
//! prepared statement, Bind/Execute/Sync in one flight).
//!
//! `cargo bench --bench postgres_store --features postgres` starts a private PostgreSQL as
//! the tests do (or uses `DATABASE_URL`).

#[path = "../tests/it/common/certificates.rs"]
mod certificates;
#[path = "../tests/it/common/postgres_server.rs"]
mod postgres_server;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};
use tower_api_key::key::{KeyDigest, KeyFamily, KeyHasher};
use tower_api_key::store::{CachedKeyStore, KeyPolicy, LookupResult, SqlKeyStore};
use tower_api_key::{AuthLayer, ForgScope, KeyStore, ManageKeys, NewKey};

type Sql = SqlKeyStore<ForgScope, sqlx::Postgres>;

/// Counts the lookups that reach the database.
#[derive(Clone, Debug)]
struct Counted {
    inner: Sql,
    lookups: Arc<AtomicU64>,
}

impl KeyStore for Counted {
    type Scope = ForgScope;

    async fn lookup(&self, digest: &KeyDigest) -> LookupResult<ForgScope> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        self.inner.lookup(digest).await
    }

    fn hasher(&self) -> &KeyHasher {
        self.inner.hasher()
    }

    fn policy(&self) -> &KeyPolicy {
        self.inner.policy()
    }
}

fn request(bearer: &str) -> Request<()> {
    Request::get("/v1/rules")
        .header("authorization", bearer)
        .body(())
        .expect("request")
}

async fn throughput<S>(service: S, bearer: &str, clients: usize, per_client: usize) -> f64
where
    S: Service<
            Request<()>,
            Response = Response<tower_api_key::body::ResponseBody<String>>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let service = service.clone();
            let bearer = bearer.to_owned();
            tokio::spawn(async move {
                for _ in 0..per_client {
                    let response = service
                        .clone()
                        .oneshot(request(&bearer))
                        .await
                        .expect("infallible");
                    assert_eq!(response.status(), StatusCode::OK);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
    (clients * per_client) as f64 / started.elapsed().as_secs_f64()
}

fn postgres(c: &mut Criterion) {
    let Some(server) = postgres_server::Postgres::shared() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (store, bearer) = runtime.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect(&server.url)
            .await
            .expect("pool");
        let store = Sql::new(pool)
            .with_table(&format!("bench_{}", std::process::id()))
            .expect("table");
        store.migrate().await.expect("migrate");
        let issued = store
            .issue(NewKey::new("org", "bench", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
            .await
            .expect("issue");
        (store, format!("Bearer {}", issued.key().expose_secret()))
    });
    let inner = tower::service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let lookups = Arc::new(AtomicU64::new(0));
    let counted = Arc::new(Counted {
        inner: store,
        lookups: Arc::clone(&lookups),
    });
    let uncached = AuthLayer::new(Arc::clone(&counted)).layer(inner);
    let cached = AuthLayer::new(Arc::new(CachedKeyStore::new(Arc::clone(&counted)))).layer(inner);

    measure(
        c,
        &runtime,
        "postgres/auth_uncached",
        uncached,
        &bearer,
        &lookups,
    );
    measure(
        c,
        &runtime,
        "postgres/auth_cached",
        cached,
        &bearer,
        &lookups,
    );
}

fn measure<S>(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    service: S,
    bearer: &str,
    lookups: &AtomicU64,
) where
    S: Service<
            Request<()>,
            Response = Response<tower_api_key::body::ResponseBody<String>>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    // Warm up (the cache fills, statements are prepared), then count.
    runtime
        .block_on(service.clone().oneshot(request(bearer)))
        .expect("warm-up");
    let before = lookups.load(Ordering::Relaxed);
    let rps = runtime.block_on(throughput(service.clone(), bearer, 16, 500));
    let per_request = (lookups.load(Ordering::Relaxed) - before) as f64 / 8000.0;
    eprintln!("{name}: {rps:.0} requests/s from 16 clients; {per_request:.3} database round trips per request");
    c.bench_function(name, |b| {
        b.iter(|| {
            let response = runtime
                .block_on(service.clone().oneshot(request(bearer)))
                .expect("infallible");
            black_box(response.status())
        })
    });
}

criterion_group!(benches, postgres);
criterion_main!(benches);

//! Per-request cost inside an axum `Router`, the way applications mount the stack: each
//! `layer` / `route_layer` call adds a level of axum's boxed routes (a boxed service clone,
//! a boxed response body), so the same three layers cost more mounted one call each than
//! composed by one `ServiceBuilder` in a single call. Same request for every variant.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use tower_api_key::rate_limit::ClassName;
use tower_api_key::store::ManageKeys;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use http::{header::AUTHORIZATION, HeaderValue, Request, StatusCode};
use tower::{Service, ServiceBuilder};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::Quota;
use tower_api_key::rate_limit::{RateClass, RateLimits};
use tower_api_key::{require, AuthLayer, ForgScope, MemoryKeyStore, NewKey};

fn routes() -> Router {
    Router::new().route("/v1/sessions", get(|| async { "[]" }))
}

/// Never limits within a benchmark: the quota is far above what a run sends.
fn roomy() -> RateClass {
    RateClass::per_key(
        ClassName::from_static("bench"),
        Quota::new(NonZeroU32::MAX, NonZeroU32::MIN),
    )
}

fn run(router: &mut Router, bearer: &HeaderValue) -> StatusCode {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = http::Uri::from_static("/v1/sessions");
    request.headers_mut().insert(AUTHORIZATION, bearer.clone());
    router
        .call(request)
        .now_or_never()
        .expect("completes at once")
        .expect("infallible")
        .status()
}

fn mounted(c: &mut Criterion) {
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = store
        .issue(NewKey::new("bench", "k", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadSessions))
        .now_or_never()
        .expect("the memory store answers at once")
        .expect("issue");
    let bearer =
        HeaderValue::try_from(format!("Bearer {}", issued.key().expose_secret())).expect("header");

    let variants = [
        ("axum/bare", routes()),
        (
            // The quickstart's shape: one axum call per layer.
            "axum/stack_three_calls",
            routes()
                .route_layer(require(ForgScope::ReadSessions))
                .route_layer(RateLimits::new().layer(roomy()))
                .layer(AuthLayer::new(Arc::clone(&store))),
        ),
        (
            "axum/stack_one_call",
            routes().route_layer(
                ServiceBuilder::new()
                    .layer(AuthLayer::new(Arc::clone(&store)))
                    .layer(RateLimits::new().layer(roomy()))
                    .layer(require(ForgScope::ReadSessions)),
            ),
        ),
    ];
    for (name, mut router) in variants {
        assert_eq!(run(&mut router, &bearer), StatusCode::OK, "{name}");
        c.bench_function(name, |b| b.iter(|| black_box(run(&mut router, &bearer))));
    }
}

criterion_group!(benches, mounted);
criterion_main!(benches);

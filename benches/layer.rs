//! Per-request cost in process: tower `ready` + `call` on a trivial inner service, the same
//! request construction for every variant (inside the timed loop, so `bare` includes it). Overheads are
//! the variant minus `bare`. Peers measured in the same run: tower-http's
//! `ValidateRequestHeaderLayer` with a custom bearer check, and tower_governor keyed by a
//! header.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tower_api_key::clock::ManualClock;
use tower_api_key::rate_limit::{ClassName, GovernorBackend};
use tower_api_key::store::ManageKeys;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use http::{header::AUTHORIZATION, HeaderValue, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use tower::{Layer, Service, ServiceExt};
use tower_api_key::key::Environment;
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::Quota;
use tower_api_key::rate_limit::{RateClass, RateLimits};
use tower_api_key::usage::{Budgets, SpendCaps};
use tower_api_key::{require, AuthLayer, ForgScope, MemoryKeyStore, NewKey};

#[path = "floors.rs"]
mod floors;
#[path = "peers.rs"]
mod peers;
use floors::request;

const LIVE: &str = "forg_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d";

// tower_governor needs `Response<axum::body::Body>: From<GovernorError>`, so every variant
// answers with axum's body.
type Body = axum::body::Body;
use peers::{bare, roomy};

/// One request through `service`, ready at once (every variant here completes on its
/// first poll).
fn run<S, B>(service: &mut S, request: Request<()>) -> StatusCode
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let service = service
        .ready()
        .now_or_never()
        .expect("ready")
        .expect("ready ok");
    let response = service
        .call(request)
        .now_or_never()
        .expect("completes at once")
        .expect("ok");
    response.status()
}

/// The documented quota (100 a minute) on a manual clock: each request moves the clock by
/// 0.6 s, one request period, so every request is allowed with the same `remaining`, as
/// `benches/per_request.rs` does.
fn documented() -> (
    RateLimits<GovernorBackend<ManualClock>>,
    RateClass,
    impl Fn() + Clone,
) {
    let clock = ManualClock::default();
    let limits = RateLimits::backed_by(GovernorBackend::on_clock(clock.clone())).headers(true);
    let class = RateClass::per_key(
        ClassName::from_static("bench"),
        Quota::per_minute(NonZeroU32::new(100).expect("not zero")),
    );
    (limits, class, move || {
        clock.advance(Duration::from_millis(600))
    })
}

fn bench<S, B>(c: &mut Criterion, name: &str, service: S, bearer: &HeaderValue, expect: StatusCode)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    bench_ticking(c, name, service, bearer, expect, || {});
}

/// [`bench`], with `tick` run before each request (a manual clock's step).
fn bench_ticking<S, B>(
    c: &mut Criterion,
    name: &str,
    mut service: S,
    bearer: &HeaderValue,
    expect: StatusCode,
    tick: impl Fn(),
) where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    assert_eq!(run(&mut service, request(bearer)), expect, "{name}");
    c.bench_function(name, |b| {
        b.iter(|| {
            tick();
            black_box(run(&mut service, request(bearer)))
        })
    });
}

// tower-http's custom validator returns the rejection response by value.
#[allow(clippy::result_large_err)]
fn layers(c: &mut Criterion) {
    c.bench_function("sha256/forg_live", |b| {
        b.iter(|| Sha256::digest(black_box(LIVE.as_bytes())))
    });

    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = store
        .issue(NewKey::new("org", "bench", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadSessions))
        .now_or_never()
        .expect("the memory store answers at once")
        .expect("issue");
    let bearer =
        HeaderValue::try_from(format!("Bearer {}", issued.key().expose_secret())).expect("header");
    let malformed = HeaderValue::from_static("Bearer forg_live_not-a-key");
    let auth = AuthLayer::new(Arc::clone(&store));
    let limits = RateLimits::new().headers(true);
    let class = roomy();

    bench(c, "layer/bare", bare(), &bearer, StatusCode::OK);
    bench(c, "layer/auth", auth.layer(bare()), &bearer, StatusCode::OK);
    bench(
        c,
        "layer/auth_malformed",
        auth.layer(bare()),
        &malformed,
        StatusCode::UNAUTHORIZED,
    );
    bench(
        c,
        "layer/auth_scope",
        auth.layer(require(ForgScope::ReadSessions).layer(bare())),
        &bearer,
        StatusCode::OK,
    );
    let (documented_limits, documented_class, tick) = documented();
    bench_ticking(
        c,
        "layer/auth_scope_rate_limit",
        auth.layer(
            documented_limits
                .layer(documented_class.clone())
                .layer(require(ForgScope::ReadSessions).layer(bare())),
        ),
        &bearer,
        StatusCode::OK,
        tick.clone(),
    );
    bench(
        c,
        "layer/auth_scope_rate_limit_large_quota",
        auth.layer(
            limits
                .layer(class.clone())
                .layer(require(ForgScope::ReadSessions).layer(bare())),
        ),
        &bearer,
        StatusCode::OK,
    );

    // The same with a metrics recorder installed (Prometheus, as the quickstart): what the
    // `metrics` feature adds per request once an application records (without a recorder
    // the facade's calls find none and return).
    #[cfg(feature = "metrics")]
    {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let _recording = metrics::set_default_local_recorder(&recorder);
        // Fresh layers: handles bind to the recorder current at their first request.
        let auth = AuthLayer::new(Arc::clone(&store));
        bench_ticking(
            c,
            "layer/auth_scope_rate_limit_recorded",
            auth.layer(
                documented_limits
                    .layer(documented_class)
                    .layer(require(ForgScope::ReadSessions).layer(bare())),
            ),
            &bearer,
            StatusCode::OK,
            tick,
        );
        let rendered = recorder.handle().render();
        assert!(
            rendered.contains("tower_api_key_requests{credential=\"api_key\",outcome=\"ok\"}"),
            "{rendered}"
        );
    }

    // The rate-limit layer alone: the identity is already in the request, as the auth layer
    // would have left it (same construction for the bare baseline of this pair).
    let with_identity = floors::with_identity(&auth, request(&bearer));
    let mut rate_limited = limits.layer(class.clone()).layer(bare());
    let mut rate_limited_quiet = RateLimits::new().headers(false).layer(class).layer(bare());
    let mut baseline = bare();
    c.bench_function("layer/bare_with_identity", |b| {
        b.iter(|| black_box(run(&mut baseline, with_identity(request(&bearer)))))
    });
    c.bench_function("layer/rate_limit", |b| {
        b.iter(|| black_box(run(&mut rate_limited, with_identity(request(&bearer)))))
    });
    c.bench_function("layer/rate_limit_no_headers", |b| {
        b.iter(|| {
            black_box(run(
                &mut rate_limited_quiet,
                with_identity(request(&bearer)),
            ))
        })
    });

    // Browser sessions through the same layer: a GET with the cookie, and a POST that
    // passes the CSRF check (same-site, token = HMAC of the session digest).
    let floors::Session {
        sessions,
        cookie,
        csrf,
    } = floors::session();
    let with_session = AuthLayer::new(Arc::clone(&store)).sessions(sessions);
    let session_get = || {
        let mut request = Request::new(());
        *request.uri_mut() = http::Uri::from_static("/v1/sessions");
        request
            .headers_mut()
            .insert(http::header::COOKIE, cookie.clone());
        request
    };
    let session_post = || {
        let mut request = session_get();
        *request.method_mut() = http::Method::POST;
        request.headers_mut().insert("x-csrf-token", csrf.clone());
        request
            .headers_mut()
            .insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        request
    };
    for (name, make) in [
        (
            "layer/auth_session",
            &session_get as &dyn Fn() -> Request<()>,
        ),
        ("layer/auth_session_csrf", &session_post),
    ] {
        let mut service = with_session.layer(bare());
        assert_eq!(run(&mut service, make()), StatusCode::OK, "{name}");
        c.bench_function(name, |b| b.iter(|| black_box(run(&mut service, make()))));
    }

    // The spend-cap layer alone (in-process backend, headers on), over the same baseline:
    // a cap that is never reached, one unit per request.
    let caps = SpendCaps::new(Budgets::new().default_cap(Environment::Live, u64::MAX));
    let mut spend_capped = caps.layer(1).layer(bare());
    c.bench_function("layer/spend_cap", |b| {
        b.iter(|| black_box(run(&mut spend_capped, with_identity(request(&bearer)))))
    });
    // The decision alone: no `Spend-Cap` header (and no `Budget` extension, not asked for).
    let mut spend_capped_quiet = caps.clone().headers(false).layer(1).layer(bare());
    c.bench_function("layer/spend_cap_no_headers", |b| {
        b.iter(|| {
            black_box(run(
                &mut spend_capped_quiet,
                with_identity(request(&bearer)),
            ))
        })
    });

    // Peers.
    let expected = format!("Bearer {}", issued.key().expose_secret());
    let validate = tower_http::validate_request::ValidateRequestHeaderLayer::custom(
        move |request: &mut Request<()>| -> Result<(), Response<Body>> {
            match request.headers().get(AUTHORIZATION) {
                Some(value) if value.as_bytes() == expected.as_bytes() => Ok(()),
                _ => Err(Response::builder()
                    .status(401)
                    .body(Body::empty())
                    .unwrap_or_default()),
            }
        },
    );
    bench(
        c,
        "peer/tower_http_validate_bearer",
        validate.layer(bare()),
        &bearer,
        StatusCode::OK,
    );

    let governor = peers::tower_governor();
    bench(
        c,
        "peer/tower_governor_header_key",
        governor.layer(bare()),
        &bearer,
        StatusCode::OK,
    );
    // The same peer on the rate-limit layer's own input (a request that carries the
    // principal, whose extensions are cloned and dropped per iteration): the issue's ratio
    // compares totals, and that input costs ~130 ns the peer's request does not.
    let mut peer = governor.layer(bare());
    c.bench_function("peer_same_input/tower_governor_header_key", |b| {
        b.iter(|| black_box(run(&mut peer, with_identity(request(&bearer)))))
    });

    // With its `x-ratelimit-*` headers, the peer of our default (headers on).
    let governor = peers::tower_governor_with_headers();
    bench(
        c,
        "peer/tower_governor_header_key_with_headers",
        governor.layer(bare()),
        &bearer,
        StatusCode::OK,
    );
    let mut peer = governor.layer(bare());
    c.bench_function(
        "peer_same_input/tower_governor_header_key_with_headers",
        |b| b.iter(|| black_box(run(&mut peer, with_identity(request(&bearer))))),
    );

    floors(c, &bearer, &malformed, issued.record());
}

/// What the `http` types alone cost for the same work, written by hand with nothing else
/// (`benches/floors.rs`): the floor under `layer/auth` and `layer/auth_malformed`.
fn floors(
    c: &mut Criterion,
    bearer: &HeaderValue,
    malformed: &HeaderValue,
    record: &tower_api_key::store::KeyRecord<ForgScope>,
) {
    let mut floor_auth = floors::auth::<Body>(&Arc::new(record.clone()));
    assert_eq!(run(&mut floor_auth, request(bearer)), StatusCode::OK);
    c.bench_function("floor/auth", |b| {
        b.iter(|| black_box(run(&mut floor_auth, request(bearer))))
    });
    let mut floor_reject = floors::reject::<Body>();
    assert_eq!(
        run(&mut floor_reject, request(malformed)),
        StatusCode::UNAUTHORIZED
    );
    c.bench_function("floor/reject", |b| {
        b.iter(|| black_box(run(&mut floor_reject, request(malformed))))
    });
}

criterion_group!(benches, layers);
criterion_main!(benches);

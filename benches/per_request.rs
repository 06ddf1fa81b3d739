//! One variant of the request path, `n` times, for `valgrind --tool=callgrind`:
//! `per_request <variant> <n>`. `benches/instructions.py` runs every variant at 10,000 and
//! 30,000 requests and divides the difference by 20,000, which cancels start-up (store,
//! key, first-request set-up) and gives deterministic instructions per request. Without
//! arguments (as `cargo bench` runs it) it runs each variant 1,000 times and prints
//! nothing.
//!
//! The rate limit uses the documented quota (100 a minute) on a manual clock moved 0.6 s
//! per request, so every request is allowed, as in steady traffic at the quota (and a
//! quota of 1,000,000 an hour the same way, for a quota above 4,096).

use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::{header, HeaderValue, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use tower::{Layer, Service, ServiceExt};
use tower_api_key::clock::ManualClock;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::rate_limit::{
    ClassName, GovernorBackend, LimitKey, Quota, RateClass, RateLimitBackend, RateLimits,
};
use tower_api_key::usage::{Budgets, SpendCaps};
use tower_api_key::{require, AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

#[path = "floors.rs"]
mod floors;
#[path = "peers.rs"]
mod peers;

type Body = http_body_util::Empty<bytes::Bytes>;

/// Every variant, in the order of the table.
const VARIANTS: [&str; 20] = [
    "bare",
    "sha256",
    "floor_auth",
    "floor_reject",
    "auth",
    "auth_malformed",
    "auth_scope",
    "auth_scope_inline",
    "auth_scope_rate_limit",
    "auth_scope_rate_limit_large_quota",
    "auth_scope_rate_limit_inline",
    "auth_session",
    "auth_spend_cap",
    "auth_spend_cap_headers",
    "bare_with_identity",
    "rate_limit_no_headers",
    "peer_tower_governor",
    "bare_realistic",
    "auth_realistic",
    "auth_realistic_forg_sources",
];

/// A request as a browser or an API client sends it (13 headers), the key in
/// `Authorization`: what reading the key headers costs among others.
fn realistic(key: &HeaderValue) -> impl Fn() -> Request<()> {
    let key = key.clone();
    move || {
        let mut request = Request::new(());
        let headers = request.headers_mut();
        for (name, value) in [
            ("host", "api.example.com"),
            ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"),
            ("accept", "application/json"),
            ("accept-encoding", "gzip, deflate, br"),
            ("accept-language", "en-GB,en;q=0.9"),
            ("content-type", "application/json"),
            ("x-request-id", "7f3c2a1e-9b4d-4c8e-a2f1-0d6e5b3c9a71"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("connection", "keep-alive"),
            ("cache-control", "no-cache"),
        ] {
            headers.insert(
                http::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers.insert(header::AUTHORIZATION, key.clone());
        request
    }
}

fn bare() -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> + Clone {
    tower::service_fn(|_: Request<()>| std::future::ready(Ok(Response::new(Body::new()))))
}

/// The rate-limit layer's input: a request that carries what the authentication layer
/// leaves in it (the principal and its scopes), made anew each time.
fn with_identity(
    auth: &AuthLayer<MemoryKeyStore<ForgScope>>,
    make: impl Fn() -> Request<()>,
) -> impl Fn() -> Request<()> {
    let attach = floors::with_identity(auth, make());
    move || attach(make())
}

// Never inlined: each variant's loop is then its own function, compiled the same whatever
// the other variants are, so a row moves only with the code it measures.
#[inline(never)]
fn drive<S, B>(
    mut service: S,
    make: impl Fn() -> Request<()>,
    n: usize,
    expect: StatusCode,
    tick: &dyn Fn(),
) where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        tick();
        let ready = service.ready().now_or_never().expect("ready").expect("ok");
        let response = ready
            .call(make())
            .now_or_never()
            .expect("answers at once")
            .expect("ok");
        assert_eq!(response.status(), expect);
        black_box(response);
    }
}

/// One SHA-256 of the key per iteration; named `drive*` like [`drive`], since only those
/// functions are counted (`benches/instructions.py`).
#[inline(never)]
fn drive_sha256(key: &[u8], n: usize) {
    for _ in 0..n {
        black_box(Sha256::digest(black_box(key)));
    }
}

fn run(variant: &str, n: usize) {
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = store
        .issue(NewKey::new("org", "bench", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadSessions))
        .now_or_never()
        .expect("at once")
        .expect("issue");
    let secret = issued.key().expose_secret().to_owned();
    let key = HeaderValue::try_from(format!("Bearer {secret}")).expect("header");
    let malformed = HeaderValue::from_static("Bearer forg_live_not-a-key");
    let with = floors::request_with;
    let auth = AuthLayer::new(Arc::clone(&store));
    let nothing = || {};
    match variant {
        "bare" => drive(bare(), with(&key), n, StatusCode::OK, &nothing),
        "sha256" => drive_sha256(secret.as_bytes(), n),
        "floor_auth" => drive(
            floors::auth::<Body>(issued.record()),
            with(&key),
            n,
            StatusCode::OK,
            &nothing,
        ),
        "floor_reject" => drive(
            floors::reject::<Body>(),
            with(&malformed),
            n,
            StatusCode::UNAUTHORIZED,
            &nothing,
        ),
        "auth" => drive(auth.layer(bare()), with(&key), n, StatusCode::OK, &nothing),
        "auth_malformed" => drive(
            auth.layer(bare()),
            with(&malformed),
            n,
            StatusCode::UNAUTHORIZED,
            &nothing,
        ),
        "auth_scope" => drive(
            auth.layer(require(ForgScope::ReadSessions).layer(bare())),
            with(&key),
            n,
            StatusCode::OK,
            &nothing,
        ),
        "auth_scope_inline" => drive(
            auth.layer(tower::service_fn(|request: Request<()>| {
                let required = tower_api_key::scope::ScopeSet::from(ForgScope::ReadSessions);
                let granted = request
                    .extensions()
                    .get::<tower_api_key::scope::ScopeSet<ForgScope>>()
                    .is_some_and(|granted| granted.contains_all(required));
                assert!(black_box(granted));
                std::future::ready(Ok::<_, Infallible>(Response::new(Body::new())))
            })),
            with(&key),
            n,
            StatusCode::OK,
            &nothing,
        ),
        "auth_scope_rate_limit" | "auth_scope_rate_limit_large_quota" => {
            let clock = ManualClock::default();
            let limits = RateLimits::backed_by(GovernorBackend::on_clock(clock.clone()));
            // The documented 100 a minute, or 1,000,000 an hour; the clock moves one
            // request period per request, so every request is allowed.
            let (quota, period) = if variant == "auth_scope_rate_limit" {
                let requests = NonZeroU32::new(100).expect("not zero");
                (Quota::per_minute(requests), Duration::from_millis(600))
            } else {
                let requests = NonZeroU32::new(1_000_000).expect("not zero");
                let hour = NonZeroU32::new(3600).expect("not zero");
                (Quota::new(requests, hour), Duration::from_micros(3600))
            };
            let class = RateClass::per_key(ClassName::from_static("standard"), quota);
            let tick = move || clock.advance(period);
            drive(
                auth.layer(
                    limits
                        .layer(class)
                        .layer(require(ForgScope::ReadSessions).layer(bare())),
                ),
                with(&key),
                n,
                StatusCode::OK,
                &tick,
            )
        }
        // The scope check, the governor check and the two headers written inside the handler
        // behind the authentication layer: what one combined future for the known stack
        // could cost at best (issue 41 §3). The headers are cloned from values made once,
        // as the layer's precomputed ones.
        "auth_scope_rate_limit_inline" => {
            let clock = ManualClock::default();
            let backend = GovernorBackend::on_clock(clock.clone());
            let quota = Quota::per_minute(NonZeroU32::new(100).expect("not zero"));
            let class = RateClass::per_key(ClassName::from_static("standard"), quota);
            let handle = backend.register(&class);
            let policy =
                HeaderValue::try_from(String::from("\"standard\";q=100;w=60")).expect("value");
            let state =
                HeaderValue::try_from(String::from("\"standard\";r=99;t=1")).expect("value");
            let tick = move || clock.advance(Duration::from_millis(600));
            let required = tower_api_key::scope::ScopeSet::from(ForgScope::ReadSessions);
            let (policy_name, state_name) = (
                header::HeaderName::from_static("ratelimit-policy"),
                header::HeaderName::from_static("ratelimit"),
            );
            let handler = tower::service_fn(move |request: Request<()>| {
                let extensions = request.extensions();
                let principal = extensions
                    .get::<tower_api_key::Principal>()
                    .expect("principal");
                let granted = extensions
                    .get::<tower_api_key::scope::ScopeSet<ForgScope>>()
                    .is_some_and(|granted| granted.contains_all(required));
                assert!(black_box(granted));
                let key = LimitKey::ApiKey(principal.lineage());
                let decision = backend
                    .check_now(&handle, key, quota)
                    .expect("at once")
                    .expect("ok");
                assert!(decision.is_allowed());
                let mut response = Response::new(Body::new());
                response
                    .headers_mut()
                    .insert(policy_name.clone(), policy.clone());
                response
                    .headers_mut()
                    .insert(state_name.clone(), state.clone());
                std::future::ready(Ok::<_, Infallible>(response))
            });
            drive(auth.layer(handler), with(&key), n, StatusCode::OK, &tick)
        }
        "auth_session" => {
            let floors::Session {
                sessions, cookie, ..
            } = floors::session();
            // The same URI as every other variant's request (and `bare`'s): without it this
            // row was 341 instructions cheaper than the others for building its request.
            let make = move || {
                let mut request = Request::new(());
                *request.uri_mut() = http::Uri::from_static("/v1/sessions");
                request.headers_mut().insert(header::COOKIE, cookie.clone());
                request
            };
            drive(
                AuthLayer::new(Arc::clone(&store))
                    .sessions(sessions)
                    .layer(bare()),
                make,
                n,
                StatusCode::OK,
                &nothing,
            )
        }
        "auth_spend_cap" | "auth_spend_cap_headers" => {
            let caps = SpendCaps::new(Budgets::new().default_cap(Environment::Live, u64::MAX))
                .headers(variant == "auth_spend_cap_headers");
            drive(
                auth.layer(caps.layer(1).layer(bare())),
                with(&key),
                n,
                StatusCode::OK,
                &nothing,
            )
        }
        // The rate-limit layer alone against tower_governor, both on the same input and
        // with their own real clocks and a quota no run reaches (`benches/layer.rs`'s pair).
        "bare_with_identity" => drive(
            peers::bare(),
            with_identity(&auth, with(&key)),
            n,
            StatusCode::OK,
            &nothing,
        ),
        "rate_limit_no_headers" => drive(
            RateLimits::new()
                .headers(false)
                .layer(peers::roomy())
                .layer(peers::bare()),
            with_identity(&auth, with(&key)),
            n,
            StatusCode::OK,
            &nothing,
        ),
        "peer_tower_governor" => {
            let governor = peers::tower_governor();
            drive(
                governor.layer(peers::bare()),
                with_identity(&auth, with(&key)),
                n,
                StatusCode::OK,
                &nothing,
            )
        }
        "bare_realistic" => drive(bare(), realistic(&key), n, StatusCode::OK, &nothing),
        "auth_realistic" => drive(
            auth.layer(bare()),
            realistic(&key),
            n,
            StatusCode::OK,
            &nothing,
        ),
        "auth_realistic_forg_sources" => drive(
            AuthLayer::new(Arc::clone(&store))
                .sources(tower_api_key::forg::credential_sources())
                .layer(bare()),
            realistic(&key),
            n,
            StatusCode::OK,
            &nothing,
        ),
        other => panic!("unknown variant {other}; one of {VARIANTS:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [variant, n] if VARIANTS.contains(&variant.as_str()) => {
            run(variant, n.parse().expect("a count"));
        }
        // `cargo bench` passes `--bench`: run each briefly.
        _ => {
            for variant in VARIANTS {
                run(variant, 1_000);
            }
        }
    }
}

//! Heap allocations per request, counted by a counting global allocator (issue 26): a
//! deterministic measure, so a fair assertion where timings never are. Its own binary,
//! since the allocator is global. Each figure is the allocations made while one request
//! goes through the stack and its response is dropped, in steady state (the key's
//! rate-limit state and the layers' metric handles exist), minus the bare service's.
//!
//! `cargo test --test allocations -- --nocapture` prints the table `benches/README.md`
//! holds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;

use futures_util::FutureExt;
use http::{header, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::rate_limit::{ClassName, Quota, RateClass, RateLimits};
use tower_api_key::usage::{Budgets, SpendCaps};
use tower_api_key::{require, AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

/// Counts allocations (and reallocations) of the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread's locals may be gone while it exits.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded to `System` unchanged; only a thread-local counter is
// added, which does not allocate (const-initialised `Cell`).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "../benches/floors.rs"]
mod floors;

type Body = http_body_util::Empty<bytes::Bytes>;

fn bare() -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> + Clone {
    tower::service_fn(|_: Request<()>| std::future::ready(Ok(Response::new(Body::new()))))
}

/// The allocations of one request through `service` (made beforehand by `make`, outside
/// the count), its response dropped; the status checked.
fn allocations<S, B>(service: &mut S, make: &dyn Fn() -> Request<()>, expect: StatusCode) -> u64
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    // Twice first: the key's state and the layers' lazily built parts exist after it.
    for _ in 0..2 {
        let status = once(service, make());
        assert_eq!(status, expect);
    }
    let request = make();
    let before = ALLOCATIONS.with(Cell::get);
    let status = once(service, request);
    let after = ALLOCATIONS.with(Cell::get);
    assert_eq!(status, expect);
    after - before
}

fn once<S, B>(service: &mut S, request: Request<()>) -> StatusCode
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let ready = service
        .ready()
        .now_or_never()
        .expect("ready at once")
        .expect("ready");
    let response = ready
        .call(request)
        .now_or_never()
        .expect("answers at once")
        .expect("ok");
    response.status()
}

/// The documented quotas: 100 a minute on standard routes.
fn standard() -> RateClass {
    RateClass::per_key(
        ClassName::from_static("standard"),
        Quota::per_minute(NonZeroU32::new(100).unwrap()),
    )
}

struct Row {
    path: &'static str,
    over_bare: u64,
    /// The issue's target, reported.
    target: Option<u64>,
    /// What it is today, asserted: more is a regression, fewer means the table is stale.
    now: u64,
}

#[test]
fn allocations_per_request() {
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = store
        .issue(NewKey::new("org", "bench", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadSessions))
        .now_or_never()
        .unwrap()
        .unwrap();
    let key = HeaderValue::try_from(format!("Bearer {}", issued.key().expose_secret())).unwrap();
    let malformed = HeaderValue::from_static("Bearer forg_live_not-a-key");
    let unknown = HeaderValue::from_static("Bearer forg_live_0123456789abcdef0123456789abcdef");
    let auth = AuthLayer::new(Arc::clone(&store));

    let bare_count = allocations(&mut bare(), &floors::request_with(&key), StatusCode::OK);
    let valid_key = allocations(
        &mut auth.layer(bare()),
        &floors::request_with(&key),
        StatusCode::OK,
    ) - bare_count;
    let mut rows = Vec::new();
    let mut row = |path, count: u64, target, now| {
        rows.push(Row {
            path,
            over_bare: count - bare_count,
            target,
            now,
        })
    };
    // The floors: the same work by hand with `http` types only.
    row(
        "`floor/auth` (by hand: one lookup, SHA-256, two extensions)",
        allocations(
            &mut floors::auth::<Body>(issued.record()),
            &floors::request_with(&key),
            StatusCode::OK,
        ),
        None,
        4,
    );
    let mut floor_reject = floors::reject::<Body>();
    row(
        "`floor/reject` (by hand: two headers, the rejection kept)",
        allocations(
            &mut floor_reject,
            &floors::request_with(&malformed),
            StatusCode::UNAUTHORIZED,
        ),
        None,
        5,
    );
    row(
        "auth, valid key",
        allocations(
            &mut auth.layer(bare()),
            &floors::request_with(&key),
            StatusCode::OK,
        ),
        Some(4),
        4,
    );
    row(
        "auth, malformed key refused",
        allocations(
            &mut auth.layer(bare()),
            &floors::request_with(&malformed),
            StatusCode::UNAUTHORIZED,
        ),
        Some(4),
        5,
    );
    row(
        "auth, unknown key refused",
        allocations(
            &mut auth.layer(bare()),
            &floors::request_with(&unknown),
            StatusCode::UNAUTHORIZED,
        ),
        Some(4),
        5,
    );
    row(
        "auth + scope",
        allocations(
            &mut auth.layer(require(ForgScope::ReadSessions).layer(bare())),
            &floors::request_with(&key),
            StatusCode::OK,
        ),
        Some(4),
        4,
    );
    let limits = RateLimits::new().headers(true);
    row(
        "auth + scope + rate limit (100/min), headers on",
        allocations(
            &mut auth.layer(
                limits
                    .layer(standard())
                    .layer(require(ForgScope::ReadSessions).layer(bare())),
            ),
            &floors::request_with(&key),
            StatusCode::OK,
        ),
        Some(5),
        6,
    );
    // A quota far above 4,096: its first 4,096 requests used have their values made at
    // start too (before issue 26, every value of such a quota was written per request: 7).
    let large = RateClass::per_key(
        ClassName::from_static("bulk"),
        Quota::new(
            NonZeroU32::new(1_000_000).unwrap(),
            NonZeroU32::new(3600).unwrap(),
        ),
    );
    row(
        "auth + scope + rate limit (1,000,000/hour), headers on",
        allocations(
            &mut auth.layer(
                limits
                    .layer(large)
                    .layer(require(ForgScope::ReadSessions).layer(bare())),
            ),
            &floors::request_with(&key),
            StatusCode::OK,
        ),
        Some(5),
        6,
    );

    // A browser session instead of a key.
    let floors::Session {
        sessions, cookie, ..
    } = floors::session();
    let session = move || {
        let mut request = Request::new(());
        request.headers_mut().insert(header::COOKIE, cookie.clone());
        request
    };
    row(
        "session (cookie)",
        allocations(
            &mut AuthLayer::new(Arc::clone(&store))
                .sessions(sessions)
                .layer(bare()),
            &session,
            StatusCode::OK,
        ),
        Some(valid_key + 1),
        4,
    );

    // The spend-cap layer over an authenticated request (auth's own allocations subtracted).
    let caps = SpendCaps::new(Budgets::new().default_cap(Environment::Live, u64::MAX));
    let spend = allocations(
        &mut auth.layer(caps.clone().headers(false).layer(1).layer(bare())),
        &floors::request_with(&key),
        StatusCode::OK,
    );
    row(
        "spend-cap layer, no header, no `Budget` asked",
        spend - valid_key,
        Some(0),
        0,
    );
    let spend_headers = allocations(
        &mut auth.layer(caps.layer(1).layer(bare())),
        &floors::request_with(&key),
        StatusCode::OK,
    );
    row(
        "spend-cap layer, `Spend-Cap` header",
        spend_headers - valid_key,
        None,
        3,
    );

    println!("| path | allocations over `bare` | target |");
    println!("|---|---|---|");
    println!("| `bare` | {bare_count} (absolute) | |");
    for row in &rows {
        let target = row.target.map_or(String::new(), |t| format!("≤ {t}"));
        println!("| {} | {} | {target} |", row.path, row.over_bare);
    }
    let changed: Vec<String> = rows
        .iter()
        .filter(|row| row.over_bare != row.now)
        .map(|row| format!("{}: {} (was {})", row.path, row.over_bare, row.now))
        .collect();
    assert!(
        changed.is_empty(),
        "allocations per request changed: {changed:?}"
    );
}

#![allow(dead_code)] // each fuzz binary uses one of these functions
//! The fuzz targets' bodies, shared by the cargo-fuzz binaries (`fuzz_targets/*.rs`) and by
//! `tests/it/fuzz_corpus.rs`, which replays the committed corpus as ordinary tests on stable.
//! Each function panics when an invariant breaks; nothing else may panic.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tower_api_key::forg;
use tower_api_key::store::ManageKeys;

use futures_util::FutureExt;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};
use tower_api_key::client_ip::ClientAddr;
use tower_api_key::key::{KeyFamilies, KeyFamily};
use tower_api_key::rate_limit::RateLimits;
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::KeyPolicy;
use tower_api_key::{require, AuthLayer, ForgScope, MemoryKeyStore, NewKey, ScopeSet};

/// Header names the layer cares about, and one it does not.
const NAMES: [&str; 9] = [
    "authorization",
    "x-forgeos-api-key",
    "content-type",
    "x-forwarded-for",
    "x-other",
    "cookie",
    "x-csrf-token",
    "sec-fetch-site",
    "origin",
];

/// Splits `data` into (name index, value bytes) pairs: a byte picks the name, a byte gives
/// the value's length (scaled so that huge values happen), then the value.
fn header_pairs(data: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut pairs = Vec::new();
    let mut rest = data;
    while let [name, len, tail @ ..] = rest {
        let len = usize::from(*len) * if *len > 250 { 300 } else { 1 };
        let take = len.min(tail.len());
        pairs.push((usize::from(*name) % NAMES.len(), tail[..take].to_vec()));
        rest = &tail[take..];
    }
    pairs
}

/// Raw header bytes through credential extraction and key parsing, and through the
/// session cookie's reading.
pub fn credential(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for (name, value) in header_pairs(data) {
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.append(HeaderName::from_static(NAMES[name]), value);
        }
    }
    let sources = tower_api_key::forg::credential_sources();
    if let Ok(Some(credential)) = sources.extract(&headers) {
        let key = credential.expose_secret();
        assert!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()),
            "{key:?}"
        );
        let families = KeyFamilies::builtin();
        if let Ok(parsed) = families.parse(key) {
            assert!(key.starts_with(parsed.family().prefix()));
            assert!(!format!("{parsed:?}").contains(&key[parsed.family().prefix().len()..]));
        }
    }
    match fixture().sessions.session_cookie(&headers) {
        Ok(Some(token)) => {
            let sent = headers
                .get_all("cookie")
                .iter()
                .any(|value| String::from_utf8_lossy(value.as_bytes()).contains(token));
            assert!(sent, "the token is taken from a cookie header: {token:?}");
        }
        Ok(None) => {}
        Err(rejection) => assert_eq!(rejection.status(), StatusCode::BAD_REQUEST),
    }
}

struct Fixture {
    store: Arc<MemoryKeyStore<ForgScope>>,
    key: String,
    sessions: Sessions<MemoryKeyStore<ForgScope>>,
    cookie: String,
    csrf: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
        let issued = store
            .issue(NewKey::new("fuzz", "k", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
            .now_or_never()
            .expect("the memory store answers at once")
            .expect("issue");
        let sessions = Sessions::new(
            Arc::new(MemoryKeyStore::new().with_policy(KeyPolicy::sessions())),
            CsrfSecret::from_bytes(&[7; 32]).expect("32 bytes"),
        );
        let started = sessions
            .start(&HeaderMap::new(), "fuzz", ForgScope::ReadRules)
            .now_or_never()
            .expect("the memory store answers at once")
            .expect("start");
        Fixture {
            key: issued.key().expose_secret().to_owned(),
            store,
            cookie: started.cookies().cookie_header(),
            csrf: started
                .cookies()
                .csrf_token()
                .expect("a login's token")
                .to_owned(),
            sessions,
        }
    })
}

/// Arbitrary header lists through the whole stack (auth with sessions, rate limit, scope
/// requirement). The first byte chooses whether the known key, the known session cookie,
/// its CSRF token, and a state-changing method are sent too.
pub fn layer(data: &[u8]) {
    let fixture = fixture();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let inner = tower::service_fn(move |_req: Request<()>| {
        seen.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
    });
    let mut service = AuthLayer::new(Arc::clone(&fixture.store))
        .sessions(fixture.sessions.clone())
        .layer(
            RateLimits::new()
                .layer(forg::STANDARD)
                .layer(require(ForgScope::ReadRules).layer(inner)),
        );

    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(ClientAddr([192, 0, 2, 1].into()));
    let choice = data.first().copied().unwrap_or_default();
    if choice % 4 == 0 {
        let value = HeaderValue::try_from(format!("Bearer {}", fixture.key)).expect("header");
        request.headers_mut().append("authorization", value);
    }
    if choice & 0x10 != 0 {
        let value = HeaderValue::try_from(fixture.cookie.as_str()).expect("header");
        request.headers_mut().append("cookie", value);
    }
    if choice & 0x20 != 0 {
        let value = HeaderValue::try_from(fixture.csrf.as_str()).expect("header");
        request.headers_mut().append("x-csrf-token", value);
    }
    if choice & 0x40 != 0 {
        *request.method_mut() = http::Method::POST;
    }
    for (name, value) in header_pairs(data.get(1..).unwrap_or_default()) {
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            request
                .headers_mut()
                .append(HeaderName::from_static(NAMES[name]), value);
        }
    }

    let response = service
        .ready()
        .now_or_never()
        .expect("ready at once")
        .expect("infallible")
        .call(request)
        .now_or_never()
        .expect("the in-memory path completes at once")
        .expect("infallible");
    let status = response.status();
    let allowed = [
        StatusCode::OK,
        StatusCode::BAD_REQUEST,
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::TOO_MANY_REQUESTS,
    ];
    assert!(allowed.contains(&status), "unexpected status {status}");
    // gRPC rejections are HTTP 200 with a grpc-status: a success is 200 without one.
    let passed = status == StatusCode::OK && !response.headers().contains_key("grpc-status");
    let called = calls.load(Ordering::SeqCst);
    assert_eq!(
        called == 1,
        passed,
        "inner called {called} times for {status}"
    );
    let secrets = [&fixture.key["forg_live_".len()..], &fixture.cookie];
    for value in response.headers().values() {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            secrets.iter().all(|secret| !value.contains(*secret)),
            "a header echoes a credential"
        );
    }
}

/// Scope strings: parse, and when they parse, display and serde round-trip.
pub fn scopes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<ScopeSet<ForgScope>>() {
        Ok(set) => {
            assert_eq!(
                set.to_string()
                    .parse::<ScopeSet<ForgScope>>()
                    .expect("display parses"),
                set
            );
            let json = serde_json::to_string(&set).expect("serialize");
            assert_eq!(
                serde_json::from_str::<ScopeSet<ForgScope>>(&json).expect("deserialize"),
                set
            );
        }
        Err(error) => {
            assert!(error.name().chars().count() <= 65, "error names are cut");
            assert!(!error.name().is_empty());
        }
    }
    let _ = serde_json::from_slice::<ScopeSet<ForgScope>>(data);
}

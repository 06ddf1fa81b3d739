//! The floors under the layer: the work of its two commonest paths written by hand with
//! `http` types only, measured beside it (`benches/per_request.rs`, `benches/layer.rs`,
//! `tests/allocations.rs`).
//!
//! - [`auth`]: read `Authorization` (one lookup), strip `Bearer `, SHA-256, one map lookup,
//!   the two extension inserts the layer makes (the record and its scopes), answer.
//! - [`reject`]: read `Authorization` and see the key has the wrong length, then a 401 as
//!   the crate answers it: `Content-Type` and `WWW-Authenticate`, and the rejection's facts
//!   kept in the response's extensions.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use futures_util::FutureExt;
use http::{header, HeaderValue, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use tower::Service;
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::{KeyPolicy, KeyRecord};
use tower_api_key::{ForgScope, MemoryKeyStore};

type Answer<B> = std::future::Ready<Result<Response<B>, Infallible>>;

/// The request every variant is measured with: `/v1/sessions` with `Authorization: value`.
pub fn request(value: &HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    *request.uri_mut() = http::Uri::from_static("/v1/sessions");
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, value.clone());
    request
}

/// [`request`] made anew each time, as a server would receive it.
#[allow(dead_code)] // `benches/layer.rs` includes this file and builds requests itself
pub fn request_with(value: &HeaderValue) -> impl Fn() -> Request<()> + Clone {
    let value = value.clone();
    move || request(&value)
}

/// Puts in a request what `auth` leaves in `request` when it lets it through (the principal
/// and its scopes): the rate-limit layer's input when it is measured alone.
#[allow(dead_code)] // `tests/allocations.rs` does not measure the rate-limit layer alone
pub fn with_identity(
    auth: &tower_api_key::AuthLayer<MemoryKeyStore<ForgScope>>,
    request: Request<()>,
) -> impl Fn(Request<()>) -> Request<()> {
    use tower::Layer;
    let seen: Arc<std::sync::Mutex<http::Extensions>> = Arc::default();
    let keep = Arc::clone(&seen);
    let mut capture = auth.layer(tower::service_fn(move |request: Request<()>| {
        *keep.lock().expect("lock") = request.extensions().clone();
        std::future::ready(Ok::<_, Infallible>(Response::new(())))
    }));
    let response = capture
        .call(request)
        .now_or_never()
        .expect("the memory store answers at once")
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK, "the key is valid");
    let identity = seen.lock().expect("lock").clone();
    move |request| {
        let (mut parts, body) = request.into_parts();
        parts.extensions = identity.clone();
        Request::from_parts(parts, body)
    }
}

/// A browser session, started: what the layer is given and what the browser sends.
pub struct Session {
    pub sessions: Sessions<MemoryKeyStore<ForgScope>>,
    /// The `Cookie` header (session and CSRF cookies).
    pub cookie: HeaderValue,
    /// The `X-CSRF-Token` header.
    #[allow(dead_code)] // only `benches/layer.rs` measures the CSRF check
    pub csrf: HeaderValue,
}

/// One session of `user` with `read:sessions`, in a memory store of its own.
pub fn session() -> Session {
    let sessions = Sessions::new(
        Arc::new(MemoryKeyStore::new().with_policy(KeyPolicy::sessions())),
        CsrfSecret::from_bytes(&[7; 32]).expect("32 bytes"),
    );
    let started = sessions
        .start(&http::HeaderMap::new(), "user", ForgScope::ReadSessions)
        .now_or_never()
        .expect("the memory store answers at once")
        .expect("start");
    let cookies = started.cookies();
    Session {
        cookie: HeaderValue::try_from(cookies.cookie_header()).expect("header"),
        csrf: HeaderValue::try_from(cookies.csrf_token().expect("token")).expect("header"),
        sessions,
    }
}

/// Authentication by hand against the one `record`.
pub fn auth<B: Default>(
    record: &Arc<KeyRecord<ForgScope>>,
) -> impl Service<Request<()>, Response = Response<B>, Error = Infallible, Future = Answer<B>> + Clone
{
    let records = Arc::new(HashMap::from([(
        *record.digest().as_bytes(),
        Arc::clone(record),
    )]));
    tower::service_fn(move |mut request: Request<()>| {
        let found = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
            .map(|key| <[u8; 32]>::from(Sha256::digest(key)))
            .and_then(|digest| records.get(&digest).cloned());
        let mut response = Response::new(B::default());
        match found {
            Some(record) => {
                request.extensions_mut().insert(record.scopes());
                request.extensions_mut().insert(record);
            }
            None => *response.status_mut() = StatusCode::UNAUTHORIZED,
        }
        std::future::ready(Ok(response))
    })
}

/// The rejection's facts: not a unit struct, which `Box` (and so `Extensions`) would not
/// allocate for.
#[derive(Clone)]
struct Rejected(#[allow(dead_code)] &'static str);

/// A malformed key's 401 by hand.
pub fn reject<B: Default>(
) -> impl Service<Request<()>, Response = Response<B>, Error = Infallible, Future = Answer<B>> + Clone
{
    tower::service_fn(|request: Request<()>| {
        // Knowing the key is malformed takes reading it: one lookup and a length check.
        let malformed = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
            .is_none_or(|key| key.len() != 42);
        assert!(malformed);
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        response
            .extensions_mut()
            .insert(Rejected("invalid_api_key"));
        std::future::ready(Ok(response))
    })
}

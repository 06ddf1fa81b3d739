//! The rate-limit layer and its peer, set up once for `benches/layer.rs` and
//! `benches/per_request.rs`: tower_governor keyed by the `Authorization` header's value,
//! both with a quota no run reaches, in front of [`bare`], which answers with axum's body
//! (tower_governor's rejection needs `Response<axum::body::Body>`).

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::QuantaInstant;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use http::{header::AUTHORIZATION, Request, Response};
use tower::Service;
use tower_api_key::rate_limit::{ClassName, Quota, RateClass};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::{GovernorError, GovernorLayer};

type Body = axum::body::Body;

/// The inner service: answers 200 with an empty body at once.
pub fn bare() -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> + Clone {
    tower::service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Body::empty())))
    })
}

/// Never limits within a benchmark: the quota is far above what a run sends, so its
/// `RateLimit` values are above the precomputed range and written per request.
pub fn roomy() -> RateClass {
    RateClass::per_key(
        ClassName::from_static("bench"),
        Quota::new(NonZeroU32::MAX, NonZeroU32::MIN),
    )
}

/// Keys tower_governor by the `Authorization` header's value, as the rate-limit layer keys
/// by the key.
#[derive(Clone)]
pub struct HeaderKey;

impl tower_governor::key_extractor::KeyExtractor for HeaderKey {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<String, GovernorError> {
        req.headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

fn refuse(_: GovernorError) -> Response<Body> {
    Response::builder()
        .status(429)
        .body(Body::empty())
        .unwrap_or_default()
}

fn roomy_config() -> GovernorConfigBuilder<HeaderKey, NoOpMiddleware<QuantaInstant>> {
    let mut builder = GovernorConfigBuilder::default().key_extractor(HeaderKey);
    builder.per_nanosecond(1).burst_size(u32::MAX);
    builder
}

/// Without headers: the peer of `RateLimits::headers(false)`.
pub fn tower_governor() -> GovernorLayer<HeaderKey, NoOpMiddleware<QuantaInstant>, Body> {
    let config = roomy_config().finish().expect("config");
    GovernorLayer::new(Arc::new(config)).error_handler(refuse)
}

/// With its `x-ratelimit-*` headers: the peer of the default (headers on).
#[allow(dead_code)] // `per_request.rs` measures headers off only
pub fn tower_governor_with_headers() -> GovernorLayer<HeaderKey, StateInformationMiddleware, Body> {
    let config = roomy_config().use_headers().finish().expect("config");
    GovernorLayer::new(Arc::new(config)).error_handler(refuse)
}

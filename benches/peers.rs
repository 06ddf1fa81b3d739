//! The peer of the rate-limit layer, set up once for `benches/layer.rs` and
//! `benches/per_request.rs`: tower_governor keyed by the `Authorization` header's value, with a
//! quota no run reaches, answering with axum's body (its rejection needs
//! `Response<axum::body::Body>`).

use std::sync::Arc;

use governor::clock::QuantaInstant;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use http::{header::AUTHORIZATION, Request, Response};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::{GovernorError, GovernorLayer};

type Body = axum::body::Body;

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

fn roomy() -> GovernorConfigBuilder<HeaderKey, NoOpMiddleware<QuantaInstant>> {
    let mut builder = GovernorConfigBuilder::default().key_extractor(HeaderKey);
    builder.per_nanosecond(1).burst_size(u32::MAX);
    builder
}

/// Without headers: the peer of `RateLimits::headers(false)`.
pub fn tower_governor() -> GovernorLayer<HeaderKey, NoOpMiddleware<QuantaInstant>, Body> {
    let config = roomy().finish().expect("config");
    GovernorLayer::new(Arc::new(config)).error_handler(refuse)
}

/// With its `x-ratelimit-*` headers: the peer of the default (headers on).
#[allow(dead_code)] // `per_request.rs` measures headers off only
pub fn tower_governor_with_headers() -> GovernorLayer<HeaderKey, StateInformationMiddleware, Body> {
    let config = roomy().use_headers().finish().expect("config");
    GovernorLayer::new(Arc::new(config)).error_handler(refuse)
}

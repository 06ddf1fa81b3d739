//! Per-key rate limiting: a layer per class of route, on a pluggable backend (governor by
//! default), with IETF `RateLimit-Policy` / `RateLimit` headers and 429 + `Retry-After`.
//!
//! | class | default quota | keyed by |
//! |---|---|---|
//! | [`RateClass::STANDARD`] | 100 / minute | authenticated key id |
//! | [`RateClass::AI`] | 10 / minute | authenticated key id |
//! | [`RateClass::AUTH`] | 5 / minute | client IP (public routes) |
//!
//! Each class has its own budget per key. A key record's
//! [`rate_limits`](crate::store::KeyRecord::rate_limits) override the quota of the classes
//! they name, for that key only. The layer runs after [`AuthLayer`](crate::AuthLayer) and
//! reads the key id from the request's [`Identity`](crate::Identity); the secret never
//! reaches the limiter.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{routing::{get, post}, Router};
//! use tower_api_key::rate_limit::{RateClass, RateLimits};
//! use tower_api_key::{AuthLayer, MemoryKeyStore};
//!
//! let store = Arc::new(MemoryKeyStore::new());
//! let limits = RateLimits::new();
//!
//! let standard = Router::new()
//!     .route("/v1/sessions", get(|| async { "sessions" }))
//!     .route_layer(limits.layer(RateClass::STANDARD));
//! let ai = Router::new()
//!     .route("/v1/reviews", post(|| async { "review" }))
//!     .route_layer(limits.layer(RateClass::AI));
//! let public = Router::new()
//!     .route("/auth/login", post(|| async { "welcome" }))
//!     .route_layer(limits.layer(RateClass::AUTH));
//!
//! let app: Router = standard.merge(ai).layer(AuthLayer::new(store)).merge(public);
//! // Serve with `into_make_service_with_connect_info::<SocketAddr>()` so that
//! // per-address classes can see the client's address.
//! ```
//!
//! Responses carry (draft-ietf-httpapi-ratelimit-headers-11):
//!
//! ```text
//! RateLimit-Policy: "standard";q=100;w=60
//! RateLimit: "standard";r=99;t=1
//! ```
//!
//! # Memory
//! State exists only for keys and addresses that made requests, and idle state is evicted
//! by the backend's housekeeping (see [`GovernorBackend`]); [`RateLimits::tracked`] says
//! how much there is.

mod backend;
mod client_ip;
pub(crate) mod failures;
mod gcra;
mod housekeeping;
mod layer;
#[cfg(feature = "redis")]
mod redis;

use std::borrow::Cow;
use std::num::NonZeroU32;

#[cfg(feature = "redis")]
pub use self::redis::RedisRateLimiter;
/// The rate-limiting engine, re-exported for its clocks (`governor::clock::FakeRelativeClock`).
pub use ::governor;
pub use backend::{BackendError, Decision, LimitKey, RateLimitBackend};
pub use client_ip::{ClientAddr, ClientIp, ClientIpError, ForwardedHeader};
pub use failures::FailureLimit;
pub use gcra::{GovernorBackend, GovernorClass};
pub use ipnet::IpNet;
pub use layer::{OnBackendError, RateLimitLayer, RateLimitService, RateLimits, ResponseFuture};

use crate::store::RateLimit;

/// What a class counts requests by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyedBy {
    /// The authenticated key's id.
    ApiKey,
    /// The client's address (IPv6 by /64), for public routes.
    ClientIp,
}

const fn per_minute(n: u32) -> RateLimit {
    match NonZeroU32::new(n) {
        Some(n) => RateLimit::per_minute(n),
        None => panic!("a quota is never zero"),
    }
}

/// A class of routes with its own budget: a name, a default quota and what it is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateClass {
    name: Cow<'static, str>,
    quota: RateLimit,
    keyed_by: KeyedBy,
}

/// A class name is empty, longer than 32 bytes, or not `a-z 0-9 _ -`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a rate class name is 1 to 32 characters of a-z 0-9 _ -")]
pub struct InvalidClassName;

impl RateClass {
    /// Standard API routes: 100 requests per minute per key.
    pub const STANDARD: RateClass = RateClass::builtin("standard", 100, KeyedBy::ApiKey);
    /// AI routes (reviews, scoring): 10 requests per minute per key.
    pub const AI: RateClass = RateClass::builtin("ai", 10, KeyedBy::ApiKey);
    /// Authentication routes (login, register): 5 requests per minute per client address.
    pub const AUTH: RateClass = RateClass::builtin("auth", 5, KeyedBy::ClientIp);

    const fn builtin(name: &'static str, per_min: u32, keyed_by: KeyedBy) -> Self {
        Self {
            name: Cow::Borrowed(name),
            quota: per_minute(per_min),
            keyed_by,
        }
    }

    /// A class keyed by authenticated key id.
    ///
    /// # Errors
    /// [`InvalidClassName`] unless `name` is 1 to 32 characters of `a-z 0-9 _ -` (it
    /// appears in response headers and key records).
    pub fn per_key(
        name: impl Into<Cow<'static, str>>,
        quota: RateLimit,
    ) -> Result<Self, InvalidClassName> {
        Self::new(name.into(), quota, KeyedBy::ApiKey)
    }

    /// A class keyed by client address, for public routes.
    ///
    /// # Errors
    /// As [`per_key`](Self::per_key).
    pub fn per_client_ip(
        name: impl Into<Cow<'static, str>>,
        quota: RateLimit,
    ) -> Result<Self, InvalidClassName> {
        Self::new(name.into(), quota, KeyedBy::ClientIp)
    }

    fn new(
        name: Cow<'static, str>,
        quota: RateLimit,
        keyed_by: KeyedBy,
    ) -> Result<Self, InvalidClassName> {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self {
                name,
                quota,
                keyed_by,
            })
        } else {
            Err(InvalidClassName)
        }
    }

    /// The same class with another default quota.
    #[must_use]
    pub fn with_quota(mut self, quota: RateLimit) -> Self {
        self.quota = quota;
        self
    }

    /// The class name, as used in headers and in key records' overrides.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The default quota.
    pub fn quota(&self) -> RateLimit {
        self.quota
    }

    /// What the class counts by.
    pub fn keyed_by(&self) -> KeyedBy {
        self.keyed_by
    }
}

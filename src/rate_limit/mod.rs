//! Per-key rate limiting: a layer per class of route, on a pluggable backend (governor by
//! default), with IETF `RateLimit-Policy` / `RateLimit` headers and 429 + `Retry-After`.
//!
//! | class | default quota | keyed by |
//! |---|---|---|
//! | [`forg::STANDARD`](crate::forg::STANDARD) | 100 / minute | authenticated principal |
//! | [`forg::AI`](crate::forg::AI) | 10 / minute | authenticated principal |
//! | [`forg::AUTH`](crate::forg::AUTH) | 5 / minute | client IP (public routes) |
//!
//! Each class has one budget per key, however many routes it is applied to. A key record's
//! [`rate_limits`](crate::store::KeyRecord::rate_limits) override the quota of the classes
//! they name, for that key only. The layer runs after [`AuthLayer`](crate::AuthLayer) and
//! reads the key id from the request's [`Principal`](crate::Principal), so it needs no scope
//! type parameter; the secret never reaches the limiter.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{routing::{get, post}, Router};
//! use tower_api_key::rate_limit::RateLimits;
//! use tower_api_key::{forg, AuthLayer, ForgScope, MemoryKeyStore};
//!
//! let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
//! let limits = RateLimits::new();
//!
//! let standard = Router::new()
//!     .route("/v1/sessions", get(|| async { "sessions" }))
//!     .route_layer(limits.layer(forg::STANDARD));
//! let ai = Router::new()
//!     .route("/v1/reviews", post(|| async { "review" }))
//!     .route_layer(limits.layer(forg::AI));
//! let public = Router::new()
//!     .route("/auth/login", post(|| async { "welcome" }))
//!     .route_layer(limits.layer(forg::AUTH));
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
mod governor;
mod headers;
pub(crate) mod housekeeping;
pub(crate) mod in_flight;
mod layer;
mod limits;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod repeated;
mod weighted;

#[cfg(feature = "redis")]
pub use self::in_flight::redis::{RedisInFlight, RedisSlot};
#[cfg(feature = "redis")]
pub use self::redis::RedisRateLimiter;
/// Also at the crate root, where the spend caps and the failed-authentication limit name
/// them too.
pub use crate::backend_error::{BackendError, OnBackendError};
pub use crate::quota::{ClassName, InvalidClassName, Quota};
pub use backend::{Decision, LimitKey, RateLimitBackend};
pub use governor::GovernorBackend;
pub use headers::{RATELIMIT, RATELIMIT_POLICY};
pub use in_flight::{
    InFlightBackend, InFlightBody, InFlightFuture, InFlightLayer, InFlightLimit, InFlightLimits,
    InFlightService, MemoryInFlight, MemorySlot,
};
pub use layer::{RateLimitLayer, RateLimitService, ResponseFuture};
pub use limits::RateLimits;

use std::num::NonZeroU32;

/// What a class counts requests by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyedBy {
    /// The authenticated principal's credential: the key id for API keys, the owner for
    /// browser sessions (however many sessions it has).
    ApiKey,
    /// The authenticated principal's owner and environment: all of an owner's keys and
    /// sessions share one budget.
    Owner,
    /// The client's address (IPv6 by /64), for public routes.
    ClientIp,
}

/// A class of routes with its own budget: a name, a default quota and what it is keyed by.
///
/// The FORG / ForgeOS classes are [`forg::STANDARD`](crate::forg::STANDARD),
/// [`forg::AI`](crate::forg::AI) and [`forg::AUTH`](crate::forg::AUTH).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateClass {
    name: ClassName,
    quota: Quota,
    keyed_by: KeyedBy,
    cost: RequestCost,
}

/// What one request of a class counts: a request, a fixed number of units (a quota in
/// units: tokens, bytes, credits), or a reservation settled with what the handler reports
/// ([`ReportedUnits`]). A cost above a key's quota counts as the whole quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestCost {
    /// One request (the default).
    One,
    /// Always this many units.
    Fixed(NonZeroU32),
    /// This many reserved when the request is admitted, so requests in flight never
    /// exceed the quota together; when the handler answers, what it reports in
    /// [`ReportedUnits`] is kept (at most the reservation) and the rest is given back,
    /// while the window it was reserved in lasts. Nothing reported: the reservation is
    /// kept; refused by a layer of the crate further in (the handler never ran): all of it
    /// is given back.
    Reported {
        /// The most one request may cost.
        reserve: NonZeroU32,
    },
}

impl RequestCost {
    /// The units admission counts.
    pub const fn admitted(self) -> NonZeroU32 {
        match self {
            Self::One => NonZeroU32::MIN,
            Self::Fixed(units) | Self::Reported { reserve: units } => units,
        }
    }
}

/// The units a request of a [`RequestCost::Reported`] class cost, put in the response's
/// extensions by the handler (like [`ReportedCost`](crate::usage::ReportedCost) for
/// spend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportedUnits(pub u32);

/// What [`NewKey::rate_limit`](crate::store::NewKey::rate_limit) reads of a class: its name.
impl AsRef<ClassName> for RateClass {
    fn as_ref(&self) -> &ClassName {
        &self.name
    }
}

impl RateClass {
    /// A class keyed by the authenticated principal.
    pub const fn per_key(name: ClassName, quota: Quota) -> Self {
        Self {
            name,
            quota,
            keyed_by: KeyedBy::ApiKey,
            cost: RequestCost::One,
        }
    }

    /// A class keyed by owner: all of an owner's keys and sessions (of one environment)
    /// share one budget. Per-key quota overrides do not apply.
    pub const fn per_owner(name: ClassName, quota: Quota) -> Self {
        Self {
            name,
            quota,
            keyed_by: KeyedBy::Owner,
            cost: RequestCost::One,
        }
    }

    /// A class keyed by client address, for public routes.
    pub const fn per_client_ip(name: ClassName, quota: Quota) -> Self {
        Self {
            name,
            quota,
            keyed_by: KeyedBy::ClientIp,
            cost: RequestCost::One,
        }
    }

    /// The same class with another default quota.
    #[must_use]
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = quota;
        self
    }

    /// Each request costs `units` of the quota (e.g. `Quota::per_minute(10_000)` of
    /// bytes, and a route that costs 500).
    #[must_use]
    pub const fn costs(mut self, units: NonZeroU32) -> Self {
        self.cost = RequestCost::Fixed(units);
        self
    }

    /// Each request reserves `reserve` units when admitted and keeps what the handler
    /// reports in [`ReportedUnits`] (see [`RequestCost::Reported`]): e.g. tokens per
    /// minute, known only once the model has answered.
    #[must_use]
    pub const fn reported_up_to(mut self, reserve: NonZeroU32) -> Self {
        self.cost = RequestCost::Reported { reserve };
        self
    }

    /// What a request counts.
    pub fn cost(&self) -> RequestCost {
        self.cost
    }

    /// The class name, as used in headers and in key records' overrides.
    pub fn name(&self) -> &ClassName {
        &self.name
    }

    /// The default quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// What the class counts by.
    pub fn keyed_by(&self) -> KeyedBy {
        self.keyed_by
    }
}

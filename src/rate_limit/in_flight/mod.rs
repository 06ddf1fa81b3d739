//! Concurrent requests per key: at most `max` requests of one key (or owner) in flight,
//! the next refused at once with 429 and `Retry-After: 1` (no queue: a queue would hold
//! connections for a key that is already at its limit). A slot is taken when the request
//! is admitted and given back when its response body ends, or when the request is
//! dropped (the client gone, a cancellation, a panic unwinding the handler).
//!
//! [`MemoryInFlight`] counts in process; [`RedisInFlight`](super::RedisInFlight) (feature
//! `redis`) shares the count between instances with a lease per slot, renewed while the
//! request lasts, so the slots of a crashed instance come back once their leases end.
//!
//! ```
//! use std::num::NonZeroU32;
//! use axum::{routing::post, Router};
//! use tower_api_key::rate_limit::{ClassName, InFlightLimit, InFlightLimits};
//!
//! // At most 2 reviews in flight per key.
//! let reviews = InFlightLimit::per_key(ClassName::from_static("reviews"), NonZeroU32::new(2).unwrap());
//! let app: Router = Router::new()
//!     .route("/v1/reviews", post(|| async { "review" }))
//!     .route_layer(InFlightLimits::new().layer(reviews));
//! // ... behind the AuthLayer, which puts the principal the slots are counted by.
//! ```

mod body;
mod layer;
mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use std::future::Future;
use std::num::NonZeroU32;

pub use body::InFlightBody;
pub use layer::{InFlightFuture, InFlightLayer, InFlightLimits, InFlightService};
pub use memory::{MemoryInFlight, MemorySlot};

use super::backend::LimitKey;
use super::{ClassName, KeyedBy};
use crate::backend_error::BackendError;

/// How many requests of one key (or owner) may be in flight on the routes of a layer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InFlightLimit {
    name: ClassName,
    max: NonZeroU32,
    keyed_by: KeyedBy,
}

impl InFlightLimit {
    /// At most `max` per key (a rotated key shares its predecessor's slots; a browser
    /// session counts as its owner, as for rate limits).
    pub const fn per_key(name: ClassName, max: NonZeroU32) -> Self {
        Self {
            name,
            max,
            keyed_by: KeyedBy::ApiKey,
        }
    }

    /// At most `max` per owner and environment, all its keys and sessions together.
    pub const fn per_owner(name: ClassName, max: NonZeroU32) -> Self {
        Self {
            name,
            max,
            keyed_by: KeyedBy::Owner,
        }
    }

    /// The name (in metrics and the backend's keys).
    pub fn name(&self) -> &ClassName {
        &self.name
    }

    /// The most in flight at once.
    pub fn max(&self) -> NonZeroU32 {
        self.max
    }

    /// What the slots are counted by.
    pub fn keyed_by(&self) -> KeyedBy {
        self.keyed_by
    }
}

/// Where the slots are counted. A slot is given back when it is dropped.
pub trait InFlightBackend: Clone + Send + Sync + 'static {
    /// A slot held by one request; dropping it gives it back.
    type Slot: Send + 'static;

    /// A slot for `key` under `limit`, or `None` when `limit.max()` are in flight. Write
    /// it as `async fn`.
    fn acquire(
        &self,
        limit: &InFlightLimit,
        key: LimitKey<'_>,
    ) -> impl Future<Output = Result<Option<Self::Slot>, BackendError>> + Send;

    /// The answer, when it is at hand without waiting (`None`: ask
    /// [`acquire`](Self::acquire)). The default never answers.
    fn acquire_now(
        &self,
        limit: &InFlightLimit,
        key: LimitKey<'_>,
    ) -> Option<Result<Option<Self::Slot>, BackendError>> {
        let _ = (limit, key);
        None
    }
}

//! Failed-authentication limits: [`FailureLimit`] (the budget and its state per client
//! address) and [`FailureLimitLayer`], which puts it in front of the authentication layer.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use http::{Request, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_api_key::clock::ManualClock;
//! use tower_api_key::rate_limit::{ClientAddr, FailureLimit, FailureLimitLayer, Quota};
//! use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let two_a_minute = Quota::per_minute(std::num::NonZeroU32::new(2).unwrap());
//! let stack = ServiceBuilder::new()
//!     .layer(FailureLimitLayer::new(FailureLimit::with_clock(two_a_minute, ManualClock::default())))
//!     .layer(AuthLayer::new(Arc::new(MemoryKeyStore::<ForgScope>::new())))
//!     .service(service_fn(|_: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     }));
//! let guess = || {
//!     let mut request = Request::get("/").header("x-forgeos-api-key", format!("fos_{}", "0".repeat(64)));
//!     let mut request = request.body(()).unwrap();
//!     request.extensions_mut().insert(ClientAddr("192.0.2.7".parse().unwrap()));
//!     request
//! };
//! // Two refusals spend the budget, the third goes over it; then 429 before the store.
//! for expected in [401, 401, 401, 429] {
//!     assert_eq!(stack.clone().oneshot(guess()).await.unwrap().status(), StatusCode::from_u16(expected).unwrap());
//! }
//! # }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock, Reference};
use http::{Extensions, HeaderMap};

use super::client_ip::{client_ip_of, limiter_key};
use super::gcra::{decide, limiter, Limiter};
use super::housekeeping::{self, Schedule};
use super::Quota;
use crate::reject::{AuthRejection, RetryAfter};

mod layer;

pub use layer::{FailureLimitLayer, FailureLimitService, ResponseFuture};

/// Limits failed authentications per client address: the state behind a
/// [`FailureLimitLayer`].
///
/// Every refused key (malformed, unknown, revoked, expired; not a missing one, and never a
/// store outage) spends from the address's budget. An address that has spent it gets 429
/// with `Retry-After` for every request, before the key is parsed or the store asked,
/// until the budget refills. State exists only for addresses that failed; idle state is
/// evicted by housekeeping as in [`GovernorBackend`](super::GovernorBackend).
///
/// ```
/// use std::num::NonZeroU32;
/// use tower_api_key::rate_limit::FailureLimit;
/// use tower_api_key::rate_limit::Quota;
///
/// let failures = FailureLimit::new(Quota::per_minute(NonZeroU32::new(20).unwrap()));
/// assert_eq!(failures.tracked(), 0);
/// // ServiceBuilder::new().layer(FailureLimitLayer::new(failures)).layer(AuthLayer::new(store))
/// ```
#[derive(Clone)]
pub struct FailureLimit<C: Clock + Clone = DefaultClock> {
    shared: Arc<Shared<C>>,
}

struct Shared<C: Clock + Clone> {
    quota: Quota,
    limiter: Limiter<IpAddr, C>,
    /// Addresses over budget, until a time in nanoseconds on the clock since `start`.
    blocked: DashMap<IpAddr, u64>,
    clock: C,
    start: C::Instant,
    schedule: Schedule,
}

impl FailureLimit<DefaultClock> {
    /// `quota` failures per address, on governor's default clock.
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, DefaultClock::default())
    }
}

impl Default for FailureLimit<DefaultClock> {
    /// 20 failures per minute per address.
    fn default() -> Self {
        Self::new(Quota::per_minute_const(20))
    }
}

impl<C> FailureLimit<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// `quota` failures per address, on `clock`.
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Self {
            shared: Arc::new(Shared {
                quota,
                limiter: limiter(quota, &clock),
                blocked: DashMap::new(),
                start: clock.now(),
                clock,
                schedule: Schedule::new(),
            }),
        }
    }

    /// Runs housekeeping at most once per `interval` (default 60 s).
    #[must_use]
    pub fn housekeeping_interval(self, interval: Duration) -> Self {
        self.shared.schedule.set_interval(interval);
        self
    }

    /// How many addresses state is held for.
    pub fn tracked(&self) -> usize {
        self.shared.limiter.len() + self.shared.blocked.len()
    }

    /// Evicts idle state now.
    pub fn housekeeping(&self) {
        self.shared.sweep();
    }
}

impl<C: Clock + Clone> Shared<C> {
    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = self.now();
        self.blocked.retain(|_, until| *until > now);
        self.blocked.shrink_to_fit();
    }
}

impl<C: Clock + Clone> fmt::Debug for FailureLimit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimit")
            .field("quota", &self.shared.quota)
            .finish_non_exhaustive()
    }
}

/// What the failure-limit layer needs of a failure limit, clock erased.
pub(crate) trait FailureGate: Send + Sync + 'static {
    /// The client's limiter key, or the rejection when it is over budget.
    fn admit(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<IpAddr, AuthRejection>;
    /// Spends one failure of `client`'s budget.
    fn record_failure(&self, client: IpAddr);
}

impl<C> FailureGate for FailureLimit<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn admit(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<IpAddr, AuthRejection> {
        let client = client_ip_of(headers, extensions)?;
        let client = limiter_key(client);
        let shared = &self.shared;
        let now = shared.now();
        if shared.schedule.claim(now) {
            let swept = Arc::clone(shared);
            housekeeping::run(move || swept.sweep());
        }
        if let Some(until) = shared.blocked.get(&client).map(|until| *until) {
            if now < until {
                let wait = Duration::from_nanos(until - now);
                return Err(AuthRejection::rate_limited(RetryAfter::from_duration(wait)));
            }
            shared.blocked.remove_if(&client, |_, until| *until <= now);
        }
        Ok(client)
    }

    fn record_failure(&self, client: IpAddr) {
        let shared = &self.shared;
        let decision = decide(&shared.limiter, &client, shared.quota, &shared.clock);
        if !decision.is_allowed() {
            let until = shared.now().saturating_add(
                u64::try_from(decision.retry_after().as_nanos()).unwrap_or(u64::MAX),
            );
            shared.blocked.insert(client, until);
        }
    }
}

//! Failed-authentication limits: [`FailureLimit`] (the budget and its state per client
//! address) and [`FailureLimitLayer`], which puts it in front of the authentication layer.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use http::{Request, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_api_key::clock::ManualClock;
//! use tower_api_key::client_ip::ClientAddr;
//! use tower_api_key::failure_limit::{FailureLimit, FailureLimitLayer};
//! use tower_api_key::rate_limit::Quota;
//! use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let two_a_minute = Quota::per_minute(std::num::NonZeroU32::new(2).unwrap());
//! let stack = ServiceBuilder::new()
//!     .layer(FailureLimitLayer::new(FailureLimit::on_clock(two_a_minute, ManualClock::default())))
//!     .layer(AuthLayer::new(Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()))))
//!     .service(service_fn(|_: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     }));
//! let guess = || {
//!     let mut request = Request::get("/").header("authorization", format!("Bearer fos_{}", "0".repeat(64)));
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
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock, Reference};
use http::{Extensions, HeaderMap};

use crate::client_ip::client_key_of;
use crate::rate_limit::housekeeping::Schedule;
use crate::rate_limit::{
    BackendError, ClassName, Decision, GovernorBackend, LimitKey, Quota, RateClass,
    RateLimitBackend,
};
use crate::reject::{AuthRejection, RetryAfter};
use crate::support::gate::{caught, guarded};

mod layer;

pub use layer::{FailureLimitLayer, FailureLimitService, ResponseFuture};

/// Limits failed authentications per client address: the state behind a
/// [`FailureLimitLayer`].
///
/// Every refused key (malformed, unknown, revoked, expired; not a missing one, and never a
/// store outage) spends from the address's budget, counted by a
/// [`RateLimitBackend`]: in process by default ([`GovernorBackend`]), or shared by every
/// instance ([`RedisRateLimiter`](crate::rate_limit::RedisRateLimiter), with
/// [`backed_by`](Self::backed_by)). An address whose failure goes over the budget
/// gets 429 with `Retry-After` for every request, before the key is parsed or the store
/// asked, until the budget refills. With a shared backend, N instances grant an address
/// the budget plus at most one failure per other instance (each instance learns of the
/// exhausted budget from its own next failure), not N budgets.
///
/// Addresses are grouped as the [`ClientIpLayer`](crate::client_ip::ClientIpLayer) says (IPv6 per /64
/// by default). State exists only for addresses that failed; idle state is evicted by
/// housekeeping.
///
/// ```
/// use std::num::NonZeroU32;
/// use tower_api_key::failure_limit::FailureLimit;
/// use tower_api_key::rate_limit::Quota;
///
/// let failures = FailureLimit::new(Quota::per_minute(NonZeroU32::new(20).unwrap()));
/// assert_eq!(failures.tracked(), 0);
/// // ServiceBuilder::new().layer(FailureLimitLayer::new(failures)).layer(AuthLayer::new(store))
/// ```
#[derive(Clone)]
pub struct FailureLimit<B: RateLimitBackend = GovernorBackend> {
    shared: Arc<Shared<B>>,
}

/// Nanoseconds on a monotonic clock: the limiter's, so that fake clocks drive it in tests.
type Nanos = Box<dyn Fn() -> u64 + Send + Sync>;

struct Shared<B: RateLimitBackend> {
    backend: B,
    class: B::Class,
    quota: Quota,
    /// Addresses over budget, until a time in nanoseconds on `now`.
    blocked: DashMap<IpAddr, u64>,
    now: Nanos,
    schedule: Schedule,
    backend_timeout: Duration,
}

/// The class failures are counted under.
const FAILURES: ClassName = ClassName::from_static("auth_failures");

impl FailureLimit<GovernorBackend> {
    /// `quota` failures per address, in process, on governor's default clock.
    pub fn new(quota: Quota) -> Self {
        Self::on_clock(quota, DefaultClock::default())
    }
}

impl Default for FailureLimit<GovernorBackend> {
    /// 20 failures per minute per address, in process.
    fn default() -> Self {
        Self::new(Quota::per_minute_const(20))
    }
}

impl<C> FailureLimit<GovernorBackend<C>>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// `quota` failures per address, in process, on `clock` (a
    /// [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn on_clock(quota: Quota, clock: C) -> Self {
        let start = clock.now();
        let now_clock = clock.clone();
        let now: Nanos = Box::new(move || now_clock.now().duration_since(start).as_u64());
        Self::build(GovernorBackend::on_clock(clock), quota, now)
    }
}

impl<B: RateLimitBackend> FailureLimit<B> {
    /// `quota` failures per address, counted by `backend` (for example a
    /// [`RedisRateLimiter`](crate::rate_limit::RedisRateLimiter) shared by every instance).
    pub fn backed_by(quota: Quota, backend: B) -> Self {
        let start = Instant::now();
        let now: Nanos = Box::new(move || nanos(start.elapsed()));
        Self::build(backend, quota, now)
    }

    fn build(backend: B, quota: Quota, now: Nanos) -> Self {
        let class = backend.register(&RateClass::per_client_ip(FAILURES, quota));
        Self {
            shared: Arc::new(Shared {
                backend,
                class,
                quota,
                blocked: DashMap::new(),
                now,
                schedule: Schedule::new(),
                backend_timeout: Duration::from_secs(1),
            }),
        }
    }

    /// Runs housekeeping of the blocked addresses at most once per `interval` (default
    /// 60 s); the backend runs its own.
    #[must_use]
    pub fn housekeeping_interval(self, interval: Duration) -> Self {
        self.shared.schedule.set_interval(interval);
        self
    }

    /// How many addresses state is held for (the backend's and the blocked ones).
    pub fn tracked(&self) -> usize {
        self.shared.backend.tracked() + self.shared.blocked.len()
    }

    /// Evicts idle state now.
    pub fn housekeeping(&self) {
        self.shared.backend.housekeeping();
        self.shared.sweep();
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<B: RateLimitBackend> Shared<B> {
    fn sweep(&self) {
        let now = (self.now)();
        self.blocked.retain(|_, until| *until > now);
        self.blocked.shrink_to_fit();
    }

    /// Blocks `client` when its failure went over the budget.
    fn note(&self, client: IpAddr, decided: Result<Decision, BackendError>) {
        match decided {
            Ok(decision) if !decision.is_allowed() => {
                let until = (self.now)().saturating_add(nanos(decision.retry_after()));
                self.blocked.insert(client, until);
            }
            Ok(_) => {}
            Err(_error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(target: "tower_api_key", error = %_error, "failed-authentication limiter failed");
            }
        }
    }
}

impl<B: RateLimitBackend> fmt::Debug for FailureLimit<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimit")
            .field("quota", &self.shared.quota)
            .field("blocked", &self.shared.blocked.len())
            .finish_non_exhaustive()
    }
}

/// What the failure-limit layer needs of a failure limit, backend erased.
pub(crate) trait FailureGate: Send + Sync + 'static {
    /// The client's limiter key, or the rejection when it is over budget.
    fn admit(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<IpAddr, AuthRejection>;
    /// Spends one failure of `client`'s budget (asynchronously when the backend needs it).
    fn record_failure(self: Arc<Self>, client: IpAddr);
}

impl<B: RateLimitBackend> FailureGate for Shared<B> {
    fn admit(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<IpAddr, AuthRejection> {
        let client = client_key_of(headers, extensions)?;
        let now = (self.now)();
        if self.schedule.claim(now) && !self.blocked.is_empty() {
            self.sweep();
        }
        if let Some(until) = self.blocked.get(&client).map(|until| *until) {
            if now < until {
                let wait = Duration::from_nanos(until - now);
                return Err(AuthRejection::rate_limited(RetryAfter::from_duration(wait)));
            }
            self.blocked.remove_if(&client, |_, until| *until <= now);
        }
        Ok(client)
    }

    fn record_failure(self: Arc<Self>, client: IpAddr) {
        let key = LimitKey::ClientIp(client);
        let now = caught(|| self.backend.check_now(&self.class, key, self.quota));
        match now {
            Ok(Some(decided)) => self.note(client, decided),
            Ok(None) => {
                // An asynchronous backend: counted off the response path.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let check = self.backend.check(&self.class, key, self.quota);
                        let decided =
                            guarded(self.backend_timeout, check)
                                .await
                                .unwrap_or_else(|_| {
                                    Err(BackendError::new("failure limiter did not answer"))
                                });
                        self.note(client, decided);
                    });
                }
            }
            Err(_panicked) => self.note(client, Err(BackendError::new("failure limiter panicked"))),
        }
    }
}

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock, Reference};
use http::{Extensions, HeaderMap};

use super::client_ip::{limiter_key, ClientIp};
use super::gcra::{decide, limiter, Limiter};
use super::housekeeping::{self, Schedule};
use super::Quota;
use crate::reject::{AuthRejection, RetryAfter};

/// Limits failed authentications per client address, for
/// [`AuthLayer::limit_failures`](crate::AuthLayer::limit_failures).
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
/// // AuthLayer::new(store).limit_failures(failures.clone())
/// ```
#[derive(Clone)]
pub struct FailureLimit<C: Clock + Clone = DefaultClock> {
    shared: Arc<Shared<C>>,
    client_ip: ClientIp,
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
            client_ip: ClientIp::default(),
        }
    }

    /// How the client's address is found (default: the peer, no proxy trusted).
    #[must_use]
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = client_ip;
        self
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
            .field("client_ip", &self.client_ip)
            .finish_non_exhaustive()
    }
}

/// What the authentication layer needs of a failure limit, clock erased.
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
        let client = self.client_ip.resolve(headers, extensions)?;
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

//! [`GovernorBackend`]: the in-process rate-limit backend, governor's GCRA with one keyed
//! limiter per class and quota, and [`GovernorClass`], the state of one class.

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::RateLimiter;

use super::backend::{Decision, LimitKey, OwnedKey, RateLimitBackend};
use super::housekeeping::Schedule;
use super::weighted::WeightedCells;
use super::Quota;
use super::{ClassName, KeyedBy, RateClass};
use crate::backend_error::BackendError;
use crate::key::Environment;
use crate::store::KeyId;

/// Limiter state keyed with foldhash: fast, and seeded per process, so client addresses
/// (which an attacker picks) cannot be aimed at one bucket.
pub(super) type Limiter<K, C> = RateLimiter<
    K,
    DashMapStateStore<K, foldhash::fast::RandomState>,
    C,
    StateInformationMiddleware,
>;

/// The in-process backend: GCRA from [`governor`], one keyed limiter per class and quota.
///
/// - State exists only for keys that made a request: authenticated key ids, or client
///   addresses for per-address classes. Invalid keys never create per-key state.
/// - Idle state is evicted by housekeeping (governor's `retain_recent` then
///   `shrink_to_fit`), run by the layer itself at most once per
///   [`housekeeping_interval`](Self::housekeeping_interval) (default 60 s), on Tokio's
///   blocking pool when a runtime is there, inline otherwise. Nothing to spawn.
/// - Time comes from a governor clock: `ManualClock` in tests.
pub struct GovernorBackend<C: Clock + Clone = DefaultClock> {
    shared: Arc<Shared<C>>,
}

impl<C: Clock + Clone> Clone for GovernorBackend<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<C: Clock + Clone> {
    clock: C,
    start: C::Instant,
    classes: Mutex<Vec<Arc<GovernorClass<C>>>>,
    schedule: Schedule,
}

impl GovernorBackend<DefaultClock> {
    /// A backend on governor's default (quanta) clock.
    pub fn new() -> Self {
        Self::on_clock(DefaultClock::default())
    }
}

impl Default for GovernorBackend<DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> GovernorBackend<C>
where
    C::Instant: Send + Sync,
{
    /// A backend on `clock` (e.g. `governor::clock::ManualClock`).
    pub fn on_clock(clock: C) -> Self {
        Self {
            shared: Arc::new(Shared {
                start: clock.now(),
                clock,
                classes: Mutex::new(Vec::new()),
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

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.shared.clock
    }

    fn classes(&self) -> Vec<Arc<GovernorClass<C>>> {
        self.shared
            .classes
            .lock()
            .map(|classes| classes.clone())
            .unwrap_or_default()
    }

    fn maybe_sweep(&self) {
        if self.shared.schedule.claim(self.now()) {
            let backend = self.clone();
            crate::support::sweep::run(move || backend.sweep());
        }
    }

    fn sweep(&self) {
        let now = self.now();
        for class in self.classes() {
            class.sweep();
            class.weighted.sweep(now);
        }
    }

    /// Nanoseconds since the backend started, on its clock.
    #[inline]
    fn now(&self) -> u64 {
        let shared = &self.shared;
        shared.clock.now().duration_since(shared.start).as_u64()
    }
}

impl<C> fmt::Debug for GovernorBackend<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GovernorBackend")
            .field("classes", &self.classes().len())
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

/// The governor state of one class (the backend's `Class`: opaque to users, who name
/// classes by [`ClassName`]).
pub struct GovernorClass<C: Clock + Clone> {
    name: ClassName,
    keyed_by: KeyedBy,
    quota: Quota,
    limiters: ClassLimiters<C>,
    /// Weighted requests ([`RequestCost`](super::RequestCost) above one unit).
    weighted: WeightedCells<OwnedKey>,
}

enum ClassLimiters<C: Clock + Clone> {
    /// Principals: API keys by id, sessions and owner classes by owner and environment.
    Principal {
        keys: Limiters<KeyId, C>,
        owners: Limiters<(Environment, Box<str>), C>,
    },
    ClientIp(Limiters<IpAddr, C>),
}

/// The class default's limiter, plus one per distinct override quota.
struct Limiters<K: Hash + Eq + Clone, C: Clock + Clone> {
    clock: C,
    default: Limiter<K, C>,
    /// The default quota's [`Quota::interval`], divided once here rather than per request.
    default_interval: Duration,
    overrides: DashMap<Quota, Limiter<K, C>>,
}

fn governor_quota(limit: Quota) -> governor::Quota {
    let requests: NonZeroU32 = limit.requests();
    // The interval is never zero: the window is at least 1 s and requests < 2^32.
    governor::Quota::with_period(limit.interval())
        .unwrap_or_else(|| governor::Quota::per_second(requests))
        .allow_burst(requests)
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Limiters<K, C> {
    fn new(quota: Quota, clock: &C) -> Self {
        Self {
            clock: clock.clone(),
            default: limiter(quota, clock),
            default_interval: quota.interval(),
            overrides: DashMap::new(),
        }
    }

    fn check(&self, key: &K, default: Quota, quota: Quota) -> Decision {
        if quota == default {
            decide(
                &self.default,
                key,
                quota,
                self.default_interval,
                &self.clock,
            )
        } else {
            let limiter = self
                .overrides
                .entry(quota)
                .or_insert_with(|| limiter(quota, &self.clock));
            decide(&limiter, key, quota, quota.interval(), &self.clock)
        }
    }

    fn sweep(&self) {
        self.default.retain_recent();
        self.default.shrink_to_fit();
        for limiter in self.overrides.iter() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.overrides.retain(|_, limiter| !limiter.is_empty());
    }

    fn len(&self) -> usize {
        self.default.len() + self.overrides.iter().map(|l| l.len()).sum::<usize>()
    }
}

pub(super) fn limiter<K: Hash + Eq + Clone, C: Clock + Clone>(
    quota: Quota,
    clock: &C,
) -> Limiter<K, C> {
    RateLimiter::<K, _, C, StateInformationMiddleware>::new(
        governor_quota(quota),
        DashMapStateStore::with_hasher(foldhash::fast::RandomState::default()),
        clock.clone(),
    )
}

pub(super) fn decide<K: Hash + Eq + Clone, C: Clock + Clone>(
    limiter: &Limiter<K, C>,
    key: &K,
    quota: Quota,
    per_request: Duration,
    clock: &C,
) -> Decision {
    match limiter.check_key(key) {
        Ok(state) => {
            let remaining = state.remaining_burst_capacity();
            let used = quota.requests().get().saturating_sub(remaining);
            Decision::allowed(quota, remaining, per_request * used)
        }
        Err(not_until) => {
            let retry_after: Duration = not_until.wait_time_from(clock.now());
            let reset = retry_after + per_request * quota.requests().get().saturating_sub(1);
            Decision::limited(quota, retry_after, reset)
        }
    }
}

impl<C: Clock + Clone> GovernorClass<C> {
    fn sweep(&self) {
        match &self.limiters {
            ClassLimiters::Principal { keys, owners } => {
                keys.sweep();
                owners.sweep();
            }
            ClassLimiters::ClientIp(l) => l.sweep(),
        }
    }

    fn len(&self) -> usize {
        (match &self.limiters {
            ClassLimiters::Principal { keys, owners } => keys.len() + owners.len(),
            ClassLimiters::ClientIp(l) => l.len(),
        }) + self.weighted.len()
    }
}

impl<C: Clock + Clone> fmt::Debug for GovernorClass<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GovernorClass")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .field("tracked", &self.len())
            .finish()
    }
}

impl<C> RateLimitBackend for GovernorBackend<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    type Class = Arc<GovernorClass<C>>;

    /// One state per class, however many layers use it: a class's budget is per key, not
    /// per route.
    fn register(&self, class: &RateClass) -> Self::Class {
        let mut classes = self
            .shared
            .classes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let same = |state: &&Arc<GovernorClass<C>>| {
            state.name == *class.name()
                && state.keyed_by == class.keyed_by()
                && state.quota == class.quota()
        };
        if let Some(state) = classes.iter().find(same) {
            return Arc::clone(state);
        }
        let limiters = match class.keyed_by() {
            KeyedBy::ApiKey | KeyedBy::Owner => ClassLimiters::Principal {
                keys: Limiters::new(class.quota(), self.clock()),
                owners: Limiters::new(class.quota(), self.clock()),
            },
            KeyedBy::ClientIp => {
                ClassLimiters::ClientIp(Limiters::new(class.quota(), self.clock()))
            }
        };
        let state = Arc::new(GovernorClass {
            name: class.name().clone(),
            keyed_by: class.keyed_by(),
            quota: class.quota(),
            limiters,
            weighted: WeightedCells::new(),
        });
        classes.push(Arc::clone(&state));
        state
    }

    async fn check(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
    ) -> Result<Decision, BackendError> {
        self.check_now(class, key, quota)
            .unwrap_or_else(|| Err(BackendError::new("key kind does not match the class")))
    }

    #[inline]
    fn check_now(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
    ) -> Option<Result<Decision, BackendError>> {
        self.maybe_sweep();
        let decision = match (&class.limiters, key) {
            (ClassLimiters::Principal { keys, .. }, LimitKey::ApiKey(id)) => {
                keys.check(id, class.quota, quota)
            }
            (ClassLimiters::Principal { owners, .. }, LimitKey::Owner { owner, environment }) => {
                owners.check(&(environment, owner.into()), class.quota, quota)
            }
            (ClassLimiters::ClientIp(l), LimitKey::ClientIp(ip)) => {
                l.check(&ip, class.quota, quota)
            }
            _ => return Some(Err(BackendError::new("key kind does not match the class"))),
        };
        Some(Ok(decision))
    }

    async fn check_units(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
        units: NonZeroU32,
    ) -> Result<Decision, BackendError> {
        self.check_units_now(class, key, quota, units)
            .unwrap_or_else(|| Err(BackendError::new("key kind does not match the class")))
    }

    fn check_units_now(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
        units: NonZeroU32,
    ) -> Option<Result<Decision, BackendError>> {
        if units.get() == 1 {
            return self.check_now(class, key, quota);
        }
        self.maybe_sweep();
        let subject = OwnedKey::from(key);
        Some(Ok(class.weighted.check(&subject, quota, units, self.now())))
    }

    async fn refund(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
        units: NonZeroU32,
    ) -> Result<(), BackendError> {
        self.refund_now(class, key, quota, units).unwrap_or(Ok(()))
    }

    fn refund_now(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
        units: NonZeroU32,
    ) -> Option<Result<(), BackendError>> {
        class
            .weighted
            .refund(&OwnedKey::from(key), quota, units, self.now());
        Some(Ok(()))
    }

    fn housekeeping(&self) {
        self.sweep();
    }

    fn tracked(&self) -> usize {
        self.classes().iter().map(|c| c.len()).sum()
    }
}

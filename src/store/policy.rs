//! [`KeyPolicy`]: what a store accepts, how many keys an owner may hold, and its clock.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use crate::clock::{Clock, SystemClock};
use crate::key::KeyFamilies;

use super::plan_policy::PlanPolicy;

/// A store's rules, shared by everything that reads the store: the key families it issues
/// and the [`AuthLayer`](crate::AuthLayer) accepts, the most active keys an owner may
/// hold, and the clock timestamps and expiry are read from.
///
/// One policy per store means issuing and verifying cannot disagree: a key the store
/// issued always parses in the layer in front of it, and a family the store does not
/// accept can neither be issued nor rotated into.
///
/// ```
/// use std::num::NonZeroUsize;
/// use tower_api_key::clock::ManualClock;
/// use tower_api_key::store::KeyPolicy;
///
/// let policy = tower_api_key::forg::key_policy()
///     .max_active_per_owner(NonZeroUsize::new(3).unwrap())
///     .clock(ManualClock::default());
/// assert_eq!(policy.max_active(), NonZeroUsize::new(3).unwrap());
/// ```
#[derive(Clone)]
#[must_use]
pub struct KeyPolicy {
    families: KeyFamilies,
    max_active: NonZeroUsize,
    clock: Arc<dyn Clock>,
    plans: Option<Arc<dyn PlanPolicy>>,
    retention: Duration,
    rotation_age: Option<Duration>,
    max_lifetime: Option<Duration>,
}

/// How long a revoked or expired key stays listed (for the audit view) before its store
/// deletes it: 30 days.
const KEY_RETENTION: Duration = Duration::from_secs(30 * 86_400);

const TEN: NonZeroUsize = match NonZeroUsize::new(10) {
    Some(n) => n,
    None => unreachable!(),
};

impl Default for KeyPolicy {
    /// No key family until the application registers its own
    /// ([`families`](Self::families); the FORG ones: [`forg::key_policy`](crate::forg::key_policy)),
    /// 10 active keys per owner, the system clock, revoked and expired keys deleted 30 days
    /// after they stopped authenticating.
    fn default() -> Self {
        Self {
            families: KeyFamilies::default(),
            max_active: TEN,
            clock: Arc::new(SystemClock),
            plans: None,
            retention: KEY_RETENTION,
            rotation_age: None,
            max_lifetime: None,
        }
    }
}

const HUNDRED: NonZeroUsize = match NonZeroUsize::new(100) {
    Some(n) => n,
    None => unreachable!(),
};

impl KeyPolicy {
    /// The policy of a session store ([`Sessions`](crate::session::Sessions)): only the
    /// [`KeyFamily::SESSION`](crate::key::KeyFamily::SESSION) family, 100 live sessions
    /// per owner (a login at the limit ends the oldest), the system clock, and no retention:
    /// an ended or expired session is deleted, not kept.
    pub fn sessions() -> Self {
        Self {
            families: KeyFamilies::only([crate::key::KeyFamily::SESSION])
                .expect("one family cannot overlap"),
            max_active: HUNDRED,
            clock: Arc::new(SystemClock),
            plans: None,
            retention: Duration::ZERO,
            rotation_age: None,
            max_lifetime: None,
        }
    }

    /// The default policy, shared (what a [`KeyStore`](super::KeyStore) without a policy
    /// of its own answers).
    pub fn default_ref() -> &'static Self {
        static DEFAULT: LazyLock<KeyPolicy> = LazyLock::new(KeyPolicy::default);
        &DEFAULT
    }

    /// The families keys are issued in and accepted from.
    pub fn families(mut self, families: KeyFamilies) -> Self {
        self.families = families;
        self
    }

    /// At most `limit` active keys per owner; revoked and expired keys do not count.
    pub fn max_active_per_owner(mut self, limit: NonZeroUsize) -> Self {
        self.max_active = limit;
        self
    }

    /// Timestamps, expiry and revocation times from `clock` (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Consults `plans` before issuing or rotating a key: an owner whose plan does not
    /// allow the key's environment gets [`ManageError::PlanRequired`](super::ManageError)
    /// (default: every plan allows everything).
    pub fn plans(mut self, plans: impl PlanPolicy) -> Self {
        self.plans = Some(Arc::new(plans));
        self
    }

    /// How long a record that can no longer authenticate (revoked or expired, see
    /// [`KeyRecord::refused_since`](super::KeyRecord::refused_since)) stays in the store,
    /// listed for the audit view, before it is deleted (default 30 days; sessions: none).
    /// Deletion happens as the store is used (each issue purges the owner's records past
    /// retention; each store also sweeps the others, see its docs); `Duration::MAX` keeps
    /// everything.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Keys older than `age` are due for rotation ("Rotate keys every 90 days"): the
    /// management API marks them `rotation_due` and the dashboard shows it. Nothing is
    /// refused for it (default: never due).
    pub fn rotation_age(mut self, age: Duration) -> Self {
        self.rotation_age = Some(age);
        self
    }

    /// No key lives longer than `lifetime`: a key issued or rotated without an expiry, or
    /// with a later one, expires `lifetime` after it was issued (default: no limit).
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// Whether `record` is active at `now` and older than the [rotation
    /// age](Self::rotation_age).
    pub fn rotation_due<S: crate::scope::Scope>(
        &self,
        record: &super::KeyRecord<S>,
        now: SystemTime,
    ) -> bool {
        self.rotation_age.is_some_and(|age| {
            record.status_at(now) == super::KeyStatus::Active
                && now
                    .duration_since(record.created_at())
                    .is_ok_and(|old| old >= age)
        })
    }

    /// The expiry of a key issued at `now` that asked for `requested`: the earlier of it
    /// and the [maximum lifetime](Self::max_lifetime).
    pub(crate) fn expiry(
        &self,
        now: SystemTime,
        requested: Option<SystemTime>,
    ) -> Option<SystemTime> {
        let latest = self.max_lifetime.and_then(|max| now.checked_add(max));
        match (requested, latest) {
            (Some(requested), Some(latest)) => Some(requested.min(latest)),
            (requested, latest) => requested.or(latest),
        }
    }

    /// The rotation age, if keys are ever due for rotation.
    pub fn rotation_period(&self) -> Option<Duration> {
        self.rotation_age
    }

    /// The retention period.
    pub fn retention_period(&self) -> Duration {
        self.retention
    }

    /// Records refused since before this time are past retention at `now` (`None`: none
    /// can be).
    pub fn purge_before(&self, now: SystemTime) -> Option<SystemTime> {
        now.checked_sub(self.retention)
    }

    /// The plan policy, if any.
    pub fn plan_policy(&self) -> Option<&dyn PlanPolicy> {
        self.plans.as_deref()
    }

    /// The accepted families.
    pub fn accepted_families(&self) -> &KeyFamilies {
        &self.families
    }

    /// The most active keys an owner may hold.
    pub fn max_active(&self) -> NonZeroUsize {
        self.max_active
    }

    /// The current time on the policy's clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }
}

impl fmt::Debug for KeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPolicy")
            .field("families", &self.families)
            .field("max_active", &self.max_active)
            .field("plans", &self.plans.is_some())
            .field("retention", &self.retention)
            .field("rotation_age", &self.rotation_age)
            .field("max_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

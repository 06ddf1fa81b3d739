use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use super::Quota;
use super::RateClass;
use crate::backend_error::BackendError;
use crate::key::Environment;
use crate::principal::{CredentialKind, Principal};
use crate::store::KeyId;

/// What a request is limited by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKey<'a> {
    /// The authenticated key's public id (never the secret).
    ApiKey(&'a KeyId),
    /// The client's address (IPv6 by /64).
    ClientIp(IpAddr),
    /// An owner, for one environment: browser sessions (a user cannot multiply a budget
    /// by logging in again), and classes made with
    /// [`RateClass::per_owner`](super::RateClass::per_owner).
    Owner {
        /// The owner.
        owner: &'a str,
        /// Test and live never share a budget.
        environment: Environment,
    },
}

impl<'a> LimitKey<'a> {
    /// Who `principal` counts as: its owner and environment for a class keyed `by_owner`
    /// and for every browser session (a user cannot multiply a budget by logging in
    /// again); otherwise its key's lineage (a rotated key, during its grace too, shares
    /// its predecessor's state).
    #[inline]
    pub(crate) fn of_principal(principal: &'a Principal, by_owner: bool) -> Self {
        if by_owner || principal.kind() == CredentialKind::Session {
            LimitKey::Owner {
                owner: principal.owner(),
                environment: principal.environment(),
            }
        } else {
            LimitKey::ApiKey(principal.lineage())
        }
    }
}

/// A [`LimitKey`] that owns its parts: for state kept past the request (the asynchronous
/// check, a settlement, weighted cells, in-flight counts).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OwnedKey {
    ApiKey(KeyId),
    ClientIp(IpAddr),
    Owner(Box<str>, Environment),
}

impl OwnedKey {
    pub(crate) fn borrow(&self) -> LimitKey<'_> {
        match self {
            OwnedKey::ApiKey(id) => LimitKey::ApiKey(id),
            OwnedKey::ClientIp(ip) => LimitKey::ClientIp(*ip),
            OwnedKey::Owner(owner, environment) => LimitKey::Owner {
                owner,
                environment: *environment,
            },
        }
    }
}

impl<'a> From<LimitKey<'a>> for OwnedKey {
    fn from(key: LimitKey<'a>) -> Self {
        match key {
            LimitKey::ApiKey(id) => OwnedKey::ApiKey(id.clone()),
            LimitKey::ClientIp(ip) => OwnedKey::ClientIp(ip),
            LimitKey::Owner { owner, environment } => OwnedKey::Owner(owner.into(), environment),
        }
    }
}

/// A backend's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    quota: Quota,
    remaining: u32,
    reset_after: Duration,
    retry_after: Duration,
}

impl Decision {
    /// The request may go on; `remaining` more fit now, the quota is whole again in
    /// `reset_after`.
    pub fn allowed(quota: Quota, remaining: u32, reset_after: Duration) -> Self {
        Self {
            allowed: true,
            quota,
            remaining,
            reset_after,
            retry_after: Duration::ZERO,
        }
    }

    /// The request is refused; one may succeed after `retry_after`.
    pub fn limited(quota: Quota, retry_after: Duration, reset_after: Duration) -> Self {
        Self {
            allowed: false,
            quota,
            remaining: 0,
            reset_after,
            retry_after,
        }
    }

    /// Whether the request may go on.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The quota the decision was made under.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Requests that would still be allowed now.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Time until the whole quota is available again.
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    /// Time until a request can succeed (zero when allowed).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// Where rate-limit state lives: the seam between [`RateLimitLayer`](super::RateLimitLayer)
/// and an engine. [`GovernorBackend`](super::GovernorBackend) keeps it in process; a
/// shared backend (one decision for several service instances) implements the same trait.
///
/// A backend is a cheap handle (`Clone`, state behind an `Arc`).
pub trait RateLimitBackend: Clone + Send + Sync + 'static {
    /// The backend's per-class state, made once when a layer is built.
    type Class: Clone + Send + Sync + 'static;

    /// Prepares the state of `class`.
    fn register(&self, class: &RateClass) -> Self::Class;

    /// Counts one request of `key` under `quota` (the class default or the key's override)
    /// and decides. Write it as `async fn`.
    fn check(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
    ) -> impl Future<Output = Result<Decision, BackendError>> + Send;

    /// The decision, when it can be made without waiting. `None` means "ask
    /// [`check`](Self::check)". The default never answers.
    fn check_now(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
    ) -> Option<Result<Decision, BackendError>> {
        let _ = (class, key, quota);
        None
    }

    /// Counts `units` of `key` under `quota` at once (a weighted class, see
    /// [`RequestCost`](super::RequestCost)) and decides; the decision's `remaining` is in
    /// units. The default handles one unit ([`check`](Self::check)) and fails otherwise:
    /// a backend that predates weighted classes refuses them by its
    /// [`OnBackendError`](super::OnBackendError) policy, never counts them as one.
    fn check_units(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
        units: NonZeroU32,
    ) -> impl Future<Output = Result<Decision, BackendError>> + Send {
        let one = (units.get() == 1).then(|| self.check(class, key, quota));
        async move {
            match one {
                Some(check) => check.await,
                None => Err(BackendError::new(
                    "this rate-limit backend does not count weighted requests",
                )),
            }
        }
    }

    /// [`check_units`](Self::check_units) without waiting, where it can. The default: one
    /// unit as [`check_now`](Self::check_now), otherwise "ask `check_units`".
    fn check_units_now(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
        units: NonZeroU32,
    ) -> Option<Result<Decision, BackendError>> {
        if units.get() == 1 {
            self.check_now(class, key, quota)
        } else {
            None
        }
    }

    /// Gives `units` counted earlier back to `key` (a reservation larger than what the
    /// request cost), within the window they were counted in: never more than a full
    /// quota. The default gives nothing back (the reservation is kept: safe).
    fn refund(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
        units: NonZeroU32,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = (class, key, quota, units);
        std::future::ready(Ok(()))
    }

    /// [`refund`](Self::refund) without waiting, where it can (`None`: ask `refund`).
    fn refund_now(
        &self,
        class: &Self::Class,
        key: LimitKey<'_>,
        quota: Quota,
        units: NonZeroU32,
    ) -> Option<Result<(), BackendError>> {
        let _ = (class, key, quota, units);
        None
    }

    /// Drops state that no longer matters (idle keys). Backends that expire state by
    /// themselves do nothing.
    fn housekeeping(&self) {}

    /// How many keys and addresses the backend holds state for, where it knows.
    fn tracked(&self) -> usize {
        0
    }
}

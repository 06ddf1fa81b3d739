//! [`PlanPolicy`]: what the key policy asks of an owner's plan when a key is issued or
//! rotated (and the plan layer per request), and [`Plan`], the tiers it ranks. Vocabulary:
//! implemented by `usage::PlanTable` or the application's billing.

use std::future::Future;
use std::pin::Pin;

use super::StoreError;
use crate::key::Environment;

/// What a plan check answers.
pub type PlanAnswer<'a> = Pin<Box<dyn Future<Output = Result<bool, StoreError>> + Send + 'a>>;

/// Whether `owner`'s plan allows keys of `environment`, and whether it is at least a given
/// [`Plan`]. The application implements it over its billing data (cache it there: it is
/// asked once per issue or rotation, and by [`PlanLayer`](crate::usage::PlanLayer) once
/// per cache TTL); a failure is a store failure, so nothing is issued and the request is
/// 503.
pub trait PlanPolicy: Send + Sync + 'static {
    /// `Ok(true)` when `owner` may hold keys of `environment`.
    fn allows<'a>(&'a self, owner: &'a str, environment: Environment) -> PlanAnswer<'a>;

    /// `Ok(true)` when `owner` is on `plan` or higher: what a route that
    /// [requires](crate::usage::PlanLayer::require) a plan asks, for every credential.
    /// The default fails (so such a route answers 503, never lets a request through
    /// unchecked): implement it where the policy knows plans.
    fn meets<'a>(&'a self, owner: &'a str, plan: Plan) -> PlanAnswer<'a> {
        let _ = (owner, plan);
        Box::pin(std::future::ready(Err(StoreError::new(
            super::StoreErrorKind::Other,
            "this PlanPolicy does not rank plans: implement PlanPolicy::meets",
        ))))
    }
}

/// A plan tier, ordered: `Free < Pro < Team < Enterprise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Plan {
    /// The free tier.
    Free,
    /// Pro (also the 14-day trial:
    /// [`PlanTable::start_trial`](crate::usage::PlanTable::start_trial)).
    Pro,
    /// Team.
    Team,
    /// Enterprise.
    Enterprise,
}

impl Plan {
    /// A short name: `"free"`, `"pro"`, `"team"` or `"enterprise"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Team => "team",
            Self::Enterprise => "enterprise",
        }
    }

    /// The name as a title: `"Free"`, `"Pro"`, `"Team"` or `"Enterprise"`.
    pub const fn title(self) -> &'static str {
        match self {
            Self::Free => "Free",
            Self::Pro => "Pro",
            Self::Team => "Team",
            Self::Enterprise => "Enterprise",
        }
    }
}

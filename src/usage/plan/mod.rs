//! [`PlanPolicy`]: whether an owner's plan allows a key of an environment ("live keys
//! require Team plan or higher"), consulted when keys are issued and rotated.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use crate::key::Environment;

mod layer;

pub use layer::{PlanLayer, PlanService, ResponseFuture};

use crate::store::StoreError;

/// What a plan check answers.
pub type PlanAnswer<'a> = Pin<Box<dyn Future<Output = Result<bool, StoreError>> + Send + 'a>>;

/// Whether `owner`'s plan allows keys of `environment`. The application implements it over
/// its billing data (cache it there: it is asked once per issue or rotation); a failure is a
/// store failure, so nothing is issued.
pub trait PlanPolicy: Send + Sync + 'static {
    /// `Ok(true)` when `owner` may hold keys of `environment`.
    fn allows<'a>(&'a self, owner: &'a str, environment: Environment) -> PlanAnswer<'a>;
}

/// A plan tier, ordered: `Free < Pro < Team < Enterprise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Plan {
    /// The free tier.
    Free,
    /// Pro (also the 14-day trial).
    Pro,
    /// Team.
    Team,
    /// Enterprise.
    Enterprise,
}

/// A table-driven [`PlanPolicy`]: each owner's plan (unlisted owners are on `default`) and
/// the least plan each environment requires.
///
/// ```
/// use tower_api_key::key::Environment;
/// use tower_api_key::usage::{Plan, PlanTable};
///
/// // The FORG rule: live keys require Team or higher.
/// let plans = PlanTable::new(Plan::Free)
///     .require(Environment::Live, Plan::Team)
///     .owner("org_big", Plan::Enterprise);
/// assert!(plans.plan_of("org_big") >= Plan::Team);
/// assert_eq!(plans.plan_of("org_small"), Plan::Free);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct PlanTable {
    owners: HashMap<String, Plan>,
    default: Plan,
    required: HashMap<Environment, Plan>,
}

impl PlanTable {
    /// Every owner on `default`, every environment allowed.
    pub fn new(default: Plan) -> Self {
        Self {
            owners: HashMap::new(),
            default,
            required: HashMap::new(),
        }
    }

    /// `owner` is on `plan`.
    pub fn owner(mut self, owner: impl Into<String>, plan: Plan) -> Self {
        self.owners.insert(owner.into(), plan);
        self
    }

    /// Keys of `environment` require `plan` or higher.
    pub fn require(mut self, environment: Environment, plan: Plan) -> Self {
        self.required.insert(environment, plan);
        self
    }

    /// `owner`'s plan.
    pub fn plan_of(&self, owner: &str) -> Plan {
        self.owners.get(owner).copied().unwrap_or(self.default)
    }
}

impl PlanPolicy for PlanTable {
    fn allows<'a>(&'a self, owner: &'a str, environment: Environment) -> PlanAnswer<'a> {
        let allowed = self
            .required
            .get(&environment)
            .is_none_or(|required| self.plan_of(owner) >= *required);
        Box::pin(std::future::ready(Ok(allowed)))
    }
}

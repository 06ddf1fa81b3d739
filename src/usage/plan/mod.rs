//! [`PlanPolicy`]: whether an owner's plan allows a key of an environment ("live keys
//! require Team plan or higher"), consulted when keys are issued and rotated.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

use crate::clock::{Clock, SystemClock};
use crate::support::sweep::SweepAt;

use crate::key::Environment;

mod layer;

pub use layer::{PlanLayer, PlanService, ResponseFuture};

pub use crate::store::plan_policy::{Plan, PlanAnswer, PlanPolicy};

/// A table-driven [`PlanPolicy`]: each owner's plan (unlisted owners are on `default`),
/// trials that end at a time, and the least plan each environment requires. Clones share
/// one table, which the application changes while serving (an upgrade, a new account's
/// trial); the checks read the time from the table's [`Clock`] (fake in tests), so when a
/// trial ends its owner is on `default` again: keys of environments `default` does not
/// allow are refused at issue, at rotation and, through [`PlanLayer`], per request (403
/// `plan_required`).
///
/// ```
/// use std::time::Duration;
/// use tower_api_key::clock::ManualClock;
/// use tower_api_key::key::Environment;
/// use tower_api_key::usage::{Plan, PlanTable};
///
/// // The FORG rule: live keys require Team or higher.
/// let clock = ManualClock::default();
/// let plans = PlanTable::new(Plan::Free)
///     .require(Environment::Live, Plan::Team)
///     .owner("org_big", Plan::Enterprise)
///     .clock(clock.clone());
/// assert!(plans.plan_of("org_big") >= Plan::Team);
/// assert_eq!(plans.plan_of("org_small"), Plan::Free);
/// // A new account: 14 days of Team, then Free again.
/// plans.start_trial("org_new", Plan::Team, Duration::from_secs(14 * 86_400));
/// assert_eq!(plans.plan_of("org_new"), Plan::Team);
/// clock.advance(Duration::from_secs(14 * 86_400));
/// assert_eq!(plans.plan_of("org_new"), Plan::Free);
/// ```
#[derive(Clone)]
#[must_use]
pub struct PlanTable {
    table: Arc<Table>,
}

#[derive(Clone)]
struct Table {
    owners: DashMap<String, Assignment>,
    /// When trials that ended are swept (as the table grows: O(1) per trial, amortised),
    /// for owners who never come back to be read.
    sweep_at: Arc<SweepAt>,
    default: Plan,
    required: HashMap<Environment, Plan>,
    clock: Arc<dyn Clock>,
}

/// An owner's plan, until `ends` when it is a trial.
#[derive(Clone, Copy, Debug)]
struct Assignment {
    plan: Plan,
    ends: Option<SystemTime>,
}

impl PlanTable {
    /// Every owner on `default`, every environment allowed, the system clock.
    pub fn new(default: Plan) -> Self {
        Self {
            table: Arc::new(Table {
                owners: DashMap::new(),
                sweep_at: Arc::new(SweepAt::new()),
                default,
                required: HashMap::new(),
                clock: Arc::new(SystemClock),
            }),
        }
    }

    /// `owner` is on `plan` (a builder; [`set_owner`](Self::set_owner) while serving).
    pub fn owner(self, owner: impl Into<String>, plan: Plan) -> Self {
        self.set_owner(owner, plan);
        self
    }

    /// Keys of `environment` require `plan` or higher (a builder: clones made before it
    /// keep the old rules).
    pub fn require(mut self, environment: Environment, plan: Plan) -> Self {
        Arc::make_mut(&mut self.table)
            .required
            .insert(environment, plan);
        self
    }

    /// Trials end, and plans are read, on `clock` (default: the system clock; a builder).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        Arc::make_mut(&mut self.table).clock = Arc::new(clock);
        self
    }

    /// `owner` is on `plan` from now on, with no end (an upgrade or a downgrade; it ends a
    /// trial).
    pub fn set_owner(&self, owner: impl Into<String>, plan: Plan) {
        let assignment = Assignment { plan, ends: None };
        self.table.owners.insert(owner.into(), assignment);
    }

    /// `owner` is on `plan` for `length` from now ("New accounts receive a 14-day Pro
    /// trial"), then on the default plan. Answers when the trial ends (a `length` past
    /// 9999-12-31T23:59:59Z ends it then).
    pub fn start_trial(
        &self,
        owner: impl Into<String>,
        plan: Plan,
        length: std::time::Duration,
    ) -> SystemTime {
        let latest = crate::support::timestamp::latest();
        let ends = self
            .table
            .clock
            .now()
            .checked_add(length)
            .map_or(latest, |ends| ends.min(latest));
        let assignment = Assignment {
            plan,
            ends: Some(ends),
        };
        let owners = &self.table.owners;
        if self.table.sweep_at.due(owners.len()) {
            let now = self.table.clock.now();
            owners.retain(|_, assignment| assignment.ends.is_none_or(|ends| ends > now));
            self.table.sweep_at.swept(owners.len());
        }
        owners.insert(owner.into(), assignment);
        ends
    }

    /// `owner`'s plan now.
    pub fn plan_of(&self, owner: &str) -> Plan {
        self.assignment(owner)
            .map_or(self.table.default, |assignment| assignment.plan)
    }

    /// When `owner`'s trial ends, while one runs.
    pub fn trial_ends_at(&self, owner: &str) -> Option<SystemTime> {
        self.assignment(owner)
            .and_then(|assignment| assignment.ends)
    }

    /// `owner`'s assignment now; an ended trial is removed (so the table holds what is
    /// current, not every trial ever started).
    fn assignment(&self, owner: &str) -> Option<Assignment> {
        let now = self.table.clock.now();
        let assignment = *self.table.owners.get(owner)?;
        match assignment.ends {
            Some(ends) if ends <= now => {
                self.table
                    .owners
                    .remove_if(owner, |_, current| current.ends == Some(ends));
                None
            }
            _ => Some(assignment),
        }
    }
}

impl fmt::Debug for PlanTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanTable")
            .field("default", &self.table.default)
            .field("required", &self.table.required)
            .field("owners", &self.table.owners.len())
            .finish_non_exhaustive()
    }
}

impl PlanPolicy for PlanTable {
    fn allows<'a>(&'a self, owner: &'a str, environment: Environment) -> PlanAnswer<'a> {
        let allowed = self
            .table
            .required
            .get(&environment)
            .is_none_or(|required| self.plan_of(owner) >= *required);
        Box::pin(std::future::ready(Ok(allowed)))
    }

    fn meets<'a>(&'a self, owner: &'a str, plan: Plan) -> PlanAnswer<'a> {
        Box::pin(std::future::ready(Ok(self.plan_of(owner) >= plan)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    /// Issue 36.3: trials of owners who never came back stayed in the table (an ended
    /// trial was removed only when its owner was read).
    #[test]
    fn ended_trials_are_swept_as_the_table_grows() {
        let clock = ManualClock::default();
        let plans = PlanTable::new(Plan::Free).clock(clock.clone());
        for round in 0..10 {
            for i in 0..10_000 {
                plans.start_trial(
                    format!("org_{round}_{i}"),
                    Plan::Pro,
                    Duration::from_secs(60),
                );
            }
            clock.advance(Duration::from_secs(61));
        }
        assert!(
            plans.table.owners.len() < 30_000,
            "{}",
            plans.table.owners.len()
        );
    }
}

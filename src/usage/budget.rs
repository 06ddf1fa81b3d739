//! [`BudgetPolicy`]: how much a principal may spend per period, and [`Budgets`], the
//! table-driven one.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use foldhash::fast::RandomState;

use super::period::Period;
use crate::key::Environment;
use crate::principal::{CredentialKind, Principal};
use crate::store::KeyId;

/// Whose counter a request spends from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BudgetPer {
    /// All of an owner's keys (and sessions) of one environment share one budget: a user
    /// cannot multiply it by minting keys. The default.
    #[default]
    Owner,
    /// Each key has a budget of its own.
    Key,
}

/// A principal's budget: the cap, and the period it is counted in when that is not the
/// environment's (see [`SpendCaps::period`](super::SpendCaps::period)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Allowance {
    /// The most the period may spend, in the application's cost units.
    pub cap: u64,
    /// The period (`None`: the environment's).
    pub period: Option<Period>,
}

/// The cap, in the application's cost units (cents, tokens, credits), for a principal's
/// requests per period; `None` means uncapped (nothing is counted). Asked on every request:
/// keep it a lookup.
pub trait BudgetPolicy: Send + Sync + 'static {
    /// The cap for `principal`.
    fn cap(&self, principal: &Principal) -> Option<u64>;

    /// The cap for `principal` and, when it differs from the environment's, the period
    /// (one-time credits: [`Period::Lifetime`]). What the layer asks; the default is
    /// [`cap`](Self::cap) in the environment's period.
    fn allowance(&self, principal: &Principal) -> Option<Allowance> {
        self.cap(principal)
            .map(|cap| Allowance { cap, period: None })
    }
}

impl<F> BudgetPolicy for F
where
    F: Fn(&Principal) -> Option<u64> + Send + Sync + 'static,
{
    fn cap(&self, principal: &Principal) -> Option<u64> {
        self(principal)
    }
}

/// Caps by environment, with overrides per owner (the plan's amount) and per key, which
/// the application can change at run time (clones share the table): a key override wins
/// over its owner's, which wins over the environment's default. A key override may be
/// one-time credits ([`set_key_credits`](Self::set_key_credits)): a total that never
/// resets.
///
/// ```
/// use tower_api_key::key::Environment;
/// use tower_api_key::usage::Budgets;
///
/// let budgets = Budgets::new()
///     .default_cap(Environment::Live, 10_000)
///     .default_cap(Environment::Test, 100);
/// // An upgrade, later, while serving:
/// budgets.set_owner_cap("org_big", Environment::Live, Some(1_000_000));
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct Budgets {
    table: Arc<Table>,
}

#[derive(Clone, Default)]
struct Table {
    defaults: [Option<u64>; 2],
    // foldhash (seeded per map): the table is read on every request.
    owners: [DashMap<String, Option<u64>, RandomState>; 2],
    keys: DashMap<KeyId, Option<Allowance>, RandomState>,
    // Whether each map was ever written: most applications set defaults or owner caps
    // only, and a lookup in an empty `DashMap` still hashes and locks a shard.
    owners_written: [Written; 2],
    keys_written: Written,
}

/// Set before a map's first insert, never cleared: a request that finds it unset runs
/// before any override exists (an insert concurrent with the request races either way).
#[derive(Default)]
struct Written(AtomicBool);

impl Written {
    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Clone for Written {
    fn clone(&self) -> Self {
        Self(AtomicBool::new(self.get()))
    }
}

impl Budgets {
    /// Every principal uncapped until a cap is set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cap of `environment`'s principals without an override (a builder: clones made
    /// before it keep the old default).
    pub fn default_cap(mut self, environment: Environment, cap: u64) -> Self {
        Arc::make_mut(&mut self.table).defaults[environment.slot()] = Some(cap);
        self
    }

    /// `owner`'s cap for `environment` from now on (`None`: uncapped).
    pub fn set_owner_cap(
        &self,
        owner: impl Into<String>,
        environment: Environment,
        cap: Option<u64>,
    ) {
        self.table.owners_written[environment.slot()].set();
        self.table.owners[environment.slot()].insert(owner.into(), cap);
    }

    /// `key`'s cap from now on (`None`: uncapped), over its owner's, in the environment's
    /// period. It holds for the keys rotated from `key` too (its lineage,
    /// [`KeyRecord::lineage`](crate::store::KeyRecord::lineage)).
    pub fn set_key_cap(&self, key: KeyId, cap: Option<u64>) {
        let allowance = cap.map(|cap| Allowance { cap, period: None });
        self.table.keys_written.set();
        self.table.keys.insert(key, allowance);
    }

    /// `key` may spend `total` units over its whole life, never reset (a trial key's
    /// credits): [`Period::Lifetime`]. Rotation does not refill them: the keys rotated
    /// from `key` spend from the same credits. Counted on the key's own counter with
    /// [`BudgetPer::Key`], on its owner's lifetime counter with [`BudgetPer::Owner`].
    pub fn set_key_credits(&self, key: KeyId, total: u64) {
        let allowance = Allowance {
            cap: total,
            period: Some(Period::Lifetime),
        };
        self.table.keys_written.set();
        self.table.keys.insert(key, Some(allowance));
    }

    /// Removes `owner`'s overrides (every environment); its keys' overrides stay.
    pub fn clear_owner(&self, owner: &str) {
        for owners in &self.table.owners {
            owners.remove(owner);
        }
    }
}

impl BudgetPolicy for Budgets {
    fn cap(&self, principal: &Principal) -> Option<u64> {
        self.allowance(principal).map(|allowance| allowance.cap)
    }

    fn allowance(&self, principal: &Principal) -> Option<Allowance> {
        let table = &*self.table;
        // A session is no key: it has no key overrides, whatever its record.
        if table.keys_written.get() && principal.kind() == CredentialKind::ApiKey {
            // The key's own override, else its lineage's: a rotated key keeps the
            // overrides and credits set on any key before it.
            let lineage = principal.lineage();
            let found = table.keys.get(principal.key_id()).or_else(|| {
                (lineage != principal.key_id())
                    .then(|| table.keys.get(lineage))
                    .flatten()
            });
            if let Some(allowance) = found {
                return *allowance;
            }
        }
        let slot = principal.environment().slot();
        let owner = table.owners_written[slot]
            .get()
            .then(|| table.owners[slot].get(principal.owner()))
            .flatten();
        let cap = match owner {
            Some(cap) => *cap,
            None => table.defaults[slot],
        };
        cap.map(|cap| Allowance { cap, period: None })
    }
}

impl fmt::Debug for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budgets")
            .field("defaults", &self.table.defaults)
            .field(
                "owner_overrides",
                &(self.table.owners[0].len() + self.table.owners[1].len()),
            )
            .field("key_overrides", &self.table.keys.len())
            .finish()
    }
}

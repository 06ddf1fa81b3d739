//! [`UsageBackend`]: where spend counters live, and [`MemoryUsage`], the in-process one.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use super::budget::BudgetPer;
use super::period::Period;
use crate::backend_error::BackendError;
use crate::clock::{Clock, SystemClock};
use crate::key::Environment;
use crate::principal::{CredentialKind, Principal};
use crate::support::sweep::SweepAt;

/// One spend counter: an environment (test and live never share one), whose budget, and
/// who (an owner or a key id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Counter<'a> {
    /// The principal's environment.
    pub environment: Environment,
    /// Whether `subject` is an owner or a key id.
    pub per: BudgetPer,
    /// The owner or key id.
    pub subject: &'a str,
    /// The period the counter is kept for.
    pub period: Period,
}

impl<'a> Counter<'a> {
    /// The counter `principal` spends from in `period`: the policy subject. Per key, a
    /// key's lineage (a rotated key continues its predecessor's counter); a browser
    /// session is no key, so it spends from its owner's budget of its environment, as do
    /// all credentials with [`BudgetPer::Owner`]. A new login never opens a new budget.
    pub(crate) fn of(per: BudgetPer, principal: &'a Principal, period: Period) -> Self {
        let (per, subject) = match (per, principal.kind()) {
            (BudgetPer::Key, CredentialKind::ApiKey) => {
                (BudgetPer::Key, principal.lineage().as_str())
            }
            _ => (BudgetPer::Owner, principal.owner()),
        };
        Self {
            environment: principal.environment(),
            per,
            subject,
            period,
        }
    }
}

/// How a charge is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Charge {
    /// Before the handler: add `cost` only if the total stays within the cap (with a cost
    /// of zero: allowed while something is left). A reservation is the only way spend
    /// grows, so spend never exceeds the cap, however many requests are in flight.
    Reserve,
    /// After the handler: give `cost` back (a reservation larger than what the request
    /// cost), never below zero, and only while the period that ends at `period_ends` (the
    /// reservation's [`Spent::resets_at`]) is still the current one: a refund never credits
    /// a later period.
    Refund {
        /// When the reservation's period ends (`None`: a lifetime budget, which has one).
        period_ends: Option<SystemTime>,
    },
}

/// The largest amount a counter, cost or cap holds: 2^53 − 1 units. Larger costs and caps
/// are taken as this, in every backend, so that they all give the same answers (Redis
/// scripts compute with doubles, exact up to here). No real budget comes near it.
pub const MAX_AMOUNT: u64 = (1 << 53) - 1;

/// A backend's answer: whether the charge was made, the total spent in the period after
/// it, and when the period ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spent {
    /// Whether the charge was made.
    pub allowed: bool,
    /// The period's total after the charge.
    pub spent: u64,
    /// When the period ends, on the backend's clock (`None`: never, a
    /// [`Period::Lifetime`] budget).
    pub resets_at: Option<SystemTime>,
    /// Time left until then, on the backend's clock (`None`: never).
    pub reset_after: Option<Duration>,
}

/// Where spend counters live: atomic per counter, so that instances sharing a backend
/// share a budget exactly. A backend is a cheap handle (`Clone`, state behind an `Arc`).
pub trait UsageBackend: Clone + Send + Sync + 'static {
    /// Charges `cost` to `counter` under `cap`, as `charge` says. Write it as `async fn`.
    fn charge(
        &self,
        counter: Counter<'_>,
        cost: u64,
        cap: u64,
        charge: Charge,
    ) -> impl Future<Output = Result<Spent, BackendError>> + Send;

    /// The answer, when it can be given without waiting; `None` means "ask
    /// [`charge`](Self::charge)". The default never answers.
    fn charge_now(
        &self,
        counter: Counter<'_>,
        cost: u64,
        cap: u64,
        charge: Charge,
    ) -> Option<Result<Spent, BackendError>> {
        let _ = (counter, cost, cap, charge);
        None
    }

    /// What `counter` has spent in its current period, without charging anything (a
    /// reservation of zero, which writes nothing): for reports such as the management
    /// API's `GET /billing/spend`.
    fn read(
        &self,
        counter: Counter<'_>,
    ) -> impl Future<Output = Result<Spent, BackendError>> + Send {
        self.charge(counter, 0, MAX_AMOUNT, Charge::Reserve)
    }
}

/// Spend counters in this process, on a [`Clock`] (fake in tests). Counters of past periods
/// are dropped as new ones are made, so memory follows the active subjects.
#[derive(Clone)]
pub struct MemoryUsage {
    /// One map per (environment, per, period), so a counter is found by its subject as a
    /// `&str`, without allocating: (window index, spent).
    counters: Arc<[Counters; 16]>,
    /// The size at which the next sweep runs: doubles with the live counters.
    sweep_at: Arc<SweepAt>,
    clock: Arc<dyn Clock>,
}

impl MemoryUsage {
    /// Counters on the system clock.
    pub fn new() -> Self {
        Self {
            counters: Arc::new(Default::default()),
            sweep_at: Arc::new(SweepAt::new()),
            clock: Arc::new(SystemClock),
        }
    }

    /// Counts on `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests). Set it
    /// before use: the counters stay, and their periods are read on the new clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many counters are held.
    pub fn tracked(&self) -> usize {
        self.counters.iter().map(DashMap::len).sum()
    }

    /// Drops the counters of past periods now.
    pub fn housekeeping(&self) {
        let now = self.clock.now();
        for (slot, counters) in self.counters.iter().enumerate() {
            let current = period_of_slot(slot).window(now).index;
            counters.retain(|_, (index, _)| *index == current);
        }
        let live = self.tracked();
        self.sweep_at.swept(live);
    }

    /// What `counter` has spent in the current period.
    pub fn spent(&self, counter: Counter<'_>) -> u64 {
        let window = counter.period.window(self.clock.now());
        self.counters[slot_of(counter)]
            .get(counter.subject)
            .filter(|entry| entry.0 == window.index)
            .map_or(0, |entry| entry.1)
    }
}

impl Default for MemoryUsage {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryUsage")
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

/// Subject -> (window index, spent).
type Counters = DashMap<Box<str>, (u64, u64), foldhash::fast::RandomState>;

/// The index of `counter`'s map: environment, per (a bit each) and period (two bits).
fn slot_of(counter: Counter<'_>) -> usize {
    counter.environment.slot() * 8
        + usize::from(counter.per == BudgetPer::Key) * 4
        + counter.period.slot()
}

fn period_of_slot(slot: usize) -> Period {
    Period::ALL[slot % 4]
}

impl UsageBackend for MemoryUsage {
    async fn charge(
        &self,
        counter: Counter<'_>,
        cost: u64,
        cap: u64,
        charge: Charge,
    ) -> Result<Spent, BackendError> {
        Ok(self.charge_at(counter, cost, cap, charge))
    }

    fn charge_now(
        &self,
        counter: Counter<'_>,
        cost: u64,
        cap: u64,
        charge: Charge,
    ) -> Option<Result<Spent, BackendError>> {
        Some(Ok(self.charge_at(counter, cost, cap, charge)))
    }
}

impl MemoryUsage {
    fn charge_at(&self, counter: Counter<'_>, cost: u64, cap: u64, charge: Charge) -> Spent {
        let now = self.clock.now();
        let window = counter.period.window(now);
        let counters = &self.counters[slot_of(counter)];
        let mut inserted = false;
        let (allowed, spent) = {
            let mut entry = match counters.get_mut(counter.subject) {
                Some(entry) => entry,
                None => {
                    inserted = true;
                    counters
                        .entry(Box::from(counter.subject))
                        .or_insert((window.index, 0))
                }
            };
            let (index, spent) = &mut *entry;
            if *index != window.index {
                *index = window.index;
                *spent = 0;
            }
            let (cost, cap) = (cost.min(MAX_AMOUNT), cap.min(MAX_AMOUNT));
            let allowed = match charge {
                Charge::Reserve if cost == 0 => *spent < cap,
                Charge::Reserve => *spent + cost <= cap,
                Charge::Refund { period_ends } => {
                    if period_ends == window.resets_at() {
                        *spent = spent.saturating_sub(cost);
                    }
                    true
                }
            };
            if allowed && charge == Charge::Reserve {
                *spent = spent.saturating_add(cost);
            }
            (allowed, *spent)
        };
        // Amortised: a sweep each time the map has doubled since the last one. Only an
        // insert grows the map, so only an insert can make it due (`len` locks every shard).
        if inserted && self.sweep_at.due(counters.len()) {
            self.housekeeping();
        }
        Spent {
            allowed,
            spent,
            resets_at: window.resets_at(),
            reset_after: window.reset_after(now),
        }
    }
}

//! What the budgets of some principals stand at, read without charging: the management
//! API's `GET /billing/spend`.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use super::SpendCaps;
use crate::backend_error::BackendError;
use crate::key::Environment;
use crate::principal::Principal;
use crate::usage::backend::{Counter, UsageBackend};
use crate::usage::budget::BudgetPer;
use crate::usage::period::Period;

/// One budget as it stands.
pub(crate) struct BudgetStatus {
    pub(crate) environment: Environment,
    pub(crate) per: BudgetPer,
    /// The key, when budgets are per key.
    pub(crate) key: Option<Principal>,
    pub(crate) period: Period,
    pub(crate) cap: u64,
    pub(crate) spent: u64,
    /// `[start, end)`, on the backend's clock; `None` for credits, which never end.
    pub(crate) window: Option<(SystemTime, SystemTime)>,
}

pub(crate) type Report<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<BudgetStatus>, BackendError>> + Send + 'a>>;

/// [`SpendCaps`] without its backend's type, for the management API.
pub(crate) trait SpendReport: Send + Sync + 'static {
    /// Every budget `principals` spend from, each once (the counter each spends from, see
    /// `Counter::of`; its cap as the first of them to spend from it is given): per owner,
    /// one per environment and period; per key, one per key lineage, and the owner's
    /// budget its sessions spend from. Uncapped principals are left out.
    fn report(&self, principals: Vec<Principal>) -> Report<'_>;
}

impl<B: UsageBackend> SpendReport for SpendCaps<B> {
    fn report(&self, principals: Vec<Principal>) -> Report<'_> {
        Box::pin(async move {
            let mut statuses: Vec<BudgetStatus> = Vec::new();
            // Every counter any of the principals spends from, once: a key on credits does
            // not hide the periodic budget the owner's other credentials spend from.
            let mut seen: Vec<(Environment, BudgetPer, &str, Period)> = Vec::new();
            for principal in &principals {
                let Some(allowance) = self.budgets.allowance(principal) else {
                    continue;
                };
                let environment = principal.environment();
                let period = allowance
                    .period
                    .unwrap_or_else(|| self.period_of(environment));
                let counter = Counter::of(self.per, principal, period);
                let id = (environment, counter.per, counter.subject, period);
                if seen.contains(&id) {
                    continue;
                }
                seen.push(id);
                let spent = self.backend.read(counter).await?;
                // The window that ends where the backend says, so both ends are on its clock.
                let window = spent.resets_at.map(|end| {
                    let start = period.window(end - Duration::from_secs(1)).start;
                    (SystemTime::UNIX_EPOCH + Duration::from_secs(start), end)
                });
                statuses.push(BudgetStatus {
                    environment,
                    per: counter.per,
                    key: (counter.per == BudgetPer::Key).then(|| principal.clone()),
                    period,
                    cap: allowance.cap,
                    spent: spent.spent,
                    window,
                });
            }
            Ok(statuses)
        })
    }
}

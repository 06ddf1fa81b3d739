//! What the budgets of some principals stand at, read without charging: the management
//! API's `GET /billing/spend`.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use super::SpendCaps;
use crate::key::Environment;
use crate::principal::Principal;
use crate::rate_limit::BackendError;
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
    /// The budgets `principals` spend from, each once: per owner, one per environment
    /// (its cap as the first of them of that environment is given); per key, one per key.
    /// Uncapped principals are left out.
    fn report(&self, principals: Vec<Principal>) -> Report<'_>;
}

impl<B: UsageBackend> SpendReport for SpendCaps<B> {
    fn report(&self, principals: Vec<Principal>) -> Report<'_> {
        Box::pin(async move {
            let mut statuses: Vec<BudgetStatus> = Vec::new();
            for principal in principals {
                // Per key, a session has no budget a report can name.
                let session = principal.kind() == crate::principal::CredentialKind::Session;
                if self.per == BudgetPer::Key && session {
                    continue;
                }
                let environment = principal.environment();
                let per_owner_seen = self.per == BudgetPer::Owner
                    && statuses.iter().any(|s| s.environment == environment);
                if per_owner_seen {
                    continue;
                }
                let Some(allowance) = self.budgets.allowance(&principal) else {
                    continue;
                };
                let period = allowance
                    .period
                    .unwrap_or_else(|| self.period_of(environment));
                let subject = match self.per {
                    BudgetPer::Owner => principal.owner(),
                    BudgetPer::Key => principal.key_id().as_str(),
                };
                let counter = Counter {
                    environment,
                    per: self.per,
                    subject,
                    period,
                };
                let spent = self.backend.read(counter).await?;
                // The window that ends where the backend says, so both ends are on its clock.
                let window = spent.resets_at.map(|end| {
                    let start = period.window(end - Duration::from_secs(1)).start;
                    (SystemTime::UNIX_EPOCH + Duration::from_secs(start), end)
                });
                statuses.push(BudgetStatus {
                    environment,
                    per: self.per,
                    key: (self.per == BudgetPer::Key).then_some(principal.clone()),
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

//! Budget thresholds: when a charge takes a budget past 80 % or 100 % of its cap, the
//! owner hears `budget.threshold` once for that budget, threshold and period, however many
//! requests and instances crossed it (the events' gate decides).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::SpendCaps;
use crate::events::{KeyEvent, KeyEventKind};
use crate::principal::Principal;
use crate::store::KeyId;
use crate::usage::backend::{Counter, Spent, UsageBackend};
use crate::usage::{BudgetPer, Period};

/// How long a lifetime budget's crossing is remembered (a gate needs an end).
const LIFETIME: Duration = Duration::from_secs(400 * 86_400);

impl<B: UsageBackend> SpendCaps<B> {
    /// Announces each threshold the charge of `reserved` (now `spent` in all) crossed on
    /// `principal`'s budget of `cap` in `period`, off the request path.
    pub(super) fn announce_crossings(
        &self,
        principal: &Principal,
        (cap, period): (u64, Period),
        reserved: u64,
        spent: &Spent,
    ) {
        let Some(events) = &self.events else { return };
        if cap == 0 || reserved == 0 {
            return;
        }
        let before = u128::from(spent.spent.saturating_sub(reserved));
        let after = u128::from(spent.spent);
        let counter = Counter::of(self.per, principal, period);
        for &percent in self.thresholds.iter() {
            // The spend at which the threshold is reached, exactly: cap × percent / 100, up.
            let line = (u128::from(cap) * u128::from(percent)).div_ceil(100);
            if !(before < line && line <= after) {
                continue;
            }
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return; // no runtime to announce on: nothing to say it with
            };
            let key_id = (counter.per == BudgetPer::Key)
                .then(|| KeyId::new(counter.subject).ok())
                .flatten();
            let period_mark = spent.resets_at.map_or(0, |at| {
                at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
            });
            let crossing = format!(
                "budget:{}:{}:{}:{period_mark}:{percent}",
                principal.owner(),
                counter.environment.as_str(),
                key_id.as_ref().map_or("-", KeyId::as_str),
            );
            // Remembered past the period's end, so no instance repeats it late.
            let remember = spent.reset_after.map_or(LIFETIME, |left| {
                left.saturating_add(Duration::from_secs(3600))
            });
            let kind = KeyEventKind::BudgetCrossed {
                environment: counter.environment,
                key_id,
                percent,
                spent: spent.spent,
                cap,
            };
            let Ok(event) = KeyEvent::new(SystemTime::now(), principal.owner(), kind) else {
                return;
            };
            let events = events.clone();
            runtime.spawn(async move {
                events.publish_once(&crossing, remember, event).await;
            });
        }
    }
}

//! [`WeightedCells`]: GCRA over units, with refunds, for the in-process backend's
//! weighted classes (governor counts `n` cells at once but cannot give cells back).

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use dashmap::DashMap;

use super::backend::Decision;
use super::Quota;

/// The theoretical arrival time (nanoseconds on the backend's clock) per key and quota.
pub(super) struct WeightedCells<K: Hash + Eq> {
    tat: DashMap<(K, Quota), u64, foldhash::fast::RandomState>,
}

/// `d` in nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The units of one request under `quota`: a cost above the quota counts as all of it.
pub(super) fn units_within(units: NonZeroU32, quota: Quota) -> u64 {
    u64::from(units.get().min(quota.requests().get()))
}

impl<K: Hash + Eq + Clone> WeightedCells<K> {
    pub(super) fn new() -> Self {
        Self {
            tat: DashMap::with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// Counts `units` of `key` at `now` (ns) and decides (remaining in units).
    pub(super) fn check(&self, key: &K, quota: Quota, units: NonZeroU32, now: u64) -> Decision {
        let period = nanos(quota.interval()).max(1);
        let window = period.saturating_mul(u64::from(quota.requests().get()));
        let cost = period.saturating_mul(units_within(units, quota));
        let mut tat = self.tat.entry((key.clone(), quota)).or_insert(now);
        let start = (*tat).max(now);
        let next = start.saturating_add(cost);
        let allow_at = next.saturating_sub(window);
        if allow_at > now {
            let reset = Duration::from_nanos(start.saturating_sub(now));
            return Decision::limited(quota, Duration::from_nanos(allow_at - now), reset);
        }
        *tat = next;
        let remaining = now.saturating_add(window).saturating_sub(next) / period;
        Decision::allowed(
            quota,
            u32::try_from(remaining).unwrap_or(u32::MAX),
            Duration::from_nanos(next.saturating_sub(now)),
        )
    }

    /// Gives `units` back to `key` at `now`: never below `now` (what the window has
    /// already restored is not credited twice).
    pub(super) fn refund(&self, key: &K, quota: Quota, units: NonZeroU32, now: u64) {
        let period = nanos(quota.interval()).max(1);
        let back = period.saturating_mul(units_within(units, quota));
        if let Some(mut tat) = self.tat.get_mut(&(key.clone(), quota)) {
            *tat = tat.saturating_sub(back).max(now);
        }
    }

    /// Forgets keys whose bucket is full again at `now`.
    pub(super) fn sweep(&self, now: u64) {
        self.tat.retain(|_, tat| *tat > now);
        self.tat.shrink_to_fit();
    }

    pub(super) fn len(&self) -> usize {
        self.tat.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn reserve_then_settle_within_the_window_only() {
        let cells = WeightedCells::<u8>::new();
        let quota = Quota::per_minute(NonZeroU32::new(10_000).unwrap());
        let three = NonZeroU32::new(3_000).unwrap();
        let t0 = 100 * SECOND;
        for n in 0..3 {
            let decision = cells.check(&1, quota, three, t0);
            assert!(decision.is_allowed(), "reservation {n}");
        }
        let fourth = cells.check(&1, quota, three, t0);
        assert!(
            !fourth.is_allowed(),
            "9,000 reserved: 3,000 more does not fit"
        );
        assert_eq!(
            fourth.retry_after(),
            Duration::from_secs(12),
            "2,000 units at 6 ms each"
        );
        // One reported 1,000: 2,000 back, so 3,000 fits again.
        cells.refund(&1, quota, NonZeroU32::new(2_000).unwrap(), t0);
        let again = cells.check(&1, quota, three, t0);
        assert!(again.is_allowed());
        assert_eq!(again.remaining(), 0);
        // A window later the bucket is full; a late refund adds nothing beyond it.
        let later = t0 + 60 * SECOND;
        cells.refund(&1, quota, three, later);
        let fresh = cells.check(&1, quota, NonZeroU32::new(10_000).unwrap(), later);
        assert!(fresh.is_allowed() && fresh.remaining() == 0);
        assert!(
            !cells.check(&1, quota, NonZeroU32::MIN, later).is_allowed(),
            "never above the quota"
        );
        cells.sweep(later + 61 * SECOND);
        assert_eq!(cells.len(), 0, "full buckets are forgotten");
    }

    #[test]
    fn a_cost_above_the_quota_is_the_whole_quota() {
        let cells = WeightedCells::<u8>::new();
        let quota = Quota::per_minute(NonZeroU32::new(10).unwrap());
        let first = cells.check(&1, quota, NonZeroU32::MAX, 0);
        assert!(
            first.is_allowed() && first.remaining() == 0,
            "the whole quota, once"
        );
        let next = cells.check(&1, quota, NonZeroU32::MIN, 0);
        assert!(!next.is_allowed());
        assert_eq!(next.retry_after(), Duration::from_secs(6));
        // Huge windows and times saturate instead of overflowing.
        let long = Quota::new(NonZeroU32::MAX, NonZeroU32::MAX);
        assert!(cells
            .check(&2, long, NonZeroU32::MAX, u64::MAX)
            .is_allowed());
    }
}

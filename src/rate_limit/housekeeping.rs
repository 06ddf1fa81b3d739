use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// When housekeeping is due: at most once per interval, one caller wins.
#[derive(Debug)]
pub(crate) struct Schedule {
    interval_nanos: AtomicU64,
    last_nanos: AtomicU64,
}

impl Schedule {
    pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

    pub(crate) fn new() -> Self {
        Self {
            interval_nanos: AtomicU64::new(nanos(Self::DEFAULT_INTERVAL)),
            last_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_interval(&self, interval: Duration) {
        self.interval_nanos
            .store(nanos(interval), Ordering::Relaxed);
    }

    /// Whether the caller, at `now` (nanoseconds on the limiter's clock), should sweep.
    pub(crate) fn claim(&self, now: u64) -> bool {
        let last = self.last_nanos.load(Ordering::Relaxed);
        now.saturating_sub(last) >= self.interval_nanos.load(Ordering::Relaxed)
            && self
                .last_nanos
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

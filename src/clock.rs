//! Wall-clock time, behind a trait so that expiry and revocation run on a fake clock in tests.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use tower_api_key::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
//! let before = clock.now();
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(90));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
///
/// Key records carry wall-clock timestamps (`created_at`, `expires_at`, `revoked_at`), so
/// this is `SystemTime`, not `Instant`. Rate limiting runs on a monotonic clock: the
/// system's in production, and in tests the same [`ManualClock`] that drives the stores and
/// layers (it implements both).
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock ([`SystemTime::now`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// Use it in tests instead of sleeping: hand one clone to the store or layer and keep
/// another to [`advance`](Self::advance).
#[derive(Clone)]
pub struct ManualClock {
    // Nanoseconds since the Unix epoch: enough until the year 2554.
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock stopped at `start` (clamped to the Unix epoch if earlier).
    pub fn new(start: SystemTime) -> Self {
        let clock = Self {
            nanos: Arc::new(AtomicU64::new(0)),
        };
        clock.set(start);
        clock
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(by))
            })
            .ok();
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: SystemTime) {
        let nanos = at
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.nanos.store(nanos, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    /// A clock stopped at 2026-01-01T00:00:00Z.
    fn default() -> Self {
        Self::new(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// The rate limiters' clock: the same manual time, so one `advance` moves key expiry,
/// cache TTLs and rate-limit budgets together.
impl governor::clock::Clock for ManualClock {
    type Instant = governor::nanos::Nanos;

    fn now(&self) -> Self::Instant {
        governor::nanos::Nanos::from(self.nanos.load(Ordering::SeqCst))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

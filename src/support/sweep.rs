//! [`SweepAt`]: when a map that sweeps itself should sweep next, so that its sweeps cost
//! O(1) per insert, amortised, with no task to spawn.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The smallest size at which a sweep runs.
const MIN_SWEEP: usize = 1024;

/// The size at which the next sweep runs: twice what the last one left (at least 1,024).
#[derive(Debug)]
pub(crate) struct SweepAt(AtomicUsize);

impl SweepAt {
    pub(crate) fn new() -> Self {
        Self(AtomicUsize::new(MIN_SWEEP))
    }

    /// Whether a map of `len` entries is due for a sweep.
    pub(crate) fn due(&self, len: usize) -> bool {
        len >= self.0.load(Ordering::Relaxed)
    }

    /// A sweep left `live` entries.
    pub(crate) fn swept(&self, live: usize) {
        self.0.store((live * 2).max(MIN_SWEEP), Ordering::Relaxed);
    }
}

//! [`SweepAt`]: when a map that sweeps itself should sweep next, so that its sweeps cost
//! O(1) per insert, amortised, with no task to spawn; and [`run`], which takes a sweep off
//! the request path.

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

    /// Whether a map of `len` entries is due for a sweep, claiming it: one caller gets
    /// `true`, and none after it until [`swept`](Self::swept), however long the sweep runs.
    pub(crate) fn claim(&self, len: usize) -> bool {
        let at = self.0.load(Ordering::Relaxed);
        len >= at
            && self
                .0
                .compare_exchange(at, usize::MAX, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether a claimed sweep has not finished yet.
    #[cfg(test)]
    pub(crate) fn sweeping(&self) -> bool {
        self.0.load(Ordering::Relaxed) == usize::MAX
    }

    /// A sweep left `live` entries.
    pub(crate) fn swept(&self, live: usize) {
        self.0.store((live * 2).max(MIN_SWEEP), Ordering::Relaxed);
    }
}

/// Runs `sweep` off the request path, on Tokio's blocking pool, when a runtime is there;
/// inline otherwise. A sweep of a large map is milliseconds: the request that finds it due
/// should not wait for it.
pub(crate) fn run(sweep: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(sweep)),
        Err(_) => sweep(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_claims_a_due_sweep_until_it_is_swept() {
        let at = SweepAt::new();
        assert!(!at.claim(MIN_SWEEP - 1), "not due below the threshold");
        assert!(at.claim(MIN_SWEEP));
        assert!(at.sweeping());
        assert!(!at.claim(usize::MAX - 1), "claimed: nobody else sweeps");
        assert!(!at.due(usize::MAX - 1));
        at.swept(3_000);
        assert!(!at.sweeping());
        assert!(!at.claim(5_999));
        assert!(at.claim(6_000), "due again at twice what the sweep left");
    }

    #[tokio::test]
    async fn in_a_runtime_a_sweep_runs_on_another_thread() {
        let (sent, received) = std::sync::mpsc::channel();
        run(move || sent.send(std::thread::current().id()).unwrap());
        let swept_on = received
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        assert_ne!(swept_on, std::thread::current().id());
    }

    #[test]
    fn without_a_runtime_a_sweep_runs_inline() {
        let (sent, received) = std::sync::mpsc::channel();
        run(move || sent.send(std::thread::current().id()).unwrap());
        // Already there when `run` returns, from this thread.
        assert_eq!(received.try_recv(), Ok(std::thread::current().id()));
    }
}

//! [`RetryAfter`]: the wait a 429 or 503 asks for.

use std::num::NonZeroU64;
use std::time::Duration;

/// `Retry-After` in whole seconds, never 0: a client told to retry after 0 s would retry at
/// once, so every duration is rounded up to at least one second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetryAfter(NonZeroU64);

impl RetryAfter {
    /// One second.
    pub const ONE_SECOND: Self = Self(NonZeroU64::MIN);

    /// `wait` rounded up to whole seconds, at least 1 (saturating at `u64::MAX`).
    pub fn from_duration(wait: Duration) -> Self {
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0));
        Self(NonZeroU64::new(secs).unwrap_or(NonZeroU64::MIN))
    }

    /// Exactly `secs` seconds.
    pub const fn from_secs(secs: NonZeroU64) -> Self {
        Self(secs)
    }

    /// The seconds.
    pub const fn as_secs(self) -> u64 {
        self.0.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        let secs = |d: Duration| RetryAfter::from_duration(d).as_secs();
        assert_eq!(secs(Duration::ZERO), 1);
        assert_eq!(secs(Duration::from_millis(1)), 1);
        assert_eq!(secs(Duration::from_secs(3)), 3);
        assert_eq!(secs(Duration::from_millis(3001)), 4);
        assert_eq!(secs(Duration::MAX), u64::MAX, "saturates");
    }
}

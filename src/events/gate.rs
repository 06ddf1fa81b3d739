//! [`EventGate`]: "has this crossing been announced?", answered once, by whoever asks first.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::clock::{Clock, SystemClock};
use crate::store::StoreError;

/// What a gate answers.
pub type GateFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, StoreError>> + Send + 'a>>;

/// Answers `true` to the first caller for a crossing within `remember`, `false` to every
/// other (on every instance, when the gate is a shared store's: `RedisEventGate` with
/// `SET NX PX`).
pub trait EventGate: Send + Sync + 'static {
    /// Whether this is the first time `crossing` is seen within `remember`.
    fn first<'a>(&'a self, crossing: &'a str, remember: Duration) -> GateFuture<'a>;

    /// Forgets `crossing`, so that the next [`first`](Self::first) is `true` again: for
    /// work that failed after it was claimed. Answers whether it was remembered.
    fn forget<'a>(&'a self, crossing: &'a str) -> GateFuture<'a>;
}

/// A gate shared by several owners (two scans, a scan and the spend caps) in one process.
impl<G: EventGate> EventGate for Arc<G> {
    fn first<'a>(&'a self, crossing: &'a str, remember: Duration) -> GateFuture<'a> {
        (**self).first(crossing, remember)
    }

    fn forget<'a>(&'a self, crossing: &'a str) -> GateFuture<'a> {
        (**self).forget(crossing)
    }
}

/// The gate of one process: crossings remembered until their time is up, at most
/// `capacity` of them (default 100,000: the oldest is forgotten first, in O(1)).
pub struct MemoryEventGate {
    seen: Mutex<Seen>,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Seen {
    until: HashMap<Arc<str>, SystemTime>,
    order: VecDeque<Arc<str>>,
}

impl Default for MemoryEventGate {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEventGate {
    /// 100,000 crossings, on the system clock.
    pub fn new() -> Self {
        Self {
            seen: Mutex::default(),
            capacity: 100_000,
            clock: Arc::new(SystemClock),
        }
    }

    /// At most `crossings` remembered (at least 1).
    #[must_use]
    pub fn capacity(mut self, crossings: usize) -> Self {
        self.capacity = crossings.max(1);
        self
    }

    /// On `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many crossings are remembered.
    pub fn len(&self) -> usize {
        self.lock().until.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventGate for MemoryEventGate {
    fn first<'a>(&'a self, crossing: &'a str, remember: Duration) -> GateFuture<'a> {
        let now = self.clock.now();
        let mut seen = self.lock();
        let answer = match seen.until.get(crossing) {
            Some(until) if *until > now => false,
            _ => {
                let until = now
                    .checked_add(remember)
                    .unwrap_or(now + Duration::from_secs(u32::MAX.into()));
                let key: Arc<str> = Arc::from(crossing);
                if seen.until.insert(Arc::clone(&key), until).is_none() {
                    seen.order.push_back(key);
                }
                // Over capacity: the oldest remembered goes first (a queue front, O(1)).
                while seen.until.len() > self.capacity {
                    let Some(oldest) = seen.order.pop_front() else {
                        break;
                    };
                    seen.until.remove(&oldest);
                }
                // Ended ones at the front go too, a few per call: the map follows the live.
                for _ in 0..2 {
                    let ended = seen.order.front().is_some_and(|front| {
                        seen.until.get(front).is_none_or(|until| *until <= now)
                    });
                    if !ended {
                        break;
                    }
                    if let Some(front) = seen.order.pop_front() {
                        seen.until.remove(&front);
                    }
                }
                true
            }
        };
        Box::pin(std::future::ready(Ok(answer)))
    }

    fn forget<'a>(&'a self, crossing: &'a str) -> GateFuture<'a> {
        // The order queue keeps its entry; it is skipped when it reaches the front.
        let forgotten = self.lock().until.remove(crossing).is_some();
        Box::pin(std::future::ready(Ok(forgotten)))
    }
}

impl fmt::Debug for MemoryEventGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryEventGate")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn once_per_crossing_until_it_is_forgotten() {
        let clock = ManualClock::default();
        let gate = MemoryEventGate::new()
            .capacity(1_000)
            .with_clock(clock.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let hour = Duration::from_secs(3600);
        assert!(rt.block_on(gate.first("a", hour)).unwrap());
        assert!(!rt.block_on(gate.first("a", hour)).unwrap());
        clock.advance(hour);
        assert!(rt.block_on(gate.first("a", hour)).unwrap(), "a new window");
        for n in 0..100_000 {
            rt.block_on(gate.first(&n.to_string(), hour)).unwrap();
            assert!(gate.lock().order.len() <= 1_001);
        }
        assert!(gate.len() <= 1_000, "bounded by capacity");
    }
}

//! [`MemoryAuditLog`]: the audit log in process, bounded in entries per owner, in entries
//! in all, and by age; every eviction O(1).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::{AuditEntry, AuditFuture, AuditLog, AuditQuery};
use crate::clock::{Clock, SystemClock};

/// The audit log of one process (a restart forgets it; share one between instances with
/// `RedisAuditLog` or `SqlAuditLog`).
///
/// Bounds, each configuration: [`retention`](Self::retention) by age (default 90 days),
/// [`per_owner`](Self::per_owner) entries (default 1,000: an owner's oldest leaves first),
/// [`capacity`](Self::capacity) entries in all (default 100,000: the oldest of all leaves
/// first). Every eviction takes the front of a queue: O(1) whatever the number of owners.
///
/// ```
/// use tower_api_key::audit::{Actor, AuditAction, AuditEntry, AuditLog, AuditQuery, MemoryAuditLog};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let log = MemoryAuditLog::new().per_owner(2);
/// for _ in 0..3 {
///     let entry = AuditEntry::new(std::time::SystemTime::now(), "org_1", Actor::System, AuditAction::TrialStarted);
///     log.append(entry).await.unwrap();
/// }
/// let page = log.page(&AuditQuery::new("org_1")).await.unwrap();
/// assert_eq!(page.len(), 2, "the owner's oldest left");
/// assert!(page[0].seq() > page[1].seq(), "newest first");
/// # });
/// ```
pub struct MemoryAuditLog {
    entries: Mutex<Entries>,
    capacity: usize,
    per_owner: usize,
    retention: Duration,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Entries {
    next: u64,
    by_owner: HashMap<Arc<str>, VecDeque<AuditEntry>>,
    // Every entry in append order, by owner and seq: the front is the oldest of all. An
    // entry that left by its owner's bound is skipped when met here.
    order: VecDeque<(Arc<str>, u64)>,
}

impl Entries {
    /// Drops the oldest entry of all, if it is still held; answers whether one was queued.
    fn evict_oldest(&mut self) -> bool {
        let Some((owner, seq)) = self.order.pop_front() else {
            return false;
        };
        if let Some(queue) = self.by_owner.get_mut(&owner) {
            if queue.front().is_some_and(|entry| entry.seq() == seq) {
                queue.pop_front();
            }
            if queue.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
        true
    }
}

impl Default for MemoryAuditLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryAuditLog {
    /// 90 days, 1,000 entries per owner, 100,000 in all, on the system clock.
    pub fn new() -> Self {
        Self {
            entries: Mutex::default(),
            capacity: 100_000,
            per_owner: 1_000,
            retention: Duration::from_secs(90 * 86_400),
            clock: Arc::new(SystemClock),
        }
    }

    /// At most `entries` in all (at least 1).
    #[must_use]
    pub fn capacity(mut self, entries: usize) -> Self {
        self.capacity = entries.max(1);
        self
    }

    /// At most `entries` per owner (at least 1).
    #[must_use]
    pub fn per_owner(mut self, entries: usize) -> Self {
        self.per_owner = entries.max(1);
        self
    }

    /// Entries older than `age` leave (`Duration::MAX`: kept until a size bound).
    #[must_use]
    pub fn retention(mut self, age: Duration) -> Self {
        self.retention = age;
        self
    }

    /// Ages entries on `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Each change leaves the queues consistent: poisoned, they are still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The earliest time an entry may have to be kept now.
    fn oldest_kept(&self) -> Option<SystemTime> {
        self.clock.now().checked_sub(self.retention)
    }

    /// How many entries are held, all owners together.
    pub fn len(&self) -> usize {
        self.lock().by_owner.values().map(VecDeque::len).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.lock().by_owner.is_empty()
    }
}

impl AuditLog for MemoryAuditLog {
    fn append(&self, mut entry: AuditEntry) -> AuditFuture<'_, u64> {
        let oldest_kept = self.oldest_kept();
        let mut entries = self.lock();
        entries.next += 1;
        let seq = entries.next;
        entry.set_seq(seq);
        let owner: Arc<str> = match entries.by_owner.get_key_value(entry.owner()) {
            Some((owner, _)) => Arc::clone(owner),
            None => Arc::from(entry.owner()),
        };
        let queue = entries.by_owner.entry(Arc::clone(&owner)).or_default();
        queue.push_back(entry);
        if queue.len() > self.per_owner {
            queue.pop_front();
        }
        entries.order.push_back((owner, seq));
        while entries.order.len() > self.capacity && entries.evict_oldest() {}
        // Past retention: the oldest of all first, so each append does the work it finds.
        while let Some((owner, seq)) = entries.order.front().cloned() {
            let aged = entries.by_owner.get(&owner).and_then(|queue| {
                queue
                    .front()
                    .filter(|entry| entry.seq() == seq)
                    .map(|entry| oldest_kept.is_some_and(|kept| entry.at() < kept))
            });
            match aged {
                Some(false) => break,
                // Aged, or left already by its owner's bound.
                _ => {
                    entries.evict_oldest();
                }
            }
        }
        Box::pin(std::future::ready(Ok(seq)))
    }

    fn page<'a>(&'a self, query: &'a AuditQuery) -> AuditFuture<'a, Vec<AuditEntry>> {
        let oldest_kept = self.oldest_kept();
        let entries = self.lock();
        let page = entries
            .by_owner
            .get(query.owner())
            .map(|queue| {
                queue
                    .iter()
                    .rev()
                    .filter(|entry| oldest_kept.is_none_or(|kept| entry.at() >= kept))
                    .filter(|entry| query.matches(entry))
                    .take(query.page_size())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(page)))
    }
}

impl fmt::Debug for MemoryAuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryAuditLog")
            .field("capacity", &self.capacity)
            .field("per_owner", &self.per_owner)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, AuditAction};
    use crate::clock::ManualClock;

    fn entry(owner: &str, at: SystemTime) -> AuditEntry {
        AuditEntry::new(at, owner, Actor::System, AuditAction::TrialStarted)
    }

    /// Counted, not timed: 100,000 owners through a log of 1,000 keep it at 1,000, and
    /// the order queue (the eviction's only work) never holds more than the capacity.
    #[test]
    fn eviction_takes_the_front_whatever_the_number_of_owners() {
        let clock = ManualClock::default();
        let log = MemoryAuditLog::new()
            .capacity(1_000)
            .with_clock(clock.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for n in 0..100_000 {
            runtime
                .block_on(log.append(entry(&format!("org_{n}"), clock.now())))
                .unwrap();
            assert!(log.lock().order.len() <= 1_000);
        }
        assert_eq!(log.len(), 1_000);
        assert_eq!(
            log.lock().by_owner.len(),
            1_000,
            "emptied owners are dropped"
        );
        let newest = runtime
            .block_on(log.page(&AuditQuery::new("org_99999")))
            .unwrap();
        assert_eq!(newest.len(), 1);
        assert!(runtime
            .block_on(log.page(&AuditQuery::new("org_0")))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn entries_past_retention_leave() {
        let clock = ManualClock::default();
        let day = Duration::from_secs(86_400);
        let log = MemoryAuditLog::new()
            .retention(day * 30)
            .with_clock(clock.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(log.append(entry("org_1", clock.now())))
            .unwrap();
        clock.advance(day * 29);
        runtime
            .block_on(log.append(entry("org_1", clock.now())))
            .unwrap();
        assert_eq!(log.len(), 2);
        clock.advance(day * 2);
        let page = runtime
            .block_on(log.page(&AuditQuery::new("org_1")))
            .unwrap();
        assert_eq!(page.len(), 1, "not read once past retention");
        runtime
            .block_on(log.append(entry("org_2", clock.now())))
            .unwrap();
        assert_eq!(log.len(), 2, "and dropped by the next append");
    }
}

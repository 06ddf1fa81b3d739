//! [`DailyUsage`]: the usage history in this process, bounded per owner and overall.

use super::*;

/// Each key's use per UTC day, in this process, for the last [`DAYS`] days: an
/// [`ActivityObserver`] (give it to the [`ActivityLayer`](crate::activity::ActivityLayer)) and a
/// [`UsageHistory`] (give it to `KeysApi::usage`).
///
/// Bounded: a ring of [`DAYS`] days per key (about 2 KiB), for at most
/// [`capacity`](Self::capacity) keys (default 10,000), of which one owner holds at
/// most its [share](Self::per_owner) (default 100 keys), so one tenant issuing, using and
/// revoking keys cannot crowd every other owner out. Keys unused for [`DAYS`] days are
/// swept as the map grows (O(1) per event, amortised); events of a key past the capacity
/// or past its owner's share are dropped and counted ([`dropped`](Self::dropped)), and
/// the keys already tracked go on being recorded.
///
/// ```
/// use std::time::SystemTime;
/// use tower_api_key::activity::{ActivityObserver, DailyUsage, UsageHistory};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let usage = DailyUsage::default();
/// let key = tower_api_key::store::KeyId::generate().unwrap();
/// let days = usage.days(&key, SystemTime::now()).await.unwrap();
/// assert_eq!(days.len(), 30);
/// assert_eq!(days.iter().map(|day| day.requests).sum::<u64>(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct DailyUsage {
    shared: Arc<Shared>,
}

struct Shared {
    keys: DashMap<KeyId, Tracked, foldhash::fast::RandomState>,
    /// How many keys each owner has in `keys` (`None`: refused credentials, whose owner
    /// is not known).
    owners: DashMap<Option<Arc<str>>, usize, foldhash::fast::RandomState>,
    capacity: usize,
    per_owner: usize,
    dropped: AtomicU64,
    sweep_at: SweepAt,
}

/// One key's days, and whose share it takes.
struct Tracked {
    owner: Option<Arc<str>>,
    days: Box<[Day; DAYS]>,
}

/// One slot of a key's ring: the day it holds and its counts.
#[derive(Clone, Copy, Default)]
struct Day {
    day: u64,
    requests: u64,
    refused: [u32; RejectionKind::ALL.len()],
    spent: u64,
}

impl DailyUsage {
    /// At most 10,000 keys.
    pub fn new() -> Self {
        Self::build(10_000, 100)
    }

    /// At most `keys` keys (default 10,000; a builder: clones made before keep the old
    /// capacity).
    #[must_use]
    pub fn capacity(self, keys: usize) -> Self {
        Self::build(keys, self.shared.per_owner)
    }

    fn build(capacity: usize, per_owner: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                keys: DashMap::default(),
                owners: DashMap::default(),
                capacity,
                per_owner,
                dropped: AtomicU64::new(0),
                sweep_at: SweepAt::new(),
            }),
        }
    }

    /// At most `keys` keys of any one owner (default 100; a builder: clones made before
    /// keep the old share).
    #[must_use]
    pub fn per_owner(self, keys: usize) -> Self {
        Self::build(self.shared.capacity, keys)
    }

    /// Events not recorded because the capacity was reached.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// How many keys are tracked.
    pub fn tracked(&self) -> usize {
        self.shared.keys.len()
    }

    /// Drops the keys with no use in the last [`DAYS`] days before `now`.
    pub fn housekeeping(&self, now: SystemTime) {
        let oldest = day_of(now).saturating_sub(DAYS as u64 - 1);
        let shared = &*self.shared;
        shared.keys.retain(|_, tracked| {
            let used = tracked
                .days
                .iter()
                .any(|slot| slot.day >= oldest && slot.requests > 0);
            if !used {
                shared.release(&tracked.owner);
            }
            used
        });
        shared.sweep_at.swept(shared.keys.len());
    }
}

impl Shared {
    /// Takes a slot of `owner`'s share, if one is left.
    fn take(&self, owner: &Option<Arc<str>>) -> bool {
        let mut held = self.owners.entry(owner.clone()).or_insert(0);
        if *held >= self.per_owner {
            return false;
        }
        *held += 1;
        true
    }

    fn release(&self, owner: &Option<Arc<str>>) {
        self.owners.remove_if_mut(owner, |_, held| {
            *held = held.saturating_sub(1);
            *held == 0
        });
    }
}

impl Default for DailyUsage {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DailyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DailyUsage")
            .field("tracked", &self.tracked())
            .field("capacity", &self.shared.capacity)
            .field("per_owner", &self.shared.per_owner)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl ActivityObserver for DailyUsage {
    fn observe(&self, event: &ActivityEvent) {
        let Some(key) = event.usage_subject() else {
            return;
        };
        let key = &*key;
        let shared = &*self.shared;
        let day = day_of(event.at);
        let mut days = match shared.keys.get_mut(key) {
            Some(days) => days,
            None => {
                if shared.sweep_at.due(shared.keys.len()) {
                    self.housekeeping(event.at);
                }
                if shared.keys.len() >= shared.capacity || !shared.take(&event.owner) {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let mut created = false;
                let entry = shared.keys.entry(key.clone()).or_insert_with(|| {
                    created = true;
                    Tracked {
                        owner: event.owner.clone(),
                        days: Box::new([Day::default(); DAYS]),
                    }
                });
                if !created {
                    // Another event inserted it meanwhile: give the slot back.
                    shared.release(&event.owner);
                }
                entry
            }
        };
        let slot = &mut days.days[(day % DAYS as u64) as usize];
        if slot.day != day {
            *slot = Day {
                day,
                ..Day::default()
            };
        }
        slot.requests = slot.requests.saturating_add(1);
        if let Outcome::Refused(kind) = event.outcome {
            slot.refused[kind.index()] = slot.refused[kind.index()].saturating_add(1);
        }
        slot.spent = slot.spent.saturating_add(event.spent);
    }
}

impl UsageHistory for DailyUsage {
    fn days<'a>(&'a self, key: &'a KeyId, today: SystemTime) -> History<'a> {
        let ring = self.shared.keys.get(key).map(|tracked| *tracked.days);
        let days = window(today)
            .zip(zero_days(today))
            .map(|(day, mut usage)| {
                let slot = ring.as_ref().map(|ring| ring[(day % DAYS as u64) as usize]);
                if let Some(slot) = slot.filter(|slot| slot.day == day) {
                    usage.requests = slot.requests;
                    usage.spent = slot.spent;
                    for kind in RejectionKind::ALL {
                        let n = slot.refused[kind.index()];
                        if n > 0 {
                            usage.refused.insert(kind.code(), u64::from(n));
                        }
                    }
                }
                usage
            })
            .collect();
        Box::pin(std::future::ready(Ok(days)))
    }
}

#[cfg(test)]
mod share_tests {
    use super::*;
    use crate::activity::UsageHistory;
    use http::Method;

    fn event(key: &KeyId, owner: &str, at: SystemTime) -> ActivityEvent {
        let mut event = ActivityEvent::arrived(&Method::GET, "/", None, at);
        event.key_id = Some(key.clone());
        event.owner = Some(Arc::from(owner));
        event
    }

    /// Issue 36.3: one owner issuing, using and revoking 10,000 keys filled the history
    /// for everyone (the victim's requests were not recorded). Now it fills its share.
    #[test]
    fn one_tenant_cannot_fill_the_history_for_everyone() {
        let usage = DailyUsage::new().capacity(1_000).per_owner(100);
        let now = UNIX_EPOCH + Duration::from_secs(20_454 * 86_400);
        for i in 0..10_000 {
            let key = KeyId::new(format!("key_{i:024x}")).unwrap();
            usage.observe(&event(&key, "org_greedy", now));
        }
        assert_eq!(usage.tracked(), 100, "the greedy owner's share");
        assert_eq!(usage.dropped(), 9_900);
        let victim = KeyId::new(format!("key_{:024x}", 99_999)).unwrap();
        usage.observe(&event(&victim, "org_victim", now));
        let days = futures_util::FutureExt::now_or_never(usage.days(&victim, now))
            .unwrap()
            .unwrap();
        assert_eq!(days.last().unwrap().requests, 1, "the victim is recorded");
        // Past DAYS without use, the greedy owner's keys are swept and its share is back.
        let later = now + Duration::from_secs(DAYS as u64 * 86_400);
        usage.housekeeping(later);
        assert_eq!(usage.tracked(), 0);
        let key = KeyId::new(format!("key_{:024x}", 123_456)).unwrap();
        usage.observe(&event(&key, "org_greedy", later));
        assert_eq!(usage.tracked(), 1);
    }
}

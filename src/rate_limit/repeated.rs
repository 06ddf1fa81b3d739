//! `rate_limit.exceeded`: a key refused by a rate limit again and again (10 refusals by
//! default) is announced to its owner, once per class and window, as the events' gate
//! decides.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::ClassName;
use crate::events::{KeyEvent, KeyEventKind, KeyEvents};
use crate::principal::{CredentialKind, Principal};
use crate::store::KeyId;

/// The most (key, class) pairs whose refusals are counted at once; past it the pair
/// counted longest ago is forgotten first (a queue front: O(1)), so its next refusal
/// counts from 1 again.
const TRACKED: usize = 10_000;

/// Counts each key's refusals per class and announces every `after`-th.
#[derive(Clone)]
pub(crate) struct RepeatedRefusals {
    events: KeyEvents,
    after: u32,
    counts: Arc<Mutex<Counts>>,
}

/// Refusals per (key lineage, class), and the order the pairs were first counted in.
#[derive(Default)]
struct Counts {
    refusals: HashMap<(KeyId, ClassName), u32>,
    order: VecDeque<(KeyId, ClassName)>,
}

impl Counts {
    /// One more refusal of `pair`: its count now.
    fn count(&mut self, pair: (KeyId, ClassName)) -> u32 {
        if let Some(count) = self.refusals.get_mut(&pair) {
            *count = count.saturating_add(1);
            return *count;
        }
        if self.order.len() >= TRACKED {
            if let Some(oldest) = self.order.pop_front() {
                self.refusals.remove(&oldest);
            }
        }
        self.order.push_back(pair.clone());
        self.refusals.insert(pair, 1);
        1
    }
}

impl RepeatedRefusals {
    pub(crate) fn new(events: KeyEvents, after: u32) -> Self {
        Self {
            events,
            after: after.max(1),
            counts: Arc::default(),
        }
    }

    /// One more refusal of `principal` by `class` (whose window is `window`).
    pub(crate) fn refused(
        &self,
        principal: &Principal,
        class: &ClassName,
        window: std::time::Duration,
    ) {
        if principal.kind() != CredentialKind::ApiKey {
            return;
        }
        let pair = (principal.lineage().clone(), class.clone());
        let refusals = self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count(pair);
        if !refusals.is_multiple_of(self.after) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let kind = KeyEventKind::RateLimited {
            key_id: principal.lineage().clone(),
            class: class.as_str().to_owned(),
            refusals,
        };
        let Ok(event) = KeyEvent::new(SystemTime::now(), principal.owner(), kind) else {
            return;
        };
        // Once per key and class within a window, on every instance sharing the gate.
        let crossing = format!(
            "ratelimit:{}:{}",
            principal.lineage().as_str(),
            class.as_str()
        );
        let events = self.events.clone();
        runtime.spawn(async move {
            events.publish_once(&crossing, window, event).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: usize) -> (KeyId, ClassName) {
        (
            KeyId::new(format!("key_{n:024}")).unwrap(),
            ClassName::from_static("ai"),
        )
    }

    #[test]
    fn ten_thousand_keys_refused_in_turn_are_each_counted_exactly() {
        let mut counts = Counts::default();
        for round in 1..=10 {
            for n in 0..TRACKED {
                assert_eq!(counts.count(pair(n)), round, "key {n}");
            }
        }
        assert_eq!(counts.refusals.len(), TRACKED);
    }

    #[test]
    fn past_the_bound_the_oldest_pair_is_forgotten_and_nothing_grows() {
        let mut counts = Counts::default();
        counts.count(pair(0));
        counts.count(pair(0));
        for n in 1..=100_000 {
            counts.count(pair(n));
            assert!(counts.order.len() <= TRACKED && counts.refusals.len() <= TRACKED);
        }
        assert_eq!(counts.count(pair(0)), 1, "forgotten: counts from 1 again");
        assert_eq!(counts.count(pair(100_000)), 2, "the newest is kept");
    }
}

//! `rate_limit.exceeded`: a key refused by a rate limit again and again (10 refusals by
//! default) is announced to its owner, once per class and window, as the events' gate
//! decides.

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

use super::ClassName;
use crate::events::{KeyEvent, KeyEventKind, KeyEvents};
use crate::principal::{CredentialKind, Principal};
use crate::store::KeyId;

/// The most keys whose refusals are counted at once; past it the counts start over
/// (cleared at the bound: amortised O(1), and an announcement is at most delayed).
const TRACKED: usize = 10_000;

/// Counts each key's refusals per class and announces every `after`-th.
#[derive(Clone)]
pub(crate) struct RepeatedRefusals {
    events: KeyEvents,
    after: u32,
    counts: Arc<DashMap<(KeyId, ClassName), u32>>,
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
        if self.counts.len() >= TRACKED {
            self.counts.clear();
        }
        let key = (principal.lineage().clone(), class.clone());
        let refusals = {
            let mut count = self.counts.entry(key).or_insert(0);
            *count += 1;
            *count
        };
        if refusals % self.after != 0 {
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

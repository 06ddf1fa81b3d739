//! [`KeysApi`]: the management API's settings (which store, who may call it, what it
//! serves besides keys).

use std::fmt;
use std::sync::Arc;

use crate::activity::{ActivityStore, UsageHistory};
use crate::store::ManageKeys;

/// The management API over `St`; see the [module docs](super).
pub struct KeysApi<St: ManageKeys> {
    pub(super) store: Arc<St>,
    pub(super) keys_with: Option<St::Scope>,
    pub(super) log: Option<Arc<dyn ActivityStore>>,
    pub(super) history: Option<Arc<dyn UsageHistory>>,
    pub(super) body_limit: usize,
}

impl<St: ManageKeys> Clone for KeysApi<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            keys_with: self.keys_with,
            log: self.log.clone(),
            history: self.history.clone(),
            body_limit: self.body_limit,
        }
    }
}

impl<St: ManageKeys> fmt::Debug for KeysApi<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeysApi")
            .field("keys_with", &self.keys_with)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl<St: ManageKeys> KeysApi<St> {
    /// Keys of `store`, managed by sessions only, bodies up to 16 KiB, no activity log.
    pub fn new(store: Arc<St>) -> Self {
        Self {
            store,
            keys_with: None,
            log: None,
            history: None,
            body_limit: 16 * 1024,
        }
    }

    /// Lets API keys that carry `scope` manage their owner's keys too.
    #[must_use]
    pub fn allow_keys_with(mut self, scope: St::Scope) -> Self {
        self.keys_with = Some(scope);
        self
    }

    /// Serves `log` at `GET /keys/{id}/activity` (without one: an empty list): an
    /// [`ActivityLog`](crate::activity::ActivityLog), or a `RedisActivityLog` shared by instances.
    #[must_use]
    pub fn activity(mut self, log: impl ActivityStore) -> Self {
        self.log = Some(Arc::new(log));
        self
    }

    /// Serves `history` at `GET /keys/{id}/usage` and `GET /usage` (the owner's keys
    /// summed): requests, refusals by kind and spend per UTC day, the last 30 days (without
    /// one: zeros). A [`DailyUsage`](crate::activity::DailyUsage), or a `RedisDailyUsage`
    /// shared by instances; the same value observes the [`ActivityLayer`](crate::activity::ActivityLayer).
    #[must_use]
    pub fn usage(mut self, history: impl UsageHistory) -> Self {
        self.history = Some(Arc::new(history));
        self
    }

    /// The largest request body accepted (default 16 KiB); larger is 413.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }
}

//! [`KeysApi`]: the management API's settings (which store, who may call it, what it
//! serves besides keys).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::ApiCode;
use crate::activity::{ActivityStore, UsageHistory};
use crate::audit::AuditLog;
use crate::events::KeyEvents;
use crate::rate_limit::{ClassName, Quota, RateClass};
use crate::store::ManageKeys;
use crate::webhooks::WebhookStore;

/// The management API over `St`; see the [module docs](super).
pub struct KeysApi<St: ManageKeys> {
    pub(super) store: Arc<St>,
    pub(super) keys_with: Option<St::Scope>,
    pub(super) log: Option<Arc<dyn ActivityStore>>,
    pub(super) history: Option<Arc<dyn UsageHistory>>,
    pub(super) body_limit: usize,
    /// The application's words for some of the API's own refusals.
    pub(super) messages: Arc<Vec<(ApiCode, String)>>,
    /// The classes whose quotas a caller may lower per key, by name.
    pub(super) rate_classes: Arc<BTreeMap<ClassName, Quota>>,
    pub(super) if_match_required: bool,
    pub(super) audit: Option<Arc<dyn AuditLog>>,
    pub(super) events: KeyEvents,
    pub(super) webhooks: Option<Arc<dyn WebhookStore>>,
    pub(super) webhooks_with: Option<St::Scope>,
}

impl<St: ManageKeys> Clone for KeysApi<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            keys_with: self.keys_with,
            log: self.log.clone(),
            history: self.history.clone(),
            body_limit: self.body_limit,
            messages: Arc::clone(&self.messages),
            rate_classes: Arc::clone(&self.rate_classes),
            if_match_required: self.if_match_required,
            audit: self.audit.clone(),
            events: self.events.clone(),
            webhooks: self.webhooks.clone(),
            webhooks_with: self.webhooks_with,
        }
    }
}

impl<St: ManageKeys> fmt::Debug for KeysApi<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeysApi")
            .field("keys_with", &self.keys_with)
            .field("body_limit", &self.body_limit)
            .field("rate_classes", &self.rate_classes)
            .field("if_match_required", &self.if_match_required)
            .field("audit", &self.audit.is_some())
            .field("events", &self.events)
            .field("webhooks", &self.webhooks.is_some())
            .field("webhooks_with", &self.webhooks_with)
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
            messages: Arc::default(),
            rate_classes: Arc::default(),
            if_match_required: false,
            audit: None,
            events: KeyEvents::new(),
            webhooks: None,
            webhooks_with: None,
        }
    }

    /// Answers refusals of `code` with `message` instead of the crate's words: the
    /// product's texts are the application's ("Keys are managed from a logged-in session
    /// (Dashboard or API after session auth)" for `session_required`, "Maximum 10 keys per
    /// user. …" for `key_limit_reached`). The status and code stay.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_api_key::manage::{ApiCode, KeysApi};
    /// use tower_api_key::{ForgScope, MemoryKeyStore};
    ///
    /// let api = KeysApi::new(Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy())))
    ///     .message(ApiCode::SessionRequired, "Sign in to the console to manage keys")
    ///     .message(ApiCode::KeyLimitReached, "You have reached your key quota");
    /// ```
    #[must_use]
    pub fn message(mut self, code: ApiCode, message: impl Into<String>) -> Self {
        let mut messages = (*self.messages).clone();
        messages.retain(|(worded, _)| *worded != code);
        messages.push((code, message.into()));
        self.messages = Arc::new(messages);
        self
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

    /// Lets callers lower a key's quota of each of `classes` with `PATCH /keys/{id}`
    /// (`rate_limits`): never above the class's quota, or above the key's own override
    /// where an operator set a higher one. Without it, a caller can only lower the
    /// overrides a key already has.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_api_key::manage::KeysApi;
    /// use tower_api_key::rate_limit::{ClassName, Quota, RateClass};
    /// use tower_api_key::{ForgScope, MemoryKeyStore};
    ///
    /// const AI: RateClass = RateClass::per_key(ClassName::from_static("ai"), Quota::per_minute_const(60));
    /// let api = KeysApi::new(Arc::new(MemoryKeyStore::<ForgScope>::new()))
    ///     .rate_classes([AI]);
    /// ```
    #[must_use]
    pub fn rate_classes(mut self, classes: impl IntoIterator<Item = RateClass>) -> Self {
        let mut offered = (*self.rate_classes).clone();
        offered.extend(
            classes
                .into_iter()
                .map(|class| (class.name().clone(), class.quota())),
        );
        self.rate_classes = Arc::new(offered);
        self
    }

    /// Updates keys only with `If-Match` (428 `precondition_required` without): no client
    /// overwrites a change it has not seen. Without it, `If-Match` is honoured when sent.
    #[must_use]
    pub fn require_if_match(mut self) -> Self {
        self.if_match_required = true;
        self
    }

    /// Records every request that changes a key, and every refused one, in `log` (who,
    /// what, which key, when, from where, the outcome, and for an update each setting
    /// before and after), and serves the caller's owner's entries at `GET /audit`
    /// (without one: an empty list). A [`MemoryAuditLog`](crate::audit::MemoryAuditLog),
    /// or a `RedisAuditLog` or `SqlAuditLog` shared by instances.
    #[must_use]
    pub fn audit(mut self, log: impl AuditLog) -> Self {
        self.audit = Some(Arc::new(log));
        self
    }

    /// Publishes `key.issued`, `key.updated`, `key.rotated` and `key.revoked` to
    /// `events`' sinks (the application's observer, the webhook outbox) once each change
    /// has succeeded.
    #[must_use]
    pub fn events(mut self, events: KeyEvents) -> Self {
        self.events = events;
        self
    }

    /// Serves the owner's webhook endpoints at `/webhooks` from `store` (register: the
    /// secret shown once; list with delivery state; remove). Put a
    /// [`WebhookOutbox`](crate::webhooks::WebhookOutbox) on the same store among the
    /// [`events`](Self::events)' sinks, and run a `WebhookSender` on it.
    #[must_use]
    pub fn webhooks(mut self, store: Arc<dyn WebhookStore>) -> Self {
        self.webhooks = Some(store);
        self
    }

    /// Lets API keys that carry `scope` (FORG: `manage:webhooks`) manage their owner's
    /// webhooks too (sessions always may).
    #[must_use]
    pub fn allow_webhooks_with(mut self, scope: St::Scope) -> Self {
        self.webhooks_with = Some(scope);
        self
    }

    /// The largest request body accepted (default 16 KiB); larger is 413.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }
}

//! Key activity: [`ActivityLayer`] reports every request's outcome to an observer, and
//! [`LastUsedRecorder`] keeps `last_used_at` without a store write per request.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use tower::ServiceBuilder;
//! use tower_api_key::activity::{ActivityEvent, ActivityLayer};
//! use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore};
//!
//! let log: Arc<Mutex<Vec<String>>> = Arc::default();
//! let sink = Arc::clone(&log);
//! let stack = ServiceBuilder::new()
//!     .layer(ActivityLayer::new(move |event: &ActivityEvent| {
//!         // Key id, outcome, method, path, client address, time: never the key.
//!         sink.lock().unwrap().push(format!("{} {} {}", event.outcome, event.method, event.path));
//!     }))
//!     .layer(AuthLayer::new(Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()))));
//! ```
//!
//! The layer goes outside the authentication layer and reports each request when the
//! response passes back through it: a refusal by the authentication layer, or by a layer
//! inside it (`require`'s `insufficient_scope`, the rate limit's `rate_limited`), is its
//! outcome, the status is the one the client got, and the key id is known whenever a
//! record was found. A request dropped before its answer is reported with no status.
//!
//! With the `tracing` feature the layer also emits one event per request on the target
//! `tower_api_key::activity` (DEBUG), with the same fields.
//!
//! What the module holds, by concern:
//!
//! | concern | types |
//! |---|---|
//! | the layer and what it reports | [`ActivityLayer`], [`ActivityService`], [`ResponseFuture`], [`ActivityEvent`], [`Outcome`], [`ActivityObserver`] |
//! | the recent requests of each key (`GET /keys/{id}/activity`), folder `log/` | [`ActivityLog`] (in process), `RedisActivityLog` (feature `redis`), [`ActivityStore`] (where the management API reads them), [`LoggedRequest`], [`Recent`] |
//! | the usage history, per key and UTC day (`GET /keys/{id}/usage`, `GET /usage`), folder `history/` | [`DailyUsage`] (in process), `RedisDailyUsage` (feature `redis`), [`UsageHistory`], [`UsageDay`], [`History`], [`DAYS`], [`sessions_usage_id`] |
//! | `last_used_at` without a store write per request | [`LastUsedRecorder`] |
//!
//! The usage *history* counts what happened; the spend caps and plans that decide what may
//! happen are [`usage`](crate::usage).

mod config;
mod future;
mod history;
mod last_used;
mod layer;
mod log;
#[cfg(feature = "redis")]
mod redis_queue;
mod service;
mod ticket;

pub use future::ResponseFuture;
#[cfg(feature = "axum")]
pub(crate) use history::zero_days;
#[cfg(feature = "redis")]
pub use history::RedisDailyUsage;
pub use history::{sessions_usage_id, DailyUsage, History, UsageDay, UsageHistory, DAYS};
pub use last_used::LastUsedRecorder;
pub use layer::ActivityLayer;
#[cfg(feature = "redis")]
pub use log::RedisActivityLog;
pub use log::{ActivityLog, ActivityStore, LoggedRequest, Recent};
pub use service::ActivityService;
pub(crate) use ticket::{ActivityTicket, Verified};

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Response, StatusCode};

use crate::key::Environment;
use crate::principal::CredentialKind;
use crate::reject::{AuthRejection, InvalidKeyReason, RejectionKind};
use crate::store::KeyId;

/// One request's outcome. Carries the key id when a record was found, never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActivityEvent {
    /// The key's id, when a stored record was involved.
    pub key_id: Option<KeyId>,
    /// Whom the credential belongs to, when it was verified.
    pub owner: Option<Arc<str>>,
    /// The verified credential's kind: a key, or a browser session (whose `key_id` is the
    /// session's id).
    pub credential: Option<CredentialKind>,
    /// The verified credential's environment.
    pub environment: Option<Environment>,
    /// Whether a credential was verified (the request then got past the authentication
    /// layer, whatever a layer inside decided).
    pub authenticated: bool,
    /// [`Outcome::Ok`] (also for a route without a credential that nothing refused), or the
    /// rejection the client got, from the authentication layer
    /// (`InvalidApiKey`, `Unavailable`, ...) or from a layer of this crate inside it
    /// (`InsufficientScope`, `RateLimited`).
    pub outcome: Outcome,
    /// For a 401: which one it was (revoked, unknown, ...). Server-side only.
    pub reason: Option<InvalidKeyReason>,
    /// The response's HTTP status; `None` when the service inside failed with an error or
    /// the request was dropped before its answer.
    pub status: Option<StatusCode>,
    /// The request's method.
    pub method: Method,
    /// The request's path, without the query string.
    pub path: String,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// When it happened, on the layer's clock.
    pub at: SystemTime,
    /// What the request was charged, in the spend caps' units (0 without a
    /// [`SpendCapLayer`](crate::usage::SpendCapLayer), or when nothing was spent).
    pub spent: u64,
}

impl ActivityEvent {
    /// The event of a request that has just arrived; the outcome comes with the answer.
    pub(crate) fn arrived(
        method: &Method,
        path: &str,
        client: Option<IpAddr>,
        at: SystemTime,
    ) -> Self {
        Self {
            key_id: None,
            owner: None,
            credential: None,
            environment: None,
            authenticated: false,
            outcome: Outcome::Ok,
            reason: None,
            status: None,
            method: method.clone(),
            path: path.to_owned(),
            client,
            at,
            spent: 0,
        }
    }

    /// Whose use this request is in a usage history: the key's id; a browser session's use
    /// is its owner's ([`sessions_usage_id`]), so that no login opens a fresh history and
    /// the owner's total counts it. `None` when no credential was found.
    pub fn usage_subject(&self) -> Option<Cow<'_, KeyId>> {
        match (self.credential, &self.owner, self.environment) {
            (Some(CredentialKind::Session), Some(owner), Some(environment)) => {
                Some(Cow::Owned(sessions_usage_id(owner, environment)))
            }
            _ => self.key_id.as_ref().map(Cow::Borrowed),
        }
    }

    pub(crate) fn trace(&self) {
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "tower_api_key::activity",
            key_id = self.key_id.as_ref().map(KeyId::as_str),
            authenticated = self.authenticated,
            outcome = self.outcome.as_str(),
            reason = self.reason.map(InvalidKeyReason::as_str),
            status = self.status.map(|status| status.as_u16()),
            method = %self.method,
            path = %self.path,
            client = self.client.map(tracing::field::display),
            "api key activity"
        );
    }
}

/// How a request ended, as the client saw it: accepted, or the kind of rejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Authenticated and passed every layer of this crate.
    Ok,
    /// Refused by a layer of this crate.
    Refused(RejectionKind),
}

impl Outcome {
    /// The outcome of a request refused with `rejection`.
    pub const fn of(rejection: &AuthRejection) -> Self {
        Self::Refused(rejection.kind())
    }

    /// `"ok"` or the rejection's code (`"invalid_api_key"`, `"rate_limited"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused(kind) => kind.code(),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Receives every [`ActivityEvent`]; called on the request path, so keep it quick
/// (hand heavy work to a channel, as [`LastUsedRecorder`] does). Closures implement it.
pub trait ActivityObserver: Send + Sync + 'static {
    /// Called once per request the layer sees.
    fn observe(&self, event: &ActivityEvent);
}

/// Where an event goes: the observer, `tracing`, or both.
#[derive(Clone)]
pub(crate) struct ActivitySink {
    pub(crate) observer: Option<Arc<dyn ActivityObserver>>,
    pub(crate) traced: bool,
}

impl ActivitySink {
    pub(crate) fn emit(&self, event: &ActivityEvent) {
        if self.traced {
            event.trace();
        }
        if let Some(observer) = &self.observer {
            observer.observe(event);
        }
    }
}

/// A request's event, waiting for the answer. Emitted when dropped: after
/// [`PendingActivity::answered`], or without a status when the inner service failed or the
/// request was dropped on the way.
pub(crate) struct PendingActivity {
    pub(crate) event: ActivityEvent,
    pub(crate) sink: ActivitySink,
    pub(crate) ticket: ActivityTicket,
}

impl PendingActivity {
    /// Takes the status and, when a layer refused the request, its rejection.
    pub(crate) fn answered<B>(&mut self, response: &Response<B>) {
        self.event.status = Some(response.status());
        if let Some(rejection) = response.extensions().get::<AuthRejection>() {
            self.event.outcome = Outcome::of(rejection);
            if let AuthRejection::InvalidApiKey { reason, key_id } = rejection {
                self.event.reason = Some(*reason);
                self.event.key_id.clone_from(key_id);
            }
        }
    }
}

impl Drop for PendingActivity {
    fn drop(&mut self) {
        if let Some(verified) = self.ticket.credential() {
            self.event.authenticated = true;
            self.event.key_id = Some(verified.id.clone());
            self.event.owner = Some(Arc::clone(&verified.owner));
            self.event.credential = Some(verified.kind);
            self.event.environment = Some(verified.environment);
        }
        self.event.spent = self.ticket.spent();
        // May run while a panic unwinds through the service: a panicking observer must not
        // turn that into an abort.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.sink.emit(&self.event);
        }));
    }
}

impl<F> ActivityObserver for F
where
    F: Fn(&ActivityEvent) + Send + Sync + 'static,
{
    fn observe(&self, event: &ActivityEvent) {
        self(event)
    }
}

//! Key activity: an observer the authentication layer calls once per request with its
//! outcome, and [`LastUsedRecorder`], which keeps `last_used_at` without a store write per
//! request.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use tower_api_key::activity::ActivityEvent;
//! use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore};
//!
//! let log: Arc<Mutex<Vec<String>>> = Arc::default();
//! let sink = Arc::clone(&log);
//! let layer = AuthLayer::new(Arc::new(MemoryKeyStore::<ForgScope>::new())).observe(move |event: &ActivityEvent| {
//!     // Key id, outcome, method, path, client address, time: never the key.
//!     sink.lock().unwrap().push(format!("{} {} {}", event.outcome, event.method, event.path));
//! });
//! ```
//!
//! A request the layer refuses is reported at once. An authenticated request is reported
//! when the service inside answers, so that a refusal by a layer inside (`require`'s
//! `insufficient_scope`, the rate limit's `rate_limited`) is its outcome, and the status is
//! the one the client got; a request dropped before its answer is reported with no status.
//!
//! With the `tracing` feature the layer also emits one event per request on the target
//! `tower_api_key::activity` (DEBUG), with the same fields.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use http::{Method, Response, StatusCode};
use tokio::sync::mpsc;

use crate::reject::{AuthRejection, InvalidKeyReason};
use crate::store::{KeyId, ManageKeys};

/// One request's outcome. Carries the key id when a record was found, never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActivityEvent {
    /// The key's id, when a stored record was involved.
    pub key_id: Option<KeyId>,
    /// Whether the key was verified (the request then got past the authentication layer,
    /// whatever a layer inside decided).
    pub authenticated: bool,
    /// [`Outcome::Ok`], or the rejection the client got, from the authentication layer
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
}

impl ActivityEvent {
    /// An event for an authenticated request or a rejection; the status comes later.
    pub(crate) fn new(
        outcome: Result<&KeyId, &AuthRejection>,
        method: &Method,
        path: &str,
        client: Option<IpAddr>,
        at: SystemTime,
    ) -> Self {
        let (key_id, outcome, reason) = match outcome {
            Ok(id) => (Some(id.clone()), Outcome::Ok, None),
            Err(rejection @ AuthRejection::InvalidApiKey { reason, key_id }) => {
                (key_id.clone(), Outcome::of(rejection), Some(*reason))
            }
            Err(rejection) => (None, Outcome::of(rejection), None),
        };
        Self {
            key_id,
            authenticated: outcome == Outcome::Ok,
            outcome,
            reason,
            status: None,
            method: method.clone(),
            path: path.to_owned(),
            client,
            at,
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

/// How a request ended, as the client saw it: accepted, or the code of the rejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Authenticated and passed every layer of this crate.
    Ok,
    /// 400 `invalid_request`.
    InvalidRequest,
    /// 401 `invalid_api_key`.
    InvalidApiKey,
    /// 402 `spend_cap_exceeded`.
    SpendCapExceeded,
    /// 403 `environment_not_allowed`.
    EnvironmentNotAllowed,
    /// 403 `insufficient_scope`.
    InsufficientScope,
    /// 429 `rate_limited`.
    RateLimited,
    /// 500 `internal_error`.
    InternalError,
    /// 503 `auth_unavailable`.
    Unavailable,
}

impl Outcome {
    /// The outcome of a request refused with `rejection`.
    pub fn of(rejection: &AuthRejection) -> Self {
        match rejection {
            AuthRejection::InvalidRequest(_) => Self::InvalidRequest,
            AuthRejection::InvalidApiKey { .. } => Self::InvalidApiKey,
            AuthRejection::SpendCapExceeded => Self::SpendCapExceeded,
            AuthRejection::EnvironmentNotAllowed(_) => Self::EnvironmentNotAllowed,
            AuthRejection::InsufficientScope { .. } => Self::InsufficientScope,
            AuthRejection::RateLimited { .. } => Self::RateLimited,
            AuthRejection::MissingLayer(_) => Self::InternalError,
            AuthRejection::Unavailable { .. } => Self::Unavailable,
        }
    }

    /// `"ok"` or the rejection's code (`"invalid_api_key"`, `"rate_limited"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidApiKey => "invalid_api_key",
            Self::SpendCapExceeded => "spend_cap_exceeded",
            Self::EnvironmentNotAllowed => "environment_not_allowed",
            Self::InsufficientScope => "insufficient_scope",
            Self::RateLimited => "rate_limited",
            Self::InternalError => "internal_error",
            Self::Unavailable => "auth_unavailable",
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

/// The event of an authenticated request, waiting for the inner service's answer. Emitted
/// when dropped: after [`PendingActivity::answered`], or without a status when the inner
/// service failed or the request was dropped on the way.
pub(crate) struct PendingActivity {
    pub(crate) event: ActivityEvent,
    pub(crate) sink: ActivitySink,
}

impl PendingActivity {
    /// Takes the status and, when a layer inside refused the request, its code.
    pub(crate) fn answered<B>(&mut self, response: &Response<B>) {
        self.event.status = Some(response.status());
        if let Some(rejection) = response.extensions().get::<AuthRejection>() {
            self.event.outcome = Outcome::of(rejection);
        }
    }
}

impl Drop for PendingActivity {
    fn drop(&mut self) {
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

/// Records `last_used_at` at most once per key per interval, off the request path.
///
/// As an [`ActivityObserver`] it looks at authenticated requests (a key refused by a scope
/// check or a rate limit was still used); when a key's interval has
/// passed it queues one write (never blocking: a full queue drops the write, the next
/// interval retries), and a task it spawned writes through [`ManageKeys::touch`]. A busy key costs
/// one store write per interval. The task ends when the last clone of the recorder is
/// dropped.
#[derive(Clone)]
pub struct LastUsedRecorder {
    interval: Duration,
    last: Arc<DashMap<KeyId, SystemTime>>,
    queue: mpsc::Sender<(KeyId, SystemTime)>,
}

impl LastUsedRecorder {
    /// Spawns the writer task on the current Tokio runtime, writing to `store` at most
    /// once per key per `interval`.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn<St: ManageKeys>(store: Arc<St>, interval: Duration) -> Self {
        let (queue, mut writes) = mpsc::channel::<(KeyId, SystemTime)>(1024);
        tokio::spawn(async move {
            while let Some((id, at)) = writes.recv().await {
                if let Err(_error) = store.touch(&id, at).await {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(target: "tower_api_key::activity", key_id = id.as_str(), error = %_error, "could not record last use");
                }
            }
        });
        Self {
            interval,
            last: Arc::new(DashMap::new()),
            queue,
        }
    }

    fn due(&self, id: &KeyId, at: SystemTime) -> bool {
        use dashmap::mapref::entry::Entry;
        match self.last.entry(id.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(at);
                true
            }
            Entry::Occupied(mut slot) => {
                let due = at
                    .duration_since(*slot.get())
                    .is_ok_and(|since| since >= self.interval);
                if due {
                    slot.insert(at);
                }
                due
            }
        }
    }
}

impl ActivityObserver for LastUsedRecorder {
    fn observe(&self, event: &ActivityEvent) {
        let (Some(id), true) = (&event.key_id, event.authenticated) else {
            return;
        };
        // Checked without cloning the id: most requests of a busy key are not due.
        if let Some(last) = self.last.get(id) {
            if event
                .at
                .duration_since(*last)
                .map_or(true, |since| since < self.interval)
            {
                return;
            }
        }
        if self.due(id, event.at) {
            let _dropped_when_full = self.queue.try_send((id.clone(), event.at));
        }
    }
}

impl fmt::Debug for LastUsedRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastUsedRecorder")
            .field("interval", &self.interval)
            .field("keys", &self.last.len())
            .finish()
    }
}

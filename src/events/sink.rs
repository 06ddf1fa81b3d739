//! [`EventSink`]: where events go; [`KeyEvents`]: an application's sinks, the audit log
//! every event also lands in, and the gate that makes an event once per crossing.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{EventGate, KeyEvent};
use crate::audit::AuditLog;
use crate::store::StoreError;

/// What a sink answers.
pub type EventFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// A receiver of events: the application's own observer (any `Fn(&KeyEvent)`), or the
/// webhook outbox (`WebhookOutbox`), which keeps the event until it is delivered.
pub trait EventSink: Send + Sync + 'static {
    /// Takes `event`. An error is logged; the other sinks still get the event.
    fn publish<'a>(&'a self, event: &'a KeyEvent) -> EventFuture<'a>;
}

impl<F: Fn(&KeyEvent) + Send + Sync + 'static> EventSink for F {
    fn publish<'a>(&'a self, event: &'a KeyEvent) -> EventFuture<'a> {
        self(event);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The application's event sinks, the audit log, and the gate: built once, cloned into
/// whatever emits events (the management API, the spend caps, the rate limits, the scan,
/// the leak intake).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tower_api_key::events::{KeyEvent, KeyEventKind, KeyEvents, MemoryEventGate};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&seen);
/// let events = KeyEvents::new()
///     .sink(move |event: &KeyEvent| sink.lock().unwrap().push(event.kind().name()))
///     .gate(MemoryEventGate::new());
/// let crossing = || KeyEvent::new(std::time::SystemTime::now(), "org_1", KeyEventKind::RateLimited {
///     key_id: "key_000000000000000000000001".parse().unwrap(),
///     class: "ai".into(),
///     refusals: 10,
/// }).unwrap();
/// let hour = std::time::Duration::from_secs(3600);
/// assert!(events.publish_once("org_1:ai:window-7", hour, crossing()).await);
/// assert!(!events.publish_once("org_1:ai:window-7", hour, crossing()).await, "once per crossing");
/// assert_eq!(*seen.lock().unwrap(), ["rate_limit.exceeded"]);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct KeyEvents {
    sinks: Vec<Arc<dyn EventSink>>,
    audit: Option<Arc<dyn AuditLog>>,
    gate: Option<Arc<dyn EventGate>>,
}

impl KeyEvents {
    /// No sink yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends every event to `sink` too.
    #[must_use]
    pub fn sink(mut self, sink: impl EventSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Records the events no management request records (crossings, scans, leaks) in
    /// `log` too (actor `system`).
    #[must_use]
    pub fn audit(mut self, log: impl AuditLog) -> Self {
        self.audit = Some(Arc::new(log));
        self
    }

    /// Decides "once per crossing" through `gate`: shared by every instance when it is a
    /// shared store's (Redis, SQL), so a budget crossing 80 % fires once, not once per
    /// instance. Without a gate, [`publish_once`](Self::publish_once) never publishes (it
    /// cannot promise once).
    #[must_use]
    pub fn gate(mut self, gate: impl EventGate) -> Self {
        self.gate = Some(Arc::new(gate));
        self
    }

    /// Whether any sink or log would take an event (so emitters skip building one).
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty() && self.audit.is_none()
    }

    /// Sends `event` to every sink, and its audit entry (if it has one) to the log. A
    /// failing sink or log loses the event for it alone (logged with `tracing`).
    pub async fn publish(&self, event: KeyEvent) {
        for sink in &self.sinks {
            if let Err(_error) = sink.publish(&event).await {
                #[cfg(feature = "tracing")]
                tracing::error!(target: "tower_api_key::events", event = event.kind().name(), error = %_error, "an event sink failed");
            }
        }
        if let (Some(log), Some(entry)) = (&self.audit, event.audit_entry()) {
            if let Err(_error) = log.append(entry).await {
                #[cfg(feature = "tracing")]
                tracing::error!(target: "tower_api_key::events", error = %_error, "could not audit an event");
            }
        }
    }

    /// Publishes `event` only if `crossing` (e.g. `owner:live:2026-12:80`) was not
    /// published within `remember`, as the gate decides: answers whether it published.
    /// A gate that fails publishes nothing (an event missed is better than one per request).
    pub async fn publish_once(&self, crossing: &str, remember: Duration, event: KeyEvent) -> bool {
        let first = self.first(crossing, remember).await;
        if first {
            self.publish(event).await;
        }
        first
    }

    /// Whether the gate answers that `crossing` is new within `remember`: `false` without
    /// a gate or when it fails (work that must happen once is better missed than doubled).
    pub(crate) async fn first(&self, crossing: &str, remember: Duration) -> bool {
        let Some(gate) = &self.gate else {
            return false;
        };
        gate.first(crossing, remember)
            .await
            .inspect_err(|_error| {
                #[cfg(feature = "tracing")]
                tracing::error!(target: "tower_api_key::events", error = %_error, "the event gate failed");
            })
            .unwrap_or(false)
    }
}

impl fmt::Debug for KeyEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEvents")
            .field("sinks", &self.sinks.len())
            .field("audit", &self.audit.is_some())
            .field("gate", &self.gate.is_some())
            .finish()
    }
}

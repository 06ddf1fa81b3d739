//! [`WebhookOutbox`]: the event sink that turns an event into one delivery per endpoint
//! of its owner that wants it, in the store's outbox.

use std::fmt;
use std::sync::Arc;

use super::{Delivery, WebhookStore};
use crate::events::{EventFuture, EventSink, KeyEvent};

/// An [`EventSink`] that enqueues each event for the owner's endpoints: the event is in
/// the store before `publish` returns, so it survives a restart (with a shared store); a
/// [`WebhookSender`](super::WebhookSender) delivers it.
#[derive(Clone)]
pub struct WebhookOutbox {
    store: Arc<dyn WebhookStore>,
}

impl WebhookOutbox {
    /// Enqueues into `store`.
    pub fn new(store: Arc<dyn WebhookStore>) -> Self {
        Self { store }
    }
}

impl EventSink for WebhookOutbox {
    fn publish<'a>(&'a self, event: &'a KeyEvent) -> EventFuture<'a> {
        Box::pin(async move {
            let endpoints = self.store.endpoints(event.owner()).await?;
            let body = event.to_json();
            let deliveries: Vec<Delivery> = endpoints
                .iter()
                .filter(|endpoint| endpoint.wants(event.kind()))
                .map(|endpoint| {
                    Delivery::new(
                        event.id(),
                        endpoint.id(),
                        event.owner(),
                        event.kind().name(),
                        body.clone(),
                        event.at(),
                    )
                })
                .collect();
            if deliveries.is_empty() {
                return Ok(());
            }
            self.store.enqueue(deliveries).await
        })
    }
}

impl fmt::Debug for WebhookOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookOutbox").finish_non_exhaustive()
    }
}

//! The quickstart's events: webhooks (an outbox in memory, a receiver of its own at
//! `/demo/webhook` that prints what it gets), budget thresholds, the audit log; and, with
//! feature `leak-intake`, a leak report it can sign with a demo P-256 key.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_api_key::audit::MemoryAuditLog;
use tower_api_key::events::{KeyEvents, MemoryEventGate};
use tower_api_key::webhooks::{MemoryWebhookStore, WebhookOutbox};

/// What the demo's receiver got, newest last (20 at most).
pub type Received = Arc<Mutex<VecDeque<Value>>>;

/// The events' sinks and stores.
#[derive(Clone)]
pub struct DemoEvents {
    /// Every emitter's: the webhook outbox, the audit log, once per crossing in memory.
    pub events: KeyEvents,
    /// Endpoints and deliveries.
    pub webhooks: Arc<MemoryWebhookStore>,
    /// What `/demo/webhook` received.
    pub received: Received,
    /// The demo scanner's key, whose reports `/leaks` accepts.
    #[cfg(feature = "leak-intake")]
    pub scanner: p256::ecdsa::SigningKey,
}

impl DemoEvents {
    pub fn new(audit: &Arc<MemoryAuditLog>) -> Self {
        let webhooks = Arc::new(MemoryWebhookStore::new());
        let events = KeyEvents::new()
            .sink(WebhookOutbox::new(webhooks.clone()))
            .audit(Arc::clone(audit))
            .gate(MemoryEventGate::new());
        Self {
            events,
            webhooks,
            received: Received::default(),
            #[cfg(feature = "leak-intake")]
            scanner: scanner_key(),
        }
    }
}

/// A fresh P-256 key (a real scanner's is GitHub's; its public key is configured).
#[cfg(feature = "leak-intake")]
fn scanner_key() -> p256::ecdsa::SigningKey {
    loop {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).expect("the OS has randomness");
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// A leak report of `token`, and its signature header, as the demo scanner sends it.
#[cfg(feature = "leak-intake")]
pub fn signed_report(scanner: &p256::ecdsa::SigningKey, token: &str) -> (String, String) {
    use base64ct::Encoding;
    use p256::ecdsa::signature::Signer;
    let body = json!([{ "token": token, "type": "forg_api_key", "url": "https://github.com/example/repo/blob/main/.env", "source": "content" }]).to_string();
    let signature: p256::ecdsa::Signature = scanner.sign(body.as_bytes());
    (
        body,
        base64ct::Base64::encode_string(signature.to_der().as_bytes()),
    )
}

/// `POST /demo/webhook` prints and keeps what it gets; `GET` shows it.
pub fn receiver(received: Received) -> Router {
    async fn take(State(received): State<Received>, headers: HeaderMap, body: Bytes) {
        let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        println!("webhook received: {} (webhook-id {id})", event["type"]);
        let mut received = received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        received.push_back(json!({ "webhook_id": id, "event": event }));
        if received.len() > 20 {
            received.pop_front();
        }
    }
    async fn show(State(received): State<Received>) -> Json<Value> {
        let received = received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Json(json!({ "data": received.iter().collect::<Vec<_>>() }))
    }
    Router::new()
        .route("/demo/webhook", get(show).post(take))
        .with_state(received)
}

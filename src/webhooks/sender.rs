//! [`WebhookSender`]: takes due deliveries from the outbox and sends them, signed, with
//! retries, backoff and jitter, until delivered or dead (feature `webhooks`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Attempt, Delivery, DeliveryState, Retries, WebhookStore};
use crate::clock::{Clock, SystemClock};
use crate::store::StoreError;

/// Sends the outbox's deliveries: [`run_once`](Self::run_once) takes those due now (each
/// leased, so that two senders on one store never send one delivery at once) and sends
/// them concurrently; [`spawn`](Self::spawn) runs it on an interval. Each request:
/// `POST` the event's JSON with `webhook-id` (the event's id, the same on every retry),
/// `webhook-timestamp` and `webhook-signature`; 2xx is delivered; anything else, a
/// timeout (10 s) or a refused connection is retried after [`Retries`]' wait, and dead
/// after its last attempt. Redirects are not followed (an endpoint cannot point the
/// sender elsewhere). Deliveries that ended are purged after the retention (7 days).
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower_api_key::webhooks::{MemoryWebhookStore, WebhookSender};
///
/// # #[tokio::main] async fn main() {
/// let store = Arc::new(MemoryWebhookStore::new());
/// let sender = WebhookSender::new(store).spawn(Duration::from_secs(1));
/// # drop(sender); }
/// ```
pub struct WebhookSender {
    store: Arc<dyn WebhookStore>,
    client: reqwest::Client,
    retries: Retries,
    clock: Arc<dyn Clock>,
    lease: Duration,
    batch: usize,
    retention: Duration,
}

impl WebhookSender {
    /// Sends from `store`: default [`Retries`], 100 deliveries per run, leases of a
    /// minute, on the system clock.
    pub fn new(store: Arc<dyn WebhookStore>) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("tower-api-key/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            store,
            client,
            retries: Retries::default(),
            clock: Arc::new(SystemClock),
            lease: Duration::from_secs(60),
            batch: 100,
            retention: Duration::from_secs(7 * 86_400),
        }
    }

    /// When to try again, and how often.
    #[must_use]
    pub fn retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    /// On `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests: `run_once` then
    /// sends what is due at its time).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Keeps deliveries that ended (delivered, dead) for `age` (default 7 days).
    #[must_use]
    pub fn retention(mut self, age: Duration) -> Self {
        self.retention = age;
        self
    }

    /// Sends every delivery due now (up to the batch); answers how many were attempted.
    ///
    /// # Errors
    /// The store's, when it cannot be read or written (the deliveries stay leased and come
    /// due again when the lease ends).
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let due = self.store.claim(now, self.lease, self.batch).await?;
        let attempted = due.len();
        let sends = due.iter().map(|delivery| self.attempt(delivery));
        for (delivery, attempt) in due.iter().zip(futures_util::future::join_all(sends).await) {
            self.store.finish(delivery, attempt).await?;
        }
        if let Some(before) = now.checked_sub(self.retention) {
            self.store.purge(before).await?;
        }
        Ok(attempted)
    }

    /// One attempt of `delivery`, and what it came to.
    async fn attempt(&self, delivery: &Delivery) -> Attempt {
        let now = self.clock.now();
        let ended = |state, status, error: Option<String>| Attempt {
            state,
            next_at: now,
            status,
            error,
        };
        let endpoint = match self.store.endpoint(&delivery.endpoint_id).await {
            Ok(Some(endpoint)) => endpoint,
            Ok(None) => return ended(DeliveryState::Dead, None, Some("endpoint removed".into())),
            Err(_) => return self.failed(delivery, now, None, "store unavailable".into()),
        };
        let timestamp = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let signature =
            endpoint
                .secret()
                .sign(&delivery.event_id, timestamp, delivery.body.as_bytes());
        let sent = self
            .client
            .post(endpoint.url())
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => ended(
                DeliveryState::Delivered,
                Some(response.status().as_u16()),
                None,
            ),
            Ok(response) => {
                let status = response.status().as_u16();
                self.failed(delivery, now, Some(status), format!("answered {status}"))
            }
            Err(error) => {
                let why = if error.is_timeout() {
                    "timed out"
                } else if error.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                self.failed(delivery, now, None, why.to_owned())
            }
        }
    }

    /// A failed attempt: pending again after the backoff, or dead after the last.
    fn failed(
        &self,
        delivery: &Delivery,
        now: SystemTime,
        status: Option<u16>,
        error: String,
    ) -> Attempt {
        let attempt = delivery.attempts + 1;
        let (state, next_at) = if attempt >= self.retries.attempts() {
            (DeliveryState::Dead, now)
        } else {
            let next = now.checked_add(self.retries.delay(attempt)).unwrap_or(now);
            (DeliveryState::Pending, next)
        };
        Attempt {
            state,
            next_at,
            status,
            error: Some(error),
        }
    }

    /// Runs [`run_once`](Self::run_once) every `every` on the current Tokio runtime until
    /// the handle is dropped.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn(self, every: Duration) -> SenderHandle {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(_error) = self.run_once().await {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(target: "tower_api_key::webhooks", error = %_error, "the webhook outbox could not be read");
                }
            }
        });
        SenderHandle(task)
    }
}

/// A running sender: stops when dropped.
#[derive(Debug)]
pub struct SenderHandle(tokio::task::JoinHandle<()>);

impl Drop for SenderHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSender")
            .field("retries", &self.retries)
            .field("lease", &self.lease)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

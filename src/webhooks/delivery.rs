//! [`Delivery`]: one event on its way to one endpoint, its attempts and its state; and
//! [`Retries`], when the next attempt is.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed: kept (a dead letter) until the store's retention ends.
    Dead,
}

impl DeliveryState {
    /// `pending`, `delivered` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

/// One event for one endpoint: the `webhook-id` is the event's id, the same on every
/// attempt; the body is the event's JSON, fixed when it was enqueued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The event's id (`webhook-id`).
    pub event_id: String,
    /// The endpoint's id.
    pub endpoint_id: String,
    /// The endpoint's owner.
    pub owner: String,
    /// The event's type (`key.revoked`, …).
    pub event_type: String,
    /// The body, as it is signed and sent.
    pub body: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it was enqueued.
    #[serde(with = "crate::support::unix_millis")]
    pub created_at: SystemTime,
    /// When it is due next (pending), or when it ended.
    #[serde(with = "crate::support::unix_millis")]
    pub next_at: SystemTime,
    /// The last answer's HTTP status, if one came.
    #[serde(default)]
    pub last_status: Option<u16>,
    /// Why the last attempt failed (never a secret: a status, a timeout, a refused
    /// connection).
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Delivery {
    /// A pending delivery of `event_type`'s `body` (event `event_id`) to `endpoint_id`,
    /// due at `now`.
    pub fn new(
        event_id: impl Into<String>,
        endpoint_id: impl Into<String>,
        owner: impl Into<String>,
        event_type: impl Into<String>,
        body: impl Into<String>,
        now: SystemTime,
    ) -> Self {
        Self {
            event_id: event_id.into(),
            endpoint_id: endpoint_id.into(),
            owner: owner.into(),
            event_type: event_type.into(),
            body: body.into(),
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: now,
            next_at: now,
            last_status: None,
            last_error: None,
        }
    }
}

impl Delivery {
    /// The delivery after `attempt`: one more attempt, its state, when next (or ended),
    /// the answer.
    pub fn after(&self, attempt: Attempt) -> Self {
        let mut next = self.clone();
        next.attempts += 1;
        next.state = attempt.state;
        next.next_at = attempt.next_at;
        next.last_status = attempt.status;
        next.last_error = attempt.error;
        next
    }
}

/// What an attempt came to, for [`WebhookStore::finish`](super::WebhookStore::finish).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The delivery's state after it.
    pub state: DeliveryState,
    /// When the next attempt is due (pending), or when it ended.
    pub next_at: SystemTime,
    /// The answer's status, if one came.
    pub status: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Exponential backoff with full jitter: attempt `n` (from 1) waits a random time up to
/// `base × 2^(n-1)` (at most `max_delay`); after `attempts` failures the delivery is dead.
///
/// ```
/// use std::time::Duration;
/// use tower_api_key::webhooks::Retries;
///
/// let retries = Retries::default();
/// assert_eq!(retries.attempts(), 8);
/// for n in 1..=12 {
///     assert!(retries.delay(n) <= Duration::from_secs(3600));
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retries {
    base: Duration,
    max_delay: Duration,
    attempts: u32,
}

impl Default for Retries {
    /// 5 s, doubling, at most an hour apart, 8 attempts (about 10 minutes of tries before
    /// the longer waits, and dead within a few hours).
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
            attempts: 8,
        }
    }
}

impl Retries {
    /// `attempts` tries (at least 1), waits from `base` doubling up to `max_delay`.
    pub fn new(base: Duration, max_delay: Duration, attempts: u32) -> Self {
        Self {
            base,
            max_delay: max_delay.max(base),
            attempts: attempts.max(1),
        }
    }

    /// How many attempts before a delivery is dead.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait after failed attempt `n` (from 1): between half and all of the capped
    /// exponential step (half kept, so that retries never pile up at once).
    pub fn delay(&self, n: u32) -> Duration {
        let step = self
            .base
            .checked_mul(1_u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        let mut random = [0_u8; 4];
        // No randomness: no jitter (the wait is still bounded and growing).
        let fraction = getrandom::fill(&mut random).map_or(1.0, |()| {
            f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX)
        });
        step.mul_f64(0.5 + fraction / 2.0).min(self.max_delay)
    }
}

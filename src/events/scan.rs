//! [`KeyScan`]: the scheduled walk over every key that announces `key.expiring` and
//! `key.rotation_due`, a bounded batch per run, once per key on every instance together.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::{KeyEvent, KeyEventKind, KeyEvents, KeyRef};
use crate::store::{KeyId, KeyRecord, KeyStatus, ManageError, ManageKeys};
use crate::support::unix_millis::millis;

/// Walks every key of a store a batch at a time ([`ManageKeys::records_after`]) and
/// publishes, through [`KeyEvents::publish_once`]:
/// - `key.expiring` for an active key that expires within the notice (7 days by
///   default), once per key and expiry (an expiry moved by an update is a new crossing);
/// - `key.rotation_due` for an active key older than the store policy's
///   [rotation age](crate::store::KeyPolicy::rotation_age), once per key and rotation age
///   (a key left unrotated is announced again an age later).
///
/// **Shared by the instances through the events' gate**: a run first claims the period
/// (`every`, 1 minute by default), so one instance scans per period, and each event is
/// claimed too, so a key met by two instances is announced once. Without a gate nothing
/// is announced (once cannot be promised). Work per run: one page of `batch` records
/// (500 by default), so a full pass over *n* keys takes *n* / `batch` periods (100,000
/// keys: 200 minutes at the defaults), then starts again.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower_api_key::events::{KeyEvents, KeyScan, MemoryEventGate};
/// use tower_api_key::{ForgScope, MemoryKeyStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let keys = Arc::new(MemoryKeyStore::<ForgScope>::new());
/// let events = KeyEvents::new().gate(MemoryEventGate::new()).sink(|_: &_| {});
/// let scan = KeyScan::new(keys, events).notice(Duration::from_secs(14 * 86_400));
/// let run = scan.run().await.unwrap();
/// assert_eq!(run.examined, 0);
/// // In a server: `tokio::spawn(scan.repeat())`, one pass per `every`.
/// # });
/// ```
pub struct KeyScan<M: ManageKeys> {
    store: Arc<M>,
    events: KeyEvents,
    notice: Duration,
    every: Duration,
    batch: NonZeroUsize,
    name: String,
    cursor: Mutex<Option<KeyId>>,
}

/// What one [`KeyScan::run`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanRun {
    /// Whether this instance had the period (another instance scans otherwise).
    pub claimed: bool,
    /// Records read.
    pub examined: usize,
    /// Events published by this run.
    pub announced: usize,
    /// Whether the run reached the last key (the next one starts from the first).
    pub finished_pass: bool,
}

impl<M: ManageKeys> KeyScan<M> {
    /// Scans `store`, publishing through `events` (which needs a gate: see above).
    pub fn new(store: Arc<M>, events: KeyEvents) -> Self {
        Self {
            store,
            events,
            notice: Duration::from_secs(7 * 86_400),
            every: Duration::from_secs(60),
            batch: NonZeroUsize::new(500).unwrap_or(NonZeroUsize::MIN),
            name: "keys".to_owned(),
            cursor: Mutex::new(None),
        }
    }

    /// Announces keys that expire within `notice` (default 7 days).
    #[must_use]
    pub fn notice(mut self, notice: Duration) -> Self {
        self.notice = notice;
        self
    }

    /// One run per `every` on all instances together (default 1 minute; at least 1
    /// second).
    #[must_use]
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_secs(1));
        self
    }

    /// Records read per run (default 500).
    #[must_use]
    pub fn batch(mut self, batch: NonZeroUsize) -> Self {
        self.batch = batch;
        self
    }

    /// Names the scan in the gate (default `keys`): two scans of different stores that
    /// share a gate need different names.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// One run: claims the period, reads one batch after the cursor and announces what is
    /// due in it.
    ///
    /// # Errors
    /// The store's ([`ManageError::Unsupported`] for a store without
    /// [`records_after`](ManageKeys::records_after)); the cursor stays, so the next run
    /// reads the same batch again.
    pub async fn run(&self) -> Result<ScanRun, ManageError> {
        let now = self.store.policy().now();
        let every = i64::try_from(self.every.as_millis()).unwrap_or(i64::MAX);
        let period = millis(now) / every.max(1);
        let lease = format!("scan:{}:{period}", self.name);
        if !self.events.first(&lease, self.every).await {
            return Ok(ScanRun::default());
        }
        let after = self.lock().clone();
        let page = self.store.records_after(after.as_ref(), self.batch).await?;
        let mut run = ScanRun {
            claimed: true,
            examined: page.records.len(),
            announced: 0,
            finished_pass: page.next.is_none(),
        };
        for record in &page.records {
            run.announced += self.announce(record, now).await;
        }
        *self.lock() = page.next;
        Ok(run)
    }

    /// Runs every `every`, forever (spawn it). A failed run is logged and retried at the
    /// next period.
    pub async fn repeat(self) {
        loop {
            if let Err(_error) = self.run().await {
                #[cfg(feature = "tracing")]
                tracing::error!(target: "tower_api_key::events", error = %_error, "a key scan failed");
            }
            // `sleep`, not an interval: any `every`, up to `Duration::MAX`, waits without
            // overflowing a deadline.
            tokio::time::sleep(self.every).await;
        }
    }

    /// The events due for `record` at `now`, each published once: how many were.
    async fn announce(&self, record: &KeyRecord<M::Scope>, now: SystemTime) -> usize {
        if record.status_at(now) != KeyStatus::Active {
            return 0;
        }
        let mut announced = 0;
        if let Some(expires_at) = record.expires_at() {
            let left = expires_at.duration_since(now).unwrap_or_default();
            if left <= self.notice {
                let crossing = format!("key.expiring:{}:{}", record.id(), millis(expires_at));
                let kind = KeyEventKind::Expiring {
                    key: KeyRef::of(record),
                    expires_at,
                };
                // Remembered past the expiry: a key announced stays announced.
                let remember = left.saturating_add(self.notice);
                announced +=
                    usize::from(self.publish(record, now, &crossing, remember, kind).await);
            }
        }
        let policy = self.store.policy();
        if let Some(age) = policy.rotation_period() {
            if policy.rotation_due(record, now) {
                let created = millis(record.created_at());
                let crossing = format!("key.rotation_due:{}:{created}", record.id());
                let kind = KeyEventKind::RotationDue {
                    key: KeyRef::of(record),
                    created_at: record.created_at(),
                };
                announced += usize::from(self.publish(record, now, &crossing, age, kind).await);
            }
        }
        announced
    }

    async fn publish(
        &self,
        record: &KeyRecord<M::Scope>,
        now: SystemTime,
        crossing: &str,
        remember: Duration,
        kind: KeyEventKind,
    ) -> bool {
        let Ok(event) = KeyEvent::new(now, record.owner(), kind) else {
            return false;
        };
        self.events.publish_once(crossing, remember, event).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<KeyId>> {
        self.cursor.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<M: ManageKeys> std::fmt::Debug for KeyScan<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyScan")
            .field("name", &self.name)
            .field("notice", &self.notice)
            .field("every", &self.every)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

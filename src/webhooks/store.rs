//! [`WebhookStore`]: the endpoints and the outbox, in a store every instance shares; and
//! [`MemoryWebhookStore`], the one of a single process.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::{Attempt, Delivery, DeliveryState, WebhookEndpoint};
use crate::store::{StoreError, StoreErrorKind};

/// What a webhook store answers.
pub type WebhookFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Endpoints and the outbox: an event enqueued here survives a restart of the instance
/// that enqueued it (in a shared store), and every delivery is claimed by one sender at a
/// time (a lease: a sender that dies mid-attempt leaves it to another after the lease).
pub trait WebhookStore: Send + Sync + 'static {
    /// Adds `endpoint` unless its owner has `max` already: answers whether it was added.
    fn add_endpoint<'a>(
        &'a self,
        endpoint: &'a WebhookEndpoint,
        max: usize,
    ) -> WebhookFuture<'a, bool>;

    /// `owner`'s endpoints, oldest first.
    fn endpoints<'a>(&'a self, owner: &'a str) -> WebhookFuture<'a, Vec<WebhookEndpoint>>;

    /// The endpoint `id`.
    fn endpoint<'a>(&'a self, id: &'a str) -> WebhookFuture<'a, Option<WebhookEndpoint>>;

    /// Removes `owner`'s endpoint `id` and its deliveries: answers whether it was there.
    fn remove_endpoint<'a>(&'a self, owner: &'a str, id: &'a str) -> WebhookFuture<'a, bool>;

    /// Enqueues `deliveries`; one already enqueued for the same event and endpoint is kept
    /// as it is (an event is delivered once per endpoint).
    fn enqueue(&self, deliveries: Vec<Delivery>) -> WebhookFuture<'_, ()>;

    /// Up to `limit` pending deliveries due at `now`, each leased to the caller until
    /// `now + lease` (no other claim returns it meanwhile).
    fn claim(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> WebhookFuture<'_, Vec<Delivery>>;

    /// Records `attempt` on a claimed delivery: one more attempt, its new state, when it
    /// is next due, the answer; the lease ends.
    fn finish<'a>(&'a self, delivery: &'a Delivery, attempt: Attempt) -> WebhookFuture<'a, ()>;

    /// The latest deliveries to endpoint `id`, newest first.
    fn deliveries<'a>(
        &'a self,
        endpoint_id: &'a str,
        limit: usize,
    ) -> WebhookFuture<'a, Vec<Delivery>>;

    /// Deletes deliveries that ended (delivered or dead) before `before`: answers how
    /// many. The sender calls it as it runs, with its retention.
    fn purge(&self, before: SystemTime) -> WebhookFuture<'_, usize>;
}

type Key = (String, String);

/// Endpoints and deliveries in this process (gone with it: use a shared store's for an
/// outbox that survives a restart). At most `capacity` deliveries (default 100,000): past
/// it, new ones are refused with an error (the event reaches the other sinks), never
/// memory without bound.
pub struct MemoryWebhookStore {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    endpoints: HashMap<String, WebhookEndpoint>,
    deliveries: HashMap<Key, Delivery>,
    // Pending deliveries by when they are due (a claimed one is due again when its lease ends).
    due: BTreeSet<(SystemTime, Key)>,
    // Ended deliveries by when they ended: what `purge` takes from the front.
    ended: BTreeSet<(SystemTime, Key)>,
    // Each endpoint's deliveries by when they were enqueued.
    history: HashMap<String, BTreeSet<(SystemTime, Key)>>,
}

impl Default for MemoryWebhookStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryWebhookStore {
    /// Empty, 100,000 deliveries at most.
    pub fn new() -> Self {
        Self {
            inner: Mutex::default(),
            capacity: 100_000,
        }
    }

    /// At most `deliveries` held (at least 1).
    #[must_use]
    pub fn capacity(mut self, deliveries: usize) -> Self {
        self.capacity = deliveries.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn ready<T: Send + 'static>(value: Result<T, StoreError>) -> WebhookFuture<'static, T> {
    Box::pin(std::future::ready(value))
}

impl WebhookStore for MemoryWebhookStore {
    fn add_endpoint<'a>(
        &'a self,
        endpoint: &'a WebhookEndpoint,
        max: usize,
    ) -> WebhookFuture<'a, bool> {
        let mut inner = self.lock();
        let held = inner
            .endpoints
            .values()
            .filter(|e| e.owner() == endpoint.owner())
            .count();
        let added = held < max && !inner.endpoints.contains_key(endpoint.id());
        if added {
            inner
                .endpoints
                .insert(endpoint.id().to_owned(), endpoint.clone());
        }
        ready(Ok(added))
    }

    fn endpoints<'a>(&'a self, owner: &'a str) -> WebhookFuture<'a, Vec<WebhookEndpoint>> {
        let mut found: Vec<WebhookEndpoint> = self
            .lock()
            .endpoints
            .values()
            .filter(|endpoint| endpoint.owner() == owner)
            .cloned()
            .collect();
        found.sort_by_key(|endpoint| (endpoint.created_at(), endpoint.id().to_owned()));
        ready(Ok(found))
    }

    fn endpoint<'a>(&'a self, id: &'a str) -> WebhookFuture<'a, Option<WebhookEndpoint>> {
        ready(Ok(self.lock().endpoints.get(id).cloned()))
    }

    fn remove_endpoint<'a>(&'a self, owner: &'a str, id: &'a str) -> WebhookFuture<'a, bool> {
        let mut inner = self.lock();
        if inner
            .endpoints
            .get(id)
            .is_none_or(|endpoint| endpoint.owner() != owner)
        {
            return ready(Ok(false));
        }
        inner.endpoints.remove(id);
        for (_, key) in inner.history.remove(id).unwrap_or_default() {
            if let Some(delivery) = inner.deliveries.remove(&key) {
                inner.due.remove(&(delivery.next_at, key.clone()));
                inner.ended.remove(&(delivery.next_at, key));
            }
        }
        ready(Ok(true))
    }

    fn enqueue(&self, deliveries: Vec<Delivery>) -> WebhookFuture<'_, ()> {
        let mut inner = self.lock();
        for delivery in deliveries {
            let key = (delivery.event_id.clone(), delivery.endpoint_id.clone());
            if inner.deliveries.contains_key(&key) {
                continue;
            }
            if inner.deliveries.len() >= self.capacity {
                return ready(Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    "the webhook outbox is full",
                )));
            }
            inner.due.insert((delivery.next_at, key.clone()));
            inner
                .history
                .entry(delivery.endpoint_id.clone())
                .or_default()
                .insert((delivery.created_at, key.clone()));
            inner.deliveries.insert(key, delivery);
        }
        ready(Ok(()))
    }

    fn claim(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> WebhookFuture<'_, Vec<Delivery>> {
        let mut inner = self.lock();
        let due: Vec<(SystemTime, Key)> = inner
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .cloned()
            .collect();
        let until = now.checked_add(lease).unwrap_or(now);
        let mut claimed = Vec::with_capacity(due.len());
        for (at, key) in due {
            inner.due.remove(&(at, key.clone()));
            inner.due.insert((until, key.clone()));
            if let Some(delivery) = inner.deliveries.get_mut(&key) {
                delivery.next_at = until;
                claimed.push(delivery.clone());
            }
        }
        ready(Ok(claimed))
    }

    fn finish<'a>(&'a self, delivery: &'a Delivery, attempt: Attempt) -> WebhookFuture<'a, ()> {
        let mut inner = self.lock();
        let key = (delivery.event_id.clone(), delivery.endpoint_id.clone());
        let Some(stored) = inner.deliveries.get_mut(&key) else {
            return ready(Ok(())); // its endpoint was removed meanwhile
        };
        let leased = stored.next_at;
        *stored = stored.after(attempt);
        let (state, next_at) = (stored.state, stored.next_at);
        inner.due.remove(&(leased, key.clone()));
        if state == DeliveryState::Pending {
            inner.due.insert((next_at, key));
        } else {
            inner.ended.insert((next_at, key));
        }
        ready(Ok(()))
    }

    fn deliveries<'a>(
        &'a self,
        endpoint_id: &'a str,
        limit: usize,
    ) -> WebhookFuture<'a, Vec<Delivery>> {
        let inner = self.lock();
        let found = inner
            .history
            .get(endpoint_id)
            .map(|keys| {
                keys.iter()
                    .rev()
                    .filter_map(|(_, key)| inner.deliveries.get(key).cloned())
                    .take(limit)
                    .collect()
            })
            .unwrap_or_default();
        ready(Ok(found))
    }

    fn purge(&self, before: SystemTime) -> WebhookFuture<'_, usize> {
        let mut inner = self.lock();
        let mut purged = 0;
        // The ended ones, oldest first: each a set's front, O(log n).
        while let Some((at, key)) = inner.ended.first().cloned() {
            if at >= before {
                break;
            }
            inner.ended.pop_first();
            if let Some(delivery) = inner.deliveries.remove(&key) {
                purged += 1;
                let emptied = inner.history.get_mut(&key.1).is_some_and(|keys| {
                    keys.remove(&(delivery.created_at, key.clone()));
                    keys.is_empty()
                });
                if emptied {
                    inner.history.remove(&key.1);
                }
            }
        }
        ready(Ok(purged))
    }
}

impl fmt::Debug for MemoryWebhookStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryWebhookStore")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<W: WebhookStore + ?Sized> WebhookStore for std::sync::Arc<W> {
    fn add_endpoint<'a>(
        &'a self,
        endpoint: &'a WebhookEndpoint,
        max: usize,
    ) -> WebhookFuture<'a, bool> {
        (**self).add_endpoint(endpoint, max)
    }
    fn endpoints<'a>(&'a self, owner: &'a str) -> WebhookFuture<'a, Vec<WebhookEndpoint>> {
        (**self).endpoints(owner)
    }
    fn endpoint<'a>(&'a self, id: &'a str) -> WebhookFuture<'a, Option<WebhookEndpoint>> {
        (**self).endpoint(id)
    }
    fn remove_endpoint<'a>(&'a self, owner: &'a str, id: &'a str) -> WebhookFuture<'a, bool> {
        (**self).remove_endpoint(owner, id)
    }
    fn enqueue(&self, deliveries: Vec<Delivery>) -> WebhookFuture<'_, ()> {
        (**self).enqueue(deliveries)
    }
    fn claim(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> WebhookFuture<'_, Vec<Delivery>> {
        (**self).claim(now, lease, limit)
    }
    fn finish<'a>(&'a self, delivery: &'a Delivery, attempt: Attempt) -> WebhookFuture<'a, ()> {
        (**self).finish(delivery, attempt)
    }
    fn deliveries<'a>(
        &'a self,
        endpoint_id: &'a str,
        limit: usize,
    ) -> WebhookFuture<'a, Vec<Delivery>> {
        (**self).deliveries(endpoint_id, limit)
    }
    fn purge(&self, before: SystemTime) -> WebhookFuture<'_, usize> {
        (**self).purge(before)
    }
}

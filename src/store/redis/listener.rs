//! [`RevocationListener`]: revocations from any instance, as cache invalidations here.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::RedisKeyStore;
use crate::scope::Scope;
use crate::store::reconnect::{reconnecting, Ended, HEARTBEAT};
use crate::store::{CachedKeyStore, KeyId};

/// Keeps a [`CachedKeyStore`] over a [`RedisKeyStore`] in step with revocations made by any
/// instance: it subscribes to the store's revocation channel and invalidates each revoked
/// key. The task stops when the listener is dropped.
///
/// While the subscription is down, revocations may be missed, so the cache answers nothing:
/// from the moment the listener notices the loss (at once when the connection closes;
/// within two heartbeats when it dies without closing), what was cached is forgotten and
/// every lookup asks the store (503 when the store is unreachable too). The listener
/// reconnects with backoff from 50 ms to one heartbeat, so it is back within one heartbeat
/// of the server answering again, clears the cache again (messages sent meanwhile were
/// lost) and caching resumes.
///
/// On a Redis Cluster it subscribes through one of the connection's seed nodes (a
/// revocation published on any node reaches subscribers on all of them) and moves to the
/// next seed each time it reconnects, so losing that node costs one reconnect.
///
/// A half-open connection (behind a NAT or a paused server) is found by a heartbeat: the
/// listener publishes one on the channel every `heartbeat` (default 5 s) and drops a
/// subscription on which nothing was heard for two.
pub struct RevocationListener {
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    connects: AtomicU64,
    stalls: AtomicU64,
}

impl RevocationListener {
    /// Spawns the listener on the current Tokio runtime, with a 5 s heartbeat.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn<S: Scope>(cache: Arc<CachedKeyStore<RedisKeyStore<S>>>) -> Self {
        Self::spawn_with_heartbeat(cache, Duration::from_secs(5))
    }

    /// Spawns the listener with its own heartbeat interval (see the type's docs).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn_with_heartbeat<S: Scope>(
        cache: Arc<CachedKeyStore<RedisKeyStore<S>>>,
        heartbeat: Duration,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        let counted = Arc::clone(&counters);
        cache.listener_away(); // until subscribed
        let mut attempt = 0_usize;
        let task = tokio::spawn(reconnecting(heartbeat, move || {
            let (cache, counted) = (Arc::clone(&cache), Arc::clone(&counted));
            attempt = attempt.wrapping_add(1);
            async move {
                let Some(subscription) = subscribe(&cache, attempt, heartbeat).await else {
                    return false;
                };
                cache.listener_connected();
                if counted.connects.fetch_add(1, Ordering::SeqCst) > 0 {
                    crate::metrics::by_backend(crate::metrics::REVOCATION_RECONNECTS, "redis");
                }
                if let Ended::Stalled = listen(&cache, subscription, heartbeat, &counted).await {
                    counted.stalls.fetch_add(1, Ordering::SeqCst);
                    crate::metrics::by_backend(
                        crate::metrics::REVOCATION_HEARTBEATS_MISSED,
                        "redis",
                    );
                }
                cache.listener_lost().await;
                true
            }
        }));
        Self { task, counters }
    }

    /// Revocation messages received so far.
    pub fn received(&self) -> u64 {
        self.counters.received.load(Ordering::SeqCst)
    }

    /// Successful subscriptions so far (1 after start, more after reconnects).
    pub fn connects(&self) -> u64 {
        self.counters.connects.load(Ordering::SeqCst)
    }

    /// Subscriptions dropped because nothing was heard for two heartbeats.
    pub fn stalls(&self) -> u64 {
        self.counters.stalls.load(Ordering::SeqCst)
    }
}

/// A fresh subscription through the `attempt`th seed node (round robin) and a connection
/// of its own to that node to publish heartbeats on (so that a stalled heartbeat never
/// shares a connection with the store's lookups), or `None` when the node cannot be
/// reached or does not answer within a heartbeat.
async fn subscribe<S: Scope>(
    cache: &CachedKeyStore<RedisKeyStore<S>>,
    attempt: usize,
    heartbeat: Duration,
) -> Option<(redis::aio::PubSub, redis::aio::MultiplexedConnection)> {
    let store = cache.inner();
    let seeds = store.connection.seeds();
    let node = seeds.get(attempt % seeds.len().max(1))?;
    let subscribed = tokio::time::timeout(heartbeat, async {
        let mut pubsub = node.get_async_pubsub().await.ok()?;
        pubsub.subscribe(store.revocation_channel()).await.ok()?;
        let publisher = node.get_multiplexed_async_connection().await.ok()?;
        Some((pubsub, publisher))
    });
    subscribed.await.ok().flatten()
}

/// Invalidates each revoked key until the subscription closes or stalls.
async fn listen<S: Scope>(
    cache: &CachedKeyStore<RedisKeyStore<S>>,
    (mut pubsub, mut publisher): (redis::aio::PubSub, redis::aio::MultiplexedConnection),
    heartbeat: Duration,
    counters: &Counters,
) -> Ended {
    let channel = cache.inner().revocation_channel();
    let mut messages = pubsub.on_message();
    let mut ticks = tokio::time::interval(heartbeat);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Ended::Closed };
                last_heard = tokio::time::Instant::now();
                let id = message.get_payload::<String>().ok().and_then(|id| KeyId::new(id).ok());
                if let Some(id) = id {
                    cache.invalidate(&id).await;
                    counters.received.fetch_add(1, Ordering::SeqCst);
                    crate::metrics::by_backend(crate::metrics::REVOCATION_MESSAGES, "redis");
                }
            }
            _ = ticks.tick() => {
                if last_heard.elapsed() > heartbeat * 2 {
                    return Ended::Stalled;
                }
                // Best effort, bounded: a failed heartbeat shows as silence.
                let publish = redis::AsyncCommands::publish::<_, _, ()>(&mut publisher, &channel, HEARTBEAT);
                let _ = tokio::time::timeout(heartbeat, publish).await;
            }
        }
    }
}

impl Drop for RevocationListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for RevocationListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationListener")
            .field("received", &self.received())
            .field("connects", &self.connects())
            .field("stalls", &self.stalls())
            .finish()
    }
}

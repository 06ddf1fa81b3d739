//! [`RevocationListener`]: revocations from any instance, as cache invalidations here.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::RedisKeyStore;
use crate::scope::Scope;
use crate::store::reconnect::{listener_handle, spawn_listener, Counters, HEARTBEAT};
use crate::store::CachedKeyStore;

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
/// subscription on which nothing was heard for two, checked at that deadline. On a
/// cluster the heartbeat goes out through every master, naming it (a revocation is
/// published by the master of its slot and crosses the cluster bus to the subscriber's
/// node), and a subscription that stops hearing any master's heartbeat for two heartbeats
/// is dropped too: a node cut off the cluster bus, which would never pass a revocation
/// on, is noticed like a half-open connection.
pub struct RevocationListener {
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
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
        let store = Arc::clone(&cache);
        let task = spawn_listener(
            cache,
            heartbeat,
            "redis",
            Arc::clone(&counters),
            move |attempt| {
                let store = Arc::clone(&store);
                async move { subscribe(store.inner(), attempt, heartbeat).await }
            },
        );
        Self { task, counters }
    }
}

/// How a heartbeat is published, answering the origins it was sent from. On one server:
/// through a connection of the listener's own, so that a stalled heartbeat never shares a
/// connection with the store's lookups. On a cluster: through every master, as
/// revocations may come from any of them across the cluster bus.
type Publish = Box<dyn FnMut() -> BoxFuture<'static, Vec<String>> + Send>;

/// A fresh subscription through the `attempt`th seed node (round robin): its payloads, and
/// how to publish a heartbeat; or `None` when the node cannot be reached or does not
/// answer within a heartbeat.
async fn subscribe<S: Scope>(
    store: &RedisKeyStore<S>,
    attempt: usize,
    heartbeat: Duration,
) -> Option<(BoxStream<'static, String>, Publish)> {
    let seeds = store.connection.seeds();
    let node = seeds.get(attempt % seeds.len().max(1))?;
    let channel = store.revocation_channel();
    let subscribed = tokio::time::timeout(heartbeat, async {
        let mut pubsub = node.get_async_pubsub().await.ok()?;
        pubsub.subscribe(&channel).await.ok()?;
        let publisher = node.get_multiplexed_async_connection().await.ok()?;
        Some((pubsub, publisher))
    });
    let (pubsub, publisher) = subscribed.await.ok().flatten()?;
    let messages = pubsub
        .into_on_message()
        .map(|message| message.get_payload::<String>().unwrap_or_default())
        .boxed();
    let connection = store.connection.clone();
    let publish: Publish = Box::new(move || {
        let (mut publisher, channel) = (publisher.clone(), channel.clone());
        let connection = connection.clone();
        Box::pin(async move {
            let every_master = connection
                .publish_on_every_master(&channel, |origin| format!("{HEARTBEAT}@{origin}"))
                .await;
            if let Some(origins) = every_master {
                return origins;
            }
            let published =
                redis::AsyncCommands::publish::<_, _, ()>(&mut publisher, &channel, HEARTBEAT)
                    .await;
            published.map_or_else(|_| Vec::new(), |()| vec![String::new()])
        })
    });
    Some((messages, publish))
}

listener_handle!(RevocationListener);

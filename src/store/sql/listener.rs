//! [`PgRevocationListener`]: `NOTIFY`s from any instance, as cache invalidations here.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use sqlx::postgres::PgListener;
use sqlx::Postgres;

use super::SqlKeyStore;
use crate::scope::Scope;
use crate::store::reconnect::{listener_handle, spawn_listener, Counters, HEARTBEAT};
use crate::store::CachedKeyStore;

/// Keeps a [`CachedKeyStore`] over a PostgreSQL [`SqlKeyStore`] in step with revocations,
/// disablings and deletions made by any instance: it `LISTEN`s on the table's channel
/// (`<table>_revocations`, notified in the same transaction as each change) and invalidates
/// each key named. The task stops when the listener is dropped.
///
/// The same bounds as the Redis [`RevocationListener`](crate::store::RevocationListener):
/// while the connection is down, the cache answers nothing (every lookup asks the
/// database, and fails closed when it is unreachable too); a connection that closes is
/// noticed at once, one that dies without closing (a half-open TCP connection) within two
/// heartbeats: every `heartbeat` (default 5 s) the listener sends itself a
/// `NOTIFY <channel>, '~heartbeat'` through the pool and drops a connection on which
/// nothing was heard for two. It reconnects with backoff from 50 ms to one heartbeat and
/// clears the cache again, since notifications sent meanwhile were lost.
pub struct PgRevocationListener {
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

impl PgRevocationListener {
    /// Spawns the listener on the current Tokio runtime, with a 5 s heartbeat; it connects
    /// through the store's pool.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn<S: Scope>(cache: Arc<CachedKeyStore<SqlKeyStore<S, Postgres>>>) -> Self {
        Self::spawn_with_heartbeat(cache, Duration::from_secs(5))
    }

    /// Spawns the listener with its own heartbeat interval (see the type's docs).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn_with_heartbeat<S: Scope>(
        cache: Arc<CachedKeyStore<SqlKeyStore<S, Postgres>>>,
        heartbeat: Duration,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        let store = Arc::clone(&cache);
        let task = spawn_listener(
            cache,
            heartbeat,
            "postgres",
            Arc::clone(&counters),
            move |_| {
                let store = Arc::clone(&store);
                async move { subscribe(store.inner(), heartbeat).await }
            },
        );
        Self { task, counters }
    }
}

/// How a heartbeat is published: `NOTIFY` through the store's pool.
type Publish = Box<dyn FnMut() -> BoxFuture<'static, Vec<String>> + Send>;

/// A connection listening on the store's channel (its payloads, ending when the connection
/// is lost: a gap is never papered over by sqlx reconnecting behind us), and how to publish
/// a heartbeat; or `None` when the server cannot be reached or does not answer within a
/// heartbeat.
async fn subscribe<S: Scope>(
    store: &SqlKeyStore<S, Postgres>,
    heartbeat: Duration,
) -> Option<(BoxStream<'static, String>, Publish)> {
    let channel = store.queries.channel();
    let connected = tokio::time::timeout(heartbeat, async {
        let mut listener = PgListener::connect_with(store.pool()).await.ok()?;
        listener.eager_reconnect(false);
        listener.listen(&channel).await.ok()?;
        Some(listener)
    });
    let listener = connected.await.ok().flatten()?;
    let messages = futures_util::stream::unfold(listener, |mut listener| async move {
        match listener.try_recv().await {
            Ok(Some(notification)) => Some((notification.payload().to_owned(), listener)),
            // `None`: the connection was lost.
            _ => None,
        }
    })
    .boxed();
    let pool = store.pool().clone();
    let publish: Publish = Box::new(move || {
        let (pool, channel) = (pool.clone(), channel.clone());
        Box::pin(async move {
            let notified = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(HEARTBEAT)
                .execute(&pool)
                .await;
            // One origin: the server.
            notified.map_or_else(|_| Vec::new(), |_| vec![String::new()])
        })
    });
    Some((messages, publish))
}

listener_handle!(PgRevocationListener);

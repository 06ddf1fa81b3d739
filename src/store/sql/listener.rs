//! [`PgRevocationListener`]: `NOTIFY`s from any instance, as cache invalidations here.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::Postgres;

use super::SqlKeyStore;
use crate::scope::Scope;
use crate::store::reconnect::{reconnecting, Ended, HEARTBEAT};
use crate::store::{CachedKeyStore, KeyId};

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

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    connects: AtomicU64,
    stalls: AtomicU64,
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
        let counted = Arc::clone(&counters);
        cache.listener_away(); // until listening
        let task = tokio::spawn(reconnecting(heartbeat, move || {
            let (cache, counted) = (Arc::clone(&cache), Arc::clone(&counted));
            async move {
                let Some(listener) = subscribe(&cache, heartbeat).await else {
                    return false;
                };
                cache.listener_connected();
                if counted.connects.fetch_add(1, Ordering::SeqCst) > 0 {
                    crate::metrics::by_backend(crate::metrics::REVOCATION_RECONNECTS, "postgres");
                }
                if let Ended::Stalled = listen(&cache, listener, heartbeat, &counted).await {
                    counted.stalls.fetch_add(1, Ordering::SeqCst);
                    crate::metrics::by_backend(
                        crate::metrics::REVOCATION_HEARTBEATS_MISSED,
                        "postgres",
                    );
                }
                cache.listener_lost().await;
                true
            }
        }));
        Self { task, counters }
    }

    /// Notifications received (heartbeats not counted).
    pub fn received(&self) -> u64 {
        self.counters.received.load(Ordering::SeqCst)
    }

    /// Successful (re)connections.
    pub fn connects(&self) -> u64 {
        self.counters.connects.load(Ordering::SeqCst)
    }

    /// Connections dropped because nothing was heard for two heartbeats.
    pub fn stalls(&self) -> u64 {
        self.counters.stalls.load(Ordering::SeqCst)
    }
}

/// A connection listening on the store's channel, or `None` when the server cannot be
/// reached or does not answer within a heartbeat.
async fn subscribe<S: Scope>(
    cache: &CachedKeyStore<SqlKeyStore<S, Postgres>>,
    heartbeat: Duration,
) -> Option<PgListener> {
    let store = cache.inner();
    let connected = tokio::time::timeout(heartbeat, async {
        let mut listener = PgListener::connect_with(store.pool()).await.ok()?;
        // Lost is lost: this task reconnects (and clears the cache), not sqlx behind it.
        listener.eager_reconnect(false);
        listener.listen(&store.queries.channel()).await.ok()?;
        Some(listener)
    });
    connected.await.ok().flatten()
}

/// Invalidates each key named until the connection closes or stalls.
async fn listen<S: Scope>(
    cache: &CachedKeyStore<SqlKeyStore<S, Postgres>>,
    mut listener: PgListener,
    heartbeat: Duration,
    counters: &Counters,
) -> Ended {
    let store = cache.inner();
    let channel = store.queries.channel();
    let start = tokio::time::Instant::now();
    // Milliseconds since `start` of the last message: shared by the two halves below.
    let last_heard = AtomicU64::new(0);
    let heard = || {
        let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        last_heard.store(ms, Ordering::SeqCst);
    };
    // One receiving future for the connection's whole life, never cancelled midway.
    let receive = async {
        // `None` when the connection was lost: a gap.
        while let Ok(Some(notification)) = listener.try_recv().await {
            heard();
            if notification.payload() == HEARTBEAT {
                continue;
            }
            if let Ok(id) = KeyId::new(notification.payload()) {
                cache.invalidate(&id).await;
            }
            counters.received.fetch_add(1, Ordering::SeqCst);
            crate::metrics::by_backend(crate::metrics::REVOCATION_MESSAGES, "postgres");
        }
        Ended::Closed
    };
    let watch = async {
        let mut ticks = tokio::time::interval(heartbeat);
        loop {
            ticks.tick().await;
            let quiet = start
                .elapsed()
                .saturating_sub(Duration::from_millis(last_heard.load(Ordering::SeqCst)));
            if quiet > heartbeat * 2 {
                return Ended::Stalled;
            }
            // Best effort, bounded: a failed heartbeat shows as silence.
            let notify = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&channel)
                .bind(HEARTBEAT)
                .execute(store.pool());
            let _ = tokio::time::timeout(heartbeat, notify).await;
        }
    };
    tokio::select! {
        ended = receive => ended,
        ended = watch => ended,
    }
}

impl Drop for PgRevocationListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for PgRevocationListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgRevocationListener")
            .field("received", &self.received())
            .field("connects", &self.connects())
            .field("stalls", &self.stalls())
            .finish()
    }
}

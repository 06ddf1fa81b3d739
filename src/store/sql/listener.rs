//! [`PgRevocationListener`]: `NOTIFY`s from any instance, as cache invalidations here.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::postgres::PgListener;
use sqlx::Postgres;

use super::SqlKeyStore;
use crate::scope::Scope;
use crate::store::reconnect::reconnecting;
use crate::store::{CachedKeyStore, KeyId};

/// Keeps a [`CachedKeyStore`] over a PostgreSQL [`SqlKeyStore`] in step with revocations,
/// disablings and deletions made by any instance: it `LISTEN`s on the table's channel
/// (`<table>_revocations`, notified in the same transaction as each change) and invalidates
/// each key named. When the connection drops it reconnects by itself (with backoff) and
/// clears the cache, since notifications sent meanwhile are lost. The task stops when the
/// listener is dropped.
pub struct PgRevocationListener {
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    connects: AtomicU64,
}

impl PgRevocationListener {
    /// Spawns the listener on the current Tokio runtime; it connects through the store's
    /// pool.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn<S: Scope>(cache: Arc<CachedKeyStore<SqlKeyStore<S, Postgres>>>) -> Self {
        let counters = Arc::new(Counters::default());
        let counted = Arc::clone(&counters);
        let task = tokio::spawn(reconnecting(move || {
            let (cache, counted) = (Arc::clone(&cache), Arc::clone(&counted));
            async move {
                let store = cache.inner();
                let Ok(mut listener) = PgListener::connect_with(store.pool()).await else {
                    return false;
                };
                if listener.listen(&store.queries.channel()).await.is_err() {
                    return false;
                }
                cache.invalidate_all();
                counted.connects.fetch_add(1, Ordering::SeqCst);
                // `try_recv` answers `None` when the connection was lost: a gap.
                while let Ok(Some(notification)) = listener.try_recv().await {
                    if let Ok(id) = KeyId::new(notification.payload()) {
                        cache.invalidate(&id).await;
                    }
                    counted.received.fetch_add(1, Ordering::SeqCst);
                }
                true
            }
        }));
        Self { task, counters }
    }

    /// Notifications received.
    pub fn received(&self) -> u64 {
        self.counters.received.load(Ordering::SeqCst)
    }

    /// Successful (re)connections.
    pub fn connects(&self) -> u64 {
        self.counters.connects.load(Ordering::SeqCst)
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
            .finish()
    }
}

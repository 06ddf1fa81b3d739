//! [`RevocationListener`]: revocations from any instance, as cache invalidations here.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::RedisKeyStore;
use crate::scope::Scope;
use crate::store::{CachedKeyStore, KeyId};

/// Keeps a [`CachedKeyStore`] over a [`RedisKeyStore`] in step with revocations made by any
/// instance: it subscribes to the store's revocation channel and invalidates each revoked
/// key. When the subscription drops it reconnects with backoff, and on every (re)connect it
/// clears the cache, since messages may have been missed; in between, the cache's TTL bounds
/// staleness. The task stops when the listener is dropped.
pub struct RevocationListener {
    task: tokio::task::JoinHandle<()>,
    received: Arc<AtomicU64>,
    connects: Arc<AtomicU64>,
}

impl RevocationListener {
    /// Spawns the listener on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn<S: Scope>(cache: Arc<CachedKeyStore<RedisKeyStore<S>>>) -> Self {
        let received = Arc::new(AtomicU64::new(0));
        let connects = Arc::new(AtomicU64::new(0));
        let (counted, connected) = (Arc::clone(&received), Arc::clone(&connects));
        let task = tokio::spawn(async move {
            let client = cache.inner().client.clone();
            let channel = cache.inner().revocation_channel();
            let mut backoff = Duration::from_millis(50);
            loop {
                if let Ok(mut pubsub) = client.get_async_pubsub().await {
                    if pubsub.subscribe(&channel).await.is_ok() {
                        backoff = Duration::from_millis(50);
                        cache.invalidate_all();
                        connected.fetch_add(1, Ordering::SeqCst);
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            let id = message
                                .get_payload::<String>()
                                .ok()
                                .and_then(|id| KeyId::new(id).ok());
                            if let Some(id) = id {
                                cache.invalidate(&id).await;
                            }
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                #[cfg(feature = "tracing")]
                tracing::warn!(target: "tower_api_key", "revocation channel lost; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        Self {
            task,
            received,
            connects,
        }
    }

    /// Revocation messages received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Successful subscriptions so far (1 after start, more after reconnects).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
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
            .finish()
    }
}

//! [`RedisQueue`]: what the Redis observers write, off the request path.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::RedisConnection;

/// How many writes wait at most; beyond, they are dropped and counted.
const QUEUE: usize = 10_000;

/// A bounded queue of writes to Redis and the task that sends them: the request path never
/// waits for Redis, and when Redis is slow or down, writes beyond the queue are dropped
/// and counted, so memory stays bounded. The task ends with the queue.
pub(crate) struct RedisQueue<T> {
    queue: mpsc::Sender<T>,
    dropped: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl<T: Send + 'static> RedisQueue<T> {
    /// Sends each queued item as the pipeline `write` makes of it; `what` names the writes
    /// in the warning when one fails.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub(crate) fn spawn(
        connection: RedisConnection,
        what: &'static str,
        write: impl Fn(T) -> redis::Pipeline + Send + 'static,
    ) -> Self {
        let (queue, mut items) = mpsc::channel::<T>(QUEUE);
        let mut connection = connection;
        let task = tokio::spawn(async move {
            while let Some(item) = items.recv().await {
                let written: redis::RedisResult<()> =
                    write(item).query_async(&mut connection).await;
                if let Err(_error) = written {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(target: "tower_api_key", error = %_error, "writing {what} to Redis failed");
                    #[cfg(not(feature = "tracing"))]
                    let _ = what;
                }
            }
        });
        Self {
            queue,
            dropped: AtomicU64::new(0),
            task,
        }
    }

    /// Queues `item`, or drops and counts it when the queue is full.
    pub(crate) fn push(&self, item: T) {
        if self.queue.try_send(item).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            crate::metrics::activity_dropped("redis");
        }
    }

    /// Items dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl<T> Drop for RedisQueue<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

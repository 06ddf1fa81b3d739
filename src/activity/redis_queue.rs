//! [`RedisQueue`]: what the Redis observers write, off the request path.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::RedisConnection;

/// How many writes wait at most; beyond, they are dropped and counted.
const QUEUE: usize = 10_000;

/// How many writes are sent at once. One at a time, the queue drained one round trip per
/// event (~10,000 a second on loopback) and dropped most events of a busier server
/// (`benches/scale.rs`); sent together they share the connection's pipelining, on a
/// cluster each to its own slot's master.
const IN_FLIGHT: usize = 64;

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
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(IN_FLIGHT);
            while items.recv_many(&mut batch, IN_FLIGHT).await > 0 {
                let writes = batch.drain(..).map(|item| {
                    let mut connection = connection.clone();
                    let pipeline = write(item);
                    async move { pipeline.query_async::<()>(&mut connection).await }
                });
                for written in futures_util::future::join_all(writes).await {
                    if let Err(_error) = written {
                        #[cfg(feature = "tracing")]
                        tracing::warn!(target: "tower_api_key", error = %_error, "writing {what} to Redis failed");
                        #[cfg(not(feature = "tracing"))]
                        let _ = what;
                    }
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

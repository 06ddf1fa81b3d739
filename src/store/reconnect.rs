//! What the revocation listeners (Redis pub/sub, PostgreSQL `LISTEN`) share: the reconnect
//! loop, the heartbeat message and how a connection's life ended.

use std::future::Future;
use std::time::Duration;

/// The first wait after a connection is lost or refused; it doubles up to the heartbeat.
const FIRST_WAIT: Duration = Duration::from_millis(50);

/// Published on the revocation channel as the heartbeat: never a key id (`~` is not
/// allowed in one).
pub(crate) const HEARTBEAT: &str = "~heartbeat";

/// How one connection's life ended.
pub(crate) enum Ended {
    /// The server closed it, or it failed.
    Closed,
    /// Nothing was heard for two heartbeats: half-open, dropped by us.
    Stalled,
}

/// Runs one connection's life after another, forever: `connection()` connects, listens
/// until the connection ends, and answers whether it connected at all. Between two lives
/// it waits, with exponential backoff from 50 ms that any successful connection resets,
/// never longer than `longest_wait` (the heartbeat): once the server answers again, the
/// listener is back within one heartbeat.
pub(crate) async fn reconnecting<F, Fut>(longest_wait: Duration, mut connection: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let longest_wait = longest_wait.max(FIRST_WAIT);
    let mut wait = FIRST_WAIT;
    loop {
        if connection().await {
            wait = FIRST_WAIT;
        }
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "tower_api_key", "revocation channel lost; reconnecting");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(longest_wait);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::reconnecting;

    /// On tokio's paused clock: against a server that never answers, attempts back off from
    /// 50 ms by doubling and are never further apart than the heartbeat; a connection that
    /// succeeds starts the backoff again.
    #[tokio::test(start_paused = true)]
    async fn attempts_are_at_most_one_heartbeat_apart() {
        let heartbeat = Duration::from_millis(300);
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&attempts);
        let task = tokio::spawn(reconnecting(heartbeat, move || {
            let seen = Arc::clone(&seen);
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push(Instant::now());
                seen.len() == 8 // the eighth attempt connects (and is lost at once)
            }
        }));
        tokio::time::sleep(Duration::from_secs(3)).await;
        task.abort();
        let attempts = attempts.lock().unwrap();
        let gaps: Vec<u128> = attempts
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).as_millis())
            .collect();
        assert_eq!(gaps[..9], [50, 100, 200, 300, 300, 300, 300, 50, 100]);
        assert!(gaps.iter().all(|gap| *gap <= 300), "{gaps:?}");
    }
}

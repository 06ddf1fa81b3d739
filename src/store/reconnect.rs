//! The reconnect loop of the revocation listeners (Redis pub/sub, PostgreSQL `LISTEN`).

use std::future::Future;
use std::time::Duration;

/// The first wait after a connection is lost or refused; it doubles up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(50);
const LONGEST_WAIT: Duration = Duration::from_secs(5);

/// Runs one connection's life after another, forever: `connection()` connects, listens
/// until the connection ends, and answers whether it connected at all. Between two lives
/// it waits, with exponential backoff that any successful connection resets.
pub(crate) async fn reconnecting<F, Fut>(mut connection: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut wait = FIRST_WAIT;
    loop {
        if connection().await {
            wait = FIRST_WAIT;
        }
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "tower_api_key", "revocation channel lost; reconnecting");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LONGEST_WAIT);
    }
}

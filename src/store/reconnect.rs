//! What the revocation listeners (Redis pub/sub, PostgreSQL `LISTEN`) share, written once:
//! the reconnect loop, one connection's life (invalidations, the heartbeat, silence checked
//! at its deadline), the heartbeat message, counters and metrics.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use crate::store::{CachedKeyStore, KeyId, KeyStore};

/// The first wait after a connection is lost or refused; it doubles up to the heartbeat.
const FIRST_WAIT: Duration = Duration::from_millis(50);

/// Published on the revocation channel as the heartbeat: never a key id (`~` is not
/// allowed in one).
pub(crate) const HEARTBEAT: &str = "~heartbeat";

/// How one connection's life ended.
#[derive(Debug, PartialEq, Eq)]
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

/// What a listener counts (its public `received`, `connects` and `stalls`).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) stalls: AtomicU64,
}

/// The public face of a listener type holding `task` and `counters`: its counters, and the
/// task stopped when it is dropped. Written once for both listeners.
macro_rules! listener_handle {
    ($listener:ident) => {
        impl $listener {
            /// Revocation messages received so far (heartbeats not counted).
            pub fn received(&self) -> u64 {
                self.counters
                    .received
                    .load(std::sync::atomic::Ordering::SeqCst)
            }

            /// Successful (re)connections so far (1 after start, more after reconnects).
            pub fn connects(&self) -> u64 {
                self.counters
                    .connects
                    .load(std::sync::atomic::Ordering::SeqCst)
            }

            /// Connections dropped because the heartbeat went unheard for two heartbeats.
            pub fn stalls(&self) -> u64 {
                self.counters
                    .stalls
                    .load(std::sync::atomic::Ordering::SeqCst)
            }
        }

        impl Drop for $listener {
            fn drop(&mut self) {
                self.task.abort();
            }
        }

        impl std::fmt::Debug for $listener {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($listener))
                    .field("received", &self.received())
                    .field("connects", &self.connects())
                    .field("stalls", &self.stalls())
                    .finish()
            }
        }
    };
}
pub(crate) use listener_handle;

/// Spawns a listener for `cache`: `connect(attempt)` opens a subscription (its messages'
/// payloads, and how to publish a heartbeat on it), or `None`; every life of a connection
/// runs [`listen`], the cache following it (`listener_connected`, `listener_lost`).
pub(crate) fn spawn_listener<St, C, CF, M, P, PF>(
    cache: Arc<CachedKeyStore<St>>,
    heartbeat: Duration,
    backend: &'static str,
    counters: Arc<Counters>,
    mut connect: C,
) -> tokio::task::JoinHandle<()>
where
    St: KeyStore,
    C: FnMut(usize) -> CF + Send + 'static,
    CF: Future<Output = Option<(M, P)>> + Send + 'static,
    M: Stream<Item = String> + Unpin + Send + 'static,
    P: FnMut() -> PF + Send + 'static,
    PF: Future<Output = Vec<String>> + Send,
{
    cache.listener_away(); // until connected
    let mut attempt = 0_usize;
    tokio::spawn(reconnecting(heartbeat, move || {
        let (cache, counters) = (Arc::clone(&cache), Arc::clone(&counters));
        attempt = attempt.wrapping_add(1);
        let connected = connect(attempt);
        async move {
            let Some((messages, publish)) = connected.await else {
                return false;
            };
            cache.listener_connected();
            if counters.connects.fetch_add(1, Ordering::SeqCst) > 0 {
                crate::metrics::by_backend(crate::metrics::REVOCATION_RECONNECTS, backend);
            }
            let invalidate = |payload: String| {
                let (cache, counters) = (&cache, &counters);
                async move {
                    if let Ok(id) = KeyId::new(payload) {
                        cache.invalidate(&id).await;
                    }
                    counters.received.fetch_add(1, Ordering::SeqCst);
                    crate::metrics::by_backend(crate::metrics::REVOCATION_MESSAGES, backend);
                }
            };
            if listen(messages, heartbeat, publish, invalidate).await == Ended::Stalled {
                counters.stalls.fetch_add(1, Ordering::SeqCst);
                crate::metrics::by_backend(crate::metrics::REVOCATION_HEARTBEATS_MISSED, backend);
            }
            cache.listener_lost().await;
            true
        }
    }))
}

/// One connection's life: `handle` gets every message but heartbeats; `publish` sends a
/// heartbeat every `heartbeat`, never holding up the rest (bounded by a heartbeat), and
/// answers the origins it was sent from (see [`heartbeat_origin`]); the connection is
/// dropped as stalled **at the deadline**: two heartbeats after the last message heard
/// (not at the next tick after it, which came a third heartbeat late), or two heartbeats
/// after the last heartbeat heard from any origin the heartbeat is sent from (on a Redis
/// Cluster, every master: a subscriber whose node is cut off the cluster bus hears its
/// own node's heartbeats, never the others', as it would never hear their revocations).
pub(crate) async fn listen<M, P, PF, H, HF>(
    mut messages: M,
    heartbeat: Duration,
    mut publish: P,
    mut handle: H,
) -> Ended
where
    M: Stream<Item = String> + Unpin,
    P: FnMut() -> PF,
    PF: Future<Output = Vec<String>>,
    H: FnMut(String) -> HF,
    HF: Future<Output = ()>,
{
    let silence = heartbeat.saturating_mul(2);
    // What was heard when, shared by the three halves below (one task: never contended,
    // never held across an await).
    let heard = Mutex::new(Heard::new(Instant::now()));
    let receive = async {
        while let Some(payload) = messages.next().await {
            let now = Instant::now();
            match heartbeat_origin(&payload) {
                Some(origin) => lock(&heard).heard(now, Some(origin)),
                None => {
                    lock(&heard).heard(now, None);
                    handle(payload).await;
                }
            }
        }
        Ended::Closed
    };
    let beat = async {
        let mut ticks = tokio::time::interval(heartbeat.max(Duration::from_millis(1)));
        loop {
            ticks.tick().await;
            // Best effort, bounded: a failed heartbeat shows as silence.
            if let Ok(origins) = tokio::time::timeout(heartbeat, publish()).await {
                lock(&heard).expect(Instant::now(), origins);
            }
        }
    };
    let watch = async {
        loop {
            let deadline = lock(&heard).deadline(silence);
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending::<()>().await,
            }
            if lock(&heard)
                .deadline(silence)
                .is_some_and(|d| d <= Instant::now())
            {
                return Ended::Stalled;
            }
        }
    };
    tokio::select! {
        ended = receive => ended,
        ended = watch => ended,
        () = beat => Ended::Closed,
    }
}

/// The origin of a heartbeat (`~heartbeat`: `""`; `~heartbeat@<origin>`: `<origin>`), or
/// `None` for any other message.
pub(crate) fn heartbeat_origin(payload: &str) -> Option<&str> {
    let rest = payload.strip_prefix(HEARTBEAT)?;
    match rest.strip_prefix('@') {
        Some(origin) => Some(origin),
        None => rest.is_empty().then_some(""),
    }
}

/// When the listener last heard anything, and each origin's heartbeat.
struct Heard {
    any: Instant,
    /// Origin -> when it was last heard, or first expected if never heard since.
    origins: Vec<(String, Instant)>,
}

impl Heard {
    fn new(now: Instant) -> Self {
        Self {
            any: now,
            origins: Vec::new(),
        }
    }

    fn heard(&mut self, now: Instant, origin: Option<&str>) {
        self.any = now;
        if let Some(origin) = origin {
            if let Some(entry) = self.origins.iter_mut().find(|(o, _)| o == origin) {
                entry.1 = now;
            }
        }
    }

    /// The heartbeat was just sent from `origins`: those are what must be heard.
    fn expect(&mut self, now: Instant, origins: Vec<String>) {
        self.origins.retain(|(origin, _)| origins.contains(origin));
        for origin in origins {
            if !self.origins.iter().any(|(o, _)| *o == origin) {
                self.origins.push((origin, now));
            }
        }
    }

    /// The earliest time the connection counts as stalled.
    fn deadline(&self, silence: Duration) -> Option<Instant> {
        let oldest = self
            .origins
            .iter()
            .map(|(_, at)| *at)
            .min()
            .unwrap_or(self.any);
        oldest.min(self.any).checked_add(silence)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Issue 36.2, the bound itself on tokio's paused clock: heartbeats are heard a few
    /// milliseconds after each tick; once the connection goes silent, it is dropped two
    /// heartbeats after the last one heard, to the millisecond. Failed before (both
    /// listeners checked silence only at a tick: dropped at the third, 14.5 s after a
    /// revocation on PostgreSQL with a 5 s heartbeat, documented 10 s).
    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_dropped_at_two_heartbeats_not_three() {
        use std::sync::atomic::{AtomicBool, Ordering};

        use super::{listen, Ended, HEARTBEAT};

        let heartbeat = Duration::from_secs(5);
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
        let alive = Arc::new(AtomicBool::new(true));
        let heard = Arc::new(Mutex::new(Vec::new()));
        let publish = {
            let (alive, sender) = (Arc::clone(&alive), sender.clone());
            move || {
                let (alive, sender) = (Arc::clone(&alive), sender.clone());
                async move {
                    // The round trip: the heartbeat comes back 7 ms after it was sent.
                    tokio::time::sleep(Duration::from_millis(7)).await;
                    if alive.load(Ordering::SeqCst) {
                        let _ = sender.send(HEARTBEAT.to_owned());
                    }
                    vec![String::new()]
                }
            }
        };
        let handled = Arc::clone(&heard);
        let start = Instant::now();
        let listening = tokio::spawn(listen(
            tokio_stream_of(receiver),
            heartbeat,
            publish,
            move |payload| {
                handled.lock().unwrap().push(payload);
                async {}
            },
        ));
        // A revocation message, then silence from 12 s on (after the heartbeat of 10 s).
        tokio::time::sleep(Duration::from_secs(3)).await;
        sender.send("key_000000000000000000000001".into()).unwrap();
        tokio::time::sleep(Duration::from_secs(9)).await;
        alive.store(false, Ordering::SeqCst);
        let ended = listening.await.unwrap();
        assert_eq!(ended, Ended::Stalled);
        // The last heartbeat heard: sent at 10 s, heard at 10.007 s; dropped at 20.007 s.
        assert_eq!((Instant::now() - start).as_millis(), 20_007);
        assert_eq!(*heard.lock().unwrap(), ["key_000000000000000000000001"]);
    }

    /// An mpsc receiver as a stream of payloads.
    fn tokio_stream_of(
        receiver: tokio::sync::mpsc::UnboundedReceiver<String>,
    ) -> impl futures_util::Stream<Item = String> + Unpin {
        Box::pin(futures_util::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|payload| (payload, receiver)) },
        ))
    }
}

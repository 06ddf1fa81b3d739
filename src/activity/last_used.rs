use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use tokio::sync::mpsc;

use super::{ActivityEvent, ActivityObserver};
use crate::store::{KeyId, ManageKeys};
use crate::support::sweep::{self, SweepAt};

/// Records `last_used_at` at most once per key per interval, off the request path.
///
/// As an [`ActivityObserver`] it looks at authenticated requests (a key refused by a scope
/// check or a rate limit was still used); when a key's interval has
/// passed it queues one write (never blocking: a full queue drops the write, the next
/// interval retries), and a task it spawned writes through [`ManageKeys::touch`]. A busy key costs
/// one store write per interval. The task ends when the last clone of the recorder is
/// dropped. Bounded: a key is remembered for one interval after its last write (swept as
/// the map grows, O(1) per event amortised, on Tokio's blocking pool), after which its next
/// use is due anyway.
#[derive(Clone)]
pub struct LastUsedRecorder {
    interval: Duration,
    last: Arc<DashMap<KeyId, SystemTime, foldhash::fast::RandomState>>,
    sweep_at: Arc<SweepAt>,
    queue: mpsc::Sender<(KeyId, SystemTime)>,
    dropped: Arc<AtomicU64>,
}

/// Writes sent to the store at once.
const IN_FLIGHT: usize = 64;

impl LastUsedRecorder {
    /// Spawns the writer task on the current Tokio runtime, writing to `store` at most
    /// once per key per `interval`.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn<St: ManageKeys>(store: Arc<St>, interval: Duration) -> Self {
        let (queue, mut writes) = mpsc::channel::<(KeyId, SystemTime)>(1024);
        tokio::spawn(async move {
            // Several at once: a shared store takes a round trip or two per write, and one
            // at a time kept up with ~5,000 keys a second (`benches/scale.rs`).
            let mut batch = Vec::with_capacity(IN_FLIGHT);
            while writes.recv_many(&mut batch, IN_FLIGHT).await > 0 {
                let touches = batch.iter().map(|(id, at)| store.touch(id, *at));
                let results = futures_util::future::join_all(touches).await;
                for (_result, (_id, _)) in results.into_iter().zip(batch.drain(..)) {
                    #[cfg(feature = "tracing")]
                    if let Err(error) = _result {
                        tracing::warn!(target: "tower_api_key::activity", key_id = _id.as_str(), error = %error, "could not record last use");
                    }
                }
            }
        });
        Self {
            interval,
            last: Arc::new(DashMap::default()),
            sweep_at: Arc::new(SweepAt::new()),
            queue,
            dropped: Arc::default(),
        }
    }

    /// Writes dropped because the queue was full (the store slower than the keys' use).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How many keys are remembered.
    pub fn tracked(&self) -> usize {
        self.last.len()
    }

    /// Forgets, off the request path, the keys whose last write is an interval old or more
    /// at `now`: at a million keys the sweep is tens of milliseconds, which the request that
    /// found it due paid in full (`benches/scale.rs`, slowest request).
    fn sweep(&self, now: SystemTime) {
        let (last, sweep_at, interval) = (
            Arc::clone(&self.last),
            Arc::clone(&self.sweep_at),
            self.interval,
        );
        sweep::run(move || {
            last.retain(|_, last| {
                now.duration_since(*last)
                    .is_ok_and(|since| since < interval)
                    || *last > now
            });
            sweep_at.swept(last.len());
        });
    }

    fn due(&self, id: &KeyId, at: SystemTime) -> bool {
        use dashmap::mapref::entry::Entry;
        if !self.last.contains_key(id) && self.sweep_at.claim(self.last.len()) {
            self.sweep(at);
        }
        match self.last.entry(id.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(at);
                true
            }
            Entry::Occupied(mut slot) => {
                let due = at
                    .duration_since(*slot.get())
                    .is_ok_and(|since| since >= self.interval);
                if due {
                    slot.insert(at);
                }
                due
            }
        }
    }
}

impl ActivityObserver for LastUsedRecorder {
    fn observe(&self, event: &ActivityEvent) {
        let (Some(id), true) = (&event.key_id, event.authenticated) else {
            return;
        };
        // Checked without cloning the id: most requests of a busy key are not due.
        if let Some(last) = self.last.get(id) {
            if event
                .at
                .duration_since(*last)
                .map_or(true, |since| since < self.interval)
            {
                return;
            }
        }
        if self.due(id, event.at) && self.queue.try_send((id.clone(), event.at)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for LastUsedRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastUsedRecorder")
            .field("interval", &self.interval)
            .field("keys", &self.last.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryKeyStore;
    use crate::ForgScope;

    /// Issue 36.3: the recorder remembered every key it ever saw (a map that only grew).
    /// Now a key is forgotten an interval after its last write, swept as the map grows.
    #[tokio::test]
    async fn the_last_use_recorder_stays_bounded() {
        let store =
            Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(crate::forg::key_policy()));
        let recorder = LastUsedRecorder::spawn(store, Duration::from_secs(60));
        let mut at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        for round in 0..20u64 {
            for i in 0..5_000u64 {
                let mut event = ActivityEvent::arrived(&http::Method::GET, "/", None, at);
                event.key_id = Some(KeyId::new(format!("key_{:024x}", round * 5_000 + i)).unwrap());
                event.authenticated = true;
                recorder.observe(&event);
            }
            at += Duration::from_secs(61);
        }
        // Sweeps run on the blocking pool: wait for the last one claimed to finish.
        for _ in 0..5_000 {
            if !recorder.sweep_at.sweeping() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!recorder.sweep_at.sweeping(), "the sweep finished");
        assert!(
            recorder.tracked() < 20_000,
            "{} keys remembered of 100,000 seen",
            recorder.tracked()
        );
    }
}

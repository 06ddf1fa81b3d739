use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use tokio::sync::mpsc;

use super::{ActivityEvent, ActivityObserver};
use crate::store::{KeyId, ManageKeys};

/// Records `last_used_at` at most once per key per interval, off the request path.
///
/// As an [`ActivityObserver`] it looks at authenticated requests (a key refused by a scope
/// check or a rate limit was still used); when a key's interval has
/// passed it queues one write (never blocking: a full queue drops the write, the next
/// interval retries), and a task it spawned writes through [`ManageKeys::touch`]. A busy key costs
/// one store write per interval. The task ends when the last clone of the recorder is
/// dropped.
#[derive(Clone)]
pub struct LastUsedRecorder {
    interval: Duration,
    last: Arc<DashMap<KeyId, SystemTime>>,
    queue: mpsc::Sender<(KeyId, SystemTime)>,
}

impl LastUsedRecorder {
    /// Spawns the writer task on the current Tokio runtime, writing to `store` at most
    /// once per key per `interval`.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn<St: ManageKeys>(store: Arc<St>, interval: Duration) -> Self {
        let (queue, mut writes) = mpsc::channel::<(KeyId, SystemTime)>(1024);
        tokio::spawn(async move {
            while let Some((id, at)) = writes.recv().await {
                if let Err(_error) = store.touch(&id, at).await {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(target: "tower_api_key::activity", key_id = id.as_str(), error = %_error, "could not record last use");
                }
            }
        });
        Self {
            interval,
            last: Arc::new(DashMap::new()),
            queue,
        }
    }

    fn due(&self, id: &KeyId, at: SystemTime) -> bool {
        use dashmap::mapref::entry::Entry;
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
        if self.due(id, event.at) {
            let _dropped_when_full = self.queue.try_send((id.clone(), event.at));
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

//! [`MemoryInFlight`]: slots counted in process.

use std::sync::Arc;

use dashmap::DashMap;

use super::{InFlightBackend, InFlightLimit};
use crate::backend_error::BackendError;
use crate::rate_limit::backend::{LimitKey, OwnedKey};

/// Counts in this process: one counter per key (or owner) with requests in flight,
/// removed when its last slot is given back, so it holds no more entries than there are
/// requests in flight.
#[derive(Clone, Debug, Default)]
pub struct MemoryInFlight {
    counts: Arc<DashMap<Holder, u32, foldhash::fast::RandomState>>,
}

/// Whose slots: a limit's name and the key or owner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Holder {
    limit: crate::rate_limit::ClassName,
    subject: OwnedKey,
}

/// A slot of [`MemoryInFlight`]: given back when dropped.
#[derive(Debug)]
pub struct MemorySlot {
    counts: Arc<DashMap<Holder, u32, foldhash::fast::RandomState>>,
    holder: Option<Holder>,
}

impl MemoryInFlight {
    /// No request in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests in flight now, every key together.
    pub fn in_flight(&self) -> u32 {
        self.counts.iter().map(|entry| *entry.value()).sum()
    }

    /// Keys (or owners) with a request in flight.
    pub fn holders(&self) -> usize {
        self.counts.len()
    }
}

impl InFlightBackend for MemoryInFlight {
    type Slot = MemorySlot;

    async fn acquire(
        &self,
        limit: &InFlightLimit,
        key: LimitKey<'_>,
    ) -> Result<Option<MemorySlot>, BackendError> {
        self.acquire_now(limit, key).unwrap_or(Ok(None))
    }

    fn acquire_now(
        &self,
        limit: &InFlightLimit,
        key: LimitKey<'_>,
    ) -> Option<Result<Option<MemorySlot>, BackendError>> {
        let holder = Holder {
            limit: limit.name().clone(),
            subject: OwnedKey::from(key),
        };
        let mut count = self.counts.entry(holder.clone()).or_insert(0);
        if *count >= limit.max().get() {
            return Some(Ok(None));
        }
        *count += 1;
        drop(count);
        Some(Ok(Some(MemorySlot {
            counts: Arc::clone(&self.counts),
            holder: Some(holder),
        })))
    }
}

impl Drop for MemorySlot {
    fn drop(&mut self) {
        let Some(holder) = self.holder.take() else {
            return;
        };
        if let dashmap::mapref::entry::Entry::Occupied(mut count) = self.counts.entry(holder) {
            if *count.get() <= 1 {
                count.remove();
            } else {
                *count.get_mut() -= 1;
            }
        }
    }
}

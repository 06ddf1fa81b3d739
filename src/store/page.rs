//! [`KeyPage`]: one page of every owner's records, in id order, for a scan over all keys.

use std::sync::Arc;

use super::{KeyId, KeyRecord};
use crate::scope::Scope;

/// What [`ManageKeys::records_after`](super::ManageKeys::records_after) answers: up to
/// the asked number of records, in id order, and where the next page starts.
///
/// `next` is the last id the store read (a row it left out, such as a session in a shared
/// table, still moves it), `None` once the store has no more: a scan that follows `next`
/// meets every record stored for its whole length once, whatever is issued or deleted
/// meanwhile.
#[derive(Debug)]
pub struct KeyPage<S: Scope> {
    /// The records, in id order.
    pub records: Vec<Arc<KeyRecord<S>>>,
    /// The cursor of the next page, `None` at the end.
    pub next: Option<KeyId>,
}

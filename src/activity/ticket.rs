//! [`ActivityTicket`]: what the layers inside tell the activity layer outside about a
//! request (the verified credential, what it was charged).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::key::Environment;
use crate::principal::CredentialKind;
use crate::store::KeyId;

/// Set by the layers inside as the request passes, so that the activity layer outside
/// learns what they found: the key id (the authentication layer, when it verifies a
/// credential) and what the request was charged (the spend-cap layer). Present only when
/// an activity layer is; one allocation per request, made by that layer.
#[derive(Clone, Default)]
pub(crate) struct ActivityTicket(Arc<Ticket>);

#[derive(Default)]
pub(crate) struct Ticket {
    credential: OnceLock<Verified>,
    spent: AtomicU64,
}

impl ActivityTicket {
    /// The verified credential (its id and owner shared, not copied).
    pub(crate) fn authenticated(&self, verified: Verified) {
        let _first_wins = self.0.credential.set(verified);
    }

    pub(crate) fn credential(&self) -> Option<&Verified> {
        self.0.credential.get()
    }

    /// The request was charged `amount` (stacked spend-cap layers add up).
    pub(crate) fn charged(&self, amount: u64) {
        self.0.spent.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn spent(&self) -> u64 {
        self.0.spent.load(Ordering::Relaxed)
    }
}

/// What the authentication layer verified, for the event.
pub(crate) struct Verified {
    pub(crate) id: KeyId,
    pub(crate) owner: Arc<str>,
    pub(crate) kind: CredentialKind,
    pub(crate) environment: Environment,
}

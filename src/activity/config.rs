//! The activity layer's configuration, shared by its services: where events go and the
//! clock that stamps them; and the request's passage through it (a [`Gate`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};

use super::{ActivityObserver, ActivitySink, PendingActivity};
use crate::clock::Clock;
use crate::support::gate::Gate;
use crate::support::wiring::OutsideAuth;

pub(crate) struct Shared {
    pub(super) observer: Option<Arc<dyn ActivityObserver>>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) wiring: OutsideAuth,
}

impl Shared {
    /// Where events go, when the observer or `tracing` listens.
    pub(super) fn sink(&self) -> Option<ActivitySink> {
        #[cfg(feature = "tracing")]
        let traced = tracing::enabled!(target: "tower_api_key::activity", tracing::Level::DEBUG);
        #[cfg(not(feature = "tracing"))]
        let traced = false;
        (self.observer.is_some() || traced).then(|| ActivitySink {
            observer: self.observer.clone(),
            traced,
        })
    }
}

impl<B> Gate<Request<B>> for Shared {
    type Verdict = Option<Box<PendingActivity>>;
    type After = Option<Box<PendingActivity>>;

    fn decide(
        self: &Arc<Self>,
        pending: Self::Verdict,
        _: &mut Request<B>,
    ) -> Result<Self::After, Response<Bytes>> {
        Ok(pending)
    }

    fn finish<R>(pending: Self::After, response: &mut Response<R>) {
        if let Some(mut pending) = pending {
            pending.answered(response);
        } // Emitted here, as it drops.
    }
}

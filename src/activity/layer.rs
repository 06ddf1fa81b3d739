use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::Shared;
use super::service::ActivityService;
use super::ActivityObserver;
use crate::clock::{Clock, SystemClock};
use crate::support::wiring::OutsideAuth;

/// Reports every request's [`ActivityEvent`](super::ActivityEvent); see the [module docs](super). Put it
/// outside the [`AuthLayer`](crate::AuthLayer).
#[derive(Clone)]
#[must_use]
pub struct ActivityLayer {
    shared: Arc<Shared>,
}

fn wiring() -> OutsideAuth {
    OutsideAuth::new(
        "ActivityLayer",
        "it never sees a refused request, and reports only what the AuthLayer let through",
    )
}

impl ActivityLayer {
    /// Calls `observer` once per request with its outcome (and emits `tracing` events when
    /// the `tracing` feature is on and the target listens).
    pub fn new(observer: impl ActivityObserver) -> Self {
        Self::with(Some(Arc::new(observer)))
    }

    /// Only the `tracing` events, on the target `tower_api_key::activity` (DEBUG).
    pub fn traced() -> Self {
        Self::with(None)
    }

    fn with(observer: Option<Arc<dyn ActivityObserver>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                observer,
                clock: Arc::new(SystemClock),
                wiring: wiring(),
            }),
        }
    }

    /// The clock events are stamped with (default: the system clock).
    pub fn clock(self, clock: impl Clock) -> Self {
        Self {
            shared: Arc::new(Shared {
                observer: self.shared.observer.clone(),
                clock: Arc::new(clock),
                wiring: wiring(),
            }),
        }
    }
}

impl fmt::Debug for ActivityLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityLayer")
            .field("observer", &self.shared.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ActivityLayer {
    type Service = ActivityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService::new(inner, Arc::clone(&self.shared))
    }
}

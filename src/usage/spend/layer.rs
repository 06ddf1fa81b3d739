//! [`SpendCapLayer`]: a route class's cost, charged to the budget of each request's
//! principal ([`SpendCaps::layer`]).

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::charge::Shared;
use super::service::SpendCapService;
use super::SpendCaps;
use crate::usage::backend::UsageBackend;

/// Charges a route class's requests to their budget; made by [`SpendCaps::layer`].
#[must_use]
pub struct SpendCapLayer<B: UsageBackend> {
    shared: Arc<Shared<B>>,
}

impl<B: UsageBackend> SpendCapLayer<B> {
    pub(super) fn new(caps: SpendCaps<B>, cost: u64) -> Self {
        Self {
            shared: Arc::new(Shared {
                caps,
                cost,
                reported_up_to: 0,
                charged: crate::metrics::SpendCounters::default(),
            }),
        }
    }

    /// Lets the handler report what a request cost ([`ReportedCost`](super::ReportedCost)), up to `most` on top
    /// of the fixed cost. Admission reserves the fixed cost plus `most` (a request that
    /// does not fit is 402), and the report settles it: what was not spent is given back.
    /// So spend never exceeds the cap, however many requests are in flight. A report above
    /// `most` is charged as `most` (with an error event); a handler that reports nothing
    /// spent nothing; a request dropped before its response keeps its reservation.
    pub fn reports_at_most(self, most: u64) -> Self {
        Self {
            shared: Arc::new(Shared {
                caps: self.shared.caps.clone(),
                cost: self.shared.cost,
                reported_up_to: most,
                charged: crate::metrics::SpendCounters::default(),
            }),
        }
    }
}

impl<B: UsageBackend> Clone for SpendCapLayer<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B: UsageBackend> fmt::Debug for SpendCapLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpendCapLayer")
            .field("fixed_cost", &self.shared.cost)
            .field("reports_at_most", &self.shared.reported_up_to)
            .finish_non_exhaustive()
    }
}

impl<S, B: UsageBackend> Layer<S> for SpendCapLayer<B> {
    type Service = SpendCapService<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        SpendCapService::new(inner, Arc::clone(&self.shared))
    }
}

//! [`SpendCapService`]: the reservation before the handler, answered at once when the
//! backend can (in process), else deferred.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::charge::{Shared, Verdict};
use super::future::ResponseFuture;
use crate::principal::Principal;
use crate::support::gate::{decided, deferred};
use crate::usage::backend::{Charge, UsageBackend};

/// The service [`SpendCapLayer`](super::SpendCapLayer) wraps around the inner service.
pub struct SpendCapService<S, B: UsageBackend> {
    inner: S,
    shared: Arc<Shared<B>>,
}

impl<S, B: UsageBackend> SpendCapService<S, B> {
    pub(super) fn new(inner: S, shared: Arc<Shared<B>>) -> Self {
        Self { inner, shared }
    }

    crate::support::gate::inner_service_accessors!(S);
}

impl<S: Clone, B: UsageBackend> Clone for SpendCapService<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, B: UsageBackend> fmt::Debug for SpendCapService<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpendCapService")
            .field("inner", &self.inner)
            .field("fixed_cost", &self.shared.cost)
            .field("reports_at_most", &self.shared.reported_up_to)
            .finish()
    }
}

impl<S, B, ReqBody, ResBody> Service<Request<ReqBody>> for SpendCapService<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    B: UsageBackend,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, ReqBody, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let now = match request.extensions().get::<Principal>() {
            None => Ok(Verdict::Refused(
                crate::principal::absent(request.extensions()),
                None,
            )),
            Some(principal) => match shared.caps.budgets.allowance(principal) {
                None => Ok(Verdict::Pass),
                Some(allowance) => {
                    let period = allowance
                        .period
                        .unwrap_or_else(|| shared.caps.period_of(principal.environment()));
                    let budget = (allowance.cap, period);
                    let counter = shared.counter(principal, period);
                    let cost = shared.reservation();
                    match shared.charge_now(counter, cost, allowance.cap, Charge::Reserve) {
                        Some(result) => Ok(shared.verdict(principal, budget, result)),
                        None => Err((principal.clone(), budget)),
                    }
                }
            },
        };
        let future = match now {
            Ok(verdict) => decided(shared, &mut self.inner, request, verdict),
            Err((principal, budget)) => {
                let reserve = Arc::clone(shared).reserve_later(principal, budget);
                deferred(shared, &mut self.inner, request, reserve)
            }
        };
        ResponseFuture::new(future)
    }
}

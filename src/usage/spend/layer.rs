//! [`SpendCapLayer`]: the budget a request spends from, the reservation before the handler
//! and the response it leads to.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{header_value, Budget, ReportedCost, SpendCaps, SPEND_CAP};
use crate::activity::ActivityTicket;
use crate::gate::{caught, decided, deferred, guarded, Deferred, Gate, Unanswered};
use crate::principal::Principal;
use crate::rate_limit::{BackendError, OnBackendError};
use crate::reject::{respond, AuthRejection, RejectionKind, RetryAfter, Unavailable};
use crate::usage::backend::{Charge, Counter, Spent, UsageBackend};
use crate::usage::period::Period;

/// Charges a route class's requests to their budget; made by [`SpendCaps::layer`].
#[must_use]
pub struct SpendCapLayer<B: UsageBackend> {
    shared: Arc<Shared<B>>,
}

pub(crate) struct Shared<B: UsageBackend> {
    caps: SpendCaps<B>,
    /// Charged to every request.
    cost: u64,
    /// The most a handler may report on top ([`ReportedCost`]), reserved at admission.
    reported_up_to: u64,
    charged: crate::metrics::SpendCounters,
}

impl<B: UsageBackend> Shared<B> {
    /// What admission reserves: the fixed cost and the most the handler may report.
    fn reservation(&self) -> u64 {
        self.cost.saturating_add(self.reported_up_to)
    }
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

    /// Lets the handler report what a request cost ([`ReportedCost`]), up to `most` on top
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
        SpendCapService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`SpendCapLayer`] wraps around the inner service.
pub struct SpendCapService<S, B: UsageBackend> {
    inner: S,
    shared: Arc<Shared<B>>,
}

impl<S, B: UsageBackend> SpendCapService<S, B> {
    crate::gate::inner_service_accessors!(S);
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

/// What the reservation found.
pub(crate) enum Verdict {
    /// Uncapped, or the backend failed and the policy allows: no counting.
    Pass,
    /// Charged; whose budget, its cap and period, and the budget after the charge.
    Admitted(Principal, u64, Period, Spent),
    /// Refused, with the `spend-cap` header when headers are on.
    Refused(AuthRejection, Option<http::HeaderValue>),
}

/// What the layer keeps while the handler runs, and carries into the response when part
/// of the reservation is to be given back.
#[derive(Clone)]
pub(crate) struct Admitted<B: UsageBackend> {
    shared: Arc<Shared<B>>,
    principal: Principal,
    cap: u64,
    period: Period,
    spent: Spent,
    refund: u64,
    /// The activity layer's, to tell it what the request was charged.
    ticket: Option<ActivityTicket>,
}

impl<B: UsageBackend> Shared<B> {
    /// `principal`'s counter of `period`.
    fn counter<'p>(&self, principal: &'p Principal, period: Period) -> Counter<'p> {
        Counter::of(self.caps.per, principal, period)
    }

    fn verdict(
        &self,
        principal: &Principal,
        (cap, period): (u64, Period),
        result: Result<Spent, BackendError>,
    ) -> Verdict {
        match result {
            Ok(spent) if spent.allowed => Verdict::Admitted(principal.clone(), cap, period, spent),
            Ok(spent) => Verdict::Refused(
                match (spent.reset_after, spent.resets_at) {
                    (Some(after), Some(at)) => {
                        AuthRejection::spend_cap_exceeded(RetryAfter::from_duration(after), at)
                    }
                    _ => AuthRejection::credits_spent(),
                },
                self.caps
                    .headers
                    .then(|| header_value(cap, spent.spent, spent.reset_after)),
            ),
            Err(error) => {
                warn(&error);
                match self.caps.on_backend_error {
                    OnBackendError::Allow => Verdict::Pass,
                    OnBackendError::Deny => Verdict::Refused(
                        AuthRejection::unavailable(
                            Unavailable::UsageBackend,
                            RetryAfter::ONE_SECOND,
                        ),
                        None,
                    ),
                }
            }
        }
    }

    fn reserve_later(
        self: Arc<Self>,
        principal: Principal,
        (cap, period): (u64, Period),
    ) -> Deferred<Verdict> {
        Box::pin(async move {
            let counter = self.counter(&principal, period);
            let result = self
                .charge_guarded(counter, self.reservation(), cap, Charge::Reserve)
                .await;
            self.verdict(&principal, (cap, period), result)
        })
    }

    pub(super) async fn charge_guarded(
        &self,
        counter: Counter<'_>,
        cost: u64,
        cap: u64,
        charge: Charge,
    ) -> Result<Spent, BackendError> {
        let backend = &self.caps.backend;
        match guarded(
            self.caps.backend_timeout,
            backend.charge(counter, cost, cap, charge),
        )
        .await
        {
            Ok(result) => result,
            Err(Unanswered::TimedOut) => Err(BackendError::new("usage backend timed out")),
            Err(Unanswered::Panicked) => Err(BackendError::new("usage backend panicked")),
        }
    }

    fn charge_now(
        &self,
        counter: Counter<'_>,
        cost: u64,
        cap: u64,
        charge: Charge,
    ) -> Option<Result<Spent, BackendError>> {
        let backend = &self.caps.backend;
        match caught(|| backend.charge_now(counter, cost, cap, charge)) {
            Ok(answer) => answer,
            Err(_panicked) => Some(Err(BackendError::new("usage backend panicked"))),
        }
    }
}

fn warn(error: &BackendError) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "tower_api_key", error = %error, "usage backend failed");
    #[cfg(not(feature = "tracing"))]
    let _ = error;
}

impl<B: UsageBackend> Admitted<B> {
    /// Gives back what the request reserved and did not spend: now when the backend
    /// answers at once, else `Err` with the deferred refund. Either gives the `spend-cap`
    /// header to set.
    pub(super) fn settle(
        self,
    ) -> Result<Option<http::HeaderValue>, Deferred<Option<http::HeaderValue>>> {
        let shared = Arc::clone(&self.shared);
        let counter = shared.counter(&self.principal, self.period);
        let refund = Charge::Refund {
            period_ends: self.spent.resets_at,
        };
        match shared.charge_now(counter, self.refund, self.cap, refund) {
            Some(result) => Ok(self.header_after(result)),
            None => Err(Box::pin(async move {
                let counter = shared.counter(&self.principal, self.period);
                let result = shared
                    .charge_guarded(counter, self.refund, self.cap, refund)
                    .await;
                self.header_after(result)
            })),
        }
    }

    fn header_after(&self, result: Result<Spent, BackendError>) -> Option<http::HeaderValue> {
        let spent = match result {
            Ok(spent) => spent,
            Err(error) => {
                // The response is made; the reservation stays charged (never an
                // overspend), and said so.
                warn(&error);
                self.spent
            }
        };
        self.header(spent)
    }

    fn header(&self, spent: Spent) -> Option<http::HeaderValue> {
        self.shared
            .caps
            .headers
            .then(|| header_value(self.cap, spent.spent, spent.reset_after))
    }
}

impl<B: UsageBackend, T> Gate<Request<T>> for Shared<B> {
    type Verdict = Verdict;
    type After = Option<Admitted<B>>;

    #[allow(clippy::result_large_err)]
    fn decide(
        self: &Arc<Self>,
        verdict: Verdict,
        request: &mut Request<T>,
    ) -> Result<Self::After, Response<Bytes>> {
        match verdict {
            Verdict::Pass => Ok(None),
            Verdict::Admitted(principal, cap, period, spent) => {
                if self.caps.budget_in_request {
                    request.extensions_mut().insert(Budget {
                        cap,
                        spent: spent.spent,
                        period,
                        resets_at: spent.resets_at,
                    });
                }
                let ticket = request.extensions().get::<ActivityTicket>().cloned();
                Ok(Some(Admitted {
                    shared: Arc::clone(self),
                    principal,
                    cap,
                    period,
                    spent,
                    refund: 0,
                    ticket,
                }))
            }
            Verdict::Refused(rejection, header) => {
                if let (RejectionKind::SpendCapExceeded, Some(principal)) =
                    (rejection.kind(), request.extensions().get::<Principal>())
                {
                    let environment = principal.environment().as_str();
                    crate::metrics::by_environment(crate::metrics::SPEND_REFUSALS, environment, 1);
                }
                let mut response = respond(&*self.caps.renderer, rejection, request.headers());
                if let Some(header) = header {
                    response.headers_mut().insert(SPEND_CAP, header);
                }
                Err(response)
            }
        }
    }

    fn finish<R>(after: Self::After, response: &mut Response<R>) {
        let Some(mut admitted) = after else { return };
        let most = admitted.shared.reported_up_to;
        let reported = response
            .extensions()
            .get::<ReportedCost>()
            .map_or(0, |cost| cost.0);
        if reported > most {
            #[cfg(feature = "tracing")]
            tracing::error!(
                target: "tower_api_key",
                reported,
                most,
                "a handler reported more than its route declares (SpendCapLayer::reports_at_most); charged the declared most"
            );
        }
        admitted.refund = most - reported.min(most);
        let charged = admitted.shared.reservation() - admitted.refund;
        if charged > 0 {
            let environment = admitted.principal.environment();
            admitted.shared.charged.charged(environment, charged);
            if let Some(ticket) = &admitted.ticket {
                ticket.charged(charged);
            }
        }
        if admitted.refund > 0 {
            // Given back by the response future, which may have to wait for the backend.
            response.extensions_mut().insert(admitted);
        } else if let Some(header) = admitted.header(admitted.spent) {
            response.headers_mut().insert(SPEND_CAP, header);
        }
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

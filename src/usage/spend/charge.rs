//! What a spend-capped request goes through: the budget it spends from, the reservation,
//! the verdict and, after the handler, the settlement (a [`Gate`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};

use super::{header_value, Budget, ReportedCost, SpendCaps, SPEND_CAP};
use crate::activity::ActivityTicket;
use crate::backend_error::{BackendError, OnBackendError};
use crate::principal::Principal;
use crate::reject::{respond, AuthRejection, RejectionKind, RetryAfter, Unavailable};
use crate::support::gate::{caught, guarded, Deferred, Gate, Unanswered};
use crate::usage::backend::{Charge, Counter, Spent, UsageBackend};
use crate::usage::period::Period;

pub(crate) struct Shared<B: UsageBackend> {
    pub(super) caps: SpendCaps<B>,
    /// Charged to every request.
    pub(super) cost: u64,
    /// The most a handler may report on top ([`ReportedCost`]), reserved at admission.
    pub(super) reported_up_to: u64,
    pub(super) charged: crate::metrics::SpendCounters,
}

impl<B: UsageBackend> Shared<B> {
    /// What admission reserves: the fixed cost and the most the handler may report.
    pub(super) fn reservation(&self) -> u64 {
        self.cost.saturating_add(self.reported_up_to)
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
    pub(super) fn counter<'p>(&self, principal: &'p Principal, period: Period) -> Counter<'p> {
        Counter::of(self.caps.per, principal, period)
    }

    pub(super) fn verdict(
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

    pub(super) fn reserve_later(
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

    pub(super) fn charge_now(
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

    fn decide(
        self: &Arc<Self>,
        verdict: Verdict,
        request: &mut Request<T>,
    ) -> Result<Self::After, Response<Bytes>> {
        match verdict {
            Verdict::Pass => Ok(None),
            Verdict::Admitted(principal, cap, period, spent) => {
                self.caps
                    .announce_crossings(&principal, (cap, period), self.reservation(), &spent);
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

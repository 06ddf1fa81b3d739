//! [`RateLimitLayer`]: who a request counts against, the backend's decision, and the
//! response it leads to.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::backend::{Decision, LimitKey, OwnedKey, RateLimitBackend};
use super::headers::{add_headers, policy_header, state_header, state_headers};
use super::limits::RateLimits;
use super::{KeyedBy, Quota, RateClass, ReportedUnits, RequestCost};
use crate::backend_error::BackendError;
use crate::backend_error::OnBackendError;
use crate::body::ResponseBody;
use crate::client_ip::client_key_of;
use crate::principal::Principal;
use crate::reject::{respond, AuthRejection, RejectionKind, RetryAfter, Unavailable};
use crate::support::gate::{caught, decided, deferred, guarded, Deferred, Gate, Unanswered};

// Here, not in `limits.rs`: the layer holds its `RateLimits`, so the configuration does
// not import the layer back.
impl<B: RateLimitBackend> RateLimits<B> {
    /// A layer that limits its routes as `class`. Every layer of one class shares one
    /// budget per key, however many routes it is applied to.
    pub fn layer(&self, class: RateClass) -> RateLimitLayer<B> {
        RateLimitLayer {
            shared: Arc::new(LayerShared {
                units: class.cost().admitted(),
                settles: matches!(class.cost(), RequestCost::Reported { .. }),
                handle: self.backend.register(&class),
                policy: policy_header(&class, class.quota()),
                states: state_headers(&class),
                label: Arc::from(class.name().as_str()),
                decisions: crate::metrics::DecisionCounters::default(),
                class,
                limits: self.clone(),
            }),
        }
    }
}

/// Limits requests of one [`RateClass`]; made by [`RateLimits::layer`].
#[must_use]
pub struct RateLimitLayer<B: RateLimitBackend> {
    pub(super) shared: Arc<LayerShared<B>>,
}

pub(crate) struct LayerShared<B: RateLimitBackend> {
    pub(super) class: RateClass,
    /// What admission counts (1 for an unweighted class), and whether the handler's report
    /// settles it: read once here, not per request.
    pub(super) units: NonZeroU32,
    pub(super) settles: bool,
    pub(super) handle: B::Class,
    pub(super) policy: HeaderValue,
    /// `RateLimit` values by requests used (`quota - remaining`), for allowed requests
    /// under the class quota, up to `headers::PRECOMPUTED_STATES` used.
    pub(super) states: Vec<HeaderValue>,
    pub(super) limits: RateLimits<B>,
    /// The class name as a metrics label, made once, and the decisions' handles.
    pub(super) label: Arc<str>,
    pub(super) decisions: crate::metrics::DecisionCounters,
}

impl<B: RateLimitBackend> Clone for RateLimitLayer<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B: RateLimitBackend> fmt::Debug for RateLimitLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("class", &self.shared.class)
            .finish_non_exhaustive()
    }
}

impl<Svc, B: RateLimitBackend> Layer<Svc> for RateLimitLayer<B> {
    type Service = RateLimitService<Svc, B>;

    fn layer(&self, inner: Svc) -> Self::Service {
        RateLimitService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around the inner service.
pub struct RateLimitService<Svc, B: RateLimitBackend> {
    inner: Svc,
    shared: Arc<LayerShared<B>>,
}

impl<Svc, B: RateLimitBackend> RateLimitService<Svc, B> {
    crate::support::gate::inner_service_accessors!(Svc);
}

impl<Svc: Clone, B: RateLimitBackend> Clone for RateLimitService<Svc, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<Svc: fmt::Debug, B: RateLimitBackend> fmt::Debug for RateLimitService<Svc, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .field("class", &self.shared.class)
            .finish()
    }
}

impl<B: RateLimitBackend> LayerShared<B> {
    /// Who the request counts against, and under which quota.
    fn subject<'r, T>(
        &self,
        request: &'r Request<T>,
    ) -> Result<(LimitKey<'r>, Quota), AuthRejection> {
        match self.class.keyed_by() {
            keyed_by @ (KeyedBy::ApiKey | KeyedBy::Owner) => {
                let principal = request
                    .extensions()
                    .get::<Principal>()
                    .ok_or_else(|| crate::principal::absent(request.extensions()))?;
                let key = LimitKey::of_principal(principal, keyed_by == KeyedBy::Owner);
                // A key's own override; an owner's budget is the class's.
                let quota = match key {
                    LimitKey::ApiKey(_) => principal.quota_override(self.class.name()),
                    _ => None,
                };
                Ok((key, quota.unwrap_or(self.class.quota())))
            }
            KeyedBy::ClientIp => {
                let key = client_key_of(request.headers(), request.extensions())?;
                Ok((LimitKey::ClientIp(key), self.class.quota()))
            }
        }
    }

    fn headers_for(&self, decision: &Decision) -> Option<[HeaderValue; 2]> {
        if !self.limits.headers {
            return None;
        }
        let quota = decision.quota();
        if quota != self.class.quota() {
            let policy = policy_header(&self.class, quota);
            let state = state_header(&self.class, decision.remaining(), decision.reset_after())?;
            return Some([policy, state]);
        }
        // The header shows whole seconds, rounded up: the value made at start is the same
        // text whenever the reset rounds to the same second (not only at exact periods).
        let whole_seconds = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let precomputed = quota
            .requests()
            .get()
            .checked_sub(decision.remaining())
            .filter(|_| decision.is_allowed())
            .and_then(|used| {
                let value = self.states.get(used as usize)?;
                let same =
                    whole_seconds(decision.reset_after()) == whole_seconds(quota.interval() * used);
                same.then_some(value)
            });
        let state = match precomputed {
            Some(state) => state.clone(),
            None => state_header(&self.class, decision.remaining(), decision.reset_after())?,
        };
        Some([self.policy.clone(), state])
    }

    /// The asynchronous check, boxed, under the timeout, with panics caught.
    fn check_later(self: Arc<Self>, key: OwnedKey, quota: Quota) -> Deferred<Outcome> {
        Box::pin(async move {
            let units = self.units;
            let backend = &self.limits.backend;
            let check = async {
                if units.get() == 1 {
                    backend.check(&self.handle, key.borrow(), quota).await
                } else {
                    backend
                        .check_units(&self.handle, key.borrow(), quota, units)
                        .await
                }
            };
            let result = match guarded(self.limits.backend_timeout, check).await {
                Ok(result) => result,
                Err(Unanswered::TimedOut) => Err(BackendError::new("rate-limit backend timed out")),
                Err(Unanswered::Panicked) => Err(BackendError::new("rate-limit backend panicked")),
            };
            self.outcome(result)
        })
    }
}

/// What happens to the request after the decision.
pub(crate) enum Outcome {
    Call(Option<[HeaderValue; 2]>),
    Reject(AuthRejection, Option<[HeaderValue; 2]>),
}

impl<B: RateLimitBackend> LayerShared<B> {
    fn outcome(&self, result: Result<Decision, BackendError>) -> Outcome {
        let outcome = match &result {
            Ok(decision) if decision.is_allowed() => 0,
            Ok(_) => 1,
            Err(_) => 2,
        };
        self.decisions.record(&self.label, outcome);
        match result {
            Ok(decision) if decision.is_allowed() => Outcome::Call(self.headers_for(&decision)),
            Ok(decision) => Outcome::Reject(
                AuthRejection::rate_limited(RetryAfter::from_duration(decision.retry_after())),
                self.headers_for(&decision),
            ),
            Err(error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(target: "tower_api_key", class = self.class.name().as_str(), error = %error, "rate-limit backend failed");
                #[cfg(not(feature = "tracing"))]
                let _ = error;
                match self.limits.on_backend_error {
                    OnBackendError::Allow => Outcome::Call(None),
                    OnBackendError::Deny => Outcome::Reject(
                        AuthRejection::unavailable(
                            Unavailable::RateLimiter,
                            RetryAfter::ONE_SECOND,
                        ),
                        None,
                    ),
                }
            }
        }
    }
}

/// Decides on the outcome: call with the headers, or answer with the rejection.
impl<B: RateLimitBackend, T> Gate<Request<T>> for LayerShared<B> {
    type Verdict = Outcome;
    // The settlement boxed: a reporting class is rare, and the unweighted path keeps a
    // small future.
    type After = (Option<[HeaderValue; 2]>, Option<Box<Settle<B>>>);

    fn decide(
        self: &Arc<Self>,
        outcome: Outcome,
        request: &mut Request<T>,
    ) -> Result<Self::After, Response<Bytes>> {
        match outcome {
            Outcome::Call(headers) => {
                let settle = if self.settles {
                    Settle::of(self, request).map(Box::new)
                } else {
                    None
                };
                Ok((headers, settle))
            }
            Outcome::Reject(rejection, headers) => {
                if let (Some(repeated), Some(principal), RejectionKind::RateLimited) = (
                    &self.limits.repeated,
                    request.extensions().get::<Principal>(),
                    rejection.kind(),
                ) {
                    repeated.refused(principal, self.class.name(), self.class.quota().window());
                }
                let mut response = respond(&*self.limits.renderer, rejection, request.headers());
                add_headers(response.headers_mut(), headers);
                Err(response)
            }
        }
    }

    fn finish<R>((headers, settle): Self::After, response: &mut Response<R>) {
        add_headers(response.headers_mut(), headers);
        if let Some(settle) = settle {
            // Refused further in (by a layer of the crate): the handler never ran.
            let refused = response.extensions().get::<AuthRejection>().is_some();
            let reported = response.extensions().get::<ReportedUnits>().copied();
            settle.with(if refused {
                Some(ReportedUnits(0))
            } else {
                reported
            });
        }
    }
}

/// What a request of a [`RequestCost::Reported`] class reserved, to settle when the
/// handler answers.
pub(crate) struct Settle<B: RateLimitBackend> {
    shared: Arc<LayerShared<B>>,
    key: OwnedKey,
    quota: Quota,
    reserved: NonZeroU32,
}

impl<B: RateLimitBackend> Settle<B> {
    /// For an admitted request of a reporting class: what it reserved, and against whom.
    fn of<T>(shared: &Arc<LayerShared<B>>, request: &Request<T>) -> Option<Self> {
        let RequestCost::Reported { reserve } = shared.class.cost() else {
            return None;
        };
        let (key, quota) = shared.subject(request).ok()?;
        let reserved = NonZeroU32::new(reserve.get().min(quota.requests().get()))?;
        Some(Self {
            shared: Arc::clone(shared),
            key: OwnedKey::from(key),
            quota,
            reserved,
        })
    }

    /// Keeps what was `reported` (nothing reported: all of it) and gives the rest back:
    /// at once in process, on the runtime for a shared backend (best effort: a refund
    /// that fails leaves the reservation counted, never more).
    fn with(self: Box<Self>, reported: Option<ReportedUnits>) {
        let kept = reported.map_or(self.reserved.get(), |ReportedUnits(units)| units);
        let Some(back) = NonZeroU32::new(self.reserved.get().saturating_sub(kept)) else {
            return;
        };
        let backend = &self.shared.limits.backend;
        if backend
            .refund_now(&self.shared.handle, self.key.borrow(), self.quota, back)
            .is_some()
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let backend = &self.shared.limits.backend;
            let refund = backend.refund(&self.shared.handle, self.key.borrow(), self.quota, back);
            let _ = guarded(self.shared.limits.backend_timeout, refund).await;
        });
    }
}

crate::support::gate::response_future! {
    /// Response future of [`RateLimitService`].
    ResponseFuture<S, B, ReqBody>, Request<ReqBody>, LayerShared<B>
    where B: RateLimitBackend,
}

impl<Svc, B, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<Svc, B>
where
    Svc: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    B: RateLimitBackend,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Svc::Error;
    type Future = ResponseFuture<Svc, B, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let now = match shared.subject(&request) {
            Err(rejection) => Ok(Outcome::Reject(rejection, None)),
            Ok((key, quota)) => {
                let backend = &shared.limits.backend;
                // The unweighted path makes exactly the call it made before weights.
                let checked = if shared.units.get() == 1 {
                    caught(|| backend.check_now(&shared.handle, key, quota))
                } else {
                    caught(|| backend.check_units_now(&shared.handle, key, quota, shared.units))
                };
                match checked {
                    Ok(Some(result)) => Ok(shared.outcome(result)),
                    Ok(None) => Err((OwnedKey::from(key), quota)),
                    Err(_panicked) => {
                        Ok(shared.outcome(Err(BackendError::new("rate-limit backend panicked"))))
                    }
                }
            }
        };
        let future = match now {
            Ok(outcome) => decided(shared, &mut self.inner, request, outcome),
            Err((key, quota)) => {
                let check = Arc::clone(shared).check_later(key, quota);
                deferred(shared, &mut self.inner, request, check)
            }
        };
        ResponseFuture::new(future)
    }
}

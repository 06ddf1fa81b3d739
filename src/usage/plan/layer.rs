//! [`PlanLayer`]: the plan check per request, its service and response future.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dashmap::DashMap;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::PlanPolicy;
use crate::body::ResponseBody;
use crate::clock::{Clock, SystemClock};
use crate::gate::{decided, deferred, guarded, Deferred, Gate};
use crate::key::Environment;
use crate::principal::Principal;
use crate::reject::{
    respond, AuthRejection, DefaultRenderer, RenderRejection, RetryAfter, Unavailable,
};

/// Asks a [`PlanPolicy`] whether the authenticated owner's plan still allows the key's
/// environment, per request; put it inside the [`AuthLayer`](crate::AuthLayer). Browser
/// sessions pass: the rule is about which keys an owner may use, and a Free owner still
/// logs in to manage its test keys. Answers
/// are cached per owner and environment for a TTL (default 60 s; at most 10,000 entries
/// per environment),
/// so a downgrade takes effect within the TTL. A failing, slow (1 s) or panicking policy is
/// a 503, never a pass.
#[derive(Clone)]
#[must_use]
pub struct PlanLayer {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    plans: Arc<dyn PlanPolicy>,
    /// Answers by environment (live, test), then owner: looked up without allocating.
    answers: [DashMap<String, (bool, SystemTime)>; 2],
    ttl: Duration,
    clock: Arc<dyn Clock>,
    renderer: Arc<dyn RenderRejection>,
}

const MAX_ANSWERS: usize = 10_000;

impl PlanLayer {
    /// Checks with `plans`.
    pub fn new(plans: impl PlanPolicy) -> Self {
        Self::build(
            Arc::new(plans),
            Duration::from_secs(60),
            Arc::new(SystemClock),
        )
    }

    fn build(plans: Arc<dyn PlanPolicy>, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            shared: Arc::new(Shared {
                plans,
                answers: [DashMap::new(), DashMap::new()],
                ttl,
                clock,
                renderer: Arc::new(DefaultRenderer),
            }),
        }
    }

    /// How long an answer is reused (default 60 s).
    pub fn cache_ttl(self, ttl: Duration) -> Self {
        let shared = &self.shared;
        Self::build(Arc::clone(&shared.plans), ttl, Arc::clone(&shared.clock))
    }

    /// The clock the TTL runs on (default: the system clock).
    pub fn clock(self, clock: impl Clock) -> Self {
        let shared = &self.shared;
        Self::build(Arc::clone(&shared.plans), shared.ttl, Arc::new(clock))
    }
}

impl fmt::Debug for PlanLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanLayer")
            .field("ttl", &self.shared.ttl)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for PlanLayer {
    type Service = PlanService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PlanService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// What the check found: allowed, refused, or the policy's failure.
pub(crate) type Verdict = Result<bool, AuthRejection>;

impl Shared {
    fn answers(&self, environment: Environment) -> &DashMap<String, (bool, SystemTime)> {
        &self.answers[environment.slot()]
    }

    fn cached(&self, owner: &str, environment: Environment) -> Option<bool> {
        let (allowed, at) = *self.answers(environment).get(owner)?;
        let fresh = self
            .clock
            .now()
            .duration_since(at)
            .is_ok_and(|age| age < self.ttl);
        fresh.then_some(allowed)
    }

    fn ask(self: Arc<Self>, owner: String, environment: Environment) -> Deferred<Verdict> {
        Box::pin(async move {
            let answer = guarded(
                Duration::from_secs(1),
                self.plans.allows(&owner, environment),
            )
            .await;
            match answer {
                Ok(Ok(allowed)) => {
                    let answers = self.answers(environment);
                    if answers.len() >= MAX_ANSWERS {
                        answers.clear();
                    }
                    answers.insert(owner, (allowed, self.clock.now()));
                    Ok(allowed)
                }
                _ => Err(AuthRejection::unavailable(
                    Unavailable::PlanPolicy,
                    RetryAfter::from_duration(Duration::from_secs(5)),
                )),
            }
        })
    }
}

impl<B> Gate<Request<B>> for Shared {
    type Verdict = Verdict;
    type After = ();

    #[allow(clippy::result_large_err)]
    fn decide(
        self: &Arc<Self>,
        verdict: Verdict,
        request: &mut Request<B>,
    ) -> Result<(), Response<Bytes>> {
        let refusal = match verdict {
            Ok(true) => return Ok(()),
            Ok(false) => match request.extensions().get::<Principal>() {
                Some(principal) => {
                    let environment = principal.environment();
                    let label = environment.as_str();
                    crate::metrics::by_environment(crate::metrics::PLAN_REFUSALS, label, 1);
                    AuthRejection::PlanRequired(environment)
                }
                None => crate::principal::absent(request.extensions()),
            },
            Err(rejection) => rejection,
        };
        Err(respond(&*self.renderer, refusal, request.headers()))
    }

    fn finish<R>((): (), _: &mut Response<R>) {}
}

crate::gate::response_future! {
    /// Response future of [`PlanService`].
    ResponseFuture<S, ReqBody>, Request<ReqBody>, Shared
}

/// The service [`PlanLayer`] wraps around the inner service.
#[derive(Clone)]
pub struct PlanService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> PlanService<S> {
    crate::gate::inner_service_accessors!(S);
}

impl<S: fmt::Debug> fmt::Debug for PlanService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PlanService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let Some(principal) = request.extensions().get::<Principal>() else {
            let missing = Err(crate::principal::absent(request.extensions()));
            return ResponseFuture::new(decided(shared, &mut self.inner, request, missing));
        };
        // The plan rule is about keys; a browser session is a login, not a key.
        if principal.kind() == crate::principal::CredentialKind::Session {
            return ResponseFuture::new(decided(shared, &mut self.inner, request, Ok(true)));
        }
        let (owner, environment) = (principal.owner(), principal.environment());
        let future = match shared.cached(owner, environment) {
            Some(allowed) => decided(shared, &mut self.inner, request, Ok(allowed)),
            None => {
                let ask = Arc::clone(shared).ask(owner.to_owned(), environment);
                deferred(shared, &mut self.inner, request, ask)
            }
        };
        ResponseFuture::new(future)
    }
}

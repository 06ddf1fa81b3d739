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

use super::{Plan, PlanPolicy};
use crate::body::ResponseBody;
use crate::clock::{Clock, SystemClock};
use crate::key::Environment;
use crate::principal::{CredentialKind, Principal};
use crate::reject::{
    respond, AuthRejection, DefaultRenderer, RenderRejection, RetryAfter, Unavailable,
};
use crate::support::gate::{decided, deferred, guarded, Deferred, Gate};

/// Asks a [`PlanPolicy`] whether the authenticated owner's plan allows the request; put it
/// inside the [`AuthLayer`](crate::AuthLayer). Two rules, each answered per owner:
///
/// - **Keys**: the owner's plan must allow the key's environment ("live keys require Team",
///   [`PlanPolicy::allows`]). Browser sessions are not keys and skip this rule, so a Free
///   owner still logs in to manage its keys and upgrade.
/// - **The route**: with [`require`](Self::require), the owner's plan must be at least the
///   given plan ([`PlanPolicy::meets`]), **for every credential**: keys, sessions, agents.
///   Gate paid features this way; a session never gets past a plan its owner's key fails.
///
/// Answers are cached per owner for a TTL (default 60 s; at most 10,000 entries per
/// rule), so a downgrade or the end of a trial takes effect within the TTL. A failing,
/// slow (1 s) or panicking policy is a 503, never a pass.
///
/// ```
/// use tower_api_key::key::Environment;
/// use tower_api_key::usage::{Plan, PlanLayer, PlanTable};
///
/// let plans = PlanTable::new(Plan::Free).require(Environment::Live, Plan::Team);
/// // Every /v1 route: live keys need Team.
/// let keys = PlanLayer::new(plans.clone());
/// // The AI routes: Pro or higher, whatever the credential (sessions too).
/// let ai = PlanLayer::new(plans).require(Plan::Pro);
/// # let _ = (keys, ai);
/// ```
#[derive(Clone)]
#[must_use]
pub struct PlanLayer {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    plans: Arc<dyn PlanPolicy>,
    /// The route's plan, asked of every credential.
    required: Option<Plan>,
    /// Answers by question (live keys, test keys, the route's plan), then owner: looked up
    /// without allocating.
    answers: [DashMap<String, (bool, SystemTime)>; 3],
    ttl: Duration,
    clock: Arc<dyn Clock>,
    renderer: Arc<dyn RenderRejection>,
}

const MAX_ANSWERS: usize = 10_000;

/// One rule a request must pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Question {
    /// May the owner hold keys of this environment?
    Environment(Environment),
    /// Is the owner on this plan or higher?
    Plan(Plan),
}

impl Question {
    fn slot(self) -> usize {
        match self {
            Self::Environment(environment) => environment.slot(),
            Self::Plan(_) => 2,
        }
    }

    fn rejection(self) -> AuthRejection {
        match self {
            Self::Environment(environment) => {
                let label = environment.as_str();
                crate::metrics::by_environment(crate::metrics::PLAN_REFUSALS, label, 1);
                AuthRejection::PlanRequired(environment)
            }
            Self::Plan(plan) => AuthRejection::RoutePlanRequired(plan),
        }
    }
}

impl PlanLayer {
    /// Checks with `plans`.
    pub fn new(plans: impl PlanPolicy) -> Self {
        Self::build(
            Arc::new(plans),
            None,
            Duration::from_secs(60),
            Arc::new(SystemClock),
        )
    }

    fn build(
        plans: Arc<dyn PlanPolicy>,
        required: Option<Plan>,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                plans,
                required,
                answers: Default::default(),
                ttl,
                clock,
                renderer: Arc::new(DefaultRenderer),
            }),
        }
    }

    fn rebuild(
        self,
        change: impl FnOnce(&mut Option<Plan>, &mut Duration, &mut Arc<dyn Clock>),
    ) -> Self {
        let shared = &self.shared;
        let (mut required, mut ttl, mut clock) =
            (shared.required, shared.ttl, Arc::clone(&shared.clock));
        change(&mut required, &mut ttl, &mut clock);
        Self::build(Arc::clone(&shared.plans), required, ttl, clock)
    }

    /// The routes this layer wraps require `plan` or higher, for every credential (keys
    /// and sessions alike): 403 `plan_required` otherwise. The policy must implement
    /// [`PlanPolicy::meets`] ([`PlanTable`](super::PlanTable) does).
    pub fn require(self, plan: Plan) -> Self {
        self.rebuild(|required, _, _| *required = Some(plan))
    }

    /// How long an answer is reused (default 60 s).
    pub fn cache_ttl(self, ttl: Duration) -> Self {
        self.rebuild(|_, old, _| *old = ttl)
    }

    /// The clock the TTL runs on (default: the system clock).
    pub fn clock(self, clock: impl Clock) -> Self {
        self.rebuild(|_, _, old| *old = Arc::new(clock))
    }
}

impl fmt::Debug for PlanLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanLayer")
            .field("required", &self.shared.required)
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

/// What the checks found: passed (`None`), the rule that refused, or the policy's failure.
pub(crate) type Verdict = Result<Option<Question>, AuthRejection>;

/// The rules one request must pass, in order.
type Questions = [Option<Question>; 2];

impl Shared {
    fn cached(&self, owner: &str, question: Question) -> Option<bool> {
        let (allowed, at) = *self.answers[question.slot()].get(owner)?;
        let fresh = self
            .clock
            .now()
            .duration_since(at)
            .is_ok_and(|age| age < self.ttl);
        fresh.then_some(allowed)
    }

    fn questions(&self, principal: &Principal) -> Questions {
        // The environment rule is about keys; a browser session is a login, not a key.
        let environment = (principal.kind() != CredentialKind::Session)
            .then(|| Question::Environment(principal.environment()));
        [environment, self.required.map(Question::Plan)]
    }

    /// The verdict from cached answers alone, if they suffice.
    fn cached_verdict(&self, owner: &str, questions: Questions) -> Option<Verdict> {
        for question in questions.into_iter().flatten() {
            match self.cached(owner, question)? {
                true => {}
                false => return Some(Ok(Some(question))),
            }
        }
        Some(Ok(None))
    }

    fn ask(self: Arc<Self>, owner: String, questions: Questions) -> Deferred<Verdict> {
        Box::pin(async move {
            for question in questions.into_iter().flatten() {
                let allowed = match self.cached(&owner, question) {
                    Some(allowed) => allowed,
                    None => self.ask_one(&owner, question).await?,
                };
                if !allowed {
                    return Ok(Some(question));
                }
            }
            Ok(None)
        })
    }

    async fn ask_one(&self, owner: &str, question: Question) -> Result<bool, AuthRejection> {
        let answer = match question {
            Question::Environment(environment) => self.plans.allows(owner, environment),
            Question::Plan(plan) => self.plans.meets(owner, plan),
        };
        match guarded(Duration::from_secs(1), answer).await {
            Ok(Ok(allowed)) => {
                let answers = &self.answers[question.slot()];
                if answers.len() >= MAX_ANSWERS {
                    // Amortised O(1): one clear per 10,000 answers.
                    answers.clear();
                }
                answers.insert(owner.to_owned(), (allowed, self.clock.now()));
                Ok(allowed)
            }
            _ => Err(AuthRejection::unavailable(
                Unavailable::PlanPolicy,
                RetryAfter::from_duration(Duration::from_secs(5)),
            )),
        }
    }
}

impl<B> Gate<Request<B>> for Shared {
    type Verdict = Verdict;
    type After = ();

    fn decide(
        self: &Arc<Self>,
        verdict: Verdict,
        request: &mut Request<B>,
    ) -> Result<(), Response<Bytes>> {
        let refusal = match verdict {
            Ok(None) => return Ok(()),
            Ok(Some(question)) => question.rejection(),
            Err(rejection) => rejection,
        };
        Err(respond(&*self.renderer, refusal, request.headers()))
    }

    fn finish<R>((): (), _: &mut Response<R>) {}
}

crate::support::gate::response_future! {
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
    crate::support::gate::inner_service_accessors!(S);
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
        let questions = shared.questions(principal);
        let owner = principal.owner();
        let future = match shared.cached_verdict(owner, questions) {
            Some(verdict) => decided(shared, &mut self.inner, request, verdict),
            None => {
                let ask = Arc::clone(shared).ask(owner.to_owned(), questions);
                deferred(shared, &mut self.inner, request, ask)
            }
        };
        ResponseFuture::new(future)
    }
}

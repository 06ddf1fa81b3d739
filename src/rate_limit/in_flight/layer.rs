//! [`InFlightLimits`] and [`InFlightLayer`]: a slot per admitted request, held by its
//! response body.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{InFlightBackend, InFlightBody, InFlightLimit, MemoryInFlight};
use crate::backend_error::{BackendError, OnBackendError};
use crate::body::ResponseBody;
use crate::principal::Principal;
use crate::rate_limit::backend::LimitKey;
use crate::rate_limit::KeyedBy;
use crate::reject::{
    respond, AuthRejection, DefaultRenderer, RenderRejection, RetryAfter, Unavailable,
};
use crate::support::gate::{guarded, Unanswered};

/// The configuration of in-flight limits, as [`RateLimits`](crate::rate_limit::RateLimits)
/// is of rate limits: a backend, what a failing backend means (default: allow, as for
/// rate limits), its timeout (1 s) and the renderer.
#[derive(Clone)]
pub struct InFlightLimits<B: InFlightBackend = MemoryInFlight> {
    backend: B,
    on_backend_error: OnBackendError,
    backend_timeout: Duration,
    renderer: Arc<dyn RenderRejection>,
}

impl InFlightLimits<MemoryInFlight> {
    /// Counted in this process.
    pub fn new() -> Self {
        Self::backed_by(MemoryInFlight::new())
    }
}

impl Default for InFlightLimits<MemoryInFlight> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: InFlightBackend> InFlightLimits<B> {
    /// Counted by `backend` (e.g. [`RedisInFlight`](crate::rate_limit::RedisInFlight)).
    pub fn backed_by(backend: B) -> Self {
        Self {
            backend,
            on_backend_error: OnBackendError::default(),
            backend_timeout: Duration::from_secs(1),
            renderer: Arc::new(DefaultRenderer),
        }
    }

    /// What a backend that fails (or takes longer than the timeout) means.
    #[must_use]
    pub fn on_backend_error(mut self, policy: OnBackendError) -> Self {
        self.on_backend_error = policy;
        self
    }

    /// How long to wait for the backend (default 1 s).
    #[must_use]
    pub fn backend_timeout(mut self, timeout: Duration) -> Self {
        self.backend_timeout = timeout;
        self
    }

    /// Renders refusals with `renderer`.
    #[must_use]
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.renderer = Arc::new(renderer);
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// A layer that holds its routes to `limit`.
    pub fn layer(&self, limit: InFlightLimit) -> InFlightLayer<B> {
        InFlightLayer {
            shared: Arc::new(Shared {
                limits: self.clone(),
                label: Arc::from(limit.name().as_str()),
                decisions: crate::metrics::DecisionCounters::default(),
                limit,
            }),
        }
    }
}

impl<B: InFlightBackend + fmt::Debug> fmt::Debug for InFlightLimits<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightLimits")
            .field("backend", &self.backend)
            .field("on_backend_error", &self.on_backend_error)
            .finish_non_exhaustive()
    }
}

struct Shared<B: InFlightBackend> {
    limits: InFlightLimits<B>,
    limit: InFlightLimit,
    /// The limit's name as a metrics label, and its decisions' handles.
    label: Arc<str>,
    decisions: crate::metrics::DecisionCounters,
}

/// Holds its routes to an [`InFlightLimit`]; made by [`InFlightLimits::layer`].
#[must_use]
pub struct InFlightLayer<B: InFlightBackend> {
    shared: Arc<Shared<B>>,
}

impl<B: InFlightBackend> Clone for InFlightLayer<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B: InFlightBackend> fmt::Debug for InFlightLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightLayer")
            .field("limit", &self.shared.limit)
            .finish_non_exhaustive()
    }
}

impl<S, B: InFlightBackend> Layer<S> for InFlightLayer<B> {
    type Service = InFlightService<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`InFlightLayer`] makes.
pub struct InFlightService<S, B: InFlightBackend> {
    inner: S,
    shared: Arc<Shared<B>>,
}

impl<S: Clone, B: InFlightBackend> Clone for InFlightService<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, B: InFlightBackend> fmt::Debug for InFlightService<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightService")
            .field("inner", &self.inner)
            .field("limit", &self.shared.limit)
            .finish()
    }
}

/// Response future of [`InFlightService`] (boxed: the slot may come from a round trip).
pub type InFlightFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

type Answer<ResBody, B> =
    Response<InFlightBody<ResponseBody<ResBody>, <B as InFlightBackend>::Slot>>;

impl<B: InFlightBackend> Shared<B> {
    /// The key the request's slots are counted by.
    fn key_of<'r, T>(&self, request: &'r Request<T>) -> Result<LimitKey<'r>, AuthRejection> {
        let principal = request
            .extensions()
            .get::<Principal>()
            .ok_or_else(|| crate::principal::absent(request.extensions()))?;
        let by_owner = self.limit.keyed_by() == KeyedBy::Owner;
        Ok(LimitKey::of_principal(principal, by_owner))
    }

    /// What the backend's answer means: a slot, none needed (a failing backend allowed),
    /// or a refusal.
    fn admission(
        &self,
        answer: Result<Option<B::Slot>, BackendError>,
    ) -> Result<Option<B::Slot>, AuthRejection> {
        let outcome = match &answer {
            Ok(Some(_)) => 0,
            Ok(None) => 1,
            Err(_) => 2,
        };
        self.decisions.record(&self.label, outcome);
        match answer {
            Ok(Some(slot)) => Ok(Some(slot)),
            Ok(None) => Err(AuthRejection::rate_limited(RetryAfter::ONE_SECOND)),
            Err(_error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(target: "tower_api_key", limit = self.limit.name().as_str(), error = %_error, "in-flight backend failed");
                match self.limits.on_backend_error {
                    OnBackendError::Allow => Ok(None),
                    OnBackendError::Deny => Err(AuthRejection::unavailable(
                        Unavailable::RateLimiter,
                        RetryAfter::ONE_SECOND,
                    )),
                }
            }
        }
    }
}

impl<S, B, ReqBody, ResBody> Service<Request<ReqBody>> for InFlightService<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: InFlightBackend,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Answer<ResBody, B>;
    type Error = S::Error;
    type Future = InFlightFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The ready service answers this request; a clone waits for the next one.
        let inner = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, inner);
        let shared = Arc::clone(&self.shared);
        let now = match shared.key_of(&request) {
            Err(rejection) => Some(Err(rejection)),
            Ok(key) => shared
                .limits
                .backend
                .acquire_now(&shared.limit, key)
                .map(|answer| shared.admission(answer)),
        };
        Box::pin(async move {
            let admitted = match now {
                Some(admitted) => admitted,
                None => match shared.key_of(&request) {
                    Err(rejection) => Err(rejection),
                    Ok(key) => {
                        let acquire = shared.limits.backend.acquire(&shared.limit, key);
                        let answer = match guarded(shared.limits.backend_timeout, acquire).await {
                            Ok(answer) => answer,
                            Err(Unanswered::TimedOut) => {
                                Err(BackendError::new("in-flight backend timed out"))
                            }
                            Err(Unanswered::Panicked) => {
                                Err(BackendError::new("in-flight backend panicked"))
                            }
                        };
                        shared.admission(answer)
                    }
                },
            };
            match admitted {
                Ok(slot) => {
                    let response = inner.call(request).await?;
                    Ok(response.map(|body| InFlightBody::new(ResponseBody::inner(body), slot)))
                }
                Err(rejection) => {
                    let refusal = respond(&*shared.limits.renderer, rejection, request.headers());
                    Ok(
                        refusal
                            .map(|bytes| InFlightBody::new(ResponseBody::rejection(bytes), None)),
                    )
                }
            }
        })
    }
}

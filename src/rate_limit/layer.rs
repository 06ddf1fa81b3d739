use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::backend::{BackendError, Decision, LimitKey, RateLimitBackend};
use super::client_ip::{limiter_key, ClientIp};
use super::gcra::GovernorBackend;
use super::{KeyedBy, Quota, RateClass};
use crate::body::ResponseBody;
use crate::principal::Principal;
use crate::reject::{
    respond, AuthRejection, DefaultRenderer, RenderRejection, RetryAfter, Unavailable,
};
use crate::store::KeyId;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-11).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What to do when the backend cannot decide (its server is down or slow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnBackendError {
    /// Let the request through and emit a warning event: an outage of the limiter does not
    /// become an outage of the API. The default, as in mainstream gateways (Envoy's
    /// `failure_mode_deny: false`, Kong's `fault_tolerant: true`).
    #[default]
    Allow,
    /// Answer 503 `auth_unavailable` with `Retry-After`.
    Deny,
}

/// Shared rate-limit configuration: one backend, the client-address rules, and how
/// responses look. Make one per application and a [`layer`](Self::layer) per class.
#[derive(Clone)]
pub struct RateLimits<B: RateLimitBackend = GovernorBackend> {
    backend: B,
    client_ip: ClientIp,
    headers: bool,
    backend_timeout: Duration,
    on_backend_error: OnBackendError,
    renderer: Arc<dyn RenderRejection>,
}

impl RateLimits<GovernorBackend> {
    /// In-process limits on governor's default clock.
    pub fn new() -> Self {
        Self::with_backend(GovernorBackend::new())
    }
}

impl Default for RateLimits<GovernorBackend> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: RateLimitBackend> RateLimits<B> {
    /// Limits kept by `backend`.
    pub fn with_backend(backend: B) -> Self {
        Self {
            backend,
            client_ip: ClientIp::default(),
            headers: true,
            backend_timeout: Duration::from_secs(1),
            on_backend_error: OnBackendError::default(),
            renderer: Arc::new(DefaultRenderer),
        }
    }

    /// How per-address classes find the client's address (default: the peer, no proxy
    /// trusted).
    #[must_use]
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = client_ip;
        self
    }

    /// Whether responses carry `RateLimit-Policy` and `RateLimit` (default: yes).
    #[must_use]
    pub fn headers(mut self, enabled: bool) -> Self {
        self.headers = enabled;
        self
    }

    /// How long an asynchronous backend may take before it counts as failed (default 1 s).
    #[must_use]
    pub fn backend_timeout(mut self, timeout: Duration) -> Self {
        self.backend_timeout = timeout;
        self
    }

    /// What a backend failure means for the request (default: allow, with a warning).
    #[must_use]
    pub fn on_backend_error(mut self, policy: OnBackendError) -> Self {
        self.on_backend_error = policy;
        self
    }

    /// How 429s are rendered (default: [`DefaultRenderer`]).
    #[must_use]
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.renderer = Arc::new(renderer);
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Evicts idle state now (it also runs by itself; see the backend).
    pub fn housekeeping(&self) {
        self.backend.housekeeping();
    }

    /// How many keys and addresses state is held for.
    pub fn tracked(&self) -> usize {
        self.backend.tracked()
    }

    /// A layer that limits its routes as `class`. Every layer of one class shares one
    /// budget per key, however many routes it is applied to.
    pub fn layer(&self, class: RateClass) -> RateLimitLayer<B> {
        RateLimitLayer {
            shared: Arc::new(LayerShared {
                handle: self.backend.register(&class),
                policy: policy_header(&class, class.quota()),
                states: state_headers(&class),
                class,
                limits: self.clone(),
            }),
        }
    }
}

impl<B: RateLimitBackend + fmt::Debug> fmt::Debug for RateLimits<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimits")
            .field("backend", &self.backend)
            .field("client_ip", &self.client_ip)
            .field("headers", &self.headers)
            .field("backend_timeout", &self.backend_timeout)
            .field("on_backend_error", &self.on_backend_error)
            .finish_non_exhaustive()
    }
}

fn policy_header(class: &RateClass, quota: Quota) -> HeaderValue {
    let value = format!(
        "\"{}\";q={};w={}",
        class.name(),
        quota.requests(),
        quota.window().as_secs()
    );
    // Class names are validated to a-z 0-9 _ -, so this is always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Formatted per request for quotas above [`PRECOMPUTED_STATES`], so on the stack: the longest
/// value (32-character name, `u32` remaining, `u64` seconds) is 70 bytes.
fn state_header(class: &RateClass, remaining: u32, reset_after: Duration) -> Option<HeaderValue> {
    use std::io::Write;
    let mut buffer = [0u8; 80];
    let capacity = buffer.len();
    let mut rest = &mut buffer[..];
    write!(
        rest,
        "\"{}\";r={};t={}",
        class.name(),
        remaining,
        // Saturating: a custom backend may report any `Duration`, up to `Duration::MAX`.
        reset_after
            .as_secs()
            .saturating_add(u64::from(reset_after.subsec_nanos() > 0))
    )
    .ok()?;
    let written = capacity - rest.len();
    HeaderValue::from_bytes(&buffer[..written]).ok()
}

/// Quotas up to this many requests get their `RateLimit` values made once, at start.
const PRECOMPUTED_STATES: u32 = 4096;

/// The `RateLimit` value of an allowed request for each `remaining`, under the class's own
/// quota, when the reset time follows from it (`(quota - remaining)` request periods).
fn state_headers(class: &RateClass) -> Vec<HeaderValue> {
    let quota = class.quota();
    let requests = quota.requests().get();
    if requests > PRECOMPUTED_STATES {
        return Vec::new();
    }
    let period = quota.interval();
    (0..=requests)
        .map_while(|remaining| state_header(class, remaining, period * (requests - remaining)))
        .collect()
}

/// Limits requests of one [`RateClass`]; made by [`RateLimits::layer`].
#[must_use]
pub struct RateLimitLayer<B: RateLimitBackend> {
    shared: Arc<LayerShared<B>>,
}

struct LayerShared<B: RateLimitBackend> {
    class: RateClass,
    handle: B::Class,
    policy: HeaderValue,
    /// `RateLimit` values by remaining count, for allowed requests under the class quota.
    states: Vec<HeaderValue>,
    limits: RateLimits<B>,
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
    /// The inner service.
    pub fn get_ref(&self) -> &Svc {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut Svc {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> Svc {
        self.inner
    }
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

/// An owned [`LimitKey`], for the asynchronous path.
enum OwnedKey {
    ApiKey(KeyId),
    ClientIp(IpAddr),
}

impl OwnedKey {
    fn borrow(&self) -> LimitKey<'_> {
        match self {
            OwnedKey::ApiKey(id) => LimitKey::ApiKey(id),
            OwnedKey::ClientIp(ip) => LimitKey::ClientIp(*ip),
        }
    }
}

impl<'a> From<LimitKey<'a>> for OwnedKey {
    fn from(key: LimitKey<'a>) -> Self {
        match key {
            LimitKey::ApiKey(id) => OwnedKey::ApiKey(id.clone()),
            LimitKey::ClientIp(ip) => OwnedKey::ClientIp(ip),
        }
    }
}

type BoxCheck = Pin<Box<dyn Future<Output = Result<Decision, BackendError>> + Send>>;

impl<B: RateLimitBackend> LayerShared<B> {
    /// Who the request counts against, and under which quota.
    fn subject<'r, T>(
        &self,
        request: &'r Request<T>,
    ) -> Result<(LimitKey<'r>, Quota), AuthRejection> {
        match self.class.keyed_by() {
            KeyedBy::ApiKey => {
                let principal = request
                    .extensions()
                    .get::<Principal>()
                    .ok_or(AuthRejection::MissingLayer("AuthLayer"))?;
                let quota = principal
                    .quota_override(self.class.name())
                    .unwrap_or(self.class.quota());
                Ok((LimitKey::ApiKey(principal.key_id()), quota))
            }
            KeyedBy::ClientIp => {
                let ip = self
                    .limits
                    .client_ip
                    .resolve(request.headers(), request.extensions())?;
                Ok((LimitKey::ClientIp(limiter_key(ip)), self.class.quota()))
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
        let requests = quota.requests().get();
        let used = requests.saturating_sub(decision.remaining());
        let precomputed = decision
            .is_allowed()
            .then(|| self.states.get(decision.remaining() as usize))
            .flatten()
            .filter(|_| decision.reset_after() == quota.interval() * used);
        let state = match precomputed {
            Some(state) => state.clone(),
            None => state_header(&self.class, decision.remaining(), decision.reset_after())?,
        };
        Some([self.policy.clone(), state])
    }

    fn boxed_check(self: &Arc<Self>, key: OwnedKey, quota: Quota) -> BoxCheck {
        let shared = Arc::clone(self);
        Box::pin(async move {
            let check = shared
                .limits
                .backend
                .check(&shared.handle, key.borrow(), quota);
            match AssertUnwindSafe(tokio::time::timeout(shared.limits.backend_timeout, check))
                .catch_unwind()
                .await
            {
                Ok(Ok(result)) => result,
                Ok(Err(_elapsed)) => Err(BackendError::new("rate-limit backend timed out")),
                Err(_panic) => Err(BackendError::new("rate-limit backend panicked")),
            }
        })
    }
}

/// What happens to the request after the decision.
enum Outcome {
    Call(Option<[HeaderValue; 2]>),
    Reject(AuthRejection, Option<[HeaderValue; 2]>),
}

impl<B: RateLimitBackend> LayerShared<B> {
    fn outcome(&self, result: Result<Decision, BackendError>) -> Outcome {
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

    fn reject(
        &self,
        rejection: AuthRejection,
        headers: Option<[HeaderValue; 2]>,
        request_headers: &HeaderMap,
    ) -> Response<Bytes> {
        let mut response = respond(&*self.limits.renderer, rejection, request_headers);
        add_headers(response.headers_mut(), headers);
        response
    }
}

fn add_headers(headers: &mut HeaderMap, values: Option<[HeaderValue; 2]>) {
    if let Some([policy, state]) = values {
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(RATELIMIT, state);
    }
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
        let answered = match shared.subject(&request) {
            Err(rejection) => Ok(Outcome::Reject(rejection, None)),
            Ok((key, quota)) => {
                let backend = &shared.limits.backend;
                let now = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    backend.check_now(&shared.handle, key, quota)
                }))
                .unwrap_or_else(|_| Some(Err(BackendError::new("rate-limit backend panicked"))));
                match now {
                    Some(result) => Ok(shared.outcome(result)),
                    None => Err((OwnedKey::from(key), quota)),
                }
            }
        };
        match answered {
            Ok(Outcome::Call(headers)) => ResponseFuture::inner(self.inner.call(request), headers),
            Ok(Outcome::Reject(rejection, headers)) => {
                ResponseFuture::rejected(shared.reject(rejection, headers, request.headers()))
            }
            Err((key, quota)) => {
                let check = shared.boxed_check(key, quota);
                let inner = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, inner);
                ResponseFuture::checking(check, inner, request, Arc::clone(shared))
            }
        }
    }
}

pin_project! {
    /// Response future of [`RateLimitService`].
    pub struct ResponseFuture<Svc, B, ReqBody>
    where
        Svc: Service<Request<ReqBody>>,
        B: RateLimitBackend,
    {
        #[pin]
        state: State<Svc, B, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Svc, B, ReqBody>
    where
        Svc: Service<Request<ReqBody>>,
        B: RateLimitBackend,
    {
        // Boxed: the common states stay small, so the future is cheap to move.
        Checking {
            check: BoxCheck,
            pending: Option<Box<(Svc, Request<ReqBody>, Arc<LayerShared<B>>)>>,
        },
        Inner {
            #[pin]
            future: Svc::Future,
            headers: Option<[HeaderValue; 2]>,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<Svc, B, ReqBody> ResponseFuture<Svc, B, ReqBody>
where
    Svc: Service<Request<ReqBody>>,
    B: RateLimitBackend,
{
    fn inner(future: Svc::Future, headers: Option<[HeaderValue; 2]>) -> Self {
        Self {
            state: State::Inner { future, headers },
        }
    }

    fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    fn checking(
        check: BoxCheck,
        inner: Svc,
        request: Request<ReqBody>,
        shared: Arc<LayerShared<B>>,
    ) -> Self {
        Self {
            state: State::Checking {
                check,
                pending: Some(Box::new((inner, request, shared))),
            },
        }
    }
}

impl<Svc, B, ReqBody, ResBody> Future for ResponseFuture<Svc, B, ReqBody>
where
    Svc: Service<Request<ReqBody>, Response = Response<ResBody>>,
    B: RateLimitBackend,
{
    type Output = Result<Response<ResponseBody<ResBody>>, Svc::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Checking { check, pending } => {
                    let result = ready!(check.as_mut().poll(cx));
                    let (mut inner, request, shared) = *pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    match shared.outcome(result) {
                        Outcome::Call(headers) => {
                            let future = inner.call(request);
                            state.set(State::Inner { future, headers });
                        }
                        Outcome::Reject(rejection, headers) => {
                            let response = shared.reject(rejection, headers, request.headers());
                            return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                        }
                    }
                }
                StateProj::Inner { future, headers } => {
                    let mut response = ready!(future.poll(cx))?;
                    add_headers(response.headers_mut(), headers.take());
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::rate_limit::ClassName;

    #[test]
    fn longest_rate_limit_value_fits_the_stack_buffer() {
        let name = "abcdefghijklmnopqrstuvwxyz-0_123";
        let quota = Quota::new(NonZeroU32::MIN, NonZeroU32::MIN);
        let class = RateClass::per_key(ClassName::from_static(name), quota);
        let value = state_header(&class, u32::MAX, Duration::MAX).expect("formatted");
        assert_eq!(
            value.to_str().unwrap(),
            format!("\"{name}\";r={};t={}", u32::MAX, u64::MAX)
        );
    }
}

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::backend::{BackendError, Decision, LimitKey, RateLimitBackend};
use super::client_ip::{client_ip_of, limiter_key};
use super::gcra::GovernorBackend;
use super::{KeyedBy, Quota, RateClass};
use crate::body::ResponseBody;
use crate::future::{caught, decided, deferred, guarded, Deferred, Gate, Unanswered};
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
            headers: true,
            backend_timeout: Duration::from_secs(1),
            on_backend_error: OnBackendError::default(),
            renderer: Arc::new(DefaultRenderer),
        }
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

pub(crate) struct LayerShared<B: RateLimitBackend> {
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
                let ip = client_ip_of(request.headers(), request.extensions())?;
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

    /// The asynchronous check, boxed, under the timeout, with panics caught.
    fn check_later(self: Arc<Self>, key: OwnedKey, quota: Quota) -> Deferred<Outcome> {
        Box::pin(async move {
            let check = self.limits.backend.check(&self.handle, key.borrow(), quota);
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

fn add_headers(headers: &mut HeaderMap, values: Option<[HeaderValue; 2]>) {
    if let Some([policy, state]) = values {
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(RATELIMIT, state);
    }
}

/// Decides on the outcome: call with the headers, or answer with the rejection.
impl<B: RateLimitBackend, T> Gate<Request<T>> for LayerShared<B> {
    type Verdict = Outcome;
    type After = Option<[HeaderValue; 2]>;

    #[allow(clippy::result_large_err)]
    fn decide(
        self: &Arc<Self>,
        outcome: Outcome,
        request: &mut Request<T>,
    ) -> Result<Self::After, Response<Bytes>> {
        match outcome {
            Outcome::Call(headers) => Ok(headers),
            Outcome::Reject(rejection, headers) => {
                let mut response = respond(&*self.limits.renderer, rejection, request.headers());
                add_headers(response.headers_mut(), headers);
                Err(response)
            }
        }
    }

    fn finish<R>(headers: Self::After, response: &mut Response<R>) {
        add_headers(response.headers_mut(), headers);
    }
}

crate::future::response_future! {
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
                match caught(|| backend.check_now(&shared.handle, key, quota)) {
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

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{FailureGate, FailureLimit};
use crate::body::ResponseBody;
use crate::rate_limit::RateLimitBackend;
use crate::reject::{respond, AuthRejection, DefaultRenderer, InvalidKeyReason, RenderRejection};
use crate::support::gate::{decided, Gate};
use crate::support::wiring::OutsideAuth;

/// Limits failed authentications per client address; put it outside the
/// [`AuthLayer`](crate::AuthLayer).
///
/// An address that has spent its budget of refused credentials gets 429 with
/// `Retry-After` before the authentication layer parses anything or asks the store. The
/// budget is spent when a response comes back as a 401 for a credential that was sent
/// (malformed, unknown, revoked, expired; not a missing one, and never a store outage).
///
/// Every request needs its client address (a [`ClientIpLayer`](crate::client_ip::ClientIpLayer)
/// in front, axum `ConnectInfo` or a [`ClientAddr`](crate::client_ip::ClientAddr)); a request
/// without one gets 500, never a shared bucket.
///
/// ```
/// use std::sync::Arc;
/// use tower::ServiceBuilder;
/// use tower_api_key::failure_limit::{FailureLimit, FailureLimitLayer};
/// use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore};
///
/// let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
/// let stack = ServiceBuilder::new()
///     .layer(FailureLimitLayer::new(FailureLimit::default())) // 20 refusals/min/address
///     .layer(AuthLayer::new(store));
/// ```
#[derive(Clone)]
#[must_use]
pub struct FailureLimitLayer {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    limit: Arc<dyn FailureGate>,
    renderer: Arc<dyn RenderRejection>,
    wiring: OutsideAuth,
}

fn wiring() -> OutsideAuth {
    OutsideAuth::new(
        "FailureLimitLayer",
        "it never sees a refused credential, so it limits nothing",
    )
}

impl FailureLimitLayer {
    /// Limits with `limit` (its state is shared by every clone of it).
    pub fn new<B: RateLimitBackend>(limit: FailureLimit<B>) -> Self {
        Self {
            shared: Arc::new(Shared {
                limit: limit.shared,
                renderer: Arc::new(DefaultRenderer),
                wiring: wiring(),
            }),
        }
    }

    /// How its 429s are rendered (default: [`DefaultRenderer`]).
    pub fn renderer(self, renderer: impl RenderRejection) -> Self {
        Self {
            shared: Arc::new(Shared {
                limit: Arc::clone(&self.shared.limit),
                renderer: Arc::new(renderer),
                wiring: wiring(),
            }),
        }
    }
}

impl fmt::Debug for FailureLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimitLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for FailureLimitLayer {
    type Service = FailureLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FailureLimitService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B> Gate<Request<B>> for Shared {
    type Verdict = Result<IpAddr, AuthRejection>;
    type After = (Arc<Shared>, IpAddr);

    fn decide(
        self: &Arc<Self>,
        admitted: Self::Verdict,
        request: &mut Request<B>,
    ) -> Result<Self::After, Response<Bytes>> {
        match admitted {
            Ok(client) => Ok((Arc::clone(self), client)),
            Err(rejection) => {
                if rejection.kind() == crate::reject::RejectionKind::RateLimited {
                    crate::metrics::counted(crate::metrics::FAILED_AUTH_BLOCKS);
                }
                Err(respond(&*self.renderer, rejection, request.headers()))
            }
        }
    }

    fn finish<R>((shared, client): Self::After, response: &mut Response<R>) {
        if let Some(AuthRejection::InvalidApiKey { reason, .. }) = response.extensions().get() {
            if *reason != InvalidKeyReason::Missing {
                Arc::clone(&shared.limit).record_failure(client);
            }
        }
    }
}

/// The service [`FailureLimitLayer`] wraps around the inner service.
#[derive(Clone)]
pub struct FailureLimitService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> FailureLimitService<S> {
    crate::support::gate::inner_service_accessors!(S);
}

impl<S: fmt::Debug> fmt::Debug for FailureLimitService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimitService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

crate::support::gate::response_future! {
    /// Response future of [`FailureLimitService`].
    ResponseFuture<S, ReqBody>, Request<ReqBody>, Shared
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for FailureLimitService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        self.shared.wiring.check(request.extensions());
        let admitted = self
            .shared
            .limit
            .admit(request.headers(), request.extensions());
        ResponseFuture::new(decided(&self.shared, &mut self.inner, request, admitted))
    }
}

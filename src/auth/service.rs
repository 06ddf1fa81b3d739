use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::span::{entered, request_span};
use super::verify::Config;
use crate::body::ResponseBody;
use crate::store::{KeyStore, StoreError, StoreErrorKind};
use crate::support::gate::{caught, decided, deferred, GateFuture};

/// The service [`AuthLayer`](super::AuthLayer) wraps around the inner service.
pub struct AuthService<S, St: KeyStore> {
    inner: S,
    config: Arc<Config<St>>,
}

impl<S, St: KeyStore> AuthService<S, St> {
    pub(super) fn new(inner: S, config: Arc<Config<St>>) -> Self {
        Self { inner, config }
    }

    crate::support::gate::inner_service_accessors!(S);
}

impl<S: Clone, St: KeyStore> Clone for AuthService<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, St: KeyStore> fmt::Debug for AuthService<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    St: KeyStore,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, St, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let span = request_span();
        let future = {
            let _entered = entered(&span);
            self.gate(request)
        };
        ResponseFuture::new(future, span)
    }
}

impl<S, St: KeyStore> AuthService<S, St> {
    /// Steps 1 to 6, inside the request's span.
    #[inline]
    fn gate<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
    ) -> GateFuture<S, Request<ReqBody>, Config<St>>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    {
        let config = &self.config;
        let prepared = match config.prepare(request.headers()) {
            Ok(prepared) => prepared,
            Err(rejection) => return decided(config, &mut self.inner, request, Err(rejection)),
        };
        match caught(|| config.lookup_now(&prepared)) {
            Ok(Some(found)) => {
                let verdict = config.verify(found, &prepared);
                decided(config, &mut self.inner, request, verdict)
            }
            Ok(None) => {
                let lookup = Arc::clone(config).lookup(prepared);
                deferred(config, &mut self.inner, request, lookup)
            }
            Err(_panicked) => {
                let verdict =
                    config.verify(Err(StoreError::bare(StoreErrorKind::Panicked)), &prepared);
                decided(config, &mut self.inner, request, verdict)
            }
        }
    }
}

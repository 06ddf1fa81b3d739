use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::span::{entered, RequestSpan};
use super::verify::Config;
use crate::body::ResponseBody;
use crate::store::KeyStore;
use crate::support::gate::GateFuture;

pin_project! {
    /// Response future of [`AuthService`](super::AuthService).
    ///
    /// When the store answers at once ([`KeyStore::lookup_now`]) this is the inner
    /// service's future or a ready rejection: nothing boxed. With feature `tracing` it
    /// polls inside the request's span ([`request_span`](super::span::request_span)).
    pub struct ResponseFuture<S, St, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        St: KeyStore,
    {
        #[pin]
        inner: GateFuture<S, Request<ReqBody>, Config<St>>,
        span: RequestSpan,
    }
}

impl<S, St, ReqBody> ResponseFuture<S, St, ReqBody>
where
    S: Service<Request<ReqBody>>,
    St: KeyStore,
{
    pub(crate) fn new(
        inner: GateFuture<S, Request<ReqBody>, Config<St>>,
        span: RequestSpan,
    ) -> Self {
        Self { inner, span }
    }
}

impl<S, St, ReqBody, ResBody> Future for ResponseFuture<S, St, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: KeyStore,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = entered(this.span);
        this.inner.poll(cx)
    }
}

//! [`ForwardAuth`]: the service [`ForwardAuthLayer`](super::ForwardAuthLayer) makes.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::future::ResponseFuture;
use super::layer::Config;
use crate::body::ResponseBody;
use crate::reject::{DefaultRenderer, RenderRejection};

/// Restores the original request, calls the stack, and answers the proxy: 200 with the
/// principal's headers when the stack allowed it, the stack's refusal otherwise.
#[derive(Clone, Debug)]
pub struct ForwardAuth<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> ForwardAuth<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ForwardAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.config.original.restore(&mut request) {
            Ok(()) => ResponseFuture::called(self.inner.call(request), Arc::clone(&self.config)),
            Err(rejection) => {
                let response = DefaultRenderer.render(&rejection, request.headers());
                ResponseFuture::answered(response.map(ResponseBody::rejection))
            }
        }
    }
}

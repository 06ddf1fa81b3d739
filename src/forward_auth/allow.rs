//! [`Allow`]: the handler of every route of a forward-auth route table.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use tower::Service;

use crate::principal::Principal;

/// Answers `200` with an empty body, and the request's [`Principal`] (if any) in the
/// response's extensions, where [`ForwardAuth`](super::ForwardAuth) reads it: put it
/// behind the layers a route needs, as the route's handler.
#[derive(Clone, Copy, Debug, Default)]
pub struct Allow;

impl<B> Service<Request<B>> for Allow {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut response = Response::new(Empty::new());
        if let Some(principal) = request.extensions().get::<Principal>() {
            response.extensions_mut().insert(principal.clone());
        }
        ready(Ok(response))
    }
}

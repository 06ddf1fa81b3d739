use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::config::Shared;
use super::future::ResponseFuture;
use super::{ActivityEvent, ActivityTicket, PendingActivity};
use crate::body::ResponseBody;
use crate::client_ip::client_ip_of;
use crate::support::gate::decided;

/// The service [`ActivityLayer`](super::ActivityLayer) wraps around the inner service.
#[derive(Clone)]
pub struct ActivityService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ActivityService<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    crate::support::gate::inner_service_accessors!(S);
}

impl<S: fmt::Debug> fmt::Debug for ActivityService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ActivityService<S>
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

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        self.shared.wiring.check(request.extensions());
        let pending = self.shared.sink().map(|sink| {
            let ticket = ActivityTicket::default();
            request.extensions_mut().insert(ticket.clone());
            let client = client_ip_of(request.headers(), request.extensions()).ok();
            let event = ActivityEvent::arrived(
                request.method(),
                request.uri().path(),
                client,
                self.shared.clock.now(),
            );
            Box::new(PendingActivity {
                event,
                sink,
                ticket,
            })
        });
        ResponseFuture::new(decided(&self.shared, &mut self.inner, request, pending))
    }
}

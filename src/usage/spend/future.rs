//! [`ResponseFuture`] of [`SpendCapService`](super::SpendCapService): the shared gate, then,
//! when the request reserved more than it spent, the refund before the response is
//! returned (so the next request of the same budget sees it).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::charge::{Admitted, Shared};
use super::SPEND_CAP;
use crate::body::ResponseBody;
use crate::support::gate::{Deferred, GateFuture};
use crate::usage::backend::UsageBackend;

pin_project! {
    /// Response future of [`SpendCapService`](super::SpendCapService).
    pub struct ResponseFuture<S, B, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
        B: UsageBackend,
    {
        #[pin]
        gate: GateFuture<S, Request<ReqBody>, Shared<B>>,
        // Boxed: rare, and the future stays small to move.
        recording: Option<Box<(Deferred<Option<HeaderValue>>, Response<ResponseBody<ResBody>>)>>,
    }
}

impl<S, B, ReqBody, ResBody> ResponseFuture<S, B, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
    B: UsageBackend,
{
    pub(super) fn new(gate: GateFuture<S, Request<ReqBody>, Shared<B>>) -> Self {
        Self {
            gate,
            recording: None,
        }
    }
}

impl<S, B, ReqBody, ResBody> Future for ResponseFuture<S, B, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    B: UsageBackend,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(recording) = this.recording {
            let header = ready!(recording.0.as_mut().poll(cx));
            let (_, mut response) = *this.recording.take().expect("checked above");
            set_header(&mut response, header);
            return Poll::Ready(Ok(response));
        }
        let mut response = ready!(this.gate.poll(cx))?;
        let Some(admitted) = response.extensions_mut().remove::<Admitted<B>>() else {
            return Poll::Ready(Ok(response));
        };
        match admitted.settle() {
            Ok(header) => {
                set_header(&mut response, header);
                Poll::Ready(Ok(response))
            }
            Err(mut recording) => match recording.as_mut().poll(cx) {
                Poll::Ready(header) => {
                    set_header(&mut response, header);
                    Poll::Ready(Ok(response))
                }
                Poll::Pending => {
                    *this.recording = Some(Box::new((recording, response)));
                    Poll::Pending
                }
            },
        }
    }
}

fn set_header<T>(response: &mut Response<T>, header: Option<HeaderValue>) {
    if let Some(header) = header {
        response.headers_mut().insert(SPEND_CAP, header);
    }
}

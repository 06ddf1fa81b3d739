use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{BoxLookup, Config};
use crate::activity::PendingActivity;
use crate::body::ResponseBody;
use crate::store::KeyStore;

pin_project! {
    /// Response future of [`AuthService`](super::AuthService).
    ///
    /// When the store answers at once ([`KeyStore::lookup_now`]) this is the inner
    /// service's future or a ready rejection: nothing boxed.
    pub struct ResponseFuture<S, St, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        St: KeyStore,
    {
        #[pin]
        state: State<S, St, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, St, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        St: KeyStore,
    {
        // Boxed: the common states stay small, so the future is cheap to move.
        Lookup {
            lookup: BoxLookup<St::Scope>,
            pending: Option<Box<Pending<S, St, ReqBody>>>,
        },
        Inner {
            #[pin]
            future: S::Future,
            // Boxed, and `None` unless someone listens for activity.
            activity: Option<Box<PendingActivity>>,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

struct Pending<S, St: KeyStore, ReqBody> {
    inner: S,
    request: Request<ReqBody>,
    source: usize,
    config: Arc<Config<St>>,
}

impl<S, St, ReqBody> ResponseFuture<S, St, ReqBody>
where
    S: Service<Request<ReqBody>>,
    St: KeyStore,
{
    pub(super) fn inner(future: S::Future, activity: Option<Box<PendingActivity>>) -> Self {
        Self {
            state: State::Inner { future, activity },
        }
    }

    pub(super) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn lookup(
        lookup: BoxLookup<St::Scope>,
        inner: S,
        request: Request<ReqBody>,
        source: usize,
        config: Arc<Config<St>>,
    ) -> Self {
        Self {
            state: State::Lookup {
                lookup,
                pending: Some(Box::new(Pending {
                    inner,
                    request,
                    source,
                    config,
                })),
            },
        }
    }
}

impl<S, St, ReqBody, ResBody> Future for ResponseFuture<S, St, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: KeyStore,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Lookup { lookup, pending } => {
                    let verdict = ready!(lookup.as_mut().poll(cx));
                    let Pending {
                        mut inner,
                        mut request,
                        source,
                        config,
                    } = *pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    match verdict {
                        Ok(record) => {
                            let activity = config.admit(&mut request, record, source);
                            let future = inner.call(request);
                            state.set(State::Inner { future, activity });
                        }
                        Err(rejection) => {
                            let response = config.reject(rejection, &request);
                            return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                        }
                    }
                }
                StateProj::Inner { future, activity } => {
                    let response = ready!(future.poll(cx))?;
                    if let Some(mut activity) = activity.take() {
                        activity.answered(&response);
                    } // Emitted here, as it drops.
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

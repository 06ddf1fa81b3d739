//! The response future every layer of the crate shares: a gate that lets the request
//! through (now, or once a deferred check answers) or answers with a rejection itself.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, Layer, ServiceExt};
//! use tower_api_key::{require, ForgScope};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Without the authentication layer in front, the requirement answers 500 at once and the
//! // inner service is never called.
//! let inner = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//! let response = require(ForgScope::ReadRules).layer(inner).oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
//! # }
//! ```
//!
//! The logic written once here: answer at once when the decision is at hand (no box, no
//! timer), otherwise box the check under a timeout with panics caught, so that a slow,
//! failing or panicking backend, or a runtime without timers, fails closed instead of
//! taking the task down.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::Response;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::ResponseBody;

/// A boxed deferred check.
pub(crate) type Deferred<V> = Pin<Box<dyn Future<Output = V> + Send>>;

/// Why a guarded check gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unanswered {
    TimedOut,
    Panicked,
}

/// `check` under `limit`, with panics caught. The timer is made inside the guard: on a
/// runtime without timers its panic is caught too, and the request fails closed.
pub(crate) async fn guarded<T>(
    limit: Duration,
    check: impl Future<Output = T>,
) -> Result<T, Unanswered> {
    match AssertUnwindSafe(async move { tokio::time::timeout(limit, check).await })
        .catch_unwind()
        .await
    {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_elapsed)) => Err(Unanswered::TimedOut),
        Err(_panic) => Err(Unanswered::Panicked),
    }
}

/// `check()` with panics caught: a synchronous check that panics is a failure, not a crash.
pub(crate) fn caught<T>(check: impl FnOnce() -> T) -> Result<T, Unanswered> {
    std::panic::catch_unwind(AssertUnwindSafe(check)).map_err(|_| Unanswered::Panicked)
}

/// What a layer decides, given the answer of its check.
pub(crate) trait Gate<Req>: Send + Sync + 'static {
    /// What a check answers.
    type Verdict;
    /// What the layer keeps until the inner service answers.
    type After;

    /// Lets `request` through (changing it as needed) or answers instead.
    // A rejection is moved once into the future; boxing it would allocate per refusal
    // (`clippy::result_large_err` is allowed for this in `Cargo.toml`).
    fn decide(
        self: &Arc<Self>,
        verdict: Self::Verdict,
        request: &mut Req,
    ) -> Result<Self::After, Response<Bytes>>;

    /// Adjusts the inner service's response.
    fn finish<B>(after: Self::After, response: &mut Response<B>);
}

/// `verdict` decided for `request` now: the inner service's future, or the rejection.
// Inlined so that the request is moved once, into the inner service, not through a frame.
#[inline]
pub(crate) fn decided<S, Req, G>(
    gate: &Arc<G>,
    inner: &mut S,
    mut request: Req,
    verdict: G::Verdict,
) -> GateFuture<S, Req, G>
where
    S: Service<Req>,
    G: Gate<Req>,
{
    match gate.decide(verdict, &mut request) {
        Ok(after) => GateFuture::inner(inner.call(request), after),
        Err(response) => GateFuture::rejected(response),
    }
}

/// Decides once `verdict` answers. The ready inner service goes into the future and the
/// layer keeps a fresh clone, as tower's `poll_ready` contract requires.
pub(crate) fn deferred<S, Req, G>(
    gate: &Arc<G>,
    inner: &mut S,
    request: Req,
    verdict: Deferred<G::Verdict>,
) -> GateFuture<S, Req, G>
where
    S: Service<Req> + Clone,
    G: Gate<Req>,
{
    let fresh = inner.clone();
    let ready = std::mem::replace(inner, fresh);
    GateFuture {
        state: State::Deciding {
            verdict,
            pending: Some(Box::new((ready, request, Arc::clone(gate)))),
        },
    }
}

pin_project! {
    /// The shared response future; each layer wraps it in a `ResponseFuture` of its own.
    pub(crate) struct GateFuture<S, Req, G>
    where
        S: Service<Req>,
        G: Gate<Req>,
    {
        #[pin]
        state: State<S, Req, G>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, G>
    where
        S: Service<Req>,
        G: Gate<Req>,
    {
        // Boxed: the common states stay small, so the future is cheap to move.
        Deciding {
            verdict: Deferred<G::Verdict>,
            pending: Option<Box<(S, Req, Arc<G>)>>,
        },
        Inner {
            #[pin]
            future: S::Future,
            after: Option<G::After>,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, Req, G> GateFuture<S, Req, G>
where
    S: Service<Req>,
    G: Gate<Req>,
{
    #[inline]
    fn inner(future: S::Future, after: G::After) -> Self {
        Self {
            state: State::Inner {
                future,
                after: Some(after),
            },
        }
    }

    pub(crate) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<S, Req, G, B> Future for GateFuture<S, Req, G>
where
    S: Service<Req, Response = Response<B>>,
    G: Gate<Req>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Deciding { verdict, pending } => {
                    let verdict = ready!(verdict.as_mut().poll(cx));
                    let (mut inner, mut request, gate) = *pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    match gate.decide(verdict, &mut request) {
                        Ok(after) => {
                            let future = inner.call(request);
                            state.set(State::Inner {
                                future,
                                after: Some(after),
                            });
                        }
                        Err(response) => {
                            return Poll::Ready(Ok(response.map(ResponseBody::rejection)))
                        }
                    }
                }
                StateProj::Inner { future, after } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(after) = after.take() {
                        G::finish(after, &mut response);
                    }
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

/// Declares a layer's public `ResponseFuture` around [`GateFuture`], so that the gate type
/// stays private.
macro_rules! response_future {
    (
        $(#[$doc:meta])*
        $name:ident<$($param:ident),*>, $req:ty, $gate:ty
        $(where $($bound:tt)*)?
    ) => {
        pin_project_lite::pin_project! {
            $(#[$doc])*
            pub struct $name<$($param),*>
            where
                S: tower_service::Service<$req>,
                $($($bound)*)?
            {
                #[pin]
                inner: $crate::support::gate::GateFuture<S, $req, $gate>,
            }
        }

        impl<$($param),*> $name<$($param),*>
        where
            S: tower_service::Service<$req>,
            $($($bound)*)?
        {
            pub(crate) fn new(inner: $crate::support::gate::GateFuture<S, $req, $gate>) -> Self {
                Self { inner }
            }
        }

        impl<$($param,)* ResBody> std::future::Future for $name<$($param),*>
        where
            S: tower_service::Service<$req, Response = http::Response<ResBody>>,
            $($($bound)*)?
        {
            type Output = Result<http::Response<$crate::body::ResponseBody<ResBody>>, S::Error>;

            #[inline]
            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                self.project().inner.poll(cx)
            }
        }
    };
}
pub(crate) use response_future;

/// `get_ref`, `get_mut` and `into_inner` for a service whose inner service is the field
/// `inner` of type `$inner` (tower-http's accessors).
macro_rules! inner_service_accessors {
    ($inner:ident) => {
        /// The inner service.
        pub fn get_ref(&self) -> &$inner {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut $inner {
            &mut self.inner
        }

        /// The inner service, consuming this one.
        pub fn into_inner(self) -> $inner {
            self.inner
        }
    };
}
pub(crate) use inner_service_accessors;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{ActivityEvent, ActivityObserver, ActivitySink, PendingActivity};
use crate::body::ResponseBody;
use crate::client_ip::client_ip_of;
use crate::clock::{Clock, SystemClock};
use crate::gate::{decided, Gate};
use crate::key::Environment;
use crate::principal::CredentialKind;
use crate::store::KeyId;
use crate::wiring::OutsideAuth;

/// Set by the layers inside as the request passes, so that the activity layer outside
/// learns what they found: the key id (the authentication layer, when it verifies a
/// credential) and what the request was charged (the spend-cap layer). Present only when
/// an activity layer is; one allocation per request, made by that layer.
#[derive(Clone, Default)]
pub(crate) struct ActivityTicket(Arc<Ticket>);

#[derive(Default)]
pub(crate) struct Ticket {
    credential: OnceLock<Verified>,
    spent: AtomicU64,
}

impl ActivityTicket {
    /// The verified credential (its id and owner shared, not copied).
    pub(crate) fn authenticated(&self, verified: Verified) {
        let _first_wins = self.0.credential.set(verified);
    }

    pub(crate) fn credential(&self) -> Option<&Verified> {
        self.0.credential.get()
    }

    /// The request was charged `amount` (stacked spend-cap layers add up).
    pub(crate) fn charged(&self, amount: u64) {
        self.0.spent.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn spent(&self) -> u64 {
        self.0.spent.load(Ordering::Relaxed)
    }
}

/// What the authentication layer verified, for the event.
pub(crate) struct Verified {
    pub(crate) id: KeyId,
    pub(crate) owner: Arc<str>,
    pub(crate) kind: CredentialKind,
    pub(crate) environment: Environment,
}

/// Reports every request's [`ActivityEvent`]; see the [module docs](super). Put it
/// outside the [`AuthLayer`](crate::AuthLayer).
#[derive(Clone)]
#[must_use]
pub struct ActivityLayer {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    observer: Option<Arc<dyn ActivityObserver>>,
    clock: Arc<dyn Clock>,
    wiring: OutsideAuth,
}

fn wiring() -> OutsideAuth {
    OutsideAuth::new(
        "ActivityLayer",
        "it never sees a refused request, and reports only what the AuthLayer let through",
    )
}

impl ActivityLayer {
    /// Calls `observer` once per request with its outcome (and emits `tracing` events when
    /// the `tracing` feature is on and the target listens).
    pub fn new(observer: impl ActivityObserver) -> Self {
        Self::with(Some(Arc::new(observer)))
    }

    /// Only the `tracing` events, on the target `tower_api_key::activity` (DEBUG).
    pub fn traced() -> Self {
        Self::with(None)
    }

    fn with(observer: Option<Arc<dyn ActivityObserver>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                observer,
                clock: Arc::new(SystemClock),
                wiring: wiring(),
            }),
        }
    }

    /// The clock events are stamped with (default: the system clock).
    pub fn clock(self, clock: impl Clock) -> Self {
        Self {
            shared: Arc::new(Shared {
                observer: self.shared.observer.clone(),
                clock: Arc::new(clock),
                wiring: wiring(),
            }),
        }
    }
}

impl fmt::Debug for ActivityLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityLayer")
            .field("observer", &self.shared.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ActivityLayer {
    type Service = ActivityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Shared {
    /// Where events go, when the observer or `tracing` listens.
    fn sink(&self) -> Option<ActivitySink> {
        #[cfg(feature = "tracing")]
        let traced = tracing::enabled!(target: "tower_api_key::activity", tracing::Level::DEBUG);
        #[cfg(not(feature = "tracing"))]
        let traced = false;
        (self.observer.is_some() || traced).then(|| ActivitySink {
            observer: self.observer.clone(),
            traced,
        })
    }
}

impl<B> Gate<Request<B>> for Shared {
    type Verdict = Option<Box<PendingActivity>>;
    type After = Option<Box<PendingActivity>>;

    #[allow(clippy::result_large_err)]
    fn decide(
        self: &Arc<Self>,
        pending: Self::Verdict,
        _: &mut Request<B>,
    ) -> Result<Self::After, Response<Bytes>> {
        Ok(pending)
    }

    fn finish<R>(pending: Self::After, response: &mut Response<R>) {
        if let Some(mut pending) = pending {
            pending.answered(response);
        } // Emitted here, as it drops.
    }
}

/// The service [`ActivityLayer`] wraps around the inner service.
#[derive(Clone)]
pub struct ActivityService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ActivityService<S> {
    crate::gate::inner_service_accessors!(S);
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

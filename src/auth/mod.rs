//! The authentication layer: header -> key -> digest -> record -> [`Principal`].
//!
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_api_key::{AuthLayer, ManageKeys, MemoryKeyStore, NewKey, Principal};
//! use tower_api_key::key::KeyFamily;
//! use tower_api_key::forg::ForgScope;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryKeyStore::new());
//! let issued = store
//!     .issue(NewKey::new("org_1", "demo", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
//!     .await
//!     .unwrap();
//!
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::new(store))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let who = req.extensions().get::<Principal>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("hello {}", who.owner())))
//!     }));
//!
//! let request = Request::get("/v1/rules")
//!     .header("authorization", format!("Bearer {}", issued.key().expose_secret()))
//!     .body(String::new())
//!     .unwrap();
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let anonymous = Request::get("/v1/rules").body(String::new()).unwrap();
//! assert_eq!(service.oneshot(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```
//!
//! # What the layer does
//! 1. Takes the one key from the configured [`CredentialSources`] (400 when ambiguous).
//! 2. Parses it against the store's accepted [`KeyFamilies`](crate::key::KeyFamilies)
//!    (401 when malformed: nothing hashed).
//! 3. Refuses a refused environment (403 `environment_not_allowed`: nothing hashed).
//! 4. Hashes it with the store's [`KeyHasher`](crate::key::KeyHasher) and asks the store:
//!    first [`KeyStore::lookup_now`], then [`KeyStore::lookup`] under a timeout (2 s by
//!    default). A failure, timeout or panic of the store is a 503; the inner service is
//!    not called.
//! 5. Compares the record's digest in constant time and checks revocation, expiry and
//!    environment (401, one body for all).
//! 6. Marks the key headers sensitive (or strips them), puts the [`Principal`] and the
//!    typed [`ScopeSet`] in the request's extensions and calls the inner service.
//!
//! The asynchronous lookup uses Tokio's timer: run it on a Tokio runtime with time enabled
//! (axum, hyper-util and tonic do). Without one, lookups fail closed (503).

mod future;

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Extensions, HeaderMap, Request, Response};
use subtle::{Choice, ConstantTimeEq};
use tower_layer::Layer;
use tower_service::Service;

pub use future::ResponseFuture;

use crate::activity::{ActivityEvent, ActivityObserver, ActivitySink, PendingActivity};
use crate::body::ResponseBody;
use crate::credential::{CredentialError, CredentialSources};
use crate::key::{Environment, KeyDigest};
use crate::principal::Principal;
use crate::rate_limit::failures::FailureGate;
use crate::rate_limit::{ClientIp, FailureLimit};
use crate::reject::{
    respond, AuthRejection, DefaultRenderer, InvalidKeyReason, InvalidRequestReason,
    RenderRejection, RetryAfter, Unavailable,
};
use crate::scope::ScopeSet;
use crate::store::{
    KeyId, KeyRecord, KeyStatus, KeyStore, LookupResult, StoreError, StoreErrorKind,
};

type Verdict<Sc> = Result<Arc<KeyRecord<Sc>>, AuthRejection>;
type BoxLookup<Sc> = Pin<Box<dyn Future<Output = Verdict<Sc>> + Send>>;

/// Authenticates every request by API key; see the [module docs](self).
#[must_use]
pub struct AuthLayer<St: KeyStore> {
    config: Arc<Config<St>>,
}

impl<St: KeyStore> AuthLayer<St> {
    /// Authenticates against `store` with the defaults: both headers, every environment,
    /// 2 s lookup timeout, `Retry-After: 5` on 503, headers marked sensitive but kept,
    /// [`DefaultRenderer`]. Keys are parsed against the store's
    /// [`KeyPolicy`](crate::store::KeyPolicy) families, and expiry is read on its clock, so
    /// the layer accepts exactly what the store issues.
    pub fn new(store: Arc<St>) -> Self {
        Self {
            config: Arc::new(Config {
                store,
                sources: CredentialSources::default(),
                only_environment: None,
                lookup_timeout: Duration::from_secs(2),
                retry_after: RetryAfter::from_duration(Duration::from_secs(5)),
                strip_credentials: false,
                renderer: Arc::new(DefaultRenderer),
                failures: None,
                observer: None,
                client_ip: ClientIp::default(),
            }),
        }
    }

    fn config(&mut self) -> &mut Config<St> {
        Arc::make_mut(&mut self.config)
    }

    /// Where keys are read from (default: `Authorization: Bearer` and `X-ForgeOS-API-Key`).
    pub fn sources(mut self, sources: CredentialSources) -> Self {
        self.config().sources = sources;
        self
    }

    /// Accept keys of `environment` only; others get 403 `environment_not_allowed`
    /// before anything is hashed.
    pub fn only_environment(mut self, environment: Environment) -> Self {
        self.config().only_environment = Some(environment);
        self
    }

    /// How long an asynchronous store lookup may take before the request gets 503
    /// (default 2 s).
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.config().lookup_timeout = timeout;
        self
    }

    /// The `Retry-After` of 503 responses, rounded up to whole seconds, at least 1
    /// (default 5 s).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.config().retry_after = RetryAfter::from_duration(after);
        self
    }

    /// Remove the key headers before the inner service sees the request (default: keep
    /// them, marked sensitive).
    pub fn strip_credentials(mut self, strip: bool) -> Self {
        self.config().strip_credentials = strip;
        self
    }

    /// How rejections are rendered (default: [`DefaultRenderer`]).
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.config().renderer = Arc::new(renderer);
        self
    }

    /// Calls `observer` once per request with its outcome (key id, outcome code, status,
    /// method, path, client address, time; never the key): the activity log of the
    /// documents. Authenticated requests are reported when the inner service answers, so a
    /// refusal by a layer of this crate inside this one is their outcome; see
    /// [`activity`](crate::activity).
    pub fn observe(mut self, observer: impl ActivityObserver) -> Self {
        self.config().observer = Some(Arc::new(observer));
        self
    }

    /// How activity events find the client's address (default: the peer, no proxy
    /// trusted). [`FailureLimit`] has its own.
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.config().client_ip = client_ip;
        self
    }

    /// Limits failed authentications per client address: an address that has spent its
    /// budget of refused keys gets 429 before its keys are parsed or the store is asked.
    /// Store outages do not count as failures. Default: off.
    ///
    /// Every request then needs its client address (axum `ConnectInfo`, a [`ClientAddr`]
    /// extension, or the limit's own resolver); a request without one gets 500, never a
    /// shared bucket.
    ///
    /// [`ClientAddr`]: crate::rate_limit::ClientAddr
    pub fn limit_failures<C>(mut self, limit: FailureLimit<C>) -> Self
    where
        C: governor::clock::Clock + Clone + Send + Sync + 'static,
        C::Instant: Send + Sync,
    {
        self.config().failures = Some(Arc::new(limit));
        self
    }
}

impl<St: KeyStore> Clone for AuthLayer<St> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
        }
    }
}

impl<St: KeyStore> fmt::Debug for AuthLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<S, St: KeyStore> Layer<S> for AuthLayer<St> {
    type Service = AuthService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service [`AuthLayer`] wraps around the inner service.
pub struct AuthService<S, St: KeyStore> {
    inner: S,
    config: Arc<Config<St>>,
}

impl<S, St: KeyStore> AuthService<S, St> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
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

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let prepared = match config.prepare(request.headers(), request.extensions()) {
            Ok(prepared) => prepared,
            Err(rejection) => return ResponseFuture::rejected(config.reject(rejection, &request)),
        };
        let answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
            config.store.lookup_now(&prepared.digest)
        }))
        .unwrap_or_else(|_| Some(Err(StoreError::bare(StoreErrorKind::Panicked))));

        match answer {
            Some(found) => match config.decide(found, &prepared) {
                Ok(record) => {
                    let activity = config.admit(&mut request, record, prepared.source);
                    ResponseFuture::inner(self.inner.call(request), activity)
                }
                Err(rejection) => ResponseFuture::rejected(config.reject(rejection, &request)),
            },
            None => {
                let source = prepared.source;
                let lookup = Arc::clone(config).lookup(prepared);
                // The ready service goes into the future; this one gets a fresh clone.
                let inner = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, inner);
                ResponseFuture::lookup(lookup, inner, request, source, Arc::clone(config))
            }
        }
    }
}

/// What the layer needs after a lookup: the digest, the key's environment, and the
/// client's address when failures are limited.
struct Prepared {
    digest: KeyDigest,
    environment: Environment,
    source: usize,
    client: Option<IpAddr>,
}

/// Compared against when the store knows no record, so an unknown key costs the same
/// constant-time comparison as a known one.
const NO_RECORD: KeyDigest = KeyDigest::from_bytes([0; 32]);

pub(crate) struct Config<St: KeyStore> {
    store: Arc<St>,
    sources: CredentialSources,
    only_environment: Option<Environment>,
    lookup_timeout: Duration,
    retry_after: RetryAfter,
    strip_credentials: bool,
    renderer: Arc<dyn RenderRejection>,
    failures: Option<Arc<dyn FailureGate>>,
    observer: Option<Arc<dyn ActivityObserver>>,
    client_ip: ClientIp,
}

impl<St: KeyStore> Clone for Config<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            sources: self.sources.clone(),
            only_environment: self.only_environment,
            lookup_timeout: self.lookup_timeout,
            retry_after: self.retry_after,
            strip_credentials: self.strip_credentials,
            renderer: Arc::clone(&self.renderer),
            failures: self.failures.clone(),
            observer: self.observer.clone(),
            client_ip: self.client_ip.clone(),
        }
    }
}

impl<St: KeyStore> fmt::Debug for Config<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("sources", &self.sources)
            .field("only_environment", &self.only_environment)
            .field("lookup_timeout", &self.lookup_timeout)
            .field("retry_after", &self.retry_after)
            .field("strip_credentials", &self.strip_credentials)
            .finish_non_exhaustive()
    }
}

impl<St: KeyStore> Config<St> {
    /// Steps 1 to 4 up to the digest: everything that needs no store.
    #[inline]
    fn prepare(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<Prepared, AuthRejection> {
        let client = match &self.failures {
            Some(gate) => Some(gate.admit(headers, extensions)?),
            None => None,
        };
        self.parse(headers, client)
            .inspect_err(|rejection| self.note(client, rejection))
    }

    fn parse(
        &self,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<Prepared, AuthRejection> {
        let credential = match self.sources.extract(headers) {
            Ok(Some(credential)) => credential,
            Ok(None) => return Err(AuthRejection::invalid_key(InvalidKeyReason::Missing, None)),
            Err(CredentialError::RepeatedHeader(name)) => {
                return Err(AuthRejection::InvalidRequest(
                    InvalidRequestReason::RepeatedHeader(name),
                ))
            }
            Err(CredentialError::Ambiguous) => {
                return Err(AuthRejection::InvalidRequest(
                    InvalidRequestReason::AmbiguousCredentials,
                ))
            }
            Err(CredentialError::Malformed) => {
                return Err(AuthRejection::invalid_key(
                    InvalidKeyReason::Malformed,
                    None,
                ))
            }
        };
        let key = self
            .store
            .policy()
            .accepted_families()
            .parse(credential.expose_secret())
            .map_err(|_| AuthRejection::invalid_key(InvalidKeyReason::Malformed, None))?;
        if self
            .only_environment
            .is_some_and(|only| only != key.environment())
        {
            return Err(AuthRejection::EnvironmentNotAllowed(key.environment()));
        }
        Ok(Prepared {
            digest: self.store.hasher().digest(key.expose_secret()),
            environment: key.environment(),
            source: credential.index(),
            client,
        })
    }

    /// Spends the client's failure budget on a refused key (not on a missing one).
    fn note(&self, client: Option<IpAddr>, rejection: &AuthRejection) {
        if let (Some(gate), Some(client)) = (&self.failures, client) {
            if matches!(rejection, AuthRejection::InvalidApiKey { reason, .. } if *reason != InvalidKeyReason::Missing)
            {
                gate.record_failure(client);
            }
        }
    }

    /// The asynchronous lookup, boxed, under the timeout, with panics caught.
    fn lookup(self: Arc<Self>, prepared: Prepared) -> BoxLookup<St::Scope> {
        Box::pin(async move {
            let lookup =
                tokio::time::timeout(self.lookup_timeout, self.store.lookup(&prepared.digest));
            let found = match AssertUnwindSafe(lookup).catch_unwind().await {
                Ok(Ok(found)) => found,
                Ok(Err(_elapsed)) => Err(StoreError::bare(StoreErrorKind::Timeout)),
                Err(_panic) => Err(StoreError::bare(StoreErrorKind::Panicked)),
            };
            self.decide(found, &prepared)
        })
    }

    /// Step 5: the store's answer to an identity or a rejection.
    #[inline]
    fn decide(&self, found: LookupResult<St::Scope>, prepared: &Prepared) -> Verdict<St::Scope> {
        self.verify(found, prepared)
            .inspect_err(|rejection| self.note(prepared.client, rejection))
    }

    #[inline]
    fn verify(&self, found: LookupResult<St::Scope>, prepared: &Prepared) -> Verdict<St::Scope> {
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(target: "tower_api_key", error = %error, "key store lookup failed");
                return Err(AuthRejection::unavailable(
                    Unavailable::KeyStore(error.kind()),
                    self.retry_after,
                ));
            }
        };
        // One constant-time comparison whether or not a record came back: no early return.
        let stored = found.as_deref().map_or(&NO_RECORD, |record| &record.digest);
        let matches: bool =
            (stored.ct_eq(&prepared.digest) & Choice::from(u8::from(found.is_some()))).into();
        #[cfg(test)]
        tests::COMPARISONS.with(|n| n.set(n.get() + 1));
        let record = match found {
            Some(record) if matches => record,
            Some(record) => {
                return Err(AuthRejection::invalid_key(
                    InvalidKeyReason::DigestMismatch,
                    Some(record.id.clone()),
                ))
            }
            None => return Err(AuthRejection::invalid_key(InvalidKeyReason::Unknown, None)),
        };
        // Only records with a deadline need the clock.
        if record.has_deadline() {
            let reason = match record.status_at(self.store.policy().now()) {
                KeyStatus::Active => None,
                KeyStatus::Revoked => Some(InvalidKeyReason::Revoked),
                KeyStatus::Expired => Some(InvalidKeyReason::Expired),
            };
            if let Some(reason) = reason {
                return Err(AuthRejection::invalid_key(reason, Some(record.id.clone())));
            }
        }
        if record.environment != prepared.environment {
            return Err(AuthRejection::invalid_key(
                InvalidKeyReason::EnvironmentMismatch,
                Some(record.id.clone()),
            ));
        }
        Ok(record)
    }

    /// Step 6: protect the key headers and attach the identity. Returns the request's
    /// activity event, to be finished when the inner service answers.
    #[inline]
    fn admit<B>(
        &self,
        request: &mut Request<B>,
        record: Arc<KeyRecord<St::Scope>>,
        source: usize,
    ) -> Option<Box<PendingActivity>> {
        let activity = self.activity_sink().map(|sink| {
            let event = self.activity_event(request, Ok(&record.id));
            Box::new(PendingActivity { event, sink })
        });
        self.sources
            .protect(request.headers_mut(), source, self.strip_credentials);
        let extensions = request.extensions_mut();
        extensions.insert::<ScopeSet<St::Scope>>(record.scopes);
        extensions.insert(Principal::api_key(record));
        activity
    }

    fn reject<B>(&self, rejection: AuthRejection, request: &Request<B>) -> Response<bytes::Bytes> {
        let activity = self
            .activity_sink()
            .map(|sink| (self.activity_event(request, Err(&rejection)), sink));
        let response = respond(&*self.renderer, rejection, request.headers());
        if let Some((mut event, sink)) = activity {
            event.status = Some(response.status());
            sink.emit(&event);
        }
        response
    }

    /// Where activity goes, when the observer or `tracing` listens.
    fn activity_sink(&self) -> Option<ActivitySink> {
        #[cfg(feature = "tracing")]
        let traced = tracing::enabled!(target: "tower_api_key::activity", tracing::Level::DEBUG);
        #[cfg(not(feature = "tracing"))]
        let traced = false;
        (self.observer.is_some() || traced).then(|| ActivitySink {
            observer: self.observer.clone(),
            traced,
        })
    }

    fn activity_event<B>(
        &self,
        request: &Request<B>,
        outcome: Result<&KeyId, &AuthRejection>,
    ) -> ActivityEvent {
        let client = self
            .client_ip
            .resolve(request.headers(), request.extensions())
            .ok();
        ActivityEvent::new(
            outcome,
            request.method(),
            request.uri().path(),
            client,
            self.store.policy().now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::forg::ForgScope;
    use crate::key::{KeyFamily, KeyHasher};
    use crate::store::{MemoryKeyStore, NewKey};

    thread_local! {
        /// Digest comparisons made by `verify` on this thread.
        pub(super) static COMPARISONS: Cell<usize> = const { Cell::new(0) };
    }

    fn comparisons_during(f: impl FnOnce()) -> usize {
        let before = COMPARISONS.with(Cell::get);
        f();
        COMPARISONS.with(Cell::get) - before
    }

    #[test]
    fn unknown_key_and_wrong_stored_digest_take_the_same_path() {
        let store = Arc::new(MemoryKeyStore::new());
        let layer = AuthLayer::new(Arc::clone(&store));
        let config = &layer.config;
        let (_, other) = NewKey::<ForgScope>::new("o", "n", &KeyFamily::FORG_LIVE)
            .issue(&KeyHasher::sha256(), std::time::SystemTime::now())
            .unwrap();
        let prepared = Prepared {
            digest: KeyHasher::sha256().digest("forg_live_0123456789abcdef0123456789abcdef"),
            environment: Environment::Live,
            source: 0,
            client: None,
        };

        let mut unknown = None;
        let mut mismatch = None;
        let n_unknown = comparisons_during(|| unknown = Some(config.verify(Ok(None), &prepared)));
        let n_mismatch = comparisons_during(|| {
            mismatch = Some(config.verify(Ok(Some(Arc::new(other))), &prepared))
        });

        assert_eq!(
            (n_unknown, n_mismatch),
            (1, 1),
            "one comparison on both paths"
        );
        for verdict in [unknown, mismatch] {
            match verdict {
                Some(Err(AuthRejection::InvalidApiKey { .. })) => {}
                other => panic!("expected a 401, got {other:?}"),
            }
        }
    }
}

//! Shared test fixtures: a probe inner service that counts calls and keeps what it saw,
//! scripted key stores, and helpers to send a request through a service.
#![allow(dead_code)]

pub mod app;
#[cfg(any(feature = "postgres", feature = "redis"))]
pub mod certificates;
pub mod instances;
#[cfg(feature = "postgres")]
pub mod postgres_server;
pub mod proxy;
#[cfg(feature = "redis")]
pub mod redis_cluster;
#[cfg(feature = "redis")]
pub mod redis_server;
pub mod reverse_proxy;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use tower_api_key::clock::ManualClock;
use tower_api_key::key::{KeyDigest, KeyFamily, KeyHasher};
use tower_api_key::store::{
    IssuedKey, KeyPolicy, KeyRecord, KeyStore, LookupResult, ManageKeys, StoreError,
};
use tower_api_key::{ForgScope, MemoryKeyStore, NewKey, ScopeSet};

/// The inner service: answers 200 "inner", counts calls, keeps the last request's parts.
#[derive(Clone, Default)]
pub struct Probe {
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Option<Parts>>>,
}

impl Probe {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn service<B: Send + 'static>(
        &self,
    ) -> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
           + Clone
           + Send {
        let probe = self.clone();
        tower::service_fn(move |request: Request<B>| {
            let probe = probe.clone();
            async move {
                probe.calls.fetch_add(1, Ordering::SeqCst);
                let (parts, _) = request.into_parts();
                *probe.seen.lock().unwrap() = Some(parts);
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
            }
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Parts {
        self.seen
            .lock()
            .unwrap()
            .clone()
            .expect("the inner service was not called")
    }
}

/// What came back: status, headers, body, extensions.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub extensions: Extensions,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub async fn send<S, B, RB>(service: S, request: Request<B>) -> Answer
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: std::fmt::Debug,
    RB: http_body::Body<Data = Bytes>,
    RB::Error: std::fmt::Debug,
{
    let response = service.oneshot(request).await.expect("service error");
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
        extensions: parts.extensions,
    }
}

pub fn bearer(key: &str) -> Request<String> {
    Request::get("/v1/thing")
        .header("authorization", format!("Bearer {key}"))
        .body(String::new())
        .unwrap()
}

pub fn start_time() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

pub fn store_with_clock() -> (Arc<MemoryKeyStore<ForgScope>>, ManualClock) {
    let clock = ManualClock::new(start_time());
    (
        Arc::new(
            MemoryKeyStore::new()
                .with_policy(tower_api_key::forg::key_policy().clock(clock.clone())),
        ),
        clock,
    )
}

pub fn issue(
    store: &MemoryKeyStore<ForgScope>,
    family: &KeyFamily,
    scopes: impl Into<ScopeSet<ForgScope>>,
) -> IssuedKey<ForgScope> {
    memory(store.issue(NewKey::new("org_1", "test key", family).scopes(scopes))).expect("issue")
}

/// The answer of a `MemoryKeyStore` call, which never waits: for synchronous tests.
pub fn memory<F: std::future::Future>(call: F) -> F::Output {
    use futures_util::FutureExt;
    call.now_or_never()
        .expect("the memory store answers without waiting")
}

pub fn digest_of(key: &IssuedKey<ForgScope>) -> KeyDigest {
    KeyHasher::sha256().digest(key.key().expose_secret())
}

/// What a [`ScriptedStore`] does on lookup.
#[derive(Clone)]
pub enum Script {
    /// Answer from the wrapped store, asynchronously (no `lookup_now`).
    Delegate,
    /// Answer after a delay.
    Slow(Duration),
    /// Read the answer, then wait before returning it (the answer may be stale by then).
    ReadThenWait(Duration),
    /// Fail with `StoreError::unavailable`.
    Fail,
    /// Never answer.
    Hang,
    /// Panic.
    Panic,
    /// Return this record whatever the digest.
    Always(Arc<KeyRecord<ForgScope>>),
}

/// A store that follows a script, switchable between requests, counting lookups.
pub struct ScriptedStore {
    pub inner: Arc<MemoryKeyStore<ForgScope>>,
    script: Mutex<Script>,
    lookups: AtomicUsize,
}

impl ScriptedStore {
    pub fn new(inner: Arc<MemoryKeyStore<ForgScope>>, script: Script) -> Arc<Self> {
        Arc::new(Self {
            inner,
            script: Mutex::new(script),
            lookups: AtomicUsize::new(0),
        })
    }

    pub fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl KeyStore for ScriptedStore {
    type Scope = ForgScope;

    async fn lookup(&self, digest: &KeyDigest) -> LookupResult<ForgScope> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let script = self.script.lock().unwrap().clone();
        match script {
            Script::Delegate => self.inner.lookup(digest).await,
            Script::Slow(delay) => {
                tokio::time::sleep(delay).await;
                self.inner.lookup(digest).await
            }
            Script::ReadThenWait(delay) => {
                let answer = self.inner.lookup(digest).await;
                tokio::time::sleep(delay).await;
                answer
            }
            Script::Fail => Err(StoreError::unavailable("connection refused")),
            Script::Hang => std::future::pending().await,
            Script::Panic => panic!("scripted store panic"),
            Script::Always(record) => Ok(Some(record)),
        }
    }

    fn policy(&self) -> &KeyPolicy {
        self.inner.policy()
    }
}

/// `request` as if it came from `ip` (the `ClientAddr` extension a server would insert).
pub fn from(ip: &str, mut request: Request<String>) -> Request<String> {
    request
        .extensions_mut()
        .insert(tower_api_key::client_ip::ClientAddr(ip.parse().unwrap()));
    request
}

/// A `tracing` writer that keeps everything written, for log assertions.
#[derive(Clone, Default)]
pub struct LogCapture(pub Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Captures every event at `level` and up, from every thread, for the rest of the test
    /// binary. Global on purpose: a thread-local default races with other tests that
    /// register the same callsites first and can cache their interest as `never`; so call it
    /// once, in a binary whose only test reads the logs.
    pub fn install(level: tracing::Level) -> Self {
        let capture = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(capture.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per binary");
        capture
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}

/// Waits (bounded) until `done` holds: for events on another connection, not for time.
pub async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..5_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Sends `key` through `service` every 50 ms for `how_long` (an outage): it is never
/// accepted meanwhile.
pub async fn never_accepted_for<S, RB>(service: &S, key: &str, how_long: Duration)
where
    S: Service<Request<String>, Response = Response<RB>> + Clone,
    S::Error: std::fmt::Debug,
    RB: http_body::Body<Data = Bytes>,
    RB::Error: std::fmt::Debug,
{
    let start = std::time::Instant::now();
    while start.elapsed() < how_long {
        let status = send(service.clone(), bearer(key)).await.status;
        assert_ne!(
            status,
            StatusCode::OK,
            "a revoked key was accepted during the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `key` until it gets 401 (bounded: 200 tries, 20 ms apart), never accepting it on
/// the way: a store or a connection that is still coming back answers 503.
pub async fn refused_from_now_on<S, RB>(service: &S, key: &str)
where
    S: Service<Request<String>, Response = Response<RB>> + Clone,
    S::Error: std::fmt::Debug,
    RB: http_body::Body<Data = Bytes>,
    RB::Error: std::fmt::Debug,
{
    for _ in 0..200 {
        let status = send(service.clone(), bearer(key)).await.status;
        assert_ne!(status, StatusCode::OK, "a revoked key was accepted");
        if status == StatusCode::UNAUTHORIZED {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the revoked key never got its 401");
}

/// A handler that holds every request it gets until all the requests sent are either in
/// it or refused before it, then lets them finish together, each reporting `cost`
/// (`ReportedCost`): the spend-cap tests of requests in flight at once.
#[derive(Clone, Default)]
pub struct InFlight {
    release: Arc<tokio::sync::Notify>,
    entered: Arc<AtomicUsize>,
}

impl InFlight {
    pub fn service(
        &self,
        cost: u64,
    ) -> impl Service<
        Request<String>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future: Send,
    > + Clone
           + Send {
        let this = self.clone();
        tower::service_fn(move |_: Request<String>| {
            let this = this.clone();
            async move {
                let released = this.release.notified();
                this.entered.fetch_add(1, Ordering::SeqCst);
                released.await;
                let mut response = Response::new(Full::new(Bytes::from_static(b"tokens")));
                response
                    .extensions_mut()
                    .insert(tower_api_key::usage::ReportedCost(cost));
                Ok(response)
            }
        })
    }

    /// Sends `n` requests with `key` at once, spread over `instances`; once each is in the
    /// handler or answered 402, releases them. Answers how many got into the handler and
    /// every answer.
    pub async fn send_at_once<S, RB>(
        &self,
        instances: &[S],
        key: &str,
        n: usize,
    ) -> (usize, Vec<Answer>)
    where
        S: Service<Request<String>, Response = Response<RB>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: std::fmt::Debug,
        RB: http_body::Body<Data = Bytes> + Send,
        RB::Error: std::fmt::Debug,
    {
        let refused = Arc::new(AtomicUsize::new(0));
        let requests: Vec<_> = (0..n)
            .map(|i| {
                let service = instances[i % instances.len()].clone();
                let (key, refused) = (key.to_owned(), Arc::clone(&refused));
                tokio::spawn(async move {
                    let answer = send(service, bearer(&key)).await;
                    if answer.status == StatusCode::PAYMENT_REQUIRED {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    answer
                })
            })
            .collect();
        until("every request admitted or refused", || {
            self.entered.load(Ordering::SeqCst) + refused.load(Ordering::SeqCst) == n
        })
        .await;
        let entered = self.entered.load(Ordering::SeqCst);
        self.release.notify_waiters();
        let mut answers = Vec::with_capacity(n);
        for request in requests {
            answers.push(request.await.unwrap());
        }
        (entered, answers)
    }
}

/// A `fos_` key issued through `direct` (another instance), and the authentication layer
/// of the instance under test (on `store`), which accepts it now.
pub async fn accepted_key<D, St>(
    direct: &D,
    store: Arc<St>,
) -> (
    IssuedKey<ForgScope>,
    impl Service<
            Request<String>,
            Response = Response<tower_api_key::body::ResponseBody<Full<Bytes>>>,
            Error = Infallible,
        > + Clone,
)
where
    D: ManageKeys<Scope = ForgScope>,
    St: KeyStore<Scope = ForgScope>,
{
    use tower::Layer;
    let issued = direct
        .issue(NewKey::new("org", "k", &KeyFamily::FOS))
        .await
        .unwrap();
    let service = tower_api_key::AuthLayer::new(store).layer(Probe::new().service::<String>());
    let status = send(service.clone(), bearer(issued.key().expose_secret()))
        .await
        .status;
    assert_eq!(status, StatusCode::OK);
    (issued, service)
}

/// A usage backend that fails, or panics.
#[derive(Clone)]
pub struct BrokenUsage {
    pub panics: bool,
}

impl tower_api_key::usage::UsageBackend for BrokenUsage {
    async fn charge(
        &self,
        _: tower_api_key::usage::Counter<'_>,
        _: u64,
        _: u64,
        _: tower_api_key::usage::Charge,
    ) -> Result<tower_api_key::usage::Spent, tower_api_key::rate_limit::BackendError> {
        if self.panics {
            panic!("usage backend bug");
        }
        Err(tower_api_key::rate_limit::BackendError::new(
            "connection refused",
        ))
    }
}

/// A name (table, namespace) no other test of this run uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A private redis-server or the shared three-master cluster, for suites that run on both.
#[cfg(feature = "redis")]
pub enum AnyRedis {
    /// A private server.
    One(redis_server::Redis),
    /// The shared cluster.
    Cluster(&'static redis_cluster::RedisCluster),
}

#[cfg(feature = "redis")]
impl AnyRedis {
    /// A private server and the shared cluster, those this machine can start.
    pub fn every() -> Vec<Self> {
        let one = redis_server::Redis::start().map(Self::One);
        let cluster = redis_cluster::RedisCluster::shared().map(Self::Cluster);
        one.into_iter().chain(cluster).collect()
    }

    /// A new connection to it.
    pub async fn connection(&self) -> tower_api_key::RedisConnection {
        match self {
            Self::One(redis) => tower_api_key::RedisConnection::open(&redis.url)
                .await
                .unwrap(),
            Self::Cluster(cluster) => cluster.connection().await,
        }
    }
}

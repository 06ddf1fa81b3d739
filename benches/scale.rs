//! Issue 36.3 and 41.1: the quickstart-shaped stack at 1,000, 100,000 and 1,000,000 keys,
//! a random credential per request, side by side in one run. The stack: activity log,
//! usage history and last-use recording (an `ActivityLayer` observer), authentication with
//! browser sessions, a per-key rate limit (roomy, so every request passes) and a per-key
//! spend cap (charged on every request). Keys belong to owners of 10; one credential in
//! eleven is a session cookie. Memory is counted by a global allocator (live heap bytes):
//! the store's per key, and what the stack's state grew by per key the run touched.
//! Each size is timed twice: while many keys are met for the first time, then again once
//! every credential has been used (the steady state of a server that has run a while).
//! With `--features redis`, the same stack on Redis (key and session records behind
//! `CachedKeyStore`, Redis rate limit, spend cap, activity log and usage history) at 1,000
//! and 100,000 keys, on a private `redis-server`.
//!
//! Run with `cargo bench --bench scale [--features redis]` (`SCALE_MAX=100000` stops at
//! 100,000 keys). Timings here move up to 40 % between runs: compare the ratios of one
//! run. `SCALE_PROFILE=<keys>` builds one size and only drives requests through
//! `scale::drive` (`SCALE_PROFILE_STEADY=1`: after every credential was used once), for
//! `valgrind --tool=callgrind --cache-sim=yes
//! --toggle-collect='scale::drive*'` (cache misses per request, by function).

use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use http::{HeaderMap, Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_api_key::activity::{
    ActivityEvent, ActivityLayer, ActivityLog, ActivityObserver, DailyUsage, LastUsedRecorder,
};
use tower_api_key::clock::ManualClock;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::rate_limit::{
    ClassName, GovernorBackend, Quota, RateClass, RateLimitBackend, RateLimits,
};
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::KeyPolicy;
use tower_api_key::store::KeyStore;
use tower_api_key::usage::{BudgetPer, Budgets, MemoryUsage, SpendCaps, UsageBackend};
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

#[path = "support/live_bytes.rs"]
mod live_bytes;
#[cfg(feature = "redis")]
#[path = "scale_parts/on_redis.rs"]
mod on_redis;

type Store = MemoryKeyStore<ForgScope>;

/// Requests timed at each size (after as many to warm up).
const REQUESTS: usize = 200_000;

/// A credential header: a key, or a session cookie.
pub enum Credential {
    Key(String),
    Cookie(String),
}

impl Credential {
    /// Heap bytes the harness holds for it (not the store's).
    fn heap_bytes(&self) -> usize {
        match self {
            Self::Key(s) | Self::Cookie(s) => s.capacity(),
        }
    }

    /// A `GET /v1/rules` carrying it, from a client address.
    pub fn request(&self) -> Request<String> {
        let builder = Request::get("/v1/rules");
        let builder = match self {
            Self::Key(key) => builder.header("authorization", format!("Bearer {key}")),
            Self::Cookie(cookie) => builder.header("cookie", cookie),
        };
        let mut request = builder.body(String::new()).unwrap();
        request
            .extensions_mut()
            .insert(tower_api_key::client_ip::ClientAddr(
                [203, 0, 113, 7].into(),
            ));
        request
    }
}

/// Owners of 10 keys; one session per 10 keys, at most 10,000.
pub fn owner_of(key: usize) -> String {
    format!("org_{}", key / 10)
}

pub fn sessions_for(keys: usize) -> usize {
    (keys / 10).min(10_000)
}

/// The owner session `i` logs in as.
pub fn session_owner(i: usize, keys: usize) -> String {
    format!("org_{}", i * 7 % (keys / 10))
}

/// `keys` keys and their sessions.
fn credentials(keys: usize, store: &Store, sessions: &Sessions<Store>) -> Vec<Credential> {
    let mut all = Vec::with_capacity(keys + sessions_for(keys));
    for i in 0..keys {
        let issued = store
            .issue(
                NewKey::new(owner_of(i), "k", &KeyFamily::FORG_TEST).scopes(ForgScope::ReadRules),
            )
            .now_or_never()
            .expect("the memory store never waits")
            .expect("issue");
        all.push(Credential::Key(issued.key().expose_secret().to_owned()));
    }
    for i in 0..sessions_for(keys) {
        let started = sessions
            .start(
                &HeaderMap::new(),
                session_owner(i, keys),
                ForgScope::ReadRules,
            )
            .now_or_never()
            .expect("the memory store never waits")
            .expect("login");
        all.push(Credential::Cookie(started.cookies().cookie_header()));
    }
    all
}

/// xorshift64*: a random index without a dependency.
pub struct Random(pub u64);

impl Random {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// How many of `n` credentials `requests` draws from `SEED` touch.
fn distinct(n: usize, requests: usize) -> usize {
    let mut seen = vec![false; n];
    let mut random = Random(SEED);
    for _ in 0..requests {
        seen[random.below(n)] = true;
    }
    seen.iter().filter(|s| **s).count()
}

/// One timed run: throughput, and the tail (the slowest request shows a pause, such as a
/// sweep of a whole map, that p99 averages away).
struct Timed {
    per_second: f64,
    p99: Duration,
    max: Duration,
}

impl Timed {
    /// `requests/s | p99 / max | ratio to base` as table cells.
    fn cells(&self, base: &Timed) -> String {
        format!(
            "{:.0} | {:.1} µs / {:.1} ms | {:.2}",
            self.per_second,
            self.p99.as_secs_f64() * 1e6,
            self.max.as_secs_f64() * 1e3,
            self.per_second / base.per_second,
        )
    }
}

struct Row {
    keys: usize,
    /// Timed while many keys are met for the first time (at 1M keys, most of them).
    first: Timed,
    /// Timed again once every credential has been used: the state a long-running server
    /// holds, no entry made and no table grown on the request path.
    steady: Timed,
    /// The authentication layer alone, on the same keys and requests: the floor the
    /// store's own lookup sets at this size (random access to a map that outgrows the
    /// caches).
    auth_per_second: f64,
    /// The key store's and session store's heap per credential.
    store_bytes: f64,
    /// What the stack's state (limiter, spend counters, activity log, usage history,
    /// last-use) grew by, per credential the run touched.
    state_bytes: f64,
}

/// Drives `count` requests through `service`, answering at once (memory stores): the
/// loop `SCALE_PROFILE` counts.
#[inline(never)]
fn drive<S, B>(service: &mut S, all: &[Credential], random: &mut Random, count: usize)
where
    S: Service<Request<String>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..count {
        let request = all[random.below(all.len())].request();
        let response = service
            .ready()
            .now_or_never()
            .expect("ready")
            .unwrap()
            .call(request)
            .now_or_never()
            .expect("memory stores answer at once");
        black_box(response.unwrap().status());
    }
}

/// Times `REQUESTS` requests (after as many to warm up).
async fn time<S, B>(service: &mut S, all: &[Credential], clock: &ManualClock) -> Timed
where
    S: Service<Request<String>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut random = Random(SEED);
    for _ in 0..REQUESTS / 4096 {
        drive(service, all, &mut random, 4096);
        tokio::task::yield_now().await;
    }
    let mut times = Vec::with_capacity(REQUESTS);
    let start = Instant::now();
    for _ in 0..REQUESTS {
        let request = all[random.below(all.len())].request();
        let sent = Instant::now();
        let response = service.ready().await.unwrap().call(request).await;
        assert!(response.unwrap().status().is_success());
        times.push(sent.elapsed());
        // Time moves on, so last-use batches and sweeps run as in a server.
        clock.advance(Duration::from_micros(50));
        if times.len() % 4096 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let elapsed = start.elapsed();
    times.sort_unstable();
    Timed {
        per_second: REQUESTS as f64 / elapsed.as_secs_f64(),
        p99: times[REQUESTS * 99 / 100],
        max: times[REQUESTS - 1],
    }
}

/// Sends every credential once, in order: afterwards every per-key structure has its
/// entry, as in a server that has run for a while.
async fn use_every<S, B>(service: &mut S, all: &[Credential], clock: &ManualClock)
where
    S: Service<Request<String>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    for block in all.chunks(4096) {
        for credential in block {
            let response = service
                .ready()
                .await
                .unwrap()
                .call(credential.request())
                .await;
            assert!(response.unwrap().status().is_success());
        }
        clock.advance(Duration::from_millis(200));
        tokio::task::yield_now().await;
    }
}

/// Requests a timed run draws: the warm-up (whole blocks of 4,096) and the timed ones.
const DRAWN: usize = REQUESTS / 4096 * 4096 + REQUESTS;

/// The quickstart-shaped stack (shared with the Redis rows): `observe` sees every request
/// (activity log, usage history, last use), then authentication with sessions, a roomy
/// per-key rate limit on `limiter` and a per-key spend cap counted by `usage`.
pub fn quickstart_stack<St, Ss, L, U>(
    keys: &Arc<St>,
    sessions: &Sessions<Ss>,
    observe: impl ActivityObserver,
    limiter: L,
    usage: U,
) -> impl Service<
    Request<String>,
    Response = Response<impl Send>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<impl Send>, Infallible>> + Send,
> + Clone
       + Send
       + 'static
where
    St: KeyStore<Scope = ForgScope>,
    Ss: ManageKeys<Scope = ForgScope>,
    L: RateLimitBackend,
    U: UsageBackend,
{
    let roomy = Quota::per_minute(NonZeroU32::new(1_000_000).unwrap());
    let class = RateClass::per_key(ClassName::from_static("std"), roomy);
    let budgets = Budgets::new().default_cap(Environment::Test, u64::MAX);
    ServiceBuilder::new()
        .layer(ActivityLayer::new(observe))
        .layer(AuthLayer::new(Arc::clone(keys)).sessions(sessions.clone()))
        .layer(RateLimits::backed_by(limiter).layer(class))
        .layer(
            SpendCaps::backed_by(budgets, usage)
                .per(BudgetPer::Key)
                .layer(1),
        )
        .service(tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }))
}

/// The stack over memory stores, on `clock`.
fn stack(
    store: &Arc<Store>,
    sessions: &Sessions<Store>,
    clock: &ManualClock,
) -> impl Service<Request<String>, Response = Response<impl Sized>, Error = Infallible> {
    let (log, daily) = (ActivityLog::default(), DailyUsage::default());
    let recorder = LastUsedRecorder::spawn(Arc::clone(store), Duration::from_secs(1));
    let observe = move |event: &ActivityEvent| {
        log.observe(event);
        daily.observe(event);
        recorder.observe(event);
    };
    quickstart_stack(
        store,
        sessions,
        observe,
        GovernorBackend::on_clock(clock.clone()),
        MemoryUsage::new().with_clock(clock.clone()),
    )
}

fn stores(clock: &ManualClock) -> (Arc<Store>, Sessions<Store>) {
    let store =
        Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy().clock(clock.clone())));
    let sessions = Sessions::new(
        Arc::new(Store::new().with_policy(KeyPolicy::sessions().clock(clock.clone()))),
        CsrfSecret::generate().unwrap(),
    );
    (store, sessions)
}

async fn measure(keys: usize) -> Row {
    let clock = ManualClock::default();
    let before = live_bytes::live();
    let (store, sessions) = stores(&clock);
    let all = credentials(keys, &store, &sessions);
    let harness: usize = all.iter().map(Credential::heap_bytes).sum::<usize>()
        + all.capacity() * std::mem::size_of::<Credential>();
    let store_bytes = (live_bytes::live() - before) as f64 - harness as f64;

    let before = live_bytes::live();
    let mut service = stack(&store, &sessions, &clock);
    let first = time(&mut service, &all, &clock).await;
    let grown = live_bytes::live() - before;
    use_every(&mut service, &all, &clock).await;
    let steady = time(&mut service, &all, &clock).await;
    drop(service);
    let touched = distinct(all.len(), DRAWN);

    let mut auth = ServiceBuilder::new()
        .layer(AuthLayer::new(Arc::clone(&store)).sessions(sessions.clone()))
        .service(tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let auth_per_second = time(&mut auth, &all, &clock).await.per_second;
    Row {
        keys,
        first,
        steady,
        auth_per_second,
        store_bytes: store_bytes / all.len() as f64,
        state_bytes: grown as f64 / touched as f64,
    }
}

/// `SCALE_PROFILE=<keys>`: the stack at one size, warmed up, then 20,000 requests through
/// `drive` (what callgrind counts).
async fn profile(keys: usize) {
    let clock = ManualClock::default();
    let (store, sessions) = stores(&clock);
    let all = credentials(keys, &store, &sessions);
    let mut service = stack(&store, &sessions, &clock);
    if std::env::var_os("SCALE_PROFILE_STEADY").is_some() {
        use_every(&mut service, &all, &clock).await;
    }
    let mut random = Random(SEED);
    for _ in 0..5 {
        drive(&mut service, &all, &mut random, 4096);
        clock.advance(Duration::from_millis(200));
        tokio::task::yield_now().await;
    }
    for _ in 0..5 {
        drive(&mut service, &all, &mut random, 4_000);
        clock.advance(Duration::from_millis(200));
        tokio::task::yield_now().await;
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(keys) = std::env::var("SCALE_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        runtime.block_on(profile(keys));
        return;
    }
    let max: usize = std::env::var("SCALE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rows: Vec<Row> = [1_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&keys| keys <= max)
        .map(|keys| runtime.block_on(measure(keys)))
        .collect();
    let (base, auth_base) = (&rows[0], rows[0].auth_per_second);
    println!("In process (memory stores, one thread):\n");
    println!(
        "| keys | stack requests/s | p99 / slowest | vs 1,000 keys | every key used before: requests/s | p99 / slowest | vs 1,000 keys | auth alone requests/s | vs 1,000 keys | store bytes per credential | stack state bytes per key touched |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.0} | {:.0} |",
            row.keys,
            row.first.cells(&base.first),
            row.steady.cells(&base.steady),
            row.auth_per_second,
            row.auth_per_second / auth_base,
            row.store_bytes,
            row.state_bytes,
        );
    }
    #[cfg(feature = "redis")]
    on_redis::rows(max.min(100_000));
    #[cfg(not(feature = "redis"))]
    println!("\n(`--features redis` adds the same stack on Redis)");
}

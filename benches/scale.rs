//! Issue 36.3: the quickstart-shaped stack at 1,000, 100,000 and 1,000,000 keys, a random
//! credential per request, side by side in one run. The stack: activity log, usage history
//! and last-use recording (an `ActivityLayer` observer), authentication with browser
//! sessions, a per-key rate limit (roomy, so every request passes) and a per-key spend cap
//! (charged on every request). Keys belong to owners of 10; one request in ten carries a
//! session cookie. Before issue 36 the activity log's eviction scanned every tracked key
//! once it was full: 836 requests/s at 100,000 keys in the soak.
//!
//! Run with `cargo bench --bench scale` (`SCALE_MAX=100000` stops at 100,000 keys).
//! Timings here move up to 40 % between runs: compare the ratios of one run.

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
use tower_api_key::rate_limit::{ClassName, GovernorBackend, Quota, RateClass, RateLimits};
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::KeyPolicy;
use tower_api_key::usage::{BudgetPer, Budgets, MemoryUsage, SpendCaps};
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

type Store = MemoryKeyStore<ForgScope>;

/// Requests timed at each size (after as many to warm up).
const REQUESTS: usize = 200_000;

/// A credential header: a key, or a session cookie.
enum Credential {
    Key(String),
    Cookie(String),
}

/// `keys` keys over `keys / 10` owners, and `min(keys / 10, 10_000)` sessions.
fn credentials(keys: usize, store: &Store, sessions: &Sessions<Store>) -> Vec<Credential> {
    let mut all = Vec::with_capacity(keys + keys / 10);
    for i in 0..keys {
        let owner = format!("org_{}", i / 10);
        let issued = store
            .issue(NewKey::new(owner, "k", &KeyFamily::FORG_TEST).scopes(ForgScope::ReadRules))
            .now_or_never()
            .expect("the memory store never waits")
            .expect("issue");
        all.push(Credential::Key(issued.key().expose_secret().to_owned()));
    }
    for i in 0..(keys / 10).min(10_000) {
        let started = sessions
            .start(
                &HeaderMap::new(),
                format!("org_{}", i * 7 % (keys / 10)),
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
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

struct Row {
    keys: usize,
    per_second: f64,
    p99: Duration,
    /// The authentication layer alone, on the same keys and requests: the floor the
    /// store's own lookup sets at this size (random access to a map that outgrows the
    /// caches).
    auth_per_second: f64,
}

/// Times `REQUESTS` requests (after as many to warm up); requests/s and p99.
async fn time<S, B>(
    service: &mut S,
    request: impl Fn(&mut Random) -> Request<String>,
    clock: &ManualClock,
) -> (f64, Duration)
where
    S: Service<Request<String>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    for _ in 0..REQUESTS {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request(&mut random))
            .await;
        black_box(response.unwrap().status());
    }
    let mut times = Vec::with_capacity(REQUESTS);
    let start = Instant::now();
    for _ in 0..REQUESTS {
        let request = request(&mut random);
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
    (
        REQUESTS as f64 / elapsed.as_secs_f64(),
        times[REQUESTS * 99 / 100],
    )
}

async fn measure(keys: usize) -> Row {
    let clock = ManualClock::default();
    let store =
        Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy().clock(clock.clone())));
    let sessions = Sessions::new(
        Arc::new(Store::new().with_policy(KeyPolicy::sessions().clock(clock.clone()))),
        CsrfSecret::generate().unwrap(),
    );
    let all = credentials(keys, &store, &sessions);
    let sessions_again = sessions.clone();
    let (log, daily) = (ActivityLog::default(), DailyUsage::default());
    let recorder = LastUsedRecorder::spawn(Arc::clone(&store), Duration::from_secs(1));
    let observe = move |event: &ActivityEvent| {
        log.observe(event);
        daily.observe(event);
        recorder.observe(event);
    };
    let roomy = Quota::per_minute(NonZeroU32::new(1_000_000).unwrap());
    let class = RateClass::per_key(ClassName::from_static("std"), roomy);
    let limits = RateLimits::backed_by(GovernorBackend::on_clock(clock.clone()));
    let budgets = Budgets::new().default_cap(Environment::Test, u64::MAX);
    let caps = SpendCaps::backed_by(budgets, MemoryUsage::new().with_clock(clock.clone()))
        .per(BudgetPer::Key);
    let mut service = ServiceBuilder::new()
        .layer(ActivityLayer::new(observe))
        .layer(AuthLayer::new(Arc::clone(&store)).sessions(sessions.clone()))
        .layer(limits.layer(class))
        .layer(caps.layer(1))
        .service(tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let request = |random: &mut Random| {
        let builder = Request::get("/v1/rules");
        let builder = match &all[random.below(all.len())] {
            Credential::Key(key) => builder.header("authorization", format!("Bearer {key}")),
            Credential::Cookie(cookie) => builder.header("cookie", cookie),
        };
        let mut request = builder.body(String::new()).unwrap();
        request
            .extensions_mut()
            .insert(tower_api_key::client_ip::ClientAddr(
                [203, 0, 113, 7].into(),
            ));
        request
    };
    let (per_second, p99) = time(&mut service, request, &clock).await;
    let mut auth = ServiceBuilder::new()
        .layer(AuthLayer::new(Arc::clone(&store)).sessions(sessions_again))
        .service(tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let (auth_per_second, _) = time(&mut auth, request, &clock).await;
    Row {
        keys,
        per_second,
        p99,
        auth_per_second,
    }
}

fn main() {
    let max: usize = std::env::var("SCALE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows: Vec<Row> = [1_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&keys| keys <= max)
        .map(|keys| runtime.block_on(measure(keys)))
        .collect();
    let (base, auth_base) = (rows[0].per_second, rows[0].auth_per_second);
    println!(
        "| keys | stack requests/s | p99 | vs 1,000 keys | auth alone requests/s | vs 1,000 keys |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.0} | {:.1} µs | {:.2} | {:.0} | {:.2} |",
            row.keys,
            row.per_second,
            row.p99.as_secs_f64() * 1e6,
            row.per_second / base,
            row.auth_per_second,
            row.auth_per_second / auth_base,
        );
    }
}

//! The Redis rows of `benches/scale.rs` (feature `redis`): the same stack with every
//! store shared through one `redis-server` (key and session records behind
//! `CachedKeyStore`, the rate limit, the spend cap, the activity log and the usage history
//! in Redis, last use written back to the key store), at 1,000 and 100,000 keys, 16
//! requests at a time on a two-thread runtime. Counted beside the timings: commands the
//! server ran per request (`INFO commandstats`) and its memory per credential
//! (`used_memory`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response};
use tower::{Service, ServiceExt};
use tower_api_key::activity::{
    ActivityEvent, ActivityObserver, LastUsedRecorder, RedisActivityLog, RedisDailyUsage,
};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::RedisRateLimiter;
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::{CachedKeyStore, KeyPolicy, RedisKeyStore};
use tower_api_key::usage::RedisUsage;
use tower_api_key::{ForgScope, ManageKeys, NewKey, RedisConnection};

use super::{owner_of, session_owner, sessions_for, Credential, Random};

type Keys = CachedKeyStore<RedisKeyStore<ForgScope>>;

/// Requests at once, and requests timed per size (after every credential once).
const CLIENTS: usize = 16;
const TIMED: usize = 32_000;

struct Row {
    keys: usize,
    last_use: Duration,
    per_second: f64,
    p99: Duration,
    /// Commands the server ran per timed request, by name.
    commands: Vec<(String, f64)>,
    /// `used_memory` per credential after issuing, then per credential after the stack
    /// touched each.
    store_bytes: f64,
    state_bytes: f64,
    touched: usize,
    /// Writes dropped by the activity log, the usage history and last use (queues full).
    dropped: [u64; 3],
}

/// A private `redis-server` (or `REDIS_URL`), stopped when dropped.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
        }
    }
}

fn server() -> (String, Server) {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return (url, Server(None));
    }
    let child = Command::new("redis-server")
        .args(["--port", "6392", "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server) or REDIS_URL");
    for _ in 0..200 {
        if std::net::TcpStream::connect("127.0.0.1:6392").is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ("redis://127.0.0.1:6392".to_owned(), Server(Some(child)))
}

/// `INFO <section>` as `field → value`.
async fn info(connection: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(connection)
        .await
        .expect("INFO")
}

async fn used_memory(connection: &mut redis::aio::MultiplexedConnection) -> i64 {
    info(connection, "memory")
        .await
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

/// Calls per command so far (`INFO` and `CONFIG` left out: the bench's own).
async fn command_calls(connection: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    info(connection, "commandstats")
        .await
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .next()?
                .strip_prefix("calls=")?
                .parse()
                .ok()?;
            (!matches!(name, "info" | "config" | "flushall")).then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// Runs `per_task(i)` for `0..n` on `CLIENTS` tasks.
async fn spread<F, Fut>(n: usize, per_task: F)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|task| {
            let per_task = per_task.clone();
            tokio::spawn(async move {
                for i in (task..n).step_by(CLIENTS) {
                    per_task(i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

/// The activity log, the usage history and the last-use recorder.
type Observers = (RedisActivityLog, RedisDailyUsage, LastUsedRecorder);

fn observers(connection: &RedisConnection, keys: &Arc<Keys>, last_use: Duration) -> Observers {
    (
        RedisActivityLog::new(connection.clone(), "scale", 100),
        RedisDailyUsage::new(connection.clone(), "scale"),
        LastUsedRecorder::spawn(Arc::clone(keys), last_use),
    )
}

/// The stack of `scale.rs` over Redis.
fn stack(
    connection: &RedisConnection,
    keys: &Arc<Keys>,
    sessions: &Sessions<Keys>,
    (log, daily, recorder): Observers,
) -> impl Service<
    Request<String>,
    Response = Response<impl Send>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<impl Send>, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    let observe = move |event: &ActivityEvent| {
        log.observe(event);
        daily.observe(event);
        recorder.observe(event);
    };
    super::quickstart_stack(
        keys,
        sessions,
        observe,
        RedisRateLimiter::new(connection.clone()),
        RedisUsage::new(connection.clone()),
    )
}

async fn measure(url: &str, keys: usize, last_use: Duration) -> Row {
    let mut stats = redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // Flushing 100,000 keys' state takes longer than a command's usual timeout.
    stats.set_response_timeout(Duration::from_secs(60));
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut stats)
        .await
        .expect("FLUSHALL");
    let connection = RedisConnection::open(url).await.expect("connect");
    let cached = |namespace: &str, policy: KeyPolicy| {
        let store = RedisKeyStore::new(connection.clone())
            .with_namespace(namespace)
            .with_policy(policy);
        // Sized to hold every credential: the path measured is the cache hit's.
        Arc::new(
            CachedKeyStore::builder(Arc::new(store))
                .max_capacity(2 * keys as u64)
                .build(),
        )
    };
    let memory_before = used_memory(&mut stats).await;
    let key_store = cached("scale-keys", tower_api_key::forg::key_policy());
    let sessions = Sessions::new(
        cached("scale-sessions", KeyPolicy::sessions()),
        CsrfSecret::generate().unwrap(),
    );

    let issued = Arc::new(std::sync::Mutex::new(vec![None; keys]));
    spread(keys, {
        let (store, issued) = (Arc::clone(&key_store), Arc::clone(&issued));
        move |i| {
            let (store, issued) = (Arc::clone(&store), Arc::clone(&issued));
            async move {
                let new = NewKey::new(owner_of(i), "k", &KeyFamily::FORG_TEST)
                    .scopes(ForgScope::ReadRules);
                let key = store.inner().issue(new).await.expect("issue");
                issued.lock().unwrap()[i] = Some(key.key().expose_secret().to_owned());
            }
        }
    })
    .await;
    let logins = Arc::new(std::sync::Mutex::new(vec![None; sessions_for(keys)]));
    spread(sessions_for(keys), {
        let (sessions, logins) = (sessions.clone(), Arc::clone(&logins));
        move |i| {
            let (sessions, logins) = (sessions.clone(), Arc::clone(&logins));
            async move {
                let started = sessions
                    .start(
                        &HeaderMap::new(),
                        session_owner(i, keys),
                        ForgScope::ReadRules,
                    )
                    .await
                    .expect("login");
                logins.lock().unwrap()[i] = Some(started.cookies().cookie_header());
            }
        }
    })
    .await;
    let mut all: Vec<Credential> = std::mem::take(&mut *issued.lock().unwrap())
        .into_iter()
        .map(|key| Credential::Key(key.expect("issued")))
        .collect();
    all.extend(
        std::mem::take(&mut *logins.lock().unwrap())
            .into_iter()
            .map(|cookie| Credential::Cookie(cookie.expect("logged in"))),
    );
    let all = Arc::new(all);
    let memory_issued = used_memory(&mut stats).await;

    let observers = observers(&connection, &key_store, last_use);
    let service = stack(&connection, &key_store, &sessions, observers.clone());
    // Every credential once: caches filled, and every key's per-request state exists.
    spread(all.len(), {
        let (all, service) = (Arc::clone(&all), service.clone());
        move |i| {
            let (request, service) = (all[i].request(), service.clone());
            async move { pass(service, request).await }
        }
    })
    .await;
    let before = command_calls(&mut stats).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|task| {
            let (all, mut service) = (Arc::clone(&all), service.clone());
            tokio::spawn(async move {
                let mut random = Random(super::SEED + task as u64);
                let mut times = Vec::with_capacity(TIMED / CLIENTS);
                for _ in 0..TIMED / CLIENTS {
                    let request = all[random.below(all.len())].request();
                    let sent = Instant::now();
                    let response = service.ready().await.unwrap().call(request).await;
                    assert!(response.unwrap().status().is_success());
                    times.push(sent.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::with_capacity(TIMED);
    for task in tasks {
        times.extend(task.await.expect("task"));
    }
    let elapsed = started.elapsed();
    let after = command_calls(&mut stats).await;
    // The background writers (activity, usage history, last use) finish their queues.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let memory_after = used_memory(&mut stats).await;
    let (log, daily, recorder) = &observers;
    let dropped = [log.dropped(), daily.dropped(), recorder.dropped()];
    times.sort_unstable();
    let mut commands: Vec<(String, f64)> = after
        .iter()
        .map(|(name, calls)| {
            let delta = calls - before.get(name).copied().unwrap_or(0);
            (name.clone(), delta as f64 / TIMED as f64)
        })
        .filter(|(_, per)| *per >= 0.005)
        .collect();
    commands.sort_by(|a, b| b.1.total_cmp(&a.1));
    let n = all.len() as f64;
    Row {
        keys,
        last_use,
        per_second: TIMED as f64 / elapsed.as_secs_f64(),
        p99: times[TIMED * 99 / 100],
        commands,
        store_bytes: (memory_issued - memory_before) as f64 / n,
        state_bytes: (memory_after - memory_issued) as f64 / n,
        touched: all.len(),
        dropped,
    }
}

async fn pass<S, B>(mut service: S, request: Request<String>)
where
    S: Service<Request<String>, Response = Response<B>, Error = Infallible>,
{
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    assert!(response.status().is_success());
}

/// Prints the Redis table, `max` keys at most.
pub fn rows(max: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (url, _server) = server();
    // Last use written at most once a second per key (the quickstart's), then once a
    // minute: with many keys nearly every request is its key's first of the second.
    let sizes = [1_000, 100_000].into_iter().filter(|&keys| keys <= max);
    let rows: Vec<Row> = [1, 60]
        .into_iter()
        .flat_map(|secs| {
            sizes
                .clone()
                .map(move |keys| (keys, Duration::from_secs(secs)))
        })
        .map(|(keys, last_use)| runtime.block_on(measure(&url, keys, last_use)))
        .collect();
    println!("\nOn Redis ({CLIENTS} requests at a time, two threads, {TIMED} timed requests):\n");
    println!(
        "| keys | last use every | stack requests/s | p99 | vs 1,000 keys | commands per request | Redis bytes per credential | and per credential once touched | writes dropped (log, history, last use) |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---:|---|");
    for row in &rows {
        let base = rows
            .iter()
            .find(|r| r.last_use == row.last_use)
            .map_or(row.per_second, |r| r.per_second);
        let commands: Vec<String> = row
            .commands
            .iter()
            .map(|(name, per)| format!("{name} {per:.2}"))
            .collect();
        println!(
            "| {} | {} s | {:.0} | {:.0} µs | {:.2} | {} | {:.0} | {:.0} ({} touched) | {:?} |",
            row.keys,
            row.last_use.as_secs(),
            row.per_second,
            row.p99.as_secs_f64() * 1e6,
            row.per_second / base,
            commands.join(", "),
            row.store_bytes,
            row.state_bytes,
            row.touched,
            row.dropped,
        );
    }
}

//! Redis round trips and time per request for the multi-instance stack: `CachedKeyStore`
//! over `RedisKeyStore` plus `RedisRateLimiter`, on one server and on a three-master Redis
//! Cluster (counting, on the cluster, the commands of every master and the `MOVED` and
//! `ASK` redirections they answered). Starts a private `redis-server` and cluster (or uses
//! `REDIS_URL` and `REDIS_CLUSTER_NODES`). Run with
//! `cargo bench --bench redis_round_trips --features redis`.

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_api_key::rate_limit::Quota;
use tower_api_key::store::ManageKeys;

use futures_util::FutureExt;
use http::{header::AUTHORIZATION, HeaderValue, Request, Response};
use tower::{Layer, Service, ServiceExt};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::ClassName;
use tower_api_key::rate_limit::{RateClass, RateLimits, RedisRateLimiter};
use tower_api_key::store::{CachedKeyStore, RedisKeyStore};
use tower_api_key::{AuthLayer, ForgScope, NewKey, RedisConnection};

#[path = "../tests/it/common/redis_cluster.rs"]
mod test_cluster;

/// Commands clients sent (round trips): `EVALSHA`/`EVAL`/`SCRIPT` and `HGETALL` (never
/// called inside the crate's scripts, whose own `GET`/`SET`/`TIME` run server-side).
/// One request through `service`, which must let it pass.
async fn pass<S, B>(service: &mut S, request: Request<()>)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("ok");
    assert!(response.status().is_success());
}

/// The `calls=` (or `count=`) of the `INFO <section>` lines `<prefix><name>:` for `names`.
async fn info_counts(
    connection: &mut redis::aio::MultiplexedConnection,
    section: &str,
    prefix: &str,
    names: &[&str],
) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(connection)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix(prefix)?.split_once(':')?;
            names.contains(&name).then_some(rest)
        })
        .filter_map(|rest| {
            let (_, count) = rest.split(',').next()?.split_once('=')?;
            count.parse::<u64>().ok()
        })
        .sum()
}

/// `EVALSHA` calls and the server's microseconds spent in them so far, every server.
async fn evalsha_server_time(stats: &mut [redis::aio::MultiplexedConnection]) -> (u64, u64) {
    let (mut calls, mut usec) = (0, 0);
    for connection in stats {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(connection)
            .await
            .expect("INFO");
        let Some(line) = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        else {
            continue;
        };
        for field in line.split(',') {
            match field.split_once('=') {
                Some(("calls", n)) => calls += n.parse::<u64>().unwrap_or(0),
                Some(("usec", n)) => usec += n.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    (calls, usec)
}

/// Round trips (over every server in `stats`) and redirections answered so far.
async fn counts(stats: &mut [redis::aio::MultiplexedConnection]) -> (u64, u64) {
    let (mut commands, mut redirects) = (0, 0);
    for connection in stats {
        commands += info_counts(
            connection,
            "commandstats",
            "cmdstat_",
            &["evalsha", "eval", "script", "hgetall"],
        )
        .await;
        redirects += info_counts(connection, "errorstats", "errorstat_", &["MOVED", "ASK"]).await;
    }
    (commands, redirects)
}

/// Sequential microseconds per request of one run: the stack, and the raw read-only and
/// writing one-liners through the same connection.
struct Sequential {
    stack: f64,
    raw: f64,
    writing: f64,
}

/// One run of the stack on `connection`, with `stats` connected to every server (every
/// master, on a cluster): the cold first request, then 10,000 hot ones with the limiter
/// and 10,000 through authentication alone.
async fn measure(
    label: &str,
    connection: RedisConnection,
    stats: &mut [redis::aio::MultiplexedConnection],
) -> Sequential {
    let raw_connection = connection.clone();
    let store = Arc::new(CachedKeyStore::new(Arc::new(
        RedisKeyStore::new(connection.clone())
            .with_policy(tower_api_key::forg::key_policy())
            .with_namespace("bench"),
    )));
    let issued = store
        .inner()
        .issue(NewKey::new("bench", "k", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .await
        .expect("issue");
    let limiter = RedisRateLimiter::new(connection).with_namespace("bench");
    let roomy = RateClass::per_key(
        ClassName::from_static("bench"),
        Quota::new(std::num::NonZeroU32::MAX, std::num::NonZeroU32::MIN),
    );
    let inner = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut with_limit = AuthLayer::new(Arc::clone(&store))
        .layer(RateLimits::backed_by(limiter).layer(roomy).layer(inner));
    let mut auth_only = AuthLayer::new(Arc::clone(&store)).layer(inner);
    let bearer =
        HeaderValue::try_from(format!("Bearer {}", issued.key().expose_secret())).expect("header");
    let request = || {
        let mut request = Request::new(());
        request.headers_mut().insert(AUTHORIZATION, bearer.clone());
        request
    };

    // First request: the cache is cold, the record is read once.
    let before = counts(stats).await;
    pass(&mut with_limit, request()).await;
    let cold = counts(stats).await.0 - before.0;

    // The baseline in the same run: `EVALSHA` of a one-line script through the same
    // connection, on a key in the limiter key's slot. Blocks of each in turn, so that the
    // machine's drift falls on both.
    let raw_key = format!("bench:{{k:{}}}:raw", issued.record().id());
    let raw_script = redis::Script::new("return 1");
    // The same with a write, as the limiter's script does (on the cluster the nodes keep
    // an append-only file).
    let writing_script = redis::Script::new("redis.call('SET', KEYS[1], '1', 'PX', 1000) return 1");
    let mut raw_connection = raw_connection.clone();
    let _: i64 = raw_script
        .key(&raw_key)
        .invoke_async(&mut raw_connection)
        .await
        .expect("raw EVALSHA");
    let (blocks, per_block) = (5u64, 2_000u64);
    let n = blocks * per_block;
    let (mut elapsed, mut raw_elapsed, mut writing_elapsed) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let before = counts(stats).await;
    let server_before = evalsha_server_time(stats).await;
    for _ in 0..blocks {
        let started = Instant::now();
        for _ in 0..per_block {
            pass(&mut with_limit, request()).await;
        }
        elapsed += started.elapsed();
        for (script, total) in [
            (&raw_script, &mut raw_elapsed),
            (&writing_script, &mut writing_elapsed),
        ] {
            let started = Instant::now();
            for _ in 0..per_block {
                let _: i64 = script
                    .key(&raw_key)
                    .invoke_async(&mut raw_connection)
                    .await
                    .expect("one-line EVALSHA");
            }
            *total += started.elapsed();
        }
    }
    let server_after = evalsha_server_time(stats).await;
    let after = counts(stats).await;
    // The loops' EVALSHAs: the limiter's script and the two one-liners, n each.
    let server_us = (server_after.1 - server_before.1) as f64
        / (server_after.0 - server_before.0).max(1) as f64;
    let (hot, redirects) = (after.0 - before.0 - 2 * n, after.1 - before.1);

    let before = counts(stats).await;
    let started_auth = Instant::now();
    for _ in 0..n {
        let response = auth_only
            .ready()
            .now_or_never()
            .expect("ready")
            .expect("ok")
            .call(request())
            .now_or_never()
            .expect("cache hits answer at once")
            .expect("ok");
        assert!(response.status().is_success());
    }
    let elapsed_auth = started_auth.elapsed();
    let auth_commands = counts(stats).await.0 - before.0;

    println!(
        "{label}/cold first request: {cold} round trips (record read, script load, rate limit)"
    );
    let per_request = elapsed.as_secs_f64() * 1e6 / n as f64;
    let raw = raw_elapsed.as_secs_f64() * 1e6 / n as f64;
    let writing = writing_elapsed.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{label}/auth + rate limit, cache hit: {:.2} round trips per request, {redirects} redirections, {per_request:.1} µs per request ({n} requests)",
        hot as f64 / n as f64,
    );
    println!(
        "{label}/raw EVALSHA (one-line script, same connection, same slot): {raw:.1} µs; stack / raw = {:.2}; writing one-liner {:.1} µs; server time per EVALSHA (all three scripts): {server_us:.1} µs",
        per_request / raw,
        writing
    );
    for clients in [16usize, 64] {
        let total = 20_000usize;
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let mut service = with_limit.clone();
                let bearer = bearer.clone();
                tokio::spawn(async move {
                    for _ in 0..total / clients {
                        let mut request = Request::new(());
                        request.headers_mut().insert(AUTHORIZATION, bearer.clone());
                        pass(&mut service, request).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let stack_rps = total as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let mut connection = raw_connection.clone();
                let (script, key) = (raw_script.clone(), raw_key.clone());
                tokio::spawn(async move {
                    for _ in 0..total / clients {
                        let _: i64 = script
                            .key(&key)
                            .invoke_async(&mut connection)
                            .await
                            .expect("raw");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let raw_rps = total as f64 / started.elapsed().as_secs_f64();
        println!(
            "{label}/{clients} concurrent requests on one instance: stack {stack_rps:.0} requests/s, raw EVALSHA {raw_rps:.0}/s, stack / raw = {:.2}",
            stack_rps / raw_rps
        );
    }
    println!(
        "{label}/auth only, cache hit: {:.2} round trips per request, {:.2} µs per request",
        auth_commands as f64 / n as f64,
        elapsed_auth.as_secs_f64() * 1e6 / n as f64
    );
    Sequential {
        stack: per_request,
        raw,
        writing,
    }
}

/// `CONFIG SET appendonly <on>` on every server.
async fn append_only(stats: &mut [redis::aio::MultiplexedConnection], on: bool) {
    for connection in stats {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg(if on { "yes" } else { "no" })
            .query_async(connection)
            .await
            .expect("CONFIG SET appendonly");
    }
}

async fn stats_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let mut connection = redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .expect("PING");
    connection
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (url, mut server) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let child = Command::new("redis-server")
                .args(["--port", "6391", "--bind", "127.0.0.1", "--save", ""])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (apt-get install redis-server) or REDIS_URL");
            for _ in 0..200 {
                if tokio::net::TcpStream::connect("127.0.0.1:6391")
                    .await
                    .is_ok()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ("redis://127.0.0.1:6391".to_owned(), Some(child))
        }
    };
    let mut stats = [stats_connection(&url).await];
    // redis-rs's own default first (Nagle's algorithm on), then the crate's (TCP_NODELAY).
    let nagle = redis::IntoConnectionInfo::into_connection_info(url.as_str())
        .expect("url")
        .set_tcp_settings(redis::io::tcp::TcpSettings::default());
    let nagle = redis::Client::open(nagle).expect("client");
    measure(
        "redis (TCP_NODELAY off)",
        RedisConnection::from_client(nagle).await.expect("connect"),
        &mut stats,
    )
    .await;
    let standalone = measure(
        "redis",
        RedisConnection::open(&url).await.expect("connect"),
        &mut stats,
    )
    .await;
    // The server's own limit at the same concurrency, from its own client.
    if server.is_some() {
        let sha = redis::Script::new("return 1").get_hash().to_owned();
        for clients in ["16", "64"] {
            let output = Command::new("redis-benchmark")
                .args(["-p", "6391", "-c", clients, "-n", "100000", "-q"])
                .args(["EVALSHA", &sha, "1", "bench:{k:x}:raw"])
                .output();
            match output {
                Ok(output) => println!(
                    "redis/redis-benchmark -c {clients} EVALSHA: {}",
                    String::from_utf8_lossy(&output.stdout)
                        .trim()
                        .rsplit('\r')
                        .next()
                        .unwrap_or("")
                        .trim()
                ),
                Err(error) => println!("redis-benchmark: {error}"),
            }
        }
    }
    if let Some(child) = server.as_mut() {
        let _ = child.kill();
    }

    let private;
    let nodes: Vec<String> = match std::env::var("REDIS_CLUSTER_NODES") {
        Ok(nodes) => nodes.split(',').map(str::to_owned).collect(),
        Err(_) => {
            private = test_cluster::RedisCluster::start(false).expect("a private Redis Cluster");
            private.urls.clone()
        }
    };
    let mut stats = Vec::new();
    for node in &nodes {
        stats.push(stats_connection(node).await);
    }
    let connection = RedisConnection::cluster(&nodes).await.expect("cluster");
    let with_aof = measure("cluster (append-only file)", connection.clone(), &mut stats).await;
    // The same persistence as the standalone server above (none), for the ratio.
    append_only(&mut stats, false).await;
    let without = measure("cluster (no append-only file)", connection, &mut stats).await;
    append_only(&mut stats, true).await;
    println!(
        "cluster / standalone, same persistence (none): stack {:.2}, raw {:.2}, writing one-liner {:.2}; \
         with the harness's append-only file (fsync once a second): stack {:.2}, writing {:.2}",
        without.stack / standalone.stack,
        without.raw / standalone.raw,
        without.writing / standalone.writing,
        with_aof.stack / standalone.stack,
        with_aof.writing / standalone.writing,
    );
}

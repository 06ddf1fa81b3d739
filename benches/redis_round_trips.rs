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

/// One run of the stack on `connection`, with `stats` connected to every server (every
/// master, on a cluster): the cold first request, then 10,000 hot ones with the limiter
/// and 10,000 through authentication alone.
async fn measure(
    label: &str,
    connection: RedisConnection,
    stats: &mut [redis::aio::MultiplexedConnection],
) {
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

    let n = 10_000u64;
    let before = counts(stats).await;
    let started = Instant::now();
    for _ in 0..n {
        pass(&mut with_limit, request()).await;
    }
    let elapsed = started.elapsed();
    let after = counts(stats).await;
    let (hot, redirects) = (after.0 - before.0, after.1 - before.1);

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
    println!(
        "{label}/auth + rate limit, cache hit: {:.2} round trips per request, {redirects} redirections, {:.1} µs per request ({n} requests)",
        hot as f64 / n as f64,
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "{label}/auth only, cache hit: {:.2} round trips per request, {:.2} µs per request",
        auth_commands as f64 / n as f64,
        elapsed_auth.as_secs_f64() * 1e6 / n as f64
    );
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

#[tokio::main(flavor = "current_thread")]
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
    measure(
        "redis",
        RedisConnection::open(&url).await.expect("connect"),
        &mut stats,
    )
    .await;
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
    measure(
        "cluster",
        RedisConnection::cluster(&nodes).await.expect("cluster"),
        &mut stats,
    )
    .await;
}

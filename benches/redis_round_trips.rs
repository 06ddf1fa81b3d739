//! Redis round trips and time per request for the multi-instance stack: `CachedKeyStore`
//! over `RedisKeyStore` plus `RedisRateLimiter`. Starts a private `redis-server` (or uses
//! `REDIS_URL`). Run with `cargo bench --bench redis_round_trips --features redis`.

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_api_key::rate_limit::Quota;
use tower_api_key::store::ManageKeys;

use futures_util::FutureExt;
use http::{header::AUTHORIZATION, HeaderValue, Request, Response};
use redis::AsyncCommands;
use tower::{Layer, Service, ServiceExt};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::ClassName;
use tower_api_key::rate_limit::{RateClass, RateLimits, RedisRateLimiter};
use tower_api_key::store::{CachedKeyStore, RedisKeyStore};
use tower_api_key::{AuthLayer, ForgScope, NewKey};

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

async fn commands_processed(connection: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            ["evalsha", "eval", "script", "hgetall"]
                .contains(&name)
                .then_some(rest)
        })
        .filter_map(|rest| {
            rest.strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
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
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut stats = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = stats.set("warm", 1).await.expect("set");

    let store = Arc::new(CachedKeyStore::new(Arc::new(
        RedisKeyStore::connect(&url)
            .await
            .expect("store")
            .with_namespace("bench"),
    )));
    let issued = store
        .inner()
        .issue(NewKey::new("bench", "k", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .await
        .expect("issue");
    let limiter = RedisRateLimiter::connect(&url)
        .await
        .expect("limiter")
        .with_namespace("bench");
    let roomy = RateClass::per_key(
        ClassName::from_static("bench"),
        Quota::new(std::num::NonZeroU32::MAX, std::num::NonZeroU32::MIN),
    );
    let inner = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut with_limit = AuthLayer::new(Arc::clone(&store))
        .layer(RateLimits::with_backend(limiter).layer(roomy).layer(inner));
    let mut auth_only = AuthLayer::new(Arc::clone(&store)).layer(inner);
    let bearer =
        HeaderValue::try_from(format!("Bearer {}", issued.key().expose_secret())).expect("header");
    let request = || {
        let mut request = Request::new(());
        request.headers_mut().insert(AUTHORIZATION, bearer.clone());
        request
    };

    // First request: the cache is cold, the record is read once.
    let before = commands_processed(&mut stats).await;
    pass(&mut with_limit, request()).await;
    let cold = commands_processed(&mut stats).await - before;

    let n = 10_000u64;
    let before = commands_processed(&mut stats).await;
    let started = Instant::now();
    for _ in 0..n {
        pass(&mut with_limit, request()).await;
    }
    let elapsed = started.elapsed();
    let hot = commands_processed(&mut stats).await - before;

    let before = commands_processed(&mut stats).await;
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
    let auth_commands = commands_processed(&mut stats).await - before;

    println!("redis/cold first request: {cold} round trips (record read, script load, rate limit)");
    println!(
        "redis/auth + rate limit, cache hit: {:.2} round trips per request, {:.1} µs per request ({n} requests)",
        hot as f64 / n as f64,
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "redis/auth only, cache hit: {:.2} round trips per request, {:.2} µs per request",
        auth_commands as f64 / n as f64,
        elapsed_auth.as_secs_f64() * 1e6 / n as f64
    );
    if let Some(child) = server.as_mut() {
        let _ = child.kill();
    }
}

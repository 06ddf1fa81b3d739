//! Two instances of one API on two ports, sharing keys, quotas and revocations through a
//! Redis Cluster of three masters, each instance seeded with a different node.
//!
//! ```text
//! cargo run --example redis_cluster --features redis
//! ```
//!
//! Uses `REDIS_CLUSTER_NODES` (comma-separated URLs of some nodes) when set, else starts a
//! private three-master cluster on free loopback ports from `redis-server` and `redis-cli`
//! (Debian: `apt-get install redis-server`), the one the tests use, stopped when the demo
//! ends.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use tower_api_key::forg;
use tower_api_key::rate_limit::Quota;
use tower_api_key::store::ManageKeys;

use axum::handler::Handler;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_api_key::key::KeyFamily;
use tower_api_key::manage::KeysApi;
use tower_api_key::rate_limit::{RateLimits, RedisRateLimiter};
use tower_api_key::store::{CachedKeyStore, RedisKeyStore, RevocationListener};
use tower_api_key::{require, AuthLayer, ForgScope, NewKey, Principal, RedisConnection};

type Store = CachedKeyStore<RedisKeyStore<ForgScope>>;

/// One instance: the routes behind authentication (cached Redis store) and shared limits.
pub fn instance(store: Arc<Store>, limiter: RedisRateLimiter) -> Router {
    let limits = RateLimits::backed_by(limiter);
    let ai = forg::AI.with_quota(Quota::per_minute(
        NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
    ));
    let standard = Router::new()
        .route(
            "/v1/sessions",
            get(sessions.layer(require(ForgScope::ReadSessions))),
        )
        // The management API, revoking through the cache (never around it): only the
        // caller's own owner's keys of its own environment, as everywhere else.
        .nest(
            "/v1",
            KeysApi::new(Arc::clone(&store))
                .allow_keys_with(ForgScope::Admin)
                .router(),
        )
        .route_layer(limits.layer(forg::STANDARD));
    let reviews = Router::new()
        .route("/v1/reviews", post(review))
        .route_layer(limits.layer(ai));
    standard.merge(reviews).layer(AuthLayer::new(store))
}

async fn sessions(identity: Principal) -> Json<Value> {
    Json(json!({ "data": [], "caller": identity.key_id().as_str() }))
}

async fn review(identity: Principal) -> Json<Value> {
    Json(json!({ "data": { "score": 0.9 }, "caller": identity.key_id().as_str() }))
}

/// The cluster the tests start (three masters on free loopback ports, stopped when the
/// demo ends), unless `REDIS_CLUSTER_NODES` names one.
#[path = "../tests/it/common/redis_cluster.rs"]
mod test_cluster;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let demo_cluster;
    let nodes = match std::env::var("REDIS_CLUSTER_NODES") {
        Ok(nodes) => nodes.split(',').map(str::to_owned).collect(),
        Err(_) => {
            demo_cluster = test_cluster::RedisCluster::start(false)
                .ok_or("set REDIS_CLUSTER_NODES, or install redis-server")?;
            demo_cluster.urls.clone()
        }
    };
    let namespace = format!("demo{}", std::process::id());
    let mut servers = Vec::new();
    let mut listeners = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let mut first_store = None;
    // A through the first node, B through the last: each learns the cluster from it, and
    // B hears A's revocations on its own node.
    for (port, seed) in [(8081u16, &nodes[0]), (8082, &nodes[nodes.len() - 1])] {
        let redis = RedisConnection::cluster([seed]).await?;
        let store = Arc::new(CachedKeyStore::new(Arc::new(
            RedisKeyStore::new(redis.clone())
                .with_policy(tower_api_key::forg::key_policy())
                .with_namespace(namespace.clone()),
        )));
        listeners.push(RevocationListener::spawn(Arc::clone(&store)));
        let limiter = RedisRateLimiter::new(redis).with_namespace(&namespace);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        addrs.push(listener.local_addr()?);
        first_store.get_or_insert_with(|| Arc::clone(&store));
        let app = instance(store, limiter);
        servers.push(tokio::spawn(
            async move { axum::serve(listener, app).await },
        ));
    }
    let store = first_store.ok_or("no instance")?;
    let admin = store
        .inner()
        // A live admin key: a key acts only on keys of its own environment.
        .issue(NewKey::new("org_acme", "admin", &KeyFamily::FORG_LIVE).scopes(ForgScope::Admin))
        .await?;
    let live = store
        .issue(
            NewKey::new("org_acme", "app", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadSessions),
        )
        .await?;
    let (a, b) = (
        format!("http://{}", addrs[0]),
        format!("http://{}", addrs[1]),
    );
    let (live_key, admin_key) = (live.key().expose_secret(), admin.key().expose_secret());
    println!(
        "two instances sharing the Redis Cluster at {} (namespace {namespace}): A = {a}, B = {b}\n",
        nodes.join(", ")
    );
    println!("Shared quota: 10 AI requests a minute per key, wherever they land:");
    println!("  for i in $(seq 6); do curl -s -o /dev/null -w '%{{http_code}} ' -X POST {a}/v1/reviews -H 'Authorization: Bearer {live_key}'; \\");
    println!("    curl -s -o /dev/null -w '%{{http_code}} ' -X POST {b}/v1/reviews -H 'Authorization: Bearer {live_key}'; done; echo");
    println!("  # 200 x10, then 429 on both instances\n");
    println!("Revocation on A, seen by B:");
    println!("  curl -s {b}/v1/sessions -H 'Authorization: Bearer {live_key}'      # 200 (now cached on B)");
    println!(
        "  curl -s -X POST {a}/v1/keys/{}/revoke -H 'Authorization: Bearer {admin_key}'",
        live.record().id()
    );
    println!("  curl -i {b}/v1/sessions -H 'Authorization: Bearer {live_key}'      # 401\n");
    println!("serving until Ctrl-C");
    tokio::signal::ctrl_c().await?;
    drop(listeners);
    for server in servers {
        server.abort();
    }
    Ok(())
}

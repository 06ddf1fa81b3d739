//! The Redis-backed types on a real three-master Redis Cluster (started by the tests): the
//! key-store and spend suites, one quota and one failed-auth budget across instances
//! connected through different nodes, the spend cap under concurrency, revocations heard
//! through another node, state spread over the masters, and a master restarted under the
//! clients.
#![cfg(feature = "redis")]

use crate::common;
use crate::conformance;
use crate::usage_conformance;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::redis_cluster::RedisCluster;
use common::{bearer, from, send, Probe};
use http::StatusCode;
use tower::Layer;
use tower_api_key::clock::ManualClock;
use tower_api_key::failure_limit::{FailureLimit, FailureLimitLayer};
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::rate_limit::{ClassName, Quota, RateClass, RateLimits, RedisRateLimiter};
use tower_api_key::store::{KeyId, KeyPolicy, ManageKeys, RedisKeyStore};
use tower_api_key::usage::{Budgets, RedisUsage, SpendCaps};
use tower_api_key::{AuthLayer, ForgScope, NewKey, RedisConnection};

mod listener;

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap())
}

/// A namespace per test: tests share the cluster.
fn namespace() -> String {
    format!("c{}", KeyId::generate().unwrap().as_str())
}

async fn store(connection: RedisConnection, ns: &str) -> RedisKeyStore<ForgScope> {
    RedisKeyStore::new(connection)
        .with_policy(tower_api_key::forg::key_policy())
        .with_namespace(ns)
}

struct ClusterStores(&'static RedisCluster);

impl conformance::Fixture for ClusterStores {
    type Store = RedisKeyStore<ForgScope>;

    fn login_cycles(&self) -> usize {
        1_200 // past the SQL sweep's 1,024 inserts; each cycle is several round trips
    }

    async fn store(&self, policy: KeyPolicy) -> Arc<Self::Store> {
        let store = store(self.0.connection().await, &namespace()).await;
        Arc::new(store.with_policy(policy))
    }
}

mod key_store_on_a_cluster {
    use super::*;
    conformance_suite!(RedisCluster::shared().map(ClusterStores));
}

struct ClusterUsage(&'static RedisCluster);

impl usage_conformance::Fixture for ClusterUsage {
    type Backend = RedisUsage;

    async fn backend(&self, clock: ManualClock) -> RedisUsage {
        RedisUsage::new(self.0.connection().await)
            .with_namespace(&namespace())
            .with_clock(clock)
    }
}

mod spend_on_a_cluster {
    use super::*;
    usage_suite!(RedisCluster::shared().map(ClusterUsage));
}

#[tokio::test]
async fn instances_through_different_nodes_share_one_quota() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let mut connections = Vec::new();
    for node in 0..3 {
        connections.push(cluster.connection_through(node).await);
    }
    // Four keys, whose buckets (tagged by key id) almost surely sit on more than one
    // master; where they sit is the spread test's business.
    crate::redis_shared::one_quota(connections, 4).await;
}

#[tokio::test]
async fn instances_through_different_nodes_share_one_failed_authentication_budget() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    crate::redis_shared::one_failed_authentication_budget([
        cluster.connection_through(0).await,
        cluster.connection_through(1).await,
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_spend_past_the_cap() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let ns = namespace();
    let keys = Arc::new(
        tower_api_key::MemoryKeyStore::<ForgScope>::new()
            .with_policy(tower_api_key::forg::key_policy()),
    );
    let issued = keys
        .issue(NewKey::new("org", "spender", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let budgets = Budgets::new().default_cap(Environment::Live, 25);
    let probe = Probe::new();
    let mut instances = Vec::new();
    for node in 0..3 {
        let usage = RedisUsage::new(cluster.connection_through(node).await).with_namespace(&ns);
        let caps = SpendCaps::backed_by(budgets.clone(), usage);
        instances.push(
            AuthLayer::new(Arc::clone(&keys)).layer(caps.layer(1).layer(probe.service::<String>())),
        );
    }
    let key = issued.key().expose_secret();
    let answers = futures_util::future::join_all(
        (0..90).map(|i| send(instances[i % 3].clone(), bearer(key))),
    )
    .await;
    let allowed = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.status == StatusCode::PAYMENT_REQUIRED)
        .count();
    assert_eq!(
        (allowed, refused),
        (25, 65),
        "90 at once against a cap of 25"
    );
    assert_eq!(probe.calls(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_heard_through_another_node() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    // Instance A knows only node 0, instance B only node 2: each subscribes there, and the
    // revocation is published on whichever master holds the key store's slot.
    crate::redis_shared::a_revocation_reaches_the_other_instance(
        cluster.connection_through(0).await,
        cluster.connection_through(2).await,
    )
    .await;
}

/// 1,000 keys through the limiter, spend caps and failed-auth limit: their state lands on
/// every master, none holding more than half of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_state_spreads_over_every_master() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let ns = namespace();
    let connection = cluster.connection().await;
    let store = Arc::new(
        store(connection.clone(), &ns)
            .await
            .with_policy(tower_api_key::forg::key_policy()),
    );
    // Quotas of one a minute: each key's bucket (and each address's failure counter) lives
    // a minute after its one request, so all are still there when counted.
    let class = RateClass::per_key(ClassName::from_static("spread"), per_minute(1));
    let caps = SpendCaps::backed_by(
        Budgets::new().default_cap(Environment::Test, 1_000),
        RedisUsage::new(connection.clone()).with_namespace(&ns),
    );
    let failures = FailureLimit::backed_by(
        per_minute(1),
        RedisRateLimiter::new(connection.clone()).with_namespace(&ns),
    );
    let probe = Probe::new();
    let service = FailureLimitLayer::new(failures).layer(
        AuthLayer::new(Arc::clone(&store)).layer(
            RateLimits::backed_by(RedisRateLimiter::new(connection).with_namespace(&ns))
                .layer(class)
                .layer(caps.layer(1).layer(probe.service::<String>())),
        ),
    );
    let mut keys = Vec::new();
    for k in 0..1_000 {
        let issued = store
            .issue(NewKey::new(format!("owner{k}"), "k", &KeyFamily::FORG_TEST))
            .await
            .unwrap();
        keys.push(issued.key().expose_secret().to_owned());
    }
    for (c, chunk) in keys.chunks(50).enumerate() {
        futures_util::future::join_all(chunk.iter().enumerate().map(|(i, key)| {
            let service = service.clone();
            async move {
                let answer = send(service.clone(), from("192.0.2.1", bearer(key))).await;
                assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
                // A wrong key from an address of its own: a failed-auth counter.
                let guess = from(
                    &format!("203.0.{c}.{i}"),
                    bearer("fos_0000000000000000000000000000000000000000000000000000000000000000"),
                );
                assert_eq!(send(service, guess).await.status, StatusCode::UNAUTHORIZED);
            }
        }))
        .await;
    }
    assert_eq!(probe.calls(), 1_000);
    let counts = cluster.keys_per_master(&format!("{ns}:{{*")).await;
    let total: usize = counts.iter().sum();
    eprintln!("per-request keys per master: {counts:?}");
    assert!(
        total >= 2_000,
        "a bucket and a spend counter per key: {counts:?}"
    );
    for count in &counts {
        assert!(*count > 0, "every master holds some: {counts:?}");
        assert!(*count <= total / 2, "none holds more than half: {counts:?}");
    }
}

/// A master killed and started again: while it is down the requests that need it fail
/// closed (503), the others go on; once it is back, every request is answered again
/// without reconnecting anything by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_survive_a_master_restart() {
    let Some(cluster) = RedisCluster::start(true) else {
        eprintln!("needs a private cluster (REDIS_CLUSTER_NODES is set): skipped");
        return;
    };
    let ns = namespace();
    let connection = cluster.connection().await;
    let store = Arc::new(store(connection.clone(), &ns).await);
    let issued = store
        .issue(NewKey::new("org", "k", &KeyFamily::FOS).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    let probe = Probe::new();
    let class = RateClass::per_key(ClassName::from_static("restart"), per_minute(1_000));
    let service = AuthLayer::new(Arc::clone(&store)).layer(
        RateLimits::backed_by(RedisRateLimiter::new(connection.clone()).with_namespace(&ns))
            .layer(class)
            .layer(probe.service::<String>()),
    );
    let key = issued.key().expose_secret();
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );

    // The master holding the key store's records.
    let slot_owner = {
        let mut owner = None;
        for node in 0..3 {
            let mut c = cluster.node(node).await;
            let found: usize = redis::cmd("EXISTS")
                .arg(format!("{{{ns}}}:id:{}", issued.record().id()))
                .query_async(&mut c)
                .await
                .unwrap_or(0);
            if found == 1 {
                owner = Some(node);
            }
        }
        owner.expect("one master holds the record")
    };
    cluster.kill(slot_owner);
    let down = send(service.clone(), bearer(key)).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "fail closed");
    assert_eq!(probe.calls(), 1);
    assert!(connection.ping().await.is_err(), "readiness says not ready");

    cluster.spawn(slot_owner).unwrap();
    cluster.wait_until_ok().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = send(service.clone(), bearer(key)).await.status;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused 30 s after the master came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(connection.ping().await.is_ok(), "ready again");
    assert_eq!(probe.calls(), 2);
}

/// A cluster that speaks only TLS (clients and bus), its certificate from a CA made at test
/// time: with the CA, the key store, limiter and revocation listener work through it (the
/// listener subscribing over TLS on another node than the revoking instance's); without
/// it, the connection is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_with_a_private_ca() {
    use redis::TlsCertificates;
    let Some(cluster) = RedisCluster::start_tls(common::certificates::test_certificates()) else {
        eprintln!("needs a private cluster (REDIS_CLUSTER_NODES is set): skipped");
        return;
    };
    let ca = TlsCertificates {
        client_tls: None,
        root_cert: Some(cluster.ca_pem.clone().unwrap().into_bytes()),
    };
    let through =
        |node: usize| RedisConnection::cluster_with_tls([cluster.urls[node].as_str()], ca.clone());
    let (a, b) = (
        through(0).await.expect("TLS with the private CA"),
        through(2).await.unwrap(),
    );
    assert!(b.ping().await.is_ok(), "every master answers over TLS");
    crate::redis_shared::store_limiter_and_revocations_work(a, b).await;

    // The bundled roots do not know the private CA: refused, not downgraded.
    assert!(RedisConnection::cluster([cluster.urls[0].as_str()])
        .await
        .is_err());
}

/// Issue 36.4: the example's revoke goes through `KeysApi` and the cache. Failed before: it
/// checked only the owner, so the demo's `forg_test_` admin key revoked the live key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_revokes_through_the_management_api_only_within_an_environment() {
    use crate::examples::redis_cluster::instance;
    use tower_api_key::store::{CachedKeyStore, RevocationListener};
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let ns = namespace();
    let mut apps = Vec::new();
    let mut listeners = Vec::new();
    let mut stores = Vec::new();
    for node in [0, 2] {
        let connection = cluster.connection_through(node).await;
        let store = Arc::new(CachedKeyStore::new(Arc::new(
            store(connection.clone(), &ns).await,
        )));
        listeners.push(RevocationListener::spawn(Arc::clone(&store)));
        apps.push(instance(
            Arc::clone(&store),
            RedisRateLimiter::new(connection).with_namespace(&ns),
        ));
        stores.push(store);
    }
    let issue = |family: KeyFamily, scope: ForgScope| {
        let store = Arc::clone(&stores[0]);
        async move {
            store
                .issue(NewKey::new("org_acme", "k", &family).scopes(scope))
                .await
                .unwrap()
        }
    };
    let live = issue(KeyFamily::FORG_LIVE, ForgScope::ReadSessions).await;
    let test_admin = issue(KeyFamily::FORG_TEST, ForgScope::Admin).await;
    let live_admin = issue(KeyFamily::FORG_LIVE, ForgScope::Admin).await;
    let call = |app: &axum::Router, method: &str, path: String, key: &str| {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .body(String::new())
            .unwrap();
        send(app.clone(), from("203.0.113.9", request))
    };
    let sessions = |app| {
        call(
            app,
            "GET",
            "/v1/sessions".into(),
            live.key().expose_secret(),
        )
    };
    assert_eq!(
        sessions(&apps[1]).await.status,
        StatusCode::OK,
        "cached on B"
    );
    let revoke = format!("/v1/keys/{}/revoke", live.record().id());
    let answer = call(
        &apps[0],
        "POST",
        revoke.clone(),
        test_admin.key().expose_secret(),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::NOT_FOUND,
        "a test key never touches a live key"
    );
    assert_eq!(sessions(&apps[1]).await.status, StatusCode::OK);
    let answer = call(&apps[0], "POST", revoke, live_admin.key().expose_secret()).await;
    assert_eq!(answer.status, StatusCode::OK);
    // B hears the revocation through its own node (a message, within a round trip).
    let mut refused = false;
    for _ in 0..500 {
        if sessions(&apps[1]).await.status == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "B refuses the revoked key");
}

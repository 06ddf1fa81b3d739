//! A revocation listener cut off the cluster bus stops answering from its cache.

use super::*;

/// A namespace whose key-store records (one hash tag) live on a master other than `node`,
/// so that its revocations are published there and reach `node` over the cluster bus.
async fn namespace_off(cluster: &RedisCluster, node: usize) -> String {
    let mut connection = cluster.node(node).await;
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut connection)
        .await
        .unwrap();
    let redis::Value::Array(ranges) = slots else {
        panic!("CLUSTER SLOTS: {slots:?}")
    };
    let owner_of = |slot: i64| {
        ranges.iter().find_map(|range| match range {
            redis::Value::Array(parts) => match parts.as_slice() {
                [redis::Value::Int(start), redis::Value::Int(end), redis::Value::Array(master), ..]
                    if (*start..=*end).contains(&slot) =>
                {
                    match master.get(1) {
                        Some(redis::Value::Int(port)) => Some(*port),
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        })
    };
    loop {
        let ns = namespace();
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("{{{ns}}}:x"))
            .query_async(&mut connection)
            .await
            .unwrap();
        if owner_of(slot).is_some_and(|port| port != i64::from(cluster.ports[node])) {
            return ns;
        }
    }
}

/// Issue 36.2: a listener whose node is cut off the cluster bus. It subscribed and published
/// its heartbeat through the same node, so it stayed "synced" on its own heartbeats while
/// revocations from the other masters never arrived: a revoked key was served from the
/// cache until its TTL (60 s). Now the heartbeat goes out through every master, as
/// revocations do, and the listener drops within two heartbeats the connection that stops
/// hearing any of them: the key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_cut_off_the_cluster_bus_stops_answering_from_the_cache() {
    use common::proxy::{Mode, Proxy};
    use tower_api_key::store::{CachedKeyStore, KeyStore, RevocationListener};
    let bus_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = Proxy::to(bus_port).await;
    let announced = proxy.port;
    let started = tokio::task::spawn_blocking(move || {
        RedisCluster::start_with_announced_bus(0, bus_port, announced)
    });
    let Some(cluster) = started.await.unwrap() else {
        return;
    };
    let ns = namespace_off(&cluster, 0).await;
    // Instance A subscribes through node 0; instance B revokes through node 2.
    let a = Arc::new(CachedKeyStore::new(Arc::new(
        store(cluster.connection_through(0).await, &ns).await,
    )));
    let heartbeat = Duration::from_millis(300);
    let listener = RevocationListener::spawn_with_heartbeat(Arc::clone(&a), heartbeat);
    let b = store(cluster.connection_through(2).await, &ns).await;
    let issued = b
        .issue(NewKey::new("org_1", "k", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let digest = *issued.record().digest();
    for _ in 0..300 {
        if a.is_synced() && listener.connects() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every master's heartbeat heard for a while: the path is proven before the cut.
    tokio::time::sleep(heartbeat * 3).await;
    assert!(a.is_synced(), "synced while the bus is whole");
    assert_eq!(listener.stalls(), 0);
    let before = a.lookup(&digest).await.unwrap().unwrap();
    assert!(!before.revoked(), "cached, active");

    proxy.set(Mode::Down);
    b.revoke(issued.record().id()).await.unwrap();
    let cut = std::time::Instant::now();
    let refused = loop {
        let record = a.lookup(&digest).await.unwrap();
        if record.is_none_or(|record| record.revoked()) {
            break cut.elapsed();
        }
        assert!(
            cut.elapsed() < heartbeat * 2 + Duration::from_millis(700),
            "the revoked key is still answered from the cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(listener.stalls() >= 1, "the silence was noticed");
    eprintln!("refused {refused:?} after the cut (heartbeat {heartbeat:?})");
    proxy.set(Mode::Forward);
}

//! The activity log in Redis streams: written by one instance, read by another through the
//! management API's store trait, newest first, paginated, trimmed per key.
#![cfg(all(feature = "redis", feature = "axum"))]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::Redis;
use common::{bearer, send, Probe};
use tower::Layer;
use tower_api_key::activity::ActivityLayer;
use tower_api_key::activity::{ActivityStore, RedisActivityLog};
use tower_api_key::key::KeyFamily;
use tower_api_key::store::KeyId;
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey, RedisConnection};

#[tokio::test]
async fn one_instance_writes_another_reads_newest_first_and_bounded() {
    let Some(redis) = Redis::start() else { return };
    let ns = format!("a{}", KeyId::generate().unwrap().as_str());
    let connect = || async { RedisConnection::open(&redis.url).await.unwrap() };
    let writer = RedisActivityLog::new(connect().await, &ns, 20);
    let reader = RedisActivityLog::new(connect().await, &ns, 20);

    let store =
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = store
        .issue(NewKey::new("org", "k", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let probe = Probe::new();
    let service = ActivityLayer::new(writer.clone())
        .layer(AuthLayer::new(store).layer(probe.service::<String>()));
    for _ in 0..250 {
        send(service.clone(), bearer(issued.key().expose_secret())).await;
    }
    let id = &issued.record().id();
    // Until every write landed (the count stops moving; writes go several at a time).
    let (mut entries, mut stable) = (Vec::new(), 0);
    for _ in 0..2_000 {
        let now = reader.recent(id, 1_000, None).await.unwrap();
        stable = if now.len() == entries.len() {
            stable + 1
        } else {
            0
        };
        entries = now;
        if entries.len() >= 20 && stable >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // `MAXLEN ~` trims by whole stream nodes (100 entries): at least 20, never all 250.
    assert!((20..=120).contains(&entries.len()), "{}", entries.len());
    assert!(
        entries.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first"
    );
    assert_eq!(entries[0].outcome, "ok");
    assert_eq!(entries[0].status, Some(200));
    assert_eq!(entries[0].method, "GET");
    assert_eq!(entries[0].path, "/v1/thing");
    let page = reader.recent(id, 5, Some(entries[4].seq)).await.unwrap();
    assert_eq!(page, entries[5..10].to_vec());
    assert_eq!(writer.dropped(), 0);

    let mut connection = redis.connection().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{ns}:{{k:{id}}}:activity"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(ttl > 0, "streams expire");
}

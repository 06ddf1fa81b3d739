//! Deliveries across instances: an event whose instance died is delivered by the next, and
//! two instances on one Redis deliver each event once.

use super::*;

/// The instance that enqueued the event is gone before any sender ran (its store handle
/// and pool dropped); the next instance, on the same SQLite file, delivers it.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn an_event_enqueued_by_an_instance_that_died_is_delivered_by_the_next() {
    use crate::webhook_stores::sqlite::{fresh_path, pool};
    use tower_api_key::webhooks::SqlWebhookStore;

    let path = fresh_path();
    let receiver = receiver(vec![]).await;
    let (key, clock) = {
        let store = SqlWebhookStore::new(pool(&path).await);
        store.migrate().await.unwrap();
        let setup = setup_on(Arc::new(store)).await;
        setup.register(&receiver, "/hook").await;
        (setup.issue_a_key().await, setup.clock.clone())
    };
    let next = Arc::new(SqlWebhookStore::new(pool(&path).await));
    let sender = WebhookSender::new(next).with_clock(clock);
    assert_eq!(sender.run_once().await.unwrap(), 1);
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].verified);
    assert_eq!(got[0].body["data"]["key"]["id"], key.as_str());
}

/// Two instances, each with its own connection and sender, on one Redis: each event
/// reaches the receiver once.
#[cfg(feature = "redis")]
#[tokio::test]
async fn two_instances_on_one_redis_deliver_each_event_once() {
    use crate::common::redis_server::Redis;
    use tower_api_key::webhooks::RedisWebhookStore;
    use tower_api_key::RedisConnection;

    let Some(redis) = Redis::start() else { return };
    let namespace = format!("hooks{}", std::process::id());
    let instance = || async {
        Arc::new(RedisWebhookStore::new(
            RedisConnection::open(&redis.url).await.unwrap(),
            &namespace,
        ))
    };
    let (a, b) = (instance().await, instance().await);
    let receiver = receiver(vec![]).await;
    let setup = setup_on(a.clone()).await;
    setup.register(&receiver, "/hook").await;
    for _ in 0..6 {
        setup.issue_a_key().await;
    }
    let sender =
        |store: Arc<RedisWebhookStore>| WebhookSender::new(store).with_clock(setup.clock.clone());
    let (sender_a, sender_b) = (sender(a), sender(b));
    let (sent_a, sent_b) = tokio::join!(sender_a.run_once(), sender_b.run_once());
    assert_eq!(sent_a.unwrap() + sent_b.unwrap(), 6);
    let got = receiver.got.lock().unwrap().clone();
    let ids: std::collections::BTreeSet<&String> = got.iter().map(|r| &r.id).collect();
    assert_eq!((got.len(), ids.len()), (6, 6), "each event once");
    assert!(got.iter().all(|r| r.verified));
}

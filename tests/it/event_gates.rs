//! Issue 39.1: "once per crossing" on every gate (in process, Redis, Redis Cluster,
//! PostgreSQL, SQLite): two gates over the same data answer `true` once between them, also
//! to 16 claims at the same moment; forgetting makes the next claim first again; gates on
//! an application clock remember exactly until the time is up.

use std::sync::Arc;
use std::time::Duration;

use tower_api_key::clock::ManualClock;
use tower_api_key::events::{EventGate, MemoryEventGate};

use crate::common::unique;

const HOUR: Duration = Duration::from_secs(3600);

/// The suite over two gates on the same data; `clock` when the gates tell time by it.
async fn once_between_them<A: EventGate, B: EventGate>(a: A, b: B, clock: Option<ManualClock>) {
    let crossing = unique("org_1:live:80");
    assert!(a.first(&crossing, HOUR).await.unwrap());
    assert!(!a.first(&crossing, HOUR).await.unwrap());
    assert!(
        !b.first(&crossing, HOUR).await.unwrap(),
        "the other instance too"
    );
    let other = format!("{crossing}:100");
    assert!(b.first(&other, HOUR).await.unwrap(), "crossings are apart");

    assert!(b.forget(&crossing).await.unwrap());
    assert!(!b.forget(&crossing).await.unwrap(), "already forgotten");
    assert!(
        a.first(&crossing, HOUR).await.unwrap(),
        "first again once forgotten"
    );

    let (a, b) = (Arc::new(a), Arc::new(b));
    let together = unique("together");
    let claims = (0..16).map(|n| {
        let (a, b, together) = (Arc::clone(&a), Arc::clone(&b), together.clone());
        tokio::spawn(async move {
            if n % 2 == 0 {
                a.first(&together, HOUR).await.unwrap()
            } else {
                b.first(&together, HOUR).await.unwrap()
            }
        })
    });
    let mut firsts = 0;
    for claim in claims.collect::<Vec<_>>() {
        firsts += usize::from(claim.await.unwrap());
    }
    assert_eq!(firsts, 1, "of 16 claims together, one is first");

    if let Some(clock) = clock {
        clock.advance(HOUR - Duration::from_millis(1));
        assert!(
            !b.first(&together, HOUR).await.unwrap(),
            "remembered until the end"
        );
        clock.advance(Duration::from_millis(1));
        assert!(b.first(&together, HOUR).await.unwrap(), "then first again");
        assert!(!a.first(&together, HOUR).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process() {
    let clock = ManualClock::default();
    let gate = Arc::new(MemoryEventGate::new().with_clock(clock.clone()));
    once_between_them(Arc::clone(&gate), gate, Some(clock)).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_and_the_cluster() {
    use crate::common::AnyRedis;
    use tower_api_key::events::RedisEventGate;

    for redis in AnyRedis::every() {
        let namespace = unique("gate");
        let a = RedisEventGate::new(redis.connection().await, &namespace);
        let b = RedisEventGate::new(redis.connection().await, &namespace);
        // `PX` on the server's clock: the time-up half is the in-process suite's.
        once_between_them(a, b, None).await;
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    use crate::common::postgres_server::Postgres;
    use tower_api_key::events::SqlEventGate;

    let Some(postgres) = Postgres::shared() else {
        return;
    };
    let pool = || async {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(&postgres.url)
            .await
            .unwrap()
    };
    let clock = ManualClock::default();
    let table = format!("gates.{}", unique("gate"));
    let a = SqlEventGate::new(pool().await)
        .with_table(&table)
        .unwrap()
        .with_clock(clock.clone());
    a.migrate().await.unwrap();
    a.migrate().await.expect("idempotent");
    let b = SqlEventGate::new(pool().await)
        .with_table(&table)
        .unwrap()
        .with_clock(clock.clone());
    once_between_them(a, b, Some(clock)).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite() {
    use crate::webhook_stores::sqlite::{fresh_path, pool};
    use tower_api_key::events::SqlEventGate;

    let path = fresh_path();
    let clock = ManualClock::default();
    let a = SqlEventGate::new(pool(&path).await).with_clock(clock.clone());
    a.migrate().await.unwrap();
    let b = SqlEventGate::new(pool(&path).await).with_clock(clock.clone());
    once_between_them(a, b, Some(clock)).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_table_name_is_checked() {
    let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
    let error = tower_api_key::events::SqlEventGate::new(pool)
        .with_table("gates; DROP TABLE api_keys")
        .unwrap_err();
    assert!(error.to_string().contains("table"), "{error}");
}

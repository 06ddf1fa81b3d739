//! The audit suite (`audit_conformance`) on every audit log: in process, on a private
//! redis-server, on the three-master Redis Cluster, on PostgreSQL and on SQLite.

use crate::audit_conformance;

use std::sync::Arc;
use std::time::Duration;

use tower_api_key::audit::MemoryAuditLog;
use tower_api_key::clock::ManualClock;

#[cfg_attr(
    not(any(feature = "redis", feature = "postgres", feature = "sqlite")),
    allow(unused_imports)
)]
use crate::common::unique;

struct InProcess;

impl audit_conformance::Fixture for InProcess {
    type Log = MemoryAuditLog;

    async fn log(&self, clock: ManualClock, retention: Duration) -> Arc<MemoryAuditLog> {
        Arc::new(MemoryAuditLog::new().retention(retention).with_clock(clock))
    }

    async fn bounded(&self, clock: ManualClock, entries: usize) -> Option<Arc<MemoryAuditLog>> {
        Some(Arc::new(
            MemoryAuditLog::new().per_owner(entries).with_clock(clock),
        ))
    }
}

mod in_process {
    use super::*;
    audit_suite!(Some(InProcess));
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use crate::common::redis_cluster::RedisCluster;
    use crate::common::redis_server::Redis;
    use crate::common::AnyRedis;
    use tower_api_key::audit::RedisAuditLog;

    async fn log(server: &AnyRedis) -> RedisAuditLog {
        RedisAuditLog::new(server.connection().await, &unique("audit"))
    }

    impl audit_conformance::Fixture for AnyRedis {
        type Log = RedisAuditLog;

        async fn log(&self, clock: ManualClock, retention: Duration) -> Arc<RedisAuditLog> {
            Arc::new(log(self).await.retention(retention).with_clock(clock))
        }

        async fn bounded(&self, clock: ManualClock, entries: usize) -> Option<Arc<RedisAuditLog>> {
            Some(Arc::new(
                log(self).await.per_owner(entries).with_clock(clock),
            ))
        }
    }

    mod on_one_server {
        use super::*;
        audit_suite!(Redis::start().map(AnyRedis::One));
    }

    mod on_a_cluster {
        use super::*;
        audit_suite!(RedisCluster::shared().map(AnyRedis::Cluster));
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::common::postgres_server::Postgres;
    use tower_api_key::audit::SqlAuditLog;

    struct Fixture(&'static Postgres);

    impl audit_conformance::Fixture for Fixture {
        type Log = SqlAuditLog<sqlx::Postgres>;

        async fn log(&self, clock: ManualClock, retention: Duration) -> Arc<Self::Log> {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect(&self.0.url)
                .await
                .unwrap();
            let log = SqlAuditLog::new(pool)
                .with_table(&format!("tak.{}", unique("audit")))
                .unwrap()
                .retention(retention)
                .with_clock(clock);
            log.migrate().await.unwrap();
            log.migrate().await.expect("idempotent");
            Arc::new(log)
        }

        async fn bounded(&self, _: ManualClock, _: usize) -> Option<Arc<Self::Log>> {
            None // bounded by retention only: a table is not a ring
        }
    }

    audit_suite!(Postgres::shared().map(Fixture));
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use tower_api_key::audit::SqlAuditLog;

    struct Fixture;

    impl audit_conformance::Fixture for Fixture {
        type Log = SqlAuditLog<sqlx::Sqlite>;

        async fn log(&self, clock: ManualClock, retention: Duration) -> Arc<Self::Log> {
            let path = std::env::temp_dir().join(format!("{}.db", unique("tak-audit")));
            let _ = std::fs::remove_file(&path);
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .unwrap();
            let log = SqlAuditLog::new(pool)
                .retention(retention)
                .with_clock(clock);
            log.migrate().await.unwrap();
            Arc::new(log)
        }

        async fn bounded(&self, _: ManualClock, _: usize) -> Option<Arc<Self::Log>> {
            None
        }
    }

    audit_suite!(Some(Fixture));
}

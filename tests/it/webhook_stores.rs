//! The webhook suite (`webhook_conformance`) on every webhook store: in process, on a
//! private redis-server, on the three-master Redis Cluster, on PostgreSQL and on SQLite;
//! and, end to end through a real receiver, an event enqueued by an instance that is gone
//! (delivered by the next), and two instances on one shared store delivering once.

use crate::webhook_conformance;

use std::sync::Arc;

use tower_api_key::webhooks::MemoryWebhookStore;

#[cfg_attr(
    not(any(feature = "redis", feature = "postgres", feature = "sqlite")),
    allow(unused_imports)
)]
use crate::common::unique;

struct InProcess;

impl webhook_conformance::Fixture for InProcess {
    type Store = MemoryWebhookStore;

    async fn store(&self) -> Arc<MemoryWebhookStore> {
        Arc::new(MemoryWebhookStore::new())
    }

    async fn reopen(&self, _: &MemoryWebhookStore) -> Option<Arc<MemoryWebhookStore>> {
        None
    }
}

mod in_process {
    use super::*;
    webhook_suite!(Some(InProcess));
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use crate::common::redis_cluster::RedisCluster;
    use crate::common::redis_server::Redis;
    use crate::common::AnyRedis;
    use tower_api_key::webhooks::RedisWebhookStore;

    impl webhook_conformance::Fixture for AnyRedis {
        type Store = RedisWebhookStore;

        async fn store(&self) -> Arc<RedisWebhookStore> {
            Arc::new(RedisWebhookStore::new(
                self.connection().await,
                &unique("hooks"),
            ))
        }

        async fn reopen(&self, store: &RedisWebhookStore) -> Option<Arc<RedisWebhookStore>> {
            Some(Arc::new(RedisWebhookStore::new(
                self.connection().await,
                store.namespace(),
            )))
        }
    }

    mod on_one_server {
        use super::*;
        webhook_suite!(Redis::start().map(AnyRedis::One));
    }

    mod on_a_cluster {
        use super::*;
        webhook_suite!(RedisCluster::shared().map(AnyRedis::Cluster));
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::common::postgres_server::Postgres;
    use tower_api_key::webhooks::SqlWebhookStore;

    struct Fixture(&'static Postgres);

    impl Fixture {
        async fn pool(&self) -> sqlx::PgPool {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect(&self.0.url)
                .await
                .unwrap()
        }
    }

    impl webhook_conformance::Fixture for Fixture {
        type Store = SqlWebhookStore<sqlx::Postgres>;

        async fn store(&self) -> Arc<Self::Store> {
            let store = SqlWebhookStore::new(self.pool().await)
                .with_table(&unique("hooks"))
                .unwrap();
            store.migrate().await.unwrap();
            store.migrate().await.expect("idempotent");
            Arc::new(store)
        }

        async fn reopen(&self, store: &Self::Store) -> Option<Arc<Self::Store>> {
            let other = SqlWebhookStore::new(self.pool().await)
                .with_table(store.table())
                .unwrap();
            Some(Arc::new(other))
        }
    }

    webhook_suite!(Postgres::shared().map(Fixture));
}

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    use super::*;
    use tower_api_key::webhooks::SqlWebhookStore;

    pub(crate) struct Fixture;

    /// A pool on a database file of its own (WAL).
    pub(crate) async fn pool(path: &std::path::Path) -> sqlx::SqlitePool {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .unwrap()
    }

    pub(crate) fn fresh_path() -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("{}.db", unique("tak-hooks")));
        let _ = std::fs::remove_file(&path);
        path
    }

    impl webhook_conformance::Fixture for Fixture {
        type Store = SqlWebhookStore<sqlx::Sqlite>;

        async fn store(&self) -> Arc<Self::Store> {
            let store = SqlWebhookStore::new(pool(&fresh_path()).await);
            store.migrate().await.unwrap();
            Arc::new(store)
        }

        async fn reopen(&self, store: &Self::Store) -> Option<Arc<Self::Store>> {
            let options = (*store.pool().connect_options()).clone();
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .unwrap();
            Some(Arc::new(SqlWebhookStore::new(pool)))
        }
    }

    webhook_suite!(Some(Fixture));
}

//! `SqlKeyStore` on SQLite (feature `sqlite`) through the shared lifecycle suite, behind
//! the authentication layer, and with hostile table names, a corrupt row and a closed pool.
#![cfg(feature = "sqlite")]

use crate::common;
use crate::conformance;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{bearer, send, Probe};
use http::StatusCode;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Sqlite, SqlitePool};
use tower::Layer;
use tower_api_key::key::KeyFamily;
use tower_api_key::store::{KeyPolicy, KeyStore, ManageKeys, SqlKeyStore};
use tower_api_key::{AuthLayer, ForgScope, NewKey};

type Store = SqlKeyStore<ForgScope, Sqlite>;

/// A database file of its own per store (WAL, so readers never wait for the writer).
async fn pool() -> SqlitePool {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "tak-sqlite-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_file(&path);
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap()
}

struct Fixture;

impl conformance::Fixture for Fixture {
    type Store = Store;

    /// Each cycle is several round trips: fewer than in memory, the same bound checked.
    fn login_cycles(&self) -> usize {
        2_500 // past the SQL sweep's 1,024 inserts twice; each cycle is four round trips
    }

    async fn store(&self, policy: KeyPolicy) -> Arc<Store> {
        let store = Store::new(pool().await).with_policy(policy);
        store.migrate().await.unwrap();
        store.migrate().await.expect("idempotent");
        Arc::new(store)
    }
}

conformance_suite!(Some(Fixture));

#[tokio::test]
async fn the_layer_authenticates_against_sqlite() {
    let store = Arc::new(Store::new(pool().await).with_table("keys_v2").unwrap());
    store.migrate().await.unwrap();
    let issued = store
        .issue(NewKey::new("org", "ci", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>());
    let key = issued.key().expose_secret();
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
    store.revoke(issued.record().id()).await.unwrap();
    assert_eq!(
        send(service, bearer(key)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Only digests are stored.
    let stored: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT digest FROM keys_v2")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0.len(), 32);
    let dump: Vec<(String,)> =
        sqlx::query_as("SELECT id || owner || name || hint || scopes FROM keys_v2")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert!(!dump[0].0.contains(&key["forg_live_".len()..]));
}

#[tokio::test]
async fn hostile_table_names_are_refused() {
    let pool = pool().await;
    for name in [
        "",
        "1keys",
        "keys; DROP TABLE x",
        "a.b.c",
        "k\"",
        "ключи",
        &"k".repeat(64),
    ] {
        assert!(
            Store::new(pool.clone()).with_table(name).is_err(),
            "{name:?}"
        );
    }
    assert!(Store::new(pool).with_table("tak.keys").is_ok());
}

#[tokio::test]
async fn a_failing_database_is_a_503_and_a_corrupt_row_an_error() {
    let store = Arc::new(Store::new(pool().await));
    store.migrate().await.unwrap();
    let issued = store
        .issue(NewKey::new("org", "ci", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let digest = store.hasher().digest(issued.key().expose_secret());

    sqlx::query("UPDATE api_keys SET scopes = 'not:a:scope'")
        .execute(store.pool())
        .await
        .unwrap();
    assert!(
        store.lookup(&digest).await.is_err(),
        "a corrupt row is an error, not a miss"
    );

    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>());
    store.pool().close().await;
    let answer = send(service, bearer(issued.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["code"], "auth_unavailable");
    assert_eq!(probe.calls(), 0);
}

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
    let store = Arc::new(
        Store::new(pool().await)
            .with_policy(tower_api_key::forg::key_policy())
            .with_table("keys_v2")
            .unwrap(),
    );
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
            Store::new(pool.clone())
                .with_policy(tower_api_key::forg::key_policy())
                .with_table(name)
                .is_err(),
            "{name:?}"
        );
    }
    assert!(Store::new(pool)
        .with_policy(tower_api_key::forg::key_policy())
        .with_table("tak.keys")
        .is_ok());
}

#[tokio::test]
async fn a_failing_database_is_a_503_and_a_corrupt_row_an_error() {
    let store = Arc::new(Store::new(pool().await).with_policy(tower_api_key::forg::key_policy()));
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
    // ... but one unreadable row does not take its owner's listing down (issue 36.5).
    let good = store
        .issue(NewKey::new("org", "fine", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let listed = store.list("org").await.expect("the listing answers");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id(), good.record().id());

    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>());
    store.pool().close().await;
    let answer = send(service, bearer(issued.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["code"], "auth_unavailable");
    assert_eq!(probe.calls(), 0);
}

/// Issue 36.5: the README's setup, a session store of the same kind on the same database.
/// Failed before: sessions landed in `api_keys`, `GET /keys` answered 503 for their owner
/// (a row of a prefix the key store does not know failed the whole listing) and sessions
/// counted against the 10-key limit. Now they get `api_sessions`; and where a table is
/// shared on purpose, a key store still never reads a session as a key.
#[tokio::test]
async fn sessions_and_keys_on_one_database_never_mix() {
    use tower_api_key::session::{CsrfSecret, Sessions};
    let pool = pool().await;
    let keys = Store::new(pool.clone()).with_policy(tower_api_key::forg::key_policy());
    let sessions_store = Store::new(pool.clone()).with_policy(KeyPolicy::sessions());
    assert_eq!(keys.table(), "api_keys");
    assert_eq!(
        sessions_store.table(),
        "api_sessions",
        "a table of their own"
    );

    let shared = Store::new(pool.clone())
        .with_policy(tower_api_key::forg::key_policy())
        .with_table("shared")
        .unwrap();
    let shared_sessions = Store::new(pool)
        .with_policy(tower_api_key::forg::key_policy())
        .with_table("shared")
        .unwrap()
        .with_policy(KeyPolicy::sessions());
    for (keys, sessions_store) in [(keys, sessions_store), (shared, shared_sessions)] {
        keys.migrate().await.unwrap();
        sessions_store.migrate().await.unwrap();
        let sessions = Sessions::new(Arc::new(sessions_store), CsrfSecret::generate().unwrap());
        let mut started = Vec::new();
        for _ in 0..12 {
            let session = sessions
                .start(&http::HeaderMap::new(), "org_1", ForgScope::ReadRules)
                .await
                .unwrap();
            started.push(session.record().id().clone());
        }
        // The owner's listing reads keys only, and the limit counts keys only.
        assert!(keys.list("org_1").await.unwrap().is_empty());
        for i in 0..10 {
            keys.issue(NewKey::new("org_1", format!("k{i}"), &KeyFamily::FORG_LIVE))
                .await
                .expect("sessions take no key slot");
        }
        assert_eq!(keys.list("org_1").await.unwrap().len(), 10);
        assert!(
            keys.get(&started[0]).await.unwrap().is_none(),
            "a session is no key"
        );
    }
}

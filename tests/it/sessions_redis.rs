//! Sessions shared by two instances through one real `redis-server`: a login on one is
//! accepted by the other, and a logout on one is refused by the other on the next request
//! once the revocation message arrives (both instances cache).
#![cfg(feature = "redis")]

use crate::common;

use std::sync::Arc;

use common::redis_server::Redis;
use common::{send, until, Probe};
use http::{HeaderMap, Request, StatusCode};
use tower::Layer;
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::{CachedKeyStore, KeyId, KeyPolicy, RedisKeyStore, RevocationListener};
use tower_api_key::{AuthLayer, ForgScope, Principal};

#[tokio::test]
async fn a_logout_on_one_instance_is_refused_by_the_other() {
    let Some(redis) = Redis::start() else { return };
    let ns = format!("s{}", KeyId::generate().unwrap().as_str());
    let secret = CsrfSecret::from_bytes(b"one secret shared by every instance!").unwrap();
    let mut instances = Vec::new();
    let mut listeners = Vec::new();
    let probe = Probe::new();
    for _ in 0..2 {
        let store = RedisKeyStore::<ForgScope>::connect(&redis.url)
            .await
            .unwrap()
            .with_namespace(&ns)
            .with_policy(KeyPolicy::sessions());
        let cached = Arc::new(CachedKeyStore::new(Arc::new(store)));
        listeners.push(RevocationListener::spawn(Arc::clone(&cached)));
        let sessions = Sessions::new(cached, secret.clone());
        // Keys and sessions: the same kind of store, two namespaces.
        let keys = RedisKeyStore::<ForgScope>::connect(&redis.url)
            .await
            .unwrap()
            .with_namespace(format!("{ns}-keys"))
            .with_policy(tower_api_key::forg::key_policy());
        let service = AuthLayer::new(Arc::new(CachedKeyStore::new(Arc::new(keys))))
            .sessions(sessions.clone())
            .layer(probe.service::<String>());
        instances.push((sessions, service));
    }
    until("both subscriptions", || {
        listeners.iter().all(|l| l.connects() == 1)
    })
    .await;

    let (sessions_a, a) = &instances[0];
    let (_, b) = &instances[1];
    let login = sessions_a
        .start(&HeaderMap::new(), "user_1", ForgScope::WriteRules)
        .await
        .unwrap();
    let cookie = login.cookies().cookie_header();
    let csrf = login.cookies().csrf_token().unwrap().to_owned();
    let get = || {
        Request::get("/v1/me")
            .header("cookie", &cookie)
            .body(String::new())
            .unwrap()
    };

    assert_eq!(
        send(b.clone(), get()).await.status,
        StatusCode::OK,
        "B knows A's session"
    );
    let post = Request::post("/v1/rules")
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .body(String::new())
        .unwrap();
    assert_eq!(
        send(b.clone(), post).await.status,
        StatusCode::OK,
        "and its CSRF token"
    );
    assert_eq!(send(a.clone(), get()).await.status, StatusCode::OK);
    let principal = probe.last().extensions.get::<Principal>().cloned().unwrap();

    sessions_a.end(&principal).await.unwrap();
    assert_eq!(
        send(a.clone(), get()).await.status,
        StatusCode::UNAUTHORIZED,
        "A, at once"
    );
    until("the revocation on B", || listeners[1].received() >= 1).await;
    assert_eq!(
        send(b.clone(), get()).await.status,
        StatusCode::UNAUTHORIZED,
        "B, cached, too"
    );
}

/// Issue 22: keys and sessions in stores of different types (keys in SQL, sessions in
/// Redis), one `AuthLayer`: the key authenticates against SQL, the session cookie against
/// Redis, idle activity is recorded in Redis, and a logout there refuses the cookie.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn keys_and_sessions_can_live_in_stores_of_different_types() {
    use common::bearer;
    use std::time::Duration;
    use tower_api_key::clock::ManualClock;
    use tower_api_key::key::KeyFamily;
    use tower_api_key::principal::CredentialKind;
    use tower_api_key::store::{ManageKeys, SqlKeyStore};
    use tower_api_key::NewKey;

    let Some(redis) = Redis::start() else { return };
    let clock = ManualClock::new(common::start_time());
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let keys = SqlKeyStore::<ForgScope, sqlx::Sqlite>::new(pool)
        .with_policy(tower_api_key::forg::key_policy().clock(clock.clone()));
    keys.migrate().await.unwrap();
    let keys = Arc::new(keys);
    let sessions_store = Arc::new(
        RedisKeyStore::<ForgScope>::connect(&redis.url)
            .await
            .unwrap()
            .with_namespace(format!("s{}", KeyId::generate().unwrap().as_str()))
            .with_policy(KeyPolicy::sessions().clock(clock.clone())),
    );
    let sessions = Sessions::new(Arc::clone(&sessions_store), CsrfSecret::generate().unwrap())
        .idle_timeout(Duration::from_secs(3600));
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&keys))
        .sessions(sessions.clone())
        .layer(probe.service::<String>());

    let key = keys
        .issue(NewKey::new("user_1", "ci", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    assert_eq!(
        send(service.clone(), bearer(key.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    let login = sessions
        .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
        .await
        .unwrap();
    assert!(
        keys.get(login.record().id()).await.unwrap().is_none(),
        "not in SQL"
    );
    let cookie = login.cookies().cookie_header();
    let get = || {
        Request::get("/v1/me")
            .header("cookie", &cookie)
            .body(String::new())
            .unwrap()
    };
    assert_eq!(send(service.clone(), get()).await.status, StatusCode::OK);
    let principal = probe.last().extensions.get::<Principal>().cloned().unwrap();
    assert_eq!(principal.kind(), CredentialKind::Session);

    // Activity past a quarter of the idle timeout is recorded in the sessions' store.
    clock.advance(Duration::from_secs(1000));
    assert_eq!(send(service.clone(), get()).await.status, StatusCode::OK);
    // The touch is spawned: poll the store for it (bounded).
    let mut touched = false;
    for _ in 0..1_000 {
        let record = sessions_store.get(login.record().id()).await.unwrap();
        if record.is_some_and(|record| record.last_used_at().is_some()) {
            touched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(touched, "activity recorded in Redis");

    sessions.end(&principal).await.unwrap();
    assert_eq!(
        send(service.clone(), get()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(probe.calls(), 3);
}

//! TLS with a private CA, and a killed Redis served through by stale-if-error for its
//! window only.

use super::*;

/// Issue 23.3: `rediss://` with the crate's features as shipped (redis on rustls, ring
/// provider): a server that speaks only TLS, whose certificate comes from a private CA
/// given as PEM. The key store, its revocation listener and the rate limiter work over it;
/// without the CA the connection is refused (fail closed), never downgraded.
#[tokio::test]
async fn rediss_with_a_private_ca() {
    use redis::{Client, TlsCertificates};

    let Some(redis) = Redis::start_tls() else {
        eprintln!("needs a private redis-server (REDIS_URL is set): skipped");
        return;
    };
    let ca = redis.ca_pem.clone().unwrap();
    let client = || {
        Client::build_with_tls(
            redis.url.as_str(),
            TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone().into_bytes()),
            },
        )
        .unwrap()
    };
    let connection = || async {
        RedisConnection::from_client(client())
            .await
            .expect("TLS with the private CA")
    };
    store_limiter_and_revocations_work(connection().await, connection().await).await;

    // The bundled roots do not know the private CA: refused, not downgraded.
    let unknown = Client::open(redis.url.as_str()).unwrap();
    assert!(RedisConnection::from_client(unknown).await.is_err());
    // Plain TCP to the TLS port is no Redis either.
    let plain = Client::open(redis.url.replacen("rediss://", "redis://", 1).as_str()).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), RedisConnection::from_client(plain))
            .await
            .map_or(true, |connected| connected.is_err())
    );
}

/// Stale-if-error against a real outage: `redis-server` killed behind a cached store with
/// its revocation listener. Known-good keys answer 200 for the window (on the cache's fake
/// clock) and 503 after it; a key revoked before the outage never answers 200; and
/// readiness says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_is_served_through_by_stale_if_error_for_the_window_only() {
    use tower_api_key::store::StaleIfError;
    let Some(mut redis) = Redis::start() else {
        return;
    };
    if !redis.owned() {
        eprintln!("needs its own redis-server, not REDIS_URL: skipped");
        return;
    }
    let ns = namespace();
    let clock = ManualClock::new(std::time::SystemTime::now());
    let store = store(&redis.url, &ns).await;
    let connection = store.connection().clone();
    let cache = Arc::new(
        CachedKeyStore::builder(Arc::new(store))
            .clock(clock.clone())
            .ttl(Duration::from_secs(60))
            .stale_if_error(
                StaleIfError::within(Duration::from_secs(120)).patience(Duration::from_millis(300)),
            )
            .build(),
    );
    let listener = RevocationListener::spawn(Arc::clone(&cache));
    until("the subscription", || listener.connects() == 1).await;
    let good = cache
        .inner()
        .issue(NewKey::new("org", "good", &KeyFamily::FOS).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    let revoked = cache
        .inner()
        .issue(NewKey::new("org", "revoked", &KeyFamily::FOS).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&cache)).layer(probe.service::<String>());
    let (good, revoked) = (
        good.key().expose_secret(),
        (
            revoked.record().id().clone(),
            revoked.key().expose_secret().to_owned(),
        ),
    );
    assert_eq!(
        send(service.clone(), bearer(good)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service.clone(), bearer(&revoked.1)).await.status,
        StatusCode::OK
    );
    cache.inner().revoke(&revoked.0).await.unwrap();
    until("the revocation message", || listener.received() >= 1).await;
    assert!(connection.ping().await.is_ok(), "ready");

    assert!(cache.ready().await.is_ok(), "the store is ready");
    redis.kill();
    assert!(connection.ping().await.is_err(), "not ready");
    assert!(
        cache.ready().await.is_err(),
        "a cache answering stale is no ready store"
    );
    clock.advance(Duration::from_secs(61));
    for _ in 0..3 {
        assert_eq!(
            send(service.clone(), bearer(good)).await.status,
            StatusCode::OK
        );
        assert_eq!(
            send(service.clone(), bearer(&revoked.1)).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(cache.stale_answers(), 3);
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        send(service.clone(), bearer(good)).await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "past the window"
    );
    assert_eq!(probe.calls(), 2 + 3);
}

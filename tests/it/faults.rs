//! Fault injection with a scripted store, directly and behind `CachedKeyStore`: errors,
//! hangs past the timeout, slow answers, panics, and a key revoked mid-stream. Each gives
//! the documented response, the inner service never runs on a failure, the service stays
//! usable, and nothing is cached from a failure.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;
use tower::Layer;
use tower_api_key::key::KeyFamily;
use tower_api_key::reject::{AuthRejection, Unavailable};
use tower_api_key::store::ManageKeys;
use tower_api_key::store::StoreErrorKind;
use tower_api_key::{AuthLayer, ForgScope, KeyStore};

fn unavailable(answer: &Answer) -> Option<StoreErrorKind> {
    match answer.extensions.get::<AuthRejection>()? {
        AuthRejection::Unavailable {
            cause: Unavailable::KeyStore(kind),
            ..
        } => Some(*kind),
        _ => None,
    }
}

/// Runs every fault against `store` (which reads through `scripted`).
async fn faults_against<St: KeyStore<Scope = ForgScope>>(
    store: Arc<St>,
    scripted: &ScriptedStore,
    key: &str,
) {
    let probe = Probe::new();
    let service = AuthLayer::new(store)
        .lookup_timeout(Duration::from_millis(500))
        .layer(probe.service::<String>());
    let table = [
        (Script::Fail, StoreErrorKind::Unavailable),
        (Script::Hang, StoreErrorKind::Timeout),
        (
            Script::Slow(Duration::from_millis(501)),
            StoreErrorKind::Timeout,
        ),
        (Script::Panic, StoreErrorKind::Panicked),
    ];
    for (script, kind) in table {
        let name = format!("{kind:?}");
        scripted.set(script);
        let before = scripted.lookups();
        for _ in 0..2 {
            let answer = send(service.clone(), bearer(key)).await;
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
            assert_eq!(answer.header("retry-after"), Some("5"), "{name}");
            assert_eq!(answer.json()["code"], "auth_unavailable", "{name}");
            assert_eq!(unavailable(&answer), Some(kind), "{name}");
        }
        assert_eq!(
            scripted.lookups() - before,
            2,
            "{name}: the failure was not cached"
        );
        assert_eq!(
            probe.calls(),
            0,
            "{name}: inner service never called on a failure"
        );
    }

    scripted.set(Script::Slow(Duration::from_millis(499)));
    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK,
        "slow but in time"
    );
    scripted.set(Script::Delegate);
    assert_eq!(
        send(service, bearer(key)).await.status,
        StatusCode::OK,
        "usable afterwards"
    );
    assert_eq!(probe.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn faults_on_a_direct_store() {
    let (memory, _) = store_with_clock();
    let issued = issue(&memory, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(memory, Script::Delegate);
    faults_against(
        Arc::clone(&scripted),
        &scripted,
        issued.key().expose_secret(),
    )
    .await;
}

#[cfg(feature = "cache")]
#[tokio::test(start_paused = true)]
async fn faults_behind_the_cache() {
    use tower_api_key::store::CachedKeyStore;
    let (memory, _) = store_with_clock();
    let issued = issue(&memory, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(memory, Script::Delegate);
    let cached = Arc::new(CachedKeyStore::new(Arc::clone(&scripted)));
    faults_against(Arc::clone(&cached), &scripted, issued.key().expose_secret()).await;
    let (records, unknown) = cached.entry_counts().await;
    assert_eq!(
        (records, unknown),
        (1, 0),
        "only the successful lookup is cached"
    );
}

#[tokio::test]
async fn revoked_mid_stream() {
    let (memory, _) = store_with_clock();
    let issued = issue(&memory, &KeyFamily::FOS, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(Arc::clone(&memory), Script::Delegate);
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::clone(&scripted)).layer(probe.service::<String>());
    let key = issued.key().expose_secret();

    for i in 0..20 {
        if i == 10 {
            memory.revoke(issued.record().id()).await.unwrap();
        }
        let expected = if i < 10 {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(
            send(service.clone(), bearer(key)).await.status,
            expected,
            "request {i}"
        );
    }
    assert_eq!(probe.calls(), 10);
}

#[test]
fn a_runtime_without_timers_fails_closed_instead_of_panicking() {
    // No `enable_time`: the lookup timeout cannot be armed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (store, _) = store_with_clock();
        let good = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
        // Asynchronous only: every lookup takes the boxed, timed path.
        let scripted = ScriptedStore::new(store, Script::Delegate);
        let probe = Probe::new();
        let service = AuthLayer::new(scripted).layer(probe.service::<String>());
        let answer = send(service, bearer(good.key().expose_secret())).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable(&answer), Some(StoreErrorKind::Panicked));
        assert_eq!(probe.calls(), 0, "the inner service is not called");
    });
}

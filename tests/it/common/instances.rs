//! What every instance of a shared store must see of a change made through another: here,
//! an update in place (as the revocation tests check a revocation).

use std::sync::Arc;

use http::StatusCode;
use tower::Layer;
use tower_api_key::key::KeyFamily;
use tower_api_key::require::require;
use tower_api_key::store::{KeyStore, KeyUpdate, ManageKeys};
use tower_api_key::{AuthLayer, ForgScope, NewKey};

use super::{bearer, send, until, Probe};

/// Two instances `a` and `b` (each a cache on its own connection, with a listener whose
/// count of messages is `received_by_b`): a key both have cached, narrowed through `a`
/// from {read:rules, write:rules} to {read:rules}, is refused on a write:rules route by
/// `b` once the message arrives and by `a` at once, and still accepted on a read:rules
/// route by both.
pub async fn a_narrowed_scope_reaches_the_other_instance<St>(
    a: Arc<St>,
    b: Arc<St>,
    received_by_b: impl Fn() -> u64,
) where
    St: ManageKeys<Scope = ForgScope> + KeyStore<Scope = ForgScope> + 'static,
{
    let issued = a
        .issue(
            NewKey::new("org", "narrow me", &KeyFamily::FORG_LIVE)
                .scopes([ForgScope::ReadRules, ForgScope::WriteRules]),
        )
        .await
        .unwrap();
    let key = issued.key().expose_secret();
    let probe = Probe::new();
    let writes = |store: &Arc<St>| {
        AuthLayer::new(Arc::clone(store))
            .layer(require(ForgScope::WriteRules).layer(probe.service::<String>()))
    };
    let reads = |store: &Arc<St>| {
        AuthLayer::new(Arc::clone(store))
            .layer(require(ForgScope::ReadRules).layer(probe.service::<String>()))
    };
    for store in [&a, &b] {
        assert_eq!(
            send(writes(store), bearer(key)).await.status,
            StatusCode::OK,
            "cached"
        );
    }
    let before = received_by_b();
    a.update(
        issued.record().id(),
        KeyUpdate::new().scopes(ForgScope::ReadRules).if_version(0),
    )
    .await
    .unwrap();
    assert_eq!(
        send(writes(&a), bearer(key)).await.status,
        StatusCode::FORBIDDEN,
        "A, at once"
    );
    until("the update on B", || received_by_b() > before).await;
    assert_eq!(
        send(writes(&b), bearer(key)).await.status,
        StatusCode::FORBIDDEN,
        "B, cached, sees the narrowed scopes on the next request"
    );
    for store in [&a, &b] {
        assert_eq!(send(reads(store), bearer(key)).await.status, StatusCode::OK);
    }
    let calls = probe.calls();
    assert_eq!(
        calls, 4,
        "the refused requests never reached the inner service"
    );
    let seen = b.lookup(issued.record().digest()).await.unwrap().unwrap();
    assert_eq!(seen.version(), 1);
}

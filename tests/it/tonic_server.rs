//! The tonic example on a real loopback socket with a tonic client: every failure is the
//! right gRPC status, a good key passes and its scopes reach the handler.

use crate::common;

use crate::examples::tonic_server;

use std::num::NonZeroU32;
use std::sync::Arc;

use common::{Script, ScriptedStore};
use tonic::Code;
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::ClassName;
use tower_api_key::rate_limit::Quota;
use tower_api_key::rate_limit::RateClass;
use tower_api_key::store::ManageKeys;
use tower_api_key::{ForgScope, KeyStore, MemoryKeyStore, NewKey};

async fn start<St: KeyStore<Scope = ForgScope>>(
    store: Arc<St>,
    per_minute: u32,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let class = RateClass::per_key(
        ClassName::from_static("grpc"),
        Quota::per_minute(NonZeroU32::new(per_minute).unwrap()),
    );
    tokio::spawn(tonic_server::serve(
        listener,
        store,
        class,
        ForgScope::ReadSessions,
    ));
    addr
}

#[tokio::test]
async fn grpc_statuses_for_every_outcome() {
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let good = tonic_server::demo_key(&store).await;
    let other = store
        .issue(
            NewKey::new("org_acme", "reports", &KeyFamily::FORG_TEST)
                .scopes(ForgScope::ReadReports),
        )
        .await
        .unwrap();
    let addr = start(Arc::clone(&store), 3).await;
    let key = good.key().expose_secret();
    let bearer = format!("Bearer {key}");

    let reply = tonic_server::call_who_am_i(addr, &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(reply.key_id, good.record().id().to_string());
    assert_eq!(reply.owner, "org_acme");
    assert_eq!(reply.environment, "live");
    assert_eq!(
        reply.scopes,
        ["read:sessions"],
        "scopes visible to the handler"
    );
    let reply = tonic_server::call_who_am_i(addr, &[("x-forgeos-api-key", key)])
        .await
        .unwrap();
    assert_eq!(reply.key_id, good.record().id().to_string());

    let status = tonic_server::call_who_am_i(addr, &[]).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "Invalid API key")
    );
    let status = tonic_server::call_who_am_i(
        addr,
        &[(
            "authorization",
            "Bearer forg_live_00000000000000000000000000000000",
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let status =
        tonic_server::call_who_am_i(addr, &[("x-forgeos-api-key", other.key().expose_secret())])
            .await
            .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::PermissionDenied,
            "Insufficient scope: read:sessions required"
        )
    );

    let status = tonic_server::call_who_am_i(
        addr,
        &[("authorization", &bearer), ("x-forgeos-api-key", key)],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Three requests a minute: two used above with the good key, one left.
    tonic_server::call_who_am_i(addr, &[("authorization", &bearer)])
        .await
        .unwrap();
    let status = tonic_server::call_who_am_i(addr, &[("authorization", &bearer)])
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::ResourceExhausted, "Rate limit exceeded")
    );
    assert_eq!(status.metadata().get("retry-after").unwrap(), "20");
}

#[tokio::test]
async fn store_outage_is_unavailable() {
    let memory = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let good = tonic_server::demo_key(&memory).await;
    let store = ScriptedStore::new(memory, Script::Fail);
    let addr = start(Arc::clone(&store), 100).await;
    let bearer = format!("Bearer {}", good.key().expose_secret());

    let status = tonic_server::call_who_am_i(addr, &[("authorization", &bearer)])
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Unavailable,
            "Authentication is temporarily unavailable"
        )
    );
    store.set(Script::Delegate);
    assert!(
        tonic_server::call_who_am_i(addr, &[("authorization", &bearer)])
            .await
            .is_ok()
    );
}

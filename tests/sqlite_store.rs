//! The SQLite example store (the "write your own store" template) through the shared
//! lifecycle suite, and behind the authentication layer: valid, revoked, expired and
//! unknown keys.

mod common;
#[macro_use]
mod conformance;

#[allow(dead_code)]
#[path = "../examples/sqlite_store.rs"]
mod sqlite_store;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{bearer, send, Probe};
use http::StatusCode;
use sqlite_store::SqliteKeyStore;
use tower::Layer;
use tower_api_key::clock::ManualClock;
use tower_api_key::key::KeyFamily;
use tower_api_key::reject::{AuthRejection, InvalidKeyReason};
use tower_api_key::store::{KeyPolicy, ManageKeys};
use tower_api_key::{AuthLayer, ForgScope, NewKey, Principal};

struct Sqlite;

impl conformance::Fixture for Sqlite {
    type Store = SqliteKeyStore;

    async fn store(&self, policy: KeyPolicy) -> Arc<SqliteKeyStore> {
        Arc::new(SqliteKeyStore::open_in_memory(policy).unwrap())
    }
}

conformance_suite!(Some(Sqlite));

fn reason(answer: &common::Answer) -> Option<InvalidKeyReason> {
    match answer.extensions.get::<AuthRejection>()? {
        AuthRejection::InvalidApiKey { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[tokio::test]
async fn layer_against_sqlite_valid_revoked_expired_unknown() {
    let clock = ManualClock::new(SystemTime::now());
    let store = SqliteKeyStore::open_in_memory(KeyPolicy::default().clock(clock.clone())).unwrap();
    let valid = store
        .issue(
            NewKey::new("org_1", "valid", &KeyFamily::FORG_LIVE)
                .scopes([ForgScope::ReadRules, ForgScope::WriteRules]),
        )
        .await
        .unwrap();
    let revoked = store
        .issue(NewKey::new("org_1", "revoked", &KeyFamily::FOS))
        .await
        .unwrap();
    store.revoke(&revoked.record().id).await.unwrap();
    let expiring = store
        .issue(
            NewKey::new("org_1", "expiring", &KeyFamily::FORG_TEST)
                .expires_in(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(7200));
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::new(store.clone())).layer(probe.service::<String>());

    let answer = send(service.clone(), bearer(valid.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::OK);
    let identity = probe.last().extensions.get::<Principal>().cloned().unwrap();
    assert_eq!(identity.key_id(), &valid.record().id);
    assert_eq!(
        identity.scopes::<ForgScope>().unwrap().to_string(),
        "read:rules write:rules"
    );

    let cases = [
        (
            revoked.key().expose_secret().to_owned(),
            InvalidKeyReason::Revoked,
        ),
        (
            expiring.key().expose_secret().to_owned(),
            InvalidKeyReason::Expired,
        ),
        (
            "forg_live_0123456789abcdef0123456789abcdef".to_owned(),
            InvalidKeyReason::Unknown,
        ),
    ];
    for (key, expected) in cases {
        let answer = send(service.clone(), bearer(&key)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{expected:?}");
        assert_eq!(reason(&answer), Some(expected));
    }
    assert_eq!(probe.calls(), 1);
}

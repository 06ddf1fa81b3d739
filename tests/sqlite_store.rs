//! The SQLite example store behind the authentication layer: valid, revoked, expired and
//! unknown keys, the per-owner limit, and what the table holds.

mod common;

#[allow(dead_code)]
#[path = "../examples/sqlite_store.rs"]
mod sqlite_store;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{bearer, send, Probe};
use http::StatusCode;
use sqlite_store::SqliteKeyStore;
use tower::Layer;
use tower_api_key::activity::TouchKey;
use tower_api_key::clock::ManualClock;
use tower_api_key::forg;
use tower_api_key::key::KeyFamily;
use tower_api_key::reject::{AuthRejection, InvalidKeyReason};
use tower_api_key::store::ManageError;
use tower_api_key::{AuthLayer, ForgScope, KeyStore, NewKey, Principal};

fn reason(answer: &common::Answer) -> Option<InvalidKeyReason> {
    match answer.extensions.get::<AuthRejection>()? {
        AuthRejection::InvalidApiKey { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[tokio::test]
async fn layer_against_sqlite_valid_revoked_expired_unknown() {
    let store = SqliteKeyStore::open_in_memory().unwrap();
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
    let clock = ManualClock::new(SystemTime::now() + Duration::from_secs(7200));
    let probe = Probe::new();
    let service = AuthLayer::new(Arc::new(store.clone()))
        .clock(clock)
        .layer(probe.service::<String>());

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

#[tokio::test]
async fn the_table_holds_digests_and_records_round_trip() {
    let store = SqliteKeyStore::open_in_memory().unwrap();
    let issued = store
        .issue(
            NewKey::new("org_1", "ci", &KeyFamily::FORG_LIVE)
                .scopes(ForgScope::ReadReports)
                .rate_limit(
                    &forg::AI,
                    tower_api_key::rate_limit::Quota::per_minute(
                        std::num::NonZeroU32::new(50).unwrap(),
                    ),
                ),
        )
        .await
        .unwrap();
    let fetched = store.get(&issued.record().id).await.unwrap().unwrap();
    let mut expected = (**issued.record()).clone();
    // SQLite keeps milliseconds.
    expected.created_at = fetched.created_at;
    assert_eq!(fetched, expected);
    let digest = store.hasher().digest(issued.key().expose_secret());
    assert_eq!(
        store.lookup(&digest).await.unwrap().unwrap().id,
        issued.record().id
    );

    let used = std::time::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000);
    store.touch(&issued.record().id, used).await.unwrap();
    store
        .touch(&issued.record().id, used - Duration::from_secs(1))
        .await
        .unwrap();
    let touched = store.get(&issued.record().id).await.unwrap().unwrap();
    assert_eq!(
        touched.last_used_at,
        Some(used),
        "last use only moves forward"
    );

    let listed = store.list("org_1").await.unwrap();
    assert_eq!(listed.len(), 1);
    let as_text = format!("{listed:?}");
    assert!(
        !as_text.contains(&issued.key().expose_secret()[10..]),
        "no plaintext in the table"
    );
    assert!(matches!(
        store.revoke(&"key_nope".parse().unwrap()).await,
        Err(ManageError::NotFound(_))
    ));
}

#[tokio::test]
async fn per_owner_limit_holds_under_concurrent_issues() {
    let store = SqliteKeyStore::open_in_memory().unwrap();
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .issue(NewKey::new("busy", format!("k{i}"), &KeyFamily::FOS))
                    .await
            })
        })
        .collect();
    let mut issued = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => issued += 1,
            Err(ManageError::KeyLimitReached { limit }) => assert_eq!(limit, 10),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(issued, 10);
    assert_eq!(store.list("busy").await.unwrap().len(), 10);
}

//! `MemoryKeyStore` lifecycle on a fake clock: issue, get, list, revoke, rotate, expiry,
//! per-owner limits, import and delete; `KeyRecord` serde.

mod common;

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;
use tower_api_key::forg;
use tower_api_key::rate_limit::Quota;

use common::{digest_of, start_time, store_with_clock};
use tower_api_key::key::{Environment, KeyFamily, KeyHasher};
use tower_api_key::store::{KeyRecord, KeyStatus, KeyStore, ManageError};
use tower_api_key::{ForgScope, MemoryKeyStore, NewKey, ScopeSet};

fn new_key(owner: &str) -> NewKey<ForgScope> {
    NewKey::new(owner, "ci", &KeyFamily::FORG_LIVE)
        .scopes([ForgScope::ReadRules, ForgScope::ReadReports])
}

#[tokio::test]
async fn issue_stores_only_the_digest_and_returns_the_plaintext_once() {
    let (store, _clock) = store_with_clock();
    let issued = store.issue(new_key("org_1")).unwrap();
    let record = issued.record();
    assert_eq!(record.digest, digest_of(&issued));
    assert_eq!(record.owner, "org_1");
    assert_eq!(record.name, "ci");
    assert_eq!(record.prefix, "forg_live_");
    assert_eq!(record.environment, Environment::Live);
    assert_eq!(record.created_at, start_time());
    assert_eq!(record.scopes.to_string(), "read:rules read:reports");
    assert!(record.id.as_str().starts_with("key_"));
    let secret = issued.key().expose_secret();
    assert_eq!(
        record.hint,
        format!("forg_live_…{}", &secret[secret.len() - 4..])
    );

    // Nothing the store keeps or prints contains the secret.
    let serialized = serde_json::to_string(&**record).unwrap();
    assert!(!serialized.contains(&secret[10..]));
    assert!(!format!("{record:?} {store:?}").contains(&secret[10..]));

    let found = store.lookup(&record.digest).await.unwrap().unwrap();
    assert_eq!(found.id, record.id);
    assert_eq!(store.get(&record.id).unwrap().id, record.id);
    assert!(store
        .lookup(&KeyHasher::sha256().digest("fos_nope"))
        .await
        .unwrap()
        .is_none());
}

#[test]
fn list_shows_an_owners_keys_oldest_first() {
    let (store, clock) = store_with_clock();
    let a = store.issue(new_key("org_1")).unwrap();
    clock.advance(Duration::from_secs(1));
    let b = store.issue(new_key("org_1")).unwrap();
    store.issue(new_key("org_2")).unwrap();
    store.revoke(&a.record().id).unwrap();

    let listed: Vec<_> = store.list("org_1").iter().map(|r| r.id.clone()).collect();
    assert_eq!(listed, [a.record().id.clone(), b.record().id.clone()]);
    assert_eq!(store.list("org_2").len(), 1);
    assert!(store.list("nobody").is_empty());
    assert_eq!(store.len(), 3);
}

#[test]
fn revoke_is_immediate_and_idempotent() {
    let (store, clock) = store_with_clock();
    let issued = store.issue(new_key("org_1")).unwrap();
    let id = &issued.record().id;
    let revoked = store.revoke(id).unwrap();
    assert_eq!(revoked.revoked_at, Some(start_time()));
    assert_eq!(revoked.status_at(start_time()), KeyStatus::Revoked);
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        store.revoke(id).unwrap().revoked_at,
        Some(start_time()),
        "first revocation time kept"
    );
    assert!(matches!(
        store.revoke(&"key_missing".parse().unwrap()),
        Err(ManageError::NotFound(_))
    ));
}

#[test]
fn expiry_follows_the_clock() {
    let (store, _clock) = store_with_clock();
    let issued = store
        .issue(new_key("org_1").expires_in(Duration::from_secs(3600)))
        .unwrap();
    let record = store.get(&issued.record().id).unwrap();
    assert_eq!(
        record.expires_at,
        Some(start_time() + Duration::from_secs(3600))
    );
    assert_eq!(
        record.status_at(start_time() + Duration::from_secs(3599)),
        KeyStatus::Active
    );
    assert_eq!(
        record.status_at(start_time() + Duration::from_secs(3600)),
        KeyStatus::Expired
    );
    let at = store
        .issue(new_key("org_1").expires_at(start_time() + Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        at.record().expires_at,
        Some(start_time() + Duration::from_secs(5))
    );
}

#[test]
fn at_most_ten_active_keys_per_owner_by_default() {
    let (store, _clock) = store_with_clock();
    let keys: Vec<_> = (0..10)
        .map(|_| store.issue(new_key("org_1")).unwrap())
        .collect();
    match store.issue(new_key("org_1")) {
        Err(ManageError::KeyLimitReached { limit }) => assert_eq!(limit, 10),
        other => panic!("expected the limit, got {other:?}"),
    }
    assert!(
        store.issue(new_key("org_2")).is_ok(),
        "limits are per owner"
    );
    store.revoke(&keys[0].record().id).unwrap();
    assert!(
        store.issue(new_key("org_1")).is_ok(),
        "revoked keys free their slot"
    );
    assert!(store.issue(new_key("org_1")).is_err());
}

#[test]
fn expired_keys_do_not_count_and_limit_is_configurable() {
    let (store, clock) = store_with_clock();
    let store = Arc::try_unwrap(store)
        .unwrap()
        .with_max_keys_per_owner(NonZeroUsize::new(2).unwrap());
    store
        .issue(new_key("o").expires_in(Duration::from_secs(10)))
        .unwrap();
    store.issue(new_key("o")).unwrap();
    assert!(matches!(
        store.issue(new_key("o")),
        Err(ManageError::KeyLimitReached { limit: 2 })
    ));
    clock.advance(Duration::from_secs(10));
    assert!(store.issue(new_key("o")).is_ok());
}

#[test]
fn concurrent_issues_never_exceed_the_limit() {
    let store = Arc::new(MemoryKeyStore::new());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..10)
                    .filter(|_| store.issue(new_key("busy")).is_ok())
                    .count()
            })
        })
        .collect();
    let issued: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(issued, 10);
    assert_eq!(store.list("busy").len(), 10);
}

#[test]
fn rotate_keeps_settings_and_the_old_key_until_revoked() {
    let (store, clock) = store_with_clock();
    let old = store
        .issue(
            new_key("org_1")
                .expires_in(Duration::from_secs(90 * 86_400))
                .rate_limit(&forg::AI, Quota::per_minute(NonZeroU32::new(50).unwrap())),
        )
        .unwrap();
    clock.advance(Duration::from_secs(86_400));
    let new = store.rotate(&old.record().id, None).unwrap();
    let (o, n) = (old.record(), new.record());
    assert_ne!(n.id, o.id);
    assert_ne!(n.digest, o.digest);
    assert_ne!(new.key().expose_secret(), old.key().expose_secret());
    assert_eq!(
        (n.owner.as_str(), n.name.as_str(), n.prefix.as_str()),
        ("org_1", "ci", "forg_live_")
    );
    assert_eq!(n.scopes, o.scopes);
    assert_eq!(n.rate_limits, o.rate_limits);
    assert_eq!(n.created_at, start_time() + Duration::from_secs(86_400));
    assert_eq!(
        n.expires_at,
        Some(n.created_at + Duration::from_secs(90 * 86_400)),
        "same lifetime again"
    );
    assert_eq!(
        store.get(&o.id).unwrap().revoked_at,
        None,
        "old key valid until revoked"
    );
}

#[test]
fn rotate_with_grace_revokes_the_old_key_later() {
    let (store, clock) = store_with_clock();
    let old = store.issue(new_key("org_1")).unwrap();
    store
        .rotate(&old.record().id, Some(Duration::from_secs(300)))
        .unwrap();
    let record = store.get(&old.record().id).unwrap();
    assert_eq!(
        record.revoked_at,
        Some(start_time() + Duration::from_secs(300))
    );
    assert_eq!(
        record.status_at(start_time() + Duration::from_secs(299)),
        KeyStatus::Active
    );
    assert_eq!(
        record.status_at(start_time() + Duration::from_secs(300)),
        KeyStatus::Revoked
    );
    // Revoking during the grace period brings it forward.
    clock.advance(Duration::from_secs(10));
    let revoked = store.revoke(&old.record().id).unwrap();
    assert_eq!(
        revoked.revoked_at,
        Some(start_time() + Duration::from_secs(10))
    );
    // A revoked key cannot be rotated.
    assert!(matches!(
        store.rotate(&old.record().id, None),
        Err(ManageError::NotFound(_))
    ));
}

#[test]
fn rotate_at_the_limit_needs_immediate_revocation() {
    let (store, _clock) = store_with_clock();
    let keys: Vec<_> = (0..10)
        .map(|_| store.issue(new_key("org_1")).unwrap())
        .collect();
    let id = &keys[0].record().id;
    assert!(matches!(
        store.rotate(id, None),
        Err(ManageError::KeyLimitReached { .. })
    ));
    let new = store.rotate(id, Some(Duration::ZERO)).unwrap();
    assert_eq!(
        store.get(id).unwrap().status_at(start_time()),
        KeyStatus::Revoked
    );
    assert_eq!(new.record().status_at(start_time()), KeyStatus::Active);
}

#[test]
fn insert_and_delete() {
    let (store, _clock) = store_with_clock();
    let (_key, record) = new_key("org_1")
        .issue(&KeyHasher::sha256(), start_time())
        .unwrap();
    let stored = store.insert(record.clone()).unwrap();
    assert_eq!(*stored, record);
    assert!(matches!(
        store.insert(record.clone()),
        Err(ManageError::Duplicate)
    ));
    let deleted = store.delete(&record.id).unwrap();
    assert_eq!(deleted.id, record.id);
    assert!(store.get(&record.id).is_none());
    assert!(store.list("org_1").is_empty());
    assert!(store.is_empty());
    assert!(matches!(
        store.delete(&record.id),
        Err(ManageError::NotFound(_))
    ));
}

#[test]
fn key_record_serde_round_trip() {
    let (_key, mut record) = NewKey::<ForgScope>::new("org_1", "ci", &KeyFamily::FORG_TEST)
        .scopes(ScopeSet::from(ForgScope::Admin))
        .rate_limit(
            &forg::STANDARD,
            Quota::new(NonZeroU32::new(1000).unwrap(), NonZeroU32::new(60).unwrap()),
        )
        .issue(&KeyHasher::sha256(), start_time())
        .unwrap();
    record.expires_at = Some(start_time() + Duration::from_millis(1500));
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["created_at"], 1_767_225_600_000i64);
    assert_eq!(json["expires_at"], 1_767_225_601_500i64);
    assert_eq!(json["revoked_at"], serde_json::Value::Null);
    assert_eq!(json["environment"], "test");
    assert_eq!(json["scopes"], serde_json::json!(["admin"]));
    assert_eq!(
        json["rate_limits"]["standard"],
        serde_json::json!({"requests": 1000, "window_secs": 60})
    );
    assert_eq!(json["digest"].as_str().unwrap().len(), 64);
    let back: KeyRecord<ForgScope> = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, record);

    let mut zero = json;
    zero["rate_limits"]["standard"]["requests"] = 0.into();
    assert!(
        serde_json::from_value::<KeyRecord<ForgScope>>(zero).is_err(),
        "a zero quota is unrepresentable"
    );
}

#[test]
fn key_ids_are_validated() {
    use tower_api_key::store::KeyId;
    assert!("key_abc".parse::<KeyId>().is_ok());
    assert!("".parse::<KeyId>().is_err());
    assert!("has space".parse::<KeyId>().is_err());
    assert!("x".repeat(65).parse::<KeyId>().is_err());
    assert!(serde_json::from_str::<KeyId>(r#""bad/id""#).is_err());
    let a = KeyId::generate().unwrap();
    let b = KeyId::generate().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.as_str().len(), "key_".len() + 24);
}

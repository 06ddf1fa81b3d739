//! `MemoryKeyStore` through the shared lifecycle suite on a fake clock, its own `restore`,
//! and `KeyRecord` / `KeyId` serde.

use crate::common;
use crate::conformance;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::{memory, start_time, store_with_clock};
use tower_api_key::forg;
use tower_api_key::key::{KeyFamily, KeyHasher};
use tower_api_key::rate_limit::Quota;
use tower_api_key::store::{KeyPolicy, KeyRecord, ManageError, ManageKeys};
use tower_api_key::{ForgScope, MemoryKeyStore, NewKey, ScopeSet};

struct Memory;

impl conformance::Fixture for Memory {
    type Store = MemoryKeyStore<ForgScope>;

    async fn store(&self, policy: KeyPolicy) -> Arc<Self::Store> {
        Arc::new(MemoryKeyStore::new().with_policy(policy))
    }
}

conformance_suite!(Some(Memory));

fn new_key(owner: &str) -> NewKey<ForgScope> {
    NewKey::new(owner, "ci", &KeyFamily::FORG_LIVE)
        .scopes([ForgScope::ReadRules, ForgScope::ReadReports])
}

#[test]
fn restore_then_delete() {
    let (store, _clock) = store_with_clock();
    let (_key, record) = new_key("org_1")
        .issue(&KeyHasher::sha256(), start_time())
        .unwrap();
    let stored = store.restore(record.clone()).unwrap();
    assert_eq!(*stored, record);
    assert!(matches!(
        store.restore(record.clone()),
        Err(ManageError::Duplicate)
    ));
    assert_eq!(store.len(), 1);
    let deleted = memory(store.delete(record.id())).unwrap();
    assert_eq!(deleted.id(), record.id());
    assert!(memory(store.get(record.id())).unwrap().is_none());
    assert!(store.is_empty());
}

#[test]
fn restore_respects_the_owner_limit() {
    let (store, _clock) = store_with_clock();
    for _ in 0..10 {
        memory(store.issue(new_key("org_1"))).unwrap();
    }
    let (_key, record) = new_key("org_1")
        .issue(&KeyHasher::sha256(), start_time())
        .unwrap();
    assert!(matches!(
        store.restore(record.clone()),
        Err(ManageError::KeyLimitReached { limit: 10 })
    ));
    let mut revoked = record;
    revoked.set_revoked_at(Some(start_time()));
    assert!(
        store.restore(revoked).is_ok(),
        "a revoked record takes no slot"
    );
    let _ = Duration::ZERO;
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
    record.set_expires_at(Some(start_time() + Duration::from_millis(1500)));
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

#[test]
fn rotating_a_key_of_a_family_the_policy_no_longer_accepts_says_so() {
    let live_only = tower_api_key::key::KeyFamilies::only([KeyFamily::FORG_LIVE]).unwrap();
    let store = MemoryKeyStore::<ForgScope>::new()
        .with_policy(tower_api_key::forg::key_policy().families(live_only));
    // A sandbox key restored from before the policy changed.
    let (_key, record) = NewKey::<ForgScope>::new("org_1", "old", &KeyFamily::FORG_TEST)
        .issue(&KeyHasher::sha256(), std::time::SystemTime::now())
        .unwrap();
    let id = store.restore(record).unwrap().id().clone();
    assert!(matches!(
        memory(store.rotate(&id, None)),
        Err(ManageError::FamilyNotAccepted(prefix)) if prefix == "forg_test_"
    ));
}

#[test]
fn the_owners_plan_decides_which_environments_may_be_issued_and_rotated() {
    use tower_api_key::key::Environment;
    use tower_api_key::usage::{Plan, PlanTable};

    let plans = PlanTable::new(Plan::Free)
        .require(Environment::Live, Plan::Team)
        .owner("org_team", Plan::Team);
    let store = MemoryKeyStore::<ForgScope>::new()
        .with_policy(tower_api_key::forg::key_policy().plans(plans));

    assert!(matches!(
        memory(store.issue(NewKey::new("org_free", "prod", &KeyFamily::FORG_LIVE))),
        Err(ManageError::PlanRequired(Environment::Live))
    ));
    assert!(store.is_empty(), "nothing issued");
    assert!(memory(store.issue(NewKey::new("org_free", "ci", &KeyFamily::FORG_TEST))).is_ok());
    let live = memory(store.issue(NewKey::new("org_team", "prod", &KeyFamily::FORG_LIVE))).unwrap();
    assert!(memory(store.rotate(live.record().id(), None)).is_ok());

    // A live key restored for an owner since downgraded cannot be rotated into a new one.
    let (_key, record) = NewKey::<ForgScope>::new("org_free", "old", &KeyFamily::FORG_LIVE)
        .issue(&KeyHasher::sha256(), std::time::SystemTime::now())
        .unwrap();
    let id = store.restore(record).unwrap().id().clone();
    assert!(matches!(
        memory(store.rotate(&id, None)),
        Err(ManageError::PlanRequired(Environment::Live))
    ));
}

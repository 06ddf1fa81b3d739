//! A record's life besides rotation: delete, last use, the policy's families, hostile ids,
//! concurrent changes, disable and enable, metadata and networks.

use super::*;

pub async fn delete_removes_the_record_and_frees_the_slot<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let issued = store.issue(new_key("org_1")).await.unwrap();
    let record = issued.record();
    store.lookup(record.digest()).await.unwrap().unwrap();
    let deleted = store.delete(record.id()).await.unwrap();
    assert_eq!(deleted.id(), record.id());
    assert!(store.get(record.id()).await.unwrap().is_none());
    assert!(store.lookup(record.digest()).await.unwrap().is_none());
    assert!(store.list("org_1").await.unwrap().is_empty());
    assert!(matches!(
        store.delete(record.id()).await,
        Err(ManageError::NotFound(_))
    ));
}

pub async fn touch_keeps_the_latest_use<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let issued = store.issue(new_key("org_1")).await.unwrap();
    let id = &issued.record().id();
    let used = start() + Duration::from_secs(60);
    store.touch(id, used).await.unwrap();
    store
        .touch(id, used - Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        store.get(id).await.unwrap().unwrap().last_used_at(),
        Some(used),
        "last use only moves forward"
    );
    store
        .touch(&"key_gone".parse().unwrap(), used)
        .await
        .expect("an unknown id is not an error");
}

pub async fn only_the_policys_families_are_issued_and_rotated<F: Fixture>(fixture: &F) {
    let clock = ManualClock::default();
    let live_only = KeyFamilies::only([KeyFamily::FORG_LIVE]).unwrap();
    let store = fixture
        .store(
            tower_api_key::forg::key_policy()
                .clock(clock)
                .families(live_only),
        )
        .await;
    assert!(matches!(
        store
            .issue(NewKey::new("org_1", "sandbox", &KeyFamily::FORG_TEST))
            .await,
        Err(ManageError::FamilyNotAccepted(prefix)) if prefix == "forg_test_"
    ));
    assert!(store.list("org_1").await.unwrap().is_empty());
    let issued = store.issue(new_key("org_1")).await.unwrap();
    assert!(store.rotate(issued.record().id(), None).await.is_ok());
}

pub async fn unknown_and_hostile_ids_are_not_found<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let hostile = [
        "key_000000000000000000000000",
        "key_%00",
        "key_' OR '1'='1",
        "x".repeat(64).as_str(),
    ]
    .iter()
    .filter_map(|id| id.parse::<KeyId>().ok())
    .collect::<Vec<_>>();
    assert!(!hostile.is_empty());
    for id in &hostile {
        assert!(store.get(id).await.unwrap().is_none(), "{id:?}");
        assert!(matches!(
            store.revoke(id).await,
            Err(ManageError::NotFound(_))
        ));
        assert!(matches!(
            store.rotate(id, None).await,
            Err(ManageError::NotFound(_))
        ));
        assert!(matches!(
            store.delete(id).await,
            Err(ManageError::NotFound(_))
        ));
    }
    assert!(
        "key_' OR '1'='1".parse::<KeyId>().is_err(),
        "ids are validated before any store"
    );
}

/// A revocation, a disable and last-use stamps sent at once to each of ten keys: none of
/// them is lost to another (each change reads the record and writes it back), and a lookup
/// by digest sees what a read by id sees.
pub async fn concurrent_changes_to_one_key_are_all_kept<F: Fixture>(fixture: &F)
where
    F::Store: 'static,
{
    let (store, _clock) = on_clock(fixture).await;
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(store.issue(new_key("org_1")).await.unwrap());
    }
    let last_use = start() + Duration::from_secs(60 * 5);
    let mut tasks = Vec::new();
    for key in &keys {
        let id = key.record().id().clone();
        let store_ = Arc::clone(&store);
        let id_ = id.clone();
        tasks.push(tokio::spawn(
            async move { store_.revoke(&id_).await.map(drop) },
        ));
        let store_ = Arc::clone(&store);
        let id_ = id.clone();
        tasks.push(tokio::spawn(
            async move { store_.disable(&id_).await.map(drop) },
        ));
        for minute in 1..=5 {
            let store_ = Arc::clone(&store);
            let id_ = id.clone();
            tasks.push(tokio::spawn(async move {
                store_
                    .touch(&id_, start() + Duration::from_secs(60 * minute))
                    .await
                    .map_err(ManageError::Store)
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for key in &keys {
        let by_id = store.get(key.record().id()).await.unwrap().unwrap();
        assert!(by_id.revoked(), "the revocation kept");
        assert!(by_id.disabled(), "the disable kept");
        assert_eq!(by_id.last_used_at(), Some(last_use), "the latest use kept");
        let by_digest = store.lookup(key.record().digest()).await.unwrap().unwrap();
        assert_eq!(*by_digest, *by_id, "both indexes agree");
    }
}

pub async fn disable_and_enable_are_reversible_and_keep_the_slot<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(store.issue(new_key("org_1")).await.unwrap());
    }
    let key = &keys[0];
    let digest = key.record().digest();
    store.lookup(digest).await.unwrap().unwrap();

    let disabled = store.disable(key.record().id()).await.unwrap();
    assert!(disabled.disabled());
    let seen = store.lookup(digest).await.unwrap().unwrap();
    assert_eq!(
        seen.status_at(start()),
        KeyStatus::Disabled,
        "seen by the next lookup"
    );
    assert!(
        matches!(
            store.issue(new_key("org_1")).await,
            Err(ManageError::KeyLimitReached { limit: 10 })
        ),
        "a disabled key keeps its slot"
    );

    store.enable(key.record().id()).await.unwrap();
    let seen = store.lookup(digest).await.unwrap().unwrap();
    assert_eq!(seen.status_at(start()), KeyStatus::Active);
    assert!(!seen.disabled());

    store.disable(key.record().id()).await.unwrap();
    store.revoke(key.record().id()).await.unwrap();
    store.enable(key.record().id()).await.unwrap();
    let record = store.get(key.record().id()).await.unwrap().unwrap();
    assert_eq!(
        record.status_at(start()),
        KeyStatus::Revoked,
        "enabling never un-revokes"
    );
    assert!(matches!(
        store.disable(&"key_unknown".parse().unwrap()).await,
        Err(ManageError::NotFound(_))
    ));
}

pub async fn metadata_and_networks_round_trip_and_survive_rotation<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let metadata = tower_api_key::store::Metadata::new([
        ("team", "billing"),
        ("note", "caf\u{e9} \"quoted\""),
    ])
    .unwrap();
    let networks =
        tower_api_key::store::AllowedNetworks::new(["203.0.113.0/24", "2001:db8::/32"]).unwrap();
    let issued = store
        .issue(
            new_key("org_1")
                .metadata(metadata.clone())
                .allowed_networks(networks.clone()),
        )
        .await
        .unwrap();
    let stored = store.get(issued.record().id()).await.unwrap().unwrap();
    assert_eq!(stored.metadata(), &metadata);
    assert_eq!(stored.allowed_networks(), &networks);
    let found = store
        .lookup(issued.record().digest())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.metadata().get("team"), Some("billing"));
    let successor = store.rotate(issued.record().id(), None).await.unwrap();
    let stored = store.get(successor.record().id()).await.unwrap().unwrap();
    assert_eq!(stored.metadata(), &metadata, "the successor keeps it");
    assert_eq!(stored.allowed_networks(), &networks);
}

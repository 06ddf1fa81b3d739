//! Rotation: settings kept, the old key until revoked, a grace period, and rotating at the
//! limit.

use super::*;

pub async fn rotate_keeps_settings_and_the_old_key_until_revoked<F: Fixture>(fixture: &F) {
    let (store, clock) = on_clock(fixture).await;
    let old = store
        .issue(
            new_key("org_1")
                .expires_in(Duration::from_secs(90 * 86_400))
                .rate_limit(&forg::AI, Quota::per_minute(NonZeroU32::new(50).unwrap())),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(86_400));
    let new = store.rotate(old.record().id(), None).await.unwrap();
    let (o, n) = (old.record(), new.record());
    assert_ne!(n.id(), o.id());
    assert_ne!(n.digest(), o.digest());
    assert_ne!(new.key().expose_secret(), old.key().expose_secret());
    assert_eq!(
        (n.owner(), n.name(), n.prefix()),
        ("org_1", "ci", "forg_live_")
    );
    assert_eq!(n.scopes(), o.scopes());
    assert_eq!(n.rate_limits(), o.rate_limits());
    assert_eq!(n.created_at(), start() + Duration::from_secs(86_400));
    assert_eq!(
        n.expires_at(),
        Some(n.created_at() + Duration::from_secs(90 * 86_400)),
        "same lifetime again"
    );
    assert_eq!(
        store.get(o.id()).await.unwrap().unwrap().revoked_at(),
        None,
        "old key valid until revoked"
    );
    let stored = store.get(n.id()).await.unwrap().unwrap();
    assert_eq!(
        stored.rate_limits(),
        o.rate_limits(),
        "overrides are stored"
    );
    // Issue 36.1: the successor continues the key's lineage, as stored and as looked up,
    // and a second rotation keeps the first key's.
    assert_eq!(o.lineage(), o.id());
    assert_eq!(stored.lineage(), o.id(), "the lineage is stored");
    let looked_up = store.lookup(n.digest()).await.unwrap().unwrap();
    assert_eq!(looked_up.lineage(), o.id());
    let third = store.rotate(n.id(), None).await.unwrap();
    let third = store.get(third.record().id()).await.unwrap().unwrap();
    assert_eq!(third.lineage(), o.id(), "the chain's first key");
}

pub async fn rotate_with_grace_revokes_the_old_key_later<F: Fixture>(fixture: &F) {
    let (store, clock) = on_clock(fixture).await;
    let old = store.issue(new_key("org_1")).await.unwrap();
    store
        .rotate(old.record().id(), Some(Duration::from_secs(300)))
        .await
        .unwrap();
    let record = store.get(old.record().id()).await.unwrap().unwrap();
    assert_eq!(
        record.revoked_at(),
        Some(start() + Duration::from_secs(300))
    );
    assert_eq!(
        record.status_at(start() + Duration::from_secs(299)),
        KeyStatus::Active
    );
    assert_eq!(
        record.status_at(start() + Duration::from_secs(300)),
        KeyStatus::Revoked
    );
    // Revoking during the grace period brings it forward.
    clock.advance(Duration::from_secs(10));
    let revoked = store.revoke(old.record().id()).await.unwrap();
    assert_eq!(
        revoked.revoked_at(),
        Some(start() + Duration::from_secs(10))
    );
    // A revoked key cannot be rotated.
    assert!(matches!(
        store.rotate(old.record().id(), None).await,
        Err(ManageError::NotFound(_))
    ));
}

pub async fn rotate_at_the_limit_needs_immediate_revocation<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(store.issue(new_key("org_1")).await.unwrap());
    }
    let id = &keys[0].record().id();
    assert!(matches!(
        store.rotate(id, None).await,
        Err(ManageError::KeyLimitReached { .. })
    ));
    assert_eq!(
        store.get(id).await.unwrap().unwrap().revoked_at(),
        None,
        "a refused rotation changes nothing"
    );
    let new = store.rotate(id, Some(Duration::ZERO)).await.unwrap();
    assert_eq!(
        store.get(id).await.unwrap().unwrap().status_at(start()),
        KeyStatus::Revoked
    );
    assert_eq!(new.record().status_at(start()), KeyStatus::Active);
    let active = store
        .list("org_1")
        .await
        .unwrap()
        .iter()
        .filter(|r| r.status_at(start()) == KeyStatus::Active)
        .count();
    assert_eq!(active, 10);
}

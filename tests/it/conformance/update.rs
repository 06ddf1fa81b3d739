//! Updates in place, for every store: settings change and the version moves with every
//! change but a use; scopes only narrow; a stale version loses; of concurrent conditional
//! updates exactly one wins; an unconditional one re-checks its rules against what it
//! meets; a new expiry moves the record in and out of retention.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tower_api_key::rate_limit::{ClassName, Quota};
use tower_api_key::store::{
    AllowedNetworks, KeyStatus, KeyStore, KeyUpdate, ManageError, ManageKeys, Metadata,
};
use tower_api_key::ForgScope;

use super::{new_key, on_clock, start, Fixture};

fn ai_quota(requests: u32) -> BTreeMap<ClassName, Quota> {
    BTreeMap::from([(
        ClassName::from_static("ai"),
        Quota::per_minute(NonZeroU32::new(requests).unwrap()),
    )])
}

pub async fn update_changes_settings_in_place_and_moves_the_version<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let issued = store.issue(new_key("org_1")).await.unwrap();
    let id = issued.record().id();
    assert_eq!(issued.record().version(), 0);
    // Looked up first, so that a cache in front holds the old scopes.
    let cached = store
        .lookup(issued.record().digest())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cached.scopes().len(), 2);

    let expires = start() + Duration::from_secs(86_400);
    let update = KeyUpdate::new()
        .name("ci (read only)")
        .scopes(ForgScope::ReadRules)
        .expires_at(Some(expires))
        .metadata(Metadata::new([("team", "platform")]).unwrap())
        .allowed_networks(AllowedNetworks::new(["10.0.0.0/8"]).unwrap())
        .rate_limits(ai_quota(5))
        .if_version(0);
    let updated = store.update(id, update).await.unwrap();
    assert_eq!(updated.version(), 1);
    for record in [
        store.get(id).await.unwrap().unwrap(),
        store
            .lookup(issued.record().digest())
            .await
            .unwrap()
            .unwrap(),
    ] {
        assert_eq!(record.name(), "ci (read only)");
        assert_eq!(
            record.scopes().to_string(),
            "read:rules",
            "the next lookup sees it"
        );
        assert_eq!(record.expires_at(), Some(expires));
        assert_eq!(record.metadata().get("team"), Some("platform"));
        assert!(!record
            .allowed_networks()
            .allows("192.0.2.1".parse().unwrap()));
        assert_eq!(*record.rate_limits(), ai_quota(5));
        assert_eq!(record.version(), 1);
        // What an update never changes.
        assert_eq!(record.digest(), issued.record().digest());
        assert_eq!(record.owner(), "org_1");
        assert_eq!(record.created_at(), start());
        assert_eq!(record.lineage(), id);
        assert_eq!(record.status_at(start()), KeyStatus::Active);
    }

    // An update that changes nothing writes nothing.
    let same = store
        .update(id, KeyUpdate::new().name("ci (read only)"))
        .await
        .unwrap();
    assert_eq!(same.version(), 1);
    // Removing the expiry (the policy has no maximum lifetime).
    let unexpiring = store
        .update(id, KeyUpdate::new().expires_at(None))
        .await
        .unwrap();
    assert_eq!(unexpiring.expires_at(), None);
    assert_eq!(unexpiring.version(), 2);
}

pub async fn every_change_but_a_use_moves_the_version<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let issued = store.issue(new_key("org_1")).await.unwrap();
    let id = issued.record().id();
    store
        .touch(id, start() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(store.get(id).await.unwrap().unwrap().version(), 0, "a use");
    assert_eq!(store.disable(id).await.unwrap().version(), 1);
    assert_eq!(store.disable(id).await.unwrap().version(), 1, "no change");
    let renamed = store
        .update(id, KeyUpdate::new().name("disabled, renamed").if_version(1))
        .await
        .unwrap();
    assert_eq!(renamed.version(), 2, "a disabled key is updated");
    assert!(renamed.disabled(), "and stays disabled");
    assert_eq!(
        renamed.last_used_at(),
        Some(start() + Duration::from_secs(5)),
        "the last use is kept"
    );
    assert_eq!(store.enable(id).await.unwrap().version(), 3);
    assert_eq!(store.revoke(id).await.unwrap().version(), 4);
    assert_eq!(store.revoke(id).await.unwrap().version(), 4, "no change");
    assert!(matches!(
        store.update(id, KeyUpdate::new().name("late")).await,
        Err(ManageError::NotChangeable(_))
    ));
    assert!(matches!(
        store
            .update(&"key_missing".parse().unwrap(), KeyUpdate::new().name("x"))
            .await,
        Err(ManageError::NotFound(_))
    ));
}

pub async fn a_stale_version_and_a_wider_scope_are_refused<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let issued = store.issue(new_key("org_1")).await.unwrap();
    let id = issued.record().id();
    store
        .update(id, KeyUpdate::new().name("one"))
        .await
        .unwrap();
    let stale = store
        .update(id, KeyUpdate::new().name("two").if_version(0))
        .await;
    assert!(
        matches!(stale, Err(ManageError::VersionMismatch { expected: 0, .. })),
        "{stale:?}"
    );
    let wider = store
        .update(
            id,
            KeyUpdate::new().scopes([ForgScope::ReadRules, ForgScope::WriteRules]),
        )
        .await;
    assert!(matches!(
        wider,
        Err(ManageError::Invalid {
            field: "scopes",
            ..
        })
    ));
    let past = store
        .update(id, KeyUpdate::new().expires_at(Some(start())))
        .await;
    assert!(matches!(
        past,
        Err(ManageError::Invalid {
            field: "expires_at",
            ..
        })
    ));
    let kept = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        (kept.name(), kept.version()),
        ("one", 1),
        "nothing refused was written"
    );
    assert_eq!(kept.scopes().len(), 2);
}

pub async fn the_expiry_stays_within_the_maximum_lifetime<F: Fixture>(fixture: &F) {
    let clock = tower_api_key::clock::ManualClock::default();
    let day = Duration::from_secs(86_400);
    let store = fixture
        .store(
            tower_api_key::forg::key_policy()
                .clock(clock.clone())
                .max_lifetime(day * 90),
        )
        .await;
    let issued = store.issue(new_key("org_1")).await.unwrap();
    let id = issued.record().id();
    clock.advance(day * 30);
    let far = store
        .update(id, KeyUpdate::new().expires_at(Some(start() + day * 365)))
        .await
        .unwrap();
    assert_eq!(
        far.expires_at(),
        Some(start() + day * 90),
        "cut to 90 days from issue"
    );
    let none = store
        .update(id, KeyUpdate::new().expires_at(None))
        .await
        .unwrap();
    assert_eq!(
        none.expires_at(),
        Some(start() + day * 90),
        "never unlimited"
    );
}

pub async fn concurrent_conditional_updates_exactly_one_wins<F: Fixture>(fixture: &F)
where
    F::Store: 'static,
{
    let (store, _clock) = on_clock(fixture).await;
    let issued = store.issue(new_key("org_1")).await.unwrap();
    let id = issued.record().id().clone();
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(&store);
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .update(
                        &id,
                        KeyUpdate::new().name(format!("writer {n}")).if_version(0),
                    )
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (n, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(record) => won.push((n, record)),
            Err(ManageError::VersionMismatch { .. }) => {}
            Err(other) => panic!("writer {n}: {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one conditional update wins");
    let stored = store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.name(), format!("writer {}", won[0].0));
    assert_eq!(stored.version(), 1);
}

pub async fn concurrent_narrowings_never_widen<F: Fixture>(fixture: &F)
where
    F::Store: 'static,
{
    let (store, _clock) = on_clock(fixture).await;
    let issued = store.issue(new_key("org_1")).await.unwrap();
    let id = issued.record().id().clone();
    // Each narrows the original {read:rules, read:reports} to a different single scope:
    // whichever lands second meets the other's scopes and must not widen them back.
    let tasks: Vec<_> = [ForgScope::ReadRules, ForgScope::ReadReports]
        .into_iter()
        .map(|scope| {
            let store = Arc::clone(&store);
            let id = id.clone();
            tokio::spawn(async move { store.update(&id, KeyUpdate::new().scopes(scope)).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let stored = store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.scopes().len(), 1, "never both again");
    let wins = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|outcome| {
            matches!(
                outcome,
                Err(ManageError::Invalid {
                    field: "scopes",
                    ..
                })
            )
        })
        .count();
    assert_eq!((wins, refused), (1, 1), "{outcomes:?}");
}

pub async fn a_new_expiry_moves_the_record_in_and_out_of_retention<F: Fixture>(fixture: &F) {
    let (store, clock) = on_clock(fixture).await;
    let day = Duration::from_secs(86_400);
    let shortened = store.issue(new_key("org_1")).await.unwrap();
    let extended = store
        .issue(new_key("org_1").expires_in(Duration::from_secs(3600)))
        .await
        .unwrap();
    store
        .update(
            shortened.record().id(),
            KeyUpdate::new().expires_at(Some(start() + Duration::from_secs(60))),
        )
        .await
        .unwrap();
    store
        .update(extended.record().id(), KeyUpdate::new().expires_at(None))
        .await
        .unwrap();
    clock.advance(day * 31);
    store.issue(new_key("org_1")).await.unwrap(); // purges the owner's past retention
    assert!(
        store.get(shortened.record().id()).await.unwrap().is_none(),
        "expired by its new expiry, past retention: deleted"
    );
    let kept = store.get(extended.record().id()).await.unwrap().unwrap();
    assert_eq!(
        kept.status_at(start() + day * 31),
        KeyStatus::Active,
        "no expiry now"
    );
}

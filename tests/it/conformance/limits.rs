//! The per-owner limit of active keys: the default, expired keys, a configured limit, and
//! concurrent issues.

use super::*;

pub async fn at_most_ten_active_keys_per_owner_by_default<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(store.issue(new_key("org_1")).await.unwrap());
    }
    match store.issue(new_key("org_1")).await {
        Err(ManageError::KeyLimitReached { limit }) => assert_eq!(limit, 10),
        other => panic!("expected the limit, got {other:?}"),
    }
    assert!(
        store.issue(new_key("org_2")).await.is_ok(),
        "limits are per owner"
    );
    store.revoke(keys[0].record().id()).await.unwrap();
    assert!(
        store.issue(new_key("org_1")).await.is_ok(),
        "revoked keys free their slot"
    );
    assert!(store.issue(new_key("org_1")).await.is_err());
}

pub async fn expired_keys_do_not_count_and_the_limit_is_configurable<F: Fixture>(fixture: &F) {
    let clock = ManualClock::default();
    let store = fixture
        .store(
            tower_api_key::forg::key_policy()
                .clock(clock.clone())
                .max_active_per_owner(NonZeroUsize::new(2).unwrap()),
        )
        .await;
    store
        .issue(new_key("o").expires_in(Duration::from_secs(10)))
        .await
        .unwrap();
    store.issue(new_key("o")).await.unwrap();
    assert!(matches!(
        store.issue(new_key("o")).await,
        Err(ManageError::KeyLimitReached { limit: 2 })
    ));
    clock.advance(Duration::from_secs(10));
    assert!(store.issue(new_key("o")).await.is_ok());
}

pub async fn concurrent_issues_never_exceed_the_limit<F: Fixture>(fixture: &F)
where
    F::Store: 'static,
{
    let (store, _clock) = on_clock(fixture).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = Arc::clone(&store);
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
    assert_eq!(issued, 10, "100 concurrent issues, exactly 10 keys");
    assert_eq!(store.list("busy").await.unwrap().len(), 10);
}

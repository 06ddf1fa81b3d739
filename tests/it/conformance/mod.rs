//! One lifecycle suite for every store: issue, get, list, revoke, rotate, expiry, the
//! per-owner limit under concurrency, delete, last use, hostile ids and updates in place
//! (`update.rs`) and the scan cursor (`scan.rs`), on a fake clock.
//!
//! A test binary instantiates it with `conformance_suite!(fixture)`, where the fixture
//! builds fresh, empty stores under a given policy; every store of the crate (memory,
//! cached memory, Redis, cached Redis, PostgreSQL, SQLite) runs the same tests.
#![allow(dead_code)]

mod scan;
mod update;
pub use scan::*;
pub use update::*;

use std::fmt::Debug;
use std::future::Future;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use tower_api_key::clock::ManualClock;
use tower_api_key::forg;
use tower_api_key::key::{Environment, KeyFamilies, KeyFamily, KeyHasher};
use tower_api_key::rate_limit::Quota;
use tower_api_key::store::{KeyId, KeyPolicy, KeyStatus, KeyStore, ManageError, ManageKeys};
use tower_api_key::{ForgScope, NewKey};

/// Builds empty stores for the suite.
pub trait Fixture {
    /// The store under test.
    type Store: ManageKeys<Scope = ForgScope> + Debug;

    /// A fresh, empty store under `policy`.
    fn store(&self, policy: KeyPolicy) -> impl Future<Output = Arc<Self::Store>>;

    /// How many login / logout cycles the storage test runs on this store: enough to cross
    /// the sweeps' thresholds (1,024 inserts, then each doubling of a map) several times.
    fn login_cycles(&self) -> usize {
        10_000
    }
}

/// Instantiates every test of the suite for `$fixture` (an expression evaluated once per
/// test, `Option<impl Fixture>`: `None` skips, for servers the machine does not have).
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:expr) => {
        $crate::conformance_suite!(@tests $fixture;
            issue_stores_only_the_digest_and_returns_the_plaintext_once,
            list_shows_an_owners_keys_oldest_first,
            revoke_is_immediate_idempotent_and_seen_by_the_next_lookup,
            an_immediate_revocation_holds_whatever_the_clock_says,
            expiry_follows_the_clock,
            at_most_ten_active_keys_per_owner_by_default,
            expired_keys_do_not_count_and_the_limit_is_configurable,
            concurrent_issues_never_exceed_the_limit,
            rotate_keeps_settings_and_the_old_key_until_revoked,
            rotate_with_grace_revokes_the_old_key_later,
            rotate_at_the_limit_needs_immediate_revocation,
            delete_removes_the_record_and_frees_the_slot,
            touch_keeps_the_latest_use,
            concurrent_changes_to_one_key_are_all_kept,
            disable_and_enable_are_reversible_and_keep_the_slot,
            metadata_and_networks_round_trip_and_survive_rotation,
            only_the_policys_families_are_issued_and_rotated,
            unknown_and_hostile_ids_are_not_found,
            records_refused_past_retention_are_deleted,
            login_history_leaves_only_live_sessions,
            update_changes_settings_in_place_and_moves_the_version,
            every_change_but_a_use_moves_the_version,
            a_stale_version_and_a_wider_scope_are_refused,
            the_expiry_stays_within_the_maximum_lifetime,
            concurrent_conditional_updates_exactly_one_wins,
            concurrent_narrowings_never_widen,
            a_new_expiry_moves_the_record_in_and_out_of_retention,
            a_scan_meets_every_record_once_in_id_order,
            a_scan_skips_what_is_deleted_and_meets_what_stays,
        );
    };
    (@tests $fixture:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(fixture) = $fixture else { return };
                $crate::conformance::$test(&fixture).await;
            }
        )*
    };
}

/// Where every fixture's manual clock starts.
fn start() -> std::time::SystemTime {
    tower_api_key::clock::Clock::now(&ManualClock::default())
}

/// A store on a fresh manual clock, with the default policy otherwise.
async fn on_clock<F: Fixture>(fixture: &F) -> (Arc<F::Store>, ManualClock) {
    let clock = ManualClock::default();
    let store = fixture
        .store(tower_api_key::forg::key_policy().clock(clock.clone()))
        .await;
    (store, clock)
}

fn new_key(owner: &str) -> NewKey<ForgScope> {
    NewKey::new(owner, "ci", &KeyFamily::FORG_LIVE)
        .scopes([ForgScope::ReadRules, ForgScope::ReadReports])
}

pub async fn issue_stores_only_the_digest_and_returns_the_plaintext_once<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let issued = store.issue(new_key("org_1")).await.unwrap();
    let record = issued.record();
    assert_eq!(
        record.digest(),
        &store.hasher().digest(issued.key().expose_secret())
    );
    assert_eq!(record.owner(), "org_1");
    assert_eq!(record.name(), "ci");
    assert_eq!(record.prefix(), "forg_live_");
    assert_eq!(record.environment(), Environment::Live);
    assert_eq!(record.created_at(), start());
    assert_eq!(record.scopes().to_string(), "read:rules read:reports");
    assert!(record.id().as_str().starts_with("key_"));
    let secret = issued.key().expose_secret();
    assert_eq!(
        record.hint(),
        format!("forg_live_…{}", &secret[secret.len() - 4..])
    );

    // Nothing the store keeps or prints contains the secret.
    let serialized = serde_json::to_string(&**record).unwrap();
    assert!(!serialized.contains(&secret[10..]));
    assert!(!format!("{record:?} {store:?}").contains(&secret[10..]));

    let found = store.lookup(record.digest()).await.unwrap().unwrap();
    assert_eq!(found.id(), record.id());
    let got = store.get(record.id()).await.unwrap().unwrap();
    assert_eq!(*got, **record, "the stored record round-trips whole");
    assert!(store
        .lookup(&KeyHasher::sha256().digest("fos_nope"))
        .await
        .unwrap()
        .is_none());
}

pub async fn list_shows_an_owners_keys_oldest_first<F: Fixture>(fixture: &F) {
    let (store, clock) = on_clock(fixture).await;
    let a = store.issue(new_key("org_1")).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let b = store.issue(new_key("org_1")).await.unwrap();
    store.issue(new_key("org_2")).await.unwrap();
    store.revoke(a.record().id()).await.unwrap();

    let listed: Vec<_> = store
        .list("org_1")
        .await
        .unwrap()
        .iter()
        .map(|r| r.id().clone())
        .collect();
    assert_eq!(listed, [a.record().id().clone(), b.record().id().clone()]);
    assert_eq!(store.list("org_2").await.unwrap().len(), 1);
    assert!(store.list("nobody").await.unwrap().is_empty());
}

pub async fn revoke_is_immediate_idempotent_and_seen_by_the_next_lookup<F: Fixture>(fixture: &F) {
    let (store, clock) = on_clock(fixture).await;
    let issued = store.issue(new_key("org_1")).await.unwrap();
    let id = &issued.record().id();
    let digest = issued.record().digest();
    // Looked up once first, so a cache in front holds the record.
    let before = store.lookup(digest).await.unwrap().unwrap();
    assert_eq!(before.revoked_at(), None);

    let revoked = store.revoke(id).await.unwrap();
    assert_eq!(revoked.revoked_at(), Some(start()));
    assert_eq!(revoked.status_at(start()), KeyStatus::Revoked);
    let seen = store.lookup(digest).await.unwrap().unwrap();
    assert_eq!(
        seen.status_at(start()),
        KeyStatus::Revoked,
        "the next lookup after revoke returned sees it"
    );

    clock.advance(Duration::from_secs(10));
    assert_eq!(
        store.revoke(id).await.unwrap().revoked_at(),
        Some(start()),
        "first revocation time kept"
    );
    assert!(matches!(
        store.revoke(&"key_missing".parse().unwrap()).await,
        Err(ManageError::NotFound(_))
    ));
}

pub async fn an_immediate_revocation_holds_whatever_the_clock_says<F: Fixture>(fixture: &F) {
    let (store, clock) = on_clock(fixture).await;
    let revoked = store.issue(new_key("org_1")).await.unwrap();
    let rotated = store.issue(new_key("org_1")).await.unwrap();
    store.revoke(revoked.record().id()).await.unwrap();
    store
        .rotate(rotated.record().id(), Some(Duration::from_secs(300)))
        .await
        .unwrap();
    // Another instance's clock 30 s behind, or this one stepping back an hour.
    for behind in [Duration::from_secs(30), Duration::from_secs(3600)] {
        let earlier = start() - behind;
        let record = store
            .lookup(revoked.record().digest())
            .await
            .unwrap()
            .unwrap();
        assert!(record.revoked());
        assert_eq!(record.status_at(earlier), KeyStatus::Revoked, "{behind:?}");
        let scheduled = store.get(rotated.record().id()).await.unwrap().unwrap();
        assert!(!scheduled.revoked(), "a grace period is a time, not a flag");
        assert_eq!(scheduled.status_at(earlier), KeyStatus::Active);
    }
    clock.set(start() - Duration::from_secs(3600));
    assert!(matches!(
        store.rotate(revoked.record().id(), None).await,
        Err(ManageError::NotFound(_))
    ));
    // Revoking during the grace period makes it immediate.
    store.revoke(rotated.record().id()).await.unwrap();
    let now_revoked = store.get(rotated.record().id()).await.unwrap().unwrap();
    assert!(now_revoked.revoked());
}

pub async fn expiry_follows_the_clock<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let issued = store
        .issue(new_key("org_1").expires_in(Duration::from_secs(3600)))
        .await
        .unwrap();
    let record = store.get(issued.record().id()).await.unwrap().unwrap();
    assert_eq!(
        record.expires_at(),
        Some(start() + Duration::from_secs(3600))
    );
    assert_eq!(
        record.status_at(start() + Duration::from_secs(3599)),
        KeyStatus::Active
    );
    assert_eq!(
        record.status_at(start() + Duration::from_secs(3600)),
        KeyStatus::Expired
    );
    let at = store
        .issue(new_key("org_1").expires_at(start() + Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        at.record().expires_at(),
        Some(start() + Duration::from_secs(5))
    );
}

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

/// Issue 21.6: revoked and expired keys stay listed for the retention period (30 days by
/// default), then the store deletes them; disabled and active keys stay. Failed before:
/// every record stayed forever.
pub async fn records_refused_past_retention_are_deleted<F: Fixture>(fixture: &F) {
    let (store, clock) = on_clock(fixture).await;
    let day = Duration::from_secs(86_400);
    let revoked = store.issue(new_key("org_1")).await.unwrap();
    let expiring = store
        .issue(new_key("org_1").expires_in(Duration::from_secs(3600)))
        .await
        .unwrap();
    let disabled = store.issue(new_key("org_1")).await.unwrap();
    let active = store.issue(new_key("org_1")).await.unwrap();
    store.revoke(revoked.record().id()).await.unwrap();
    store.disable(disabled.record().id()).await.unwrap();

    clock.advance(day * 29);
    store.issue(new_key("org_1")).await.unwrap();
    assert_eq!(
        store.list("org_1").await.unwrap().len(),
        5,
        "within retention: listed for the audit view"
    );
    clock.advance(day * 2);
    store.issue(new_key("org_1")).await.unwrap();
    let listed: Vec<KeyId> = store
        .list("org_1")
        .await
        .unwrap()
        .iter()
        .map(|record| record.id().clone())
        .collect();
    assert_eq!(listed.len(), 4, "{listed:?}");
    for gone in [&revoked, &expiring] {
        assert!(!listed.contains(gone.record().id()));
        assert!(store.get(gone.record().id()).await.unwrap().is_none());
        assert!(store
            .lookup(gone.record().digest())
            .await
            .unwrap()
            .is_none());
    }
    for kept in [&disabled, &active] {
        assert!(listed.contains(kept.record().id()));
    }
}

/// Issue 21.6: many logins and logouts of one owner leave only its live sessions: ended
/// sessions are deleted at once, expired ones when the owner next logs in. Failed before:
/// one record per login, forever, and `Sessions::start` walked them all.
pub async fn login_history_leaves_only_live_sessions<F: Fixture>(fixture: &F) {
    use http::{HeaderMap, Request, Response};
    use tower::{Layer, ServiceExt};
    use tower_api_key::session::{CsrfSecret, Sessions};
    use tower_api_key::{AuthLayer, Principal};

    let clock = ManualClock::default();
    let keys = fixture
        .store(tower_api_key::forg::key_policy().clock(clock.clone()))
        .await;
    let store = fixture
        .store(KeyPolicy::sessions().clock(clock.clone()))
        .await;
    let sessions = Sessions::new(Arc::clone(&store), CsrfSecret::generate().unwrap());
    // What the logout route does: the session's principal ends it.
    let logout = {
        let sessions = sessions.clone();
        AuthLayer::new(keys)
            .sessions(sessions.clone())
            .layer(tower::service_fn(move |request: Request<()>| {
                let sessions = sessions.clone();
                async move {
                    let principal = request.extensions().get::<Principal>().cloned();
                    if let Some(principal) = principal {
                        sessions.end(&principal).await.unwrap();
                    }
                    Ok::<_, std::convert::Infallible>(Response::new(String::new()))
                }
            }))
    };
    let cycles = fixture.login_cycles();
    for _ in 0..cycles {
        let started = sessions
            .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
            .await
            .unwrap();
        let request = Request::get("/auth/logout")
            .header("cookie", started.cookies().cookie_header())
            .body(())
            .unwrap();
        let response = logout.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
    }
    assert!(
        store.records_of("user_1").await.unwrap().is_empty(),
        "{cycles} logins and logouts leave nothing"
    );
    // Sessions that expire instead go when the owner next logs in.
    for _ in 0..5 {
        sessions
            .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(13 * 3600));
    sessions
        .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
        .await
        .unwrap();
    assert_eq!(
        store.records_of("user_1").await.unwrap().len(),
        1,
        "the live one"
    );
    assert_eq!(sessions.end_all("user_1").await.unwrap(), 1);
    assert!(store.records_of("user_1").await.unwrap().is_empty());
}

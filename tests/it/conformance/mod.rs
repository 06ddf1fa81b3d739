//! One lifecycle suite for every store: issue, get, list, revoke, rotate, expiry, the
//! per-owner limit under concurrency, delete, last use, hostile ids and updates in place
//! (`update.rs`) and the scan cursor (`scan.rs`), on a fake clock; one file per part of a
//! record's life.
//!
//! A test binary instantiates it with `conformance_suite!(fixture)`, where the fixture
//! builds fresh, empty stores under a given policy; every store of the crate (memory,
//! cached memory, Redis, cached Redis, PostgreSQL, SQLite) runs the same tests.
#![allow(dead_code)]

mod limits;
mod records;
mod retention;
mod rotation;
mod scan;
mod update;
pub use limits::*;
pub use records::*;
pub use retention::*;
pub use rotation::*;
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

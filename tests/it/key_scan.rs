//! Issue 39.1: the scheduled scan. `key.expiring` and `key.rotation_due` once per key and
//! crossing, on a fake clock; one instance scans per period and two instances sharing a
//! gate announce each key once; a run reads one batch, whatever the number of keys.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::events::{KeyEvent, KeyEventKind, KeyEvents, KeyScan, MemoryEventGate};
use tower_api_key::key::KeyFamily;
use tower_api_key::store::{KeyId, KeyPolicy, ManageError, ManageKeys, NewKey};
use tower_api_key::{ForgScope, MemoryKeyStore};

type Seen = Arc<Mutex<Vec<KeyEvent>>>;

const DAY: Duration = Duration::from_secs(86_400);
const MINUTE: Duration = Duration::from_secs(60);

fn collecting(seen: &Seen) -> KeyEvents {
    let sink = Arc::clone(seen);
    KeyEvents::new().sink(move |event: &KeyEvent| sink.lock().unwrap().push(event.clone()))
}

fn policy(clock: &ManualClock) -> KeyPolicy {
    tower_api_key::forg::key_policy()
        .clock(clock.clone())
        .rotation_age(90 * DAY)
}

/// (type, key id) of each event so far.
fn announced(seen: &Seen) -> Vec<(&'static str, KeyId)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|event| match event.kind() {
            KeyEventKind::Expiring { key, .. } | KeyEventKind::RotationDue { key, .. } => {
                (event.kind().name(), key.id.clone())
            }
            other => panic!("unexpected {}", other.name()),
        })
        .collect()
}

async fn issue<M: ManageKeys<Scope = ForgScope>>(
    store: &M,
    owner: &str,
    expires_in: Option<Duration>,
) -> KeyId {
    let mut key = NewKey::new(owner, "ci", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules);
    if let Some(after) = expires_in {
        key = key.expires_at(store.policy().now() + after);
    }
    store.issue(key).await.unwrap().record().id().clone()
}

#[tokio::test]
async fn expiring_and_rotation_due_are_announced_once_per_key() {
    let clock = ManualClock::default();
    let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(policy(&clock)));
    let soon = issue(&*store, "org_a", Some(3 * DAY)).await;
    let later = issue(&*store, "org_a", Some(30 * DAY)).await;
    let forever = store
        .issue(NewKey::new("org_b", "ci", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    let (forever, secret) = (
        forever.record().id().clone(),
        forever.key().expose_secret().to_owned(),
    );
    let revoked = issue(&*store, "org_b", Some(DAY)).await;
    store.revoke(&revoked).await.unwrap();

    let seen: Seen = Arc::default();
    let gate = MemoryEventGate::new().with_clock(clock.clone());
    let scan = KeyScan::new(Arc::clone(&store), collecting(&seen).gate(gate))
        .notice(7 * DAY)
        .every(MINUTE);
    let run = scan.run().await.unwrap();
    assert!(run.claimed && run.finished_pass);
    assert_eq!((run.examined, run.announced), (4, 1));
    assert_eq!(announced(&seen), [("key.expiring", soon.clone())]);
    assert!(!scan.run().await.unwrap().claimed, "one run per period");

    // Every later pass meets the key again: announced once all the same.
    for _ in 0..3 {
        clock.advance(MINUTE);
        assert_eq!(scan.run().await.unwrap().announced, 0);
    }
    // 24 days on, `later` is within the notice; `soon` has expired and is quiet.
    clock.advance(24 * DAY);
    assert_eq!(scan.run().await.unwrap().announced, 1);
    // An expiry moved by an update is a new crossing.
    store
        .update(
            &later,
            tower_api_key::store::KeyUpdate::new().expires_at(Some(clock.now() + 5 * DAY)),
        )
        .await
        .unwrap();
    clock.advance(MINUTE);
    assert_eq!(scan.run().await.unwrap().announced, 1);
    // 90 days after issue: `forever` is due for rotation, once; `later` expired.
    clock.advance(66 * DAY);
    assert_eq!(scan.run().await.unwrap().announced, 1);
    clock.advance(MINUTE);
    assert_eq!(scan.run().await.unwrap().announced, 0);
    assert_eq!(
        announced(&seen),
        [
            ("key.expiring", soon),
            ("key.expiring", later.clone()),
            ("key.expiring", later),
            ("key.rotation_due", forever.clone()),
        ]
    );
    // Left unrotated for another rotation age: reminded again.
    clock.advance(90 * DAY);
    assert_eq!(scan.run().await.unwrap().announced, 1);
    let json = seen.lock().unwrap().last().unwrap().to_json();
    assert!(json.contains("\"type\":\"key.rotation_due\"") && json.contains(forever.as_str()));
    assert!(!json.contains(&secret), "no secret in an event");
}

#[tokio::test]
async fn two_instances_share_the_period_and_announce_each_key_once() {
    let clock = ManualClock::default();
    let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(policy(&clock)));
    for n in 0..30 {
        issue(&*store, &format!("org_{}", n % 5), Some(DAY)).await;
    }
    let gate = Arc::new(MemoryEventGate::new().with_clock(clock.clone()));
    let seen: [Seen; 2] = Default::default();
    let scans = seen.clone().map(|seen| {
        KeyScan::new(
            Arc::clone(&store),
            collecting(&seen).gate(Arc::clone(&gate)),
        )
        .batch(NonZeroUsize::new(8).unwrap())
        .every(MINUTE)
    });
    for _ in 0..12 {
        let (a, b) = (scans[0].run().await.unwrap(), scans[1].run().await.unwrap());
        assert!(a.claimed != b.claimed, "one scan per period");
        assert!(a.examined.max(b.examined) <= 8, "one batch per run");
        clock.advance(MINUTE);
    }
    let mut all = announced(&seen[0]);
    all.extend(announced(&seen[1]));
    let count = all.len();
    all.sort();
    all.dedup();
    assert_eq!((count, all.len()), (30, 30), "each key once between them");
}

#[tokio::test]
async fn a_run_reads_one_batch_at_ten_thousand_keys() {
    let clock = ManualClock::default();
    let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(policy(&clock)));
    for n in 0..10_000 {
        issue(&*store, &format!("org_{}", n / 10), Some(DAY)).await;
    }
    let seen: Seen = Arc::default();
    let gate = MemoryEventGate::new().with_clock(clock.clone());
    let scan = KeyScan::new(Arc::clone(&store), collecting(&seen).gate(gate))
        .batch(NonZeroUsize::new(500).unwrap());
    let mut runs = 0;
    loop {
        let run = scan.run().await.unwrap();
        runs += 1;
        assert!(run.examined <= 500);
        clock.advance(MINUTE);
        if run.finished_pass {
            break;
        }
    }
    assert_eq!(runs, 21, "20 full pages, then the end");
    assert_eq!(seen.lock().unwrap().len(), 10_000);
}

#[tokio::test]
async fn nothing_is_announced_without_a_gate_and_a_store_that_cannot_scan_says_so() {
    let clock = ManualClock::default();
    let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(policy(&clock)));
    issue(&*store, "org_a", Some(DAY)).await;
    let seen: Seen = Arc::default();
    let run = KeyScan::new(Arc::clone(&store), collecting(&seen))
        .run()
        .await
        .unwrap();
    assert!(
        !run.claimed && seen.lock().unwrap().is_empty(),
        "once cannot be promised"
    );

    // A store that cannot scan says so.
    let error = KeyScan::new(
        Arc::new(NoScan(MemoryKeyStore::new())),
        collecting(&seen).gate(MemoryEventGate::new()),
    )
    .run()
    .await
    .unwrap_err();
    assert!(matches!(error, ManageError::Unsupported(_)), "{error}");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn two_instances_on_redis_announce_each_key_once() {
    use crate::common::{unique, AnyRedis};
    use tower_api_key::events::RedisEventGate;
    use tower_api_key::store::RedisKeyStore;

    for redis in AnyRedis::every() {
        let namespace = unique("scan");
        let clock = ManualClock::default();
        let mut scans = Vec::new();
        let mut sinks = Vec::new();
        for _ in 0..2 {
            let connection = redis.connection().await;
            let store = Arc::new(
                RedisKeyStore::<ForgScope>::new(connection.clone())
                    .with_namespace(&namespace)
                    .with_policy(policy(&clock)),
            );
            let seen: Seen = Arc::default();
            let events = collecting(&seen).gate(RedisEventGate::new(connection, &namespace));
            scans.push(
                KeyScan::new(store, events)
                    .batch(NonZeroUsize::new(4).unwrap())
                    .every(MINUTE),
            );
            sinks.push(seen);
        }
        let store = RedisKeyStore::<ForgScope>::new(redis.connection().await)
            .with_namespace(&namespace)
            .with_policy(policy(&clock));
        for n in 0..10 {
            issue(&store, &format!("org_{}", n % 3), Some(DAY)).await;
        }
        // Keys issued before the index existed: not scanned until their owners are indexed.
        let mut raw = redis.connection().await;
        redis::cmd("DEL")
            .arg(format!("{{{namespace}}}:ids"))
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
        let none = std::num::NonZeroUsize::new(100).unwrap();
        assert!(store
            .records_after(None, none)
            .await
            .unwrap()
            .records
            .is_empty());
        let mut indexed = 0;
        for owner in ["org_0", "org_1", "org_2"] {
            indexed += store.index_owner(owner).await.unwrap();
        }
        assert_eq!(indexed, 10);
        for _ in 0..8 {
            let (a, b) = (scans[0].run().await.unwrap(), scans[1].run().await.unwrap());
            assert!(a.claimed != b.claimed, "one scan per period");
            clock.advance(MINUTE);
        }
        let mut all = announced(&sinks[0]);
        all.extend(announced(&sinks[1]));
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!((count, all.len()), (10, 10), "each key once between them");
    }
}

/// A store written before scans existed: the default `records_after`.
#[derive(Debug)]
struct NoScan(MemoryKeyStore<ForgScope>);

impl tower_api_key::store::KeyStore for NoScan {
    type Scope = ForgScope;
    async fn lookup(
        &self,
        digest: &tower_api_key::key::KeyDigest,
    ) -> tower_api_key::store::LookupResult<ForgScope> {
        self.0.lookup(digest).await
    }
}

impl ManageKeys for NoScan {
    async fn insert(
        &self,
        insert: tower_api_key::store::Insert<ForgScope>,
    ) -> Result<Arc<tower_api_key::store::KeyRecord<ForgScope>>, ManageError> {
        self.0.insert(insert).await
    }
    async fn get(
        &self,
        id: &KeyId,
    ) -> Result<Option<Arc<tower_api_key::store::KeyRecord<ForgScope>>>, ManageError> {
        self.0.get(id).await
    }
    async fn records_of(
        &self,
        owner: &str,
    ) -> Result<Vec<Arc<tower_api_key::store::KeyRecord<ForgScope>>>, ManageError> {
        self.0.records_of(owner).await
    }
    async fn revoke_at(
        &self,
        id: &KeyId,
        revocation: tower_api_key::store::Revocation,
    ) -> Result<Arc<tower_api_key::store::KeyRecord<ForgScope>>, ManageError> {
        self.0.revoke_at(id, revocation).await
    }
    async fn set_disabled(
        &self,
        id: &KeyId,
        disabled: bool,
    ) -> Result<Arc<tower_api_key::store::KeyRecord<ForgScope>>, ManageError> {
        self.0.set_disabled(id, disabled).await
    }
    async fn delete(
        &self,
        id: &KeyId,
    ) -> Result<Arc<tower_api_key::store::KeyRecord<ForgScope>>, ManageError> {
        self.0.delete(id).await
    }
    async fn touch(
        &self,
        id: &KeyId,
        at: std::time::SystemTime,
    ) -> Result<(), tower_api_key::store::StoreError> {
        self.0.touch(id, at).await
    }
}

#[tokio::test]
async fn any_period_up_to_duration_max_runs_without_a_panic() {
    let clock = ManualClock::default();
    let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(policy(&clock)));
    issue(&*store, "org_a", Some(DAY)).await;
    let seen: Seen = Arc::default();
    let gate = MemoryEventGate::new().with_clock(clock.clone());
    let scan = KeyScan::new(Arc::clone(&store), collecting(&seen).gate(gate)).every(Duration::MAX);
    let repeating = tokio::spawn(scan.repeat());
    crate::common::until("the first run", || !seen.lock().unwrap().is_empty()).await;
    tokio::task::yield_now().await;
    assert!(
        !repeating.is_finished(),
        "waiting for the next period, not panicked"
    );
    repeating.abort();
}

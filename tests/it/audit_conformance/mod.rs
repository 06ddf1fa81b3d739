//! Issue 38.2: one suite for every audit log (in process, Redis, Redis Cluster, PostgreSQL,
//! SQLite): newest first with a cursor, owners apart, filters, retention by age on a fake
//! clock, the per-owner bound where the log has one, concurrent appends, and entries that
//! round-trip whole.
//!
//! A test binary instantiates it with `audit_suite!(fixture)`; each log is fresh (its own
//! namespace or table), so one server serves all.
#![allow(dead_code)]

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tower_api_key::audit::{Actor, AuditAction, AuditEntry, AuditLog, AuditQuery};
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::key::Environment;
use tower_api_key::store::KeyId;

/// Makes fresh, empty logs for the suite.
pub trait Fixture {
    /// The log under test.
    type Log: AuditLog;

    /// A log on `clock`, keeping entries `retention` long.
    fn log(&self, clock: ManualClock, retention: Duration) -> impl Future<Output = Arc<Self::Log>>;

    /// A log on `clock` holding at most `entries` per owner, if the log has that bound.
    fn bounded(
        &self,
        clock: ManualClock,
        entries: usize,
    ) -> impl Future<Output = Option<Arc<Self::Log>>>;
}

/// Instantiates every test of the suite for `$fixture` (`Option<impl Fixture>`: `None`
/// skips).
#[macro_export]
macro_rules! audit_suite {
    ($fixture:expr) => {
        $crate::audit_suite!(@tests $fixture;
            entries_come_back_newest_first_page_by_page,
            entries_round_trip_whole,
            filters_select_by_key_action_and_environment,
            entries_past_retention_are_not_read,
            an_owner_holds_at_most_its_bound,
            concurrent_appends_get_distinct_increasing_seqs,
        );
    };
    (@tests $fixture:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(fixture) = $fixture else { return };
                $crate::audit_conformance::$test(&fixture).await;
            }
        )*
    };
}

const DAY: Duration = Duration::from_secs(86_400);

fn key(n: u8) -> KeyId {
    KeyId::new(format!("key_{n:024}")).unwrap()
}

fn entry(clock: &ManualClock, owner: &str, action: AuditAction) -> AuditEntry {
    AuditEntry::new(clock.now(), owner, Actor::System, action)
}

async fn fresh<F: Fixture>(fixture: &F) -> (Arc<F::Log>, ManualClock) {
    let clock = ManualClock::default();
    (fixture.log(clock.clone(), DAY * 30).await, clock)
}

pub async fn entries_come_back_newest_first_page_by_page<F: Fixture>(fixture: &F) {
    let (log, clock) = fresh(fixture).await;
    let mut seqs = Vec::new();
    for n in 0..5 {
        clock.advance(Duration::from_millis(1));
        let entry = entry(&clock, "org_1", AuditAction::KeyIssued).key(key(n), None);
        seqs.push(log.append(entry).await.unwrap());
    }
    log.append(entry(&clock, "org_2", AuditAction::KeyIssued))
        .await
        .unwrap();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    let mut read = Vec::new();
    let mut query = AuditQuery::new("org_1").limit(2);
    loop {
        let page = log.page(&query).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        query = query.clone().before(last.seq());
        read.extend(page.iter().map(AuditEntry::seq));
    }
    seqs.reverse();
    assert_eq!(read, seqs, "every entry once, newest first");
    let other = log.page(&AuditQuery::new("org_2")).await.unwrap();
    assert_eq!(other.len(), 1, "owners apart");
    assert!(log
        .page(&AuditQuery::new("nobody"))
        .await
        .unwrap()
        .is_empty());
}

pub async fn entries_round_trip_whole<F: Fixture>(fixture: &F) {
    let (log, clock) = fresh(fixture).await;
    let client: IpAddr = "2001:db8::7".parse().unwrap();
    let written = AuditEntry::new(
        clock.now(),
        "org_1",
        Actor::Session(KeyId::new("ses_000000000000000000000001").unwrap()),
        AuditAction::KeyUpdated,
    )
    .key(key(1), Some(Environment::Live))
    .client(client)
    .request_id("req-42\u{7}\n")
    .outcome(412, Some("precondition_failed"))
    .change("name", Some("old".into()), Some("new".into()))
    .change("expires_at", None, Some("2030-01-01T00:00:00Z".into()));
    let seq = log.append(written.clone()).await.unwrap();
    let read = log.page(&AuditQuery::new("org_1")).await.unwrap();
    assert_eq!(read.len(), 1);
    let got = &read[0];
    assert_eq!(got.seq(), seq);
    assert_eq!(got.at(), written.at());
    assert_eq!(got.owner(), "org_1");
    assert_eq!(got.actor(), written.actor());
    assert_eq!(got.action(), AuditAction::KeyUpdated);
    assert_eq!(got.key_id(), Some(&key(1)));
    assert_eq!(got.environment_of(), Some(Environment::Live));
    assert_eq!(got.client_address(), Some("2001:db8::7"));
    assert_eq!(got.request(), Some("req-42"), "only printable ASCII kept");
    assert_eq!(
        (got.status(), got.code()),
        (412, Some("precondition_failed"))
    );
    assert_eq!(got.changes(), written.changes());
}

pub async fn filters_select_by_key_action_and_environment<F: Fixture>(fixture: &F) {
    let (log, clock) = fresh(fixture).await;
    let rows = [
        (AuditAction::KeyIssued, 1, Some(Environment::Live)),
        (AuditAction::KeyRevoked, 1, Some(Environment::Live)),
        (AuditAction::KeyIssued, 2, Some(Environment::Test)),
        (AuditAction::KeyRead, 3, None),
    ];
    for (action, n, environment) in rows {
        clock.advance(Duration::from_millis(1));
        log.append(entry(&clock, "org_1", action).key(key(n), environment))
            .await
            .unwrap();
    }
    let count = |query: AuditQuery| {
        let log = Arc::clone(&log);
        async move { log.page(&query).await.unwrap().len() }
    };
    assert_eq!(count(AuditQuery::new("org_1").key(key(1))).await, 2);
    assert_eq!(
        count(AuditQuery::new("org_1").action(AuditAction::KeyIssued)).await,
        2
    );
    assert_eq!(
        count(
            AuditQuery::new("org_1")
                .key(key(1))
                .action(AuditAction::KeyRevoked)
        )
        .await,
        1
    );
    assert_eq!(
        count(AuditQuery::new("org_1").environment(Environment::Test)).await,
        1
    );
    assert_eq!(
        count(
            AuditQuery::new("org_1")
                .environment(Environment::Test)
                .environment(Environment::Live)
        )
        .await,
        3,
        "no environment: left out once one is named"
    );
    // A filter that selects few of many still fills its page from older batches.
    for _ in 0..120 {
        log.append(entry(&clock, "org_1", AuditAction::KeyRead))
            .await
            .unwrap();
    }
    assert_eq!(count(AuditQuery::new("org_1").key(key(1))).await, 2);
}

pub async fn entries_past_retention_are_not_read<F: Fixture>(fixture: &F) {
    let (log, clock) = fresh(fixture).await;
    log.append(entry(&clock, "org_1", AuditAction::KeyIssued))
        .await
        .unwrap();
    clock.advance(DAY * 29);
    log.append(entry(&clock, "org_1", AuditAction::KeyRevoked))
        .await
        .unwrap();
    assert_eq!(log.page(&AuditQuery::new("org_1")).await.unwrap().len(), 2);
    clock.advance(DAY * 2);
    let page = log.page(&AuditQuery::new("org_1")).await.unwrap();
    assert_eq!(page.len(), 1, "the first is past 30 days");
    assert_eq!(page[0].action(), AuditAction::KeyRevoked);
    log.append(entry(&clock, "org_1", AuditAction::KeyEnabled))
        .await
        .unwrap();
    assert_eq!(log.page(&AuditQuery::new("org_1")).await.unwrap().len(), 2);
}

pub async fn an_owner_holds_at_most_its_bound<F: Fixture>(fixture: &F) {
    let clock = ManualClock::default();
    let Some(log) = fixture.bounded(clock.clone(), 3).await else {
        return;
    };
    let mut seqs = Vec::new();
    for _ in 0..7 {
        seqs.push(
            log.append(entry(&clock, "org_1", AuditAction::KeyRead))
                .await
                .unwrap(),
        );
    }
    let page: Vec<u64> = log
        .page(&AuditQuery::new("org_1"))
        .await
        .unwrap()
        .iter()
        .map(AuditEntry::seq)
        .collect();
    assert_eq!(page, [seqs[6], seqs[5], seqs[4]], "the newest three");
}

pub async fn concurrent_appends_get_distinct_increasing_seqs<F: Fixture>(fixture: &F)
where
    F::Log: 'static,
{
    let (log, clock) = fresh(fixture).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (log, entry) = (
                Arc::clone(&log),
                entry(&clock, "org_1", AuditAction::KeyRead),
            );
            tokio::spawn(async move { log.append(entry).await.unwrap() })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap());
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 50);
    let page = log
        .page(&AuditQuery::new("org_1").limit(100))
        .await
        .unwrap();
    assert_eq!(page.len(), 50);
    assert!(page.windows(2).all(|pair| pair[0].seq() > pair[1].seq()));
}

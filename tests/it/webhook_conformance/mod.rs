//! Issue 39.3: one suite for every webhook store (in process, Redis, Redis Cluster,
//! PostgreSQL, SQLite): endpoints under the owner limit, an idempotent enqueue, claims
//! that lease (two claimers never get one delivery; a lease that ends makes it due again),
//! finishing, history, purging dead letters, and an outbox that outlives the instance
//! that enqueued it (shared stores).
//!
//! A test binary instantiates it with `webhook_suite!(fixture)`; each store is fresh.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tower_api_key::webhooks::{Attempt, Delivery, DeliveryState, WebhookEndpoint, WebhookStore};

/// Makes fresh, empty stores for the suite.
pub trait Fixture {
    /// The store under test.
    type Store: WebhookStore;

    /// A fresh store.
    fn store(&self) -> impl Future<Output = Arc<Self::Store>>;

    /// Another instance on the same data as `store` (a new connection or pool), if the
    /// store is shared.
    fn reopen(&self, store: &Self::Store) -> impl Future<Output = Option<Arc<Self::Store>>>;
}

/// Instantiates every test of the suite for `$fixture` (`Option<impl Fixture>`).
#[macro_export]
macro_rules! webhook_suite {
    ($fixture:expr) => {
        $crate::webhook_suite!(@tests $fixture;
            endpoints_stay_within_the_owner_limit_and_apart,
            an_event_is_enqueued_once_per_endpoint,
            a_claim_leases_until_the_lease_ends,
            concurrent_claims_never_share_a_delivery,
            finishing_records_the_attempt_and_purging_drops_what_ended,
            removing_an_endpoint_drops_its_deliveries,
            the_outbox_outlives_the_instance_that_filled_it,
        );
    };
    (@tests $fixture:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(fixture) = $fixture else { return };
                $crate::webhook_conformance::$test(&fixture).await;
            }
        )*
    };
}

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn endpoint(owner: &str, n: u64) -> WebhookEndpoint {
    WebhookEndpoint::new(
        owner,
        "https://hooks.example.com/",
        Vec::new(),
        start() + Duration::from_secs(n),
    )
    .unwrap()
}

fn delivery(event: &str, endpoint: &WebhookEndpoint) -> Delivery {
    Delivery::new(
        event,
        endpoint.id(),
        endpoint.owner(),
        "key.revoked",
        r#"{"type":"key.revoked"}"#,
        start(),
    )
}

pub async fn endpoints_stay_within_the_owner_limit_and_apart<F: Fixture>(fixture: &F) {
    let store = fixture.store().await;
    let (a, b, c) = (
        endpoint("org_1", 1),
        endpoint("org_1", 2),
        endpoint("org_1", 3),
    );
    assert!(store.add_endpoint(&a, 2).await.unwrap());
    assert!(store.add_endpoint(&b, 2).await.unwrap());
    assert!(
        !store.add_endpoint(&c, 2).await.unwrap(),
        "the owner's limit"
    );
    assert!(
        store.add_endpoint(&endpoint("org_2", 1), 2).await.unwrap(),
        "another owner's own"
    );
    let listed: Vec<String> = store
        .endpoints("org_1")
        .await
        .unwrap()
        .iter()
        .map(|e| e.id().to_owned())
        .collect();
    assert_eq!(listed, [a.id(), b.id()], "oldest first");
    let found = store.endpoint(a.id()).await.unwrap().unwrap();
    assert_eq!(found.url(), a.url());
    assert_eq!(
        found.secret().expose_secret(),
        a.secret().expose_secret(),
        "the sender can sign"
    );
    assert!(
        !store.remove_endpoint("org_2", a.id()).await.unwrap(),
        "not another owner's"
    );
    assert!(store.remove_endpoint("org_1", a.id()).await.unwrap());
    assert!(store.endpoint(a.id()).await.unwrap().is_none());
    assert!(store.add_endpoint(&c, 2).await.unwrap(), "a slot again");
}

pub async fn an_event_is_enqueued_once_per_endpoint<F: Fixture>(fixture: &F) {
    let store = fixture.store().await;
    let (a, b) = (endpoint("org_1", 1), endpoint("org_1", 2));
    for e in [&a, &b] {
        store.add_endpoint(e, 10).await.unwrap();
    }
    store
        .enqueue(vec![delivery("evt_1", &a), delivery("evt_1", &b)])
        .await
        .unwrap();
    store.enqueue(vec![delivery("evt_1", &a)]).await.unwrap();
    let claimed = store
        .claim(start(), Duration::from_secs(60), 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2, "one per endpoint, once");
    assert!(claimed
        .iter()
        .all(|d| d.event_id == "evt_1" && d.body == r#"{"type":"key.revoked"}"#));
}

pub async fn a_claim_leases_until_the_lease_ends<F: Fixture>(fixture: &F) {
    let store = fixture.store().await;
    let a = endpoint("org_1", 1);
    store.add_endpoint(&a, 10).await.unwrap();
    let mut later = delivery("evt_later", &a);
    later.next_at = start() + Duration::from_secs(600);
    store
        .enqueue(vec![delivery("evt_now", &a), later])
        .await
        .unwrap();
    let lease = Duration::from_secs(60);
    let claimed = store.claim(start(), lease, 100).await.unwrap();
    assert_eq!(claimed.len(), 1, "only what is due");
    assert_eq!(claimed[0].next_at, start() + lease, "leased until");
    assert!(
        store
            .claim(start() + Duration::from_secs(30), lease, 100)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let again = store
        .claim(start() + Duration::from_secs(61), lease, 100)
        .await
        .unwrap();
    assert_eq!(
        again.len(),
        1,
        "a sender that died: due again after its lease"
    );
    assert_eq!(again[0].event_id, "evt_now");
}

pub async fn concurrent_claims_never_share_a_delivery<F: Fixture>(fixture: &F)
where
    F::Store: 'static,
{
    let store = fixture.store().await;
    let a = endpoint("org_1", 1);
    store.add_endpoint(&a, 10).await.unwrap();
    let all: Vec<Delivery> = (0..40).map(|n| delivery(&format!("evt_{n}"), &a)).collect();
    store.enqueue(all).await.unwrap();
    let claims: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .claim(start(), Duration::from_secs(60), 15)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seen = Vec::new();
    for claim in claims {
        seen.extend(claim.await.unwrap().into_iter().map(|d| d.event_id));
    }
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "no delivery claimed twice");
    assert_eq!(seen.len(), 40, "and every one claimed");
}

pub async fn finishing_records_the_attempt_and_purging_drops_what_ended<F: Fixture>(fixture: &F) {
    let store = fixture.store().await;
    let a = endpoint("org_1", 1);
    store.add_endpoint(&a, 10).await.unwrap();
    let mut second = delivery("evt_2", &a);
    second.created_at = start() + Duration::from_secs(1);
    store
        .enqueue(vec![delivery("evt_1", &a), second])
        .await
        .unwrap();
    let claimed = store
        .claim(start(), Duration::from_secs(60), 100)
        .await
        .unwrap();
    let retry_at = start() + Duration::from_secs(10);
    for d in &claimed {
        let attempt = if d.event_id == "evt_1" {
            Attempt {
                state: DeliveryState::Pending,
                next_at: retry_at,
                status: Some(500),
                error: Some("answered 500".into()),
            }
        } else {
            Attempt {
                state: DeliveryState::Dead,
                next_at: start(),
                status: Some(503),
                error: Some("answered 503".into()),
            }
        };
        store.finish(d, attempt).await.unwrap();
    }
    let history = store.deliveries(a.id(), 10).await.unwrap();
    let states: Vec<(&str, DeliveryState, u32, Option<u16>)> = history
        .iter()
        .map(|d| (d.event_id.as_str(), d.state, d.attempts, d.last_status))
        .collect();
    assert_eq!(
        states,
        [
            ("evt_2", DeliveryState::Dead, 1, Some(503)),
            ("evt_1", DeliveryState::Pending, 1, Some(500))
        ],
        "newest first"
    );
    assert!(store
        .claim(
            start() + Duration::from_secs(9),
            Duration::from_secs(60),
            10
        )
        .await
        .unwrap()
        .is_empty());
    let retried = store
        .claim(retry_at, Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(
        retried.len(),
        1,
        "the pending one, at its time; the dead one never"
    );
    assert_eq!(retried[0].attempts, 1);
    let purged = store.purge(start() + Duration::from_secs(1)).await.unwrap();
    assert_eq!(purged, 1, "the dead letter");
    assert_eq!(
        store.deliveries(a.id(), 10).await.unwrap().len(),
        1,
        "the pending one stays"
    );
}

pub async fn removing_an_endpoint_drops_its_deliveries<F: Fixture>(fixture: &F) {
    let store = fixture.store().await;
    let a = endpoint("org_1", 1);
    store.add_endpoint(&a, 10).await.unwrap();
    store.enqueue(vec![delivery("evt_1", &a)]).await.unwrap();
    store.remove_endpoint("org_1", a.id()).await.unwrap();
    assert!(store
        .claim(start(), Duration::from_secs(60), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.deliveries(a.id(), 10).await.unwrap().is_empty());
}

pub async fn the_outbox_outlives_the_instance_that_filled_it<F: Fixture>(fixture: &F) {
    let store = fixture.store().await;
    let Some(other) = fixture.reopen(&store).await else {
        return; // a store of one process
    };
    let a = endpoint("org_1", 1);
    store.add_endpoint(&a, 10).await.unwrap();
    store.enqueue(vec![delivery("evt_1", &a)]).await.unwrap();
    drop(store);
    let claimed = other
        .claim(start(), Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the other instance delivers it");
    assert!(other.endpoint(a.id()).await.unwrap().is_some());
}

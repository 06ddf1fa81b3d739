//! The activity observer sees every outcome with its fields and never the key;
//! `LastUsedRecorder` writes once per key per interval, off the request path.

use crate::common;
use tower_api_key::forg;

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use futures_util::FutureExt;
use http::{Method, Request, Response, StatusCode};
use tower::{Layer, ServiceExt};
use tower_api_key::activity::{ActivityEvent, ActivityLayer, LastUsedRecorder};
use tower_api_key::key::KeyDigest;
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::ClassName;
use tower_api_key::rate_limit::Quota;
use tower_api_key::rate_limit::{RateClass, RateLimits};
use tower_api_key::reject::InvalidKeyReason;
use tower_api_key::store::{
    Insert, KeyRecord, KeyStore, LookupResult, ManageError, ManageKeys, Revocation,
};
use tower_api_key::store::{KeyId, StoreError};
use tower_api_key::{require, AuthLayer, ForgScope, MemoryKeyStore};

#[tokio::test]
async fn observer_sees_every_outcome_and_never_the_key() {
    let (store, clock) = store_with_clock();
    let good = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let revoked = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
    store.revoke(revoked.record().id()).await.unwrap();
    let scripted = ScriptedStore::new(Arc::clone(&store), Script::Delegate);
    let events: Arc<Mutex<Vec<ActivityEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let probe = Probe::new();
    let service =
        ActivityLayer::new(move |event: &ActivityEvent| sink.lock().unwrap().push(event.clone()))
            .clock(clock.clone())
            .layer(
                AuthLayer::new(Arc::clone(&scripted))
                    .sources(forg::credential_sources())
                    .layer(probe.service::<String>()),
            );

    let requests = [
        from(
            "192.0.2.1",
            Request::post("/v1/rules?secret=no")
                .header(
                    "authorization",
                    format!("Bearer {}", good.key().expose_secret()),
                )
                .body(String::new())
                .unwrap(),
        ),
        from("192.0.2.2", bearer(revoked.key().expose_secret())),
        from(
            "192.0.2.3",
            bearer("forg_live_0123456789abcdef0123456789abcdef"),
        ),
        from(
            "192.0.2.4",
            Request::get("/x")
                .header("x-forgeos-api-key", "a")
                .header("authorization", "Bearer b")
                .body(String::new())
                .unwrap(),
        ),
    ];
    for request in requests {
        send(service.clone(), request).await;
    }
    scripted.set(Script::Fail);
    send(
        service.clone(),
        from("192.0.2.5", bearer(good.key().expose_secret())),
    )
    .await;

    let events = events.lock().unwrap().clone();
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.outcome.as_str(),
                e.reason.map(InvalidKeyReason::as_str),
                e.key_id.clone(),
                e.client.map(|c| c.to_string()),
                e.status.map(|s| s.as_u16()),
                e.authenticated,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "ok",
                None,
                Some(good.record().id().clone()),
                Some("192.0.2.1".to_owned()),
                Some(200),
                true
            ),
            (
                "invalid_api_key",
                Some("revoked"),
                Some(revoked.record().id().clone()),
                Some("192.0.2.2".to_owned()),
                Some(401),
                false
            ),
            (
                "invalid_api_key",
                Some("unknown"),
                None,
                Some("192.0.2.3".to_owned()),
                Some(401),
                false
            ),
            (
                "invalid_request",
                None,
                None,
                Some("192.0.2.4".to_owned()),
                Some(400),
                false
            ),
            (
                "auth_unavailable",
                None,
                None,
                Some("192.0.2.5".to_owned()),
                Some(503),
                false
            ),
        ]
    );
    assert_eq!(
        (events[0].method.clone(), events[0].path.as_str()),
        (Method::POST, "/v1/rules"),
        "no query string"
    );
    assert_eq!(events[0].at, start_time());
    let all = format!("{events:?}");
    for key in [good.key().expose_secret(), revoked.key().expose_secret()] {
        assert!(
            !all.contains(&key[key.len() - 16..]),
            "no key material in events"
        );
    }
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn refusals_inside_the_layer_are_the_outcome_with_the_status_sent() {
    let (store, clock) = store_with_clock();
    let reader = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let writer = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::WriteRules);
    let (events, observer) = collector();
    let one_a_minute = RateClass::per_key(
        ClassName::from_static("tight"),
        Quota::new(NonZeroU32::MIN, NonZeroU32::new(60).unwrap()),
    );
    let probe = Probe::new();
    let service = ActivityLayer::new(observer).clock(clock.clone()).layer(
        AuthLayer::new(store).layer(
            RateLimits::new()
                .layer(one_a_minute)
                .layer(require(ForgScope::ReadRules).layer(probe.service::<String>())),
        ),
    );

    for key in [&reader, &reader, &writer] {
        send(service.clone(), bearer(key.key().expose_secret())).await;
    }

    let seen: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e.key_id.clone(),
                e.authenticated,
                e.outcome.as_str(),
                e.status.map(|s| s.as_u16()),
            )
        })
        .collect();
    let (reader, writer) = (reader.record().id().clone(), writer.record().id().clone());
    assert_eq!(
        seen,
        vec![
            (Some(reader.clone()), true, "ok", Some(200)),
            (Some(reader), true, "rate_limited", Some(429)),
            (Some(writer), true, "insufficient_scope", Some(403)),
        ]
    );
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn an_inner_error_or_a_dropped_request_is_reported_without_status() {
    let (store, clock) = store_with_clock();
    let good = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let (events, observer) = collector();
    let layer = tower::layer::util::Stack::new(
        AuthLayer::new(store),
        ActivityLayer::new(observer).clock(clock.clone()),
    );

    let failing = tower::service_fn(|_: Request<String>| async {
        Err::<Response<String>, _>("inner failure")
    });
    let result = layer
        .layer(failing)
        .oneshot(bearer(good.key().expose_secret()))
        .await;
    assert!(result.is_err());

    let hanging = tower::service_fn(|_: Request<String>| {
        std::future::pending::<Result<Response<String>, Infallible>>()
    });
    let mut in_flight = Box::pin(
        layer
            .layer(hanging)
            .oneshot(bearer(good.key().expose_secret())),
    );
    assert!((&mut in_flight).now_or_never().is_none());
    assert_eq!(events.lock().unwrap().len(), 1, "nothing before the answer");
    drop(in_flight);

    let seen: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.authenticated, e.outcome.as_str(), e.status))
        .collect();
    assert_eq!(seen, vec![(true, "ok", None), (true, "ok", None)]);
}

#[tokio::test]
async fn a_panicking_observer_does_not_abort_a_dropped_request() {
    let (store, clock) = store_with_clock();
    let good = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let hanging = tower::service_fn(|_: Request<String>| {
        std::future::pending::<Result<Response<String>, Infallible>>()
    });
    let service = ActivityLayer::new(|_: &ActivityEvent| panic!("observer bug"))
        .clock(clock.clone())
        .layer(AuthLayer::new(store).layer(hanging));
    let mut in_flight = Box::pin(service.oneshot(bearer(good.key().expose_secret())));
    assert!((&mut in_flight).now_or_never().is_none());
    drop(in_flight);
}

type Events = Arc<Mutex<Vec<ActivityEvent>>>;

fn collector() -> (Events, impl Fn(&ActivityEvent) + Send + Sync + 'static) {
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    (events, move |event: &ActivityEvent| {
        sink.lock().unwrap().push(event.clone())
    })
}

/// Counts writes and forwards them to the memory store; with `held`, each write waits for
/// a permit, and the most writes waiting at once are counted.
struct CountingTouch {
    store: Arc<MemoryKeyStore<ForgScope>>,
    writes: AtomicUsize,
    held: Option<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
    most_waiting: AtomicUsize,
}

impl CountingTouch {
    fn new(store: Arc<MemoryKeyStore<ForgScope>>, held: bool) -> Self {
        Self {
            store,
            writes: AtomicUsize::new(0),
            held: held.then(|| tokio::sync::Semaphore::new(0)),
            waiting: AtomicUsize::new(0),
            most_waiting: AtomicUsize::new(0),
        }
    }
}

impl KeyStore for CountingTouch {
    type Scope = ForgScope;

    async fn lookup(&self, digest: &KeyDigest) -> LookupResult<ForgScope> {
        self.store.lookup(digest).await
    }
}

impl ManageKeys for CountingTouch {
    async fn insert(
        &self,
        insert: Insert<ForgScope>,
    ) -> Result<Arc<KeyRecord<ForgScope>>, ManageError> {
        self.store.insert(insert).await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord<ForgScope>>>, ManageError> {
        self.store.get(id).await
    }

    async fn records_of(&self, owner: &str) -> Result<Vec<Arc<KeyRecord<ForgScope>>>, ManageError> {
        self.store.records_of(owner).await
    }

    async fn revoke_at(
        &self,
        id: &KeyId,
        revocation: Revocation,
    ) -> Result<Arc<KeyRecord<ForgScope>>, ManageError> {
        self.store.revoke_at(id, revocation).await
    }

    async fn set_disabled(
        &self,
        id: &KeyId,
        disabled: bool,
    ) -> Result<Arc<KeyRecord<ForgScope>>, ManageError> {
        self.store.set_disabled(id, disabled).await
    }

    async fn delete(&self, id: &KeyId) -> Result<Arc<KeyRecord<ForgScope>>, ManageError> {
        self.store.delete(id).await
    }

    async fn touch(&self, id: &KeyId, at: SystemTime) -> Result<(), StoreError> {
        if let Some(held) = &self.held {
            let waiting = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_waiting.fetch_max(waiting, Ordering::SeqCst);
            held.acquire().await.expect("open").forget();
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.store.touch(id, at).await
    }
}

async fn settle(until: impl Fn() -> bool) {
    for _ in 0..1_000 {
        if until() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the writer task did not catch up");
}

#[tokio::test]
async fn last_used_is_written_once_per_key_per_interval() {
    let (store, clock) = store_with_clock();
    let a = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let b = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
    let touch = Arc::new(CountingTouch::new(Arc::clone(&store), false));
    let recorder = LastUsedRecorder::spawn(Arc::clone(&touch), Duration::from_secs(60));
    let probe = Probe::new();
    let service = ActivityLayer::new(recorder)
        .clock(clock.clone())
        .layer(AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>()));

    for _ in 0..100 {
        assert_eq!(
            send(service.clone(), bearer(a.key().expose_secret()))
                .await
                .status,
            StatusCode::OK
        );
        send(service.clone(), bearer(b.key().expose_secret())).await;
        send(
            service.clone(),
            bearer("fos_00000000000000000000000000000000"),
        )
        .await;
    }
    settle(|| touch.writes.load(Ordering::SeqCst) == 2).await;
    assert_eq!(
        store
            .get(a.record().id())
            .await
            .unwrap()
            .unwrap()
            .last_used_at(),
        Some(start_time())
    );
    assert_eq!(
        store
            .get(b.record().id())
            .await
            .unwrap()
            .unwrap()
            .last_used_at(),
        Some(start_time())
    );

    clock.advance(Duration::from_secs(59));
    send(service.clone(), bearer(a.key().expose_secret())).await;
    clock.advance(Duration::from_secs(1));
    for _ in 0..10 {
        send(service.clone(), bearer(a.key().expose_secret())).await;
    }
    settle(|| touch.writes.load(Ordering::SeqCst) == 3).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        touch.writes.load(Ordering::SeqCst),
        3,
        "one more write for a, none for b"
    );
    assert_eq!(
        store
            .get(a.record().id())
            .await
            .unwrap()
            .unwrap()
            .last_used_at(),
        Some(start_time() + Duration::from_secs(60))
    );
}

#[tokio::test]
async fn a_key_refused_inside_the_layer_was_still_used() {
    let (store, clock) = store_with_clock();
    let writer = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::WriteRules);
    let revoked = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    store.revoke(revoked.record().id()).await.unwrap();
    let recorder = LastUsedRecorder::spawn(Arc::clone(&store), Duration::from_secs(60));
    let probe = Probe::new();
    let service = ActivityLayer::new(recorder).clock(clock.clone()).layer(
        AuthLayer::new(Arc::clone(&store))
            .layer(require(ForgScope::ReadRules).layer(probe.service::<String>())),
    );

    let refused = send(service.clone(), bearer(writer.key().expose_secret())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    send(service, bearer(revoked.key().expose_secret())).await;

    settle(|| {
        store
            .get(writer.record().id())
            .now_or_never()
            .expect("the memory store answers at once")
            .unwrap()
            .unwrap()
            .last_used_at()
            .is_some()
    })
    .await;
    assert_eq!(
        store
            .get(writer.record().id())
            .await
            .unwrap()
            .unwrap()
            .last_used_at(),
        Some(start_time())
    );
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        store
            .get(revoked.record().id())
            .await
            .unwrap()
            .unwrap()
            .last_used_at(),
        None,
        "a revoked key was not used"
    );
    assert_eq!(probe.calls(), 0);
}

/// Issue 41: the writer made one store write at a time (a shared store's round trip or
/// two each) and dropped most of a busy server's writes. Now up to 64 wait at once; a full
/// queue (1,024) drops and counts the rest.
#[tokio::test]
async fn last_use_writes_go_64_at_a_time_and_a_full_queue_is_counted() {
    let (store, clock) = store_with_clock();
    let touch = Arc::new(CountingTouch::new(Arc::clone(&store), true));
    let recorder = LastUsedRecorder::spawn(Arc::clone(&touch), Duration::from_secs(60));
    let service = ActivityLayer::new(recorder.clone())
        .clock(clock.clone())
        .layer(AuthLayer::new(Arc::clone(&store)).layer(Probe::new().service::<String>()));
    // 2,000 keys used before the writer task first runs (every answer is at once).
    for i in 0..2_000 {
        let new = tower_api_key::NewKey::new(format!("org_{i}"), "k", &KeyFamily::FORG_LIVE);
        let key = memory(store.issue(new)).expect("issue");
        let answer = send(service.clone(), bearer(key.key().expose_secret()))
            .now_or_never()
            .expect("at once");
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_eq!(recorder.dropped(), 2_000 - 1_024, "the queue holds 1,024");
    settle(|| touch.waiting.load(Ordering::SeqCst) == 64).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(touch.most_waiting.load(Ordering::SeqCst), 64);
    assert_eq!(touch.writes.load(Ordering::SeqCst), 0);
    touch.held.as_ref().unwrap().add_permits(1_024);
    settle(|| touch.writes.load(Ordering::SeqCst) == 1_024).await;
    assert_eq!(touch.most_waiting.load(Ordering::SeqCst), 64);
}

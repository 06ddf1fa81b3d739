//! `LastUsedRecorder`: last use written once per key per interval, off the request path,
//! several writes at once, a full queue dropped and counted.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use futures_util::FutureExt;
use http::StatusCode;
use tower::Layer;
use tower_api_key::activity::{ActivityLayer, LastUsedRecorder};
use tower_api_key::key::{KeyDigest, KeyFamily};
use tower_api_key::store::{
    Insert, KeyId, KeyRecord, KeyStore, LookupResult, ManageError, ManageKeys, Revocation,
    StoreError,
};
use tower_api_key::{require, AuthLayer, ForgScope, MemoryKeyStore};

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

/// The stored last use of key `id` (the memory store answers at once).
fn last_used(store: &MemoryKeyStore<ForgScope>, id: &KeyId) -> Option<SystemTime> {
    memory(store.get(id)).unwrap().unwrap().last_used_at()
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
    assert_eq!(last_used(&store, a.record().id()), Some(start_time()));
    assert_eq!(last_used(&store, b.record().id()), Some(start_time()));

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
        last_used(&store, a.record().id()),
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

    settle(|| last_used(&store, writer.record().id()).is_some()).await;
    assert_eq!(last_used(&store, writer.record().id()), Some(start_time()));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        last_used(&store, revoked.record().id()),
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

//! `Sessions::start` (and its logout) against login history: the same owner after 0,
//! 10,000 and 100,000 earlier login / logout cycles, on the memory store. Ended sessions
//! are deleted, so the cost stays flat; before issue 21 it grew with every login (the
//! limit check, `end_all` and listings walked every session the owner ever had): the last
//! row keeps ended sessions forever (revoked, `KeyPolicy::retention(Duration::MAX)`), as
//! before. Run with `cargo bench --bench session_history`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use futures_util::FutureExt;
use http::HeaderMap;
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::{KeyPolicy, ManageKeys};
use tower_api_key::{ForgScope, MemoryKeyStore};

type Store = MemoryKeyStore<ForgScope>;

/// One login and its logout: the session deleted, as `Sessions::end` does, or (`keep`)
/// only revoked, as before.
fn cycle(sessions: &Sessions<Store>, keep: bool) {
    let started = sessions
        .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
        .now_or_never()
        .expect("the memory store never waits")
        .unwrap();
    let id = &started.record().id();
    let store = sessions.store();
    let ended = if keep {
        store.revoke(id).now_or_never()
    } else {
        store.delete(id).now_or_never()
    };
    black_box(ended);
}

fn with_history(policy: KeyPolicy, history: usize, keep: bool) -> Sessions<Store> {
    let sessions = Sessions::new(
        Arc::new(Store::new().with_policy(policy)),
        CsrfSecret::generate().unwrap(),
    );
    for _ in 0..history {
        cycle(&sessions, keep);
    }
    sessions
}

fn history(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_start_after");
    group.sample_size(30);
    for history in [0, 10_000, 100_000] {
        let sessions = with_history(KeyPolicy::sessions(), history, false);
        group.bench_function(format!("{history}_logins"), |b| {
            b.iter_batched(|| (), |()| cycle(&sessions, false), BatchSize::SmallInput)
        });
        println!(
            "after {history} logins: {} records kept",
            sessions.store().len()
        );
    }
    let forever = KeyPolicy::sessions().retention(Duration::MAX);
    let sessions = with_history(forever, 10_000, true);
    group.bench_function("10000_logins_kept_forever", |b| {
        b.iter_batched(|| (), |()| cycle(&sessions, true), BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, history);
criterion_main!(benches);

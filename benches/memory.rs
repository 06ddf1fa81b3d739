//! Memory per stored key and per tracked rate-limit key, for 1,000,000 keys, counted by a
//! global allocator (live heap bytes). Run with `cargo bench --bench memory`.
//! `cargo bench --bench memory -- 100000` runs a smaller count.

use futures_util::FutureExt;
use std::time::Duration;
use tower_api_key::forg;
use tower_api_key::store::ManageKeys;

use tower_api_key::clock::ManualClock;
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::{GovernorBackend, LimitKey, RateLimitBackend};
use tower_api_key::store::KeyId;
use tower_api_key::{ForgScope, MemoryKeyStore, NewKey};

#[path = "support/live_bytes.rs"]
mod live_bytes;
use live_bytes::live;

fn main() {
    // `cargo bench` passes `--bench`; the first number given is the key count.
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);

    // Stored keys: each with two scopes, owner of 8 characters, name of 2.
    let before = live();
    let store = MemoryKeyStore::new().with_policy(
        tower_api_key::forg::key_policy().max_active_per_owner(std::num::NonZeroUsize::MAX),
    );
    for i in 0..n {
        let new = NewKey::new(format!("o{:07}", i / 10), "ci", &KeyFamily::FORG_LIVE)
            .scopes([ForgScope::ReadRules, ForgScope::ReadReports]);
        drop(
            store
                .issue(new)
                .now_or_never()
                .expect("the memory store answers at once")
                .expect("issue"),
        );
    }
    let store_bytes = live() - before;
    println!(
        "memory/store: {n} keys in MemoryKeyStore: {} bytes, {:.0} bytes per key",
        store_bytes,
        store_bytes as f64 / n as f64
    );
    drop(store);

    // Tracked rate-limit keys: one request each from n distinct key ids.
    let ids: Vec<KeyId> = (0..n).map(|_| KeyId::generate().expect("id")).collect();
    let clock = ManualClock::default();
    let backend = GovernorBackend::on_clock(clock.clone());
    let class = backend.register(&forg::STANDARD);
    let before = live();
    for id in &ids {
        let decision = backend
            .check_now(&class, LimitKey::ApiKey(id), forg::STANDARD.quota())
            .expect("answers now")
            .expect("decides");
        assert!(decision.is_allowed());
    }
    let tracked_bytes = live() - before;
    println!(
        "memory/rate_limit: {} tracked keys: {} bytes, {:.0} bytes per key",
        backend.tracked(),
        tracked_bytes,
        tracked_bytes as f64 / n as f64
    );
    clock.advance(Duration::from_secs(61));
    backend.housekeeping();
    println!(
        "memory/rate_limit after eviction: {} tracked keys, {} bytes",
        backend.tracked(),
        live() - before
    );
}

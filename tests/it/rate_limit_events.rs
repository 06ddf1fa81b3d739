//! Issue 39.1: `rate_limit.exceeded` once per key and class within a window: a key
//! refused 25 times in a row is announced once (at its 10th refusal), again only after
//! the window, with its lineage and the class, never the key.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::StatusCode;
use tower::Layer;
use tower_api_key::clock::ManualClock;
use tower_api_key::events::{KeyEvent, KeyEventKind, KeyEvents, MemoryEventGate};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::{ClassName, Quota, RateClass, RateLimits};
use tower_api_key::{AuthLayer, ForgScope};

/// Lets the announcements spawned so far run (a current-thread runtime runs them in order).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_key_refused_again_and_again_is_announced_once_per_window() {
    let (store, _) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let seen: Arc<Mutex<Vec<KeyEvent>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let gate_clock = ManualClock::default();
    let events = KeyEvents::new()
        .sink(move |event: &KeyEvent| sink.lock().unwrap().push(event.clone()))
        .gate(MemoryEventGate::new().with_clock(gate_clock.clone()));
    const SEARCH: RateClass =
        RateClass::per_key(ClassName::from_static("search"), Quota::per_minute_const(1));
    let limits = RateLimits::new().events(events, 10);
    let probe = Probe::new();
    let service =
        AuthLayer::new(store).layer(limits.layer(SEARCH).layer(probe.service::<String>()));
    let secret = key.key().expose_secret();
    let mut statuses = Vec::new();
    for _ in 0..26 {
        statuses.push(send(service.clone(), bearer(secret)).await.status);
    }
    assert_eq!(statuses[0], StatusCode::OK);
    assert!(statuses[1..]
        .iter()
        .all(|s| *s == StatusCode::TOO_MANY_REQUESTS));
    settle().await;
    let announced = |seen: &Arc<Mutex<Vec<KeyEvent>>>| -> Vec<u32> {
        seen.lock()
            .unwrap()
            .iter()
            .filter_map(|event| match event.kind() {
                KeyEventKind::RateLimited {
                    refusals,
                    class,
                    key_id,
                } => {
                    assert_eq!(class, "search");
                    assert_eq!(key_id, key.record().lineage());
                    Some(*refusals)
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        announced(&seen),
        [10],
        "once, not at the 20th refusal within the window"
    );
    assert!(!seen.lock().unwrap()[0].to_json().contains(&secret[10..]));

    gate_clock.advance(Duration::from_secs(61));
    for _ in 0..10 {
        send(service.clone(), bearer(secret)).await;
    }
    settle().await;
    assert_eq!(announced(&seen), [10, 30], "a new window: announced again");
}

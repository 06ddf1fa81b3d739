//! The activity observer sees every outcome with its fields and never the key (the
//! last-use recorder: `last_used.rs`).

use crate::common;
use tower_api_key::forg;

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use common::*;
use futures_util::FutureExt;
use http::{Method, Request, Response};
use tower::{Layer, ServiceExt};
use tower_api_key::activity::{ActivityEvent, ActivityLayer};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::ClassName;
use tower_api_key::rate_limit::Quota;
use tower_api_key::rate_limit::{RateClass, RateLimits};
use tower_api_key::reject::InvalidKeyReason;
use tower_api_key::store::ManageKeys;
use tower_api_key::{require, AuthLayer, ForgScope};

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

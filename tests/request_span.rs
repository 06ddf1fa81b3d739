//! The authentication layer's span per request: the inner service's events carry the
//! credential kind, key id and owner, and the span closes with the outcome; a refused
//! request's span has its code. The only test in its binary, so its global subscriber
//! sees every event.

#![cfg(feature = "tracing")]

#[path = "it/common/mod.rs"]
mod common;

use std::convert::Infallible;

use common::*;
use http::{Request, Response};
use tower::Layer;
use tower_api_key::key::KeyFamily;
use tower_api_key::{AuthLayer, ForgScope};
use tracing_subscriber::fmt::format::FmtSpan;

#[tokio::test]
async fn the_inner_service_runs_inside_the_request_span() {
    let capture = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per binary");

    let (store, _) = store_with_clock();
    let good = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let inner = tower::service_fn(|_: Request<String>| async {
        tracing::info!("inner service ran");
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let service = AuthLayer::new(store).layer(inner);
    send(service.clone(), bearer(good.key().expose_secret())).await;
    send(
        service,
        bearer("forg_live_0123456789abcdef0123456789abcdef"),
    )
    .await;

    let logs = capture.text();
    let id = good.record().id().as_str();
    let inner_line = logs
        .lines()
        .find(|l| l.contains("inner service ran"))
        .expect(&logs);
    assert!(
        inner_line.contains(&format!(
            "tower_api_key.auth{{credential.kind=\"api_key\" key.id=\"{id}\" owner=\"org_1\"}}"
        )),
        "{inner_line}"
    );
    let closed: Vec<&str> = logs.lines().filter(|l| l.contains("close")).collect();
    assert_eq!(closed.len(), 2, "{logs}");
    assert!(
        closed[0].contains(&format!("key.id=\"{id}\"")) && closed[0].contains("outcome=\"ok\""),
        "{}",
        closed[0]
    );
    assert!(
        closed[1].contains("outcome=\"invalid_api_key\"") && !closed[1].contains("key.id"),
        "{}",
        closed[1]
    );
    assert!(
        !logs.contains(&good.key().expose_secret()[10..]),
        "no key in logs"
    );
}

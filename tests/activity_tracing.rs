//! The activity events reach `tracing` with the observer's fields and never the key. The only
//! test in its binary, so its global subscriber sees every event.

#[path = "it/common/mod.rs"]
mod common;

use common::*;
use tower::Layer;
use tower_api_key::activity::ActivityLayer;
use tower_api_key::key::KeyFamily;
use tower_api_key::{AuthLayer, ForgScope};

#[tokio::test]
async fn activity_is_traced_with_the_same_fields() {
    let buffer = LogCapture::install(tracing::Level::DEBUG);

    let (store, _) = store_with_clock();
    let good = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let probe = Probe::new();
    // Tracing only: no observer, and nothing is reported without the activity layer.
    let service =
        ActivityLayer::traced().layer(AuthLayer::new(store).layer(probe.service::<String>()));
    send(
        service.clone(),
        from("192.0.2.9", bearer(good.key().expose_secret())),
    )
    .await;
    send(
        service,
        from(
            "192.0.2.9",
            bearer("forg_live_0123456789abcdef0123456789abcdef"),
        ),
    )
    .await;

    let logs = buffer.text();
    let ok_line = logs
        .lines()
        .find(|l| l.contains("api key activity") && l.contains("outcome=\"ok\""))
        .expect(&logs);
    assert!(
        ok_line.contains(&format!("key_id=\"{}\"", good.record().id())),
        "{ok_line}"
    );
    assert!(
        ok_line.contains("client=192.0.2.9") && ok_line.contains("path=/v1/thing"),
        "{ok_line}"
    );
    assert!(logs.contains("reason=\"unknown\""), "{logs}");
    assert!(
        !logs.contains(&good.key().expose_secret()[10..]),
        "no key in logs"
    );
    assert!(
        !logs.contains("0123456789abcdef0123456789abcdef"),
        "no rejected key in logs"
    );
}

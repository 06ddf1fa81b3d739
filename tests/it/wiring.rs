//! Issue 22: layers that only work outside the `AuthLayer` say so when they are put inside
//! it: an error-level `tracing` event (once) and, in debug builds, a failing assertion on
//! the first request that arrives authenticated. Placed correctly, neither happens.

use std::sync::Arc;

use tower::Layer;
use tower_api_key::activity::ActivityLayer;
use tower_api_key::failure_limit::{FailureLimit, FailureLimitLayer};
use tower_api_key::key::KeyFamily;
use tower_api_key::{AuthLayer, ForgScope};

use crate::common::*;

/// Sends one request with a valid key through `stack` (built around the probe) on this
/// thread's runtime, with a subscriber for this thread only; returns the panic message,
/// if the request panicked, and the log.
async fn first_request<S, RB>(stack: S, key: &str) -> (Option<String>, String)
where
    S: tower::Service<http::Request<String>, Response = http::Response<RB>> + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
    RB: http_body::Body<Data = bytes::Bytes> + Send,
    RB::Error: std::fmt::Debug,
{
    let log = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::ERROR)
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let _scoped = tracing::subscriber::set_default(subscriber);
    let request = from("192.0.2.1", bearer(key));
    let panicked = tokio::spawn(async move { send(stack, request).await.status })
        .await
        .err()
        .map(|error| {
            let payload = error.into_panic();
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        });
    (panicked, log.text())
}

fn assert_reported(layer: &str, panicked: Option<String>, log: &str) {
    assert!(
        log.contains("ERROR") && log.contains(&format!("{layer} is inside the AuthLayer")),
        "{log}"
    );
    if cfg!(debug_assertions) {
        let message = panicked.expect("a failing debug assertion");
        assert!(
            message.contains(&format!("{layer} is inside the AuthLayer")),
            "{message}"
        );
    } else {
        assert_eq!(panicked, None);
    }
}

#[tokio::test]
async fn a_failure_limit_inside_the_auth_layer_is_reported() {
    let (store, _) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let probe = Probe::new();
    let wrong = AuthLayer::new(Arc::clone(&store))
        .layer(FailureLimitLayer::new(FailureLimit::default()).layer(probe.service::<String>()));
    let (panicked, log) = first_request(wrong, key.key().expose_secret()).await;
    assert_reported("FailureLimitLayer", panicked, &log);

    let right = FailureLimitLayer::new(FailureLimit::default())
        .layer(AuthLayer::new(store).layer(probe.service::<String>()));
    let (panicked, log) = first_request(right, key.key().expose_secret()).await;
    assert_eq!((panicked, log.as_str()), (None, ""));
}

#[tokio::test]
async fn an_activity_layer_inside_the_auth_layer_is_reported() {
    let (store, _) = store_with_clock();
    let key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let probe = Probe::new();
    let wrong = AuthLayer::new(Arc::clone(&store))
        .layer(ActivityLayer::new(|_: &_| {}).layer(probe.service::<String>()));
    let (panicked, log) = first_request(wrong, key.key().expose_secret()).await;
    assert_reported("ActivityLayer", panicked, &log);

    let right = ActivityLayer::new(|_: &_| {})
        .layer(AuthLayer::new(store).layer(probe.service::<String>()));
    let (panicked, log) = first_request(right, key.key().expose_secret()).await;
    assert_eq!((panicked, log.as_str()), (None, ""));
}

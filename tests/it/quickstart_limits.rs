//! Issue 40.2 through the quickstart: the AI route's token budget (reported by the
//! handler) and at most two reviews in flight per key, as its curl lines show them.
#![cfg(feature = "axum")]

use crate::examples::quickstart;

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use serde_json::Value;
use tower_api_key::clock::ManualClock;

/// A request from the address the tests use for this client.
fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> impl std::future::Future<Output = (StatusCode, HeaderMap, Value)> + 'static {
    let client = SocketAddr::from(([127, 0, 2, 1], 5000));
    crate::common::app::call(app, client, method, path, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_reviews_in_flight_through_the_quickstart() {
    let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let clock = ManualClock::new(start);
    let store = quickstart::key_store(clock.clone());
    let keys = quickstart::issue_demo_keys(&store).await.unwrap();
    let app = quickstart::app(&quickstart::Demo::with_clock(store, &keys, clock));
    let (status, _, body) = call(
        &app,
        "POST",
        "/auth/register-agent",
        &[],
        r#"{"email": "bot@example.com", "password": "a long agent password"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let agent = body["data"]["key"].as_str().unwrap().to_owned();
    let header = [("x-forgeos-api-key", agent.as_str())];

    // Three reviews at once, each thinking 300 ms: two served, one refused at once.
    let slow = "/v1/reviews?think_ms=300&tokens=100";
    let answers =
        futures_util::future::join_all((0..3).map(|_| call(&app, "POST", slow, &header, ""))).await;
    let mut statuses: Vec<u16> = answers.iter().map(|(s, _, _)| s.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 429]);
    let refused = answers
        .iter()
        .find(|(s, _, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .unwrap();
    assert_eq!(refused.1["retry-after"], "1");
    assert_eq!(refused.2["code"], "rate_limited");
    // Both slots are back once their responses ended.
    let (status, _, _) = call(&app, "POST", "/v1/reviews?tokens=100", &header, "").await;
    assert_eq!(status, StatusCode::OK);

    // Tokens: 300 used so far; 10,000 each: two more fit, the third is refused by the
    // token budget, and its headers say so.
    let large = "/v1/reviews?tokens=10000";
    for n in 0..2 {
        let (status, headers, body) = call(&app, "POST", large, &header, "").await;
        assert_eq!(status, StatusCode::OK, "review {n}: {body}");
        assert_eq!(body["data"]["tokens"], 10_000);
        // Both classes of the route, the one further in first.
        let state = headers["ratelimit"].to_str().unwrap();
        assert!(
            state.starts_with("\"tokens\";r=") && state.contains(", \"ai\";r="),
            "{state}"
        );
    }
    let (status, headers, body) = call(&app, "POST", large, &header, "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        headers["ratelimit-policy"]
            .to_str()
            .unwrap()
            .starts_with("\"tokens\";q=30000;w=60"),
        "the refusing class first"
    );
    assert!(headers.contains_key("retry-after"));
}

//! The quickstart's Prometheus page under real traffic, and the Grafana dashboard's names.

use super::*;

/// A Prometheus series: name, labels (sorted), value.
type Series = (String, Vec<(String, String)>, f64);

/// `name{labels} value` lines of a Prometheus text page.
fn scraped(page: &str) -> Vec<Series> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut labels: Vec<(String, String)> = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .filter_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            labels.sort();
            Some((name.to_owned(), labels, value.parse().ok()?))
        })
        .collect()
}

/// The quickstart's `/metrics`, scraped over HTTP after a scripted session of requests
/// (200, 401, 403, 429, 402, a login and a request on its session): the counts as sent.
#[tokio::test(flavor = "current_thread")]
async fn the_quickstart_serves_prometheus_metrics_of_real_traffic() {
    use crate::examples::quickstart;
    use metrics_exporter_prometheus::PrometheusBuilder;
    // The test thread's recorder: the server's tasks run on it (current-thread runtime).
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let recorder: &'static _ = Box::leak(Box::new(recorder));
    let _guard = metrics::set_default_local_recorder(recorder);

    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let keys = quickstart::issue_demo_keys(&store).await.unwrap();
    let mut demo = quickstart::Demo::new(store, &keys);
    demo.metrics = Some(handle);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = quickstart::app(&demo).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let live = format!("Bearer {}", keys.live.key().expose_secret());
    let fos = keys.fos.key().expose_secret().to_owned();
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };

    assert_eq!(
        status(
            client
                .get(format!("{base}/v1/sessions"))
                .header("authorization", &live)
        )
        .await,
        200
    );
    assert_eq!(status(client.get(format!("{base}/v1/sessions"))).await, 401);
    assert_eq!(
        status(
            client
                .post(format!("{base}/v1/rules"))
                .header("authorization", &live)
        )
        .await,
        403
    );
    for expected in [200; 10].into_iter().chain([429]) {
        let review = client
            .post(format!("{base}/v1/reviews"))
            .header("x-forgeos-api-key", &fos);
        assert_eq!(status(review).await, expected);
    }
    for expected in [200, 200, 200, 402] {
        let review = client
            .post(format!("{base}/v1/reviews"))
            .header("authorization", &live);
        assert_eq!(status(review).await, expected);
    }
    let login = client
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({ "email": quickstart::DEMO_EMAIL, "password": quickstart::DEMO_PASSWORD }));
    assert_eq!(status(login).await, 200);
    assert_eq!(
        status(client.get(format!("{base}/v1/me"))).await,
        200,
        "by the session cookie"
    );

    let page = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = scraped(&page);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let mut wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wanted.sort();
        series
            .iter()
            .filter(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
            .sum()
    };
    let requests = "tower_api_key_requests";
    assert_eq!(
        value(requests, &[("credential", "api_key"), ("outcome", "ok")]),
        14.0,
        "{page}"
    );
    assert_eq!(
        value(
            requests,
            &[("credential", "none"), ("outcome", "invalid_api_key")]
        ),
        1.0
    );
    assert_eq!(
        value(
            requests,
            &[("credential", "api_key"), ("outcome", "insufficient_scope")]
        ),
        1.0
    );
    assert_eq!(
        value(
            requests,
            &[("credential", "api_key"), ("outcome", "rate_limited")]
        ),
        1.0
    );
    assert_eq!(
        value(
            requests,
            &[("credential", "api_key"), ("outcome", "spend_cap_exceeded")]
        ),
        1.0
    );
    assert_eq!(
        value(requests, &[("credential", "session"), ("outcome", "ok")]),
        1.0
    );
    assert_eq!(
        value(
            "tower_api_key_rate_limit_decisions",
            &[("class", "ai"), ("outcome", "limited")]
        ),
        1.0
    );
    // Ten reviews of the fos_ key and three of the live key (both live), 10 units each.
    assert_eq!(
        value("tower_api_key_spend_charged", &[("environment", "live")]),
        130.0
    );
    assert_eq!(
        value("tower_api_key_spend_refusals", &[("environment", "live")]),
        1.0
    );
    assert_eq!(
        value(
            "tower_api_key_store_lookups",
            &[("backend", "memory"), ("result", "found")]
        ),
        18.0
    );
}

/// `docs/grafana-dashboard.json` queries only the documented names (as Prometheus writes
/// them), and shows every one of them.
#[test]
fn the_grafana_dashboard_uses_the_documented_names() {
    let documented: Vec<String> = [
        REQUESTS,
        STORE_LOOKUPS,
        STORE_LOOKUP_DURATION,
        CACHE_HITS,
        CACHE_MISSES,
        CACHE_EVICTIONS,
        CACHE_STALE_ANSWERS,
        RATE_LIMIT_DECISIONS,
        FAILED_AUTH_BLOCKS,
        SPEND_CHARGED,
        SPEND_REFUSALS,
        PLAN_REFUSALS,
        REVOCATION_MESSAGES,
        REVOCATION_RECONNECTS,
        REVOCATION_HEARTBEATS_MISSED,
        ACTIVITY_DROPPED,
    ]
    .iter()
    .map(|name| name.replace('.', "_"))
    .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let names = regex::Regex::new(r"tower_api_key_[a-z_]+").unwrap();
    let mut used = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            for found in names.find_iter(target["expr"].as_str().unwrap()) {
                let name = found.as_str().trim_end_matches("_bucket").to_owned();
                assert!(
                    documented.contains(&name),
                    "{name} is not a documented metric"
                );
                used.insert(name);
            }
        }
    }
    for name in &documented {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
}

//! Trials, credits, spend and rotation; webhooks and leak reports: through the quickstart.

use super::*;

/// Issue 25 through the quickstart on a fake clock: an agent's 14-day Pro trial and its
/// end (its key refused, its session not), one-time credits that end in a 402 without a
/// reset, spend monitoring, and keys due for rotation at 90 days.
#[tokio::test]
async fn trials_credits_spend_and_rotation_through_the_quickstart() {
    use std::time::{Duration, UNIX_EPOCH};
    use tower_api_key::clock::ManualClock;

    let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
    let clock = ManualClock::new(start);
    let store = quickstart::key_store(clock.clone());
    let keys = quickstart::issue_demo_keys(&store).await.unwrap();
    let app = quickstart::app(&quickstart::Demo::with_clock(store, &keys, clock.clone()));
    let next_ip = std::sync::atomic::AtomicU8::new(1);
    let call = |method: &str, path: &str, headers: &[(&str, &str)], body: &str| {
        // A client address per request: the per-address limits are not the point.
        let ip = next_ip.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let client = SocketAddr::from(([127, 0, 1, ip], 5000));
        crate::common::app::call(&app, client, method, path, headers, body)
    };

    // Registration starts a 14-day Pro trial and gives the key 1,000 units of credits.
    let (status, _, body) = call(
        "POST",
        "/auth/register-agent",
        &[],
        r#"{"email": "bot@example.com", "password": "a long agent password"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["plan"], "pro");
    assert_eq!(body["data"]["trial_ends_at"], "2026-01-15T00:00:00Z");
    assert_eq!(body["data"]["credits"], 1000);
    let agent = body["data"]["key"].as_str().unwrap().to_owned();
    let agent_header = [("x-forgeos-api-key", agent.as_str())];
    let (status, _, me) = call("GET", "/v1/me", &agent_header, "").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (&me["data"]["plan"], &me["data"]["trial_ends_at"]),
        (&Value::from("pro"), &Value::from("2026-01-15T00:00:00Z"))
    );
    let (status, headers, _) = call("POST", "/v1/reviews", &agent_header, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["spend-cap"], "limit=1000, remaining=990");

    // The demo trial key: 20 units, two reviews, then 402 with nothing to wait for.
    let trial = format!("Bearer {}", keys.trial.key().expose_secret());
    let trial_header = [("authorization", trial.as_str())];
    for _ in 0..2 {
        assert_eq!(
            call("POST", "/v1/reviews", &trial_header, "").await.0,
            StatusCode::OK
        );
    }
    let (status, headers, body) = call("POST", "/v1/reviews", &trial_header, "").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(body.get("resets_at").is_none(), "{body}");
    assert!(headers.get("retry-after").is_none());
    assert_eq!(headers["spend-cap"], "limit=20, remaining=0");

    // Spend monitoring, as the test key (admin) and as the demo account's session.
    let test = format!("Bearer {}", keys.test.key().expose_secret());
    let (status, _, body) = call(
        "GET",
        "/api/billing/spend",
        &[("authorization", test.as_str())],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let budgets = body["data"]["budgets"].as_array().unwrap();
    assert_eq!(
        budgets.len(),
        1,
        "a test key sees the test budgets: {budgets:?}"
    );
    assert_eq!(budgets[0]["period_end"], "2026-01-01T01:00:00Z");
    let login = format!(
        r#"{{"email":"{}","password":"{}"}}"#,
        quickstart::DEMO_EMAIL,
        quickstart::DEMO_PASSWORD
    );
    let (status, headers, _) = call("POST", "/auth/login", &[], &login).await;
    assert_eq!(status, StatusCode::OK);
    let cookies: Vec<&str> = headers
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap())
        .collect();
    let cookie = cookies.join("; ");
    let (status, _, body) = call("GET", "/api/billing/spend", &[("cookie", &cookie)], "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let trial_budget = body["data"]["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["key_name"] == "trial credits")
        .expect("the trial key's budget is listed")
        .clone();
    assert_eq!(
        (
            &trial_budget["period"],
            &trial_budget["remaining"],
            &trial_budget["period_end"]
        ),
        (&Value::from("lifetime"), &Value::from(0), &Value::Null)
    );

    // Issue 36.1: rotating the spent trial key does not refill its credits (the successor
    // got `limit=10000, remaining=9990` before: a fresh key id, a fresh budget).
    let csrf = cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("forge_csrf="))
        .unwrap()
        .to_owned();
    let rotate = format!("/v1/keys/{}/rotate", keys.trial.record().id());
    let (status, _, rotated) = call(
        "POST",
        &rotate,
        &[("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let successor = format!("Bearer {}", rotated["key"].as_str().unwrap());
    let (status, headers, _) = call(
        "POST",
        "/v1/reviews",
        &[("authorization", successor.as_str())],
        "",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::PAYMENT_REQUIRED,
        "the credits stay spent"
    );
    assert_eq!(headers["spend-cap"], "limit=20, remaining=0");

    // The trial ends: the agent's live key is refused (after the layer's 60 s cache), its
    // browser session is not.
    clock.advance(Duration::from_secs(14 * 86_400 + 60));
    let (status, _, body) = call("GET", "/v1/me", &agent_header, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "plan_required");
    let agent_login = r#"{"email":"bot@example.com","password":"a long agent password"}"#;
    let (status, headers, _) = call("POST", "/auth/login", &[], agent_login).await;
    assert_eq!(status, StatusCode::OK);
    let agent_cookie = headers
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let (status, _, me) = call("GET", "/v1/me", &[("cookie", &agent_cookie)], "").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (&me["data"]["plan"], &me["data"]["trial_ends_at"]),
        (&Value::from("free"), &Value::Null)
    );
    // Issue 36.1: the session reaches no paid AI its owner's key is refused (it did: 200).
    let csrf = agent_cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("forge_csrf="))
        .unwrap()
        .to_owned();
    let session_headers = [("cookie", agent_cookie.as_str()), ("x-csrf-token", &csrf)];
    let (status, _, body) = call("POST", "/v1/reviews", &session_headers, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["error"],
        "This endpoint requires the Pro plan or higher: upgrade to use it"
    );
    // The management API stays usable on Free: the owner upgrades from there.
    let (status, _, body) = call("GET", "/v1/keys", &[("cookie", &agent_cookie)], "").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // 90 days after issue the demo keys are due for rotation; a year after, expired.
    let (_, _, list) = call("GET", "/v1/keys", &[("authorization", test.as_str())], "").await;
    assert_eq!(list["data"][0]["rotation_due"], false);
    assert_eq!(list["data"][0]["expires_at"], "2027-01-01T00:00:00Z");
    clock.advance(Duration::from_secs(76 * 86_400));
    let (_, _, list) = call("GET", "/v1/keys", &[("authorization", test.as_str())], "").await;
    assert_eq!(list["data"][0]["rotation_due"], true, "{list}");
}

/// Issue 39: the printed webhook and leak lines. A webhook registered to the quickstart's
/// own receiver gets the key events (sent by the sender the quickstart runs), and a
/// signed leak report revokes the fos_ key, which the receiver hears of as `key.leaked`.
#[cfg(all(feature = "webhooks", feature = "leak-intake"))]
#[tokio::test]
async fn webhooks_and_leak_reports_through_the_quickstart() {
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let keys = quickstart::issue_demo_keys(&store).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let demo = quickstart::Demo::new(store, &keys);
    let app = quickstart::app(&demo).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let s = Server {
        addr,
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    let test = || {
        (
            "authorization",
            format!("Bearer {}", keys.test.key().expose_secret()),
        )
    };
    let hook = format!(r#"{{"url":"http://{addr}/demo/webhook"}}"#);
    let (status, _, body) = s.send(Method::POST, "/v1/webhooks", &[test()], &hook).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["secret"].as_str().unwrap().starts_with("whsec_"));

    let fos = keys.fos.key().expose_secret();
    let (report, signature) = quickstart::events::signed_report(&demo.events.scanner, fos);
    let headers = [
        ("github-public-key-identifier", "quickstart-demo".to_owned()),
        ("github-public-key-signature", signature),
    ];
    let (status, _, labels) = s.send(Method::POST, "/leaks", &headers, &report).await;
    assert_eq!(status, StatusCode::OK, "{labels}");
    assert_eq!(labels[0]["label"], "true_positive");
    let (status, _, _) = s
        .call(
            Method::GET,
            "/v1/rules",
            Some(("x-forgeos-api-key", fos.to_owned())),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked on the report");

    let sender = tower_api_key::webhooks::WebhookSender::new(demo.events.webhooks.clone());
    assert_eq!(sender.run_once().await.unwrap(), 1);
    let (_, _, received) = s.call(Method::GET, "/demo/webhook", None).await;
    assert_eq!(received["data"][0]["event"]["type"], "key.leaked");
    assert_eq!(
        received["data"][0]["event"]["data"]["key"]["id"],
        keys.fos.record().id().as_str()
    );
    server.abort();
}

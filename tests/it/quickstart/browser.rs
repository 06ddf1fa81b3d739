//! The printed browser flow and the documented agent registration, on a real socket.

use super::*;

/// The browser flow the banner prints, with a real cookie jar: login, the cookie
/// authenticates, CSRF, logout; and agent registration.
#[tokio::test]
async fn quickstart_serves_the_printed_browser_flow() {
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let keys = quickstart::issue_demo_keys(&store).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = quickstart::app(&quickstart::Demo::new(store, &keys))
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let post_json = |path: &str, body: serde_json::Value| {
        browser.post(format!("{base}{path}")).json(&body).send()
    };

    let wrong = post_json(
        "/auth/login",
        serde_json::json!({ "email": quickstart::DEMO_EMAIL, "password": "wrong" }),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let login = post_json(
        "/auth/login",
        serde_json::json!({ "email": quickstart::DEMO_EMAIL, "password": quickstart::DEMO_PASSWORD }),
    )
    .await
    .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let set_cookies: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(set_cookies[0].starts_with("forge_session=") && set_cookies[0].contains("HttpOnly"));
    assert!(set_cookies[1].starts_with("forge_csrf="));
    let body: Value = login.json().await.unwrap();
    let csrf = body["data"]["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(body["data"]["owner"], quickstart::OWNER);

    let me: Value = browser
        .get(format!("{base}/v1/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"]["credential"], "session");
    assert_eq!(me["data"]["owner"], quickstart::OWNER);
    let forged = browser
        .post(format!("{base}/v1/rules"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let created = browser
        .post(format!("{base}/v1/rules"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let logout = browser
        .post(format!("{base}/auth/logout"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let after = browser.get(format!("{base}/v1/me")).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);

    // Agent registration: a fos_ key scoped to the new agent; 409 and 422.
    let agent = serde_json::json!({ "email": "bot@example.com", "password": "a long agent password", "name": "ci bot" });
    let registered = post_json("/auth/register-agent", agent.clone())
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let body: Value = registered.json().await.unwrap();
    let key = body["data"]["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("fos_"));
    let agent_me: Value = reqwest::Client::new()
        .get(format!("{base}/v1/me"))
        .header("x-forgeos-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agent_me["data"]["owner"], body["data"]["agent_id"]);
    let taken = post_json("/auth/register-agent", agent).await.unwrap();
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert_eq!(taken.json::<Value>().await.unwrap()["code"], "email_taken");
    let short = post_json(
        "/auth/register-agent",
        serde_json::json!({ "email": "b@example.com", "password": "short", "name": "b" }),
    )
    .await
    .unwrap();
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = short.json().await.unwrap();
    assert_eq!(
        (body["code"].as_str(), body["status"].as_u64()),
        (Some("validation_failed"), Some(422))
    );
    let malformed = browser
        .post(format!("{base}/auth/register-agent"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(
        malformed.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the auth class: 5 per minute per address"
    );
}

/// Issue 21.7: the ForgeOS page's registration body, `{"email", "password"}`, is enough;
/// a field of the wrong type is 422 naming it. Failed before: 400 `missing field name`.
#[tokio::test]
async fn the_documented_agent_registration_body_works() {
    use axum::extract::ConnectInfo;
    use tower::ServiceExt;
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let keys = quickstart::issue_demo_keys(&store).await.unwrap();
    let app = quickstart::app(&quickstart::Demo::new(store, &keys));
    let next_ip = std::sync::atomic::AtomicU8::new(1);
    let post = |path: &str, body: &str| {
        // A client address per request: the 5/min limit of these routes is not the point.
        let ip = next_ip.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut request = Request::post(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, ip], 5000))));
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let (status, body) = post(
        "/auth/register-agent",
        r#"{"email": "agent@example.com", "password": "a long agent password"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["data"]["key"].as_str().unwrap().starts_with("fos_"));
    for (path, json, field) in [
        (
            "/auth/register-agent",
            r#"{"email": "b@example.com"}"#,
            "password",
        ),
        (
            "/auth/register-agent",
            r#"{"email": 1, "password": "a long agent password"}"#,
            "email",
        ),
        (
            "/auth/register-agent",
            r#"{"email": "c@example.com", "password": "a long agent password", "name": "x\u202e"}"#,
            "name",
        ),
        (
            "/auth/login",
            r#"{"email": "demo@forgeos.dev"}"#,
            "password",
        ),
    ] {
        let (status, body) = post(path, json).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}: {body}");
        assert_eq!(body["code"], "validation_failed");
        assert_eq!(body["fields"][0]["field"], field, "{json}: {body}");
    }
    let (status, body) = post("/auth/login", "{\"email\": ").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

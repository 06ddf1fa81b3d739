//! The quickstart router on a real loopback socket, driven by a real HTTP client through
//! the same calls the example prints.

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_api_key::MemoryKeyStore;

struct Server {
    addr: SocketAddr,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Server {
    async fn call(
        &self,
        method: Method,
        path: &str,
        header: Option<(&str, String)>,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&body).unwrap(),
        )
    }
}

#[tokio::test]
async fn quickstart_serves_the_printed_curl_lines() {
    let store = Arc::new(MemoryKeyStore::new());
    let keys = quickstart::issue_demo_keys(&store).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = quickstart::app(&quickstart::Demo::new(store, &keys))
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let s = Server {
        addr,
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    let live = || {
        Some((
            "authorization",
            format!("Bearer {}", keys.live.key().expose_secret()),
        ))
    };
    let test = || {
        Some((
            "authorization",
            format!("Bearer {}", keys.test.key().expose_secret()),
        ))
    };
    let fos = || {
        Some((
            "x-forgeos-api-key",
            keys.fos.key().expose_secret().to_owned(),
        ))
    };

    let (status, _, body) = s.call(Method::GET, "/health", None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );

    let (status, _, body) = s.call(Method::GET, "/v1/sessions", live()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["caller"]["key_id"], keys.live.record().id.as_str());
    assert_eq!(body["caller"]["environment"], "live");
    assert_eq!(
        body["caller"]["scopes"],
        serde_json::json!(["read:sessions", "read:reports"])
    );

    let (status, _, body) = s.call(Method::GET, "/v1/rules", fos()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["caller"]["scopes"], serde_json::json!(["read:rules"]));

    let (status, headers, body) = s.call(Method::POST, "/v1/rules", live()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "Insufficient scope: write:rules required");
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="write:rules""#
    );

    let (status, _, body) = s.call(Method::POST, "/v1/rules", test()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["caller"]["environment"], "test");

    let (status, _, body) = s.call(Method::GET, "/v1/reports", fos()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );

    let (status, headers, body) = s.call(Method::GET, "/v1/sessions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        serde_json::json!({"error": "Invalid API key", "code": "invalid_api_key", "status": 401})
    );
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );

    // AI routes: 10 per minute per key, then 429 with Retry-After and the IETF fields.
    for _ in 0..10 {
        let (status, headers, _) = s.call(Method::POST, "/v1/reviews", fos()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with(r#""ai";r="#));
    }
    let (status, headers, body) = s.call(Method::POST, "/v1/reviews", fos()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry_after), "{retry_after}");
    assert_eq!(headers["ratelimit-policy"], r#""ai";q=10;w=60"#);
    let (status, headers, _) = s.call(Method::GET, "/v1/rules", fos()).await;
    assert_eq!(status, StatusCode::OK, "the standard budget is separate");
    assert_eq!(headers["ratelimit-policy"], r#""standard";q=100;w=60"#);

    // The live key's spend cap: 30 units, 10 per review, then 402 until the month ends.
    for remaining in [20, 10, 0] {
        let (status, headers, _) = s.call(Method::POST, "/v1/reviews", live()).await;
        assert_eq!(status, StatusCode::OK);
        let spend = headers["spend-cap"].to_str().unwrap();
        assert!(
            spend.starts_with(&format!("limit=30, remaining={remaining}, reset=")),
            "{spend}"
        );
    }
    let (status, headers, body) = s.call(Method::POST, "/v1/reviews", live()).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(body["code"], "spend_cap_exceeded");
    assert!(body["resets_at"]
        .as_str()
        .unwrap()
        .ends_with("-01T00:00:00Z"));
    assert!(headers.contains_key("retry-after"));
    let (status, _, _) = s.call(Method::POST, "/v1/reviews", test()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the test key's hourly budget is separate"
    );

    // The public login route needs no key and is limited per client address (a body that
    // is not the expected JSON is a 400 in the FORG shape).
    for _ in 0..5 {
        let (status, _, body) = s.call(Method::POST, "/auth/login", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "invalid_request");
    }
    let (status, headers, _) = s.call(Method::POST, "/auth/login", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["ratelimit-policy"], r#""auth";q=5;w=60"#);

    // Through the management API, only keys with admin may revoke (besides sessions); the
    // revocation holds from the next request on.
    let revoke = format!("/v1/keys/{}/revoke", keys.live.record().id);
    let (status, _, body) = s.call(Method::POST, &revoke, fos()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("session_required"))
    );
    let (status, _, body) = s.call(Method::POST, &revoke, test()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["id"], keys.live.record().id.as_str());
    assert_eq!(body["data"]["status"], "revoked");
    let (status, _, _) = s.call(Method::GET, "/v1/sessions", live()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = s
        .call(Method::POST, "/v1/keys/key_unknown/revoke", test())
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("key_not_found"))
    );

    server.abort();
}

/// The browser flow the banner prints, with a real cookie jar: login, the cookie
/// authenticates, CSRF, logout; and agent registration.
#[tokio::test]
async fn quickstart_serves_the_printed_browser_flow() {
    let store = Arc::new(MemoryKeyStore::new());
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

//! The quickstart router on a real loopback socket, driven by a real HTTP client through
//! the same calls the example prints.

use crate::examples::{minimal, quickstart};

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_api_key::MemoryKeyStore;

mod browser;
mod hostile_requests;
mod lifecycle;

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
        let headers: Vec<(&str, String)> = header.into_iter().collect();
        self.send(method, path, &headers, "").await
    }

    /// `method path` with `headers` and `body` (JSON when not empty).
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let response = self
            .client
            .request(
                request
                    .body(Full::new(Bytes::from(body.to_owned())))
                    .unwrap(),
            )
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
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
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
    // Readiness asks both stores, without a credential.
    let (status, _, body) = s.call(Method::GET, "/health/ready", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({ "status": "ready", "checks": { "keys": "ok", "sessions": "ok" } })
    );

    let (status, _, body) = s.call(Method::GET, "/v1/sessions", live()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["caller"]["key_id"], keys.live.record().id().as_str());
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
        headers["www-authenticate"], "Bearer",
        "no credential, no error code"
    );

    // AI routes: 10 per minute per key, then 429 with Retry-After and the IETF fields.
    for _ in 0..10 {
        let (status, headers, _) = s.call(Method::POST, "/v1/reviews", fos()).await;
        assert_eq!(status, StatusCode::OK);
        // The token budget's state first, then the AI class's.
        assert!(headers["ratelimit"]
            .to_str()
            .unwrap()
            .contains(r#", "ai";r="#));
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

    // The public login route needs no key and is limited per client address (a request
    // without a JSON body is refused in the FORG shape).
    for _ in 0..5 {
        let (status, _, body) = s.call(Method::POST, "/auth/login", None).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(body["code"], "unsupported_media_type");
    }
    let (status, headers, _) = s.call(Method::POST, "/auth/login", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["ratelimit-policy"], r#""auth";q=5;w=60"#);

    // Through the management API, only keys with admin may revoke (besides sessions), and
    // only keys of their own environment: a test key's view of a live key is a 404.
    let revoke = format!("/v1/keys/{}/revoke", keys.live.record().id());
    let (status, _, body) = s.call(Method::POST, &revoke, fos()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("session_required"))
    );
    let (status, _, body) = s.call(Method::POST, &revoke, test()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("key_not_found"))
    );
    let (status, _, _) = s.call(Method::GET, "/v1/sessions", live()).await;
    assert_eq!(status, StatusCode::OK, "the live key is untouched");
    // The printed update with If-Match: the version read (ETag "0"), then a stale one.
    let path = format!("/v1/keys/{}", keys.test.record().id());
    let (status, headers, _) = s.call(Method::GET, &path, test()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["etag"], "\"0\"");
    let renamed = r#"{"name":"renamed test key"}"#;
    for (tag, expected) in [
        ("\"0\"", StatusCode::OK),
        ("\"0\"", StatusCode::PRECONDITION_FAILED),
    ] {
        let headers = [test().unwrap(), ("if-match", tag.to_owned())];
        let (status, _, body) = s.send(Method::PATCH, &path, &headers, renamed).await;
        assert_eq!(status, expected, "{body}");
    }
    // The printed audit log: the update is in it, with the name before and after.
    let (status, _, body) = s.call(Method::GET, "/v1/audit?limit=5", test()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let updated = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["action"] == "key.updated" && entry["status"] == 200)
        .expect("the update is audited");
    assert_eq!(updated["changes"][0]["to"], "renamed test key");
    assert_eq!(
        body["data"][0]["status"], 412,
        "the refused one too, newest first"
    );

    // The revocation holds from the next request on.
    let revoke = format!("/v1/keys/{}/revoke", keys.test.record().id());
    let (status, _, body) = s.call(Method::POST, &revoke, test()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["id"], keys.test.record().id().as_str());
    assert_eq!(body["data"]["status"], "revoked");
    let (status, _, _) = s.call(Method::GET, "/v1/me", test()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = s
        .call(Method::POST, "/v1/keys/key_unknown/revoke", test())
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key")),
        "the revoked test key is refused before the route"
    );

    server.abort();
}

/// `examples/minimal.rs` on a real socket: its key reads the route, anything else is 401.
#[tokio::test]
async fn the_minimal_example_protects_its_route() {
    let (app, key) = minimal::app().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let get = |key: Option<String>| {
        let mut request = client.get(format!("{base}/v1/rules"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    let ok = get(Some(key.clone())).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "rules of org_1\n");
    let missing = get(None).await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let mut wrong = key.clone();
    wrong.replace_range(
        wrong.len() - 1..,
        if key.ends_with('0') { "1" } else { "0" },
    );
    assert_eq!(
        get(Some(wrong)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    server.abort();
}

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

/// Issue 21.2 and 21.7: no body, query string or path id makes the management API, the
/// login or the agent registration panic or answer 5xx. Arbitrary requests (proptest, its
/// failures kept in `tests/proptest-regressions/`) and a committed corpus of hostile ones
/// (`tests/corpus/api.jsonl`, one request a line) go through the quickstart's router in
/// process, as a session, as the admin test key, and anonymously.
mod hostile_requests {
    use super::quickstart;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, OnceLock};

    use axum::extract::ConnectInfo;
    use axum::Router;
    use http::{Method, Request};
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::Value;
    use tower::ServiceExt;
    use tower_api_key::key::KeyFamily;
    use tower_api_key::{ForgScope, ManageKeys, MemoryKeyStore, NewKey};

    /// One request: who sends it, how, and what.
    #[derive(Debug, Clone, Deserialize)]
    struct Hostile {
        /// `session`, `key` or `anonymous`.
        caller: String,
        method: String,
        /// A path with `{id}` where the id goes.
        path: String,
        id: String,
        query: String,
        /// The raw body (JSON or not).
        body: String,
    }

    struct App {
        runtime: tokio::runtime::Runtime,
        router: Router,
        demo: quickstart::Demo,
        test_key: String,
        next_ip: AtomicU32,
    }

    fn app() -> &'static App {
        static APP: OnceLock<App> = OnceLock::new();
        APP.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let (router, demo, test_key) = runtime.block_on(async {
                let store =
                    Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
                let keys = quickstart::issue_demo_keys(&store).await.unwrap();
                let demo = quickstart::Demo::new(store, &keys);
                let test_key = keys.test.key().expose_secret().to_owned();
                (quickstart::app(&demo), demo, test_key)
            });
            App {
                runtime,
                router,
                demo,
                test_key,
                next_ip: AtomicU32::new(1),
            }
        })
    }

    /// Sends `request` and answers its status; a panic in a handler fails the test.
    fn send(hostile: &Hostile) -> u16 {
        let app = app();
        app.runtime.block_on(async {
            let n = app.next_ip.fetch_add(1, Ordering::Relaxed);
            let mut id = hostile.id.clone();
            let mut headers: Vec<(&str, String)> = Vec::new();
            match hostile.caller.as_str() {
                "session" => {
                    // An owner and a session of its own each time, so the per-owner limits
                    // never hide a case; `{own}` names a key of that owner.
                    let owner = format!("org_h{n}");
                    let own = app
                        .demo
                        .keys
                        .issue(NewKey::new(owner.as_str(), "own", &KeyFamily::FORG_TEST))
                        .await
                        .unwrap();
                    id = id.replace("{own}", own.record().id().as_str());
                    let started = app
                        .demo
                        .sessions
                        .start(&http::HeaderMap::new(), owner, ForgScope::Admin)
                        .await
                        .unwrap();
                    headers.push(("cookie", started.cookies().cookie_header()));
                    let csrf = started.cookies().csrf_token().unwrap().to_owned();
                    headers.push(("x-csrf-token", csrf));
                }
                "key" => headers.push(("authorization", format!("Bearer {}", app.test_key))),
                _ => {}
            }
            let mut uri = hostile
                .path
                .replace("{id}", &id.replace("{own}", "key_unknown"));
            if !hostile.query.is_empty() {
                uri = format!("{uri}?{}", hostile.query);
            }
            let Ok(method) = Method::from_bytes(hostile.method.as_bytes()) else {
                return 400;
            };
            let mut request = Request::builder().method(method).uri(uri.as_str());
            if !hostile.body.is_empty() {
                request = request.header("content-type", "application/json");
            }
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let Ok(mut request) = request.body(axum::body::Body::from(hostile.body.clone())) else {
                return 400; // not even an HTTP request
            };
            // A new client address each time: the 5/min login limit never hides a case.
            let peer = SocketAddr::from((Ipv4Addr::from(0x7f00_0000 | (n & 0x00ff_ffff)), 40_000));
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = app.router.clone().oneshot(request).await.unwrap();
            if std::env::var_os("HOSTILE_TRACE").is_some() {
                eprintln!(
                    "{} {} {} {uri}",
                    response.status().as_u16(),
                    hostile.method,
                    hostile.path
                );
            }
            response.status().as_u16()
        })
    }

    const ROUTES: [(&str, &str, &str); 12] = [
        ("session", "POST", "/v1/keys"),
        ("key", "POST", "/v1/keys"),
        ("session", "GET", "/v1/keys"),
        ("session", "GET", "/v1/keys/{id}"),
        ("session", "DELETE", "/v1/keys/{id}"),
        ("session", "POST", "/v1/keys/{id}/rotate"),
        ("session", "POST", "/v1/keys/{id}/revoke"),
        ("session", "POST", "/v1/keys/{id}/disable"),
        ("session", "POST", "/v1/keys/{id}/enable"),
        ("session", "GET", "/v1/keys/{id}/activity"),
        ("anonymous", "POST", "/auth/login"),
        ("anonymous", "POST", "/auth/register-agent"),
    ];

    /// Field names the endpoints know, so that objects reach the validation code.
    const FIELDS: [&str; 10] = [
        "name",
        "environment",
        "scopes",
        "expires_at",
        "metadata",
        "grace_seconds",
        "email",
        "password",
        "limit",
        "before",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop_oneof![
                Just("live"),
                Just("test"),
                Just("admin"),
                Just("read:rules"),
                Just("a@b.c")
            ]
            .prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        prop::sample::select(FIELDS.to_vec()).prop_map(String::from),
                        "[a-z_]{1,12}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn body() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), json_value(), 0..7)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()).to_string()),
            1 => json_value().prop_map(|v| v.to_string()),
            1 => ".{0,60}",
            1 => Just(String::new()),
        ]
    }

    fn hostile() -> impl Strategy<Value = Hostile> {
        (
            prop::sample::select(ROUTES.to_vec()),
            prop_oneof![
                3 => Just("{own}".to_owned()),
                1 => Just("key_unknown".to_owned()),
                1 => "[a-zA-Z0-9_%.:-]{0,80}",
                1 => "[^/?#]{0,20}",
            ],
            prop_oneof![
                Just(String::new()),
                "(limit|before)=[0-9a-z-]{0,25}(&(limit|before)=[0-9a-z-]{0,25})?",
                "[ -~]{0,30}"
            ],
            body(),
        )
            .prop_map(|((caller, method, path), id, query, body)| Hostile {
                caller: caller.to_owned(),
                method: method.to_owned(),
                path: path.to_owned(),
                id,
                query,
                body,
            })
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 400,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "tests/proptest-regressions/hostile_requests.txt",
                ),
            )),
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn no_request_panics_or_answers_5xx(hostile in hostile()) {
            let status = send(&hostile);
            prop_assert!(status < 500, "{status} for {hostile:?}");
        }
    }

    #[test]
    fn the_committed_corpus_never_panics_or_answers_5xx() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/corpus/api.jsonl"
        ))
        .unwrap();
        let mut replayed = 0;
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let hostile: Hostile =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let status = send(&hostile);
            assert!(status < 500, "{status} for {hostile:?}");
            replayed += 1;
        }
        assert!(replayed >= 20, "the corpus has {replayed} requests");
    }
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

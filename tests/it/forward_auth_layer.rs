//! Issue 40.1, in process: `ForwardAuthLayer` makes each proxy's question the original
//! request (nginx's and Traefik/Caddy's headers, Envoy's prefix), refuses a question
//! without a well-formed original (400, the inner stack never called), answers an allowed
//! request 200 with the principal's headers and the stack's `RateLimit` headers and no
//! body, passes refusals as they are (with the body in `X-Auth-Error` for nginx), checks a
//! session's CSRF token against the original method, and carries any owner in a header.
#![cfg(feature = "axum")]

use crate::common::send;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::{any_service, get_service};
use axum::Router;
use http::{HeaderMap, Request, StatusCode};
use tower::Layer;
use tower_api_key::forward_auth::{Allow, ForwardAuthLayer};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::RateLimits;
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::KeyPolicy;
use tower_api_key::{forg, require, AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

type Store = MemoryKeyStore<ForgScope>;

struct Stack {
    app: Router,
    key: String,
    sessions: Sessions<Store>,
    /// Requests that reached the stack.
    asked: Arc<AtomicUsize>,
}

/// `/v1/rules` (GET read, POST write), standard limits, keys and sessions, behind `layer`.
async fn stack(layer: ForwardAuthLayer, owner: &str) -> Stack {
    let keys = Arc::new(Store::new().with_policy(forg::key_policy()));
    let key = keys
        .issue(NewKey::new(owner, "ci", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .await
        .unwrap()
        .key()
        .expose_secret()
        .to_owned();
    let sessions = Sessions::new(
        Arc::new(Store::new().with_policy(KeyPolicy::sessions())),
        CsrfSecret::generate().unwrap(),
    );
    let asked = Arc::new(AtomicUsize::new(0));
    let counting = Arc::clone(&asked);
    let routes = Router::new()
        .route(
            "/v1/rules",
            get_service(require(ForgScope::ReadRules).layer(Allow))
                .post_service(require(ForgScope::WriteRules).layer(Allow)),
        )
        .route_layer(RateLimits::new().layer(forg::STANDARD))
        .fallback_service(any_service(Allow))
        .layer(AuthLayer::new(keys).sessions(sessions.clone()))
        .layer(tower::util::MapRequestLayer::new(move |request| {
            counting.fetch_add(1, Ordering::SeqCst);
            request
        }));
    Stack {
        app: Router::new().fallback_service(layer.layer(routes)),
        key,
        sessions,
        asked,
    }
}

fn asking(headers: &[(&str, &str)]) -> Request<axum::body::Body> {
    let mut request = Request::get("/auth");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(axum::body::Body::empty()).unwrap()
}

#[tokio::test]
async fn each_proxys_question_becomes_the_original_request() {
    let nginx = stack(ForwardAuthLayer::nginx(), "org_1").await;
    let bearer = format!("Bearer {}", nginx.key);
    let allowed = send(
        nginx.app.clone(),
        asking(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/v1/rules?page=2"),
            ("authorization", &bearer),
        ]),
    )
    .await;
    assert_eq!(allowed.status, StatusCode::OK, "{:?}", allowed.body);
    assert!(allowed.body.is_empty(), "no body to the proxy");
    assert_eq!(allowed.headers["x-auth-owner"], "org_1");
    assert_eq!(allowed.headers["x-auth-scopes"], "read:rules");
    assert_eq!(allowed.headers["x-auth-environment"], "live");
    assert_eq!(allowed.headers["x-auth-credential"], "api_key");
    assert!(allowed.headers["x-auth-key-id"]
        .to_str()
        .unwrap()
        .starts_with("key_"));
    assert!(
        allowed.headers.contains_key("ratelimit"),
        "the stack's headers too"
    );
    assert!(!allowed.headers.contains_key("content-type"));

    // The same key and the original POST: the route's scope decides.
    let refused = send(
        nginx.app.clone(),
        asking(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/v1/rules"),
            ("authorization", &bearer),
        ]),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["code"], "insufficient_scope");
    let copied: serde_json::Value =
        serde_json::from_slice(refused.headers["x-auth-error"].as_bytes()).unwrap();
    assert_eq!(copied, refused.json(), "nginx's copy of the body");
    assert!(!refused.headers.contains_key("x-auth-owner"));

    let traefik = stack(ForwardAuthLayer::forwarded(), "org_1").await;
    let bearer = format!("Bearer {}", traefik.key);
    let answer = send(
        traefik.app.clone(),
        asking(&[
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/v1/rules"),
            ("x-forwarded-host", "api.example.com"),
            ("authorization", &bearer),
        ]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        !answer.headers.contains_key("x-auth-error"),
        "only when asked for"
    );

    let envoy = stack(ForwardAuthLayer::envoy("/auth"), "org_1").await;
    let bearer = format!("Bearer {}", envoy.key);
    let request = Request::get("/auth/v1/rules?page=2")
        .header("authorization", &bearer)
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(
        send(envoy.app.clone(), request).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_question_without_a_well_formed_original_is_refused() {
    let nginx = stack(ForwardAuthLayer::nginx(), "org_1").await;
    let bearer = format!("Bearer {}", nginx.key);
    let cases: [&[(&str, &str)]; 5] = [
        &[("authorization", &bearer)],
        &[("x-original-method", "GET"), ("authorization", &bearer)],
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "v1/rules"),
            ("authorization", &bearer),
        ],
        &[
            ("x-original-method", "G E T"),
            ("x-original-uri", "/v1/rules"),
            ("authorization", &bearer),
        ],
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/v1/rules"),
            ("x-original-uri", "/admin"),
            ("authorization", &bearer),
        ],
    ];
    for headers in cases {
        let answer = send(nginx.app.clone(), asking(headers)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{headers:?}");
        assert_eq!(answer.json()["code"], "invalid_request");
    }
    let envoy = stack(ForwardAuthLayer::envoy("/auth"), "org_1").await;
    for path in ["/v1/rules", "/authx/v1/rules"] {
        let request = Request::get(path)
            .header("authorization", &bearer)
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            send(envoy.app.clone(), request).await.status,
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    let asked = nginx.asked.load(Ordering::SeqCst) + envoy.asked.load(Ordering::SeqCst);
    assert_eq!(asked, 0, "the stack never asked");
}

#[tokio::test]
async fn a_session_through_the_proxy_needs_its_csrf_token_on_unsafe_originals() {
    let nginx = stack(ForwardAuthLayer::nginx(), "org_1").await;
    let started = nginx
        .sessions
        .start(
            &HeaderMap::new(),
            "org_1",
            [ForgScope::ReadRules, ForgScope::WriteRules],
        )
        .await
        .unwrap();
    let cookie = started.cookies().cookie_header();
    let token = started.cookies().csrf_token().unwrap().to_owned();
    let read = send(
        nginx.app.clone(),
        asking(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/v1/rules"),
            ("cookie", &cookie),
        ]),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.headers["x-auth-credential"], "session");
    let without = send(
        nginx.app.clone(),
        asking(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/v1/rules"),
            ("cookie", &cookie),
        ]),
    )
    .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    assert_eq!(without.json()["code"], "csrf_failed");
    let with = send(
        nginx.app.clone(),
        asking(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/v1/rules"),
            ("cookie", &cookie),
            ("x-csrf-token", &token),
        ]),
    )
    .await;
    assert_eq!(with.status, StatusCode::OK, "{:?}", with.body);
}

#[tokio::test]
async fn any_owner_reaches_the_upstream_in_a_header() {
    let nginx = stack(ForwardAuthLayer::nginx(), "équipe 7%").await;
    let bearer = format!("Bearer {}", nginx.key);
    let answer = send(
        nginx.app.clone(),
        asking(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/v1/rules"),
            ("authorization", &bearer),
        ]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers["x-auth-owner"], "%C3%A9quipe 7%25",
        "percent-encoded UTF-8"
    );
}

//! Issue 40.1: forward-auth. Through a real nginx and a real Caddy started from the
//! committed configurations (`examples/forward_auth/`): client → proxy → the example's auth
//! service → a plain upstream that echoes what it was told. 200 with the principal's
//! headers upstream (a client's own X-Auth-* never pass), 401 without a key, 403 on a scope
//! miss, 429 with `Retry-After` after the quota, a revoked key refused on the next
//! request, and the upstream never called on a refusal. In process: the original request
//! from each proxy's headers (and Envoy's prefix), a malformed one refused, sessions and
//! CSRF through the proxy, an owner no header could carry. Traefik's and Envoy's
//! configurations are parsed and checked against the layer's header names.
#![cfg(feature = "axum")]

use crate::common::reverse_proxy::{Kind, ReverseProxy};
use crate::examples::forward_auth::{auth_service, keys};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::Router;
use serde_json::{json, Value};
use tower_api_key::forward_auth::ForwardAuthLayer;
use tower_api_key::ManageKeys;

/// An upstream that answers with the X-Auth-* headers it got, counting its calls.
async fn upstream() -> (u16, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let echo = move |headers: HeaderMap| {
        let counted = Arc::clone(&counted);
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            axum::Json(json!({
                "owner": header("x-auth-owner"),
                "key_id": header("x-auth-key-id"),
                "scopes": header("x-auth-scopes"),
                "environment": header("x-auth-environment"),
                "credential": header("x-auth-credential"),
            }))
        }
    };
    let app = Router::new().fallback(echo);
    (serve(app).await, calls)
}

async fn serve(app: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    port
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(method: &str, url: &str, key: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        // A client that names itself: never reaches the upstream.
        .header("X-Auth-Owner", "org_spoofed");
    if let Some(key) = key {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// The whole story through `kind`.
async fn through(kind: Kind) {
    let (keys, reader, writer) = keys().await.unwrap();
    let layer = match kind {
        Kind::Nginx => ForwardAuthLayer::nginx(),
        Kind::Caddy => ForwardAuthLayer::forwarded(),
    };
    let auth = serve(auth_service(Arc::clone(&keys), layer)).await;
    let (upstream, calls) = upstream().await;
    let Some(proxy) = ReverseProxy::start(kind, auth, upstream) else {
        return;
    };
    let rules = proxy.url("/v1/rules?page=2");

    let allowed = call("GET", &rules, Some(&reader)).await;
    assert_eq!(allowed.status, 200, "{kind:?}: {}", allowed.body);
    let id_of = |name: &'static str| {
        let keys = Arc::clone(&keys);
        async move {
            let records = keys.list("org_1").await.unwrap();
            records
                .iter()
                .find(|r| r.name() == name)
                .unwrap()
                .id()
                .clone()
        }
    };
    let reader_id = id_of("reader").await;
    assert_eq!(
        allowed.body,
        json!({
            "owner": "org_1",
            "key_id": reader_id.as_str(),
            "scopes": "read:rules",
            "environment": "live",
            "credential": "api_key",
        }),
        "{kind:?}: the principal upstream, the client's X-Auth-Owner replaced"
    );
    if kind == Kind::Nginx {
        assert!(
            allowed.headers.contains_key("ratelimit"),
            "{:?}",
            allowed.headers
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let refusals = [
        ("GET", None, 401, "invalid_api_key"),
        (
            "GET",
            Some("forg_live_00000000000000000000000000000000"),
            401,
            "invalid_api_key",
        ),
        ("POST", Some(reader.as_str()), 403, "insufficient_scope"),
    ];
    for (method, key, status, code) in refusals {
        let refused = call(method, &rules, key).await;
        assert_eq!(
            refused.status, status,
            "{kind:?} {method} {key:?}: {}",
            refused.body
        );
        assert_eq!(refused.body["code"], code, "{kind:?}: the crate's body");
        if status == 401 {
            assert!(refused.headers.contains_key("www-authenticate"), "{kind:?}");
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "{kind:?}: no refusal reaches the upstream"
    );

    // The AI class: 10 reviews a minute per key; the 11th is 429 with Retry-After.
    let reviews = proxy.url("/v1/reviews");
    for n in 0..10 {
        let review = call("POST", &reviews, Some(&writer)).await;
        assert_eq!(review.status, 200, "{kind:?} review {n}: {}", review.body);
    }
    let limited = call("POST", &reviews, Some(&writer)).await;
    assert_eq!(limited.status, 429, "{kind:?}: {}", limited.body);
    assert_eq!(limited.body["code"], "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(calls.load(Ordering::SeqCst), 11);

    // Revoked: refused on the very next request.
    let writer_id = id_of("writer").await;
    assert_eq!(call("GET", &rules, Some(&writer)).await.status, 200);
    keys.revoke(&writer_id).await.unwrap();
    let revoked = call("GET", &rules, Some(&writer)).await;
    assert_eq!(revoked.status, 401, "{kind:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        12,
        "{kind:?}: 12 allowed, 12 served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_real_nginx() {
    through(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_real_caddy() {
    through(Kind::Caddy).await;
}

/// The configurations of the proxies this machine cannot run: each names the auth
/// service, the layer's principal headers and the credential headers.
#[test]
fn the_traefik_and_envoy_configurations_match_the_layer() {
    let principal: Vec<String> = ForwardAuthLayer::forwarded()
        .principal_headers()
        .iter()
        .map(|name| name.as_str().to_owned())
        .collect();

    let traefik: toml_edit::DocumentMut = include_str!("../../examples/forward_auth/traefik.toml")
        .parse()
        .unwrap();
    let middleware = &traefik["http"]["middlewares"]["tower-api-key"]["forwardAuth"];
    assert_eq!(
        middleware["address"].as_str(),
        Some("http://127.0.0.1:9090/")
    );
    assert_eq!(middleware["trustForwardHeader"].as_bool(), Some(false));
    let copied: Vec<String> = middleware["authResponseHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(copied, principal);
    let router = &traefik["http"]["routers"]["app"];
    assert_eq!(
        router["middlewares"]
            .as_array()
            .unwrap()
            .get(0)
            .and_then(|v| v.as_str()),
        Some("tower-api-key")
    );
    let servers = traefik["http"]["services"]["app"]["loadBalancer"]["servers"]
        .as_array_of_tables()
        .unwrap();
    assert_eq!(
        servers.get(0).unwrap()["url"].as_str(),
        Some("http://127.0.0.1:3000/")
    );

    let envoy: Value =
        serde_json::from_str(include_str!("../../examples/forward_auth/envoy.json")).unwrap();
    let manager = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let filters = manager["http_filters"].as_array().unwrap();
    assert_eq!(
        filters[0]["name"], "envoy.filters.http.ext_authz",
        "before the router"
    );
    assert_eq!(filters.last().unwrap()["name"], "envoy.filters.http.router");
    let authz = &filters[0]["typed_config"];
    assert_eq!(authz["failure_mode_allow"], false, "fail closed");
    let service = &authz["http_service"];
    assert_eq!(service["path_prefix"], "/auth");
    let patterns = |at: &Value| -> Vec<String> {
        at["patterns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["exact"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        patterns(&service["authorization_response"]["allowed_upstream_headers"]),
        principal
    );
    let forwarded = patterns(&service["authorization_request"]["allowed_headers"]);
    for needed in [
        "authorization",
        "x-forgeos-api-key",
        "cookie",
        "x-csrf-token",
        "x-forwarded-for",
    ] {
        assert!(
            forwarded.contains(&needed.to_owned()),
            "{needed} reaches the auth service"
        );
    }
    let to_client = patterns(&service["authorization_response"]["allowed_client_headers"]);
    for needed in ["www-authenticate", "retry-after", "ratelimit"] {
        assert!(
            to_client.contains(&needed.to_owned()),
            "{needed} reaches the client"
        );
    }
    let cluster = |name: &str| {
        let clusters = envoy["static_resources"]["clusters"].as_array().unwrap();
        let cluster = clusters.iter().find(|c| c["name"] == name).unwrap();
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"]
            .as_u64()
    };
    assert_eq!(service["server_uri"]["cluster"], "auth");
    assert_eq!(cluster("auth"), Some(9090));
    assert_eq!(cluster("app"), Some(3000));
}

/// The auth service down: refused (nginx: 503 `auth_unavailable` by the recipe; Caddy: its
/// own 5xx), the upstream never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_service_that_is_down_lets_nothing_through() {
    for kind in [Kind::Nginx, Kind::Caddy] {
        let (upstream, calls) = upstream().await;
        let down = crate::common::reverse_proxy::free_port();
        let Some(proxy) = ReverseProxy::start(kind, down, upstream) else {
            return;
        };
        let answer = call("GET", &proxy.url("/v1/rules"), Some("forg_live_x")).await;
        assert!(answer.status >= 500, "{kind:?}: {}", answer.status);
        if kind == Kind::Nginx {
            assert_eq!(answer.status, 503);
            assert_eq!(answer.body["code"], "auth_unavailable");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{kind:?}");
    }
}

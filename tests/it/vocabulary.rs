//! A service with its own scope vocabulary gets every feature: authentication, rate limits,
//! scope requirements and extractors, through axum, hyper and tonic on real sockets. A route
//! written for another vocabulary fails closed (500), never reads the wrong bits.

use crate::examples::hyper_server;
use crate::examples::tonic_server;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_api_key::clock::ManualClock;
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::{GovernorBackend, RateLimits};
use tower_api_key::scope::ScopeSet;
use tower_api_key::store::IssuedKey;
use tower_api_key::store::ManageKeys;
use tower_api_key::{forg, require, AuthLayer, ForgScope, MemoryKeyStore, NewKey, Principal};

tower_api_key::scopes! {
    /// A document service's own vocabulary.
    pub enum DocScope {
        /// Read documents.
        Read = "docs:read",
        /// Write documents.
        Write = "docs:write",
    }
}

async fn doc_store() -> (Arc<MemoryKeyStore<DocScope>>, IssuedKey<DocScope>) {
    let store =
        Arc::new(MemoryKeyStore::<DocScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = store
        .issue(NewKey::new("org_docs", "reader", &KeyFamily::FORG_LIVE).scopes(DocScope::Read))
        .await
        .unwrap();
    (store, issued)
}

/// GET `path` on `addr` with the key; status, headers and body text.
async fn get_with_key(
    addr: SocketAddr,
    path: &str,
    key: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::get(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn serve_axum(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn custom_vocabulary_through_axum_with_rate_limits_and_extractors() {
    let (store, issued) = doc_store().await;
    // A clock that stands still: the budget below is exact.
    let limits = RateLimits::backed_by(GovernorBackend::on_clock(ManualClock::default()));
    let app = Router::new()
        .route(
            "/docs",
            get(|who: Principal, scopes: ScopeSet<DocScope>| async move {
                format!("{} {}", who.owner(), scopes)
            })
            .route_layer(require(DocScope::Read)),
        )
        .route(
            "/docs/edit",
            get(|| async { "edited" }).route_layer(require(DocScope::Write)),
        )
        .route(
            "/wrong-extractor",
            get(|scopes: ScopeSet<ForgScope>| async move { scopes.to_string() }),
        )
        .route(
            "/wrong-requirement",
            get(|| async { "reached" }).route_layer(require(ForgScope::ReadRules)),
        )
        .route_layer(limits.layer(forg::STANDARD))
        .layer(AuthLayer::new(store));
    let addr = serve_axum(app).await;
    let key = issued.key().expose_secret();

    let (status, headers, body) = get_with_key(addr, "/docs", key).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "org_docs docs:read")
    );
    assert_eq!(headers["ratelimit-policy"], r#""standard";q=100;w=60"#);
    assert_eq!(headers["ratelimit"], r#""standard";r=99;t=1"#);

    let (status, _, body) = get_with_key(addr, "/docs/edit", key).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        r#"{"error":"Insufficient scope: docs:write required","code":"insufficient_scope","status":403}"#
    );

    // The same rate-limit class on every route: one budget, 4 requests spent so far.
    for path in ["/wrong-extractor", "/wrong-requirement"] {
        let (status, headers, body) = get_with_key(addr, path, key).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert!(
            body.contains("an AuthLayer over a store of this route's scope vocabulary"),
            "{path}: {body}"
        );
        assert!(!body.contains("reached"), "the inner service is not called");
        assert!(headers.contains_key("ratelimit"), "{path}");
    }
    let (_, headers, _) = get_with_key(addr, "/docs", key).await;
    assert_eq!(headers["ratelimit"], r#""standard";r=95;t=3"#);
}

#[tokio::test]
async fn custom_vocabulary_through_hyper() {
    let (store, issued) = doc_store().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hyper_server::serve(
        listener,
        store,
        forg::AI,
        DocScope::Read,
    ));
    let (status, headers, body) =
        get_with_key(addr, "/v1/sessions", issued.key().expose_secret()).await;
    assert_eq!(status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["caller"]["scopes"], serde_json::json!(["docs:read"]));
    assert_eq!(headers["ratelimit-policy"], r#""ai";q=10;w=60"#);
}

#[tokio::test]
async fn custom_vocabulary_through_tonic() {
    let (store, issued) = doc_store().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tonic_server::serve(
        listener,
        Arc::clone(&store),
        forg::STANDARD,
        DocScope::Read,
    ));
    let bearer = format!("Bearer {}", issued.key().expose_secret());
    let reply = tonic_server::call_who_am_i(addr, &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(reply.owner, "org_docs");
    assert_eq!(reply.scopes, ["docs:read"]);

    let writer_only = store
        .issue(NewKey::new("org_docs", "writer", &KeyFamily::FORG_LIVE).scopes(DocScope::Write))
        .await
        .unwrap();
    let bearer = format!("Bearer {}", writer_only.key().expose_secret());
    let status = tonic_server::call_who_am_i(addr, &[("authorization", &bearer)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
}

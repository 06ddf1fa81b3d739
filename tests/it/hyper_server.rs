//! The hyper example on a real loopback socket with a real HTTP client.

use crate::examples::hyper_server;

use std::num::NonZeroU32;
use std::sync::Arc;
use tower_api_key::rate_limit::ClassName;
use tower_api_key::store::ManageKeys;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_api_key::rate_limit::Quota;
use tower_api_key::rate_limit::RateClass;
use tower_api_key::{ForgScope, MemoryKeyStore};

#[tokio::test]
async fn hyper_server_authenticates_scopes_and_limits() {
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = hyper_server::demo_key(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let class = RateClass::per_key(
        ClassName::from_static("tiny"),
        Quota::per_minute(NonZeroU32::new(3).unwrap()),
    );
    let server = tokio::spawn(hyper_server::serve(
        listener,
        Arc::clone(&store),
        class,
        ForgScope::ReadSessions,
    ));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let call = |header: Option<(&'static str, String)>| {
        let mut request = Request::get(format!("http://{addr}/v1/sessions"));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(Bytes::new())).unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body: serde_json::Value =
                serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
            (parts.status, parts.headers, body)
        }
    };
    let key = issued.key().expose_secret().to_owned();

    let (status, headers, body) = call(Some(("authorization", format!("Bearer {key}")))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["caller"]["key_id"], issued.record().id().as_str());
    assert_eq!(
        body["caller"]["scopes"],
        serde_json::json!(["read:sessions"])
    );
    assert_eq!(headers["ratelimit-policy"], r#""tiny";q=3;w=60"#);

    let (status, _, body) = call(Some(("x-forgeos-api-key", key.clone()))).await;
    assert_eq!(
        (status, body["caller"]["environment"].as_str()),
        (StatusCode::OK, Some("live"))
    );

    let (status, headers, body) = call(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "invalid_api_key");
    assert_eq!(
        headers["www-authenticate"], "Bearer",
        "no credential, no error code"
    );

    let (status, _, _) = call(Some(("authorization", format!("Bearer {key}")))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, body) = call(Some(("authorization", format!("Bearer {key}")))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    assert_eq!(headers["retry-after"], "20");

    let reader = store
        .issue(
            tower_api_key::NewKey::new(
                "org_acme",
                "reports only",
                &tower_api_key::key::KeyFamily::FOS,
            )
            .scopes(tower_api_key::ForgScope::ReadReports),
        )
        .await
        .unwrap();
    let (status, _, body) = call(Some((
        "x-forgeos-api-key",
        reader.key().expose_secret().to_owned(),
    )))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "Insufficient scope: read:sessions required");
    server.abort();
}

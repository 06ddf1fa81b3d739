//! Calling an axum `Router` in process as a client at a given address would (the
//! address is what `ConnectInfo` tells the client-address and per-address layers).

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// `method path` with `headers` and a JSON `body`, from `client`: the status, the headers
/// and the body as JSON (`Null` when it is not). The request is built before the future
/// is returned, so the future borrows nothing.
pub fn call(
    app: &axum::Router,
    client: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> impl Future<Output = (StatusCode, HeaderMap, Value)> + 'static {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(client));
    let app = app.clone();
    async move {
        let response = app.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (parts.status, parts.headers, json)
    }
}

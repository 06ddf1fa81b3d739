//! The layers on a plain hyper 1.x server (hyper-util), no axum.
//!
//! ```text
//! cargo run --example hyper_server               # listens on 127.0.0.1:8081
//! cargo run --example hyper_server -- --addr 127.0.0.1:3001
//! ```
//!
//! Every request needs a key with `read:sessions`; each key may make 100 requests a minute;
//! 20 refused keys a minute from one address block it. The client's address reaches the
//! layers as a [`ClientAddr`] extension, inserted per connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tower_api_key::forg;
use tower_api_key::store::ManageKeys;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_api_key::client_ip::ClientAddr;
use tower_api_key::failure_limit::{FailureLimit, FailureLimitLayer};
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::{RateClass, RateLimits};
use tower_api_key::store::IssuedKey;
use tower_api_key::{require, AuthLayer, ForgScope, KeyStore, MemoryKeyStore, NewKey, Principal};

/// Answers with the caller's key id, environment and scopes.
async fn sessions(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // The layers guarantee an Principal here; answer 500 rather than panic if they were
    // ever removed.
    let Some(identity) = request.extensions().get::<Principal>() else {
        return Ok(Response::builder()
            .status(500)
            .body(Full::new(Bytes::from_static(b"no identity")))
            .unwrap_or_default());
    };
    let body = serde_json::json!({
        "data": [{ "id": "ses_1", "events": 42 }],
        "caller": {
            "key_id": identity.key_id().as_str(),
            "environment": identity.environment(),
            "scopes": identity.scope_names(),
        },
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default())
}

/// Accepts connections on `listener` forever, one task per connection, behind
/// authentication, rate limiting (`class`) and a requirement of `required`, in any scope
/// vocabulary.
pub async fn serve<St: KeyStore>(
    listener: TcpListener,
    store: Arc<St>,
    class: RateClass,
    required: St::Scope,
) -> std::io::Result<()> {
    let failures = FailureLimitLayer::new(FailureLimit::default());
    let auth = AuthLayer::new(store).sources(forg::credential_sources());
    let limits = RateLimits::new();
    let rate_limit = limits.layer(class);
    loop {
        let (stream, peer) = listener.accept().await?;
        let service = ServiceBuilder::new()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ClientAddr(peer.ip()));
                request
            })
            .layer(failures.clone())
            .layer(auth.clone())
            .layer(rate_limit.clone())
            .layer(require(required))
            .service_fn(sessions);
        tokio::spawn(async move {
            let builder = Builder::new(TokioExecutor::new());
            let connection =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(error) = connection.await {
                eprintln!("connection from {peer} ended: {error}");
            }
        });
    }
}

/// A key with `read:sessions`, for the demo.
pub async fn demo_key(store: &MemoryKeyStore<ForgScope>) -> IssuedKey<ForgScope> {
    store
        .issue(
            NewKey::new("org_acme", "hyper demo", &KeyFamily::FORG_LIVE)
                .scopes(ForgScope::ReadSessions),
        )
        .await
        .expect("a fresh store has room for one key")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = match std::env::args().skip_while(|a| a != "--addr").nth(1) {
        Some(addr) => addr.parse()?,
        None => std::env::var("ADDR")
            .unwrap_or_else(|_| "127.0.0.1:8081".into())
            .parse()?,
    };
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = demo_key(&store).await;
    let listener = TcpListener::bind(addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let key = issued.key().expose_secret();
    println!("hyper server with tower-api-key on {base}\n");
    println!("  curl -i {base}/v1/sessions -H 'Authorization: Bearer {key}'   # 200");
    println!("  curl -i {base}/v1/sessions -H 'X-ForgeOS-API-Key: {key}'      # 200");
    println!("  curl -i {base}/v1/sessions                                     # 401");
    serve(listener, store, forg::STANDARD, ForgScope::ReadSessions).await?;
    Ok(())
}

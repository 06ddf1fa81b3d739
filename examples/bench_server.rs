//! The server `benches/loopback.sh` loads: `GET /v1/sessions` answering a small JSON body,
//! bare (`--bare`), behind authentication and the scope requirement only (`--auth`), or
//! behind the full stack (authentication, scope requirement, rate limit).
//! Prints `KEY=<key>` and `LISTENING=<addr>` on start.

use std::num::NonZeroU32;
use std::sync::Arc;
use tower_api_key::rate_limit::ClassName;
use tower_api_key::store::ManageKeys;

use axum::routing::get;
use axum::{Json, Router};
use tower::ServiceBuilder;
use tower_api_key::key::KeyFamily;
use tower_api_key::rate_limit::Quota;
use tower_api_key::rate_limit::{RateClass, RateLimits};
use tower_api_key::{require, AuthLayer, ForgScope, MemoryKeyStore, NewKey};

async fn sessions() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "data": [{ "id": "ses_1", "events": 42 }] }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bare = std::env::args().any(|a| a == "--bare");
    let auth_only = std::env::args().any(|a| a == "--auth");
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = store
        .issue(NewKey::new("bench", "load", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadSessions))
        .await?;
    let routes = Router::new().route("/v1/sessions", get(sessions));
    // One `route_layer` call with the whole stack: each further axum `layer` call would add
    // a level of boxed routes to every request (see `benches/axum_router.rs`).
    let app = if bare {
        routes
    } else if auth_only {
        routes.route_layer(
            ServiceBuilder::new()
                .layer(AuthLayer::new(store))
                .layer(require(ForgScope::ReadSessions)),
        )
    } else {
        // A quota no load test reaches, so every request does the full work and passes.
        let roomy = RateClass::per_key(
            ClassName::from_static("load"),
            Quota::new(NonZeroU32::MAX, NonZeroU32::MIN),
        );
        routes.route_layer(
            ServiceBuilder::new()
                .layer(AuthLayer::new(store))
                .layer(RateLimits::new().layer(roomy))
                .layer(require(ForgScope::ReadSessions)),
        )
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("KEY={}", issued.key().expose_secret());
    println!("LISTENING={}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

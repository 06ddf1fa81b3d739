//! The smallest useful setup: an in-memory store, one key, one protected axum route.
//! `cargo run --example minimal`, then the printed curl line. Read this first; the
//! quickstart shows everything else (sessions, limits, spend caps, key management).

use std::sync::Arc;

use axum::{routing::get, Router};
use tower_api_key::key::KeyFamily;
use tower_api_key::{require, AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey, Principal};

/// The app and its one key (shown once: the store keeps only its digest).
pub async fn app() -> Result<(Router, String), tower_api_key::store::ManageError> {
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let new = NewKey::new("org_1", "ci", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules);
    let key = store.issue(new).await?.key().expose_secret().to_owned();
    let rules = get(|caller: Principal| async move { format!("rules of {}\n", caller.owner()) });
    let app = Router::new()
        .route(
            "/v1/rules",
            rules.route_layer(require(ForgScope::ReadRules)),
        )
        .layer(AuthLayer::new(store)); // 401 without a valid key, before any route
    Ok((app, key))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (app, key) = app().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("curl -i http://127.0.0.1:3000/v1/rules -H 'Authorization: Bearer {key}'");
    axum::serve(listener, app).await?;
    Ok(())
}

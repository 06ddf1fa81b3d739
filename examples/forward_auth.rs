//! Forward-auth: this crate as the auth service of nginx, Caddy, Traefik or Envoy, so a
//! service written in any language behind the proxy gets the answers a Rust service gets.
//!
//! `cargo run --example forward_auth` starts the auth service on 127.0.0.1:9090 and prints
//! two keys; the proxy configurations are in `examples/forward_auth/` (nginx, Caddy,
//! Traefik, Envoy). The same route table as a Rust service would have: scopes per route,
//! a rate class per route, a spend cap on the paid route, the failed-authentication limit,
//! the client's address from the proxy's `X-Forwarded-For`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{any_service, get_service, post_service};
use axum::Router;
use tower::{Layer, ServiceBuilder};
use tower_api_key::client_ip::{ClientIp, ClientIpLayer};
use tower_api_key::failure_limit::FailureLimit;
use tower_api_key::forward_auth::{Allow, ForwardAuthLayer};
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::rate_limit::RateLimits;
use tower_api_key::usage::{Budgets, SpendCaps};
use tower_api_key::ServiceBuilderExt;
use tower_api_key::{forg, require, AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

/// The key store of this example.
pub type Store = MemoryKeyStore<ForgScope>;

/// What a review costs against the monthly spend cap of a live key (1,000).
pub const REVIEW_COST: u64 = 10;

/// The auth service for a proxy that asks as `proxy` says
/// ([`ForwardAuthLayer::nginx`], [`ForwardAuthLayer::forwarded`] for Caddy and Traefik,
/// [`ForwardAuthLayer::envoy`]): the route table of the upstream, every route's handler
/// [`Allow`]. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn auth_service(keys: Arc<Store>, proxy: ForwardAuthLayer) -> Router {
    let limits = RateLimits::new();
    let caps = SpendCaps::new(Budgets::new().default_cap(Environment::Live, 1_000));
    let routes = Router::new()
        .route(
            "/v1/rules",
            get_service(require(ForgScope::ReadRules).layer(Allow))
                .post_service(require(ForgScope::WriteRules).layer(Allow)),
        )
        .route_layer(limits.layer(forg::STANDARD))
        .route(
            "/v1/reviews",
            post_service(
                ServiceBuilder::new()
                    .layer(require(ForgScope::WriteRules))
                    .layer(limits.layer(forg::AI))
                    .layer(caps.layer(REVIEW_COST))
                    .service(Allow),
            ),
        )
        // Any other path: a valid key is enough.
        .fallback_service(any_service(Allow))
        .layer(
            ServiceBuilder::new()
                // The proxy on this machine is trusted to say who the client is.
                .layer(ClientIpLayer::new(
                    ClientIp::peer()
                        .trust_proxies(["127.0.0.0/8", "::1/128"])
                        .expect("loopback networks"),
                ))
                .limit_failures(FailureLimit::default())
                .layer(AuthLayer::new(keys).sources(forg::credential_sources())),
        );
    Router::new().fallback_service(proxy.layer(routes))
}

/// A store with a reader's key and a writer's key (plaintexts returned once).
pub async fn keys() -> Result<(Arc<Store>, String, String), tower_api_key::store::ManageError> {
    let store = Arc::new(Store::new().with_policy(forg::key_policy()));
    let reader = NewKey::new("org_1", "reader", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules);
    let writer = NewKey::new("org_1", "writer", &KeyFamily::FORG_LIVE)
        .scopes([ForgScope::ReadRules, ForgScope::WriteRules]);
    let reader = store.issue(reader).await?.key().expose_secret().to_owned();
    let writer = store.issue(writer).await?.key().expose_secret().to_owned();
    Ok((store, reader, writer))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (keys, reader, writer) = keys().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
    println!("auth service for nginx on http://127.0.0.1:9090 (examples/forward_auth/nginx.conf)");
    println!("reader key: {reader}\nwriter key: {writer}");
    println!("with nginx on :8080 in front of your service:");
    println!("  curl -i http://127.0.0.1:8080/v1/rules -H 'Authorization: Bearer {reader}'");
    println!("  curl -i -X POST http://127.0.0.1:8080/v1/rules -H 'Authorization: Bearer {reader}'   # 403");
    let app = auth_service(keys, ForwardAuthLayer::nginx());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

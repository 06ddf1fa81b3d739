//! Forward-auth: the crate's layers as the auth service of a proxy (nginx `auth_request`,
//! Caddy and Traefik `forward_auth`, Envoy `ext_authz`), so a service in any language
//! behind the proxy gets exactly the answers a Rust service behind the layers gets.
//!
//! The proxy asks the auth service about each request it receives, sending the original
//! method and URI (in headers, or as the request itself) and the client's headers (the key,
//! the session cookie and CSRF token, `X-Forwarded-For`). [`ForwardAuthLayer`] turns that
//! question back into the original request and hands it to the application's stack: the
//! same [`AuthLayer`](crate::AuthLayer), scopes per route, rate limits, spend caps, plans
//! and failed-authentication limit, over a router whose handlers are [`Allow`]. What the
//! stack answers goes back to the proxy:
//! - **allowed** (2xx): `200` with an empty body, the principal as headers for the upstream
//!   (`X-Auth-Owner`, `X-Auth-Key-Id`, `X-Auth-Scopes`, `X-Auth-Environment`,
//!   `X-Auth-Credential`; names configurable) and the stack's own headers (`RateLimit`,
//!   `RateLimit-Policy`);
//! - **refused**: the crate's status, JSON body and headers as they are (401 with
//!   `WWW-Authenticate`, 403, 402, 429 with `Retry-After`, 503). Caddy, Traefik and Envoy
//!   return them to the client as they are; nginx passes only 401 and 403 and turns the
//!   rest into 500, so [`ForwardAuthLayer::nginx`] also copies the body into `X-Auth-Error`
//!   for the `error_page` recipe in `examples/forward_auth/nginx.conf`, which answers
//!   with the real status, body and `Retry-After` without asking twice.
//!
//! Not supported through a proxy: a cost the upstream reports after its response
//! ([`ReportedCost`](crate::usage::ReportedCost)): the upstream's response does not pass
//! through the auth service. A spend-capped route is charged what the layer reserves for
//! it (its fixed cost) when the auth service allows it.
//!
//! ```
//! use std::sync::Arc;
//! use axum::routing::{any_service, get_service};
//! use axum::Router;
//! use tower::Layer;
//! use tower_api_key::forward_auth::{Allow, ForwardAuthLayer};
//! use tower_api_key::{require, AuthLayer, ForgScope, MemoryKeyStore};
//!
//! let keys = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
//! // The routes of the service behind the proxy, as the route table of the auth service.
//! let routes = Router::new()
//!     .route(
//!         "/v1/rules",
//!         get_service(require(ForgScope::ReadRules).layer(Allow))
//!             .post_service(require(ForgScope::WriteRules).layer(Allow)),
//!     )
//!     .fallback_service(any_service(Allow)) // any other path: a valid credential suffices
//!     .layer(AuthLayer::new(keys).sources(tower_api_key::forg::credential_sources()));
//! // nginx: `auth_request /_auth;` with `proxy_pass http://<this service>;`
//! let auth_service: Router = Router::new().fallback_service(ForwardAuthLayer::nginx().layer(routes));
//! ```

mod allow;
mod future;
mod layer;
mod original;
mod service;

pub use allow::Allow;
pub use future::ResponseFuture;
pub use layer::{ForwardAuthLayer, X_AUTH_ERROR};
pub use original::OriginalRequest;
pub use service::ForwardAuth;

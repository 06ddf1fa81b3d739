//! The authentication layer: header -> key -> digest -> record -> [`Principal`](crate::Principal).
//!
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_api_key::{AuthLayer, ManageKeys, MemoryKeyStore, NewKey, Principal};
//! use tower_api_key::key::KeyFamily;
//! use tower_api_key::forg::ForgScope;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
//! let issued = store
//!     .issue(NewKey::new("org_1", "demo", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
//!     .await
//!     .unwrap();
//!
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::new(store))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let who = req.extensions().get::<Principal>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("hello {}", who.owner())))
//!     }));
//!
//! let request = Request::get("/v1/rules")
//!     .header("authorization", format!("Bearer {}", issued.key().expose_secret()))
//!     .body(String::new())
//!     .unwrap();
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let anonymous = Request::get("/v1/rules").body(String::new()).unwrap();
//! assert_eq!(service.oneshot(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```
//!
//! # What the layer does
//! 1. Takes the one key from the configured [`CredentialSources`](crate::credential::CredentialSources) (400 when ambiguous).
//! 2. Parses it against the store's accepted [`KeyFamilies`](crate::key::KeyFamilies)
//!    (401 when malformed: nothing hashed).
//! 3. Refuses a refused environment (403 `environment_not_allowed`: nothing hashed).
//! 4. Hashes it with the store's [`KeyHasher`](crate::key::KeyHasher) and asks the store:
//!    first [`KeyStore::lookup_now`](crate::KeyStore::lookup_now), then [`KeyStore::lookup`](crate::KeyStore::lookup) under a timeout (2 s by
//!    default). A failure, timeout or panic of the store is a 503; the inner service is
//!    not called.
//! 5. Compares the record's digest in constant time and checks revocation, expiry and
//!    environment (401, one body for all).
//! 6. Marks the key headers sensitive (or strips them), puts the [`Principal`](crate::Principal) and the
//!    typed [`ScopeSet`](crate::ScopeSet) in the request's extensions and calls the inner service.
//!
//! The asynchronous lookup uses Tokio's timer: run it on a Tokio runtime with time enabled
//! (axum, hyper-util and tonic do). Without one, lookups fail closed (503).
//!
//! Authentication is all this layer does. Failed-authentication limits
//! ([`FailureLimitLayer`](crate::failure_limit::FailureLimitLayer)), activity
//! ([`ActivityLayer`](crate::activity::ActivityLayer)) and the client address
//! ([`ClientIpLayer`](crate::client_ip::ClientIpLayer)) are layers of their own, outside it;
//! [`ServiceBuilderExt`](crate::ServiceBuilderExt) stacks them in one expression.

mod future;
mod layer;
mod service;
mod span;
mod verify;

pub use future::ResponseFuture;
pub use layer::AuthLayer;
pub use service::AuthService;

/// The response header that warns a client its key expires soon
/// ([`AuthLayer::expiry_notice`]): the key's expiry as an HTTP-date (RFC 9110's
/// IMF-fixdate), e.g. `api-key-expires: Thu, 10 Dec 2026 00:00:00 GMT`, on every response
/// to a request authenticated by a key that expires within the configured window.
///
/// Not `Sunset` (RFC 8594): that field says the *URI* will stop answering, which clients,
/// caches and API tooling act on for the resource itself; here the resource stays and the
/// credential ends, as with GitHub's `github-authentication-token-expiration`.
pub const API_KEY_EXPIRES: http::HeaderName = http::HeaderName::from_static("api-key-expires");

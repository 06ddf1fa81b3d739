//! API-key and browser-session authentication, typed scopes, rate limits, usage policy and
//! key management as [tower] middleware, for any axum, hyper or tonic service.
//!
//! - Keys: `forg_live_` / `forg_test_` + 32 hex, `fos_` + 32 to 128 hex, or your own
//!   [`KeyFamily`](key::KeyFamily); read from `Authorization: Bearer` (and the headers you
//!   add: the FORG preset, [`forg::credential_sources`], adds `X-ForgeOS-API-Key`).
//! - Verification: SHA-256 digest, looked up in a pluggable async [`KeyStore`], compared in
//!   constant time; revoked, expired and unknown keys get one indistinguishable 401.
//! - Principal: the caller's [`Principal`] and typed [`ScopeSet`] go into
//!   request extensions; [`require`](require::require) checks scopes per route.
//! - Rate limits: per key and class of route, per client address on public routes
//!   ([`rate_limit`]), with IETF `RateLimit` headers; and on failed authentications per
//!   client address ([`failure_limit`]), the address resolved once ([`client_ip`]).
//! - Sessions: the `forge_session` cookie as a second credential of the same layer, with
//!   CSRF protection and login / logout helpers ([`session`]).
//! - Usage policy: spend caps per period (402) and plan tiers (403) ([`usage`]).
//! - Lifecycle: [`ManageKeys`], one async trait for every store (memory, Redis, PostgreSQL,
//!   SQLite, your own): issue (plaintext shown once), list, rotate, revoke, disable, delete,
//!   last use; over HTTP with the management API ([`manage`], feature `axum`).
//! - One concern per layer, stacked in one expression with [`ServiceBuilderExt`];
//!   the FORG / ForgeOS presets (scopes, families, header, classes) are in [`forg`].
//!
//! # Quick start (axum)
//!
//! ```
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use tower_api_key::{key::KeyFamily, require::require, forg::ForgScope};
//! use tower_api_key::{AuthLayer, ManageKeys, MemoryKeyStore, NewKey, Principal};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
//! let issued = store
//!     .issue(NewKey::new("org_1", "ci", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadSessions))
//!     .await
//!     .unwrap();
//! println!("your key (shown once): {}", issued.key().expose_secret());
//!
//! let app = Router::new()
//!     .route(
//!         "/v1/sessions",
//!         get(|who: Principal| async move { format!("sessions of {}", who.owner()) })
//!             .route_layer(require(ForgScope::ReadSessions)),
//!     )
//!     .layer(AuthLayer::new(store));
//! # use tower::ServiceExt;
//! # let request = http::Request::get("/v1/sessions")
//! #     .header("authorization", format!("Bearer {}", issued.key().expose_secret()))
//! #     .body(axum::body::Body::empty())
//! #     .unwrap();
//! # assert_eq!(app.oneshot(request).await.unwrap().status(), 200);
//! // axum::serve(listener, app).await
//! # }
//! ```
//!
//! # The modules, in the order a request meets them
//!
//! | step | module |
//! |---|---|
//! | the client's address, resolved once | [`client_ip`] |
//! | activity observed (wraps the rest) | [`activity`] |
//! | failed authentications limited per address | [`failure_limit`] |
//! | where credentials are read | [`credential`] |
//! | keys: families, parsing, digests | [`key`], [`environment`] (live or test) |
//! | authentication, the principal | [`auth`], [`principal`], [`session`] (cookies, CSRF) |
//! | scope requirements per route | [`require`](mod@require), [`scope`] |
//! | rate limits per class | [`rate_limit`] |
//! | spend caps and plans | [`usage`] |
//! | what a refusal looks like | [`reject`] (one [`RejectionKind`](reject::RejectionKind) table), [`body`] |
//! | where keys live and their lifecycle | [`store`], [`manage`] (HTTP, with its OpenAPI document) |
//! | the FORG / ForgeOS presets | [`forg`] |
//!
//! Beside the path: [`BackendError`] and [`OnBackendError`] (a shared backend that cannot
//! answer, and what that means for the request: rate limits, spend caps, the failed-auth
//! limit), [`metrics`] (what every step counts, feature `metrics`) and, with
//! `redis`, `RedisConnection` (one handle to a Redis server or Redis Cluster, taken by every
//! Redis-backed type).
//!
//! A layer that only works outside the [`AuthLayer`] ([`failure_limit`], [`activity`])
//! reports being put inside it: an error-level `tracing` event and, in debug builds, a
//! failed assertion on the first authenticated request it sees.
//!
//! # Configuration
//!
//! One grammar, everywhere:
//!
//! - **`new(..)` builds**, with what the value cannot do without (`AuthLayer::new(store)`,
//!   `FailureLimit::new(quota)`, `SpendCaps::new(budgets)`). Another way to build is a
//!   **named constructor without `with_`**: `backed_by(config, backend)` when the state
//!   lives in a shared backend ([`RateLimits::backed_by`](rate_limit::RateLimits::backed_by),
//!   [`SpendCaps::backed_by`](usage::SpendCaps::backed_by),
//!   [`FailureLimit::backed_by`](failure_limit::FailureLimit::backed_by)), `on_clock(..)`
//!   when the clock is part of the type
//!   ([`GovernorBackend::on_clock`](rate_limit::GovernorBackend::on_clock)),
//!   [`KeyHasher::peppered`](key::KeyHasher::peppered). The configuration comes first, the
//!   backend second.
//! - **Chained setters** take and return the value: plain names on layers and policies, as
//!   tower-http's (`AuthLayer::new(store).optional().lookup_timeout(…)`); `with_*` where
//!   the plain name is already an accessor (a store's `with_policy`/`policy()`,
//!   `with_hasher`, `with_namespace`, `MemoryUsage::with_clock`). A setter returns a
//!   `Result` only where it parses its input (cookie names, origins, table names).
//! - The cache, whose maps are built once, has a builder.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | extractors for [`Principal`] and [`ScopeSet`] (and their `Option`s), `IntoResponse` for [`AuthRejection`], the key management API ([`manage`]) |
//! | `tracing` | yes | `tracing` events for rejections and store failures (key id and reason, never the key), and a span per request |
//! | `metrics` | yes | counters and a histogram through the `metrics` facade ([`metrics`]): requests by outcome, lookups, cache, rate limits, spend, revocations |
//! | `redis` | no | `RedisConnection` (standalone or Redis Cluster, `rediss://` by rustls), [`RedisKeyStore`](store::RedisKeyStore), [`RedisRateLimiter`](rate_limit::RedisRateLimiter), `RedisUsage`, `RedisActivityLog` and [`RevocationListener`](store::RevocationListener): keys, quotas, spend and revocations shared by several instances (implies `cache`) |
//! | `postgres` | no | [`SqlKeyStore`](store::SqlKeyStore) on PostgreSQL (sqlx; TLS by rustls, `sslmode` in the URL) and [`PgRevocationListener`](store::PgRevocationListener) (LISTEN/NOTIFY; implies `cache`) |
//! | `sqlite` | no | [`SqlKeyStore`](store::SqlKeyStore) on SQLite (sqlx, bundled) |
//! | `cache` | no | [`CachedKeyStore`](store::CachedKeyStore): a bounded TTL cache (moka) with single-flight lookups in front of a slow store |
//!
//! # Security notes
//! - The plaintext of a key exists in [`PlaintextKey`](key::PlaintextKey) once, at issue;
//!   it is redacted in `Debug`/`Display` and zeroized on drop. Stores keep digests only.
//! - Malformed keys are refused before hashing; unknown, revoked, expired and malformed
//!   keys get the same 401 body and headers. Which one it was is in the response's
//!   extensions ([`AuthRejection`]) and in `tracing`, for the
//!   server only.
//! - A store that fails, times out or panics gives 503 with `Retry-After`: the request
//!   never reaches the inner service and the client is never told its key is bad.
//! - Key headers are marked sensitive before the inner service sees them, or stripped
//!   ([`AuthLayer::strip_credentials`]).
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod activity;
pub mod audit;
pub mod auth;
#[cfg(feature = "axum")]
pub mod axum;
mod backend_error;
pub mod body;
pub mod client_ip;
pub mod clock;
pub mod credential;
pub mod environment;
pub mod events;
pub mod failure_limit;
pub mod forg;
pub mod forward_auth;
pub mod key;
#[cfg(feature = "axum")]
pub mod manage;
pub mod metrics;
pub mod principal;
mod quota;
pub mod rate_limit;
#[cfg(feature = "redis")]
mod redis_connection;
#[cfg(feature = "redis")]
mod redis_script;
pub mod reject;
pub mod require;
pub mod scope;
pub mod service_builder;
pub mod session;
pub mod store;
mod support;
pub mod usage;
pub mod webhooks;

pub use auth::{AuthLayer, AuthService, API_KEY_EXPIRES};
pub use backend_error::{BackendError, OnBackendError};
pub use environment::Environment;
pub use forg::ForgScope;
pub use principal::Principal;
#[cfg(feature = "redis")]
pub use redis_connection::RedisConnection;
pub use reject::AuthRejection;
pub use require::{require, require_any};
pub use scope::{Scope, ScopeSet};
pub use service_builder::ServiceBuilderExt;
pub use store::{KeyRecord, KeyStore, ManageKeys, MemoryKeyStore, NewKey};

/// The README's example compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

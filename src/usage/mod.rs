//! Usage policy per request: [`SpendCapLayer`] charges requests to a budget per period and
//! answers 402 `spend_cap_exceeded` once it is spent; [`PlanLayer`] refuses the keys an
//! owner's plan no longer allows ("live keys require Team plan or higher") with 403
//! `plan_required`, not 401.
//!
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_api_key::key::{Environment, KeyFamily};
//! use tower_api_key::usage::{Budgets, SpendCaps};
//! use tower_api_key::{ForgScope, ManageKeys, MemoryKeyStore, NewKey, ServiceBuilderExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
//! let issued = store.issue(NewKey::new("org_1", "ci", &KeyFamily::FORG_TEST)).await.unwrap();
//! // Test keys: 2 units an hour; each request here costs 1.
//! let caps = SpendCaps::new(Budgets::new().default_cap(Environment::Test, 2));
//! let mut service = ServiceBuilder::new()
//!     .authenticate(store)
//!     .layer(caps.layer(1))
//!     .service(service_fn(|_: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! let request = || {
//!     Request::get("/v1/ai/complete")
//!         .header("authorization", format!("Bearer {}", issued.key().expose_secret()))
//!         .body(())
//!         .unwrap()
//! };
//! for left in ["1", "0"] {
//!     let response = service.ready().await.unwrap().call(request()).await.unwrap();
//!     assert!(response.headers()["spend-cap"].to_str().unwrap().contains(&format!("remaining={left}")));
//! }
//! let over = service.ready().await.unwrap().call(request()).await.unwrap();
//! assert_eq!(over.status(), StatusCode::PAYMENT_REQUIRED);
//! # }
//! ```
//!
//! Plans:
//!
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_api_key::key::{Environment, KeyFamily};
//! use tower_api_key::usage::{Plan, PlanLayer, PlanTable};
//! use tower_api_key::{ForgScope, ManageKeys, MemoryKeyStore, NewKey, ServiceBuilderExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
//! let issued = store
//!     .issue(NewKey::new("org_free", "prod", &KeyFamily::FORG_LIVE))
//!     .await
//!     .unwrap();
//! // Issued while on Team; the owner is on Free now.
//! let plans = PlanTable::new(Plan::Free).require(Environment::Live, Plan::Team);
//! let service = ServiceBuilder::new()
//!     .authenticate(store)
//!     .layer(PlanLayer::new(plans))
//!     .service(service_fn(|_: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! let request = Request::get("/")
//!     .header("authorization", format!("Bearer {}", issued.key().expose_secret()))
//!     .body(())
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! # }
//! ```

mod backend;
mod budget;
mod period;
mod plan;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod spend;

pub use backend::{Charge, Counter, MemoryUsage, Spent, UsageBackend, MAX_AMOUNT};
pub use budget::{Allowance, BudgetPer, BudgetPolicy, Budgets};

pub use period::{Period, Window};
pub use plan::{Plan, PlanAnswer, PlanLayer, PlanPolicy, PlanService, PlanTable};
#[cfg(feature = "redis")]
pub use redis::RedisUsage;
pub use spend::{Budget, ReportedCost, SpendCapLayer, SpendCapService, SpendCaps, SPEND_CAP};

/// Response futures of the usage layers.
pub mod future {
    pub use super::plan::ResponseFuture as PlanFuture;
    pub use super::spend::ResponseFuture as SpendCapFuture;
}

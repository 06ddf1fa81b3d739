//! Usage policy per request: [`PlanLayer`] refuses the keys an owner's plan no longer
//! allows ("live keys require Team plan or higher") with 403 `plan_required`, not 401.
//!
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_api_key::key::{Environment, KeyFamily};
//! use tower_api_key::store::{Plan, PlanTable};
//! use tower_api_key::usage::PlanLayer;
//! use tower_api_key::{ForgScope, ManageKeys, MemoryKeyStore, NewKey, ServiceBuilderExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryKeyStore::<ForgScope>::new());
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
//!
//! Spend caps (402) are still to come in this module.

mod plan;

pub use plan::{PlanLayer, PlanService, ResponseFuture};

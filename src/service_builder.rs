//! [`ServiceBuilderExt`]: the usual stack in one readable `ServiceBuilder` expression.
//!
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_api_key::client_ip::{ClientAddr, ClientIp};
//! use tower_api_key::failure_limit::FailureLimit;
//! use tower_api_key::rate_limit::RateLimits;
//! use tower_api_key::usage::{Plan, PlanTable};
//! use tower_api_key::usage::{Budgets, SpendCaps};
//! use tower_api_key::{forg, ForgScope, ManageKeys, MemoryKeyStore, NewKey, ServiceBuilderExt};
//! use tower_api_key::key::{Environment, KeyFamily};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
//! let issued = store
//!     .issue(NewKey::new("org_1", "ci", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
//!     .await
//!     .unwrap();
//! let limits = RateLimits::new();
//! let caps = SpendCaps::new(Budgets::new().default_cap(Environment::Live, 1_000));
//!
//! let service = ServiceBuilder::new()
//!     .client_ip(ClientIp::peer())              // resolved once, for every layer below
//!     .limit_failures(FailureLimit::default())  // 20 refused keys per minute per address
//!     .authenticate(store)                      // the Principal, or 401 / 503
//!     .rate_limited(&limits, forg::STANDARD)   // 100 per minute per key, RateLimit headers
//!     .require_scopes(ForgScope::ReadRules)     // 403 insufficient_scope
//!     .check_plans(PlanTable::new(Plan::Team))  // 403 plan_required
//!     .spend_capped(&caps, 1)                   // 402 once the month's 1,000 are spent
//!     .service(service_fn(|_: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new("rules".to_owned()))
//!     }));
//!
//! let mut request = Request::get("/v1/rules")
//!     .header("authorization", format!("Bearer {}", issued.key().expose_secret()))
//!     .body(())
//!     .unwrap();
//! request.extensions_mut().insert(ClientAddr("192.0.2.1".parse().unwrap()));
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()["ratelimit"], r#""standard";r=99;t=1"#);
//! assert!(response.headers()["spend-cap"].to_str().unwrap().starts_with("limit=1000, remaining=999"));
//! # }
//! ```
//!
//! Each method is `.layer(..)` with the crate's layer, in the order a request should meet
//! them: address, activity, failed-authentication limit, authentication, rate limit,
//! scopes, plan, spend cap.

use std::sync::Arc;

use tower::layer::util::Stack;
use tower::ServiceBuilder;

use crate::activity::{ActivityLayer, ActivityObserver};
use crate::client_ip::{ClientIp, ClientIpLayer};
use crate::failure_limit::{FailureLimit, FailureLimitLayer};
use crate::rate_limit::{RateClass, RateLimitBackend, RateLimitLayer, RateLimits};
use crate::require::{require, RequireScopesLayer};
use crate::scope::{Scope, ScopeSet};
use crate::store::KeyStore;
use crate::usage::PlanPolicy;
use crate::usage::{PlanLayer, SpendCapLayer, SpendCaps, UsageBackend};
use crate::AuthLayer;

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// The crate's layers as `ServiceBuilder` methods; see the [module docs](self).
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Resolves the client's address once ([`ClientIpLayer`]).
    fn client_ip(self, client_ip: ClientIp) -> ServiceBuilder<Stack<ClientIpLayer, L>>;

    /// Reports every request's outcome to `observer` ([`ActivityLayer`]).
    fn activity(self, observer: impl ActivityObserver) -> ServiceBuilder<Stack<ActivityLayer, L>>;

    /// Limits refused credentials per client address ([`FailureLimitLayer`]).
    fn limit_failures<B: RateLimitBackend>(
        self,
        limit: FailureLimit<B>,
    ) -> ServiceBuilder<Stack<FailureLimitLayer, L>>;

    /// Authenticates against `store` with the defaults ([`AuthLayer::new`]).
    fn authenticate<St: KeyStore>(self, store: Arc<St>) -> ServiceBuilder<Stack<AuthLayer<St>, L>>;

    /// Limits each principal as `class` ([`RateLimits::layer`]).
    fn rate_limited<B: RateLimitBackend>(
        self,
        limits: &RateLimits<B>,
        class: RateClass,
    ) -> ServiceBuilder<Stack<RateLimitLayer<B>, L>>;

    /// Requires every scope of `scopes` ([`require`]).
    fn require_scopes<S: Scope>(
        self,
        scopes: impl Into<ScopeSet<S>>,
    ) -> ServiceBuilder<Stack<RequireScopesLayer<S>, L>>;

    /// Refuses keys the owner's plan no longer allows ([`PlanLayer`], 403 `plan_required`).
    fn check_plans(self, plans: impl PlanPolicy) -> ServiceBuilder<Stack<PlanLayer, L>>;

    /// Charges `fixed_cost` per request to its budget ([`SpendCaps::layer`], 402 once
    /// spent). For costs the handler reports, add
    /// `.layer(caps.layer(fixed).reports_at_most(most))` instead.
    fn spend_capped<B: UsageBackend>(
        self,
        caps: &SpendCaps<B>,
        fixed_cost: u64,
    ) -> ServiceBuilder<Stack<SpendCapLayer<B>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn client_ip(self, client_ip: ClientIp) -> ServiceBuilder<Stack<ClientIpLayer, L>> {
        self.layer(ClientIpLayer::new(client_ip))
    }

    fn activity(self, observer: impl ActivityObserver) -> ServiceBuilder<Stack<ActivityLayer, L>> {
        self.layer(ActivityLayer::new(observer))
    }

    fn limit_failures<B: RateLimitBackend>(
        self,
        limit: FailureLimit<B>,
    ) -> ServiceBuilder<Stack<FailureLimitLayer, L>> {
        self.layer(FailureLimitLayer::new(limit))
    }

    fn authenticate<St: KeyStore>(self, store: Arc<St>) -> ServiceBuilder<Stack<AuthLayer<St>, L>> {
        self.layer(AuthLayer::new(store))
    }

    fn rate_limited<B: RateLimitBackend>(
        self,
        limits: &RateLimits<B>,
        class: RateClass,
    ) -> ServiceBuilder<Stack<RateLimitLayer<B>, L>> {
        self.layer(limits.layer(class))
    }

    fn require_scopes<S: Scope>(
        self,
        scopes: impl Into<ScopeSet<S>>,
    ) -> ServiceBuilder<Stack<RequireScopesLayer<S>, L>> {
        self.layer(require(scopes))
    }

    fn check_plans(self, plans: impl PlanPolicy) -> ServiceBuilder<Stack<PlanLayer, L>> {
        self.layer(PlanLayer::new(plans))
    }

    fn spend_capped<B: UsageBackend>(
        self,
        caps: &SpendCaps<B>,
        fixed_cost: u64,
    ) -> ServiceBuilder<Stack<SpendCapLayer<B>, L>> {
        self.layer(caps.layer(fixed_cost))
    }
}

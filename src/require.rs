//! Per-route scope requirements: [`require`] (all of) and [`require_any`] (any of).
//!
//! The layer reads the [`ScopeSet`] that [`AuthLayer`](crate::AuthLayer) put in the
//! request's extensions. A key lacking the scope gets 403 `insufficient_scope` with
//! `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`; a route where the
//! authentication layer did not run gets 500 (fail closed: a misconfigured route is never
//! open). The inner service is called only when the requirement is met.
//!
//! ```
//! use axum::{routing::{get, post}, Router};
//! use tower_api_key::require::{require, require_any};
//! use tower_api_key::forg::ForgScope;
//!
//! let routes: Router = Router::new()
//!     .route("/v1/rules", post(|| async { "created" }).route_layer(require(ForgScope::WriteRules)))
//!     .route(
//!         "/v1/rules",
//!         get(|| async { "rules" })
//!             .route_layer(require_any([ForgScope::ReadRules, ForgScope::WriteRules])),
//!     );
//! // ... .layer(AuthLayer::new(store)) around it.
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::principal::Principal;
use crate::reject::{respond, AuthRejection, DefaultRenderer, RenderRejection};
use crate::scope::{Scope, ScopeSet};
use crate::support::gate::{decided, Gate};

/// Requires every scope of `scopes` (the vocabulary's admin scope satisfies all).
/// An empty set requires only authentication.
pub fn require<S: Scope>(scopes: impl Into<ScopeSet<S>>) -> RequireScopesLayer<S> {
    RequireScopesLayer::new(scopes.into(), false)
}

/// Requires at least one scope of `scopes` (the vocabulary's admin scope satisfies all).
///
/// # Panics
/// When `scopes` is empty: no key could ever pass, which is a configuration mistake.
pub fn require_any<S: Scope>(scopes: impl Into<ScopeSet<S>>) -> RequireScopesLayer<S> {
    let scopes = scopes.into();
    assert!(!scopes.is_empty(), "require_any needs at least one scope");
    RequireScopesLayer::new(scopes, true)
}

/// Why a request has no `ScopeSet<S>`: no authentication layer ran, or it authenticated
/// against a store of another scope vocabulary. Either way a misconfiguration: 500.
pub(crate) fn missing_scopes(extensions: &http::Extensions) -> AuthRejection {
    if extensions.get::<Principal>().is_some() {
        AuthRejection::MissingLayer("an AuthLayer over a store of this route's scope vocabulary")
    } else {
        crate::principal::absent(extensions)
    }
}

/// A scope requirement as a layer; made by [`require`] or [`require_any`].
#[must_use]
pub struct RequireScopesLayer<S: Scope> {
    rule: Arc<Rule<S>>,
}

pub(crate) struct Rule<S: Scope> {
    required: ScopeSet<S>,
    any_of: bool,
    renderer: Arc<dyn RenderRejection>,
}

impl<S: Scope> RequireScopesLayer<S> {
    fn new(required: ScopeSet<S>, any_of: bool) -> Self {
        Self {
            rule: Arc::new(Rule {
                required,
                any_of,
                renderer: Arc::new(DefaultRenderer),
            }),
        }
    }

    /// How rejections are rendered (default: [`DefaultRenderer`]).
    pub fn renderer(self, renderer: impl RenderRejection) -> Self {
        Self {
            rule: Arc::new(Rule {
                required: self.rule.required,
                any_of: self.rule.any_of,
                renderer: Arc::new(renderer),
            }),
        }
    }

    /// The required scopes.
    pub fn required(&self) -> ScopeSet<S> {
        self.rule.required
    }
}

impl<S: Scope> Rule<S> {
    fn check(&self, extensions: &http::Extensions) -> Result<(), AuthRejection> {
        let granted = extensions
            .get::<ScopeSet<S>>()
            .ok_or_else(|| missing_scopes(extensions))?;
        let satisfied = if self.any_of {
            granted.contains_any(self.required)
        } else {
            granted.contains_all(self.required)
        };
        if satisfied {
            Ok(())
        } else {
            Err(AuthRejection::insufficient_scope(
                self.required.to_string(),
                granted.missing(self.required).to_string(),
                self.any_of,
            ))
        }
    }
}

impl<S: Scope> Clone for RequireScopesLayer<S> {
    fn clone(&self) -> Self {
        Self {
            rule: Arc::clone(&self.rule),
        }
    }
}

impl<S: Scope> fmt::Debug for RequireScopesLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopesLayer")
            .field("required", &self.rule.required)
            .field("any_of", &self.rule.any_of)
            .finish_non_exhaustive()
    }
}

impl<Svc, S: Scope> Layer<Svc> for RequireScopesLayer<S> {
    type Service = RequireScopesService<Svc, S>;

    fn layer(&self, inner: Svc) -> Self::Service {
        RequireScopesService {
            inner,
            rule: Arc::clone(&self.rule),
        }
    }
}

/// Checks the scopes the authentication layer granted.
impl<S: Scope, B> Gate<Request<B>> for Rule<S> {
    type Verdict = ();
    type After = ();

    fn decide(self: &Arc<Self>, (): (), request: &mut Request<B>) -> Result<(), Response<Bytes>> {
        self.check(request.extensions())
            .map_err(|rejection| respond(&*self.renderer, rejection, request.headers()))
    }

    fn finish<R>((): (), _: &mut Response<R>) {}
}

crate::support::gate::response_future! {
    /// Response future of [`RequireScopesService`]: the inner service's future, or a
    /// rejection that is ready at once.
    ResponseFuture<S, Sc, ReqBody>, Request<ReqBody>, Rule<Sc>
    where Sc: Scope,
}

/// The service [`RequireScopesLayer`] wraps around the inner service.
pub struct RequireScopesService<Svc, S: Scope> {
    inner: Svc,
    rule: Arc<Rule<S>>,
}

impl<Svc: Clone, S: Scope> Clone for RequireScopesService<Svc, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            rule: Arc::clone(&self.rule),
        }
    }
}

impl<Svc: fmt::Debug, S: Scope> fmt::Debug for RequireScopesService<Svc, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopesService")
            .field("inner", &self.inner)
            .field("required", &self.rule.required)
            .finish_non_exhaustive()
    }
}

impl<Svc, S: Scope> RequireScopesService<Svc, S> {
    crate::support::gate::inner_service_accessors!(Svc);
}

impl<Svc, S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScopesService<Svc, S>
where
    Svc: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S: Scope,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Svc::Error;
    type Future = ResponseFuture<Svc, S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ResponseFuture::new(decided(&self.rule, &mut self.inner, request, ()))
    }
}

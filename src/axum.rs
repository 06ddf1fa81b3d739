//! axum extractors (feature `axum`): [`Principal`], [`ScopeSet`] and their `Option`s, and
//! [`IntoResponse`] for [`AuthRejection`].
//!
//! Without the authentication layer on the route, `Principal` and `ScopeSet` reject with
//! 500 (`internal_error`, naming the missing layer); `Option<Principal>` gives `None`,
//! which suits routes that are public but greet known callers. `ScopeSet<S>` has no
//! default vocabulary: a handler names the one its store uses, and a handler that names
//! another one gets 500 (never another vocabulary's scopes).
//!
//! ```
//! use axum::{routing::get, Json, Router};
//! use tower_api_key::{forg::ForgScope, scope::ScopeSet, Principal};
//!
//! async fn whoami(principal: Principal, scopes: ScopeSet<ForgScope>) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({
//!         "key_id": principal.key_id().as_str(),
//!         "environment": principal.environment(),
//!         "scopes": scopes,
//!     }))
//! }
//!
//! async fn hello(principal: Option<Principal>) -> String {
//!     match principal {
//!         Some(principal) => format!("hello {}", principal.owner()),
//!         None => "hello stranger".to_owned(),
//!     }
//! }
//!
//! let app: Router = Router::new().route("/whoami", get(whoami)).route("/hello", get(hello));
//! ```

use std::convert::Infallible;

use axum_core::body::Body;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::principal::Principal;
use crate::reject::{AuthRejection, JsonRenderer, RenderRejection};
use crate::scope::{Scope, ScopeSet};

impl<State: Send + Sync> FromRequestParts<State> for Principal {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &State) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| crate::principal::absent(&parts.extensions))
    }
}

impl<State: Send + Sync> OptionalFromRequestParts<State> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &State,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

impl<S: Scope, State: Send + Sync> FromRequestParts<State> for ScopeSet<S> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &State) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Self>() {
            Some(scopes) => Ok(*scopes),
            None => Err(crate::require::missing_scopes(&parts.extensions)),
        }
    }
}

impl<S: Scope, State: Send + Sync> OptionalFromRequestParts<State> for ScopeSet<S> {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &State,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().copied())
    }
}

impl IntoResponse for AuthRejection {
    /// The default renderer's JSON form, with the rejection in the response's extensions.
    fn into_response(self) -> Response {
        self.trace();
        let mut response = JsonRenderer
            .render(&self, &http::HeaderMap::new())
            .map(Body::from);
        response.extensions_mut().insert(self);
        response
    }
}

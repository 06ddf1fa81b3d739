//! axum extractors (feature `axum`): [`Identity`], [`ScopeSet`] and their `Option`s, and
//! [`IntoResponse`] for [`AuthRejection`].
//!
//! Without the authentication layer on the route, `Identity` and `ScopeSet` reject with
//! 500 (`internal_error`, naming the missing layer); `Option<Identity>` gives `None`,
//! which suits routes that are public but greet known callers.
//!
//! ```
//! use axum::{routing::get, Json, Router};
//! use tower_api_key::{scope::ScopeSet, Identity};
//!
//! async fn whoami(identity: Identity, scopes: ScopeSet) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({
//!         "key_id": identity.key_id().as_str(),
//!         "environment": identity.environment(),
//!         "scopes": scopes,
//!     }))
//! }
//!
//! async fn hello(identity: Option<Identity>) -> String {
//!     match identity {
//!         Some(identity) => format!("hello {}", identity.owner()),
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

use crate::reject::{AuthRejection, DefaultRenderer};
use crate::scope::{Scope, ScopeSet};
use crate::Identity;

const MISSING: AuthRejection = AuthRejection::MissingLayer("AuthLayer");

impl<S: Scope, State: Send + Sync> FromRequestParts<State> for Identity<S> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &State) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or(MISSING)
    }
}

impl<S: Scope, State: Send + Sync> OptionalFromRequestParts<State> for Identity<S> {
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
        parts.extensions.get::<Self>().copied().ok_or(MISSING)
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
        let mut response = DefaultRenderer::json(&self).map(Body::from);
        response.extensions_mut().insert(self);
        response
    }
}

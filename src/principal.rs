//! The authenticated caller: [`Principal`], one non-generic value in request extensions.
//!
//! Everything downstream of authentication (rate limits, activity, usage policy) reads the
//! principal, never the credential, and needs no scope type parameter. The granted scopes
//! are typed: [`Principal::scopes`] (and the `ScopeSet<S>` the layer puts beside it) answer
//! only for the scope vocabulary of the store that authenticated the request, so a route
//! written for another vocabulary fails closed instead of reading the wrong bits.
//!
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_api_key::forg::ForgScope;
//! use tower_api_key::key::KeyFamily;
//! use tower_api_key::principal::{CredentialKind, Principal};
//! use tower_api_key::store::{ManageKeys, MemoryKeyStore, NewKey};
//! use tower_api_key::AuthLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
//! let issued = store
//!     .issue(NewKey::new("org_1", "demo", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
//!     .await
//!     .unwrap();
//!
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::new(store))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let who = req.extensions().get::<Principal>().unwrap();
//!         assert_eq!(who.kind(), CredentialKind::ApiKey);
//!         assert!(who.scopes::<ForgScope>().unwrap().contains(ForgScope::ReadRules));
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("hello {}", who.owner())))
//!     }));
//! let request = Request::get("/")
//!     .header("authorization", format!("Bearer {}", issued.key().expose_secret()))
//!     .body(String::new())
//!     .unwrap();
//! assert_eq!(service.oneshot(request).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::key::Environment;
use crate::quota::{ClassName, Quota};
use crate::scope::{Scope, ScopeSet};
use crate::store::{KeyId, KeyRecord, Metadata};

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// An API key from a key header.
    ApiKey,
    /// A browser session from the session cookie ([`Sessions`](crate::session::Sessions)).
    Session,
}

impl CredentialKind {
    /// A stable snake_case name, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Session => "session",
        }
    }
}

/// Left in extensions by an optional [`AuthLayer`](crate::AuthLayer) on a request that
/// carried no credential, so layers and extractors further in answer 401, not 500.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Anonymous;

/// Why `extensions` hold no principal: an anonymous request where authentication was
/// optional (401), or no authentication layer at all (500, a misconfiguration).
pub(crate) fn absent(extensions: &http::Extensions) -> crate::reject::AuthRejection {
    use crate::reject::{AuthRejection, InvalidKeyReason};
    if extensions.get::<Anonymous>().is_some() {
        AuthRejection::invalid_key(InvalidKeyReason::Missing, None)
    } else {
        AuthRejection::MissingLayer("AuthLayer")
    }
}

/// The part of a stored record every layer may read, whatever its scope vocabulary.
trait ErasedRecord: Send + Sync + 'static {
    fn id(&self) -> &KeyId;
    fn lineage(&self) -> &KeyId;
    fn owner(&self) -> &str;
    fn name(&self) -> &str;
    fn prefix(&self) -> &str;
    fn environment(&self) -> Environment;
    fn rate_limits(&self) -> &BTreeMap<ClassName, Quota>;
    fn metadata(&self) -> &Metadata;
    fn fmt_scopes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn scope_names(&self) -> Vec<&'static str>;
    fn as_any(&self) -> &dyn Any;
}

impl<S: Scope> ErasedRecord for KeyRecord<S> {
    fn id(&self) -> &KeyId {
        self.id()
    }
    fn lineage(&self) -> &KeyId {
        self.lineage()
    }
    fn owner(&self) -> &str {
        self.owner()
    }
    fn name(&self) -> &str {
        self.name()
    }
    fn prefix(&self) -> &str {
        self.prefix()
    }
    fn environment(&self) -> Environment {
        self.environment()
    }
    fn rate_limits(&self) -> &BTreeMap<ClassName, Quota> {
        self.rate_limits()
    }
    fn metadata(&self) -> &Metadata {
        self.metadata()
    }
    fn fmt_scopes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.scopes(), f)
    }
    fn scope_names(&self) -> Vec<&'static str> {
        self.scopes().iter().map(Scope::as_str).collect()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The authenticated caller, put in request extensions by [`AuthLayer`](crate::AuthLayer);
/// see the [module docs](self).
///
/// Cheap to clone (one `Arc`: the stored record, shared, never copied). With the `axum`
/// feature it is an extractor, and so is `Option<Principal>`.
#[derive(Clone)]
pub struct Principal {
    record: Arc<dyn ErasedRecord>,
    kind: CredentialKind,
    /// Whether the record overrides any rate-limit quota: read once where the record's type
    /// is known, so the rate-limit layer's common case makes no call through the `dyn`.
    overrides_quotas: bool,
}

impl Principal {
    /// The principal of a credential of `kind` whose record is `record`.
    pub(crate) fn new<S: Scope>(record: Arc<KeyRecord<S>>, kind: CredentialKind) -> Self {
        Self {
            overrides_quotas: !record.rate_limits().is_empty(),
            record,
            kind,
        }
    }

    /// This principal as a browser session of its owner would be: what the owner's
    /// sessions are charged to, when no session is at hand (the spend report of a key).
    #[cfg(feature = "axum")]
    pub(crate) fn as_session(&self) -> Self {
        Self {
            kind: CredentialKind::Session,
            ..self.clone()
        }
    }

    /// The id of the credential the request came with (the key id): use it for logs,
    /// metrics and rate limiting.
    pub fn key_id(&self) -> &KeyId {
        self.record.id()
    }

    /// The id of the first key of this key's rotation chain
    /// ([`KeyRecord::lineage`](crate::store::KeyRecord::lineage)): what per-key budgets,
    /// credits and rate limits count under, so a rotated key continues its predecessor's.
    /// A session's own id (policies count sessions under their owner, not this).
    pub fn lineage(&self) -> &KeyId {
        self.record.lineage()
    }

    /// Who the credential belongs to (a user, an organisation, an agent).
    pub fn owner(&self) -> &str {
        self.record.owner()
    }

    /// The credential's human-readable name.
    pub fn name(&self) -> &str {
        self.record.name()
    }

    /// The key family's prefix, e.g. `forg_live_`.
    pub fn prefix(&self) -> &str {
        self.record.prefix()
    }

    /// The environment the credential belongs to.
    pub fn environment(&self) -> Environment {
        self.record.environment()
    }

    /// The credential's metadata (see [`Metadata`]).
    pub fn metadata(&self) -> &Metadata {
        self.record.metadata()
    }

    /// How the caller authenticated.
    pub fn kind(&self) -> CredentialKind {
        self.kind
    }

    /// This credential's own quota for rate-limit class `class`, if it overrides the
    /// class's default.
    pub fn quota_override(&self, class: &ClassName) -> Option<Quota> {
        if !self.overrides_quotas {
            return None;
        }
        self.record.rate_limits().get(class).copied()
    }

    /// The granted scopes, when `S` is the vocabulary of the store that authenticated the
    /// request; `None` for any other vocabulary.
    pub fn scopes<S: Scope>(&self) -> Option<ScopeSet<S>> {
        self.record::<S>().map(|record| record.scopes())
    }

    /// The names of the granted scopes, whatever the vocabulary: for responses and logs
    /// written without knowing it.
    pub fn scope_names(&self) -> Vec<&'static str> {
        self.record.scope_names()
    }

    /// The whole stored record, when `S` is the store's vocabulary.
    pub fn record<S: Scope>(&self) -> Option<&KeyRecord<S>> {
        self.record.as_any().downcast_ref::<KeyRecord<S>>()
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Scopes<'a>(&'a dyn ErasedRecord);
        impl fmt::Debug for Scopes<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt_scopes(f)
            }
        }
        f.debug_struct("Principal")
            .field("key_id", self.key_id())
            .field("owner", &self.owner())
            .field("kind", &self.kind)
            .field("environment", &self.environment())
            .field("scopes", &Scopes(&*self.record))
            .finish()
    }
}

use std::fmt;
use std::sync::Arc;

use crate::key::Environment;
use crate::scope::{ForgScope, Scope, ScopeSet};
use crate::store::{KeyId, KeyRecord};

/// The authenticated caller, put in request extensions by [`AuthLayer`](crate::AuthLayer)
/// (beside its [`ScopeSet`]).
///
/// Cheap to clone (one `Arc`). With the `axum` feature it is an extractor, and so is
/// `Option<Identity>`.
pub struct Identity<S: Scope = ForgScope> {
    record: Arc<KeyRecord<S>>,
}

impl<S: Scope> Identity<S> {
    pub(crate) fn new(record: Arc<KeyRecord<S>>) -> Self {
        Self { record }
    }

    /// The key's public id: use it for logs, metrics and rate limiting.
    pub fn key_id(&self) -> &KeyId {
        &self.record.id
    }

    /// The key's owner.
    pub fn owner(&self) -> &str {
        &self.record.owner
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The key's environment.
    pub fn environment(&self) -> Environment {
        self.record.environment
    }

    /// The key family's prefix, e.g. `forg_live_`.
    pub fn prefix(&self) -> &str {
        &self.record.prefix
    }

    /// The granted scopes.
    pub fn scopes(&self) -> ScopeSet<S> {
        self.record.scopes
    }

    /// The whole stored record.
    pub fn record(&self) -> &Arc<KeyRecord<S>> {
        &self.record
    }
}

impl<S: Scope> Clone for Identity<S> {
    fn clone(&self) -> Self {
        Self {
            record: Arc::clone(&self.record),
        }
    }
}

impl<S: Scope> fmt::Debug for Identity<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("key_id", self.key_id())
            .field("owner", &self.owner())
            .field("environment", &self.environment())
            .field("scopes", &self.scopes())
            .finish()
    }
}

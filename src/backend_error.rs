//! [`BackendError`] and [`OnBackendError`]: how the layers that keep shared state (rate
//! limits, spend caps, the failed-authentication limit) report a backend that cannot
//! answer, and what that means for the request.
//!
//! ```
//! use tower_api_key::rate_limit::RateLimits;
//! use tower_api_key::{BackendError, OnBackendError};
//!
//! let limits = RateLimits::new().on_backend_error(OnBackendError::Deny);
//! let error = BackendError::new("connection refused");
//! assert_eq!(error.to_string(), "backend failed: connection refused");
//! # let _ = limits;
//! ```

use std::error::Error as StdError;
use std::fmt;

/// What to do when a backend cannot decide (its server is down or slow): set on
/// [`RateLimits`](crate::rate_limit::RateLimits), [`SpendCaps`](crate::usage::SpendCaps)
/// and [`FailureLimit`](crate::failure_limit::FailureLimit), each with its own default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnBackendError {
    /// Let the request through and emit a warning event: an outage of the limiter does not
    /// become an outage of the API. The default, as in mainstream gateways (Envoy's
    /// `failure_mode_deny: false`, Kong's `fault_tolerant: true`).
    #[default]
    Allow,
    /// Answer 503 `auth_unavailable` with `Retry-After`.
    Deny,
}

/// A shared backend could not answer (e.g. its server is down): what the rate limits',
/// spend caps' and failed-authentication limit's backends fail with.
#[derive(Debug)]
pub struct BackendError(Box<dyn StdError + Send + Sync>);

impl BackendError {
    /// Wraps the backend's own error.
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self(source.into())
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backend failed: {}", self.0)
    }
}

impl StdError for BackendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

//! [`RateLimits`]: one backend and how responses look, shared by every class's layer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::backend::RateLimitBackend;
use super::governor::GovernorBackend;
use super::repeated::RepeatedRefusals;
use crate::backend_error::OnBackendError;
use crate::events::KeyEvents;
use crate::reject::{DefaultRenderer, RenderRejection};

/// Shared rate-limit configuration: one backend, the client-address rules, and how
/// responses look. Make one per application and a [`layer`](Self::layer) per class.
#[derive(Clone)]
pub struct RateLimits<B: RateLimitBackend = GovernorBackend> {
    pub(super) backend: B,
    pub(super) headers: bool,
    pub(super) backend_timeout: Duration,
    pub(super) on_backend_error: OnBackendError,
    pub(super) renderer: Arc<dyn RenderRejection>,
    pub(super) repeated: Option<RepeatedRefusals>,
}

impl RateLimits<GovernorBackend> {
    /// In-process limits on governor's default clock.
    pub fn new() -> Self {
        Self::backed_by(GovernorBackend::new())
    }
}

impl Default for RateLimits<GovernorBackend> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: RateLimitBackend> RateLimits<B> {
    /// Limits kept by `backend`.
    pub fn backed_by(backend: B) -> Self {
        Self {
            backend,
            headers: true,
            backend_timeout: Duration::from_secs(1),
            on_backend_error: OnBackendError::default(),
            renderer: Arc::new(DefaultRenderer),
            repeated: None,
        }
    }

    /// Tells `events` (`rate_limit.exceeded`) when a key is refused by a class for the
    /// `after`-th time (counted on this instance), once per key and class within the
    /// class's window, as the events' gate decides (shared by instances when it is a
    /// Redis one). Sessions and addresses are not announced (they have no key's owner to
    /// tell in particular).
    #[must_use]
    pub fn events(mut self, events: KeyEvents, after: u32) -> Self {
        self.repeated = Some(RepeatedRefusals::new(events, after));
        self
    }

    /// Whether responses carry `RateLimit-Policy` and `RateLimit` (default: yes).
    #[must_use]
    pub fn headers(mut self, enabled: bool) -> Self {
        self.headers = enabled;
        self
    }

    /// How long an asynchronous backend may take before it counts as failed (default 1 s).
    #[must_use]
    pub fn backend_timeout(mut self, timeout: Duration) -> Self {
        self.backend_timeout = timeout;
        self
    }

    /// What a backend failure means for the request (default: allow, with a warning).
    #[must_use]
    pub fn on_backend_error(mut self, policy: OnBackendError) -> Self {
        self.on_backend_error = policy;
        self
    }

    /// How 429s are rendered (default: [`DefaultRenderer`]).
    #[must_use]
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.renderer = Arc::new(renderer);
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Evicts idle state now (it also runs by itself; see the backend).
    pub fn housekeeping(&self) {
        self.backend.housekeeping();
    }

    /// How many keys and addresses state is held for.
    pub fn tracked(&self) -> usize {
        self.backend.tracked()
    }
}

impl<B: RateLimitBackend + fmt::Debug> fmt::Debug for RateLimits<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimits")
            .field("backend", &self.backend)
            .field("headers", &self.headers)
            .field("backend_timeout", &self.backend_timeout)
            .field("on_backend_error", &self.on_backend_error)
            .finish_non_exhaustive()
    }
}

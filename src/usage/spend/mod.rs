//! Spend caps: [`SpendCaps`] holds the budgets, the backend and how responses look;
//! [`SpendCaps::layer`] makes a [`SpendCapLayer`] per route class with its fixed cost.

mod charge;
mod crossing;
mod future;
mod layer;
#[cfg(feature = "axum")]
pub(crate) mod report;
mod service;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderValue;

pub use future::ResponseFuture;
pub use layer::SpendCapLayer;
pub use service::SpendCapService;

use super::backend::{MemoryUsage, UsageBackend};
use super::budget::{BudgetPer, BudgetPolicy};
use super::period::Period;
use crate::backend_error::OnBackendError;
use crate::events::KeyEvents;
use crate::key::Environment;
use crate::reject::{DefaultRenderer, RenderRejection};
use crate::support::header_text::HeaderText;

/// The response header that shows the client its budget: a structured-field dictionary
/// `limit=<cap>, remaining=<left>, reset=<seconds until the period ends>`, in the
/// application's cost units, e.g. `spend-cap: limit=1000, remaining=250, reset=3600`
/// (credits, which never reset, have no `reset`).
pub const SPEND_CAP: http::HeaderName = http::HeaderName::from_static("spend-cap");

/// What a handler reports it spent, as a response extension, on a route whose layer
/// declares the most one request may cost ([`SpendCapLayer::reports_at_most`]): admission
/// reserved that most, and the report settles it (what was not spent is given back). Use it
/// where the cost is known only afterwards (AI tokens). A report above the declared most
/// is charged as the most.
///
/// ```
/// use http::Response;
/// use tower_api_key::usage::ReportedCost;
///
/// let mut response = Response::new("answer");
/// response.extensions_mut().insert(ReportedCost(42));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportedCost(pub u64);

/// The budget a request was admitted under, as a request extension (after its fixed cost
/// was charged), for handlers that want to show or plan for it; only when the application
/// asks for it ([`SpendCaps::budget_in_request`]), since inserting it costs an allocation
/// per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    cap: u64,
    spent: u64,
    period: Period,
    resets_at: Option<SystemTime>,
}

impl Budget {
    /// The cap of the period.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Spent so far in the period, this request's fixed cost included.
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// What is left in the period.
    pub fn remaining(&self) -> u64 {
        self.cap.saturating_sub(self.spent)
    }

    /// The period.
    pub fn period(&self) -> Period {
        self.period
    }

    /// When the period ends and the budget is whole again (`None`: never, credits).
    pub fn resets_at(&self) -> Option<SystemTime> {
        self.resets_at
    }
}

/// Spend-cap configuration shared by every route class: the budgets, whose counter a
/// request spends from, the period per environment, the backend and how responses look.
/// Make one per application and a [`layer`](Self::layer) per route class; put the layers
/// inside the authentication layer.
///
/// Over the cap, the answer is 402 `spend_cap_exceeded` with `Retry-After` up to the
/// period's end and `resets_at` in the body (gRPC: `RESOURCE_EXHAUSTED`); the inner
/// service is not called. Test and live keys never share a counter.
#[derive(Clone)]
#[must_use]
pub struct SpendCaps<B: UsageBackend = MemoryUsage> {
    backend: B,
    budgets: Arc<dyn BudgetPolicy>,
    per: BudgetPer,
    periods: [Period; 2],
    headers: bool,
    budget_in_request: bool,
    backend_timeout: Duration,
    on_backend_error: OnBackendError,
    renderer: Arc<dyn RenderRejection>,
    events: Option<KeyEvents>,
    thresholds: Arc<[u8]>,
}

impl SpendCaps<MemoryUsage> {
    /// Caps from `budgets`, counted in this process on the system clock.
    pub fn new(budgets: impl BudgetPolicy) -> Self {
        Self::backed_by(budgets, MemoryUsage::new())
    }
}

impl<B: UsageBackend> SpendCaps<B> {
    /// Caps from `budgets`, counted by `backend`.
    pub fn backed_by(budgets: impl BudgetPolicy, backend: B) -> Self {
        Self {
            backend,
            budgets: Arc::new(budgets),
            per: BudgetPer::Owner,
            periods: [Period::Monthly, Period::Hourly],
            headers: true,
            budget_in_request: false,
            backend_timeout: Duration::from_secs(1),
            on_backend_error: OnBackendError::Deny,
            renderer: Arc::new(DefaultRenderer),
            events: None,
            thresholds: Arc::new([80, 100]),
        }
    }

    /// Whose counter a request spends from (default: its owner's).
    pub fn per(mut self, per: BudgetPer) -> Self {
        self.per = per;
        self
    }

    /// The period of `environment`'s budgets (default: monthly for live keys, hourly for
    /// test keys, as FORG documents).
    pub fn period(mut self, environment: Environment, period: Period) -> Self {
        self.periods[environment.slot()] = period;
        self
    }

    /// Whether handlers find the [`Budget`] a request was admitted under in its extensions
    /// (default: no; it costs an allocation per request).
    pub fn budget_in_request(mut self, enabled: bool) -> Self {
        self.budget_in_request = enabled;
        self
    }

    /// Whether responses carry [`SPEND_CAP`] (default: yes).
    pub fn headers(mut self, enabled: bool) -> Self {
        self.headers = enabled;
        self
    }

    /// How long the backend may take before it counts as failed (default 1 s).
    pub fn backend_timeout(mut self, timeout: Duration) -> Self {
        self.backend_timeout = timeout;
        self
    }

    /// What a backend failure means (default: [`OnBackendError::Deny`], 503: unlike a rate
    /// limit, an unchecked budget costs money; choose `Allow` to keep serving, with a
    /// warning event, while the backend is down).
    pub fn on_backend_error(mut self, policy: OnBackendError) -> Self {
        self.on_backend_error = policy;
        self
    }

    /// How 402s and 503s are rendered (default: [`DefaultRenderer`]).
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.renderer = Arc::new(renderer);
        self
    }

    /// Tells `events` (`budget.threshold`) when a charge takes a budget past 80 % and 100 %
    /// of its cap ([`thresholds`](Self::thresholds) to choose others): once per budget,
    /// threshold and period, decided by the events' gate, so instances sharing a gate (a
    /// Redis one) announce a crossing once between them. Measured on what requests
    /// reserve; announced off the request path.
    pub fn events(mut self, events: KeyEvents) -> Self {
        self.events = Some(events);
        self
    }

    /// The percentages of a cap whose crossing is announced (default 80 and 100; values
    /// above 100 are kept: a budget never passes them).
    pub fn thresholds(mut self, percents: impl IntoIterator<Item = u8>) -> Self {
        self.thresholds = percents.into_iter().collect();
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// A layer that charges `fixed_cost` per request before the handler runs (refusing the
    /// request if it would overspend). With a fixed cost of 0, requests pass while anything
    /// is left. For costs the handler reports ([`ReportedCost`]), declare the most one
    /// request may cost with [`SpendCapLayer::reports_at_most`].
    pub fn layer(&self, fixed_cost: u64) -> SpendCapLayer<B> {
        SpendCapLayer::new(self.clone(), fixed_cost)
    }

    pub(crate) fn period_of(&self, environment: Environment) -> Period {
        self.periods[environment.slot()]
    }
}

impl<B: UsageBackend + fmt::Debug> fmt::Debug for SpendCaps<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpendCaps")
            .field("backend", &self.backend)
            .field("per", &self.per)
            .field("periods", &self.periods)
            .field("headers", &self.headers)
            .field("budget_in_request", &self.budget_in_request)
            .field("on_backend_error", &self.on_backend_error)
            .finish_non_exhaustive()
    }
}

/// `limit=…, remaining=…, reset=…` (no `reset` for credits, which never reset), written
/// on the stack.
fn header_value(cap: u64, spent: u64, reset_after: Option<Duration>) -> HeaderValue {
    let text = HeaderText::new()
        .text("limit=")
        .number(cap)
        .text(", remaining=")
        .number(cap.saturating_sub(spent));
    let text = match reset_after {
        Some(after) => text
            .text(", reset=")
            .number(crate::reject::RetryAfter::from_duration(after).as_secs()),
        None => text,
    };
    text.value()
        .expect("digits, commas and spaces in 78 bytes are a valid header value")
}

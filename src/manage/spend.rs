//! [`SpendApi`]: `GET /billing/spend`, the caller's owner's budgets as they stand ("Monitor
//! your usage via `GET /api/billing/spend` to detect unexpected consumption patterns").

use std::fmt;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::OpenApi;

use super::authorisation::{authorize, sees};
use super::error::ApiError;
use super::views::{BudgetView, Spend, SpendPage};
use crate::key::Environment;
use crate::principal::{CredentialKind, Principal};
use crate::store::{KeyStatus, ManageKeys};
use crate::usage::spend::report::SpendReport;
use crate::usage::{SpendCaps, UsageBackend};

/// The spend report of the management API over `St`'s keys and a [`SpendCaps`]'s budgets,
/// authorized like [`KeysApi`](super::KeysApi): sessions, and keys with a configured
/// scope, each seeing its own owner only (a key caller: only its environment's keys).
///
/// `GET /billing/spend` answers `{"data": {"owner", "budgets": [...]}}`: per environment
/// (budgets per owner) or per active key (per key), the period, `spent`, `cap`,
/// `remaining`, `period_start` and `period_end` (RFC 3339; absent for credits, which never
/// reset). Nothing is charged by reading. A failing usage backend is 503.
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use tower_api_key::key::Environment;
/// use tower_api_key::manage::{KeysApi, SpendApi};
/// use tower_api_key::usage::{Budgets, SpendCaps};
/// use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore};
///
/// let keys = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
/// let caps = SpendCaps::new(Budgets::new().default_cap(Environment::Live, 10_000));
/// let app: Router = Router::new()
///     .nest("/v1", KeysApi::new(Arc::clone(&keys)).router())
///     .nest("/api", SpendApi::new(Arc::clone(&keys), &caps).router())
///     .layer(AuthLayer::new(keys));
/// ```
pub struct SpendApi<St: ManageKeys> {
    store: Arc<St>,
    caps: Arc<dyn SpendReport>,
    keys_with: Option<St::Scope>,
}

impl<St: ManageKeys> Clone for SpendApi<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            caps: Arc::clone(&self.caps),
            keys_with: self.keys_with,
        }
    }
}

impl<St: ManageKeys> fmt::Debug for SpendApi<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpendApi")
            .field("keys_with", &self.keys_with)
            .finish_non_exhaustive()
    }
}

impl<St: ManageKeys> SpendApi<St> {
    /// The budgets of `caps` for the keys of `store` (sessions only, until
    /// [`allow_keys_with`](Self::allow_keys_with)).
    pub fn new<B: UsageBackend>(store: Arc<St>, caps: &SpendCaps<B>) -> Self {
        Self {
            store,
            caps: Arc::new(caps.clone()),
            keys_with: None,
        }
    }

    /// Lets API keys that carry `scope` read their owner's spend too.
    #[must_use]
    pub fn allow_keys_with(mut self, scope: St::Scope) -> Self {
        self.keys_with = Some(scope);
        self
    }

    /// The route, to mount under any prefix, behind the [`AuthLayer`](crate::AuthLayer).
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        Router::new()
            .route(PATH, get(spend::<St>))
            .with_state(Arc::new(self))
    }

    /// The OpenAPI 3 document of [`router`](Self::router) (merged into
    /// `docs/openapi.json` beside [`KeysApi::openapi`](super::KeysApi::openapi)'s).
    pub fn openapi(&self) -> OpenApi {
        super::openapi::spend_document(PATH)
    }
}

const PATH: &str = "/billing/spend";

async fn spend<St: ManageKeys>(
    State(api): State<Arc<SpendApi<St>>>,
    caller: Principal,
) -> Result<Response, ApiError> {
    authorize(&caller, api.keys_with)?;
    let now = api.store.policy().now();
    let mut records = api.store.list(caller.owner()).await?;
    records.reverse(); // newest first, as the key list
                       // The budget the owner's browser sessions spend from (they act in live), which per key
                       // is no key's: shown to a session, and to a key that sees live.
    let session = match (caller.kind(), caller.environment()) {
        (CredentialKind::Session, _) => Some(caller.clone()),
        (CredentialKind::ApiKey, Environment::Live) => Some(caller.as_session()),
        (CredentialKind::ApiKey, Environment::Test) => None,
    };
    let principals = session
        .into_iter()
        .chain(
            records
                .into_iter()
                .filter(|record| {
                    sees(&caller, record) && record.status_at(now) == KeyStatus::Active
                })
                .map(|record| Principal::new(record, CredentialKind::ApiKey)),
        )
        .collect();
    let statuses = api.caps.report(principals).await.map_err(|error| {
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "tower_api_key", error = %error, "usage backend failed");
        let _ = error;
        ApiError::unavailable("Spend counters are temporarily unavailable")
    })?;
    let data = Spend {
        owner: caller.owner().to_owned(),
        budgets: statuses.iter().map(BudgetView::of).collect(),
    };
    Ok(Json(SpendPage { data }).into_response())
}

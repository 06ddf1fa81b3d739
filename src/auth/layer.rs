use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::service::AuthService;
use super::verify::{AuthMetrics, Config};
use crate::credential::CredentialSources;
use crate::key::Environment;
use crate::reject::{DefaultRenderer, RenderRejection, RetryAfter};
use crate::session::Sessions;
use crate::store::{KeyStore, ManageKeys};

/// Authenticates every request by API key; see the [module docs](super).
#[must_use]
pub struct AuthLayer<St: KeyStore> {
    config: Arc<Config<St>>,
}

impl<St: KeyStore> AuthLayer<St> {
    /// Authenticates against `store` with the defaults: both headers, every environment,
    /// 2 s lookup timeout, `Retry-After: 5` on 503, headers marked sensitive but kept,
    /// [`DefaultRenderer`]. Keys are parsed against the store's
    /// [`KeyPolicy`](crate::store::KeyPolicy) families, and expiry is read on its clock, so
    /// the layer accepts exactly what the store issues.
    pub fn new(store: Arc<St>) -> Self {
        Self {
            config: Arc::new(Config {
                store,
                sources: CredentialSources::default(),
                only_environment: None,
                lookup_timeout: Duration::from_secs(2),
                retry_after: RetryAfter::from_duration(Duration::from_secs(5)),
                strip_credentials: false,
                renderer: Arc::new(DefaultRenderer),
                sessions: None,
                optional: false,
                expiry_notice: None,
                metrics: AuthMetrics::default(),
            }),
        }
    }

    fn config(&mut self) -> &mut Config<St> {
        Arc::make_mut(&mut self.config)
    }

    #[cfg(test)]
    pub(crate) fn config_for_tests(&self) -> &Config<St> {
        &self.config
    }

    /// Where keys are read from (default: `Authorization: Bearer`; the FORG preset adds
    /// `X-ForgeOS-API-Key`: [`forg::credential_sources`](crate::forg::credential_sources)).
    pub fn sources(mut self, sources: CredentialSources) -> Self {
        self.config().sources = sources;
        self
    }

    /// Accept keys of `environment` only; others get 403 `environment_not_allowed`
    /// before anything is hashed.
    pub fn only_environment(mut self, environment: Environment) -> Self {
        self.config().only_environment = Some(environment);
        self
    }

    /// How long an asynchronous store lookup may take before the request gets 503
    /// (default 2 s).
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.config().lookup_timeout = timeout;
        self
    }

    /// The `Retry-After` of 503 responses, rounded up to whole seconds, at least 1
    /// (default 5 s).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.config().retry_after = RetryAfter::from_duration(after);
        self
    }

    /// Remove the key headers before the inner service sees the request (default: keep
    /// them, marked sensitive).
    pub fn strip_credentials(mut self, strip: bool) -> Self {
        self.config().strip_credentials = strip;
        self
    }

    /// Also authenticate by the session cookie of `sessions` (when no key header was sent:
    /// a key header takes precedence), with the CSRF check for state-changing requests; see
    /// [`session`](crate::session). The sessions' store may be of another type than the
    /// keys' (keys in PostgreSQL, sessions in Redis) as long as the scopes are the same.
    pub fn sessions<Ss>(mut self, sessions: Sessions<Ss>) -> Self
    where
        Ss: ManageKeys<Scope = St::Scope>,
    {
        self.config().sessions = Some(sessions.for_auth());
        self
    }

    /// Let requests without any credential through, without a [`Principal`](crate::Principal)
    /// (a bad, expired or revoked credential is still refused), so that public and private
    /// routes can share one stack: handlers take `Option<Principal>`, and
    /// [`require`](crate::require()) still refuses anonymous requests on the routes it guards.
    pub fn optional(mut self) -> Self {
        self.config().optional = true;
        self
    }

    /// Responses to requests authenticated by an API key that expires within `window`
    /// carry [`API_KEY_EXPIRES`](super::API_KEY_EXPIRES) with the key's expiry, so clients
    /// can warn before it stops working (default: off). Read on the store's clock.
    pub fn expiry_notice(mut self, window: Duration) -> Self {
        self.config().expiry_notice = Some(window);
        self
    }

    /// How rejections are rendered (default: [`DefaultRenderer`]).
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.config().renderer = Arc::new(renderer);
        self
    }
}

impl<St: KeyStore> Clone for AuthLayer<St> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
        }
    }
}

impl<St: KeyStore> fmt::Debug for AuthLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<S, St: KeyStore> Layer<S> for AuthLayer<St> {
    type Service = AuthService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService::new(inner, Arc::clone(&self.config))
    }
}

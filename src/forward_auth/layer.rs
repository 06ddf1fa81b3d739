//! [`ForwardAuthLayer`]: the proxy's question in, the stack's answer out.

use std::sync::Arc;

use http::HeaderName;
use tower::Layer;

use super::{ForwardAuth, OriginalRequest};

/// Turns a proxy's auth request into the original request for the layers inside, and
/// their answer into the proxy's (see the [module docs](super)). Outermost, around the
/// route table and the authentication stack.
#[derive(Clone, Debug)]
pub struct ForwardAuthLayer {
    config: Arc<Config>,
}

/// What the layer and its services share.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) original: OriginalRequest,
    pub(crate) owner: HeaderName,
    pub(crate) key_id: HeaderName,
    pub(crate) scopes: HeaderName,
    pub(crate) environment: HeaderName,
    pub(crate) credential: HeaderName,
    pub(crate) error_body: Option<HeaderName>,
}

/// `X-Auth-Error`: a refusal's JSON body, for nginx (which drops the body of an auth
/// response).
pub const X_AUTH_ERROR: HeaderName = HeaderName::from_static("x-auth-error");

impl ForwardAuthLayer {
    /// The original request where `original` says; principal headers `X-Auth-Owner`,
    /// `X-Auth-Key-Id`, `X-Auth-Scopes`, `X-Auth-Environment`, `X-Auth-Credential`.
    pub fn new(original: OriginalRequest) -> Self {
        Self {
            config: Arc::new(Config {
                original,
                owner: HeaderName::from_static("x-auth-owner"),
                key_id: HeaderName::from_static("x-auth-key-id"),
                scopes: HeaderName::from_static("x-auth-scopes"),
                environment: HeaderName::from_static("x-auth-environment"),
                credential: HeaderName::from_static("x-auth-credential"),
                error_body: None,
            }),
        }
    }

    /// For nginx's `auth_request`: `X-Original-Method` and `X-Original-URI`, and each
    /// refusal's body also in [`X_AUTH_ERROR`].
    pub fn nginx() -> Self {
        Self::new(OriginalRequest::nginx()).error_body_header(Some(X_AUTH_ERROR))
    }

    /// For Caddy's and Traefik's `forward_auth`: `X-Forwarded-Method`, `X-Forwarded-Uri`,
    /// `X-Forwarded-Host`.
    pub fn forwarded() -> Self {
        Self::new(OriginalRequest::forwarded())
    }

    /// For Envoy's `ext_authz` HTTP service with `path_prefix: <prefix>`: the auth request
    /// is the original one under `prefix`.
    pub fn envoy(prefix: &str) -> Self {
        Self::new(OriginalRequest::Prefixed(prefix.to_owned()))
    }

    /// Names the header of the principal's owner.
    #[must_use]
    pub fn owner_header(self, name: HeaderName) -> Self {
        self.with(|config| config.owner = name)
    }

    /// Names the header of the key's (or session's) id.
    #[must_use]
    pub fn key_id_header(self, name: HeaderName) -> Self {
        self.with(|config| config.key_id = name)
    }

    /// Names the header of the scopes (space-separated).
    #[must_use]
    pub fn scopes_header(self, name: HeaderName) -> Self {
        self.with(|config| config.scopes = name)
    }

    /// Names the header of the environment (`live`, `test`).
    #[must_use]
    pub fn environment_header(self, name: HeaderName) -> Self {
        self.with(|config| config.environment = name)
    }

    /// Names the header of the credential's kind (`api_key`, `session`).
    #[must_use]
    pub fn credential_header(self, name: HeaderName) -> Self {
        self.with(|config| config.credential = name)
    }

    /// Copies each refusal's body (compact JSON) into header `name` too (`None`: not).
    #[must_use]
    pub fn error_body_header(self, name: Option<HeaderName>) -> Self {
        self.with(|config| config.error_body = name)
    }

    /// The principal's header names, in the order owner, key id, scopes, environment,
    /// credential: what a proxy copies to the upstream.
    pub fn principal_headers(&self) -> [&HeaderName; 5] {
        let c = &self.config;
        [
            &c.owner,
            &c.key_id,
            &c.scopes,
            &c.environment,
            &c.credential,
        ]
    }

    fn with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::clone(&self.config);
        change(&mut config);
        self.config = Arc::new(config);
        self
    }
}

impl Config {
    /// Owner, key id, scopes, environment, credential: the order of the values
    /// [`ForwardAuth`] writes.
    pub(crate) fn principal_headers(&self) -> [&HeaderName; 5] {
        [
            &self.owner,
            &self.key_id,
            &self.scopes,
            &self.environment,
            &self.credential,
        ]
    }
}

impl<S> Layer<S> for ForwardAuthLayer {
    type Service = ForwardAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardAuth::new(inner, Arc::clone(&self.config))
    }
}

//! What the authentication layer holds of sessions: the store behind a trait object (the
//! layer's store type is the keys') and the settings it checks a session cookie with.

use super::*;

/// What the authentication layer needs of a session store, object-safe: the layer's store
/// type is the keys'.
pub(crate) trait SessionStore<Sc: Scope>: Send + Sync + 'static {
    /// The digest and environment of a session token, parsed against the session store's
    /// families; `None` when it is not a session token.
    fn digest_of(&self, token: &str) -> Option<(KeyDigest, Environment)>;
    fn lookup_now(&self, digest: &KeyDigest) -> Option<LookupResult<Sc>>;
    fn lookup<'a>(&'a self, digest: &'a KeyDigest) -> BoxFuture<'a, LookupResult<Sc>>;
    fn now(&self) -> SystemTime;
    /// The store's metrics label ([`KeyStore::backend`]).
    fn backend(&self) -> &'static str;
    /// Records activity on session `id` (for idle timeouts), failures logged.
    fn touch(self: Arc<Self>, id: KeyId, at: SystemTime) -> BoxFuture<'static, ()>;
}

impl<St: ManageKeys> SessionStore<St::Scope> for St {
    fn digest_of(&self, token: &str) -> Option<(KeyDigest, Environment)> {
        let session = self.policy().accepted_families().parse(token).ok()?;
        Some((
            self.hasher().digest(session.expose_secret()),
            session.environment(),
        ))
    }

    fn lookup_now(&self, digest: &KeyDigest) -> Option<LookupResult<St::Scope>> {
        KeyStore::lookup_now(self, digest)
    }

    fn lookup<'a>(&'a self, digest: &'a KeyDigest) -> BoxFuture<'a, LookupResult<St::Scope>> {
        Box::pin(KeyStore::lookup(self, digest))
    }

    fn now(&self) -> SystemTime {
        self.policy().now()
    }

    fn backend(&self) -> &'static str {
        KeyStore::backend(self)
    }

    fn touch(self: Arc<Self>, id: KeyId, at: SystemTime) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(_error) = ManageKeys::touch(&*self, &id, at).await {
                #[cfg(feature = "tracing")]
                tracing::warn!(target: "tower_api_key", error = %_error, "recording session activity failed");
            }
        })
    }
}

/// Sessions as the authentication layer holds them, whatever their store's type.
pub(crate) struct SessionAuth<Sc: Scope> {
    pub(super) store: Arc<dyn SessionStore<Sc>>,
    pub(super) settings: Arc<Settings>,
}

impl<Sc: Scope> Clone for SessionAuth<Sc> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<Sc: Scope> fmt::Debug for SessionAuth<Sc> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.fmt(f)
    }
}

impl<Sc: Scope> SessionAuth<Sc> {
    pub(crate) fn store(&self) -> &dyn SessionStore<Sc> {
        &*self.store
    }

    pub(crate) fn session_cookie<'h>(
        &self,
        headers: &'h HeaderMap,
    ) -> Result<Option<&'h str>, AuthRejection> {
        self.settings.cookies.session_in(headers)
    }

    pub(crate) fn check_csrf<B>(
        &self,
        request: &http::Request<B>,
        session: &KeyDigest,
    ) -> Result<(), AuthRejection> {
        let settings = &*self.settings;
        settings.csrf.check(request, session).map_err(|failure| {
            AuthRejection::csrf_failed(
                failure,
                Arc::clone(&settings.cookies.csrf),
                settings.csrf.header.clone(),
            )
        })
    }

    /// Whether `record` has been idle too long at `now`.
    pub(crate) fn idle_expired(&self, record: &KeyRecord<Sc>, now: SystemTime) -> bool {
        self.settings.idle_timeout.is_some_and(|idle| {
            let seen = record.last_used_at().unwrap_or(record.created_at());
            now.duration_since(seen).is_ok_and(|quiet| quiet >= idle)
        })
    }

    /// Records activity on `record` if the last record of it is older than a quarter of
    /// the idle timeout (so an active session stays alive without a write per request).
    pub(crate) fn seen(&self, record: &KeyRecord<Sc>, now: SystemTime) {
        let Some(idle) = self.settings.idle_timeout else {
            return;
        };
        let seen = record.last_used_at().unwrap_or(record.created_at());
        if now
            .duration_since(seen)
            .is_ok_and(|quiet| quiet >= idle / 4)
        {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(Arc::clone(&self.store).touch(record.id().clone(), now));
            }
        }
    }
}

//! Browser sessions: the second credential of the [`AuthLayer`](crate::AuthLayer), with
//! CSRF protection, and the login / logout helpers.
//!
//! ```
//! use std::sync::Arc;
//! use http::{HeaderMap, Method, Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_api_key::session::{CsrfSecret, Sessions};
//! use tower_api_key::store::KeyPolicy;
//! use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore, Principal};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let keys = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
//! // Sessions live in a store of their own: same machinery, own family and limits.
//! let sessions = Sessions::new(
//!     Arc::new(MemoryKeyStore::new().with_policy(KeyPolicy::sessions())),
//!     CsrfSecret::generate().unwrap(),
//! );
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::new(keys).sessions(sessions.clone()))
//!     .service(service_fn(|request: Request<()>| async move {
//!         let who = request.extensions().get::<Principal>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(who.owner().to_owned()))
//!     }));
//!
//! // The application checked the password; the session starts with a fresh token.
//! let login = sessions
//!     .start(&HeaderMap::new(), "user_42", ForgScope::ReadSessions)
//!     .await
//!     .unwrap();
//! let cookie = login.cookies().cookie_header(); // what the browser will send back
//! let csrf = login.cookies().csrf_token().unwrap().to_owned();
//!
//! let get = Request::get("/v1/sessions").header("cookie", &cookie).body(()).unwrap();
//! assert_eq!(service.clone().oneshot(get).await.unwrap().status(), StatusCode::OK);
//!
//! // A state-changing request needs the CSRF token too.
//! let post = || Request::post("/v1/rules").header("cookie", &cookie);
//! let forged = post().body(()).unwrap();
//! assert_eq!(service.clone().oneshot(forged).await.unwrap().status(), StatusCode::FORBIDDEN);
//! let sent = post().header("x-csrf-token", &csrf).body(()).unwrap();
//! assert_eq!(service.oneshot(sent).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```
//!
//! # How sessions work
//! - A session is a short-lived record in a store of the same kind as the keys' (memory,
//!   Redis, SQL), in a family of its own ([`KeyFamily::SESSION`](crate::key::KeyFamily::SESSION),
//!   `fses_` + 128 random bits) that the key store never accepts. The cookie holds the
//!   token; the store holds its SHA-256 digest only. Lookup, constant-time comparison,
//!   caching, revocation across instances and the one identical 401 are the keys'.
//!   A separate store instance keeps sessions out of the owner's key limit and key list.
//! - The [`AuthLayer`](crate::AuthLayer) reads the session cookie only when no key header
//!   was sent: **a key header takes precedence** and the cookie is then ignored (a program's
//!   request, not subject to CSRF). gRPC requests never read cookies.
//! - Requests authenticated by the cookie with a method other than GET, HEAD, OPTIONS and
//!   TRACE must be same-site (tower-http's `CsrfLayer` check of `Sec-Fetch-Site` and
//!   `Origin`) and carry `X-CSRF-Token` equal to the CSRF cookie's value, which is
//!   HMAC-SHA-256 of the session's digest under a server secret: else 403 `csrf_failed`,
//!   inner service not called.
//! - Cookies (names: `session` and `csrf_token` by default, `forge_session` and
//!   `forge_csrf` with [`forg::sessions`](crate::forg::sessions)): the session cookie is
//!   `HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=<TTL>`, the CSRF cookie
//!   `Secure; SameSite=Strict; Path=/` and readable by scripts. `Cookie`
//!   headers are marked sensitive before the inner service sees them.
//! - Expiry: absolute TTL (default 12 h) and an optional idle timeout.
//! - Nothing is kept of a session that can no longer be used: logging out (or being ended
//!   by a newer login or "log out everywhere") deletes it, and expired sessions are
//!   deleted by the store as it is used (the sessions policy has no retention), so an
//!   owner's sessions cost what its live ones do, whatever its login history.

mod auth;
mod cookie;
mod csrf;
mod started;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use http::header::{HeaderMap, HeaderName, HeaderValue, SET_COOKIE};

pub(crate) use self::auth::{SessionAuth, SessionStore};
pub(crate) use self::cookie::protect;
use self::cookie::CookieSettings;
use self::csrf::CsrfCheck;
pub use self::csrf::{CsrfSecret, InvalidCsrfSecret};
pub use self::started::{SessionCookies, StartedSession};
use crate::environment::Environment;
use crate::key::{KeyDigest, KeyFamily};
use crate::principal::{CredentialKind, Principal};
use crate::reject::AuthRejection;
use crate::scope::{Scope, ScopeSet};
use crate::store::{
    KeyId, KeyRecord, KeyStatus, KeyStore, LookupResult, ManageError, ManageKeys, NewKey,
};

/// The CSRF token header, `x-csrf-token`.
pub const X_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-csrf-token");

/// Sessions over one store: the settings the [`AuthLayer`](crate::AuthLayer) reads them
/// with, and the login / logout helpers. The store need not be the keys' store, nor of its
/// type (keys in PostgreSQL, sessions in Redis). Cheap to clone (two `Arc`s); see the
/// [module docs](self).
pub struct Sessions<St: ManageKeys> {
    store: Arc<St>,
    settings: Arc<Settings>,
}

/// Everything but the store: what the authentication layer reads besides lookups.
#[derive(Clone)]
pub(crate) struct Settings {
    cookies: CookieSettings,
    ttl: Duration,
    idle_timeout: Option<Duration>,
    csrf_layer: tower_http::csrf::CsrfLayer,
    csrf: CsrfCheck,
}

impl<St: ManageKeys> Clone for Sessions<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            settings: Arc::clone(&self.settings),
        }
    }
}

/// A cookie name that is not an RFC 6265 token, or a trusted origin tower-http refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionConfigError {
    /// Cookie names are RFC 6265 tokens: visible ASCII without separators.
    #[error("`{0}` is not a valid cookie name")]
    CookieName(String),
    /// The two cookies need different names.
    #[error("the session and CSRF cookies need different names")]
    SameCookieNames,
    /// A trusted origin must be `scheme://host[:port]`.
    #[error("invalid trusted origin: {0}")]
    Origin(String),
}

impl<St: ManageKeys> Sessions<St> {
    /// Sessions kept in `store` (give it [`KeyPolicy::sessions`](crate::store::KeyPolicy::sessions)),
    /// CSRF tokens derived from `secret`; cookies `session` and `csrf_token`,
    /// `Secure`, TTL 12 h, no idle timeout, token header `X-CSRF-Token`.
    pub fn new(store: Arc<St>, secret: CsrfSecret) -> Self {
        let csrf_layer = tower_http::csrf::CsrfLayer::new();
        Self {
            store,
            settings: Arc::new(Settings {
                cookies: CookieSettings::new("session", "csrf_token", true),
                ttl: Duration::from_secs(12 * 3600),
                idle_timeout: None,
                csrf: CsrfCheck::new(secret, X_CSRF_TOKEN, &csrf_layer),
                csrf_layer,
            }),
        }
    }

    /// Starts a session for `owner` with `scopes`, after the application checked the
    /// password. Always a fresh token: a session cookie the request already carries (one
    /// planted before login, or a previous login) is ended, never kept. At the store's
    /// per-owner limit, the owner's oldest session is ended to make room.
    ///
    /// # Errors
    /// [`ManageError::Store`] when the store fails, [`ManageError::Generate`] without
    /// randomness.
    pub async fn start(
        &self,
        request_headers: &HeaderMap,
        owner: impl Into<String>,
        scopes: impl Into<ScopeSet<St::Scope>>,
    ) -> Result<StartedSession<St::Scope>, ManageError> {
        let settings = &*self.settings;
        if let Ok(Some(previous)) = self.current(request_headers).await {
            self.end_record(previous.id()).await?;
        }
        let new = NewKey::new(owner, "session", &KeyFamily::SESSION)
            .scopes(scopes)
            .expires_in(settings.ttl);
        let issued = match self.store.issue(new.clone()).await {
            Err(ManageError::KeyLimitReached { .. }) => {
                self.end_oldest(new.owner()).await?;
                self.store.issue(new).await?
            }
            issued => issued?,
        };
        let (token, record) = issued.into_parts();
        let csrf = settings.csrf.secret.token(record.digest());
        let cookies = SessionCookies {
            values: settings
                .cookies
                .set_cookies(token.expose_secret(), &csrf, settings.ttl),
            csrf_token: Some(csrf),
        };
        Ok(StartedSession { record, cookies })
    }

    /// Ends the session `principal` authenticated with, at once (deleted from the store,
    /// which tells every instance, so each refuses it on the next request), and gives the
    /// cookies that clear the browser's.
    ///
    /// # Errors
    /// [`ManageError::NotFound`] when `principal` is not a session of this store;
    /// [`ManageError::Store`].
    pub async fn end(&self, principal: &Principal) -> Result<SessionCookies, ManageError> {
        if principal.kind() != CredentialKind::Session {
            return Err(ManageError::NotFound(principal.key_id().clone()));
        }
        self.end_record(principal.key_id()).await?;
        Ok(self.clear_cookies())
    }

    /// Deletes session `id`: what can no longer authenticate is not kept (an ended session
    /// has nothing to audit). Already gone is ended too.
    async fn end_record(&self, id: &KeyId) -> Result<(), ManageError> {
        match self.store.delete(id).await {
            Ok(_) | Err(ManageError::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Ends every live session of `owner` ("log out everywhere"); returns how many.
    ///
    /// # Errors
    /// [`ManageError::Store`].
    pub async fn end_all(&self, owner: &str) -> Result<usize, ManageError> {
        let store = &self.store;
        let now = store.policy().now();
        let mut ended = 0;
        for record in store.records_of(owner).await? {
            if record.status_at(now) == KeyStatus::Active {
                ended += 1;
            }
            // Expired ones go too: nothing of a session is kept once it cannot be used.
            self.end_record(record.id()).await?;
        }
        Ok(ended)
    }

    async fn end_oldest(&self, owner: &str) -> Result<(), ManageError> {
        let store = &self.store;
        let now = store.policy().now();
        let oldest = store
            .records_of(owner)
            .await?
            .into_iter()
            .filter(|record| record.status_at(now) == KeyStatus::Active)
            .min_by_key(|record| record.created_at());
        if let Some(oldest) = oldest {
            self.end_record(oldest.id()).await?;
        }
        Ok(())
    }

    /// The live session the request's cookie names, if any.
    async fn current(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<KeyRecord<St::Scope>>>, AuthRejection> {
        let Some(token) = self.session_cookie(headers)? else {
            return Ok(None);
        };
        let Some((digest, _)) = self.store.digest_of(token) else {
            return Ok(None);
        };
        Ok(self.store.lookup(&digest).await.ok().flatten())
    }
}

impl<St: ManageKeys> Sessions<St> {
    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }

    /// How long a session lasts from login, whatever its activity (default 12 h).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings().ttl = ttl;
        self
    }

    /// Ends a session unused for `idle` (default: none). Activity is recorded in the store
    /// (`ManageKeys::touch`, spawned on the Tokio runtime) once a session's last record is
    /// `idle / 4` old. Behind a [`CachedKeyStore`](crate::store::CachedKeyStore) the layer
    /// sees activity up to the cache TTL late: keep `idle` well above that TTL.
    #[must_use]
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.settings().idle_timeout = Some(idle);
        self
    }

    /// Whether the cookies are `Secure` (default: yes). Turn it off only for plain-HTTP
    /// development on `localhost`.
    #[must_use]
    pub fn secure(mut self, secure: bool) -> Self {
        self.settings().cookies.secure = secure;
        self
    }

    /// The cookies' names (default `session` and `csrf_token`; the FORG preset's:
    /// [`forg::sessions`](crate::forg::sessions)).
    ///
    /// # Errors
    /// [`SessionConfigError`] when a name is not an RFC 6265 token, or both are the same.
    pub fn cookie_names(mut self, session: &str, csrf: &str) -> Result<Self, SessionConfigError> {
        for name in [session, csrf] {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !token {
                return Err(SessionConfigError::CookieName(name.to_owned()));
            }
        }
        if session == csrf {
            return Err(SessionConfigError::SameCookieNames);
        }
        let cookies = &mut self.settings().cookies;
        cookies.session = session.to_owned();
        cookies.csrf = csrf.into();
        Ok(self)
    }

    /// The CSRF token header (default `X-CSRF-Token`).
    #[must_use]
    pub fn csrf_header(mut self, name: HeaderName) -> Self {
        self.settings().csrf.header = name;
        self
    }

    /// Lets cookie-authenticated requests from `origin` (`https://app.example.com`) pass
    /// the cross-site check (they still need the CSRF token).
    ///
    /// # Errors
    /// [`SessionConfigError::Origin`] when tower-http refuses the origin.
    pub fn trusted_origin(mut self, origin: &str) -> Result<Self, SessionConfigError> {
        let settings = self.settings();
        settings.csrf_layer = settings
            .csrf_layer
            .clone()
            .add_trusted_origin(origin)
            .map_err(|error| SessionConfigError::Origin(error.to_string()))?;
        settings.csrf = CsrfCheck::new(
            settings.csrf.secret.clone(),
            settings.csrf.header.clone(),
            &settings.csrf_layer,
        );
        Ok(self)
    }

    /// The store sessions are kept in.
    pub fn store(&self) -> &Arc<St> {
        &self.store
    }

    /// Cookies that clear both of the browser's (for a logout without a live session).
    pub fn clear_cookies(&self) -> SessionCookies {
        SessionCookies {
            values: self.settings.cookies.clear_cookies(),
            csrf_token: None,
        }
    }

    /// The CSRF token of the session `principal` authenticated with (for a page that
    /// wants to hand it to its scripts again); `None` for an API key.
    pub fn csrf_token(&self, principal: &Principal) -> Option<String> {
        if principal.kind() != CredentialKind::Session {
            return None;
        }
        let record = principal.record::<St::Scope>()?;
        Some(self.settings.csrf.secret.token(record.digest()))
    }

    /// The session cookie's value in `headers`, as the layer reads it: every `Cookie`
    /// header, pairs that do not parse skipped. Handle with care: it is the token.
    ///
    /// # Errors
    /// 400 `invalid_request` when the session cookie is there twice or a `Cookie` header
    /// is not UTF-8.
    pub fn session_cookie<'h>(
        &self,
        headers: &'h HeaderMap,
    ) -> Result<Option<&'h str>, AuthRejection> {
        self.settings.cookies.session_in(headers)
    }

    /// The authentication layer's view: the settings, and the store behind a trait object
    /// so that it need not be the keys' store type.
    pub(crate) fn for_auth(&self) -> SessionAuth<St::Scope> {
        SessionAuth {
            store: Arc::clone(&self.store) as Arc<dyn SessionStore<St::Scope>>,
            settings: Arc::clone(&self.settings),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("cookies", &self.cookies)
            .field("ttl", &self.ttl)
            .field("idle_timeout", &self.idle_timeout)
            .field("csrf", &self.csrf)
            .finish_non_exhaustive()
    }
}

impl<St: ManageKeys> fmt::Debug for Sessions<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.fmt(f)
    }
}

//! [`LoginApi`]: the login and logout routes every session user would otherwise write: the
//! JSON body, the password check (the application's, run off the async threads), the
//! cookies with the CSRF token in the body too, and every failure in the API's error shape.

use std::fmt;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson};
use super::ApiCode;
use crate::audit::{Actor, AuditAction, AuditEntry, AuditLog};
use crate::principal::Principal;
use crate::reject::RejectionKind;
use crate::scope::{Scope, ScopeSet};
use crate::session::Sessions;
use crate::store::{KeyId, ManageError, ManageKeys};
use crate::support::timestamp::Rfc3339;

/// Who logged in: the owner the session acts for and the scopes it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account<S: Scope> {
    /// The owner, as keys name it.
    pub owner: String,
    /// What the session may do.
    pub scopes: ScopeSet<S>,
}

/// The application's password check: the account when `email` and `password` match.
/// Called on a blocking thread (hash with Argon2id or bcrypt there); compare in constant
/// time and answer `None` alike for an unknown e-mail and a wrong password.
pub trait PasswordCheck<S: Scope>: Send + Sync + 'static {
    /// The account, or `None`.
    fn check(&self, email: &str, password: &str) -> Option<Account<S>>;
}

impl<S: Scope, F> PasswordCheck<S> for F
where
    F: Fn(&str, &str) -> Option<Account<S>> + Send + Sync + 'static,
{
    fn check(&self, email: &str, password: &str) -> Option<Account<S>> {
        self(email, password)
    }
}

/// `POST /login` (`{"email", "password"}`: the session cookies, and
/// `{"data": {"owner", "scopes", "csrf_token", "expires_at"}}`) and `POST /logout` (204,
/// the cookies cleared, the session revoked on every instance).
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use tower_api_key::manage::{Account, LoginApi};
/// use tower_api_key::session::{CsrfSecret, Sessions};
/// use tower_api_key::store::KeyPolicy;
/// use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore};
///
/// let keys = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
/// let sessions = Sessions::new(
///     Arc::new(MemoryKeyStore::new().with_policy(KeyPolicy::sessions())),
///     CsrfSecret::generate().unwrap(),
/// );
/// let login = LoginApi::new(sessions.clone(), |email: &str, password: &str| {
///     // Your user table and password hash here.
///     (email == "ada@example.com" && password == "correct horse")
///         .then(|| Account { owner: "org_1".into(), scopes: ForgScope::ReadRules.into() })
/// });
/// // Login needs no credential; logout is a session's, behind the authentication layer.
/// let app: Router = Router::new()
///     .nest("/auth", login.logout_router())
///     .layer(AuthLayer::new(keys).sessions(sessions))
///     .nest("/auth", login.login_router());
/// ```
pub struct LoginApi<St: ManageKeys> {
    sessions: Sessions<St>,
    check: Arc<dyn PasswordCheck<St::Scope>>,
    audit: Option<Arc<dyn AuditLog>>,
}

impl<St: ManageKeys> LoginApi<St> {
    /// Logins checked by `check`, sessions started in `sessions`.
    pub fn new(sessions: Sessions<St>, check: impl PasswordCheck<St::Scope>) -> Self {
        Self {
            sessions,
            check: Arc::new(check),
            audit: None,
        }
    }

    /// Records each session started and ended in `log` (`session.started`,
    /// `session.ended`, with the session's id and the client address; never the cookie).
    /// A refused login names no owner (the e-mail may be unknown) and is not an entry.
    #[must_use]
    pub fn audit(mut self, log: impl AuditLog) -> Self {
        self.audit = Some(Arc::new(log));
        self
    }

    /// Appends `action` by session `id` of `owner`, if a log is configured. A failing log
    /// loses the entry, not the login.
    async fn record(
        &self,
        action: AuditAction,
        owner: &str,
        id: &KeyId,
        environment: crate::key::Environment,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) {
        let Some(log) = &self.audit else { return };
        let now = self.sessions.store().policy().now();
        let mut entry = AuditEntry::new(now, owner, Actor::Session(id.clone()), action)
            .environment(environment);
        if let Ok(ip) = crate::client_ip::client_ip_of(headers, extensions) {
            entry = entry.client(ip);
        }
        if let Some(request_id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            entry = entry.request_id(request_id);
        }
        let _ = log.append(entry).await;
    }

    /// `POST /login`, to mount outside the authentication layer.
    pub fn login_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/login", post(login::<St>))
            .with_state(Arc::new(self.clone()))
    }

    /// `POST /logout`, to mount behind the [`AuthLayer`](crate::AuthLayer) with these
    /// sessions (it is CSRF-checked there like any state-changing session request).
    pub fn logout_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/logout", post(logout::<St>))
            .with_state(Arc::new(self.clone()))
    }
}

impl<St: ManageKeys> Clone for LoginApi<St> {
    fn clone(&self) -> Self {
        Self {
            sessions: self.sessions.clone(),
            check: Arc::clone(&self.check),
            audit: self.audit.clone(),
        }
    }
}

impl<St: ManageKeys> fmt::Debug for LoginApi<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginApi").finish_non_exhaustive()
    }
}

/// The login body. Unknown fields are refused (422), as everywhere in the API.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Serialize)]
#[serde(bound = "")]
struct Started<'a, S: Scope> {
    owner: &'a str,
    scopes: ScopeSet<S>,
    csrf_token: Option<&'a str>,
    expires_at: Option<String>,
}

fn unavailable() -> ApiError {
    ApiError::unavailable("Sessions are temporarily unavailable")
}

async fn login<St: ManageKeys>(
    State(api): State<Arc<LoginApi<St>>>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Result<ApiJson<Credentials>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(credentials) = body?;
    let check = Arc::clone(&api.check);
    let account =
        tokio::task::spawn_blocking(move || check.check(&credentials.email, &credentials.password))
            .await
            .map_err(|_| unavailable())?
            .ok_or_else(|| ApiError::from_code(ApiCode::InvalidCredentials))?;
    let started = api
        .sessions
        .start(&headers, account.owner.clone(), account.scopes)
        .await
        .map_err(|_| unavailable())?;
    let record = started.record();
    api.record(
        AuditAction::SessionStarted,
        &account.owner,
        record.id(),
        record.environment(),
        &headers,
        &extensions,
    )
    .await;
    let body = Started {
        owner: &account.owner,
        scopes: account.scopes,
        csrf_token: started.cookies().csrf_token(),
        expires_at: started
            .record()
            .expires_at()
            .map(|at| Rfc3339(at).to_string()),
    };
    let body = serde_json::json!({ "data": body });
    Ok((started.into_cookies(), Json(body)).into_response())
}

async fn logout<St: ManageKeys>(
    State(api): State<Arc<LoginApi<St>>>,
    headers: HeaderMap,
    extensions: Extensions,
    caller: Principal,
) -> Result<Response, ApiError> {
    match api.sessions.end(&caller).await {
        Ok(cleared) => {
            api.record(
                AuditAction::SessionEnded,
                caller.owner(),
                caller.key_id(),
                caller.environment(),
                &headers,
                &extensions,
            )
            .await;
            Ok((cleared, StatusCode::NO_CONTENT).into_response())
        }
        Err(ManageError::NotFound(_)) => Err(ApiError::of(
            RejectionKind::InvalidRequest,
            "Logout ends a browser session; API keys are revoked instead",
        )),
        Err(_) => Err(unavailable()),
    }
}

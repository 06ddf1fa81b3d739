//! A FORG-style API on the embedded in-memory key store.
//!
//! ```text
//! cargo run --example quickstart               # listens on 127.0.0.1:8080
//! cargo run --example quickstart -- --addr 127.0.0.1:3000
//! ```
//!
//! At start it issues four keys (a live key with `read:sessions read:reports`, a test key
//! with `admin`, a `fos_` key with `read:rules`, a live "trial" key with 20 units of
//! one-time credits) and a demo account for the browser flow
//! (`POST /auth/login` sets the `forge_session` and `forge_csrf` cookies; passwords are
//! hashed with Argon2id), and prints them with curl lines to try. The cookies are not
//! `Secure` here because the demo serves plain HTTP on localhost: keep them `Secure` in
//! production.
//! Routes are rate limited with the ForgeOS defaults: 100/min per key on standard routes,
//! 10/min per key on `POST /v1/reviews` (AI), 5/min per client address on the public
//! `POST /auth/login`; 20 refused keys per minute from one address block that address.
//! The AI route also has a spend cap: each review reports a cost of 10 units; live keys
//! may spend 10,000 a month and test keys 1,000 an hour, except the demo live key, capped
//! at 30 so that its fourth review gets 402 `spend_cap_exceeded`, and the trial key, whose
//! 20 units never reset. `GET /api/billing/spend` shows every budget. Reviews also count
//! tokens (30,000 a minute per key, each reserving 10,000 and keeping what it reports) and
//! at most two of one key are in flight at once.
//!
//! Plans: live keys (`fos_` ones too) need Pro or higher; `org_acme` is on Team, and each
//! registered agent starts on a 14-day Pro trial, then Free: its `fos_` key is refused with
//! 403 `plan_required` (its browser session still works). Keys are due for rotation at 90
//! days (`rotation_due`), live at most a year, and responses to a key expiring within 14
//! days carry `api-key-expires`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::response::Response;
use dashmap::DashMap;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use tower_api_key::activity::ActivityLog;
use tower_api_key::audit::MemoryAuditLog;

#[path = "quickstart_parts/events.rs"]
pub mod events;
use tower_api_key::clock::{Clock, SystemClock};
use tower_api_key::forg;
use tower_api_key::manage::{
    agent_key, ApiError, ApiJson, KeysApi, LoginApi, PasswordCheck, SpendApi,
};
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::KeyPolicy;
use tower_api_key::store::ManageKeys;
use tower_api_key::ScopeSet;

use axum::extract::{RawQuery, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use tower::ServiceBuilder;
use tower_api_key::activity::{
    ActivityEvent, ActivityLayer, ActivityObserver, DailyUsage, LastUsedRecorder,
};
use tower_api_key::failure_limit::FailureLimit;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::rate_limit::{
    ClassName, InFlightLimit, InFlightLimits, Quota, RateClass, RateLimits, ReportedUnits,
};
use tower_api_key::store::{IssuedKey, KeyId, ManageError};
use tower_api_key::usage::{
    BudgetPer, Budgets, MemoryUsage, Plan, PlanLayer, PlanTable, ReportedCost, SpendCaps,
};
use tower_api_key::{
    require, AuthLayer, ForgScope, MemoryKeyStore, NewKey, Principal, ServiceBuilderExt,
};

/// The organisation every demo key belongs to.
pub const OWNER: &str = "org_acme";

/// The demo account, printed at start.
pub const DEMO_EMAIL: &str = "demo@forgeos.dev";
/// Its password.
pub const DEMO_PASSWORD: &str = "correct horse battery staple";
/// The shortest password `register-agent` accepts.
pub const MIN_PASSWORD: usize = 12;

/// Keys and sessions live in stores of the same kind: two instances.
pub type Store = MemoryKeyStore<ForgScope>;

/// "Rotate keys every 90 days": older keys are marked `rotation_due`.
pub const ROTATION_AGE: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);
/// No key lives longer than a year.
pub const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);
/// "New accounts receive a 14-day Pro trial."
pub const TRIAL: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);
/// The one-time credits of an agent's key, in AI units.
pub const AGENT_CREDITS: u64 = 1_000;

/// The key store: rotation due at 90 days, at most a year's lifetime, on `clock`.
pub fn key_store(clock: impl Clock) -> Arc<Store> {
    let policy = tower_api_key::forg::key_policy()
        .rotation_age(ROTATION_AGE)
        .max_lifetime(MAX_LIFETIME)
        .clock(clock);
    Arc::new(Store::new().with_policy(policy))
}

/// A user or agent account: its password's Argon2id hash (PHC string), its owner id and
/// the scopes its sessions get.
#[derive(Clone)]
pub struct Account {
    password_hash: String,
    pub owner: String,
    pub scopes: ScopeSet<ForgScope>,
}

/// Accounts by e-mail. The crate does not check passwords: this is the application's part.
#[derive(Clone)]
pub struct Accounts {
    by_email: Arc<DashMap<String, Account>>,
    /// Verified against when the e-mail is unknown, so timing does not tell which exist.
    decoy: Arc<str>,
}

fn hash_password(password: &str) -> Option<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).ok()?;
    let salt = SaltString::encode_b64(&salt).ok()?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .ok()?;
    Some(hash.to_string())
}

impl Accounts {
    /// With the demo account (owner `org_acme`, read and write on rules and sessions).
    pub fn with_demo() -> Self {
        let accounts = Self {
            by_email: Arc::default(),
            decoy: hash_password("decoy")
                .expect("the OS has randomness")
                .into(),
        };
        let scopes = [
            ForgScope::ReadSessions,
            ForgScope::ReadRules,
            ForgScope::WriteRules,
            ForgScope::ReadReports,
        ];
        accounts
            .create(DEMO_EMAIL, DEMO_PASSWORD, OWNER, scopes.into())
            .expect("a fresh table has no such account");
        accounts
    }

    /// Adds an account; `None` when the e-mail is taken.
    fn create(
        &self,
        email: &str,
        password: &str,
        owner: &str,
        scopes: ScopeSet<ForgScope>,
    ) -> Option<()> {
        let password_hash = hash_password(password)?;
        match self.by_email.entry(email.to_ascii_lowercase()) {
            dashmap::Entry::Occupied(_) => None,
            dashmap::Entry::Vacant(slot) => {
                slot.insert(Account {
                    password_hash,
                    owner: owner.to_owned(),
                    scopes,
                });
                Some(())
            }
        }
    }

    fn taken(&self, email: &str) -> bool {
        self.by_email.contains_key(&email.to_ascii_lowercase())
    }

    /// The account whose password this is. An unknown e-mail costs a verification too, so
    /// timing does not tell which e-mails exist.
    fn check(&self, email: &str, password: &str) -> Option<Account> {
        let account = self
            .by_email
            .get(&email.to_ascii_lowercase())
            .map(|a| a.clone());
        let stored = account
            .as_ref()
            .map_or(&*self.decoy, |a| a.password_hash.as_str());
        let verified = PasswordHash::new(stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        });
        account.filter(|_| verified)
    }
}

/// Logins: the crate's routes over this password check.
impl PasswordCheck<ForgScope> for Accounts {
    fn check(
        &self,
        email: &str,
        password: &str,
    ) -> Option<tower_api_key::manage::Account<ForgScope>> {
        Accounts::check(self, email, password).map(|account| tower_api_key::manage::Account {
            owner: account.owner,
            scopes: account.scopes,
        })
    }
}

/// Everything the demo application holds.
#[derive(Clone)]
pub struct Demo {
    pub keys: Arc<Store>,
    pub sessions: Sessions<Store>,
    pub accounts: Accounts,
    pub budgets: Budgets,
    /// The AI route's spend caps (per key), read by `GET /api/billing/spend`.
    pub spend: SpendCaps,
    /// Owners' plans and trials.
    pub plans: PlanTable,
    /// The per-request plan check, on the demo's clock.
    pub plan_check: PlanLayer,
    pub activity: ActivityLog,
    /// Every management action and refusal (`GET /v1/audit`, the dashboard's audit panel).
    pub audit: Arc<MemoryAuditLog>,
    /// Key events: webhooks, budget thresholds, leaks.
    pub events: events::DemoEvents,
    /// Requests, refusals and spend per key per day, for the dashboard's charts.
    pub daily: DailyUsage,
    /// What `GET /metrics` renders (Prometheus text format): the recorder `main` installed.
    pub metrics: Option<PrometheusHandle>,
}

impl Demo {
    /// The demo around `keys` (with `demo_keys` issued in it): a session store, the demo
    /// account, the AI route's budgets, the plans; on the system clock.
    pub fn new(keys: Arc<Store>, demo_keys: &DemoKeys) -> Self {
        Self::with_clock(keys, demo_keys, SystemClock)
    }

    /// The demo with trials, spend periods and plan answers on `clock` (fake in tests).
    pub fn with_clock(keys: Arc<Store>, demo_keys: &DemoKeys, clock: impl Clock + Clone) -> Self {
        let session_store = Arc::new(Store::new().with_policy(KeyPolicy::sessions()));
        let secret = CsrfSecret::generate().expect("the OS has randomness");
        let budgets = demo_keys.budgets();
        let usage = MemoryUsage::new().with_clock(clock.clone());
        let audit = Arc::new(MemoryAuditLog::new());
        let events = events::DemoEvents::new(&audit);
        // Owners hear of 80 % and 100 % of a budget (webhook `budget.threshold`).
        let spend = SpendCaps::backed_by(budgets.clone(), usage)
            .per(BudgetPer::Key)
            .events(events.events.clone());
        // Live keys need Pro; fos_ keys are live keys too.
        let plans = PlanTable::new(Plan::Free)
            .require(Environment::Live, Plan::Pro)
            .owner(OWNER, Plan::Team)
            .clock(clock.clone());
        Self {
            keys,
            // Plain HTTP on localhost: cookies without `Secure`. Never in production.
            sessions: forg::sessions(session_store, secret).secure(false),
            accounts: Accounts::with_demo(),
            budgets,
            spend,
            plan_check: PlanLayer::new(plans.clone()).clock(clock),
            plans,
            activity: ActivityLog::default(),
            events,
            audit,
            daily: DailyUsage::default(),
            metrics: None,
        }
    }
}

/// The four keys issued at start.
pub struct DemoKeys {
    pub live: IssuedKey<ForgScope>,
    pub test: IssuedKey<ForgScope>,
    pub fos: IssuedKey<ForgScope>,
    /// A live key with 20 units of one-time credits.
    pub trial: IssuedKey<ForgScope>,
}

/// The trial key's credits: two reviews, never reset.
pub const TRIAL_CREDITS: u64 = 20;

impl DemoKeys {
    /// The AI route's budgets: per key, with the demo live key capped low and the trial
    /// key on credits.
    pub fn budgets(&self) -> Budgets {
        let budgets = Budgets::new()
            .default_cap(Environment::Live, 10_000)
            .default_cap(Environment::Test, 1_000);
        budgets.set_key_cap(self.live.record().id().clone(), Some(30));
        budgets.set_key_credits(self.trial.record().id().clone(), TRIAL_CREDITS);
        budgets
    }
}

/// Responses to a key that expires within this carry `api-key-expires`.
pub const EXPIRY_NOTICE: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// What one AI review costs, reported by the handler after it ran.
pub const REVIEW_COST: u64 = 10;

/// The AI route's tokens: 30,000 a minute per key; a review reserves the most it may use
/// (10,000) and keeps what it reports (`?tokens=`, 1,000 by default).
pub const TOKENS: RateClass = RateClass::per_key(
    ClassName::from_static("tokens"),
    Quota::per_minute_const(30_000),
)
.reported_up_to(NonZeroU32::new(10_000).unwrap());

/// At most two reviews of one key in flight.
pub const REVIEWS_IN_FLIGHT: InFlightLimit = InFlightLimit::per_key(
    ClassName::from_static("reviews"),
    NonZeroU32::new(2).unwrap(),
);

/// Issues the demo keys.
pub async fn issue_demo_keys(store: &MemoryKeyStore<ForgScope>) -> Result<DemoKeys, ManageError> {
    Ok(DemoKeys {
        live: store
            .issue(
                NewKey::new(OWNER, "production dashboard", &KeyFamily::FORG_LIVE)
                    .scopes([ForgScope::ReadSessions, ForgScope::ReadReports]),
            )
            .await?,
        test: store
            .issue(
                NewKey::new(OWNER, "sandbox admin", &KeyFamily::FORG_TEST).scopes(ForgScope::Admin),
            )
            .await?,
        fos: store
            .issue(NewKey::new(OWNER, "mcp server", &KeyFamily::FOS).scopes(ForgScope::ReadRules))
            .await?,
        trial: store
            .issue(
                NewKey::new(OWNER, "trial credits", &KeyFamily::FORG_LIVE)
                    .scopes(ForgScope::ReadRules),
            )
            .await?,
    })
}

/// The whole application: `/health`, `/auth/login` and `/auth/register-agent` are public,
/// everything under `/v1` and `/auth/logout` needs a key or a session. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`: the per-address limits read the
/// client's address from there.
pub fn app(demo: &Demo) -> Router {
    let store = Arc::clone(&demo.keys);
    let limits = RateLimits::new();
    // Every outcome goes to the dashboard's activity log, and last use to the store (batched).
    let recorder = LastUsedRecorder::spawn(Arc::clone(&store), std::time::Duration::from_secs(1));
    let (log, daily) = (demo.activity.clone(), demo.daily.clone());
    let observe = move |event: &ActivityEvent| {
        log.observe(event);
        daily.observe(event);
        recorder.observe(event);
    };
    let spend = &demo.spend;
    let login =
        LoginApi::new(demo.sessions.clone(), demo.accounts.clone()).audit(Arc::clone(&demo.audit));
    let standard = Router::new()
        .route(
            "/v1/sessions",
            get(sessions.layer(require(ForgScope::ReadSessions))),
        )
        .route(
            "/v1/rules",
            get(list_rules.layer(require(ForgScope::ReadRules)))
                .post(create_rule.layer(require(ForgScope::WriteRules))),
        )
        .route(
            "/v1/reports",
            get(reports.layer(require(ForgScope::ReadReports))),
        )
        .route("/v1/me", get(me))
        .with_state(demo.clone())
        .nest("/auth", login.logout_router())
        // The management API: sessions, and keys with `admin`, manage their owner's keys.
        .nest(
            "/v1",
            KeysApi::new(Arc::clone(&store))
                .allow_keys_with(ForgScope::Admin)
                .activity(demo.activity.clone())
                .usage(demo.daily.clone())
                .audit(Arc::clone(&demo.audit))
                .events(demo.events.events.clone())
                .webhooks(demo.events.webhooks.clone())
                .allow_webhooks_with(ForgScope::ManageWebhooks)
                .router(),
        )
        // "Monitor your usage via GET /api/billing/spend": sessions and admin keys.
        .nest(
            "/api",
            SpendApi::new(Arc::clone(&store), spend)
                .allow_keys_with(ForgScope::Admin)
                .router(),
        )
        .route_layer(limits.layer(forg::STANDARD));
    let ai = Router::new()
        .route("/v1/reviews", post(review))
        .route_layer(
            ServiceBuilder::new()
                // Paid AI: Pro or higher for every credential, sessions included.
                .layer(demo.plan_check.clone().require(Plan::Pro))
                .layer(limits.layer(forg::AI))
                .layer(limits.layer(TOKENS)) // the handler reports its tokens
                .layer(InFlightLimits::new().layer(REVIEWS_IN_FLIGHT))
                .layer(spend.layer(0).reports_at_most(REVIEW_COST)), // the handler reports its cost
        );
    let api = standard.merge(ai).layer(
        ServiceBuilder::new()
            .layer(ActivityLayer::new(observe)) // activity log, last use, tracing
            .limit_failures(FailureLimit::default())
            .layer(
                AuthLayer::new(store)
                    .sources(forg::credential_sources())
                    .sessions(demo.sessions.clone())
                    .expiry_notice(EXPIRY_NOTICE),
            )
            .layer(demo.plan_check.clone()), // 403 plan_required once a trial ends
    );
    let public = Router::new()
        .nest("/auth", login.login_router())
        .route("/auth/register-agent", post(register_agent))
        .route_layer(limits.layer(forg::AUTH))
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/metrics", get(prometheus))
        .route("/dashboard", get(dashboard))
        .with_state(demo.clone());

    let public = public.merge(events::receiver(demo.events.received.clone()));
    #[cfg(feature = "leak-intake")]
    let public = public.nest(
        "/leaks",
        tower_api_key::manage::LeakIntake::new(Arc::clone(&demo.keys))
            .public_key("quickstart-demo", *demo.events.scanner.verifying_key())
            .events(demo.events.events.clone())
            .router(),
    );
    public.merge(api)
}

/// What every handler shows about its caller.
fn caller(identity: &Principal) -> Value {
    json!({
        "owner": identity.owner(),
        "credential": identity.kind().as_str(),
        "key_id": identity.key_id().as_str(),
        "environment": identity.environment(),
        "scopes": identity.scopes::<ForgScope>(),
    })
}

/// An error in the FORG body shape.
fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// The caller, and its owner's plan (with the trial's end while one runs).
async fn me(State(demo): State<Demo>, identity: Principal) -> Json<Value> {
    let owner = identity.owner();
    let plan = demo.plans.plan_of(owner).as_str();
    let trial_ends_at = demo.plans.trial_ends_at(owner).map(rfc3339);
    let mut data = caller(&identity);
    data["plan"] = json!(plan);
    data["trial_ends_at"] = json!(trial_ends_at);
    Json(json!({ "data": data }))
}

/// The documented body is `{"email", "password"}`; `name` (the key's) is optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterAgent {
    email: String,
    password: String,
    name: Option<String>,
}

/// `POST /auth/register-agent`: an agent identity of its own, and a `fos_` key scoped to
/// it (shown once). 409 when the e-mail is taken, 422 naming the field when the password
/// is too short, the e-mail is not one or the name is not plain text.
async fn register_agent(
    State(demo): State<Demo>,
    body: Result<ApiJson<RegisterAgent>, ApiError>,
) -> Response {
    let ApiJson(agent) = match body {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    if agent.password.chars().count() < MIN_PASSWORD {
        let message = format!("at least {MIN_PASSWORD} characters");
        return ApiError::invalid([("password", message)]).into_response();
    }
    let email = agent.email.trim();
    if email.len() < 3 || !email.contains('@') || email.contains(char::is_whitespace) {
        return ApiError::invalid([("email", "an e-mail address")]).into_response();
    }
    // Without a name, the key is named after the agent's e-mail.
    let name = agent
        .name
        .unwrap_or_else(|| format!("agent {email}").chars().take(100).collect());
    // Validated before the account exists, so a refused key leaves no account behind.
    let Ok(id) = KeyId::generate() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            "Try again",
        );
    };
    let agent_id = format!("agent_{}", id.as_str().trim_start_matches("key_"));
    let new = match agent_key(agent_id.clone(), &name, &KeyFamily::FOS, email) {
        Ok(new) => new,
        Err(error) => return error.into_response(),
    };
    if demo.accounts.taken(email) {
        return error(
            StatusCode::CONFLICT,
            "email_taken",
            "An account with this email already exists",
        );
    }
    let scopes: ScopeSet<ForgScope> = [ForgScope::ReadRules, ForgScope::ReadReports].into();
    let (accounts, email, password, owner) = (
        demo.accounts.clone(),
        email.to_owned(),
        agent.password,
        agent_id.clone(),
    );
    let created =
        tokio::task::spawn_blocking(move || accounts.create(&email, &password, &owner, scopes))
            .await;
    if !matches!(created, Ok(Some(()))) {
        // Lost a race for the same e-mail.
        return error(
            StatusCode::CONFLICT,
            "email_taken",
            "An account with this email already exists",
        );
    }
    // A new account: 14 days of Pro, then Free.
    let trial_ends_at = demo.plans.start_trial(agent_id.clone(), Plan::Pro, TRIAL);
    // The agent owns its key; who registered it is kept on the record.
    let new = new.scopes(scopes);
    match demo.keys.issue(new).await {
        Ok(issued) => {
            let key_id = issued.record().id().clone();
            demo.budgets.set_key_credits(key_id.clone(), AGENT_CREDITS);
            let body = json!({ "data": {
                "agent_id": agent_id,
                "key": issued.key().expose_secret(),
                "key_id": key_id.as_str(),
                "scopes": scopes,
                "plan": Plan::Pro.as_str(),
                "trial_ends_at": rfc3339(trial_ends_at),
                "credits": AGENT_CREDITS,
            }});
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            "Keys are temporarily unavailable",
        ),
    }
}

/// The dashboard: plain HTML and JavaScript on the management API, the session cookie and
/// the CSRF header; no build step.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The crate's metrics (and any other the process records) in Prometheus' text format,
/// without a credential, as Prometheus scrapes; in production serve it on an internal
/// listener instead of the public one.
async fn prometheus(State(demo): State<Demo>) -> Response {
    match &demo.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Readiness: 200 when the key store and the session store answer (each within 1 s), 503
/// naming the one that does not. With networked stores this is a `PING` or `SELECT 1`.
async fn ready(State(demo): State<Demo>) -> (StatusCode, Json<Value>) {
    use tower_api_key::KeyStore;
    async fn check(
        ready: impl std::future::Future<Output = Result<(), impl std::fmt::Display>>,
    ) -> &'static str {
        match tokio::time::timeout(std::time::Duration::from_secs(1), ready).await {
            Ok(Ok(())) => "ok",
            Ok(Err(_)) => "unavailable",
            Err(_) => "timeout",
        }
    }
    let keys = check(demo.keys.ready()).await;
    let sessions = check(demo.sessions.store().ready()).await;
    let ready = keys == "ok" && sessions == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": { "keys": keys, "sessions": sessions },
    });
    (status, Json(body))
}

async fn sessions(identity: Principal) -> Json<Value> {
    Json(json!({
        "data": [{ "id": "ses_1", "events": 42 }],
        "caller": caller(&identity),
    }))
}

async fn list_rules(identity: Principal) -> Json<Value> {
    Json(json!({
        "data": [{ "id": "rule_1", "budget_usd": 100 }],
        "caller": caller(&identity),
    }))
}

async fn create_rule(identity: Principal) -> (StatusCode, Json<Value>) {
    let body = json!({ "data": { "id": "rule_2" }, "caller": caller(&identity) });
    (StatusCode::CREATED, Json(body))
}

/// An AI route: the cost is known once the work is done, so it is reported afterwards.
/// A review: `?tokens=N` (1 to 10,000; 1,000 by default) is what the model used,
/// `?think_ms=N` (at most 2,000) how long it thought.
async fn review(identity: Principal, RawQuery(query): RawQuery) -> impl IntoResponse {
    let param = |name: &str| {
        query.as_deref().unwrap_or("").split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.parse::<u64>().ok()).flatten()
        })
    };
    let think = param("think_ms").unwrap_or(0).min(2_000);
    if think > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(think)).await;
    }
    let tokens = param("tokens").unwrap_or(1_000).clamp(1, 10_000);
    let body = Json(json!({
        "data": { "review": "looks good", "score": 0.93, "tokens": tokens },
        "caller": caller(&identity),
    }));
    let units = ReportedUnits(u32::try_from(tokens).unwrap_or(10_000));
    (Extension(ReportedCost(REVIEW_COST)), Extension(units), body)
}

async fn reports(identity: Principal) -> Json<Value> {
    Json(json!({
        "data": { "cost_usd": 12.5 },
        "caller": caller(&identity),
    }))
}

fn listen_address() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut addr = std::env::var("ADDR").ok();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = Some(args.next().ok_or("--addr needs a value")?),
            other => match other.strip_prefix("--addr=") {
                Some(value) => addr = Some(value.to_owned()),
                None => return Err(format!("unknown argument `{other}` (try --addr HOST:PORT)")),
            },
        }
    }
    let addr = addr.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    addr.parse()
        .map_err(|e| format!("invalid address `{addr}`: {e}"))
}

fn print_banner(addr: SocketAddr, keys: &DemoKeys, demo: &Demo) {
    let base = format!("http://{addr}");
    let live = keys.live.key().expose_secret();
    let test = keys.test.key().expose_secret();
    let fos = keys.fos.key().expose_secret();
    let trial = keys.trial.key().expose_secret();
    let live_id = &keys.live.record().id();
    let test_id = &keys.test.record().id();
    println!("tower-api-key quickstart listening on {base}\n");
    println!("Keys, shown once (the store keeps only their SHA-256 digests):");
    for (label, issued) in [
        ("live", &keys.live),
        ("test", &keys.test),
        ("fos ", &keys.fos),
        ("trial", &keys.trial),
    ] {
        let record = issued.record();
        println!(
            "  {label}  {}\n        id {}  scopes: {}",
            issued.key().expose_secret(),
            record.id(),
            record.scopes()
        );
    }
    println!("\nDemo login (browser sessions): {DEMO_EMAIL} / {DEMO_PASSWORD}");
    let login = format!(r#"{{"email":"{DEMO_EMAIL}","password":"{DEMO_PASSWORD}"}}"#);
    let csrf = "CSRF=$(awk '$6==\"forge_csrf\"{print $7}' cookies.txt)";
    #[cfg_attr(not(feature = "leak-intake"), allow(unused_mut))] // the leak line is pushed
    let mut tries = vec![
        ("public".to_owned(), format!("curl -i {base}/health")),
        (
            "readiness (the stores answer)".to_owned(),
            format!("curl -i {base}/health/ready"),
        ),
        (
            "metrics, Prometheus text format (serve on an internal port in production)".to_owned(),
            format!("curl -s {base}/metrics | grep tower_api_key"),
        ),
        ("200: live key, read:sessions".to_owned(), format!("curl -i {base}/v1/sessions -H 'Authorization: Bearer {live}'")),
        ("200: fos_ key in the ForgeOS header".to_owned(), format!("curl -i {base}/v1/rules -H 'X-ForgeOS-API-Key: {fos}'")),
        ("403 insufficient_scope: write:rules required".to_owned(), format!("curl -i -X POST {base}/v1/rules -H 'Authorization: Bearer {live}'")),
        ("201: the test key is admin".to_owned(), format!("curl -i -X POST {base}/v1/rules -H 'Authorization: Bearer {test}'")),
        ("401: no key".to_owned(), format!("curl -i {base}/v1/sessions")),
        (
            "200 x10, then 429 (AI routes: 10/min per key)".to_owned(),
            format!("for i in $(seq 11); do curl -s -o /dev/null -w '%{{http_code}} ' -X POST {base}/v1/reviews -H 'Authorization: Bearer {test}'; done; echo"),
        ),
        ("429 with Retry-After and RateLimit headers".to_owned(), format!("curl -i -X POST {base}/v1/reviews -H 'Authorization: Bearer {test}'")),
        (
            "200 x3, then 402: the live key's spend cap (30 units, 10 per review)".to_owned(),
            format!("for i in $(seq 4); do curl -s -o /dev/null -w '%{{http_code}} ' -X POST {base}/v1/reviews -H 'Authorization: Bearer {live}'; done; echo"),
        ),
        ("402 spend_cap_exceeded, Retry-After up to the month's end, Spend-Cap header".to_owned(), format!("curl -i -X POST {base}/v1/reviews -H 'Authorization: Bearer {live}'")),
        (
            format!("200 x2, then 402: the trial key's {TRIAL_CREDITS} units of one-time credits"),
            format!("for i in $(seq 3); do curl -s -o /dev/null -w '%{{http_code}} ' -X POST {base}/v1/reviews -H 'Authorization: Bearer {trial}'; done; echo"),
        ),
        ("402 without Retry-After or resets_at: credits never reset (Spend-Cap: limit=20, remaining=0)".to_owned(), format!("curl -i -X POST {base}/v1/reviews -H 'Authorization: Bearer {trial}'")),
        ("spend monitoring: the test keys' budgets (the test key has admin)".to_owned(), format!("curl -i {base}/api/billing/spend -H 'Authorization: Bearer {test}'")),
        ("log in: forge_session (HttpOnly) and forge_csrf cookies into cookies.txt".to_owned(), format!("curl -i -c cookies.txt -X POST {base}/auth/login -H 'Content-Type: application/json' -d '{login}'")),
        ("200: the session cookie authenticates (and shows the owner's plan)".to_owned(), format!("curl -i -b cookies.txt {base}/v1/me")),
        ("every budget of the owner, each with its period and reset (the dashboard draws them as bars)".to_owned(), format!("curl -i -b cookies.txt {base}/api/billing/spend")),
        ("403 csrf_failed: a state-changing request without the CSRF header".to_owned(), format!("curl -i -b cookies.txt -X POST {base}/v1/rules")),
        ("201: with the forge_csrf cookie's value in X-CSRF-Token".to_owned(), format!("{csrf}; curl -i -b cookies.txt -X POST {base}/v1/rules -H \"X-CSRF-Token: $CSRF\"")),
        ("log out: the session ends now, cookies cleared".to_owned(), format!("curl -i -b cookies.txt -c cookies.txt -X POST {base}/auth/logout -H \"X-CSRF-Token: $CSRF\"")),
        (
            "201: register an agent: a 14-day Pro trial (trial_ends_at) and a fos_ key scoped to it, with 1,000 AI units of credits (409 if the email is taken, 422 if the password is short)".to_owned(),
            format!(r#"AGENT=$(curl -s -X POST {base}/auth/register-agent -H 'Content-Type: application/json' -d '{{"email":"bot@example.com","password":"a long agent password"}}' | sed 's/.*"key":"\([^"]*\)".*/\1/'); echo $AGENT"#),
        ),
        ("the agent's plan: pro, until trial_ends_at; then free, and its fos_ key gets 403 plan_required".to_owned(), format!("curl -i {base}/v1/me -H \"X-ForgeOS-API-Key: $AGENT\"")),
        (
            "at most 2 reviews in flight per key: three at once (each thinking 1 s), one refused 429 with Retry-After: 1".to_owned(),
            format!("for i in 1 2 3; do curl -s -o /dev/null -w '%{{http_code}} ' -X POST '{base}/v1/reviews?think_ms=1000&tokens=100' -H \"X-ForgeOS-API-Key: $AGENT\" & done; wait; echo"),
        ),
        (
            "30,000 tokens a minute per key, each review reporting what it used: 10,000 each, 200 until the minute's tokens are spent, then 429 (RateLimit-Policy: \"tokens\")".to_owned(),
            format!("for i in 1 2 3 4; do curl -s -o /dev/null -w '%{{http_code}} ' -X POST '{base}/v1/reviews?tokens=10000' -H \"X-ForgeOS-API-Key: $AGENT\"; done; echo"),
        ),
        ("the dashboard: log in with the demo account, create, rotate and revoke keys".to_owned(), format!("open {base}/dashboard")),
        ("the management API: the owner's keys, newest first (keys with admin may manage)".to_owned(), format!("curl -i {base}/v1/keys -H 'Authorization: Bearer {test}'")),
        ("404: a test key never sees, rotates or revokes a live key".to_owned(), format!("curl -i -X POST {base}/v1/keys/{live_id}/revoke -H 'Authorization: Bearer {test}'")),
        ("the test key's version, its ETag (\"0\" until it changes)".to_owned(), format!("curl -s -D - -o /dev/null {base}/v1/keys/{test_id} -H 'Authorization: Bearer {test}' | grep -i etag")),
        ("update it in place, only if nobody changed it since (again: 412 precondition_failed)".to_owned(), format!("curl -i -X PATCH {base}/v1/keys/{test_id} -H 'Authorization: Bearer {test}' -H 'If-Match: \"0\"' -H 'Content-Type: application/json' -d '{{\"name\":\"renamed test key\"}}'")),
        ("the audit log: who changed what, from where, refusals too (newest first)".to_owned(), format!("curl -i '{base}/v1/audit?limit=5' -H 'Authorization: Bearer {test}'")),
        ("register a webhook to the quickstart's own receiver (the whsec_ secret is shown once)".to_owned(), format!("curl -i -X POST {base}/v1/webhooks -H 'Authorization: Bearer {test}' -H 'Content-Type: application/json' -d '{{\"url\":\"{base}/demo/webhook\"}}'")),
        (webhook_note(), format!("curl -s {base}/demo/webhook; curl -s {base}/v1/webhooks -H 'Authorization: Bearer {test}'")),
        ("revoke the test key through the management API (it has admin)".to_owned(), format!("curl -i -X POST {base}/v1/keys/{test_id}/revoke -H 'Authorization: Bearer {test}'")),
        ("401: revoked, from the next request on".to_owned(), format!("curl -i {base}/v1/sessions -H 'Authorization: Bearer {test}'")),
    ];
    #[cfg(feature = "leak-intake")]
    {
        let leaked = keys.fos.key().expose_secret();
        let (body, signature) = events::signed_report(&demo.events.scanner, leaked);
        tries.push((
            "report the fos_ key leaked, signed as a secret scanner would (GitHub's format): revoked, labelled true_positive, key.leaked to the webhook".to_owned(),
            format!("curl -i -X POST {base}/leaks -H 'Github-Public-Key-Identifier: quickstart-demo' -H 'Github-Public-Key-Signature: {signature}' -H 'Content-Type: application/json' -d '{body}'"),
        ));
    }
    #[cfg(not(feature = "leak-intake"))]
    let _ = demo;
    println!("\nTry:");
    for (what, line) in tries {
        println!("  # {what}\n  {line}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = listen_address()?;
    let store = key_store(SystemClock);
    let keys = issue_demo_keys(&store).await?;
    let mut demo = Demo::new(store, &keys);
    // Lookup latency as a histogram (buckets from 0.5 ms to 2.5 s), so dashboards can add
    // instances up; the rest are counters.
    let lookups = Matcher::Full(tower_api_key::metrics::STORE_LOOKUP_DURATION.to_owned());
    let buckets = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
    let recorder = PrometheusBuilder::new().set_buckets_for_metric(lookups, &buckets)?;
    demo.metrics = Some(recorder.install_recorder()?);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // Delivers the webhook outbox (signed, retried with backoff) once a second.
    #[cfg(feature = "webhooks")]
    let _sender = tower_api_key::webhooks::WebhookSender::new(demo.events.webhooks.clone())
        .spawn(std::time::Duration::from_secs(1));
    // Announces keys expiring within 7 days and keys due for rotation, a batch a minute.
    let scan =
        tower_api_key::events::KeyScan::new(Arc::clone(&demo.keys), demo.events.events.clone());
    tokio::spawn(scan.repeat());
    print_banner(listener.local_addr()?, &keys, &demo);
    axum::serve(
        listener,
        app(&demo).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        tokio::signal::ctrl_c().await.ok();
    })
    .await?;
    Ok(())
}

/// What the receiver's line says, by whether this build sends webhooks.
fn webhook_note() -> String {
    if cfg!(feature = "webhooks") {
        "after any key change: what the receiver got, and the endpoint's delivery state".to_owned()
    } else {
        "the outbox fills; deliveries need `--features webhooks` (the sender)".to_owned()
    }
}

/// A time as the crate's API writes it: RFC 3339, whole seconds, UTC.
fn rfc3339(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

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

use axum::handler::Handler;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower::ServiceBuilder;
use tower_api_key::activity::{
    ActivityEvent, ActivityLayer, ActivityLog, ActivityObserver, DailyUsage, LastUsedRecorder,
};
use tower_api_key::audit::MemoryAuditLog;
use tower_api_key::clock::{Clock, SystemClock};
use tower_api_key::failure_limit::FailureLimit;
use tower_api_key::forg;
use tower_api_key::key::Environment;
use tower_api_key::manage::{KeysApi, LoginApi, SpendApi};
use tower_api_key::rate_limit::{
    ClassName, InFlightLimit, InFlightLimits, Quota, RateClass, RateLimits,
};
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::KeyPolicy;
use tower_api_key::usage::{
    BudgetPer, Budgets, MemoryUsage, Plan, PlanLayer, PlanTable, SpendCaps,
};
use tower_api_key::{require, AuthLayer, ForgScope, MemoryKeyStore, ServiceBuilderExt};

#[path = "quickstart_parts/accounts.rs"]
mod accounts;
#[path = "quickstart_parts/banner.rs"]
mod banner;
#[path = "quickstart_parts/demo_keys.rs"]
mod demo_keys;
#[path = "quickstart_parts/events.rs"]
pub mod events;
#[path = "quickstart_parts/handlers.rs"]
mod handlers;

pub use accounts::Accounts;
use banner::print_banner;
pub use demo_keys::{issue_demo_keys, DemoKeys, TRIAL_CREDITS};
use handlers::{
    create_rule, dashboard, health, list_rules, me, prometheus, ready, register_agent, reports,
    review, sessions,
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

//! A FORG-style API on the embedded in-memory key store.
//!
//! ```text
//! cargo run --example quickstart               # listens on 127.0.0.1:8080
//! cargo run --example quickstart -- --addr 127.0.0.1:3000
//! ```
//!
//! At start it issues three keys (a live key with `read:sessions read:reports`, a test key
//! with `admin`, a `fos_` key with `read:rules`) and prints them with curl lines to try.
//! Routes are rate limited with the ForgeOS defaults: 100/min per key on standard routes,
//! 10/min per key on `POST /v1/reviews` (AI), 5/min per client address on the public
//! `POST /auth/login`; 20 refused keys per minute from one address block that address.
//! The AI route also has a spend cap: each review reports a cost of 10 units; live keys
//! may spend 10,000 a month and test keys 1,000 an hour, except the demo live key, capped
//! at 30 so that its fourth review gets 402 `spend_cap_exceeded`.

use std::net::SocketAddr;
use std::sync::Arc;
use tower_api_key::forg;
use tower_api_key::store::ManageKeys;

use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use tower::ServiceBuilder;
use tower_api_key::activity::ActivityLayer;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::rate_limit::{FailureLimit, RateLimits};
use tower_api_key::store::{IssuedKey, KeyId, ManageError};
use tower_api_key::usage::{BudgetPer, Budgets, ReportedCost, SpendCaps};
use tower_api_key::{require, ForgScope, MemoryKeyStore, NewKey, Principal, ServiceBuilderExt};

/// The organisation every demo key belongs to.
pub const OWNER: &str = "org_acme";

/// The three keys issued at start.
pub struct DemoKeys {
    pub live: IssuedKey<ForgScope>,
    pub test: IssuedKey<ForgScope>,
    pub fos: IssuedKey<ForgScope>,
}

impl DemoKeys {
    /// The AI route's budgets: per key, with the demo live key capped low.
    pub fn budgets(&self) -> Budgets {
        let budgets = Budgets::new()
            .default_cap(Environment::Live, 10_000)
            .default_cap(Environment::Test, 1_000);
        budgets.set_key_cap(self.live.record().id.clone(), Some(30));
        budgets
    }
}

/// What one AI review costs, reported by the handler after it ran.
pub const REVIEW_COST: u64 = 10;

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
    })
}

/// The whole application: `/health` and `/auth/login` are public, everything under `/v1`
/// needs a key. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the
/// per-address limits read the client's address from there.
pub fn app(store: Arc<MemoryKeyStore<ForgScope>>, budgets: Budgets) -> Router {
    let limits = RateLimits::new();
    let spend = SpendCaps::new(budgets).per(BudgetPer::Key);
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
        .route(
            "/v1/keys/{id}/revoke",
            post(revoke_key.layer(require(ForgScope::Admin))),
        )
        .with_state(Arc::clone(&store))
        .route_layer(limits.layer(forg::STANDARD));
    let ai = Router::new()
        .route("/v1/reviews", post(review))
        .route_layer(
            ServiceBuilder::new()
                .layer(limits.layer(forg::AI))
                .layer(spend.layer(0)), // the handler reports its cost
        );
    let api = standard.merge(ai).layer(
        ServiceBuilder::new()
            .layer(ActivityLayer::traced()) // `RUST_LOG`-style tracing of every outcome
            .limit_failures(FailureLimit::default())
            .authenticate(store),
    );
    let public = Router::new()
        .route("/auth/login", post(login))
        .route_layer(limits.layer(forg::AUTH))
        .route("/health", get(health));

    public.merge(api)
}

/// What every handler shows about its caller.
fn caller(identity: &Principal) -> Value {
    json!({
        "key_id": identity.key_id().as_str(),
        "environment": identity.environment(),
        "scopes": identity.scopes::<ForgScope>(),
    })
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
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
async fn review(identity: Principal) -> impl IntoResponse {
    let body = Json(json!({
        "data": { "review": "looks good", "score": 0.93 },
        "caller": caller(&identity),
    }));
    (Extension(ReportedCost(REVIEW_COST)), body)
}

/// A public route: no key, limited per client address.
async fn login() -> Json<Value> {
    Json(json!({ "data": { "session": "demo" } }))
}

async fn reports(identity: Principal) -> Json<Value> {
    Json(json!({
        "data": { "cost_usd": 12.5 },
        "caller": caller(&identity),
    }))
}

/// Revokes a key of the caller's own organisation; effective on the next request.
async fn revoke_key(
    State(store): State<Arc<MemoryKeyStore<ForgScope>>>,
    identity: Principal,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    let not_found = || {
        let body = json!({ "error": "Key not found", "code": "not_found", "status": 404 });
        (StatusCode::NOT_FOUND, Json(body))
    };
    // Keys of other owners are reported as missing: no way to probe for them.
    let Ok(id) = id.parse::<KeyId>() else {
        return not_found();
    };
    let Ok(Some(record)) = store.get(&id).await else {
        return not_found();
    };
    if record.owner != identity.owner() {
        return not_found();
    }
    match store.revoke(&record.id).await {
        Ok(revoked) => (
            StatusCode::OK,
            Json(json!({ "revoked": revoked.id.as_str(), "caller": caller(&identity) })),
        ),
        Err(_) => not_found(),
    }
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

fn print_banner(addr: SocketAddr, keys: &DemoKeys) {
    let base = format!("http://{addr}");
    let live = keys.live.key().expose_secret();
    let test = keys.test.key().expose_secret();
    let fos = keys.fos.key().expose_secret();
    let live_id = &keys.live.record().id;
    println!("tower-api-key quickstart listening on {base}\n");
    println!("Keys, shown once (the store keeps only their SHA-256 digests):");
    for (label, issued) in [
        ("live", &keys.live),
        ("test", &keys.test),
        ("fos ", &keys.fos),
    ] {
        let record = issued.record();
        println!(
            "  {label}  {}\n        id {}  scopes: {}",
            issued.key().expose_secret(),
            record.id,
            record.scopes
        );
    }
    let tries = [
        ("public".to_owned(), format!("curl -i {base}/health")),
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
        ("public, 5/min per client address".to_owned(), format!("curl -i -X POST {base}/auth/login")),
        ("revoke the live key (admin)".to_owned(), format!("curl -i -X POST {base}/v1/keys/{live_id}/revoke -H 'Authorization: Bearer {test}'")),
        ("401: revoked, from the next request on".to_owned(), format!("curl -i {base}/v1/sessions -H 'Authorization: Bearer {live}'")),
    ];
    println!("\nTry:");
    for (what, line) in tries {
        println!("  # {what}\n  {line}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = listen_address()?;
    let store = Arc::new(MemoryKeyStore::new());
    let keys = issue_demo_keys(&store).await?;
    let budgets = keys.budgets();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    print_banner(listener.local_addr()?, &keys);
    axum::serve(
        listener,
        app(store, budgets).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        tokio::signal::ctrl_c().await.ok();
    })
    .await?;
    Ok(())
}

//! The demo's handlers: what each route answers once the stack let the request through.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_api_key::key::KeyFamily;
use tower_api_key::manage::{agent_key, ApiError, ApiJson};
use tower_api_key::rate_limit::ReportedUnits;
use tower_api_key::store::{KeyId, ManageKeys};
use tower_api_key::usage::{Plan, ReportedCost};
use tower_api_key::{ForgScope, Principal, ScopeSet};

use super::banner::rfc3339;
use super::{Demo, AGENT_CREDITS, MIN_PASSWORD, REVIEW_COST, TRIAL};

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
pub(super) async fn me(State(demo): State<Demo>, identity: Principal) -> Json<Value> {
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
pub(super) struct RegisterAgent {
    email: String,
    password: String,
    name: Option<String>,
}

/// `POST /auth/register-agent`: an agent identity of its own, and a `fos_` key scoped to
/// it (shown once). 409 when the e-mail is taken, 422 naming the field when the password
/// is too short, the e-mail is not one or the name is not plain text.
pub(super) async fn register_agent(
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
pub(super) async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../dashboard.html"))
}

pub(super) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The crate's metrics (and any other the process records) in Prometheus' text format,
/// without a credential, as Prometheus scrapes; in production serve it on an internal
/// listener instead of the public one.
pub(super) async fn prometheus(State(demo): State<Demo>) -> Response {
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
pub(super) async fn ready(State(demo): State<Demo>) -> (StatusCode, Json<Value>) {
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

pub(super) async fn sessions(identity: Principal) -> Json<Value> {
    Json(json!({
        "data": [{ "id": "ses_1", "events": 42 }],
        "caller": caller(&identity),
    }))
}

pub(super) async fn list_rules(identity: Principal) -> Json<Value> {
    Json(json!({
        "data": [{ "id": "rule_1", "budget_usd": 100 }],
        "caller": caller(&identity),
    }))
}

pub(super) async fn create_rule(identity: Principal) -> (StatusCode, Json<Value>) {
    let body = json!({ "data": { "id": "rule_2" }, "caller": caller(&identity) });
    (StatusCode::CREATED, Json(body))
}

/// An AI route: the cost is known once the work is done, so it is reported afterwards.
/// A review: `?tokens=N` (1 to 10,000; 1,000 by default) is what the model used,
/// `?think_ms=N` (at most 2,000) how long it thought.
pub(super) async fn review(identity: Principal, RawQuery(query): RawQuery) -> impl IntoResponse {
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

pub(super) async fn reports(identity: Principal) -> Json<Value> {
    Json(json!({
        "data": { "cost_usd": 12.5 },
        "caller": caller(&identity),
    }))
}

//! `GET /billing/spend` (issue 25.1): the caller's owner's budgets in their current periods,
//! read without charging, on a fake clock; authorized like the management API.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use common::*;
use http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::Layer;
use tower_api_key::clock::ManualClock;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::manage::SpendApi;
use tower_api_key::store::KeyId;
use tower_api_key::usage::{BudgetPer, Budgets, MemoryUsage, SpendCaps, UsageBackend};
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

/// 2026-01-31T23:00:00Z: an hour before January ends.
const JANUARY_LAST_HOUR: u64 = 1_769_900_400;

type Store = MemoryKeyStore<ForgScope>;

struct Fixture {
    clock: ManualClock,
    store: Arc<Store>,
    app: Router,
    budgets: Budgets,
}

fn fixture<B: UsageBackend>(per: BudgetPer, backend: impl FnOnce(&ManualClock) -> B) -> Fixture {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(JANUARY_LAST_HOUR));
    let store =
        Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy().clock(clock.clone())));
    let budgets = Budgets::new()
        .default_cap(Environment::Live, 100)
        .default_cap(Environment::Test, 20);
    let caps = SpendCaps::backed_by(budgets.clone(), backend(&clock)).per(per);
    let app = Router::new()
        .route("/v1/ai", post(|| async { "done" }).layer(caps.layer(10)))
        .nest(
            "/api",
            SpendApi::new(Arc::clone(&store), &caps)
                .allow_keys_with(ForgScope::Admin)
                .router(),
        );
    let app = Router::new().fallback_service(AuthLayer::new(Arc::clone(&store)).layer(app));
    Fixture {
        clock,
        store,
        app,
        budgets,
    }
}

impl Fixture {
    async fn issue(&self, owner: &str, name: &str, family: &KeyFamily) -> String {
        self.issue_with_id(owner, name, family).await.0
    }

    async fn issue_with_id(&self, owner: &str, name: &str, family: &KeyFamily) -> (String, KeyId) {
        let issued = self
            .store
            .issue(NewKey::new(owner, name, family).scopes(ForgScope::Admin))
            .await
            .unwrap();
        let id = issued.record().id().clone();
        (issued.key().expose_secret().to_owned(), id)
    }

    async fn call(&self, method: &str, path: &str, key: &str) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        send(self.app.clone(), request).await
    }

    async fn budgets(&self, key: &str) -> Value {
        let answer = self.call("GET", "/api/billing/spend", key).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.json()["data"].clone()
    }
}

#[tokio::test]
async fn per_owner_each_environment_is_one_budget_with_its_period() {
    let f = fixture(BudgetPer::Owner, |clock| {
        MemoryUsage::new().with_clock(clock.clone())
    });
    let live = f.issue("org_1", "prod", &KeyFamily::FORG_LIVE).await;
    let live_too = f.issue("org_1", "prod 2", &KeyFamily::FORG_LIVE).await;
    let test = f.issue("org_1", "ci", &KeyFamily::FORG_TEST).await;
    f.issue("org_2", "other owner", &KeyFamily::FORG_LIVE).await;
    for key in [&live, &live_too, &live] {
        assert_eq!(f.call("POST", "/v1/ai", key).await.status, StatusCode::OK);
    }
    assert_eq!(f.call("POST", "/v1/ai", &test).await.status, StatusCode::OK);

    let data = f.budgets(&live).await;
    assert_eq!(data["owner"], "org_1");
    // A live key sees its environment's budget only.
    assert_eq!(
        data["budgets"],
        json!([{
            "environment": "live", "per": "owner", "key_id": null, "key_name": null,
            "period": "month", "spent": 30, "cap": 100, "remaining": 70,
            "period_start": "2026-01-01T00:00:00Z", "period_end": "2026-02-01T00:00:00Z",
        }])
    );
    let data = f.budgets(&test).await;
    assert_eq!(
        data["budgets"],
        json!([{
            "environment": "test", "per": "owner", "key_id": null, "key_name": null,
            "period": "hour", "spent": 10, "cap": 20, "remaining": 10,
            "period_start": "2026-01-31T23:00:00Z", "period_end": "2026-02-01T00:00:00Z",
        }])
    );
    // Reading charges nothing.
    assert_eq!(f.budgets(&live).await["budgets"][0]["spent"], 30);
}

/// Issue 36.1: with budgets per owner and one key on credits, the report showed only the
/// credits (`{"period":"lifetime","spent":0,"cap":50}`); the monthly budget the other keys
/// spend from was missing. Every budget any credential spends from is listed.
#[tokio::test]
async fn per_owner_a_key_on_credits_does_not_hide_the_monthly_budget() {
    let f = fixture(BudgetPer::Owner, |clock| {
        MemoryUsage::new().with_clock(clock.clone())
    });
    let (trial, trial_id) = f
        .issue_with_id("org_1", "trial", &KeyFamily::FORG_LIVE)
        .await;
    f.budgets.set_key_credits(trial_id, 50);
    let live = f.issue("org_1", "prod", &KeyFamily::FORG_LIVE).await;
    for _ in 0..3 {
        assert_eq!(f.call("POST", "/v1/ai", &live).await.status, StatusCode::OK);
    }
    let data = f.budgets(&trial).await;
    let budgets = data["budgets"].as_array().unwrap();
    let by_period = |period: &str| {
        budgets
            .iter()
            .find(|b| b["period"] == period)
            .unwrap_or_else(|| panic!("no {period} budget in {budgets:?}"))
            .clone()
    };
    assert_eq!(budgets.len(), 2, "{budgets:?}");
    assert_eq!(
        (&by_period("month")["spent"], &by_period("month")["cap"]),
        (&json!(30), &json!(100))
    );
    assert_eq!(
        (
            &by_period("lifetime")["spent"],
            &by_period("lifetime")["cap"]
        ),
        (&json!(0), &json!(50))
    );
}

#[tokio::test]
async fn per_key_every_active_key_has_its_budget_and_credits_have_no_end() {
    let f = fixture(BudgetPer::Key, |clock| {
        MemoryUsage::new().with_clock(clock.clone())
    });
    let older = f.issue("org_1", "older", &KeyFamily::FORG_LIVE).await;
    // A second later, so listed first (newest first, as the key list).
    f.clock.advance(Duration::from_secs(1));
    let (trial, trial_id) = f
        .issue_with_id("org_1", "trial", &KeyFamily::FORG_LIVE)
        .await;
    let (revoked, revoked_id) = f
        .issue_with_id("org_1", "revoked", &KeyFamily::FORG_LIVE)
        .await;
    f.store.revoke(&revoked_id).await.unwrap();
    f.budgets.set_key_credits(trial_id.clone(), 1000);
    assert_eq!(
        f.call("POST", "/v1/ai", &trial).await.status,
        StatusCode::OK
    );
    assert_eq!(
        f.call("POST", "/v1/ai", &revoked).await.status,
        StatusCode::UNAUTHORIZED
    );
    let data = f.budgets(&older).await;
    let budgets = data["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), 3, "the revoked key has none: {budgets:?}");
    // Issue 36.1: what the owner's browser sessions spend from is no key's budget, and a
    // live key sees it too (before, only a session caller did).
    assert_eq!(
        (
            &budgets[0]["per"],
            &budgets[0]["key_id"],
            &budgets[0]["cap"]
        ),
        (&json!("owner"), &Value::Null, &json!(100))
    );
    let budgets = &budgets[1..];
    assert_eq!(budgets[0]["key_id"], trial_id.as_str());
    assert_eq!(budgets[0]["key_name"], "trial");
    assert_eq!(
        (
            &budgets[0]["period"],
            &budgets[0]["spent"],
            &budgets[0]["remaining"]
        ),
        (&json!("lifetime"), &json!(10), &json!(990))
    );
    assert!(budgets[0]["period_end"].is_null() && budgets[0]["period_start"].is_null());
    assert_eq!(budgets[1]["key_name"], "older");
    assert_eq!(
        (
            &budgets[1]["period"],
            &budgets[1]["spent"],
            &budgets[1]["period_end"]
        ),
        (&json!("month"), &json!(0), &json!("2026-02-01T00:00:00Z"))
    );
}

#[tokio::test]
async fn keys_without_the_scope_and_other_credentials_are_refused() {
    let f = fixture(BudgetPer::Owner, |clock| {
        MemoryUsage::new().with_clock(clock.clone())
    });
    let plain = f
        .store
        .issue(NewKey::new("org_1", "no admin", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadRules))
        .await
        .unwrap();
    let refused = f
        .call("GET", "/api/billing/spend", plain.key().expose_secret())
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["code"], "session_required");
    let anonymous = f.call("GET", "/api/billing/spend", "nope").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_failing_usage_backend_is_503() {
    let f = fixture(BudgetPer::Owner, |_| BrokenUsage { panics: false });
    let key = f.issue("org_1", "prod", &KeyFamily::FORG_LIVE).await;
    let answer = f.call("GET", "/api/billing/spend", &key).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["code"], "auth_unavailable");
}

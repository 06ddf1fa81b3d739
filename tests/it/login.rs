//! Issue 37.10: the login and logout routes the crate offers (`manage::LoginApi`): what
//! every session user wrote by hand. Checked from outside: status, body, cookies, and that
//! an ended session is refused.

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use serde_json::json;
use tower::Layer;
use tower_api_key::audit::{Actor, AuditAction, AuditLog, AuditQuery, MemoryAuditLog};
use tower_api_key::manage::{Account, LoginApi};
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::KeyPolicy;
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

use crate::common::{send, Answer};

type Store = MemoryKeyStore<ForgScope>;

fn app(keys: &Arc<Store>) -> Router {
    audited(keys, &Arc::new(MemoryAuditLog::new()))
}

/// The app, its logins and logouts recorded in `log`.
fn audited(keys: &Arc<Store>, log: &Arc<MemoryAuditLog>) -> Router {
    let sessions = Sessions::new(
        Arc::new(Store::new().with_policy(KeyPolicy::sessions())),
        CsrfSecret::generate().unwrap(),
    )
    .secure(false);
    let login = LoginApi::new(sessions.clone(), |email: &str, password: &str| {
        (email == "ada@example.com" && password == "correct horse").then(|| Account {
            owner: "org_1".to_owned(),
            scopes: ForgScope::ReadRules.into(),
        })
    })
    .audit(Arc::clone(log));
    let behind = AuthLayer::new(Arc::clone(keys))
        .sessions(sessions)
        .layer(Router::new().nest("/auth", login.logout_router()));
    Router::new()
        .nest("/auth", login.login_router())
        .fallback_service(behind)
}

async fn post(app: &Router, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut request = Request::post(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(
        app.clone(),
        request.body(Body::from(body.to_owned())).unwrap(),
    )
    .await
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn login_sets_the_cookies_and_logout_ends_the_session() {
    let keys = Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy()));
    let log = Arc::new(MemoryAuditLog::new());
    let app = audited(&keys, &log);

    let wrong = r#"{"email":"ada@example.com","password":"nope"}"#;
    let answer = post(&app, "/auth/login", &[JSON], wrong).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.json(),
        json!({"error": "Invalid email or password", "code": "invalid_credentials", "status": 401})
    );
    assert!(answer.headers.get("set-cookie").is_none());

    let extra = r#"{"email":"ada@example.com","password":"correct horse","admin":true}"#;
    let answer = post(&app, "/auth/login", &[JSON], extra).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.json()["code"], "validation_failed");
    let answer = post(&app, "/auth/login", &[JSON], "{").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let good = r#"{"email":"ada@example.com","password":"correct horse"}"#;
    let answer = post(&app, "/auth/login", &[JSON], good).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let body = answer.json();
    assert_eq!(
        (&body["data"]["owner"], &body["data"]["scopes"]),
        (&json!("org_1"), &json!(["read:rules"]))
    );
    assert!(body["data"]["expires_at"].as_str().unwrap().ends_with('Z'));
    let cookies: Vec<String> = answer
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let csrf = body["data"]["csrf_token"].as_str().unwrap();
    assert!(cookies[0].starts_with("session=fses_"), "{cookies:?}");
    assert_eq!(cookies[1], format!("csrf_token={csrf}"));
    let cookie = cookies.join("; ");

    // Logout is a state-changing session request: CSRF-checked like any.
    let answer = post(&app, "/auth/logout", &[("cookie", &cookie)], "").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.json()["code"], "csrf_failed");
    let answer = post(
        &app,
        "/auth/logout",
        &[("cookie", &cookie), ("x-csrf-token", csrf)],
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let cleared: Vec<&str> = answer
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert!(
        cleared.iter().all(|c| c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    // The ended session is refused.
    let answer = post(
        &app,
        "/auth/logout",
        &[("cookie", &cookie), ("x-csrf-token", csrf)],
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // The audit log: one start and one end of the same session (the refused login, with
    // no owner to file it under, is not an entry); never the cookie or the token.
    let entries = log.page(&AuditQuery::new("org_1")).await.unwrap();
    let actions: Vec<AuditAction> = entries.iter().rev().map(|e| e.action()).collect();
    assert_eq!(
        actions,
        [AuditAction::SessionStarted, AuditAction::SessionEnded]
    );
    assert_eq!(entries[0].actor(), entries[1].actor());
    assert!(matches!(entries[0].actor(), Actor::Session(_)));
    let written = format!("{entries:?}");
    let secret = cookies[0].trim_start_matches("session=");
    assert!(
        !written.contains(secret) && !written.contains(csrf),
        "{written}"
    );
}

#[tokio::test]
async fn logout_with_a_key_is_refused_and_revokes_nothing() {
    let keys = Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy()));
    let issued = keys
        .issue(NewKey::new(
            "org_1",
            "ci",
            &tower_api_key::key::KeyFamily::FORG_LIVE,
        ))
        .await
        .unwrap();
    let app = app(&keys);
    let bearer = format!("Bearer {}", issued.key().expose_secret());
    let answer = post(&app, "/auth/logout", &[("authorization", &bearer)], "").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["code"], "invalid_request");
    let record = keys.get(issued.record().id()).await.unwrap().unwrap();
    assert!(!record.revoked());
}

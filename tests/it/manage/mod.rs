//! The management API over loopback with a real HTTP client: every endpoint, every error,
//! and each authorization rule (two owners, a non-admin, a key trying to mint a key, CSRF).

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use reqwest::Client;
use serde_json::{json, Value};
use tower_api_key::activity::ActivityLayer;
use tower_api_key::activity::ActivityLog;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::manage::KeysApi;
use tower_api_key::session::{CsrfSecret, SessionCookies, Sessions};
use tower_api_key::store::KeyPolicy;
use tower_api_key::usage::{Plan, PlanTable};
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey, ScopeSet};

mod environments;
mod errors;
mod openapi;
mod validation;

pub(crate) type Store = MemoryKeyStore<ForgScope>;

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) keys: Arc<Store>,
}

/// `POST /login/{owner}/{scopes}` starts a session (the application's password check is not
/// the point here); everything else is the management API under `/api`, behind the layer.
pub(crate) async fn serve(configure: impl FnOnce(KeysApi<Store>) -> KeysApi<Store>) -> Server {
    let policy = tower_api_key::forg::key_policy().plans(
        PlanTable::new(Plan::Team)
            .owner("org_free", Plan::Free)
            .require(Environment::Live, Plan::Team),
    );
    let keys = Arc::new(Store::new().with_policy(policy));
    let sessions = Sessions::new(
        Arc::new(Store::new().with_policy(KeyPolicy::sessions())),
        CsrfSecret::generate().unwrap(),
    )
    .secure(false);
    let log = ActivityLog::default();
    let api = configure(KeysApi::new(Arc::clone(&keys)).activity(log.clone()));
    async fn login(
        State(sessions): State<Sessions<Store>>,
        headers: HeaderMap,
        Path((owner, scopes)): Path<(String, String)>,
    ) -> (SessionCookies, String) {
        let scopes: ScopeSet<ForgScope> = scopes.replace(',', " ").parse().unwrap();
        let started = sessions.start(&headers, owner, scopes).await.unwrap();
        let csrf = started.cookies().csrf_token().unwrap().to_owned();
        (started.into_cookies(), csrf)
    }
    let router = Router::new()
        .nest("/api", api.router())
        .route("/v1/ping", get(|| async { "pong" }))
        .layer(AuthLayer::new(Arc::clone(&keys)).sessions(sessions.clone()))
        .layer(ActivityLayer::new(log))
        .route("/login/{owner}/{scopes}", post(login))
        .with_state(sessions);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Server {
        base: format!("http://{addr}"),
        keys,
    }
}

/// A browser logged in as `owner` with `scopes`, and its CSRF token.
pub(crate) struct User {
    pub(crate) client: Client,
    pub(crate) csrf: String,
    pub(crate) base: String,
}

impl User {
    pub(crate) async fn login(server: &Server, owner: &str, scopes: &str) -> Self {
        let client = Client::builder().cookie_store(true).build().unwrap();
        let response = client
            .post(format!("{}/login/{owner}/{scopes}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let csrf = response.text().await.unwrap();
        Self {
            client,
            csrf,
            base: server.base.clone(),
        }
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("{}/api{path}", self.base))
            .header("x-csrf-token", &self.csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

pub(crate) async fn with_key(
    server: &Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", server.base))
        .header("authorization", format!("Bearer {key}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_key_lifecycle_through_every_endpoint() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules,write:rules").await;

    // Create: the plaintext once, a record without secret or digest.
    let (status, created) = alice
        .call("POST", "/keys", Some(json!({ "name": "ci", "environment": "test", "scopes": ["read:rules"], "metadata": { "team": "infra" } })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["record"]["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("forg_test_"));
    assert!(created["record"]["hint"]
        .as_str()
        .unwrap()
        .ends_with(&key[key.len() - 4..]));
    assert_eq!(created["record"]["scopes"], json!(["read:rules"]));
    assert_eq!(created["record"]["metadata"]["team"], "infra");
    assert!(created["record"].get("digest").is_none());
    assert_eq!(
        with_key(&server, &key, "GET", "/v1/ping", None).await.0,
        StatusCode::OK
    );

    // List (newest first) and get: never the key.
    alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "second", "environment": "live" })),
        )
        .await;
    let (status, listed) = alice.call("GET", "/keys", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"][0]["name"], "second");
    assert_eq!(listed["data"][1]["name"], "ci");
    assert!(!listed.to_string().contains(&key[10..]));
    let (status, shown) = alice.call("GET", &format!("/keys/{id}"), None).await;
    assert_eq!(
        (status, shown["data"]["status"].as_str()),
        (StatusCode::OK, Some("active"))
    );

    // Activity: the request above with the key, newest first, paginated.
    with_key(&server, &key, "GET", "/v1/ping", None).await;
    let (status, activity) = alice
        .call("GET", &format!("/keys/{id}/activity?limit=1"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(activity["data"][0]["outcome"], "ok");
    assert_eq!(activity["data"][0]["path"], "/v1/ping");
    assert_eq!(activity["data"][0]["method"], "GET");
    assert_eq!(activity["data"][0]["client"], "127.0.0.1");
    let at = activity["data"][0]["at"].as_str().expect("RFC 3339");
    assert!(at.ends_with('Z') && at.len() >= 20, "{at}");
    let before = activity["next_before"].as_u64().unwrap();
    let (_, older) = alice
        .call(
            "GET",
            &format!("/keys/{id}/activity?limit=5&before={before}"),
            None,
        )
        .await;
    assert_eq!(
        older["data"].as_array().unwrap().len(),
        1,
        "the first use only"
    );

    // Disable, enable.
    let (status, disabled) = alice
        .call("POST", &format!("/keys/{id}/disable"), None)
        .await;
    assert_eq!(
        (status, disabled["data"]["status"].as_str()),
        (StatusCode::OK, Some("disabled"))
    );
    assert_eq!(
        with_key(&server, &key, "GET", "/v1/ping", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    alice
        .call("POST", &format!("/keys/{id}/enable"), None)
        .await;
    assert_eq!(
        with_key(&server, &key, "GET", "/v1/ping", None).await.0,
        StatusCode::OK
    );

    // Rotate with grace: both work; then without: the new one only.
    let (status, rotated) = alice
        .call(
            "POST",
            &format!("/keys/{id}/rotate"),
            Some(json!({ "grace_seconds": 3600 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let successor = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(
        with_key(&server, &key, "GET", "/v1/ping", None).await.0,
        StatusCode::OK,
        "grace"
    );
    let successor_id = rotated["record"]["id"].as_str().unwrap().to_owned();
    let (status, again) = alice
        .call("POST", &format!("/keys/{successor_id}/rotate"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(
        with_key(&server, &successor, "GET", "/v1/ping", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let third = again["key"].as_str().unwrap().to_owned();

    // Revoke (POST and DELETE).
    let third_id = again["record"]["id"].as_str().unwrap().to_owned();
    let (status, revoked) = alice
        .call("DELETE", &format!("/keys/{third_id}"), None)
        .await;
    assert_eq!(
        (status, revoked["data"]["status"].as_str()),
        (StatusCode::OK, Some("revoked"))
    );
    assert_eq!(
        with_key(&server, &third, "GET", "/v1/ping", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = alice
        .call("POST", &format!("/keys/{id}/revoke"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        with_key(&server, &key, "GET", "/v1/ping", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn authorization_cannot_be_talked_around() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules,write:rules").await;
    let bob = User::login(&server, "org_b", "admin").await;
    let (_, created) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "a", "environment": "test", "scopes": ["read:rules"] })),
        )
        .await;
    let id = created["record"]["id"].as_str().unwrap();
    let key = created["key"].as_str().unwrap();

    // Another owner's key is 404, exactly like an unknown id.
    let unknown = bob
        .call("GET", "/keys/key_00000000000000000000000000", None)
        .await;
    for (method, path) in [
        ("GET", format!("/keys/{id}")),
        ("POST", format!("/keys/{id}/revoke")),
        ("POST", format!("/keys/{id}/rotate")),
        ("GET", format!("/keys/{id}/activity")),
        ("DELETE", format!("/keys/{id}")),
    ] {
        let answer = bob.call(method, &path, None).await;
        assert_eq!(answer, unknown, "{method} {path}");
    }
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(unknown.1["code"], "key_not_found");
    let (_, bobs) = bob.call("GET", "/keys", None).await;
    assert_eq!(bobs["data"], json!([]));

    // A non-admin cannot mint an admin key, nor rotate one.
    let (status, body) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "x", "environment": "test", "scopes": ["admin"] })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    let admin_key = server
        .keys
        .issue(NewKey::new("org_a", "admin", &KeyFamily::FORG_TEST).scopes(ForgScope::Admin))
        .await
        .unwrap();
    let (status, _) = alice
        .call(
            "POST",
            &format!("/keys/{}/rotate", admin_key.record().id()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A key cannot mint keys (default: sessions only), even an admin one.
    for caller in [key, admin_key.key().expose_secret()] {
        let (status, body) = with_key(
            &server,
            caller,
            "POST",
            "/api/keys",
            Some(json!({ "name": "k", "environment": "test" })),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("session_required"))
        );
        assert_eq!(
            with_key(&server, caller, "GET", "/api/keys", None).await.0,
            StatusCode::FORBIDDEN
        );
    }

    // Unsafe methods need the session's CSRF token.
    let forged = alice
        .client
        .post(format!("{}/api/keys", server.base))
        .json(&json!({ "name": "x", "environment": "test" }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(forged.json::<Value>().await.unwrap()["code"], "csrf_failed");
}

#[tokio::test]
async fn keys_with_the_chosen_scope_may_manage_their_own_environment() {
    let server = serve(|api| api.allow_keys_with(ForgScope::Admin)).await;
    let admin = server
        .keys
        .issue(NewKey::new("org_a", "admin", &KeyFamily::FORG_TEST).scopes(ForgScope::Admin))
        .await
        .unwrap();
    let plain = server
        .keys
        .issue(NewKey::new("org_a", "plain", &KeyFamily::FORG_TEST).scopes(ForgScope::WriteRules))
        .await
        .unwrap();
    let admin = admin.key().expose_secret();
    let (status, _) = with_key(
        &server,
        admin,
        "POST",
        "/api/keys",
        Some(json!({ "name": "k", "environment": "test", "scopes": ["read:rules"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = with_key(
        &server,
        admin,
        "POST",
        "/api/keys",
        Some(json!({ "name": "k", "environment": "live" })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("environment_not_allowed"))
    );
    let (status, _) = with_key(
        &server,
        plain.key().expose_secret(),
        "POST",
        "/api/keys",
        Some(json!({ "name": "k", "environment": "test" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

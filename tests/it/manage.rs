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

#[tokio::test]
async fn every_error_has_the_forg_shape() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;

    // 422 with every offending field.
    let (status, body) = alice
        .call("POST", "/keys", Some(json!({ "name": " ", "environment": "prod", "scopes": ["read:rules", "fly"], "expires_at": "1970-01-01T00:00:01Z", "metadata": { "Bad Name": "x" } })))
        .await;
    assert_eq!(
        (status, body["code"].as_str(), body["status"].as_u64()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("validation_failed"),
            Some(422)
        )
    );
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["name", "environment", "scopes", "expires_at", "metadata"]
    );
    let (status, body) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "n", "environment": "test", "admin": true })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")),
        "unknown field"
    );
    assert!(body["error"].as_str().unwrap().contains("unknown field"));

    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = alice
            .client
            .post(format!("{}/api/keys", server.base))
            .header("x-csrf-token", &alice.csrf)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = raw("{\"name\": ", Some("application/json")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = raw("{}", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
    let huge = format!(
        "{{\"name\": \"{}\", \"environment\": \"test\"}}",
        "x".repeat(20_000)
    );
    let response = alice
        .client
        .post(format!("{}/api/keys", server.base))
        .header("x-csrf-token", &alice.csrf)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "payload_too_large"
    );

    // 409: the document's own advice.
    for i in 0..10 {
        let (status, _) = alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": format!("k{i}"), "environment": "test" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "k11", "environment": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({ "error": "Maximum 10 keys per user. Delete unused keys before creating new ones.", "code": "key_limit_reached", "status": 409 })
    );

    // 403 when the owner's plan does not allow live keys.
    let free = User::login(&server, "org_free", "read:rules").await;
    let (status, body) = free
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "prod", "environment": "live" })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("plan_required"))
    );
    // Issue 37.3: the same words as the request path's refusal of a live key.
    assert_eq!(
        body["error"],
        "Live keys require a higher plan: upgrade to use them"
    );
    let (status, _) = free
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "sandbox", "environment": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // 404 for hostile ids, 422 for a bad query.
    for id in ["..%2F..", "key_\u{0}", &"k".repeat(500)] {
        let (status, _) = alice
            .call("GET", &format!("/keys/{}", urlencode(id)), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id:?}");
    }
    let (_, listed) = alice.call("GET", "/keys", None).await;
    let id = listed["data"][0]["id"].as_str().unwrap();
    let (status, _) = alice
        .call("GET", &format!("/keys/{id}/activity?limit=many"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn the_activity_log_stays_bounded() {
    use tower::Layer;
    let log = ActivityLog::new(3, 50);
    let store = Arc::new(
        Store::new().with_policy(
            tower_api_key::forg::key_policy()
                .max_active_per_owner(std::num::NonZeroUsize::new(1000).unwrap()),
        ),
    );
    let probe = common::Probe::new();
    let service = ActivityLayer::new(log.clone())
        .layer(AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>()));
    let mut issued = Vec::new();
    for i in 0..200 {
        let key = store
            .issue(NewKey::new("org", format!("k{i}"), &KeyFamily::FORG_LIVE))
            .await
            .unwrap();
        for _ in 0..5 {
            common::send(service.clone(), common::bearer(key.key().expose_secret())).await;
        }
        issued.push(key);
    }
    assert_eq!(log.keys(), 50, "at most 50 keys are kept");
    assert_eq!(
        log.recent(issued[199].record().id(), 100, None).len(),
        3,
        "3 entries per key"
    );
    assert!(
        log.recent(issued[0].record().id(), 100, None).is_empty(),
        "the stalest key was forgotten"
    );
}

/// Issue 21.1: a key acts only on keys of its own environment, on every endpoint; a key of
/// the other environment is answered exactly like an unknown id. Failed before the fix:
/// a test key rotated (201, a fresh `forg_live_`), disabled, revoked and deleted live keys
/// and listed them.
#[tokio::test]
async fn a_key_never_sees_or_touches_keys_of_the_other_environment() {
    let server = serve(|api| api.allow_keys_with(ForgScope::Admin)).await;
    let issue = |family: KeyFamily, name: &'static str| {
        let keys = Arc::clone(&server.keys);
        async move {
            keys.issue(NewKey::new("org_a", name, &family).scopes(ForgScope::Admin))
                .await
                .unwrap()
        }
    };
    let live = issue(KeyFamily::FORG_LIVE, "live admin").await;
    let test = issue(KeyFamily::FORG_TEST, "test admin").await;
    let live_target = issue(KeyFamily::FORG_LIVE, "live target").await;
    let test_target = issue(KeyFamily::FORG_TEST, "test target").await;

    for (caller, own, other) in [
        (&test, &test_target, &live_target),
        (&live, &live_target, &test_target),
    ] {
        let key = caller.key().expose_secret();
        let (status, listed) = with_key(&server, key, "GET", "/api/keys", None).await;
        assert_eq!(status, StatusCode::OK);
        let environments: Vec<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|record| record["environment"].as_str().unwrap())
            .collect();
        assert_eq!(environments.len(), 2, "{listed}");
        assert!(
            environments
                .iter()
                .all(|e| *e == caller.record().environment().as_str()),
            "{listed}"
        );
        for (method, path) in [
            ("GET", "/api/keys/{id}"),
            ("GET", "/api/keys/{id}/activity"),
            ("POST", "/api/keys/{id}/rotate"),
            ("POST", "/api/keys/{id}/revoke"),
            ("POST", "/api/keys/{id}/disable"),
            ("POST", "/api/keys/{id}/enable"),
            ("DELETE", "/api/keys/{id}"),
        ] {
            let at = |id: &str| path.replace("{id}", id);
            let unknown = with_key(&server, key, method, &at("key_unknown"), None).await;
            let other_env = with_key(
                &server,
                key,
                method,
                &at(other.record().id().as_str()),
                None,
            )
            .await;
            assert_eq!(unknown.0, StatusCode::NOT_FOUND);
            assert_eq!(other_env, unknown, "{method} {path}: like an unknown id");
        }
        // Nothing changed on the other environment's key.
        let untouched = server.keys.get(other.record().id()).await.unwrap().unwrap();
        assert!(!untouched.revoked() && !untouched.disabled() && untouched.revoked_at().is_none());
        assert_eq!(
            with_key(
                &server,
                other.key().expose_secret(),
                "GET",
                "/v1/ping",
                None
            )
            .await
            .0,
            StatusCode::OK
        );
        // The caller's own environment is still managed, on every endpoint.
        let id = own.record().id().as_str();
        for (method, path, expected) in [
            ("GET", format!("/api/keys/{id}"), StatusCode::OK),
            ("GET", format!("/api/keys/{id}/activity"), StatusCode::OK),
            ("POST", format!("/api/keys/{id}/disable"), StatusCode::OK),
            ("POST", format!("/api/keys/{id}/enable"), StatusCode::OK),
            // Last: the caller rotates itself (revoked at once).
            (
                "POST",
                format!("/api/keys/{}/rotate", caller.record().id()),
                StatusCode::CREATED,
            ),
        ] {
            let (status, body) = with_key(&server, key, method, &path, None).await;
            assert_eq!(status, expected, "{method} {path}: {body}");
        }
    }

    // Sessions (the dashboard) keep managing both environments of their owner.
    let alice = User::login(&server, "org_a", "admin").await;
    let (_, listed) = alice.call("GET", "/keys", None).await;
    let environments: std::collections::BTreeSet<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["environment"].as_str().unwrap())
        .collect();
    assert_eq!(
        environments.into_iter().collect::<Vec<_>>(),
        ["live", "test"]
    );
    for target in [&live_target, &test_target] {
        let (status, _) = alice
            .call(
                "POST",
                &format!("/keys/{}/revoke", target.record().id()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}

/// Issue 21.2: an `expires_at` past what the clock can count is a 422 naming the field,
/// not a panic ("overflow when adding duration to instant") that kills the connection.
/// Issue 22: the time is RFC 3339, as every time the API writes.
#[tokio::test]
async fn an_expiry_out_of_range_is_a_validation_error() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    for expires_at in [
        json!("10000-01-01T00:00:00Z"), // past RFC 3339
        json!("+10000-01-01T00:00:00Z"),
        json!("1970-01-01T00:00:00Z"), // the past
        json!("2026-02-30T00:00:00Z"),
        json!("253402300799"),
    ] {
        let (status, body) = alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": "k", "environment": "test", "expires_at": expires_at })),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{expires_at}: {body}"
        );
        assert_eq!(body["fields"][0]["field"], "expires_at");
    }
    for expires_at in [
        json!(-1),
        json!(1.5),
        json!("tomorrow"),
        json!(1e300),
        json!(253_402_300_799u64),
    ] {
        let (status, body) = alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": "k", "environment": "test", "expires_at": expires_at })),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{expires_at}: {body}"
        );
        assert_eq!(body["fields"][0]["field"], "expires_at", "{body}");
    }
    let (status, body) = alice
        .call(
            "POST",
            "/keys",
            Some(
                json!({ "name": "k", "environment": "test", "expires_at": "9999-12-31T23:59:59Z" }),
            ),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the last second of 9999 is fine"
    );
    // Every time the API writes is RFC 3339 in UTC.
    let record = &body["record"];
    assert_eq!(record["expires_at"], "9999-12-31T23:59:59Z");
    let created = record["created_at"].as_str().expect("a string");
    assert!(
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$")
            .unwrap()
            .is_match(created),
        "{created}"
    );
    assert_eq!(record["revoked_at"], Value::Null);
    let (status, body) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "k", "environment": "test", "expires_at": "9999-12-31T23:59:59.5-01:00" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

/// `/keys/{id}/rotate` of a test key `user` just created.
async fn rotate_path_of_a_new_key(user: &User) -> String {
    let (_, created) = user
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "k", "environment": "test" })),
        )
        .await;
    let id = created["record"]["id"].as_str().unwrap();
    format!("/keys/{id}/rotate")
}

/// Issue 21.7: JSON that misses or mistypes a field is 422 naming it, on every endpoint
/// with a body; 400 stays for bodies that are not JSON.
#[tokio::test]
async fn json_with_a_wrong_field_is_422_naming_the_field() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    let rotate = rotate_path_of_a_new_key(&alice).await;
    for (path, body, field) in [
        ("/keys", json!({ "environment": "test" }), "name"),
        ("/keys", json!({ "name": 7, "environment": "test" }), "name"),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "scopes": "admin" }),
            "scopes",
        ),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "scopes": [1] }),
            "scopes[0]",
        ),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "metadata": [] }),
            "metadata",
        ),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "colour": "red" }),
            "colour",
        ),
        ("/keys", json!([]), "body"),
        ("/keys", json!(null), "body"),
        (&rotate, json!({ "grace_seconds": "soon" }), "grace_seconds"),
        (&rotate, json!({ "grace_seconds": -5 }), "grace_seconds"),
    ] {
        let (status, answer) = alice.call("POST", path, Some(body.clone())).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")),
            "{body}: {answer}"
        );
        assert_eq!(answer["fields"][0]["field"], field, "{body}: {answer}");
        assert!(
            !answer.to_string().contains("line 1"),
            "no parser positions"
        );
    }
}

/// Issue 36.4: a 422 never repeats the value sent and speaks in a client's words.
/// Failed before: `{"grace_seconds": "1, expected hunter2-SECRET"}` answered
/// `expected hunter2-SECRET", expected u64` (serde's text searched for `", expected "`,
/// which matched inside the quoted value); and `501.0`, a JSON Schema integer, was refused.
#[tokio::test]
async fn a_422_names_the_field_in_words_and_never_repeats_the_value() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    let rotate = rotate_path_of_a_new_key(&alice).await;
    let rotate = rotate.as_str();
    let secret = "1, expected hunter2-SECRET";
    for (path, body, field, words) in [
        (
            rotate,
            json!({ "grace_seconds": secret }),
            "grace_seconds",
            "a whole number of seconds",
        ),
        (
            rotate,
            json!({ "grace_seconds": 1.5 }),
            "grace_seconds",
            "a whole number of seconds",
        ),
        (
            "/keys",
            json!({ "name": ["hunter2-SECRET"], "environment": "test" }),
            "name",
            "text",
        ),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "scopes": [secret] }),
            "scopes",
            "item 0 is not a known scope name",
        ),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "metadata": { "team": [secret] } }),
            "metadata.team",
            "text",
        ),
    ] {
        let (status, answer) = alice.call("POST", path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        let text = answer.to_string();
        assert!(!text.contains("hunter2"), "the value is repeated: {text}");
        assert!(
            !text.contains("u64") && !text.contains("a sequence"),
            "Rust words: {text}"
        );
        assert_eq!(answer["fields"][0]["field"], field, "{text}");
        assert!(
            answer["fields"][0]["message"]
                .as_str()
                .unwrap()
                .contains(words),
            "{text}"
        );
    }
    // An integral number written with a fraction is the integer the schema says.
    let (status, answer) = alice
        .call("POST", rotate, Some(json!({ "grace_seconds": 501.0 })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// Issue 21.8: bidi controls and invisible characters in names and metadata are refused
/// like control characters, so a name cannot display as another key's.
#[tokio::test]
async fn names_and_metadata_with_bidi_or_invisible_characters_are_refused() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    for spoof in [
        "prod\u{202E}tset",
        "ci\u{200B}",
        "a\u{2066}b\u{2069}",
        "\u{FEFF}deploy",
        "x\u{200D}y",
        "\u{061C}",
    ] {
        let (status, body) = alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": spoof, "environment": "test" })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{spoof:?}");
        assert_eq!(body["fields"][0]["field"], "name");
        let (status, body) = alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": "k", "environment": "test", "metadata": { "team": spoof } })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{spoof:?}");
        assert_eq!(body["fields"][0]["field"], "metadata");
    }
    let (status, _) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "déploiement — prod ✓", "environment": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "ordinary Unicode is fine");
}

/// Issue 22: `docs/openapi.json` is what `KeysApi::openapi` and `SpendApi::openapi`
/// generate from the route tables and the body types, so its schemas cannot drift from the
/// code. Regenerate it with `UPDATE_OPENAPI=1 cargo test --test it openapi`.
#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let store = Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy()));
    let caps = tower_api_key::usage::SpendCaps::new(tower_api_key::usage::Budgets::new());
    let mut document = KeysApi::new(Arc::clone(&store)).openapi();
    document.merge(tower_api_key::manage::SpendApi::new(store, &caps).openapi());
    let generated = document.to_pretty_json().unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(
        committed == generated,
        "docs/openapi.json differs from KeysApi::openapi() + SpendApi::openapi(): run UPDATE_OPENAPI=1 cargo test --test it openapi"
    );
    let spec: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(spec["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    // The schemas are the handlers' types: a key's times are RFC 3339 strings, a new key
    // refuses unknown fields.
    let key = &spec["components"]["schemas"]["Key"]["properties"];
    assert_eq!(key["created_at"]["format"], "date-time");
    assert_eq!(
        spec["components"]["schemas"]["NewKey"]["additionalProperties"],
        false
    );
    assert_eq!(key["rotation_due"]["type"], "boolean");
    let budget = &spec["components"]["schemas"]["Budget"]["properties"];
    assert_eq!(budget["period_end"]["format"], "date-time");
    assert!(spec["paths"]["/billing/spend"]["get"].is_object());
    // Every reference resolves.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut targets = Vec::new();
    refs(&spec, &mut targets);
    assert!(targets.len() > 20);
    for target in targets {
        let name = target.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            spec["components"]["schemas"].get(name).is_some(),
            "{target} is not in the document"
        );
    }
}

/// Every operation the document describes is served (an unknown id is the API's own JSON
/// 404, never the router's empty one or a 405).
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let webhooks = Arc::new(tower_api_key::webhooks::MemoryWebhookStore::new());
    let server = serve(|api| api.webhooks(webhooks)).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    let spec = KeysApi::new(Arc::new(
        Store::new().with_policy(tower_api_key::forg::key_policy()),
    ))
    .openapi();
    let mut operations = 0;
    for (path, item) in &spec.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("DELETE", item.delete.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
        ];
        for (method, described) in methods {
            let path = path.replace("{id}", "key_0123456789abcdef01234567");
            let body = match (method, path.as_str()) {
                ("POST", "/keys") => Some(json!({ "name": "k", "environment": "test" })),
                ("PATCH", _) => Some(json!({ "name": "k" })),
                ("POST", "/webhooks") => Some(json!({ "url": "https://hooks.example.com/" })),
                _ => None,
            };
            let (status, answer) = alice.call(method, &path, body).await;
            if described {
                operations += 1;
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(
                    answer.get("data").is_some()
                        || answer.get("key").is_some()
                        || answer["code"] == "key_not_found"
                        || answer["code"] == "webhook_not_found",
                    "{method} {path}: {status} {answer}"
                );
            } else {
                assert!(
                    status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND,
                    "{method} {path} is routed but not described: {status}"
                );
            }
        }
    }
    assert_eq!(operations, 17);
}

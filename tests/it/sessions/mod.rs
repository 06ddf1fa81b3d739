//! Browser sessions over loopback with a real HTTP client and its cookie jar: login sets
//! both cookies with the right attributes, GET with the cookie passes, state-changing
//! requests need the session's CSRF token and must be same-site, logout ends the session at
//! once, a pre-login cookie never survives login, expiry and idle timeouts run on a fake
//! clock, key headers take precedence, gRPC ignores cookies, hostile cookies are refused
//! cleanly, and sessions are rate limited per owner.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::*;
use http::Request;
use reqwest::header::{HeaderValue, COOKIE, SET_COOKIE};
use serde_json::{json, Value};
use tower::Layer;
use tower_api_key::clock::ManualClock;
use tower_api_key::forg;
use tower_api_key::key::KeyFamily;
use tower_api_key::principal::CredentialKind;
use tower_api_key::rate_limit::{ClassName, Quota, RateClass, RateLimits};
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::KeyPolicy;
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey, Principal};

mod cookies;
mod policies;

type Store = MemoryKeyStore<ForgScope>;

#[derive(Clone)]
struct App {
    sessions: Sessions<Store>,
    writes: Arc<AtomicUsize>,
}

async fn login(
    State(app): State<App>,
    headers: HeaderMap,
) -> (tower_api_key::session::SessionCookies, Json<Value>) {
    // The application checked the password here.
    let started = app
        .sessions
        .start(
            &headers,
            "user_1",
            [ForgScope::ReadSessions, ForgScope::WriteRules],
        )
        .await
        .expect("login");
    let csrf = started.cookies().csrf_token().unwrap().to_owned();
    (started.into_cookies(), Json(json!({ "csrf_token": csrf })))
}

async fn logout(
    State(app): State<App>,
    principal: Principal,
) -> (tower_api_key::session::SessionCookies, StatusCode) {
    (
        app.sessions.end(&principal).await.expect("logout"),
        StatusCode::NO_CONTENT,
    )
}

async fn me(principal: Principal) -> Json<Value> {
    Json(json!({ "owner": principal.owner(), "kind": principal.kind().as_str() }))
}

async fn write(State(app): State<App>, principal: Principal) -> (StatusCode, Json<Value>) {
    app.writes.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::CREATED,
        Json(json!({ "kind": principal.kind().as_str() })),
    )
}

struct Server {
    base: String,
    app: App,
    keys: Arc<Store>,
    clock: ManualClock,
}

async fn serve(configure: impl FnOnce(Sessions<Store>) -> Sessions<Store>) -> Server {
    let clock = ManualClock::new(start_time());
    let keys =
        Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy().clock(clock.clone())));
    let session_store =
        Arc::new(Store::new().with_policy(KeyPolicy::sessions().clock(clock.clone())));
    let sessions =
        configure(forg::sessions(session_store, CsrfSecret::generate().unwrap()).secure(false));
    let app = App {
        sessions: sessions.clone(),
        writes: Arc::default(),
    };
    let private = Router::new()
        .route("/v1/me", get(me))
        .route("/v1/rules", post(write))
        .route("/auth/logout", post(logout))
        .layer(AuthLayer::new(Arc::clone(&keys)).sessions(sessions));
    let router = Router::new()
        .route("/auth/login", post(login))
        .merge(private)
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Server {
        base: format!("http://{addr}"),
        app,
        keys,
        clock,
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

async fn json(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

/// Logs in with `client`; the CSRF token from the body.
async fn log_in(server: &Server, client: &reqwest::Client) -> String {
    let response = client
        .post(format!("{}/auth/login", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The `name=value` pairs the server set, as a `Cookie` header.
fn cookie_header(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
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
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn the_browser_flow_login_csrf_and_logout() {
    let server = serve(|s| s).await;
    let base = &server.base;
    let client = browser();

    // Login: both cookies, with the right attributes.
    let response = client
        .post(format!("{base}/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let set: Vec<String> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(set.len(), 2, "{set:?}");
    let session = &set[0];
    assert!(session.starts_with("forge_session=fses_"), "{session}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }
    assert!(
        !session.contains("Secure"),
        "switched off for plain HTTP: {session}"
    );
    let csrf_cookie = &set[1];
    assert!(csrf_cookie.starts_with("forge_csrf="), "{csrf_cookie}");
    assert!(csrf_cookie.contains("SameSite=Strict") && !csrf_cookie.contains("HttpOnly"));
    let old_cookies = cookie_header(&response);
    let csrf = json(response).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        csrf_cookie.contains(&csrf),
        "the body's token is the cookie's"
    );

    // GET with the cookie.
    let me = client.get(format!("{base}/v1/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        json(me).await,
        json!({ "owner": "user_1", "kind": "session" })
    );

    // POST without the CSRF header: 403, the handler never runs.
    let forged = client
        .post(format!("{base}/v1/rules"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let body = json(forged).await;
    assert_eq!(body["code"], "csrf_failed");
    assert_eq!(body["status"], 403);
    assert_eq!(
        body["error"],
        "CSRF check failed: send the forge_csrf cookie's value in the x-csrf-token header, from the same site"
    );
    assert_eq!(server.app.writes.load(Ordering::SeqCst), 0);

    // With it: 201.
    let written = client
        .post(format!("{base}/v1/rules"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), StatusCode::CREATED);
    assert_eq!(server.app.writes.load(Ordering::SeqCst), 1);

    // Another session's token: 403.
    let other = browser();
    let other_csrf = log_in(&server, &other).await;
    assert_ne!(other_csrf, csrf);
    let swapped = client
        .post(format!("{base}/v1/rules"))
        .header("x-csrf-token", &other_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(swapped.status(), StatusCode::FORBIDDEN);

    // Cross-site, even with the right token: 403.
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let cross = client
            .post(format!("{base}/v1/rules"))
            .header("x-csrf-token", &csrf)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(cross.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        assert_eq!(json(cross).await["code"], "csrf_failed");
    }
    let same_origin = client
        .post(format!("{base}/v1/rules"))
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), StatusCode::CREATED);
    assert_eq!(server.app.writes.load(Ordering::SeqCst), 2);

    // Logout (a state-changing request: with the token), cookies cleared.
    let logout = client
        .post(format!("{base}/auth/logout"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let cleared: Vec<&str> = logout
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cleared.iter().all(|c| c.contains("Max-Age=0")),
        "{cleared:?}"
    );

    // The same cookie, replayed by hand: 401, the same body as a bad key.
    let replayed = reqwest::Client::new()
        .get(format!("{base}/v1/me"))
        .header(COOKIE, &old_cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json(replayed).await,
        json!({"error": "Invalid API key", "code": "invalid_api_key", "status": 401})
    );
    // The other browser is still logged in.
    let still = other.get(format!("{base}/v1/me")).send().await.unwrap();
    assert_eq!(still.status(), StatusCode::OK);
}

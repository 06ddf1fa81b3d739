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

#[tokio::test]
async fn a_cookie_from_before_login_never_survives_it() {
    let server = serve(|s| s).await;
    let base = &server.base;
    let first = reqwest::Client::new()
        .post(format!("{base}/auth/login"))
        .send()
        .await
        .unwrap();
    let planted = cookie_header(&first);

    // The browser logs in carrying the planted cookie; it gets a fresh one.
    let second = reqwest::Client::new()
        .post(format!("{base}/auth/login"))
        .header(COOKIE, &planted)
        .send()
        .await
        .unwrap();
    let fresh = cookie_header(&second);
    assert_ne!(fresh, planted);
    let with = |cookie: &str| {
        reqwest::Client::new()
            .get(format!("{base}/v1/me"))
            .header(COOKIE, cookie.to_owned())
            .send()
    };
    assert_eq!(
        with(&planted).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(with(&fresh).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn sessions_expire_after_the_ttl_and_when_idle() {
    let server = serve(|s| {
        s.ttl(Duration::from_secs(3600))
            .idle_timeout(Duration::from_secs(600))
    })
    .await;
    let base = &server.base;
    let client = browser();
    log_in(&server, &client).await;
    let me = || client.get(format!("{base}/v1/me")).send();

    // Active every 5 minutes: never idle for 10.
    for _ in 0..6 {
        server.clock.advance(Duration::from_secs(300));
        assert_eq!(me().await.unwrap().status(), StatusCode::OK);
        tokio::task::yield_now().await; // let the activity record land
    }
    // 55 minutes after login; idle for 10 minutes now: 401.
    server.clock.advance(Duration::from_secs(600));
    assert_eq!(me().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // The absolute TTL, however active.
    log_in(&server, &client).await;
    for _ in 0..11 {
        server.clock.advance(Duration::from_secs(300));
        assert_eq!(me().await.unwrap().status(), StatusCode::OK);
        tokio::task::yield_now().await;
    }
    server.clock.advance(Duration::from_secs(300));
    assert_eq!(
        me().await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "an hour after login"
    );
}

#[tokio::test]
async fn a_key_header_takes_precedence_over_the_cookie() {
    let server = serve(|s| s).await;
    let base = &server.base;
    let client = browser();
    log_in(&server, &client).await;
    let key = server
        .keys
        .issue(NewKey::new("org_9", "ci", &KeyFamily::FORG_LIVE).scopes(ForgScope::WriteRules))
        .await
        .unwrap();
    let bearer = format!("Bearer {}", key.key().expose_secret());

    let me = client
        .get(format!("{base}/v1/me"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json(me).await,
        json!({ "owner": "org_9", "kind": "api_key" })
    );
    // Not subject to CSRF: a program's request.
    let written = client
        .post(format!("{base}/v1/rules"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), StatusCode::CREATED);
    assert_eq!(json(written).await["kind"], "api_key");
    // A bad key is refused even with a good cookie: the cookie is not a fallback.
    let bad = client
        .get(format!("{base}/v1/me"))
        .header(
            "authorization",
            "Bearer forg_live_0123456789abcdef0123456789abcdef",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn hostile_cookies_get_clear_errors() {
    let server = serve(|s| s).await;
    let base = &server.base;
    let login = reqwest::Client::new()
        .post(format!("{base}/auth/login"))
        .send()
        .await
        .unwrap();
    let good = cookie_header(&login);
    let session = good.split("; ").next().unwrap().to_owned();
    let key = server
        .keys
        .issue(NewKey::new("org_9", "ci", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let huge = format!("forge_session=fses_{}", "a".repeat(8000));
    let cases: Vec<(HeaderValue, StatusCode, &str)> = vec![
        (
            HeaderValue::from_str(&format!("{session}; {session}")).unwrap(),
            StatusCode::BAD_REQUEST,
            "duplicate",
        ),
        (
            HeaderValue::from_str(&format!("theme=dark; {session}; lang=en")).unwrap(),
            StatusCode::OK,
            "among others",
        ),
        (
            HeaderValue::from_str(&format!("=junk; ;;; a; {session}")).unwrap(),
            StatusCode::OK,
            "junk pairs skipped",
        ),
        (
            HeaderValue::from_str(&huge).unwrap(),
            StatusCode::UNAUTHORIZED,
            "huge",
        ),
        (
            HeaderValue::from_static("forge_session="),
            StatusCode::UNAUTHORIZED,
            "empty",
        ),
        (
            HeaderValue::from_str(
                &session
                    .to_uppercase()
                    .replace("FORGE_SESSION", "forge_session"),
            )
            .unwrap(),
            StatusCode::UNAUTHORIZED,
            "upper-case hex",
        ),
        (
            HeaderValue::from_str(&format!("forge_session={}", key.key().expose_secret())).unwrap(),
            StatusCode::UNAUTHORIZED,
            "an API key in the cookie",
        ),
        (
            HeaderValue::from_str(&format!(
                "forge_session=\"{}\"",
                &session["forge_session=".len()..]
            ))
            .unwrap(),
            StatusCode::UNAUTHORIZED,
            "quoted",
        ),
        (
            HeaderValue::from_bytes(b"forge_session=fses_\xff\xfe").unwrap(),
            StatusCode::BAD_REQUEST,
            "not UTF-8",
        ),
        (
            HeaderValue::from_static("Forge_Session=x"),
            StatusCode::UNAUTHORIZED,
            "names are case-sensitive: no credential",
        ),
    ];
    for (cookie, status, what) in cases {
        let response = reqwest::Client::new()
            .get(format!("{base}/v1/me"))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{what}");
        let body = json(response).await;
        assert!(
            body["code"].is_string() || status == StatusCode::OK,
            "{what}: {body}"
        );
    }
    // Two Cookie headers, the HTTP/2 way, each with the session: still a duplicate.
    let twice = reqwest::Client::new()
        .get(format!("{base}/v1/me"))
        .header(COOKIE, session.clone())
        .header(COOKIE, session.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(twice).await["code"], "invalid_request");
}

/// The layer without a server: gRPC, cookie headers marked sensitive, per-owner limits,
/// optional authentication, "log out everywhere".
#[tokio::test]
async fn grpc_ignores_cookies_and_headers_are_protected() {
    let (keys, clock) = store_with_clock();
    let sessions = forg::sessions(
        Arc::new(Store::new().with_policy(KeyPolicy::sessions().clock(clock))),
        CsrfSecret::generate().unwrap(),
    );
    let started = sessions
        .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
        .await
        .unwrap();
    let cookie = started.cookies().cookie_header();
    let probe = Probe::new();
    let service = AuthLayer::new(keys)
        .sessions(sessions.clone())
        .layer(probe.service::<String>());

    let grpc = Request::post("/forg.Rules/List")
        .header("content-type", "application/grpc")
        .header("cookie", &cookie)
        .body(String::new())
        .unwrap();
    let answer = send(service.clone(), grpc).await;
    assert_eq!(
        answer.header("grpc-status"),
        Some("16"),
        "unauthenticated: cookies are not read"
    );

    let get = Request::get("/v1/me")
        .header("cookie", &cookie)
        .body(String::new())
        .unwrap();
    assert_eq!(send(service.clone(), get).await.status, StatusCode::OK);
    let seen = probe.last();
    assert!(seen.headers["cookie"].is_sensitive());
    let principal = seen.extensions.get::<Principal>().unwrap();
    assert_eq!(principal.kind(), CredentialKind::Session);
    assert_eq!(
        sessions.csrf_token(principal).as_deref(),
        started.cookies().csrf_token()
    );

    // Log out everywhere.
    sessions
        .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
        .await
        .unwrap();
    assert_eq!(sessions.end_all("user_1").await.unwrap(), 2);
    let get = Request::get("/v1/me")
        .header("cookie", &cookie)
        .body(String::new())
        .unwrap();
    assert_eq!(send(service, get).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_of_one_owner_share_one_rate_limit_budget() {
    let (keys, clock) = store_with_clock();
    let sessions = forg::sessions(
        Arc::new(Store::new().with_policy(KeyPolicy::sessions().clock(clock.clone()))),
        CsrfSecret::generate().unwrap(),
    );
    let limits = RateLimits::backed_by(tower_api_key::rate_limit::GovernorBackend::on_clock(clock));
    let class = RateClass::per_key(
        ClassName::from_static("std"),
        Quota::per_minute(std::num::NonZeroU32::new(3).unwrap()),
    );
    let probe = Probe::new();
    let service = AuthLayer::new(keys)
        .sessions(sessions.clone())
        .layer(limits.layer(class).layer(probe.service::<String>()));
    let mut cookies = Vec::new();
    for _ in 0..4 {
        let started = sessions
            .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
            .await
            .unwrap();
        cookies.push(started.cookies().cookie_header());
    }
    let statuses: Vec<StatusCode> = futures_util::future::join_all(cookies.iter().map(|cookie| {
        let request = Request::get("/v1/me")
            .header("cookie", cookie)
            .body(String::new())
            .unwrap();
        send(service.clone(), request)
    }))
    .await
    .into_iter()
    .map(|answer| answer.status)
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        3,
        "four logins do not make four budgets: {statuses:?}"
    );
}

#[tokio::test]
async fn optional_authentication_lets_anonymous_requests_through_only() {
    let (keys, _clock) = store_with_clock();
    let key = issue(&keys, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let probe = Probe::new();
    let service = AuthLayer::new(keys)
        .optional()
        .layer(probe.service::<String>());

    let anonymous = Request::get("/").body(String::new()).unwrap();
    assert_eq!(
        send(service.clone(), anonymous).await.status,
        StatusCode::OK
    );
    assert!(probe.last().extensions.get::<Principal>().is_none());
    assert_eq!(
        send(service.clone(), bearer(key.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    assert!(probe.last().extensions.get::<Principal>().is_some());
    let bad = bearer("forg_live_0123456789abcdef0123456789abcdef");
    assert_eq!(
        send(service.clone(), bad).await.status,
        StatusCode::UNAUTHORIZED,
        "a bad key is still refused"
    );
    assert_eq!(probe.calls(), 2);

    // A scope requirement behind optional authentication: 401 for the anonymous, not 500.
    let guarded = AuthLayer::new(store_with_clock().0)
        .optional()
        .layer(tower_api_key::require(ForgScope::ReadRules).layer(probe.service::<String>()));
    let anonymous = Request::get("/").body(String::new()).unwrap();
    assert_eq!(
        send(guarded, anonymous).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// The 403 tells the client what this deployment calls its cookie and header, not the
/// defaults.
#[tokio::test]
async fn the_csrf_refusal_names_the_configured_cookie_and_header() {
    let server = serve(|s| {
        s.cookie_names("sid", "xsrf")
            .unwrap()
            .csrf_header(http::HeaderName::from_static("x-xsrf"))
    })
    .await;
    let client = browser();
    let csrf = log_in(&server, &client).await;
    let refused = client
        .post(format!("{}/v1/rules", server.base))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        json(refused).await["error"],
        "CSRF check failed: send the xsrf cookie's value in the x-xsrf header, from the same site"
    );
    assert_eq!(server.app.writes.load(Ordering::SeqCst), 0);
    let written = client
        .post(format!("{}/v1/rules", server.base))
        .header("x-xsrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), StatusCode::CREATED);
}

#[test]
fn cookies_are_secure_by_default_and_names_are_validated() {
    let sessions = forg::sessions(
        Arc::new(Store::new().with_policy(KeyPolicy::sessions())),
        CsrfSecret::generate().unwrap(),
    );
    let started = memory(sessions.start(&HeaderMap::new(), "u", ForgScope::ReadRules)).unwrap();
    for value in started.cookies().set_cookie_values() {
        assert!(value.to_str().unwrap().contains("Secure"));
        assert!(value.is_sensitive());
    }
    assert!(format!("{:?}", started.cookies()).contains("redacted"));
    assert!(sessions.clone().cookie_names("a b", "c").is_err());
    assert!(sessions.clone().cookie_names("same", "same").is_err());
    assert!(sessions.clone().cookie_names("sid", "xsrf").is_ok());
    assert!(CsrfSecret::from_bytes(&[0; 31]).is_err());
    assert_eq!(
        format!("{:?}", CsrfSecret::from_bytes(&[7; 32]).unwrap()),
        "CsrfSecret([redacted])"
    );
}

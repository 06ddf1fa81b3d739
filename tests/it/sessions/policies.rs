//! Sessions among the other rules: gRPC ignores cookies, one rate-limit budget per owner,
//! optional authentication, the CSRF refusal's names, secure cookies by default.

use super::*;

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

//! Cookies: one from before login never survives it, expiry after the TTL and when idle, a
//! key header's precedence, hostile cookies.

use super::*;

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

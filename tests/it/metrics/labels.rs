//! No metric label carries a secret, whatever the input.

use super::*;

/// Hostile input of every kind (keys, cookies, CSRF values, a class name is the
/// application's): no label value holds any of it, and every value is short.
#[tokio::test(flavor = "current_thread")]
async fn no_label_carries_a_secret() {
    let metrics = recording();
    let (store, _) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let key = issued.key().expose_secret().to_owned();
    let sessions = tower_api_key::session::Sessions::new(
        Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(KeyPolicy::sessions())),
        tower_api_key::session::CsrfSecret::generate().unwrap(),
    );
    let started = sessions
        .start(&http::HeaderMap::new(), "user", ForgScope::ReadRules)
        .await
        .unwrap();
    let csrf = started.cookies().csrf_token().unwrap().to_owned();
    let cookie_header = started
        .cookies()
        .set_cookie_values()
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let token = cookie_header
        .split("; ")
        .find_map(|c| c.strip_prefix("session="))
        .unwrap()
        .to_owned();
    let service = AuthLayer::new(Arc::clone(&store))
        .sources(forg::credential_sources())
        .sessions(sessions)
        .layer(Probe::new().service::<String>());
    let mut hostile = vec![
        key.clone(),
        format!("{key}x"),
        key.replace('a', "b"),
        "forg_live_\u{202e}0123456789abcdef0123456789abcde".to_owned(),
        "x".repeat(10_000),
    ];
    hostile.push(token.clone());
    for value in &hostile {
        let _ = send(service.clone(), bearer(value)).await;
        let mut request = http::Request::new(String::new());
        if let Ok(v) = http::HeaderValue::from_str(value) {
            request.headers_mut().insert("x-forgeos-api-key", v);
        }
        let _ = send(service.clone(), request).await;
    }
    // The session cookie with a wrong, then a right CSRF value on a write.
    for csrf_value in ["not-the-token", csrf.as_str()] {
        let request = http::Request::post("/")
            .header("cookie", &cookie_header)
            .header("x-csrf-token", csrf_value)
            .body(String::new())
            .unwrap();
        let _ = send(service.clone(), request).await;
    }
    let seen = recorded(&metrics.snapshotter);
    assert!(!seen.is_empty());
    // Any eight characters in a row of a secret's random part, of a key id, of an owner.
    let random = |secret: &str| secret.rsplit('_').next().unwrap().to_owned();
    let pieces: Vec<String> = [random(&key), random(&token), csrf.clone()]
        .iter()
        .chain(
            [
                issued.record().id().as_str().to_owned(),
                "user".to_owned(),
                "org_1".to_owned(),
            ]
            .iter(),
        )
        .flat_map(|secret| {
            let chars: Vec<char> = secret.chars().collect();
            let width = chars.len().min(8);
            chars
                .windows(width)
                .map(|w| w.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect();
    for (_, name, labels, _) in &seen {
        for (label, value) in labels {
            assert!(
                value.len() <= 32,
                "{name}{{{label}={value}}}: too long for a label"
            );
            for piece in &pieces {
                assert!(
                    !value.contains(piece.as_str()),
                    "{name}{{{label}={value}}} carries {piece}"
                );
            }
        }
    }
}

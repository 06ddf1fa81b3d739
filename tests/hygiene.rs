//! Log and debug hygiene: every `tracing` event (TRACE and up, all crates) and the `Debug` /
//! `Display` of every public type seen during a run of good and bad requests are captured,
//! and no key plaintext appears in them. Key headers reaching the inner service are
//! sensitive, or gone when stripped.

#[path = "it/common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

use std::net::SocketAddr;
use std::sync::Arc;
use tower_api_key::forg;
use tower_api_key::store::ManageKeys;

use axum::extract::ConnectInfo;
use common::*;
use http::{Request, StatusCode};
use regex::Regex;
use tower::{Layer, ServiceExt};
use tower_api_key::credential::CredentialSources;
use tower_api_key::failure_limit::FailureLimit;
use tower_api_key::key::{KeyFamilies, KeyFamily, KeyHasher};
use tower_api_key::rate_limit::RateLimits;
use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore, NewKey, Principal};

/// Anything that looks like a key with a real secret part (redacted forms have `…`).
fn leaked(text: &str) -> Vec<String> {
    let pattern = Regex::new(r"(forg_live_|forg_test_|fos_)[0-9a-fA-F]{8,}").unwrap();
    pattern
        .find_iter(text)
        .map(|m| m.as_str().to_owned())
        .collect()
}

#[tokio::test]
async fn no_key_plaintext_in_logs_or_debug_output() {
    let capture = LogCapture::install(tracing::Level::TRACE);

    let mut shown: Vec<String> = Vec::new();
    let store = Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
    let keys = quickstart::issue_demo_keys(&store).await.unwrap();
    let secrets: Vec<String> = [&keys.live, &keys.test, &keys.fos]
        .iter()
        .map(|k| k.key().expose_secret().to_owned())
        .collect();
    let app = quickstart::app(&quickstart::Demo::new(Arc::clone(&store), &keys));
    let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let call = |method: &str, path: &str, header: Option<(&str, String)>| {
        let mut request = Request::builder().method(method).uri(path);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let mut request = request.body(axum::body::Body::empty()).unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    };
    let bearer_of = |key: &str| Some(("authorization", format!("Bearer {key}")));
    let mut requests = vec![
        call("GET", "/v1/sessions", bearer_of(&secrets[0])),
        call(
            "GET",
            "/v1/rules",
            Some(("x-forgeos-api-key", secrets[2].clone())),
        ),
        call("POST", "/v1/rules", bearer_of(&secrets[0])),
        call("POST", "/v1/reviews", bearer_of(&secrets[1])),
        call("GET", "/v1/sessions", bearer_of(&secrets[0].to_uppercase())),
        call(
            "GET",
            "/v1/sessions",
            bearer_of(&format!("{}0", secrets[0])),
        ),
        call(
            "GET",
            "/v1/sessions",
            bearer_of("forg_live_0123456789abcdef0123456789abcdef"),
        ),
        call("GET", "/v1/sessions", None),
        call("POST", "/auth/login", None),
        call(
            "GET",
            "/v1/sessions?api_key=fos_0123456789abcdef0123456789abcdef",
            None,
        ),
    ];
    let mut both = call("GET", "/v1/sessions", bearer_of(&secrets[0]));
    both.headers_mut()
        .insert("x-forgeos-api-key", secrets[2].parse().unwrap());
    requests.push(both);
    requests.push(call(
        "POST",
        &format!("/v1/keys/{}/revoke", keys.live.record().id()),
        bearer_of(&secrets[1]),
    ));
    requests.push(call("GET", "/v1/sessions", bearer_of(&secrets[0])));
    for request in requests {
        let response = app.clone().oneshot(request).await.unwrap();
        shown.push(format!("{response:?}"));
        shown.push(format!(
            "{:?}",
            response.extensions().get::<tower_api_key::AuthRejection>()
        ));
    }

    // What the inner service sees: headers marked sensitive, or stripped.
    for strip in [false, true] {
        let probe = Probe::new();
        let service = AuthLayer::new(Arc::clone(&store))
            .strip_credentials(strip)
            .layer(probe.service::<String>());
        let answer = send(service, bearer(&secrets[2])).await;
        assert_eq!(answer.status, StatusCode::OK);
        let seen = probe.last();
        match seen.headers.get("authorization") {
            Some(value) => {
                assert!(!strip);
                assert!(value.is_sensitive());
            }
            None => assert!(strip),
        }
        shown.push(format!("{seen:?}"));
        shown.push(format!("{:?}", seen.extensions.get::<Principal>()));
    }

    // Debug and Display of the public types that hold or see keys.
    let families = KeyFamilies::builtin();
    let parsed = families.parse(&secrets[0]).unwrap();
    let fresh = store
        .issue(NewKey::new("other", "k", &KeyFamily::FORG_LIVE).scopes(ForgScope::Admin))
        .await
        .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {}", secrets[1]).parse().unwrap(),
    );
    let sources = CredentialSources::default();
    let credential = sources.extract(&headers).unwrap().unwrap();
    shown.extend([
        format!("{parsed:?}"),
        format!("{:?} {}", fresh.key(), fresh.key()),
        format!("{fresh:?}"),
        format!("{:?}", fresh.record()),
        format!("{credential:?}"),
        format!("{store:?}"),
        format!("{:?}", KeyHasher::peppered(&[1; 32]).unwrap()),
        format!("{:?}", AuthLayer::new(Arc::clone(&store))),
        format!("{:?}", RateLimits::new().layer(forg::STANDARD)),
        format!("{:?}", FailureLimit::default()),
        format!("{:?}", families.parse("forg_live_Z").unwrap_err()),
        format!(
            "{}",
            families.parse(&secrets[0].to_uppercase()).unwrap_err()
        ),
        serde_json::to_string(&**fresh.record()).unwrap(),
    ]);
    let mut secrets = secrets;
    secrets.push(fresh.key().expose_secret().to_owned());

    let logs = capture.text();
    assert!(
        logs.contains("api key activity"),
        "the run was logged: {logs}"
    );
    assert!(logs.contains("reason=\"unknown\""));
    let everything = format!("{logs}\n{}", shown.join("\n"));
    assert_eq!(
        leaked(&everything),
        Vec::<String>::new(),
        "key plaintext leaked"
    );
    for secret in &secrets {
        let tail = &secret[secret.len() - 12..];
        assert!(!everything.contains(tail), "part of a secret leaked");
    }
    // The checker itself finds a plaintext key.
    assert_eq!(leaked(&format!("x {} y", secrets[0])).len(), 1);
}

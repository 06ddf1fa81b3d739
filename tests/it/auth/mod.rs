//! The authentication layer through its public API: tower `oneshot` against a probe inner
//! service, checking status, body, headers and whether the inner service ran.

use crate::common;
use tower_api_key::forg;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response, StatusCode};
use tower::ServiceExt;
use tower::{Layer, Service};
use tower_api_key::credential::CredentialSources;
use tower_api_key::forg::X_FORGEOS_API_KEY;
use tower_api_key::key::{Environment, KeyFamily, KeyHasher};
use tower_api_key::reject::{AuthRejection, InvalidKeyReason, Unavailable};
use tower_api_key::store::ManageKeys;
use tower_api_key::store::{KeyRecord, KeyStore, ManageError, StoreErrorKind};
use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore, NewKey, Principal, ScopeSet};

mod options;
mod records;

const INVALID_BODY: &str = r#"{"error":"Invalid API key","code":"invalid_api_key","status":401}"#;

fn layer_on<St: KeyStore>(
    layer: &AuthLayer<St>,
    probe: &Probe,
) -> impl Service<
    Request<String>,
    Response = Response<tower_api_key::body::ResponseBody<http_body_util::Full<Bytes>>>,
    Error = std::convert::Infallible,
> + Clone {
    layer.layer(probe.service::<String>())
}

fn reason(answer: &Answer) -> Option<InvalidKeyReason> {
    match answer.extensions.get::<AuthRejection>()? {
        AuthRejection::InvalidApiKey { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[tokio::test]
async fn valid_bearer_key_reaches_inner_service_with_identity_and_scopes() {
    let (store, _clock) = store_with_clock();
    let issued = issue(
        &store,
        &KeyFamily::FORG_LIVE,
        [ForgScope::ReadSessions, ForgScope::ReadReports],
    );
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(store), &probe);

    let answer = send(service, bearer(issued.key().expose_secret())).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "inner");
    assert_eq!(probe.calls(), 1);
    let seen = probe.last();
    let identity = seen
        .extensions
        .get::<Principal>()
        .expect("identity in extensions");
    assert_eq!(identity.key_id(), issued.record().id());
    assert_eq!(identity.owner(), "org_1");
    assert_eq!(identity.environment(), Environment::Live);
    assert_eq!(identity.prefix(), "forg_live_");
    let scopes = seen
        .extensions
        .get::<ScopeSet<ForgScope>>()
        .expect("scopes in extensions");
    assert_eq!(scopes.to_string(), "read:sessions read:reports");
    let header = seen
        .headers
        .get("authorization")
        .expect("header kept by default");
    assert!(
        header.is_sensitive(),
        "credential header must be marked sensitive"
    );
}

#[tokio::test]
async fn forgeos_header_and_scheme_variants_are_accepted() {
    let (store, _clock) = store_with_clock();
    let fos = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
    let live = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let probe = Probe::new();
    let service = layer_on(
        &AuthLayer::new(store).sources(forg::credential_sources()),
        &probe,
    );

    let fos_key = fos.key().expose_secret();
    let live_key = live.key().expose_secret();
    let requests = [
        ("x-forgeos-api-key", fos_key.to_owned()),
        ("x-forgeos-api-key", format!("  {fos_key}\t")),
        ("authorization", format!("Bearer {live_key}")),
        ("authorization", format!("bearer {live_key}")),
        ("authorization", format!("BEARER {live_key}")),
        ("authorization", format!("Bearer \t {live_key}  ")),
        ("authorization", format!("Bearer {fos_key}")),
    ];
    for (i, (name, value)) in requests.iter().enumerate() {
        let request = Request::get("/")
            .header(*name, value)
            .body(String::new())
            .unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: variant {i}");
        assert_eq!(probe.calls(), i + 1);
    }
}

#[tokio::test]
async fn missing_malformed_unknown_revoked_and_expired_keys_get_one_identical_401() {
    let (store, clock) = store_with_clock();
    let revoked = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::Admin);
    store.revoke(revoked.record().id()).await.unwrap();
    let expiring = store
        .issue(
            NewKey::new("org_1", "short", &KeyFamily::FORG_LIVE)
                .expires_in(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(store), &probe);

    let cases: Vec<(Request<String>, InvalidKeyReason)> = vec![
        (
            Request::get("/").body(String::new()).unwrap(),
            InvalidKeyReason::Missing,
        ),
        (bearer("forg_live_not-a-key"), InvalidKeyReason::Malformed),
        (
            bearer("forg_live_A3F9E2C1B84D7F6E0A2C1D8E9F0B3C4D"),
            InvalidKeyReason::Malformed,
        ),
        (
            bearer("sk_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d"),
            InvalidKeyReason::Malformed,
        ),
        (
            bearer("forg_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d"),
            InvalidKeyReason::Unknown,
        ),
        (
            bearer(revoked.key().expose_secret()),
            InvalidKeyReason::Revoked,
        ),
        (
            bearer(expiring.key().expose_secret()),
            InvalidKeyReason::Expired,
        ),
    ];
    let mut first: Option<(HeaderMap, Bytes)> = None;
    for (request, expected) in cases {
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{expected:?}");
        assert_eq!(answer.body, INVALID_BODY, "{expected:?}");
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(reason(&answer), Some(expected), "the server sees why");
        // Issue 36.5: RFC 6750 §3.1, no credential at all: no error code. Failed before
        // (`invalid_token`). Nothing to hide: the client knows it sent nothing.
        if expected == InvalidKeyReason::Missing {
            assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
            continue;
        }
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#)
        );
        match &first {
            None => first = Some((answer.headers.clone(), answer.body.clone())),
            Some((headers, body)) => {
                assert_eq!(&answer.headers, headers, "{expected:?}: same headers");
                assert_eq!(&answer.body, body, "{expected:?}: same body");
            }
        }
    }
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_request() {
    let (store, _clock) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(Arc::clone(&store)), &probe);
    let key = issued.key().expose_secret();

    assert_eq!(
        send(service.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
    store.revoke(issued.record().id()).await.unwrap();
    let answer = send(service, bearer(key)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    match answer.extensions.get::<AuthRejection>() {
        Some(AuthRejection::InvalidApiKey {
            reason: InvalidKeyReason::Revoked,
            key_id,
            ..
        }) => {
            assert_eq!(key_id.as_ref(), Some(issued.record().id()));
        }
        other => panic!("unexpected rejection {other:?}"),
    }
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn ambiguous_requests_get_400_and_never_reach_the_store() {
    let (store, _clock) = store_with_clock();
    let a = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let b = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(Arc::clone(&store), Script::Delegate);
    let probe = Probe::new();
    let service = layer_on(
        &AuthLayer::new(Arc::clone(&scripted)).sources(forg::credential_sources()),
        &probe,
    );
    let (ka, kb) = (a.key().expose_secret(), b.key().expose_secret());

    let requests = [
        Request::get("/")
            .header("authorization", format!("Bearer {ka}"))
            .header("authorization", format!("Bearer {ka}"))
            .body(String::new()),
        Request::get("/")
            .header("x-forgeos-api-key", kb)
            .header("x-forgeos-api-key", kb)
            .body(String::new()),
        Request::get("/")
            .header("authorization", format!("Bearer {ka}"))
            .header("x-forgeos-api-key", kb)
            .body(String::new()),
        Request::get("/")
            .header("authorization", format!("Bearer {kb}"))
            .header("x-forgeos-api-key", kb)
            .body(String::new()),
        // A malformed key in one source is still a key sent: two sources, ambiguous.
        Request::get("/")
            .header(
                "authorization",
                http::HeaderValue::from_bytes(b"Bearer caf\xc3\xa9").unwrap(),
            )
            .header("x-forgeos-api-key", kb)
            .body(String::new()),
        Request::get("/")
            .header("authorization", "Bearer")
            .header("x-forgeos-api-key", kb)
            .body(String::new()),
        Request::get("/")
            .header("authorization", format!("Bearer {ka}"))
            .header("x-forgeos-api-key", " ")
            .body(String::new()),
    ];
    for request in requests {
        let answer = send(service.clone(), request.unwrap()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer.json()["code"], "invalid_request");
        assert_eq!(answer.json()["status"], 400);
        assert_eq!(answer.header("www-authenticate"), None);
    }
    assert_eq!(probe.calls(), 0);
    assert_eq!(scripted.lookups(), 0);
}

#[tokio::test]
async fn other_authorization_schemes_are_not_api_keys() {
    let (store, _clock) = store_with_clock();
    let fos = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
    let probe = Probe::new();
    let service = layer_on(
        &AuthLayer::new(store).sources(forg::credential_sources()),
        &probe,
    );

    let basic_only = Request::get("/")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(String::new())
        .unwrap();
    assert_eq!(
        send(service.clone(), basic_only).await.status,
        StatusCode::UNAUTHORIZED
    );

    let basic_and_key = Request::get("/")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .header("x-forgeos-api-key", fos.key().expose_secret())
        .body(String::new())
        .unwrap();
    assert_eq!(send(service, basic_and_key).await.status, StatusCode::OK);
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn configured_sources_only() {
    let (store, _clock) = store_with_clock();
    let live = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let key = live.key().expose_secret();
    let probe = Probe::new();
    let bearer_only = layer_on(
        &AuthLayer::new(Arc::clone(&store)).sources(CredentialSources::bearer()),
        &probe,
    );
    let header_only = layer_on(
        &AuthLayer::new(store).sources(CredentialSources::header(X_FORGEOS_API_KEY)),
        &probe,
    );
    let via_header = || {
        Request::get("/")
            .header("x-forgeos-api-key", key)
            .body(String::new())
            .unwrap()
    };

    assert_eq!(
        send(bearer_only.clone(), bearer(key)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(bearer_only, via_header()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(header_only.clone(), via_header()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(header_only, bearer(key)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(probe.calls(), 2);
}

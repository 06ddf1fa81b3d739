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

#[tokio::test]
async fn strip_credentials_removes_key_headers() {
    let (store, _clock) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(store).strip_credentials(true), &probe);

    let request = Request::get("/")
        .header(
            "authorization",
            format!("Bearer {}", issued.key().expose_secret()),
        )
        .header("x-request-id", "abc")
        .body(String::new())
        .unwrap();
    assert_eq!(send(service, request).await.status, StatusCode::OK);
    let seen = probe.last();
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.headers["x-request-id"], "abc");
}

#[tokio::test]
async fn refused_environment_gets_403_before_hashing() {
    let (store, _clock) = store_with_clock();
    let test_key = issue(&store, &KeyFamily::FORG_TEST, ForgScope::Admin);
    let live_key = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(Arc::clone(&store), Script::Delegate);
    let probe = Probe::new();
    let service = layer_on(
        &AuthLayer::new(Arc::clone(&scripted)).only_environment(Environment::Live),
        &probe,
    );

    let answer = send(service.clone(), bearer(test_key.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.body,
        r#"{"error":"Test keys are not accepted by this service","code":"environment_not_allowed","status":403}"#
    );
    assert_eq!(
        answer.header("www-authenticate"),
        Some(
            r#"Bearer error="insufficient_scope", error_description="test keys are not accepted""#
        )
    );
    assert_eq!(scripted.lookups(), 0, "refused before the store is asked");
    // An unknown test key is refused the same way: the prefix alone decides.
    let unknown = send(
        service.clone(),
        bearer("forg_test_00000000000000000000000000000000"),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);

    assert_eq!(
        send(service, bearer(live_key.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn store_failure_gives_503_with_retry_after_and_skips_the_inner_service() {
    let (store, _clock) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(store, Script::Fail);
    let probe = Probe::new();
    let service = layer_on(
        &AuthLayer::new(Arc::clone(&scripted)).retry_after(Duration::from_millis(2500)),
        &probe,
    );

    let answer = send(service.clone(), bearer(issued.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.body,
        r#"{"error":"Authentication is temporarily unavailable","code":"auth_unavailable","status":503}"#
    );
    assert_eq!(answer.header("retry-after"), Some("3"));
    assert_eq!(
        answer.header("www-authenticate"),
        None,
        "the client is not told its key is bad"
    );
    assert!(matches!(
        answer.extensions.get::<AuthRejection>(),
        Some(AuthRejection::Unavailable {
            cause: Unavailable::KeyStore(StoreErrorKind::Unavailable),
            ..
        })
    ));
    assert_eq!(probe.calls(), 0);

    // The service stays usable once the store recovers.
    scripted.set(Script::Delegate);
    assert_eq!(
        send(service, bearer(issued.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(probe.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn lookup_timeout_gives_503() {
    let (store, _clock) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(store, Script::Hang);
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(Arc::clone(&scripted)), &probe);

    let started = tokio::time::Instant::now();
    let answer = send(service.clone(), bearer(issued.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "default timeout on tokio's paused clock"
    );
    assert_eq!(answer.header("retry-after"), Some("5"));
    assert!(matches!(
        answer.extensions.get::<AuthRejection>(),
        Some(AuthRejection::Unavailable {
            cause: Unavailable::KeyStore(StoreErrorKind::Timeout),
            ..
        })
    ));

    // A slow answer inside a configured timeout is fine; past it, 503.
    scripted.set(Script::Slow(Duration::from_millis(400)));
    let patient = layer_on(
        &AuthLayer::new(Arc::clone(&scripted)).lookup_timeout(Duration::from_millis(500)),
        &probe,
    );
    assert_eq!(
        send(patient.clone(), bearer(issued.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    scripted.set(Script::Slow(Duration::from_millis(600)));
    assert_eq!(
        send(patient, bearer(issued.key().expose_secret()))
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn asynchronous_store_path_authenticates() {
    let (store, _clock) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FOS, ForgScope::ReadUsers);
    let scripted = ScriptedStore::new(store, Script::Delegate);
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(Arc::clone(&scripted)), &probe);

    let answer = send(service.clone(), bearer(issued.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(scripted.lookups(), 1);
    let seen = probe.last();
    assert_eq!(
        seen.extensions.get::<Principal>().unwrap().key_id(),
        issued.record().id()
    );
    assert!(seen.headers["authorization"].is_sensitive());

    let unknown = send(service, bearer("fos_00000000000000000000000000000000")).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn a_record_with_another_digest_is_refused() {
    // A store whose index is fuzzy returns the wrong record: the constant-time comparison
    // of the stored digest catches it.
    let (store, _clock) = store_with_clock();
    let victim = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::Admin);
    let scripted = ScriptedStore::new(
        Arc::clone(&store),
        Script::Always(Arc::clone(victim.record())),
    );
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(scripted), &probe);

    let answer = send(
        service,
        bearer("forg_live_0123456789abcdef0123456789abcdef"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.body, INVALID_BODY);
    assert_eq!(reason(&answer), Some(InvalidKeyReason::DigestMismatch));
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn record_environment_must_match_the_key_family() {
    // A corrupt record: a live key's digest stored as a test record.
    let (store, _clock) = store_with_clock();
    let key = KeyFamily::FORG_LIVE.generate().unwrap();
    let mut record = KeyRecord::<ForgScope>::new(
        "key_corrupt".parse().unwrap(),
        KeyHasher::sha256().digest(key.expose_secret()),
        "org_1",
        "corrupt",
        &KeyFamily::FORG_TEST,
        key.redacted(),
        ForgScope::Admin.into(),
        start_time(),
    );
    record.set_expires_at(None);
    store.restore(record).unwrap();
    let probe = Probe::new();
    let answer = send(
        layer_on(&AuthLayer::new(store), &probe),
        bearer(key.expose_secret()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reason(&answer), Some(InvalidKeyReason::EnvironmentMismatch));
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn peppered_store_is_verified_with_its_own_hasher() {
    let hasher = KeyHasher::peppered(&[7u8; 32]).unwrap();
    let store = Arc::new(
        MemoryKeyStore::new()
            .with_policy(tower_api_key::forg::key_policy())
            .with_hasher(hasher.clone()),
    );
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    assert_ne!(
        issued.record().digest(),
        &digest_of(&issued),
        "peppered digest differs from SHA-256"
    );
    assert_eq!(
        issued.record().digest(),
        &hasher.digest(issued.key().expose_secret())
    );

    let probe = Probe::new();
    let answer = send(
        layer_on(&AuthLayer::new(store), &probe),
        bearer(issued.key().expose_secret()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn grpc_requests_get_trailers_only_responses() {
    let (store, _clock) = store_with_clock();
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(store), &probe);

    let request = Request::post("/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header(
            "authorization",
            "Bearer forg_live_00000000000000000000000000000000",
        )
        .body(String::new())
        .unwrap();
    let answer = send(service, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("application/grpc"));
    assert_eq!(answer.header("grpc-status"), Some("16"));
    assert_eq!(answer.header("grpc-message"), Some("Invalid API key"));
    assert!(answer.body.is_empty());
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn custom_renderer_closure() {
    let (store, _clock) = store_with_clock();
    let probe = Probe::new();
    let layer = AuthLayer::new(store).renderer(|rejection: &AuthRejection, _: &HeaderMap| {
        Response::builder()
            .status(rejection.status())
            .header("content-type", "text/plain")
            .body(Bytes::from(format!("nope: {}", rejection.code())))
            .unwrap()
    });
    let answer = send(
        layer_on(&layer, &probe),
        Request::get("/").body(String::new()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.body, "nope: invalid_api_key");
    assert!(answer.extensions.get::<AuthRejection>().is_some());
}

#[tokio::test]
async fn custom_families_are_accepted_when_registered() {
    use tower_api_key::key::{Alphabet, KeyFamilies};

    let acme = KeyFamily::builder("acme_", Environment::Test)
        .alphabet(Alphabet::Base62)
        .secret_len(40..=40)
        .build()
        .unwrap();
    let (default_store, _clock) = store_with_clock();
    assert!(
        matches!(
            issue_in(&default_store, &acme),
            Err(ManageError::FamilyNotAccepted(prefix)) if prefix == "acme_"
        ),
        "a store issues only the families its policy accepts"
    );
    let families = KeyFamilies::builtin().with(acme.clone()).unwrap();
    let store = Arc::new(
        MemoryKeyStore::<ForgScope>::new()
            .with_policy(tower_api_key::forg::key_policy().families(families)),
    );
    let issued = issue_in(&store, &acme).unwrap();
    assert!(issued.key().expose_secret().starts_with("acme_"));
    let probe = Probe::new();

    // The layer takes its families from its store.
    let default_families = layer_on(&AuthLayer::new(default_store), &probe);
    let answer = send(default_families, bearer(issued.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    let registered = layer_on(&AuthLayer::new(store), &probe);
    let answer = send(registered, bearer(issued.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        probe
            .last()
            .extensions
            .get::<Principal>()
            .unwrap()
            .environment(),
        Environment::Test
    );
}

fn issue_in(
    store: &MemoryKeyStore<ForgScope>,
    family: &KeyFamily,
) -> Result<tower_api_key::store::IssuedKey<ForgScope>, ManageError> {
    common::memory(store.issue(NewKey::new("org_1", "acme", family).scopes(ForgScope::ReadRules)))
}

#[tokio::test]
async fn works_as_axum_router_layer() {
    use axum::routing::get;

    let (store, _clock) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let app = axum::Router::new()
        .route(
            "/v1/me",
            get(|who: Principal| async move { who.key_id().to_string() }),
        )
        .layer(AuthLayer::new(store));

    let request = Request::get("/v1/me")
        .header(
            "authorization",
            format!("Bearer {}", issued.key().expose_secret()),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = send(app.clone(), request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, issued.record().id().to_string());

    let request = Request::get("/v1/me")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_disabled_key_gets_the_same_401_until_enabled_and_metadata_reaches_the_handler() {
    let (store, _clock) = store_with_clock();
    let metadata = tower_api_key::store::Metadata::new([("team", "billing")]).unwrap();
    let issued = common::memory(
        store.issue(
            NewKey::new("org_1", "tagged", &KeyFamily::FORG_LIVE)
                .scopes(ForgScope::ReadRules)
                .metadata(metadata),
        ),
    )
    .unwrap();
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(Arc::clone(&store)), &probe);
    let key = issued.key().expose_secret();
    let unknown = send(
        service.clone(),
        bearer("forg_live_0123456789abcdef0123456789abcdef"),
    )
    .await;

    store.disable(issued.record().id()).await.unwrap();
    let disabled = send(service.clone(), bearer(key)).await;
    assert_eq!(disabled.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        disabled.body, unknown.body,
        "indistinguishable from an unknown key"
    );
    assert_eq!(
        disabled.header("www-authenticate"),
        unknown.header("www-authenticate")
    );
    assert!(matches!(
        disabled.extensions.get::<AuthRejection>(),
        Some(AuthRejection::InvalidApiKey {
            reason: InvalidKeyReason::Disabled,
            ..
        })
    ));
    assert_eq!(probe.calls(), 0);

    store.enable(issued.record().id()).await.unwrap();
    assert_eq!(send(service, bearer(key)).await.status, StatusCode::OK);
    let principal = probe.last().extensions.get::<Principal>().cloned().unwrap();
    assert_eq!(principal.metadata().get("team"), Some("billing"));
}

#[tokio::test]
async fn a_key_with_allowed_networks_is_refused_elsewhere_ipv4_ipv6_and_behind_a_proxy() {
    use tower_api_key::client_ip::{ClientIp, ClientIpLayer};
    use tower_api_key::store::AllowedNetworks;

    let (store, _clock) = store_with_clock();
    let office = AllowedNetworks::new(["203.0.113.0/24", "2001:db8::/32"]).unwrap();
    let issued = common::memory(
        store.issue(
            NewKey::new("org_1", "office only", &KeyFamily::FORG_LIVE)
                .scopes(ForgScope::ReadRules)
                .allowed_networks(office),
        ),
    )
    .unwrap();
    let key = issued.key().expose_secret();
    let probe = Probe::new();
    let direct = layer_on(&AuthLayer::new(Arc::clone(&store)), &probe);
    let proxied = ClientIpLayer::new(ClientIp::peer().trust_proxies(["10.0.0.0/8"]).unwrap())
        .layer(AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>()));

    for (peer, allowed) in [
        ("203.0.113.7", true),
        ("198.51.100.1", false),
        ("2001:db8::5", true),
        ("2001:db9::1", false),
        ("::ffff:203.0.113.8", true),
    ] {
        let answer = send(direct.clone(), from(peer, bearer(key))).await;
        if allowed {
            assert_eq!(answer.status, StatusCode::OK, "{peer}");
        } else {
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{peer}");
            assert_eq!(
                answer.body,
                r#"{"error":"This key may not be used from this address","code":"ip_not_allowed","status":403}"#
            );
        }
    }
    let calls = probe.calls();
    let via = |peer: &str, forwarded: &str| {
        let mut request = bearer(key);
        request
            .headers_mut()
            .insert("x-forwarded-for", forwarded.parse().unwrap());
        from(peer, request)
    };
    // The proxy vouches for the office address; a client cannot forge it.
    assert_eq!(
        send(proxied.clone(), via("10.0.0.2", "203.0.113.9"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(proxied.clone(), via("198.51.100.2", "203.0.113.9"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        probe.calls(),
        calls + 1,
        "refused requests never reach the service"
    );
    // Keys without networks are unaffected.
    let open = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
    let answer = send(
        direct,
        from("198.51.100.1", bearer(open.key().expose_secret())),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

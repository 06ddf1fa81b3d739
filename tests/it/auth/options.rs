//! Options of the layer: stripped credentials, refused environments, peppered stores, gRPC,
//! custom renderers and key families, and an axum router layer.

use super::*;

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

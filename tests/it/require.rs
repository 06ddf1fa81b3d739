//! Per-route scope requirements and the axum extractors.

use crate::common;
use tower_api_key::forg;

use std::sync::Arc;

use axum::response::IntoResponse;
use axum::routing::get;
use common::*;
use http::{Request, StatusCode};
use tower::Layer;
use tower_api_key::key::KeyFamily;
use tower_api_key::reject::AuthRejection;
use tower_api_key::{require, require_any, AuthLayer, ForgScope, Principal, ScopeSet};

const WRITE_RULES_403: &str = r#"{"error":"Insufficient scope: write:rules required","code":"insufficient_scope","status":403}"#;

#[tokio::test]
async fn missing_scope_gets_the_documented_403_and_skips_the_inner_service() {
    let (store, _clock) = store_with_clock();
    let reader = issue(
        &store,
        &KeyFamily::FORG_LIVE,
        [ForgScope::ReadRules, ForgScope::ReadSessions],
    );
    let probe = Probe::new();
    let service = AuthLayer::new(store)
        .layer(require(ForgScope::WriteRules).layer(probe.service::<String>()));

    let answer = send(service, bearer(reader.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.body, WRITE_RULES_403);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope", scope="write:rules""#)
    );
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn all_of_and_any_of_requirements() {
    let (store, _clock) = store_with_clock();
    let reader = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let writer = issue(
        &store,
        &KeyFamily::FORG_LIVE,
        [ForgScope::ReadRules, ForgScope::WriteRules],
    );
    let admin = issue(&store, &KeyFamily::FORG_TEST, ForgScope::Admin);
    let nothing = issue(&store, &KeyFamily::FOS, ScopeSet::empty());
    let probe = Probe::new();
    let auth = AuthLayer::new(Arc::clone(&store));
    let all = auth.layer(
        require([ForgScope::ReadRules, ForgScope::WriteRules]).layer(probe.service::<String>()),
    );
    let any = auth.layer(
        require_any([ForgScope::ReadRules, ForgScope::WriteRules]).layer(probe.service::<String>()),
    );
    let authenticated =
        auth.layer(require(ScopeSet::<ForgScope>::empty()).layer(probe.service::<String>()));

    let answer = send(all.clone(), bearer(reader.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.body, WRITE_RULES_403, "names only what is missing");
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope", scope="read:rules write:rules""#),
        "the challenge names the whole requirement"
    );
    assert_eq!(
        send(all.clone(), bearer(writer.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(all.clone(), bearer(admin.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );

    assert_eq!(
        send(any.clone(), bearer(reader.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    let answer = send(any, bearer(nothing.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.json()["error"],
        "Insufficient scope: one of read:rules write:rules required"
    );
    assert_eq!(
        send(authenticated, bearer(nothing.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(probe.calls(), 4);
}

#[test]
#[should_panic(expected = "require_any needs at least one scope")]
fn require_any_of_nothing_is_a_configuration_error() {
    let _ = require_any(ScopeSet::<ForgScope>::empty());
}

#[tokio::test]
async fn requirement_without_the_auth_layer_fails_closed() {
    let probe = Probe::new();
    let service = require(ForgScope::ReadRules).layer(probe.service::<String>());
    let answer = send(service, Request::get("/").body(String::new()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        answer.body,
        r#"{"error":"Server misconfigured: AuthLayer is missing for this route","code":"internal_error","status":500}"#
    );
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn grpc_scope_failure_is_permission_denied() {
    let (store, _clock) = store_with_clock();
    let reader = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let probe = Probe::new();
    let service = AuthLayer::new(store)
        .sources(forg::credential_sources())
        .layer(require(ForgScope::WriteRules).layer(probe.service::<String>()));
    let request = Request::post("/rules.Rules/Create")
        .header("content-type", "application/grpc+proto")
        .header("x-forgeos-api-key", reader.key().expose_secret())
        .body(String::new())
        .unwrap();
    let answer = send(service, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("grpc-status"), Some("7"));
    assert_eq!(
        answer.header("grpc-message"),
        Some("Insufficient scope: write:rules required")
    );
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn axum_extractors_and_their_options() {
    let (store, _clock) = store_with_clock();
    let issued = issue(
        &store,
        &KeyFamily::FORG_LIVE,
        [ForgScope::ReadSessions, ForgScope::ReadReports],
    );
    let protected = axum::Router::new()
        .route(
            "/v1/me",
            get(|who: Principal, scopes: ScopeSet<ForgScope>| async move {
                format!("{} {} {}", who.key_id(), who.environment(), scopes)
            }),
        )
        .route(
            "/v1/maybe",
            get(
                |who: Option<Principal>, scopes: Option<ScopeSet<ForgScope>>| async move {
                    format!("{} {}", who.is_some(), scopes.is_some())
                },
            ),
        )
        .layer(AuthLayer::new(store));
    let public = axum::Router::new()
        .route(
            "/public/me",
            get(|who: Principal| async move { who.owner().to_owned() }),
        )
        .route(
            "/public/scopes",
            get(|s: ScopeSet<ForgScope>| async move { s.to_string() }),
        )
        .route(
            "/public/maybe",
            get(
                |who: Option<Principal>, scopes: Option<ScopeSet<ForgScope>>| async move {
                    format!("{} {}", who.is_some(), scopes.is_some())
                },
            ),
        );
    let app = protected.merge(public);
    let with_key = |path: &str| {
        Request::get(path)
            .header(
                "authorization",
                format!("Bearer {}", issued.key().expose_secret()),
            )
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let anonymous = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();

    let answer = send(app.clone(), with_key("/v1/me")).await;
    assert_eq!(
        answer.body,
        format!("{} live read:sessions read:reports", issued.record().id())
    );
    assert_eq!(
        send(app.clone(), with_key("/v1/maybe")).await.body,
        "true true"
    );
    assert_eq!(
        send(app.clone(), anonymous("/public/maybe")).await.body,
        "false false"
    );

    for path in ["/public/me", "/public/scopes"] {
        let answer = send(app.clone(), anonymous(path)).await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(answer.json()["code"], "internal_error");
        assert_eq!(
            answer.json()["error"],
            "Server misconfigured: AuthLayer is missing for this route"
        );
    }
}

#[tokio::test]
async fn handlers_can_return_rejections() {
    let app = axum::Router::new().route(
        "/v1/reviews",
        get(|| async { spend_cap_exceeded().into_response() }),
    );
    let answer = send(
        app,
        Request::get("/v1/reviews")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        answer.body,
        r#"{"error":"AI spend cap exceeded: upgrade plan or wait for the reset","code":"spend_cap_exceeded","status":402,"resets_at":"2026-02-01T00:00:00Z"}"#
    );
    assert_eq!(answer.headers["retry-after"], "3600");
    assert_eq!(
        answer.extensions.get::<AuthRejection>(),
        Some(&spend_cap_exceeded())
    );
}

fn spend_cap_exceeded() -> AuthRejection {
    let february = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_769_904_000);
    AuthRejection::spend_cap_exceeded(
        tower_api_key::reject::RetryAfter::from_duration(std::time::Duration::from_secs(3600)),
        february,
    )
}

//! Scope vocabularies, `ScopeSet` semantics, text and serde forms, and a custom
//! vocabulary used through every layer of the crate.

use crate::common;
use tower_api_key::forg;

use std::sync::Arc;

use axum::routing::get;
use common::{send, Probe};
use http::{Request, StatusCode};
use tower::Layer;
use tower_api_key::key::KeyFamily;
use tower_api_key::scope::{Scope, UnknownScope};
use tower_api_key::store::ManageKeys;
use tower_api_key::{
    require, require_any, AuthLayer, ForgScope, MemoryKeyStore, NewKey, Principal, ScopeSet,
};

tower_api_key::scopes! {
    /// A document service's own vocabulary.
    pub enum DocScope {
        Read = "docs:read",
        Write = "docs:write",
        Share = "docs:share",
        Owner = "docs:owner",
    }
    admin = Owner;
}

tower_api_key::scopes! {
    /// A vocabulary without an admin scope.
    pub enum FlatScope {
        A = "a",
        B = "b",
    }
}

#[test]
fn forg_vocabulary_is_the_documented_one() {
    let names: Vec<_> = ForgScope::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "read:sessions",
            "read:rules",
            "write:rules",
            "read:reports",
            "read:users",
            "write:users",
            "manage:webhooks",
            "admin"
        ]
    );
    assert_eq!(ForgScope::ADMIN, Some(ForgScope::Admin));
    assert_eq!(
        "write:rules".parse::<ForgScope>(),
        Ok(ForgScope::WriteRules)
    );
}

#[test]
fn scopes_are_additive_and_admin_satisfies_everything() {
    let granted = ScopeSet::from([ForgScope::ReadSessions, ForgScope::ReadReports]);
    assert!(granted.contains(ForgScope::ReadSessions));
    assert!(granted.contains(ForgScope::ReadReports));
    assert!(!granted.contains(ForgScope::WriteRules));
    assert!(granted.contains_all([ForgScope::ReadSessions, ForgScope::ReadReports]));
    assert!(!granted.contains_all([ForgScope::ReadSessions, ForgScope::WriteRules]));
    assert!(granted.contains_any([ForgScope::WriteRules, ForgScope::ReadReports]));
    assert!(!granted.contains_any([ForgScope::WriteRules, ForgScope::Admin]));
    assert!(
        !granted.contains_any(ScopeSet::empty()),
        "any of nothing is never satisfied"
    );
    assert!(granted.contains_all(ScopeSet::empty()));
    assert_eq!(
        granted.missing([ForgScope::ReadSessions, ForgScope::WriteRules]),
        ForgScope::WriteRules.into()
    );

    let admin = ScopeSet::from(ForgScope::Admin);
    assert!(admin.is_admin());
    for &scope in ForgScope::ALL {
        assert!(admin.contains(scope), "{scope:?}");
    }
    assert!(admin.contains_all(ScopeSet::all()));
    assert!(admin.contains_any([ForgScope::WriteUsers]));
    assert!(admin.missing(ScopeSet::all()).is_empty());
    assert_eq!(admin.len(), 1, "iteration sees literal members only");
    assert_eq!(admin.iter().collect::<Vec<_>>(), [ForgScope::Admin]);

    let flat = ScopeSet::<FlatScope>::from(FlatScope::A);
    assert!(
        !flat.contains(FlatScope::B),
        "no admin scope in this vocabulary"
    );
}

#[test]
fn set_operations() {
    let mut set = ScopeSet::empty() | ForgScope::ReadRules;
    set |= ForgScope::WriteRules;
    set.insert(ForgScope::ReadUsers);
    set.remove(ForgScope::ReadUsers);
    assert_eq!(
        set,
        ScopeSet::from([ForgScope::ReadRules, ForgScope::WriteRules])
    );
    assert_eq!(set.union(ForgScope::Admin.into()).len(), 3);
    let collected: ScopeSet<ForgScope> = [ForgScope::ReadRules].into_iter().collect();
    assert_eq!(collected.len(), 1);
    assert!(ScopeSet::<ForgScope>::default().is_empty());
    assert_eq!(ScopeSet::<ForgScope>::all().len(), 8);
    assert_eq!(std::mem::size_of::<ScopeSet<ForgScope>>(), 8);
}

#[test]
fn text_form_round_trips_and_names_unknown_scopes() {
    let set: ScopeSet<ForgScope> = "write:rules  read:sessions\tadmin".parse().unwrap();
    assert_eq!(
        set.to_string(),
        "read:sessions write:rules admin",
        "vocabulary order"
    );
    assert_eq!(set.to_string().parse::<ScopeSet<ForgScope>>().unwrap(), set);
    assert_eq!(
        "".parse::<ScopeSet<ForgScope>>().unwrap(),
        ScopeSet::empty()
    );
    assert_eq!(
        format!("{set:?}"),
        r#"ScopeSet{"read:sessions", "write:rules", "admin"}"#
    );

    let error = "read:rules Write:Rules"
        .parse::<ScopeSet<ForgScope>>()
        .unwrap_err();
    assert_eq!(error.to_string(), "unknown scope `Write:Rules`");
    assert_eq!(error.name(), "Write:Rules");
    let long = "x".repeat(10_000);
    let error = long.parse::<ScopeSet<ForgScope>>().unwrap_err();
    assert!(error.to_string().len() < 100, "hostile names are cut");
    assert_eq!(UnknownScope::new("réad").name(), "réad");
}

#[test]
fn serde_form_is_a_list_of_names() {
    let set = ScopeSet::from([ForgScope::ManageWebhooks, ForgScope::ReadRules]);
    let json = serde_json::to_string(&set).unwrap();
    assert_eq!(json, r#"["read:rules","manage:webhooks"]"#);
    assert_eq!(
        serde_json::from_str::<ScopeSet<ForgScope>>(&json).unwrap(),
        set
    );
    assert_eq!(
        serde_json::from_str::<ScopeSet<ForgScope>>(r#""read:rules manage:webhooks""#).unwrap(),
        set
    );
    let error =
        serde_json::from_str::<ScopeSet<ForgScope>>(r#"["read:rules","root"]"#).unwrap_err();
    assert!(
        error.to_string().contains("unknown scope `root`"),
        "{error}"
    );
    assert!(serde_json::from_str::<ScopeSet<ForgScope>>("42").is_err());
}

#[test]
fn custom_vocabulary_has_the_same_semantics() {
    let set: ScopeSet<DocScope> = "docs:read docs:share".parse().unwrap();
    assert!(set.contains(DocScope::Share));
    assert!(!set.contains(DocScope::Write));
    assert!(ScopeSet::from(DocScope::Owner).contains_all(ScopeSet::<DocScope>::all()));
    assert_eq!(
        serde_json::to_string(&set).unwrap(),
        r#"["docs:read","docs:share"]"#
    );
    assert!("read:rules".parse::<ScopeSet<DocScope>>().is_err());
    assert_eq!(DocScope::Write.to_string(), "docs:write");
}

#[tokio::test]
async fn custom_vocabulary_through_store_layer_requirement_and_extractors() {
    let store =
        Arc::new(MemoryKeyStore::<DocScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let reader = store
        .issue(NewKey::new("team_docs", "reader", &KeyFamily::FOS).scopes(DocScope::Read))
        .await
        .unwrap();
    let owner = store
        .issue(NewKey::new("team_docs", "owner", &KeyFamily::FOS).scopes(DocScope::Owner))
        .await
        .unwrap();

    let app = axum::Router::new()
        .route(
            "/docs",
            get(|who: Principal, scopes: ScopeSet<DocScope>| async move {
                format!("{} {}", who.name(), scopes)
            })
            .route_layer(require(DocScope::Read)),
        )
        .route(
            "/docs/share",
            get(|| async { "shared" }).route_layer(require_any([DocScope::Share, DocScope::Write])),
        )
        .layer(AuthLayer::new(store).sources(forg::credential_sources()));
    let call = |path: &str, key: &str| {
        Request::get(path)
            .header("x-forgeos-api-key", key)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let (reader, owner) = (reader.key().expose_secret(), owner.key().expose_secret());

    let answer = send(app.clone(), call("/docs", reader)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "reader docs:read");

    let answer = send(app.clone(), call("/docs/share", reader)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.body,
        r#"{"error":"Insufficient scope: one of docs:write docs:share required","code":"insufficient_scope","status":403}"#
    );

    assert_eq!(
        send(app.clone(), call("/docs/share", owner)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(app, call("/docs", owner)).await.body,
        "owner docs:owner"
    );
}

#[tokio::test]
async fn requirement_of_another_vocabulary_sees_no_scopes() {
    // A FORG requirement behind a DocScope layer is a misconfiguration: fail closed (500).
    let store =
        Arc::new(MemoryKeyStore::<DocScope>::new().with_policy(tower_api_key::forg::key_policy()));
    let key = store
        .issue(NewKey::new("t", "k", &KeyFamily::FOS).scopes(DocScope::Owner))
        .await
        .unwrap();
    let probe = Probe::new();
    let service = AuthLayer::new(store)
        .sources(forg::credential_sources())
        .layer(require(ForgScope::ReadRules).layer(probe.service::<String>()));
    let request = Request::get("/")
        .header("x-forgeos-api-key", key.key().expose_secret())
        .body(String::new())
        .unwrap();
    let answer = send(service, request).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(probe.calls(), 0);
}

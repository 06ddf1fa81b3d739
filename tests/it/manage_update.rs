//! Issue 38.1: `PATCH /keys/{id}` over loopback with a real client: settings changed in
//! place and seen by the next request, the version as `ETag` and `If-Match` (412, 428,
//! `*`, weak tags), scopes only narrowing, limits only lowering, every wrong field named
//! without its value, and who may change which key.

use std::collections::BTreeMap;

use http::StatusCode;
use serde_json::{json, Value};
use tower_api_key::rate_limit::{ClassName, Quota, RateClass};
use tower_api_key::store::{KeyUpdate, ManageKeys};

use crate::manage::{serve, with_key, Server, User};

/// `PATCH /api/keys/{id}` with `body` and, when given, `If-Match`; the status, the `ETag`
/// header and the body.
async fn patch(
    user: &User,
    id: &str,
    if_match: Option<&str>,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let mut request = user
        .client
        .patch(format!("{}/api/keys/{id}", user.base))
        .header("x-csrf-token", &user.csrf)
        .json(&body);
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .map(|tag| tag.to_str().unwrap().to_owned());
    (status, etag, response.json().await.unwrap_or(Value::Null))
}

/// A key of `user`'s with `scopes`: its id and plaintext.
async fn key_of(user: &User, scopes: Value) -> (String, String) {
    let (status, created) = user
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "ci", "environment": "test", "scopes": scopes })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["record"]["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

async fn etag_of(user: &User, id: &str) -> String {
    let response = user
        .client
        .get(format!("{}/api/keys/{id}", user.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let header = response.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["data"]["etag"], header,
        "the body's etag is the header's"
    );
    header
}

async fn ping(server: &Server, key: &str) -> StatusCode {
    with_key(server, key, "GET", "/v1/ping", None).await.0
}

#[tokio::test]
async fn an_update_changes_the_key_in_place_and_the_next_request_sees_it() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules,write:rules").await;
    let (id, key) = key_of(&alice, json!(["read:rules", "write:rules"])).await;
    assert_eq!(etag_of(&alice, &id).await, "\"0\"");
    assert_eq!(ping(&server, &key).await, StatusCode::OK);

    let (status, etag, body) = patch(
        &alice,
        &id,
        Some("\"0\""),
        json!({
            "name": "ci (read only)",
            "scopes": ["read:rules"],
            "metadata": { "team": "platform" },
            "allowed_networks": ["10.0.0.0/8"],
            "expires_at": "2099-01-01T00:00:00Z",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let data = &body["data"];
    assert_eq!(data["name"], "ci (read only)");
    assert_eq!(data["scopes"], json!(["read:rules"]));
    assert_eq!(data["metadata"], json!({ "team": "platform" }));
    assert_eq!(data["allowed_networks"], json!(["10.0.0.0/8"]));
    assert_eq!(data["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(data["etag"], "\"1\"");
    assert!(
        body.to_string().find(&key[10..]).is_none(),
        "never the secret"
    );
    // The next request from loopback is outside the key's networks now.
    assert_eq!(ping(&server, &key).await, StatusCode::FORBIDDEN);

    // A second writer with the version it read before: 412, nothing written.
    let (status, _, body) = patch(&alice, &id, Some("\"0\""), json!({ "name": "late" })).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body["code"], "precondition_failed");
    let (_, listed) = alice.call("GET", &format!("/keys/{id}"), None).await;
    assert_eq!(listed["data"]["name"], "ci (read only)");

    // Fields left out are kept; `null` removes the expiry; an empty list allows everywhere.
    let (status, etag, body) = patch(
        &alice,
        &id,
        Some("\"1\""),
        json!({ "allowed_networks": [], "expires_at": null }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    assert_eq!(body["data"]["name"], "ci (read only)");
    assert_eq!(body["data"]["expires_at"], Value::Null);
    assert_eq!(ping(&server, &key).await, StatusCode::OK);

    // Without If-Match (not required here): applied to whatever version is current.
    let (status, etag, _) = patch(&alice, &id, None, json!({ "name": "ci" })).await;
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"3\"")));
    // Revoking moves the version too; a revoked key is not changed.
    let (_, revoked) = alice
        .call("POST", &format!("/keys/{id}/revoke"), None)
        .await;
    assert_eq!(revoked["data"]["etag"], "\"4\"");
    let (status, _, body) = patch(&alice, &id, None, json!({ "name": "ghost" })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "key_not_changeable");
}

#[tokio::test]
async fn every_wrong_field_is_named_without_its_value() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules,write:rules").await;
    let (id, _) = key_of(&alice, json!(["read:rules"])).await;
    let cases = [
        (json!({ "name": "" }), "name"),
        (json!({ "name": "x\u{202e}y" }), "name"),
        (
            json!({ "scopes": ["read:rules", "no:such-scope"] }),
            "scopes",
        ),
        (json!({ "scopes": ["read:rules", "write:rules"] }), "scopes"),
        (
            json!({ "expires_at": "2001-01-01T00:00:00Z" }),
            "expires_at",
        ),
        (json!({ "expires_at": "tomorrow-ish" }), "expires_at"),
        (
            json!({ "allowed_networks": ["10.0.0.0/8", "secret-host.example"] }),
            "allowed_networks",
        ),
        (
            json!({ "allowed_networks": vec!["10.0.0.1"; 33] }),
            "allowed_networks",
        ),
        (
            json!({ "rate_limits": { "ai": { "requests": 5, "window_secs": 60 } } }),
            "rate_limits",
        ),
        (
            json!({ "rate_limits": { "AI!": { "requests": 5, "window_secs": 60 } } }),
            "rate_limits",
        ),
        (
            json!({ "rate_limits": { "ai": { "requests": 0, "window_secs": 60 } } }),
            "rate_limits",
        ),
        (json!({ "metadata": { "k": "v\u{0}" } }), "metadata"),
        (json!({ "name": 5 }), "name"),
        (json!({ "owner": "org_b" }), "owner"),
    ];
    for (body, field) in cases {
        let sent = body.to_string();
        let (status, _, answer) = patch(&alice, &id, None, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{sent}: {answer}");
        assert_eq!(answer["code"], "validation_failed");
        let named: Vec<&str> = answer["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(named.contains(&field), "{sent}: {answer}");
        for secret in ["secret-host", "no:such-scope", "tomorrow-ish", "AI!"] {
            assert!(
                !answer.to_string().contains(secret),
                "{sent} echoed: {answer}"
            );
        }
    }
    let (_, unchanged) = alice.call("GET", &format!("/keys/{id}"), None).await;
    assert_eq!(
        unchanged["data"]["etag"], "\"0\"",
        "nothing refused was written"
    );
}

#[tokio::test]
async fn who_may_update_which_key() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules,write:rules").await;
    let (id, key) = key_of(&alice, json!(["read:rules", "write:rules"])).await;
    // Another owner: 404, as for an unknown id.
    let mallory = User::login(&server, "org_m", "read:rules,write:rules").await;
    let (status, _, body) = patch(&mallory, &id, None, json!({ "name": "mine" })).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("key_not_found"))
    );
    // A session of the same owner without write:rules cannot leave the key with it.
    let reader = User::login(&server, "org_a", "read:rules").await;
    let (status, _, body) = patch(&reader, &id, None, json!({ "scopes": ["write:rules"] })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "insufficient_scope");
    // A key, without the management scope configured: refused.
    let (status, body) = with_key(
        &server,
        &key,
        "PATCH",
        &format!("/api/keys/{id}"),
        Some(json!({ "name": "by a key" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "session_required");
    // No CSRF header: refused before the handler.
    let response = alice
        .client
        .patch(format!("{}/api/keys/{id}", alice.base))
        .json(&json!({ "name": "csrf" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        etag_of(&alice, &id).await,
        "\"0\"",
        "none of them changed it"
    );
}

#[tokio::test]
async fn if_match_can_be_required() {
    let server = serve(|api| api.require_if_match()).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    let (id, _) = key_of(&alice, json!(["read:rules"])).await;
    let (status, _, body) = patch(&alice, &id, None, json!({ "name": "blind" })).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(body["code"], "precondition_required");
    for weak_or_stale in ["W/\"0\"", "\"7\"", "0"] {
        let (status, _, _) = patch(&alice, &id, Some(weak_or_stale), json!({ "name": "x" })).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{weak_or_stale}");
    }
    let (status, etag, _) = patch(
        &alice,
        &id,
        Some("\"5\", \"0\""),
        json!({ "name": "listed" }),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"1\"")));
    let (status, etag, _) = patch(&alice, &id, Some("*"), json!({ "name": "any" })).await;
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"2\"")));
}

#[tokio::test]
async fn rate_limit_overrides_only_lower() {
    const AI: RateClass =
        RateClass::per_key(ClassName::from_static("ai"), Quota::per_minute_const(60));
    let server = serve(|api| api.rate_classes([AI])).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    let (id, _) = key_of(&alice, json!(["read:rules"])).await;
    let quota = |requests: u32, window_secs: u32| json!({ "rate_limits": { "ai": { "requests": requests, "window_secs": window_secs } } });
    for (body, expected) in [
        (quota(61, 60), StatusCode::UNPROCESSABLE_ENTITY), // above the class
        (quota(60, 30), StatusCode::UNPROCESSABLE_ENTITY), // as many, twice as fast
        (quota(10, 60), StatusCode::OK),
        (quota(20, 60), StatusCode::UNPROCESSABLE_ENTITY), // above the key's own now
        (quota(5, 60), StatusCode::OK),
        (
            json!({ "rate_limits": {} }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ), // back to 60
    ] {
        let sent = body.to_string();
        let (status, _, answer) = patch(&alice, &id, None, body).await;
        assert_eq!(status, expected, "{sent}: {answer}");
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(answer["fields"][0]["field"], "rate_limits");
        }
    }
    let (_, shown) = alice.call("GET", &format!("/keys/{id}"), None).await;
    assert_eq!(
        shown["data"]["rate_limits"],
        json!({ "ai": { "requests": 5, "window_secs": 60 } })
    );
    // An operator's higher override (a premium key) is lowered from, not from the class.
    let record = server
        .keys
        .get(&id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let premium = BTreeMap::from([(ClassName::from_static("ai"), Quota::per_minute_const(600))]);
    server
        .keys
        .update(record.id(), KeyUpdate::new().rate_limits(premium))
        .await
        .unwrap();
    let (status, _, answer) = patch(&alice, &id, None, quota(300, 60)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Dropping it now falls to the class's 60: lower, allowed.
    let (status, _, answer) = patch(&alice, &id, None, json!({ "rate_limits": {} })).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

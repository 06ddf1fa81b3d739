//! Issue 38.2: the management API's audit trail over loopback: every change is an entry
//! (who, what, which key, from where, the request id, each setting before and after),
//! every refused management request too, reads only when refused; `GET /audit` pages,
//! filters and keeps to the caller's owner and environment; no entry ever holds a secret.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{json, Value};
use tower_api_key::audit::{AuditAction, AuditEntry, AuditLog, AuditQuery, MemoryAuditLog};
use tower_api_key::ForgScope;

use tower_api_key::manage::KeysApi;

use crate::manage::{serve, with_key, Server, Store, User};

type Api = KeysApi<Store>;

/// The test server of `manage.rs`, its API recording in a log of its own.
async fn audited(configure: impl FnOnce(Api) -> Api) -> (Server, Arc<MemoryAuditLog>) {
    let log = Arc::new(MemoryAuditLog::new());
    let audit = Arc::clone(&log);
    let server = serve(move |api| configure(api.audit(audit))).await;
    (server, log)
}

async fn entries(log: &MemoryAuditLog, owner: &str) -> Vec<AuditEntry> {
    log.page(&AuditQuery::new(owner).limit(100)).await.unwrap()
}

#[tokio::test]
async fn every_change_is_an_entry_and_reads_are_not() {
    let (server, log) = audited(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules,write:rules").await;
    let request = |method: &str, path: &str, body: Option<Value>| {
        let mut request = alice
            .client
            .request(method.parse().unwrap(), format!("{}/api{path}", alice.base))
            .header("x-csrf-token", &alice.csrf)
            .header("x-request-id", "req-1");
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            (
                response.status(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, created) = request(
        "POST",
        "/keys",
        Some(
            json!({ "name": "ci", "environment": "test", "scopes": ["read:rules", "write:rules"] }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["record"]["id"].as_str().unwrap().to_owned();
    request("GET", "/keys", None).await;
    request("GET", &format!("/keys/{id}"), None).await;
    request(
        "PATCH",
        &format!("/keys/{id}"),
        Some(json!({ "name": "ci 2", "scopes": ["read:rules"] })),
    )
    .await;
    request("POST", &format!("/keys/{id}/disable"), None).await;
    request("POST", &format!("/keys/{id}/enable"), None).await;
    let (_, rotated) = request("POST", &format!("/keys/{id}/rotate"), None).await;
    let successor = rotated["record"]["id"].as_str().unwrap();
    request("DELETE", &format!("/keys/{successor}"), None).await;

    let found = entries(&log, "org_a").await;
    let actions: Vec<AuditAction> = found.iter().rev().map(AuditEntry::action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::KeyIssued,
            AuditAction::KeyUpdated,
            AuditAction::KeyDisabled,
            AuditAction::KeyEnabled,
            AuditAction::KeyRotated,
            AuditAction::KeyRevoked,
        ],
        "the reads that succeeded are not entries"
    );
    for entry in &found {
        assert!(matches!(
            entry.actor(),
            tower_api_key::audit::Actor::Session(_)
        ));
        assert_eq!(entry.client_address(), Some("127.0.0.1"));
        assert_eq!(entry.request(), Some("req-1"));
        assert!((200..300).contains(&entry.status()), "{entry:?}");
        assert_eq!(
            entry.environment_of(),
            Some(tower_api_key::key::Environment::Test)
        );
    }
    let updated = found
        .iter()
        .find(|e| e.action() == AuditAction::KeyUpdated)
        .unwrap();
    assert_eq!(updated.key_id().unwrap().as_str(), id);
    let changed: Vec<(&str, Option<&str>, Option<&str>)> = updated
        .changes()
        .iter()
        .map(|c| (c.field.as_str(), c.from.as_deref(), c.to.as_deref()))
        .collect();
    assert_eq!(
        changed,
        [
            ("name", Some("ci"), Some("ci 2")),
            ("scopes", Some("read:rules write:rules"), Some("read:rules")),
        ],
        "only what changed, before and after"
    );
    let rotation = found
        .iter()
        .find(|e| e.action() == AuditAction::KeyRotated)
        .unwrap();
    assert_eq!(rotation.key_id().unwrap().as_str(), id);
    assert_eq!(rotation.changes()[0].to.as_deref(), Some(successor));

    // The same through GET /audit: newest first, page by page, filtered.
    let (status, page) = alice.call("GET", "/audit?limit=4", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 4);
    assert_eq!(page["data"][0]["action"], "key.revoked");
    assert_eq!(page["data"][0]["actor"], "session");
    let next = page["next_before"].as_u64().unwrap();
    let (_, rest) = alice
        .call("GET", &format!("/audit?limit=4&before={next}"), None)
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    assert_eq!(rest["data"][1]["action"], "key.issued");
    assert_eq!(rest["next_before"], Value::Null);
    let (_, about) = alice
        .call(
            "GET",
            &format!("/audit?key_id={id}&action=key.updated"),
            None,
        )
        .await;
    assert_eq!(about["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        about["data"][0]["changes"][0],
        json!({ "field": "name", "from": "ci", "to": "ci 2" })
    );
    for (query, field) in [
        ("action=key.exploded", "action"),
        ("key_id=%20bad%20", "key_id"),
        ("limit=many", "query"),
    ] {
        let (status, body) = alice.call("GET", &format!("/audit?{query}"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["fields"][0]["field"], field);
        assert!(
            !body.to_string().contains("exploded"),
            "never the value sent"
        );
    }
}

#[tokio::test]
async fn refused_management_requests_are_entries_of_the_caller() {
    let (server, log) = audited(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    let (_, created) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "ci", "environment": "test", "scopes": ["read:rules"] })),
        )
        .await;
    let id = created["record"]["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();

    // Another owner tries alice's key: 404, filed under the one who tried.
    let mallory = User::login(&server, "org_m", "read:rules").await;
    let (status, _) = mallory
        .call("POST", &format!("/keys/{id}/revoke"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = mallory.call("GET", &format!("/keys/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let tried = entries(&log, "org_m").await;
    let seen: Vec<(AuditAction, u16, Option<&str>)> = tried
        .iter()
        .rev()
        .map(|e| (e.action(), e.status(), e.code()))
        .collect();
    assert_eq!(
        seen,
        [
            (AuditAction::KeyRevoked, 404, Some("key_not_found")),
            (AuditAction::KeyRead, 404, Some("key_not_found")),
        ]
    );
    assert_eq!(tried[0].key_id().unwrap().as_str(), id, "the id tried");
    assert_eq!(
        tried[0].environment_of(),
        None,
        "nothing about alice's key is told"
    );
    // A key without the management scope: 403 session_required, filed under its owner.
    let (status, _) = with_key(
        &server,
        &key,
        "POST",
        "/api/keys",
        Some(json!({ "name": "x", "environment": "test" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let alices = entries(&log, "org_a").await;
    assert_eq!(alices[0].action(), AuditAction::KeyIssued);
    assert_eq!(
        (alices[0].status(), alices[0].code()),
        (403, Some("session_required"))
    );
    assert!(
        matches!(alices[0].actor(), tower_api_key::audit::Actor::Key(actor) if actor.as_str() == id)
    );
    // A 422 too.
    let (status, _) = alice
        .call("PATCH", &format!("/keys/{id}"), Some(json!({ "name": "" })))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let last = &entries(&log, "org_a").await[0];
    assert_eq!(
        (last.action(), last.status()),
        (AuditAction::KeyUpdated, 422)
    );
    assert!(last.changes().is_empty(), "nothing changed");
}

#[tokio::test]
async fn no_entry_holds_a_secret() {
    let (server, log) = audited(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    let mut secrets = Vec::new();
    let (_, created) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "ci", "environment": "test", "scopes": ["read:rules"] })),
        )
        .await;
    let id = created["record"]["id"].as_str().unwrap().to_owned();
    secrets.push(created["key"].as_str().unwrap().to_owned());
    let (_, rotated) = alice
        .call("POST", &format!("/keys/{id}/rotate"), None)
        .await;
    secrets.push(rotated["key"].as_str().unwrap().to_owned());
    let hasher = tower_api_key::key::KeyHasher::sha256();
    let (_, page) = alice.call("GET", "/audit", None).await;
    let stored: Vec<String> = entries(&log, "org_a")
        .await
        .iter()
        .map(|entry| format!("{} {entry:?}", serde_json::to_string(entry).unwrap()))
        .collect();
    let everything = format!("{page} {}", stored.join(" "));
    for secret in &secrets {
        // The secret part (after the prefix), and its digest in every form a store writes.
        assert!(
            !everything.contains(&secret[10..]),
            "a key in the audit trail"
        );
        let digest = hasher.digest(secret);
        assert!(
            !everything.contains(&digest.to_string()),
            "a digest in the audit trail"
        );
    }
    assert!(!everything.contains(&alice.csrf), "the CSRF token");
}

#[tokio::test]
async fn a_key_caller_reads_its_own_environment_only() {
    let (server, log) = audited(|api| api.allow_keys_with(ForgScope::Admin)).await;
    let alice = User::login(&server, "org_a", "admin").await;
    for environment in ["test", "live", "test"] {
        let (status, body) = alice
            .call(
                "POST",
                "/keys",
                Some(
                    json!({ "name": environment, "environment": environment, "scopes": ["admin"] }),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, test_key) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "reader", "environment": "test", "scopes": ["admin"] })),
        )
        .await;
    let key = test_key["key"].as_str().unwrap();
    let (status, page) = with_key(&server, key, "GET", "/api/audit?limit=100", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let environments: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["environment"].as_str().unwrap())
        .collect();
    assert_eq!(
        environments, ["test"; 3],
        "the live key's entry is not a test key's to read"
    );
    let (_, all) = alice.call("GET", "/audit?limit=100", None).await;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        4,
        "a session reads both"
    );
    assert_eq!(entries(&log, "org_a").await.len(), 4);
}

//! Issue 39.1: key events from the management API (issued, updated, rotated, revoked; not
//! for refusals or reads), each with a fresh id and the key's public parts only; the
//! Standard Webhooks signature against the specification's published vector.

use std::sync::{Arc, Mutex};

use http::StatusCode;
use serde_json::{json, Value};
use tower_api_key::events::{KeyEvent, KeyEvents};
use tower_api_key::webhooks::WebhookSecret;

use crate::manage::{serve, User};

#[tokio::test]
async fn the_management_api_publishes_each_change_once_it_succeeded() {
    let seen: Arc<Mutex<Vec<KeyEvent>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let events =
        KeyEvents::new().sink(move |event: &KeyEvent| sink.lock().unwrap().push(event.clone()));
    let server = serve(move |api| api.events(events)).await;
    let alice = User::login(&server, "org_a", "read:rules,write:rules").await;
    let (_, created) = alice
        .call("POST", "/keys", Some(json!({ "name": "ci", "environment": "test", "scopes": ["read:rules", "write:rules"] })))
        .await;
    let id = created["record"]["id"].as_str().unwrap().to_owned();
    let secret = created["key"].as_str().unwrap().to_owned();
    alice.call("GET", &format!("/keys/{id}"), None).await;
    alice
        .call(
            "PATCH",
            &format!("/keys/{id}"),
            Some(json!({ "scopes": ["read:rules"] })),
        )
        .await;
    alice
        .call(
            "PATCH",
            &format!("/keys/{id}"),
            Some(json!({ "scopes": ["read:rules"] })),
        )
        .await; // no change
    let (status, _) = alice
        .call(
            "PATCH",
            &format!("/keys/{id}"),
            Some(json!({ "scopes": ["write:rules"] })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "refused: no event"
    );
    alice
        .call("POST", &format!("/keys/{id}/disable"), None)
        .await;
    alice
        .call("POST", &format!("/keys/{id}/enable"), None)
        .await;
    let (_, rotated) = alice
        .call("POST", &format!("/keys/{id}/rotate"), None)
        .await;
    let successor = rotated["record"]["id"].as_str().unwrap().to_owned();
    alice
        .call("POST", &format!("/keys/{successor}/revoke"), None)
        .await;

    let events = seen.lock().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind().name()).collect();
    assert_eq!(
        kinds,
        ["key.issued", "key.updated", "key.rotated", "key.revoked"]
    );
    let mut ids: Vec<&str> = events.iter().map(KeyEvent::id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each event its own id");
    assert!(events
        .iter()
        .all(|e| e.owner() == "org_a" && e.id().starts_with("evt_")));
    let bodies: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.to_json()).unwrap())
        .collect();
    assert_eq!(bodies[0]["type"], "key.issued");
    assert_eq!(bodies[0]["data"]["key"]["id"], id.as_str());
    assert_eq!(bodies[0]["data"]["key"]["environment"], "test");
    assert!(bodies[0]["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(bodies[1]["data"]["fields"], json!(["scopes"]));
    assert_eq!(bodies[2]["data"]["successor"], successor.as_str());
    assert_eq!(bodies[3]["data"]["key"]["id"], successor.as_str());
    let all = format!("{bodies:?} {events:?}");
    assert!(!all.contains(&secret[10..]), "never the key");
}

/// The specification's published test vector (and a tampered body, id and timestamp).
#[test]
fn signatures_match_the_standard_webhooks_vector() {
    let secret: WebhookSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse().unwrap();
    let (id, at) = ("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553);
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let signature = secret.sign(id, at, body);
    assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    assert!(secret.verifies(id, at, body, &format!("v1,bm90IGl0 {signature}")));
    assert!(!secret.verifies(id, at, br#"{"email":"test@example.com"}"#, &signature));
    assert!(!secret.verifies("msg_other", at, body, &signature));
    assert!(!secret.verifies(id, at + 1, body, &signature));
    assert!(!secret.verifies(
        id,
        at,
        body,
        "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    ));
    for bad in [
        "whsec_",
        "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "whsec_!!!",
        "whsec_c2hvcnQ=",
    ] {
        assert!(bad.parse::<WebhookSecret>().is_err(), "{bad}");
    }
    let fresh = WebhookSecret::generate().unwrap();
    let shown = fresh.expose_secret();
    assert_eq!(
        shown.parse::<WebhookSecret>().unwrap().sign("a", 1, b"x"),
        fresh.sign("a", 1, b"x")
    );
    assert!(!format!("{fresh:?}").contains(&shown[6..]));
}

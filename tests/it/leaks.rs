//! Issue 39.2: the leak intake with P-256 keys made at test time: a signed report revokes
//! the live keys it names and labels every token (never echoing one); a forged or tampered
//! signature, an unsigned report and a retired key identifier are 401 with nothing looked
//! up; a replay is 409; 1,000 tokens in one report; disabling instead of revoking; the
//! owner hears `key.leaked` and the audit log has it; the endpoint is rate limited.
#![cfg(feature = "leak-intake")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use base64ct::{Base64, Encoding};
use http::StatusCode;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower_api_key::audit::{AuditAction, AuditLog, AuditQuery, MemoryAuditLog};
use tower_api_key::events::{KeyEvent, KeyEvents};
use tower_api_key::key::KeyFamily;
use tower_api_key::manage::LeakIntake;
use tower_api_key::rate_limit::{ClassName, Quota, RateClass};
use tower_api_key::store::{KeyStatus, KeyStore};
use tower_api_key::{ForgScope, ManageKeys, MemoryKeyStore, NewKey};

type Store = MemoryKeyStore<ForgScope>;

/// A P-256 key made now (as GitHub's would be, but ours).
fn signing_key() -> SigningKey {
    loop {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}

struct Intake {
    base: String,
    keys: Arc<Store>,
    seen: Arc<Mutex<Vec<KeyEvent>>>,
    audit: Arc<MemoryAuditLog>,
}

async fn intake(
    signer: &SigningKey,
    configure: impl FnOnce(LeakIntake<Store>) -> LeakIntake<Store>,
) -> Intake {
    let keys = Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy()));
    let seen: Arc<Mutex<Vec<KeyEvent>>> = Arc::default();
    let audit = Arc::new(MemoryAuditLog::new());
    let sink = Arc::clone(&seen);
    let events = KeyEvents::new()
        .sink(move |event: &KeyEvent| sink.lock().unwrap().push(event.clone()))
        .audit(Arc::clone(&audit));
    let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
        signer.verifying_key(),
        p256::pkcs8::LineEnding::LF,
    )
    .unwrap();
    let leaks = LeakIntake::new(Arc::clone(&keys))
        .public_key_pem("key-1", &pem)
        .unwrap()
        .events(events);
    let app: Router = Router::new().nest("/leaks", configure(leaks).router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Intake {
        base: format!("http://{addr}"),
        keys,
        seen,
        audit,
    }
}

/// Posts `body` signed by `signer` as `identifier` (or unsigned).
async fn report(
    intake: &Intake,
    body: &str,
    signed: Option<(&str, &SigningKey)>,
) -> (StatusCode, Value, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/leaks", intake.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some((identifier, signer)) = signed {
        let signature: Signature = signer.sign(body.as_bytes());
        request = request
            .header("Github-Public-Key-Identifier", identifier)
            .header(
                "Github-Public-Key-Signature",
                Base64::encode_string(signature.to_der().as_bytes()),
            );
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

fn batch(tokens: &[&str]) -> String {
    let items: Vec<Value> = tokens
        .iter()
        .map(|token| json!({ "token": token, "type": "forg_api_key", "url": "https://github.com/o/r/blob/main/.env", "source": "content" }))
        .collect();
    Value::Array(items).to_string()
}

fn hash(token: &str) -> String {
    base16ct::lower::encode_string(&Sha256::digest(token.as_bytes()))
}

#[tokio::test]
async fn a_signed_report_revokes_live_keys_and_labels_every_token() {
    let signer = signing_key();
    let intake = intake(&signer, |leaks| leaks).await;
    let live = intake
        .keys
        .issue(NewKey::new("org_1", "leaked", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let revoked = intake
        .keys
        .issue(NewKey::new("org_1", "old", &KeyFamily::FORG_TEST))
        .await
        .unwrap();
    intake.keys.revoke(revoked.record().id()).await.unwrap();
    let (live_key, revoked_key) = (live.key().expose_secret(), revoked.key().expose_secret());
    let other_family = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let unknown = "forg_live_00000000000000000000000000000000";
    let body = batch(&[live_key, revoked_key, other_family, unknown]);

    let (status, answer, text) = report(&intake, &body, Some(("key-1", &signer))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let labels: Vec<(&str, &str)> = answer
        .as_array()
        .unwrap()
        .iter()
        .map(|label| {
            (
                label["token_hash"].as_str().unwrap(),
                label["label"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        [
            (hash(live_key).as_str(), "true_positive"),
            (hash(revoked_key).as_str(), "true_positive"),
            (hash(other_family).as_str(), "false_positive"),
            (hash(unknown).as_str(), "false_positive"),
        ]
    );
    for token in [live_key, revoked_key, other_family, unknown] {
        assert!(
            !text.contains(&token[8..]),
            "the answer never echoes a token"
        );
    }
    assert_eq!(answer[0]["token_type"], "forg_api_key");

    // The live key is refused from now on; the owner hears of it, once; the audit log has it.
    let record = intake
        .keys
        .lookup(live.record().digest())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.status_at(std::time::SystemTime::now()),
        KeyStatus::Revoked
    );
    let events = intake.seen.lock().unwrap().clone();
    assert_eq!(
        events.len(),
        1,
        "the revoked key was revoked already: no event"
    );
    let body: Value = serde_json::from_str(&events[0].to_json()).unwrap();
    assert_eq!(body["type"], "key.leaked");
    assert_eq!(body["data"]["key"]["id"], live.record().id().as_str());
    assert_eq!(body["data"]["action"], "revoked");
    assert_eq!(body["data"]["url"], "https://github.com/o/r/blob/main/.env");
    assert!(!events[0].to_json().contains(&live_key[10..]));
    let audited = intake.audit.page(&AuditQuery::new("org_1")).await.unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].action(), AuditAction::KeyLeaked);
    assert_eq!(audited[0].key_id(), Some(live.record().id()));
}

#[tokio::test]
async fn forged_tampered_unsigned_replayed_and_retired_reports_are_refused() {
    let signer = signing_key();
    let intake = intake(&signer, |leaks| leaks).await;
    let live = intake
        .keys
        .issue(NewKey::new("org_1", "leaked", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let body = batch(&[live.key().expose_secret()]);
    let forger = signing_key();
    let cases: [(&str, Option<(&str, &SigningKey)>); 3] = [
        ("forged: another key's signature", Some(("key-1", &forger))),
        (
            "a retired or unknown key identifier",
            Some(("key-0", &signer)),
        ),
        ("unsigned", None),
    ];
    for (what, signed) in cases {
        let (status, answer, _) = report(&intake, &body, signed).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(answer["code"], "invalid_signature", "{what}");
    }
    // Tampered: signed, then a byte of the body changed.
    let signature: Signature = signer.sign(body.as_bytes());
    let tampered = body.replace("content", "contend");
    let response = reqwest::Client::new()
        .post(format!("{}/leaks", intake.base))
        .header("Github-Public-Key-Identifier", "key-1")
        .header(
            "Github-Public-Key-Signature",
            Base64::encode_string(signature.to_der().as_bytes()),
        )
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "tampered");
    let unchanged = intake
        .keys
        .lookup(live.record().digest())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        unchanged.status_at(std::time::SystemTime::now()),
        KeyStatus::Active,
        "nothing acted on"
    );

    // Genuine, then replayed: 409.
    let (status, _, _) = report(&intake, &body, Some(("key-1", &signer))).await;
    assert_eq!(status, StatusCode::OK);
    let signature: Signature = signer.sign(body.as_bytes());
    let der = Base64::encode_string(signature.to_der().as_bytes());
    let replay = || {
        reqwest::Client::new()
            .post(format!("{}/leaks", intake.base))
            .header("Github-Public-Key-Identifier", "key-1")
            .header("Github-Public-Key-Signature", der.clone())
            .body(body.clone())
            .send()
    };
    // ECDSA P-256 here is deterministic (RFC 6979): the same body signs the same.
    let response = replay().await.unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "replayed");
    assert!(
        intake.seen.lock().unwrap().len() == 1,
        "one leak, one event"
    );
}

#[tokio::test]
async fn a_thousand_tokens_in_one_report_and_disabling_instead() {
    let signer = signing_key();
    let intake = intake(&signer, LeakIntake::disable_instead).await;
    let mut tokens = Vec::new();
    let mut issued = Vec::new();
    for n in 0..10 {
        let key = intake
            .keys
            .issue(NewKey::new(format!("org_{n}"), "ci", &KeyFamily::FORG_TEST))
            .await
            .unwrap();
        tokens.push(key.key().expose_secret().to_owned());
        issued.push(key);
    }
    for n in 0..990 {
        tokens.push(format!("forg_test_{n:032}"));
    }
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let (status, answer, _) = report(&intake, &batch(&refs), Some(("key-1", &signer))).await;
    assert_eq!(status, StatusCode::OK);
    let labels = answer.as_array().unwrap();
    assert_eq!(labels.len(), 1_000);
    assert_eq!(
        labels
            .iter()
            .filter(|l| l["label"] == "true_positive")
            .count(),
        10
    );
    for key in &issued {
        let record = intake
            .keys
            .lookup(key.record().digest())
            .await
            .unwrap()
            .unwrap();
        assert!(
            record.disabled() && !record.revoked(),
            "disabled, not revoked"
        );
    }
    assert_eq!(intake.seen.lock().unwrap().len(), 10);
    // One more is too many.
    tokens.push("forg_test_x".to_owned());
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let (status, answer, _) = report(&intake, &batch(&refs), Some(("key-1", &signer))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["fields"][0]["field"], "body");
}

#[tokio::test]
async fn the_intake_is_rate_limited_per_client_address() {
    let signer = signing_key();
    let intake = intake(&signer, |leaks| {
        leaks.rate_limit(RateClass::per_client_ip(
            ClassName::from_static("leaks"),
            Quota::per_minute_const(3),
        ))
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(report(&intake, "[]", None).await.0);
    }
    assert_eq!(statuses[..3], [StatusCode::UNAUTHORIZED; 3]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
}

/// `docs/leaks.openapi.json` is what `LeakIntake::openapi` generates. Regenerate it with
/// `UPDATE_OPENAPI=1 cargo test --all-features --test it openapi`.
#[test]
fn the_committed_leak_intake_openapi_document_is_the_generated_one() {
    let keys = Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy()));
    let generated = LeakIntake::new(keys)
        .openapi("/leaks")
        .to_pretty_json()
        .unwrap()
        + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/leaks.openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(
        committed == generated,
        "docs/leaks.openapi.json differs from LeakIntake::openapi(): run UPDATE_OPENAPI=1 cargo test --all-features --test it openapi"
    );
}

/// Each answer of the intake has a status its document names and a body of the schema
/// documented for it: labels, a forged report, a replay, a wrong body, too many tokens.
#[tokio::test]
async fn the_intake_answers_as_its_openapi_document_says() {
    let signer = signing_key();
    let intake = intake(&signer, |leaks| leaks).await;
    let document: Value =
        serde_json::from_str(include_str!("../../docs/leaks.openapi.json")).unwrap();
    let operation = &document["paths"]["/leaks"]["post"];
    assert_eq!(operation["security"], json!([]), "no key or session");
    let max =
        operation["requestBody"]["content"]["application/json"]["schema"]["maxItems"].as_u64();
    assert_eq!(max, Some(1_000));

    let issued = intake
        .keys
        .issue(NewKey::new("org_1", "leaked", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let valid = batch(&[issued.key().expose_secret(), "forg_live_0000"]);
    let too_many = batch(&vec!["x"; 1_001]);
    let cases = [
        (valid.as_str(), true, StatusCode::OK),
        (valid.as_str(), true, StatusCode::CONFLICT),
        (valid.as_str(), false, StatusCode::UNAUTHORIZED),
        (r#"{"token": "x"}"#, true, StatusCode::UNPROCESSABLE_ENTITY),
        (
            r#"[{"token": "x", "type": "t", "extra": 1}]"#,
            true,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (too_many.as_str(), true, StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, signed, expected) in cases {
        let (status, answer, text) =
            report(&intake, body, signed.then_some(("key-1", &signer))).await;
        assert_eq!(status, expected, "{text}");
        let documented = &operation["responses"][status.as_str()];
        let schema = &documented["content"]["application/json"]["schema"];
        assert!(!schema.is_null(), "{status} is documented with a body");
        crate::openapi_conformance::check(&document, schema, &answer, "body")
            .unwrap_or_else(|error| panic!("{status}: {error}\n{text}"));
    }
}

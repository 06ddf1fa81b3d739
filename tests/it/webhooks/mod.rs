//! Issue 39.3: webhooks from the management API through a real HTTP receiver that checks
//! every signature: registration (the secret once, HTTPS but for loopback), delivery with
//! the Standard Webhooks headers, a receiver that fails twice then succeeds (delivered
//! once, the same `webhook-id` on every attempt), dead letters and their expiry, two
//! senders and one delivery, redirects not followed, who may manage endpoints.
#![cfg(feature = "webhooks")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::events::KeyEvents;
use tower_api_key::webhooks::{
    MemoryWebhookStore, Retries, WebhookOutbox, WebhookSecret, WebhookSender, WebhookStore,
};
use tower_api_key::ForgScope;

use crate::manage::{serve, with_key, User};

mod instances;

/// One request the receiver got: its headers and body, and whether its signature
/// verified with the secret it was given.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: i64,
    body: Value,
    verified: bool,
}

/// A plain HTTP receiver on loopback answering each request with the next of `answers`
/// (then 200), checking signatures once it knows the secret.
struct Receiver {
    url: String,
    secret: Arc<Mutex<Option<WebhookSecret>>>,
    got: Arc<Mutex<Vec<Received>>>,
}

#[derive(Clone)]
struct Script {
    answers: Arc<Vec<StatusCode>>,
    calls: Arc<AtomicUsize>,
    secret: Arc<Mutex<Option<WebhookSecret>>>,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn hook(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp) = (
        header("webhook-id"),
        header("webhook-timestamp").parse().unwrap_or(0),
    );
    let verified = script
        .secret
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|secret| secret.verifies(&id, timestamp, &body, &header("webhook-signature")));
    script.got.lock().unwrap().push(Received {
        id,
        timestamp,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        verified,
    });
    let n = script.calls.fetch_add(1, Ordering::SeqCst);
    script.answers.get(n).copied().unwrap_or(StatusCode::OK)
}

async fn receiver(answers: Vec<StatusCode>) -> Receiver {
    let script = Script {
        answers: Arc::new(answers),
        calls: Arc::default(),
        secret: Arc::default(),
        got: Arc::default(),
    };
    let (secret, got) = (Arc::clone(&script.secret), Arc::clone(&script.got));
    let app = Router::new()
        .route("/hook", post(hook))
        .route(
            "/moved",
            post(|| async { (StatusCode::FOUND, [("location", "/hook")]) }),
        )
        .with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{addr}"),
        secret,
        got,
    }
}

struct Setup {
    server: crate::manage::Server,
    alice: User,
    store: Arc<dyn WebhookStore>,
    clock: ManualClock,
}

async fn setup() -> Setup {
    setup_on(Arc::new(MemoryWebhookStore::new())).await
}

/// The management API with its events' outbox and its webhook routes on `store`.
async fn setup_on(store: Arc<dyn WebhookStore>) -> Setup {
    let events = KeyEvents::new().sink(WebhookOutbox::new(store.clone()));
    let webhooks = store.clone();
    let server = serve(move |api| {
        api.events(events)
            .webhooks(webhooks)
            .allow_webhooks_with(ForgScope::ManageWebhooks)
    })
    .await;
    let alice = User::login(&server, "org_a", "read:rules,manage:webhooks").await;
    Setup {
        server,
        alice,
        store,
        // A second ahead of the events the API stamps with the system clock: they are due.
        clock: ManualClock::new(std::time::SystemTime::now() + Duration::from_secs(1)),
    }
}

impl Setup {
    fn sender(&self, retries: Retries) -> WebhookSender {
        WebhookSender::new(self.store.clone())
            .retries(retries)
            .with_clock(self.clock.clone())
    }

    /// Registers `url`, telling the receiver the secret shown.
    async fn register(&self, receiver: &Receiver, path: &str) -> String {
        let (status, body) = self
            .alice
            .call(
                "POST",
                "/webhooks",
                Some(json!({ "url": format!("{}{path}", receiver.url) })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let secret = body["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_"));
        *receiver.secret.lock().unwrap() = Some(secret.parse().unwrap());
        body["data"]["id"].as_str().unwrap().to_owned()
    }

    async fn issue_a_key(&self) -> String {
        let (status, body) = self
            .alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": "ci", "environment": "test", "scopes": ["read:rules"] })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        body["record"]["id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn an_event_reaches_a_real_receiver_signed() {
    let setup = setup().await;
    let receiver = receiver(vec![]).await;
    let endpoint = setup.register(&receiver, "/hook").await;
    // The secret is shown once: never in the list.
    let (_, listed) = setup.alice.call("GET", "/webhooks", None).await;
    let secret = receiver
        .secret
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .expose_secret();
    assert!(!listed.to_string().contains(&secret[6..]));

    let key = setup.issue_a_key().await;
    let sender = setup.sender(Retries::default());
    assert_eq!(sender.run_once().await.unwrap(), 1);
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].verified,
        "the signature verifies with the secret shown"
    );
    assert!(got[0].id.starts_with("evt_"));
    let now = setup
        .clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(got[0].timestamp, i64::try_from(now).unwrap());
    assert_eq!(got[0].body["type"], "key.issued");
    assert_eq!(got[0].body["data"]["key"]["id"], key.as_str());

    let (_, listed) = setup.alice.call("GET", "/webhooks", None).await;
    assert_eq!(listed["data"][0]["delivered"], 1);
    assert_eq!(listed["data"][0]["latest"]["state"], "delivered");
    let (_, deliveries) = setup
        .alice
        .call("GET", &format!("/webhooks/{endpoint}/deliveries"), None)
        .await;
    assert_eq!(deliveries["data"][0]["event_id"], got[0].id.as_str());
    assert_eq!(deliveries["data"][0]["last_status"], 200);
    assert_eq!(sender.run_once().await.unwrap(), 0, "delivered once");
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_event_once_with_one_id() {
    let setup = setup().await;
    let receiver = receiver(vec![
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
    ])
    .await;
    let endpoint = setup.register(&receiver, "/hook").await;
    setup.issue_a_key().await;
    let retries = Retries::new(Duration::from_secs(10), Duration::from_secs(60), 5);
    let sender = setup.sender(retries);
    assert_eq!(sender.run_once().await.unwrap(), 1);
    assert_eq!(
        sender.run_once().await.unwrap(),
        0,
        "not due before its backoff"
    );
    let pending = &setup.store.deliveries(&endpoint, 1).await.unwrap()[0];
    assert_eq!((pending.attempts, pending.last_status), (1, Some(500)));
    let wait = pending.next_at.duration_since(setup.clock.now()).unwrap();
    assert!(
        (Duration::from_secs(5)..=Duration::from_secs(10)).contains(&wait),
        "{wait:?}: jittered within the first step"
    );
    for _ in 0..2 {
        setup.clock.advance(Duration::from_secs(60));
        assert_eq!(sender.run_once().await.unwrap(), 1);
    }
    setup.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        sender.run_once().await.unwrap(),
        0,
        "delivered: never again"
    );
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.id == got[0].id && r.verified),
        "one webhook-id"
    );
    let done = &setup.store.deliveries(&endpoint, 1).await.unwrap()[0];
    assert_eq!((done.attempts, done.last_status), (3, Some(200)));
}

#[tokio::test]
async fn dead_letters_after_the_last_attempt_then_expire() {
    let setup = setup().await;
    let receiver = receiver(vec![StatusCode::SERVICE_UNAVAILABLE; 10]).await;
    let endpoint = setup.register(&receiver, "/hook").await;
    setup.issue_a_key().await;
    let sender = setup
        .sender(Retries::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            3,
        ))
        .retention(Duration::from_secs(86_400));
    for _ in 0..3 {
        assert_eq!(sender.run_once().await.unwrap(), 1);
        setup.clock.advance(Duration::from_secs(2));
    }
    assert_eq!(sender.run_once().await.unwrap(), 0);
    let (_, listed) = setup.alice.call("GET", "/webhooks", None).await;
    assert_eq!(
        (
            listed["data"][0]["dead"].as_u64(),
            listed["data"][0]["pending"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(listed["data"][0]["latest"]["last_error"], "answered 503");
    setup.clock.advance(Duration::from_secs(86_401));
    sender.run_once().await.unwrap();
    assert!(
        setup
            .store
            .deliveries(&endpoint, 10)
            .await
            .unwrap()
            .is_empty(),
        "dead letters expire"
    );
}

#[tokio::test]
async fn two_senders_on_one_store_deliver_once() {
    let setup = setup().await;
    let receiver = receiver(vec![]).await;
    setup.register(&receiver, "/hook").await;
    for _ in 0..5 {
        setup.issue_a_key().await;
    }
    let (a, b) = (
        setup.sender(Retries::default()),
        setup.sender(Retries::default()),
    );
    let (ran_a, ran_b) = tokio::join!(a.run_once(), b.run_once());
    assert_eq!(ran_a.unwrap() + ran_b.unwrap(), 5);
    let mut ids: Vec<String> = receiver
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    assert_eq!(receiver.got.lock().unwrap().len(), 5, "each event once");
}

#[tokio::test]
async fn a_redirect_is_a_failure_not_followed() {
    let setup = setup().await;
    let receiver = receiver(vec![]).await;
    let endpoint = setup.register(&receiver, "/moved").await;
    setup.issue_a_key().await;
    setup.sender(Retries::default()).run_once().await.unwrap();
    assert!(
        receiver.got.lock().unwrap().is_empty(),
        "the redirect was not followed"
    );
    let delivery = &setup.store.deliveries(&endpoint, 1).await.unwrap()[0];
    assert_eq!(delivery.last_status, Some(302));
}

#[tokio::test]
async fn who_may_register_what() {
    let setup = setup().await;
    for (url, expected) in [
        (
            "http://hooks.example.com/forge",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "https://user:pw@hooks.example.com/",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("ftp://hooks.example.com/", StatusCode::UNPROCESSABLE_ENTITY),
        ("https://hooks.example.com/forge", StatusCode::CREATED),
        ("http://localhost:9/hook", StatusCode::CREATED),
        ("http://[::1]:9/hook", StatusCode::CREATED),
    ] {
        let (status, body) = setup
            .alice
            .call("POST", "/webhooks", Some(json!({ "url": url })))
            .await;
        assert_eq!(status, expected, "{url}: {body}");
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(body["fields"][0]["field"], "url");
            assert!(
                !body.to_string().contains("user:pw"),
                "never the value sent"
            );
        }
    }
    let (status, body) = setup
        .alice
        .call(
            "POST",
            "/webhooks",
            Some(json!({ "url": "https://a.example", "events": ["key.revoked", "key.exploded"] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["fields"][0]["field"], "events");
    // Ten at most.
    let mut last = StatusCode::CREATED;
    for _ in 0..8 {
        last = setup
            .alice
            .call(
                "POST",
                "/webhooks",
                Some(json!({ "url": "https://a.example" })),
            )
            .await
            .0;
    }
    assert_eq!(last, StatusCode::CONFLICT);

    // Another owner: 404; a key without manage:webhooks: 403; one with it: allowed.
    let (_, listed) = setup.alice.call("GET", "/webhooks", None).await;
    let id = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let mallory = User::login(&setup.server, "org_m", "manage:webhooks").await;
    let (status, body) = mallory
        .call("DELETE", &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("webhook_not_found"))
    );
    let (_, created) = setup
        .alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "ops", "environment": "test", "scopes": ["manage:webhooks"] })),
        )
        .await;
    let (_, reader) = setup
        .alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "reader", "environment": "test", "scopes": ["read:rules"] })),
        )
        .await;
    let (status, _) = with_key(
        &setup.server,
        reader["key"].as_str().unwrap(),
        "GET",
        "/api/webhooks",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, listed) = with_key(
        &setup.server,
        created["key"].as_str().unwrap(),
        "GET",
        "/api/webhooks",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"].as_array().unwrap().len(), 10);
    let (status, _) = setup
        .alice
        .call("DELETE", &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

//! Rotation hygiene on a fake clock (issue 25.3): keys past the store's rotation age are
//! `rotation_due` in the management API, a maximum lifetime gives every new key an expiry,
//! and responses to a key that expires soon carry `api-key-expires`.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use tower::Layer;
use tower_api_key::clock::ManualClock;
use tower_api_key::key::KeyFamily;
use tower_api_key::manage::KeysApi;
use tower_api_key::store::KeyPolicy;
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey, API_KEY_EXPIRES};

const DAY: Duration = Duration::from_secs(86_400);

fn store(policy: KeyPolicy) -> (Arc<MemoryKeyStore<ForgScope>>, ManualClock) {
    let clock = ManualClock::new(start_time());
    let store = MemoryKeyStore::new().with_policy(policy.clock(clock.clone()));
    (Arc::new(store), clock)
}

fn get(path: &str, key: &str) -> Request<axum::body::Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {key}"))
        .body(axum::body::Body::empty())
        .unwrap()
}

#[tokio::test]
async fn keys_past_the_rotation_age_are_due_in_the_management_api() {
    let (store, clock) = store(tower_api_key::forg::key_policy().rotation_age(90 * DAY));
    let admin = store
        .issue(NewKey::new("org_1", "admin", &KeyFamily::FORG_TEST).scopes(ForgScope::Admin))
        .await
        .unwrap();
    clock.advance(30 * DAY);
    let younger = store
        .issue(NewKey::new("org_1", "younger", &KeyFamily::FORG_TEST))
        .await
        .unwrap();
    let api = KeysApi::new(Arc::clone(&store))
        .allow_keys_with(ForgScope::Admin)
        .router::<()>();
    let app = AuthLayer::new(Arc::clone(&store)).layer(api);
    let key = admin.key().expose_secret();
    let due = |answer: &Answer| -> Vec<(String, bool)> {
        answer.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let due = k["rotation_due"]
                    .as_bool()
                    .expect("rotation_due is a boolean");
                (k["name"].as_str().unwrap().to_owned(), due)
            })
            .collect()
    };
    // Day 89 of the first key: nothing due.
    clock.advance(59 * DAY);
    let list = send(app.clone(), get("/keys", key)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(
        due(&list),
        [("younger".to_owned(), false), ("admin".to_owned(), false)]
    );
    // Day 90: the first is due, the younger one not yet; one key alone says so too.
    clock.advance(DAY);
    let list = send(app.clone(), get("/keys", key)).await;
    assert_eq!(
        due(&list),
        [("younger".to_owned(), false), ("admin".to_owned(), true)]
    );
    let one = send(
        app.clone(),
        get(&format!("/keys/{}", admin.record().id()), key),
    )
    .await;
    assert_eq!(one.json()["data"]["rotation_due"], true);
    // A revoked key is not due: it is gone.
    store.revoke(younger.record().id()).await.unwrap();
    clock.advance(60 * DAY);
    let list = send(app.clone(), get("/keys", key)).await;
    assert_eq!(
        due(&list),
        [("younger".to_owned(), false), ("admin".to_owned(), true)]
    );
}

#[tokio::test]
async fn without_a_rotation_age_nothing_is_due() {
    let (store, clock) = store(tower_api_key::forg::key_policy());
    let admin = store
        .issue(NewKey::new("org_1", "admin", &KeyFamily::FORG_TEST).scopes(ForgScope::Admin))
        .await
        .unwrap();
    clock.advance(3650 * DAY);
    let api = KeysApi::new(Arc::clone(&store))
        .allow_keys_with(ForgScope::Admin)
        .router::<()>();
    let app = AuthLayer::new(Arc::clone(&store)).layer(api);
    let list = send(app, get("/keys", admin.key().expose_secret())).await;
    assert_eq!(list.json()["data"][0]["rotation_due"], false);
    assert_eq!(
        list.json()["data"][0]["expires_at"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn a_maximum_lifetime_gives_every_new_key_an_expiry() {
    let (store, clock) = store(tower_api_key::forg::key_policy().max_lifetime(365 * DAY));
    let forever = store
        .issue(NewKey::new(
            "org_1",
            "no expiry asked",
            &KeyFamily::FORG_LIVE,
        ))
        .await
        .unwrap();
    assert_eq!(
        forever.record().expires_at(),
        Some(start_time() + 365 * DAY)
    );
    let too_long = store
        .issue(NewKey::new("org_1", "two years", &KeyFamily::FORG_LIVE).expires_in(730 * DAY))
        .await
        .unwrap();
    assert_eq!(
        too_long.record().expires_at(),
        Some(start_time() + 365 * DAY)
    );
    let short = store
        .issue(NewKey::new("org_1", "a week", &KeyFamily::FORG_LIVE).expires_in(7 * DAY))
        .await
        .unwrap();
    assert_eq!(short.record().expires_at(), Some(start_time() + 7 * DAY));
    // A rotation 100 days in: the successor's expiry counts from its own issue.
    clock.advance(100 * DAY);
    let successor = store.rotate(forever.record().id(), None).await.unwrap();
    assert_eq!(
        successor.record().expires_at(),
        Some(start_time() + 465 * DAY)
    );
    // The key stops working at its expiry.
    let app = AuthLayer::new(Arc::clone(&store)).layer(Probe::new().service::<String>());
    let key = forever.key().expose_secret();
    assert_eq!(send(app.clone(), bearer(key)).await.status, StatusCode::OK);
    clock.advance(265 * DAY);
    assert_eq!(
        send(app, bearer(key)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_key_that_expires_within_the_window_is_announced_on_every_response() {
    let (store, clock) = store(tower_api_key::forg::key_policy());
    let soon = store
        .issue(NewKey::new("org_1", "soon", &KeyFamily::FORG_LIVE).expires_in(10 * DAY))
        .await
        .unwrap();
    let never = store
        .issue(NewKey::new("org_1", "never", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let probe = Probe::new();
    let app = AuthLayer::new(Arc::clone(&store))
        .expiry_notice(7 * DAY)
        .layer(probe.service::<String>());
    let key = soon.key().expose_secret();
    // Ten days out: outside the week's window.
    let early = send(app.clone(), bearer(key)).await;
    assert_eq!(early.status, StatusCode::OK);
    assert_eq!(early.header("api-key-expires"), None);
    // Seven days out: announced, as an HTTP-date (2026-01-11T00:00:00Z).
    clock.advance(3 * DAY);
    let warned = send(app.clone(), bearer(key)).await;
    assert_eq!(warned.status, StatusCode::OK);
    assert_eq!(
        warned.header(API_KEY_EXPIRES.as_str()),
        Some("Sun, 11 Jan 2026 00:00:00 GMT")
    );
    let never = send(app.clone(), bearer(never.key().expose_secret())).await;
    assert_eq!(never.header("api-key-expires"), None);
    // A refused request says nothing about keys.
    let refused = send(
        app.clone(),
        bearer("forg_live_0000000000000000000000000000000000"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.header("api-key-expires"), None);
    // Off by default.
    let quiet = AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>());
    assert_eq!(
        send(quiet, bearer(key)).await.header("api-key-expires"),
        None
    );
    assert_eq!(probe.calls(), 4, "every request but the refused one");
}

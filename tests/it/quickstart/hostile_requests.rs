//! Issue 21.2 and 21.7: no body, query string or path id makes the management API, the
//! login or the agent registration panic or answer 5xx. Arbitrary requests (proptest, its
//! failures kept in `tests/proptest-regressions/`) and a committed corpus of hostile ones
//! (`tests/corpus/api.jsonl`, one request a line) go through the quickstart's router in
//! process, as a session, as the admin test key, and anonymously.

use super::quickstart;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::ConnectInfo;
use axum::Router;
use http::{Method, Request};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use tower::ServiceExt;
use tower_api_key::key::KeyFamily;
use tower_api_key::{ForgScope, ManageKeys, MemoryKeyStore, NewKey};

/// One request: who sends it, how, and what.
#[derive(Debug, Clone, Deserialize)]
struct Hostile {
    /// `session`, `key` or `anonymous`.
    caller: String,
    method: String,
    /// A path with `{id}` where the id goes.
    path: String,
    id: String,
    query: String,
    /// The raw body (JSON or not).
    body: String,
}

struct App {
    runtime: tokio::runtime::Runtime,
    router: Router,
    demo: quickstart::Demo,
    test_key: String,
    next_ip: AtomicU32,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (router, demo, test_key) = runtime.block_on(async {
            let store =
                Arc::new(MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy()));
            let keys = quickstart::issue_demo_keys(&store).await.unwrap();
            let demo = quickstart::Demo::new(store, &keys);
            let test_key = keys.test.key().expose_secret().to_owned();
            (quickstart::app(&demo), demo, test_key)
        });
        App {
            runtime,
            router,
            demo,
            test_key,
            next_ip: AtomicU32::new(1),
        }
    })
}

/// Sends `request` and answers its status; a panic in a handler fails the test.
fn send(hostile: &Hostile) -> u16 {
    let app = app();
    app.runtime.block_on(async {
        let n = app.next_ip.fetch_add(1, Ordering::Relaxed);
        let mut id = hostile.id.clone();
        let mut headers: Vec<(&str, String)> = Vec::new();
        match hostile.caller.as_str() {
            "session" => {
                // An owner and a session of its own each time, so the per-owner limits
                // never hide a case; `{own}` names a key of that owner.
                let owner = format!("org_h{n}");
                let own = app
                    .demo
                    .keys
                    .issue(NewKey::new(owner.as_str(), "own", &KeyFamily::FORG_TEST))
                    .await
                    .unwrap();
                id = id.replace("{own}", own.record().id().as_str());
                let started = app
                    .demo
                    .sessions
                    .start(&http::HeaderMap::new(), owner, ForgScope::Admin)
                    .await
                    .unwrap();
                headers.push(("cookie", started.cookies().cookie_header()));
                let csrf = started.cookies().csrf_token().unwrap().to_owned();
                headers.push(("x-csrf-token", csrf));
            }
            "key" => headers.push(("authorization", format!("Bearer {}", app.test_key))),
            _ => {}
        }
        let mut uri = hostile
            .path
            .replace("{id}", &id.replace("{own}", "key_unknown"));
        if !hostile.query.is_empty() {
            uri = format!("{uri}?{}", hostile.query);
        }
        let Ok(method) = Method::from_bytes(hostile.method.as_bytes()) else {
            return 400;
        };
        let mut request = Request::builder().method(method).uri(uri.as_str());
        if !hostile.body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let Ok(mut request) = request.body(axum::body::Body::from(hostile.body.clone())) else {
            return 400; // not even an HTTP request
        };
        // A new client address each time: the 5/min login limit never hides a case.
        let peer = SocketAddr::from((Ipv4Addr::from(0x7f00_0000 | (n & 0x00ff_ffff)), 40_000));
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = app.router.clone().oneshot(request).await.unwrap();
        if std::env::var_os("HOSTILE_TRACE").is_some() {
            eprintln!(
                "{} {} {} {uri}",
                response.status().as_u16(),
                hostile.method,
                hostile.path
            );
        }
        response.status().as_u16()
    })
}

const ROUTES: [(&str, &str, &str); 12] = [
    ("session", "POST", "/v1/keys"),
    ("key", "POST", "/v1/keys"),
    ("session", "GET", "/v1/keys"),
    ("session", "GET", "/v1/keys/{id}"),
    ("session", "DELETE", "/v1/keys/{id}"),
    ("session", "POST", "/v1/keys/{id}/rotate"),
    ("session", "POST", "/v1/keys/{id}/revoke"),
    ("session", "POST", "/v1/keys/{id}/disable"),
    ("session", "POST", "/v1/keys/{id}/enable"),
    ("session", "GET", "/v1/keys/{id}/activity"),
    ("anonymous", "POST", "/auth/login"),
    ("anonymous", "POST", "/auth/register-agent"),
];

/// Field names the endpoints know, so that objects reach the validation code.
const FIELDS: [&str; 10] = [
    "name",
    "environment",
    "scopes",
    "expires_at",
    "metadata",
    "grace_seconds",
    "email",
    "password",
    "limit",
    "before",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("live"),
            Just("test"),
            Just("admin"),
            Just("read:rules"),
            Just("a@b.c")
        ]
        .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(FIELDS.to_vec()).prop_map(String::from),
                    "[a-z_]{1,12}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), json_value(), 0..7)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()).to_string()),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => ".{0,60}",
        1 => Just(String::new()),
    ]
}

fn hostile() -> impl Strategy<Value = Hostile> {
    (
        prop::sample::select(ROUTES.to_vec()),
        prop_oneof![
            3 => Just("{own}".to_owned()),
            1 => Just("key_unknown".to_owned()),
            1 => "[a-zA-Z0-9_%.:-]{0,80}",
            1 => "[^/?#]{0,20}",
        ],
        prop_oneof![
            Just(String::new()),
            "(limit|before)=[0-9a-z-]{0,25}(&(limit|before)=[0-9a-z-]{0,25})?",
            "[ -~]{0,30}"
        ],
        body(),
    )
        .prop_map(|((caller, method, path), id, query, body)| Hostile {
            caller: caller.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            id,
            query,
            body,
        })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 400,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/hostile_requests.txt",
            ),
        )),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_request_panics_or_answers_5xx(hostile in hostile()) {
        let status = send(&hostile);
        prop_assert!(status < 500, "{status} for {hostile:?}");
    }
}

#[test]
fn the_committed_corpus_never_panics_or_answers_5xx() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/api.jsonl"
    ))
    .unwrap();
    let mut replayed = 0;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let hostile: Hostile = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let status = send(&hostile);
        assert!(status < 500, "{status} for {hostile:?}");
        replayed += 1;
    }
    assert!(replayed >= 20, "the corpus has {replayed} requests");
}

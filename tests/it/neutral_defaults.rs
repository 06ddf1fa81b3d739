//! Issue 37.10: a library first, the FORG product as a preset. A service built from the
//! crate's defaults, with its own scopes and key family, meets nothing of FORG in what its
//! clients see: no FORG header is read, no FORG cookie is set, no FORG family is accepted,
//! and no FORG or ForgeOS word reaches a status line, header or body. The FORG choices
//! (`X-ForgeOS-API-Key`, `forge_session`/`forge_csrf`) are in `forg::` and only there.

use crate::common;

use std::num::NonZeroU32;
use std::sync::Arc;

use common::{send, Answer, Probe};
use http::{HeaderMap, Request, StatusCode};
use tower::Layer;
use tower_api_key::key::{Alphabet, Environment, KeyFamilies, KeyFamily};
use tower_api_key::rate_limit::{ClassName, Quota, RateClass, RateLimits};
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::KeyPolicy;
use tower_api_key::{forg, require, AuthLayer, ManageKeys, MemoryKeyStore, NewKey};

tower_api_key::scopes! {
    /// A photo service's own vocabulary.
    pub enum PhotoScope {
        /// See photos.
        View = "photos:view",
        /// Upload photos.
        Upload = "photos:upload",
    }
}

/// Anything of FORG a client could see.
const FORG_WORDS: [&str; 6] = ["forg", "forge", "fos_", "fses_", "x-forgeos", "dashboard"];

fn forg_words_in(answer: &Answer) -> Vec<String> {
    let mut text = String::from_utf8_lossy(&answer.body).to_lowercase();
    for (name, value) in &answer.headers {
        text.push_str(&format!("\n{name}: {}", value.to_str().unwrap_or("")).to_lowercase());
    }
    FORG_WORDS
        .into_iter()
        .filter(|word| text.contains(word))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_service_from_the_defaults_meets_nothing_of_forg() {
    let photo = KeyFamily::builder("pk_", Environment::Live)
        .alphabet(Alphabet::Base62)
        .secret_len(32..=32)
        .build()
        .unwrap();
    let policy = KeyPolicy::default().families(KeyFamilies::only([photo.clone()]).unwrap());
    let store = Arc::new(MemoryKeyStore::<PhotoScope>::new().with_policy(policy));
    let viewer = store
        .issue(NewKey::new("acct_1", "viewer", &photo).scopes(PhotoScope::View))
        .await
        .unwrap();
    let key = viewer.key().expose_secret().to_owned();
    let session_store =
        Arc::new(MemoryKeyStore::<PhotoScope>::new().with_policy(KeyPolicy::sessions()));
    let sessions = Sessions::new(session_store, CsrfSecret::generate().unwrap());
    let started = sessions
        .start(&HeaderMap::new(), "acct_1", PhotoScope::View)
        .await
        .unwrap();
    let set_cookies: Vec<String> = started
        .cookies()
        .set_cookie_values()
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    assert!(
        set_cookies[0].starts_with("session=") && set_cookies[1].starts_with("csrf_token="),
        "{set_cookies:?}"
    );
    let cookie = started.cookies().cookie_header();

    let probe = Probe::new();
    let class = RateClass::per_key(
        ClassName::from_static("uploads"),
        Quota::per_minute(NonZeroU32::new(1).unwrap()),
    );
    let service = AuthLayer::new(Arc::clone(&store))
        .sessions(sessions.clone())
        .layer(
            RateLimits::new()
                .layer(class)
                .layer(require(PhotoScope::Upload).layer(probe.service::<String>())),
        );
    let request = |header: Option<(&str, String)>| {
        let request = Request::post("/photos");
        match header {
            Some((name, value)) => request.header(name, value),
            None => request,
        }
        .body(String::new())
        .unwrap()
    };
    let forg_key = "forg_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d".to_owned();
    let cases = [
        ("no credential", request(None), StatusCode::UNAUTHORIZED),
        (
            "the key in the FORG header, not read",
            request(Some(("x-forgeos-api-key", key.clone()))),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a FORG key, not a family of this service",
            request(Some(("authorization", format!("Bearer {forg_key}")))),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a scope the key lacks",
            request(Some(("authorization", format!("Bearer {key}")))),
            StatusCode::FORBIDDEN,
        ),
        (
            "the session without its CSRF token",
            request(Some(("cookie", cookie.clone()))),
            StatusCode::FORBIDDEN,
        ),
        (
            "the FORG session cookie, not read",
            request(Some((
                "cookie",
                cookie.replace("session=", "forge_session="),
            ))),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (case, request, status) in cases {
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, status, "{case}: {:?}", answer.body);
        assert_eq!(
            forg_words_in(&answer),
            Vec::<String>::new(),
            "{case}: {:?}",
            answer.body
        );
    }
    assert_eq!(probe.calls(), 0, "nothing reached the service");
}

/// A store on the default policy knows no family, FORG's included, until the application
/// registers one; the FORG preset's policy knows the three.
#[tokio::test]
async fn the_default_policy_accepts_no_family_until_one_is_registered() {
    use tower_api_key::store::ManageError;

    let neutral = MemoryKeyStore::<PhotoScope>::new();
    for family in [KeyFamily::FORG_LIVE, KeyFamily::FORG_TEST, KeyFamily::FOS] {
        let refused = neutral.issue(NewKey::new("acct_1", "k", &family)).await;
        assert!(
            matches!(refused, Err(ManageError::FamilyNotAccepted(_))),
            "{family:?}: {refused:?}"
        );
    }
    // An empty set parses nothing; a family added to it parses its keys.
    let families = KeyFamilies::default();
    assert!(families
        .parse("forg_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d")
        .is_err());
    let families = families.with(KeyFamily::FORG_TEST).unwrap();
    assert!(families
        .parse("forg_test_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d")
        .is_ok());
    let forg = MemoryKeyStore::<PhotoScope>::new().with_policy(forg::key_policy());
    for family in [KeyFamily::FORG_LIVE, KeyFamily::FORG_TEST, KeyFamily::FOS] {
        assert!(forg
            .issue(NewKey::new("acct_1", "k", &family))
            .await
            .is_ok());
    }
}

/// The preset gives the FORG choices back, in one place.
#[tokio::test]
async fn the_forg_preset_reads_the_forgeos_header_and_names_its_cookies() {
    let (store, _clock) = common::store_with_clock();
    let issued = store
        .issue(
            NewKey::new("org_1", "ci", &KeyFamily::FOS).scopes(tower_api_key::ForgScope::ReadRules),
        )
        .await
        .unwrap();
    let probe = Probe::new();
    let request = || {
        Request::get("/")
            .header("x-forgeos-api-key", issued.key().expose_secret())
            .body(String::new())
            .unwrap()
    };
    let neutral = AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>());
    assert_eq!(
        send(neutral, request()).await.status,
        StatusCode::UNAUTHORIZED
    );
    let preset = AuthLayer::new(Arc::clone(&store))
        .sources(forg::credential_sources())
        .layer(probe.service::<String>());
    assert_eq!(send(preset, request()).await.status, StatusCode::OK);

    let session_store = Arc::new(
        MemoryKeyStore::<tower_api_key::ForgScope>::new().with_policy(KeyPolicy::sessions()),
    );
    let started = forg::sessions(session_store, CsrfSecret::generate().unwrap())
        .start(
            &HeaderMap::new(),
            "org_1",
            tower_api_key::ForgScope::ReadRules,
        )
        .await
        .unwrap();
    let names: Vec<String> = started
        .cookies()
        .set_cookie_values()
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split('=')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["forge_session", "forge_csrf"]);
}

/// The management API's product texts are the application's to word: the status and code
/// stay, the message is the one it chose; codes it did not word keep the crate's.
#[tokio::test]
async fn the_management_api_speaks_in_the_applications_words() {
    use tower_api_key::manage::{ApiCode, KeysApi};

    let (store, _clock) = common::store_with_clock();
    let issued = store
        .issue(NewKey::new("org_1", "ci", &KeyFamily::FORG_LIVE))
        .await
        .unwrap();
    let api = KeysApi::new(Arc::clone(&store))
        .message(
            ApiCode::SessionRequired,
            "Sign in to the console to manage keys",
        )
        .message(
            ApiCode::SessionRequired,
            "Sign in to the photo console first",
        )
        .router();
    let app = axum::Router::new().fallback_service(AuthLayer::new(Arc::clone(&store)).layer(api));
    let get = |path: &str| {
        Request::get(path)
            .header(
                "authorization",
                format!("Bearer {}", issued.key().expose_secret()),
            )
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let answer = send(app.clone(), get("/keys")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.json(),
        serde_json::json!({
            "error": "Sign in to the photo console first",
            "code": "session_required",
            "status": 403
        })
    );
    assert_eq!(
        answer.headers["content-type"], "application/json",
        "re-rendered whole"
    );
}

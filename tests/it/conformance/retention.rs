//! What storage keeps: records past retention are deleted, login history leaves only live
//! sessions.

use super::*;

/// Issue 21.6: revoked and expired keys stay listed for the retention period (30 days by
/// default), then the store deletes them; disabled and active keys stay. Failed before:
/// every record stayed forever.
pub async fn records_refused_past_retention_are_deleted<F: Fixture>(fixture: &F) {
    let (store, clock) = on_clock(fixture).await;
    let day = Duration::from_secs(86_400);
    let revoked = store.issue(new_key("org_1")).await.unwrap();
    let expiring = store
        .issue(new_key("org_1").expires_in(Duration::from_secs(3600)))
        .await
        .unwrap();
    let disabled = store.issue(new_key("org_1")).await.unwrap();
    let active = store.issue(new_key("org_1")).await.unwrap();
    store.revoke(revoked.record().id()).await.unwrap();
    store.disable(disabled.record().id()).await.unwrap();

    clock.advance(day * 29);
    store.issue(new_key("org_1")).await.unwrap();
    assert_eq!(
        store.list("org_1").await.unwrap().len(),
        5,
        "within retention: listed for the audit view"
    );
    clock.advance(day * 2);
    store.issue(new_key("org_1")).await.unwrap();
    let listed: Vec<KeyId> = store
        .list("org_1")
        .await
        .unwrap()
        .iter()
        .map(|record| record.id().clone())
        .collect();
    assert_eq!(listed.len(), 4, "{listed:?}");
    for gone in [&revoked, &expiring] {
        assert!(!listed.contains(gone.record().id()));
        assert!(store.get(gone.record().id()).await.unwrap().is_none());
        assert!(store
            .lookup(gone.record().digest())
            .await
            .unwrap()
            .is_none());
    }
    for kept in [&disabled, &active] {
        assert!(listed.contains(kept.record().id()));
    }
}

/// Issue 21.6: many logins and logouts of one owner leave only its live sessions: ended
/// sessions are deleted at once, expired ones when the owner next logs in. Failed before:
/// one record per login, forever, and `Sessions::start` walked them all.
pub async fn login_history_leaves_only_live_sessions<F: Fixture>(fixture: &F) {
    use http::{HeaderMap, Request, Response};
    use tower::{Layer, ServiceExt};
    use tower_api_key::session::{CsrfSecret, Sessions};
    use tower_api_key::{AuthLayer, Principal};

    let clock = ManualClock::default();
    let keys = fixture
        .store(tower_api_key::forg::key_policy().clock(clock.clone()))
        .await;
    let store = fixture
        .store(KeyPolicy::sessions().clock(clock.clone()))
        .await;
    let sessions = Sessions::new(Arc::clone(&store), CsrfSecret::generate().unwrap());
    // What the logout route does: the session's principal ends it.
    let logout = {
        let sessions = sessions.clone();
        AuthLayer::new(keys)
            .sessions(sessions.clone())
            .layer(tower::service_fn(move |request: Request<()>| {
                let sessions = sessions.clone();
                async move {
                    let principal = request.extensions().get::<Principal>().cloned();
                    if let Some(principal) = principal {
                        sessions.end(&principal).await.unwrap();
                    }
                    Ok::<_, std::convert::Infallible>(Response::new(String::new()))
                }
            }))
    };
    let cycles = fixture.login_cycles();
    for _ in 0..cycles {
        let started = sessions
            .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
            .await
            .unwrap();
        let request = Request::get("/auth/logout")
            .header("cookie", started.cookies().cookie_header())
            .body(())
            .unwrap();
        let response = logout.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
    }
    assert!(
        store.records_of("user_1").await.unwrap().is_empty(),
        "{cycles} logins and logouts leave nothing"
    );
    // Sessions that expire instead go when the owner next logs in.
    for _ in 0..5 {
        sessions
            .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(13 * 3600));
    sessions
        .start(&HeaderMap::new(), "user_1", ForgScope::ReadRules)
        .await
        .unwrap();
    assert_eq!(
        store.records_of("user_1").await.unwrap().len(),
        1,
        "the live one"
    );
    assert_eq!(sessions.end_all("user_1").await.unwrap(), 1);
    assert!(store.records_of("user_1").await.unwrap().is_empty());
}

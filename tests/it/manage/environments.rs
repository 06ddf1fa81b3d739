//! A key acts only on keys of its own environment.

use super::*;

/// Issue 21.1: a key acts only on keys of its own environment, on every endpoint; a key of
/// the other environment is answered exactly like an unknown id. Failed before the fix:
/// a test key rotated (201, a fresh `forg_live_`), disabled, revoked and deleted live keys
/// and listed them.
#[tokio::test]
async fn a_key_never_sees_or_touches_keys_of_the_other_environment() {
    let server = serve(|api| api.allow_keys_with(ForgScope::Admin)).await;
    let issue = |family: KeyFamily, name: &'static str| {
        let keys = Arc::clone(&server.keys);
        async move {
            keys.issue(NewKey::new("org_a", name, &family).scopes(ForgScope::Admin))
                .await
                .unwrap()
        }
    };
    let live = issue(KeyFamily::FORG_LIVE, "live admin").await;
    let test = issue(KeyFamily::FORG_TEST, "test admin").await;
    let live_target = issue(KeyFamily::FORG_LIVE, "live target").await;
    let test_target = issue(KeyFamily::FORG_TEST, "test target").await;

    for (caller, own, other) in [
        (&test, &test_target, &live_target),
        (&live, &live_target, &test_target),
    ] {
        let key = caller.key().expose_secret();
        let (status, listed) = with_key(&server, key, "GET", "/api/keys", None).await;
        assert_eq!(status, StatusCode::OK);
        let environments: Vec<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|record| record["environment"].as_str().unwrap())
            .collect();
        assert_eq!(environments.len(), 2, "{listed}");
        assert!(
            environments
                .iter()
                .all(|e| *e == caller.record().environment().as_str()),
            "{listed}"
        );
        for (method, path) in [
            ("GET", "/api/keys/{id}"),
            ("GET", "/api/keys/{id}/activity"),
            ("POST", "/api/keys/{id}/rotate"),
            ("POST", "/api/keys/{id}/revoke"),
            ("POST", "/api/keys/{id}/disable"),
            ("POST", "/api/keys/{id}/enable"),
            ("DELETE", "/api/keys/{id}"),
        ] {
            let at = |id: &str| path.replace("{id}", id);
            let unknown = with_key(&server, key, method, &at("key_unknown"), None).await;
            let other_env = with_key(
                &server,
                key,
                method,
                &at(other.record().id().as_str()),
                None,
            )
            .await;
            assert_eq!(unknown.0, StatusCode::NOT_FOUND);
            assert_eq!(other_env, unknown, "{method} {path}: like an unknown id");
        }
        // Nothing changed on the other environment's key.
        let untouched = server.keys.get(other.record().id()).await.unwrap().unwrap();
        assert!(!untouched.revoked() && !untouched.disabled() && untouched.revoked_at().is_none());
        assert_eq!(
            with_key(
                &server,
                other.key().expose_secret(),
                "GET",
                "/v1/ping",
                None
            )
            .await
            .0,
            StatusCode::OK
        );
        // The caller's own environment is still managed, on every endpoint.
        let id = own.record().id().as_str();
        for (method, path, expected) in [
            ("GET", format!("/api/keys/{id}"), StatusCode::OK),
            ("GET", format!("/api/keys/{id}/activity"), StatusCode::OK),
            ("POST", format!("/api/keys/{id}/disable"), StatusCode::OK),
            ("POST", format!("/api/keys/{id}/enable"), StatusCode::OK),
            // Last: the caller rotates itself (revoked at once).
            (
                "POST",
                format!("/api/keys/{}/rotate", caller.record().id()),
                StatusCode::CREATED,
            ),
        ] {
            let (status, body) = with_key(&server, key, method, &path, None).await;
            assert_eq!(status, expected, "{method} {path}: {body}");
        }
    }

    // Sessions (the dashboard) keep managing both environments of their owner.
    let alice = User::login(&server, "org_a", "admin").await;
    let (_, listed) = alice.call("GET", "/keys", None).await;
    let environments: std::collections::BTreeSet<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["environment"].as_str().unwrap())
        .collect();
    assert_eq!(
        environments.into_iter().collect::<Vec<_>>(),
        ["live", "test"]
    );
    for target in [&live_target, &test_target] {
        let (status, _) = alice
            .call(
                "POST",
                &format!("/keys/{}/revoke", target.record().id()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}

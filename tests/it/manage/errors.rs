//! Every error has the FORG shape; the activity log stays bounded.

use super::*;

#[tokio::test]
async fn every_error_has_the_forg_shape() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;

    // 422 with every offending field.
    let (status, body) = alice
        .call("POST", "/keys", Some(json!({ "name": " ", "environment": "prod", "scopes": ["read:rules", "fly"], "expires_at": "1970-01-01T00:00:01Z", "metadata": { "Bad Name": "x" } })))
        .await;
    assert_eq!(
        (status, body["code"].as_str(), body["status"].as_u64()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("validation_failed"),
            Some(422)
        )
    );
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["name", "environment", "scopes", "expires_at", "metadata"]
    );
    let (status, body) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "n", "environment": "test", "admin": true })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")),
        "unknown field"
    );
    assert!(body["error"].as_str().unwrap().contains("unknown field"));

    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = alice
            .client
            .post(format!("{}/api/keys", server.base))
            .header("x-csrf-token", &alice.csrf)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = raw("{\"name\": ", Some("application/json")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = raw("{}", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
    let huge = format!(
        "{{\"name\": \"{}\", \"environment\": \"test\"}}",
        "x".repeat(20_000)
    );
    let response = alice
        .client
        .post(format!("{}/api/keys", server.base))
        .header("x-csrf-token", &alice.csrf)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "payload_too_large"
    );

    // 409: the document's own advice.
    for i in 0..10 {
        let (status, _) = alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": format!("k{i}"), "environment": "test" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "k11", "environment": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({ "error": "Maximum 10 keys per user. Delete unused keys before creating new ones.", "code": "key_limit_reached", "status": 409 })
    );

    // 403 when the owner's plan does not allow live keys.
    let free = User::login(&server, "org_free", "read:rules").await;
    let (status, body) = free
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "prod", "environment": "live" })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("plan_required"))
    );
    // Issue 37.3: the same words as the request path's refusal of a live key.
    assert_eq!(
        body["error"],
        "Live keys require a higher plan: upgrade to use them"
    );
    let (status, _) = free
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "sandbox", "environment": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // 404 for hostile ids, 422 for a bad query.
    for id in ["..%2F..", "key_\u{0}", &"k".repeat(500)] {
        let (status, _) = alice
            .call("GET", &format!("/keys/{}", urlencode(id)), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id:?}");
    }
    let (_, listed) = alice.call("GET", "/keys", None).await;
    let id = listed["data"][0]["id"].as_str().unwrap();
    let (status, _) = alice
        .call("GET", &format!("/keys/{id}/activity?limit=many"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn the_activity_log_stays_bounded() {
    use tower::Layer;
    let log = ActivityLog::new(3, 50);
    let store = Arc::new(
        Store::new().with_policy(
            tower_api_key::forg::key_policy()
                .max_active_per_owner(std::num::NonZeroUsize::new(1000).unwrap()),
        ),
    );
    let probe = common::Probe::new();
    let service = ActivityLayer::new(log.clone())
        .layer(AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>()));
    let mut issued = Vec::new();
    for i in 0..200 {
        let key = store
            .issue(NewKey::new("org", format!("k{i}"), &KeyFamily::FORG_LIVE))
            .await
            .unwrap();
        for _ in 0..5 {
            common::send(service.clone(), common::bearer(key.key().expose_secret())).await;
        }
        issued.push(key);
    }
    assert_eq!(log.keys(), 50, "at most 50 keys are kept");
    assert_eq!(
        log.recent(issued[199].record().id(), 100, None).len(),
        3,
        "3 entries per key"
    );
    assert!(
        log.recent(issued[0].record().id(), 100, None).is_empty(),
        "the stalest key was forgotten"
    );
}

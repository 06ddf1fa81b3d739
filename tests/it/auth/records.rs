//! What the store answers: failures and timeouts (503), the asynchronous path, records that
//! do not match the key, disabled keys and allowed networks.

use super::*;

#[tokio::test]
async fn store_failure_gives_503_with_retry_after_and_skips_the_inner_service() {
    let (store, _clock) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(store, Script::Fail);
    let probe = Probe::new();
    let service = layer_on(
        &AuthLayer::new(Arc::clone(&scripted)).retry_after(Duration::from_millis(2500)),
        &probe,
    );

    let answer = send(service.clone(), bearer(issued.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.body,
        r#"{"error":"Authentication is temporarily unavailable","code":"auth_unavailable","status":503}"#
    );
    assert_eq!(answer.header("retry-after"), Some("3"));
    assert_eq!(
        answer.header("www-authenticate"),
        None,
        "the client is not told its key is bad"
    );
    assert!(matches!(
        answer.extensions.get::<AuthRejection>(),
        Some(AuthRejection::Unavailable {
            cause: Unavailable::KeyStore(StoreErrorKind::Unavailable),
            ..
        })
    ));
    assert_eq!(probe.calls(), 0);

    // The service stays usable once the store recovers.
    scripted.set(Script::Delegate);
    assert_eq!(
        send(service, bearer(issued.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(probe.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn lookup_timeout_gives_503() {
    let (store, _clock) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let scripted = ScriptedStore::new(store, Script::Hang);
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(Arc::clone(&scripted)), &probe);

    let started = tokio::time::Instant::now();
    let answer = send(service.clone(), bearer(issued.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "default timeout on tokio's paused clock"
    );
    assert_eq!(answer.header("retry-after"), Some("5"));
    assert!(matches!(
        answer.extensions.get::<AuthRejection>(),
        Some(AuthRejection::Unavailable {
            cause: Unavailable::KeyStore(StoreErrorKind::Timeout),
            ..
        })
    ));

    // A slow answer inside a configured timeout is fine; past it, 503.
    scripted.set(Script::Slow(Duration::from_millis(400)));
    let patient = layer_on(
        &AuthLayer::new(Arc::clone(&scripted)).lookup_timeout(Duration::from_millis(500)),
        &probe,
    );
    assert_eq!(
        send(patient.clone(), bearer(issued.key().expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    scripted.set(Script::Slow(Duration::from_millis(600)));
    assert_eq!(
        send(patient, bearer(issued.key().expose_secret()))
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn asynchronous_store_path_authenticates() {
    let (store, _clock) = store_with_clock();
    let issued = issue(&store, &KeyFamily::FOS, ForgScope::ReadUsers);
    let scripted = ScriptedStore::new(store, Script::Delegate);
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(Arc::clone(&scripted)), &probe);

    let answer = send(service.clone(), bearer(issued.key().expose_secret())).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(scripted.lookups(), 1);
    let seen = probe.last();
    assert_eq!(
        seen.extensions.get::<Principal>().unwrap().key_id(),
        issued.record().id()
    );
    assert!(seen.headers["authorization"].is_sensitive());

    let unknown = send(service, bearer("fos_00000000000000000000000000000000")).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn a_record_with_another_digest_is_refused() {
    // A store whose index is fuzzy returns the wrong record: the constant-time comparison
    // of the stored digest catches it.
    let (store, _clock) = store_with_clock();
    let victim = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::Admin);
    let scripted = ScriptedStore::new(
        Arc::clone(&store),
        Script::Always(Arc::clone(victim.record())),
    );
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(scripted), &probe);

    let answer = send(
        service,
        bearer("forg_live_0123456789abcdef0123456789abcdef"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.body, INVALID_BODY);
    assert_eq!(reason(&answer), Some(InvalidKeyReason::DigestMismatch));
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn record_environment_must_match_the_key_family() {
    // A corrupt record: a live key's digest stored as a test record.
    let (store, _clock) = store_with_clock();
    let key = KeyFamily::FORG_LIVE.generate().unwrap();
    let mut record = KeyRecord::<ForgScope>::new(
        "key_corrupt".parse().unwrap(),
        KeyHasher::sha256().digest(key.expose_secret()),
        "org_1",
        "corrupt",
        &KeyFamily::FORG_TEST,
        key.redacted(),
        ForgScope::Admin.into(),
        start_time(),
    );
    record.set_expires_at(None);
    store.restore(record).unwrap();
    let probe = Probe::new();
    let answer = send(
        layer_on(&AuthLayer::new(store), &probe),
        bearer(key.expose_secret()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reason(&answer), Some(InvalidKeyReason::EnvironmentMismatch));
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn a_disabled_key_gets_the_same_401_until_enabled_and_metadata_reaches_the_handler() {
    let (store, _clock) = store_with_clock();
    let metadata = tower_api_key::store::Metadata::new([("team", "billing")]).unwrap();
    let issued = common::memory(
        store.issue(
            NewKey::new("org_1", "tagged", &KeyFamily::FORG_LIVE)
                .scopes(ForgScope::ReadRules)
                .metadata(metadata),
        ),
    )
    .unwrap();
    let probe = Probe::new();
    let service = layer_on(&AuthLayer::new(Arc::clone(&store)), &probe);
    let key = issued.key().expose_secret();
    let unknown = send(
        service.clone(),
        bearer("forg_live_0123456789abcdef0123456789abcdef"),
    )
    .await;

    store.disable(issued.record().id()).await.unwrap();
    let disabled = send(service.clone(), bearer(key)).await;
    assert_eq!(disabled.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        disabled.body, unknown.body,
        "indistinguishable from an unknown key"
    );
    assert_eq!(
        disabled.header("www-authenticate"),
        unknown.header("www-authenticate")
    );
    assert!(matches!(
        disabled.extensions.get::<AuthRejection>(),
        Some(AuthRejection::InvalidApiKey {
            reason: InvalidKeyReason::Disabled,
            ..
        })
    ));
    assert_eq!(probe.calls(), 0);

    store.enable(issued.record().id()).await.unwrap();
    assert_eq!(send(service, bearer(key)).await.status, StatusCode::OK);
    let principal = probe.last().extensions.get::<Principal>().cloned().unwrap();
    assert_eq!(principal.metadata().get("team"), Some("billing"));
}

#[tokio::test]
async fn a_key_with_allowed_networks_is_refused_elsewhere_ipv4_ipv6_and_behind_a_proxy() {
    use tower_api_key::client_ip::{ClientIp, ClientIpLayer};
    use tower_api_key::store::AllowedNetworks;

    let (store, _clock) = store_with_clock();
    let office = AllowedNetworks::new(["203.0.113.0/24", "2001:db8::/32"]).unwrap();
    let issued = common::memory(
        store.issue(
            NewKey::new("org_1", "office only", &KeyFamily::FORG_LIVE)
                .scopes(ForgScope::ReadRules)
                .allowed_networks(office),
        ),
    )
    .unwrap();
    let key = issued.key().expose_secret();
    let probe = Probe::new();
    let direct = layer_on(&AuthLayer::new(Arc::clone(&store)), &probe);
    let proxied = ClientIpLayer::new(ClientIp::peer().trust_proxies(["10.0.0.0/8"]).unwrap())
        .layer(AuthLayer::new(Arc::clone(&store)).layer(probe.service::<String>()));

    for (peer, allowed) in [
        ("203.0.113.7", true),
        ("198.51.100.1", false),
        ("2001:db8::5", true),
        ("2001:db9::1", false),
        ("::ffff:203.0.113.8", true),
    ] {
        let answer = send(direct.clone(), from(peer, bearer(key))).await;
        if allowed {
            assert_eq!(answer.status, StatusCode::OK, "{peer}");
        } else {
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{peer}");
            assert_eq!(
                answer.body,
                r#"{"error":"This key may not be used from this address","code":"ip_not_allowed","status":403}"#
            );
        }
    }
    let calls = probe.calls();
    let via = |peer: &str, forwarded: &str| {
        let mut request = bearer(key);
        request
            .headers_mut()
            .insert("x-forwarded-for", forwarded.parse().unwrap());
        from(peer, request)
    };
    // The proxy vouches for the office address; a client cannot forge it.
    assert_eq!(
        send(proxied.clone(), via("10.0.0.2", "203.0.113.9"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(proxied.clone(), via("198.51.100.2", "203.0.113.9"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        probe.calls(),
        calls + 1,
        "refused requests never reach the service"
    );
    // Keys without networks are unaffected.
    let open = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
    let answer = send(
        direct,
        from("198.51.100.1", bearer(open.key().expose_secret())),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

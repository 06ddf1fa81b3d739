//! Limits keyed by the client's address: peers, trusted proxies, IPv6 prefixes, and requests
//! without an address, which fail closed.

use super::*;

#[tokio::test]
async fn public_class_is_keyed_by_peer_address_and_ignores_untrusted_forwarding() {
    let (limits, _clock) = fake_limits();
    let probe = Probe::new();
    let login = limits.layer(forg::AUTH).layer(probe.service::<String>());
    let request = |xff: &str| login_from("203.0.113.9", Some(xff));

    for i in 0..5 {
        let answer = send(login.clone(), request(&format!("198.51.100.{i}"))).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let limited = send(login.clone(), request("198.51.100.77")).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "spoofed XFF from an untrusted peer changes nothing"
    );
    assert_eq!(limited.header("retry-after"), Some("12"));
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some(r#""auth";q=5;w=60"#)
    );

    let other = login_from("203.0.113.10", None);
    assert_eq!(send(login, other).await.status, StatusCode::OK);
    assert_eq!(probe.calls(), 6);
}

#[tokio::test]
async fn trusted_proxies_forward_the_rightmost_untrusted_address() {
    let (limits, _clock) = fake_limits();
    let probe = Probe::new();
    let login = ClientIpLayer::new(ClientIp::peer().trust_proxies(["10.0.0.0/8"]).unwrap())
        .layer(limits.layer(forg::AUTH).layer(probe.service::<String>()));
    let via_proxy = |xff: &str| login_from("10.0.0.2", Some(xff));

    for _ in 0..5 {
        // The client forged the leftmost entry; the proxy appended the real address.
        assert_eq!(
            send(login.clone(), via_proxy("1.1.1.1, 198.51.100.7, 10.0.0.5"))
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        send(login.clone(), via_proxy("2.2.2.2, 198.51.100.7, 10.0.0.5"))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS,
        "forging the left does not buy a new budget"
    );
    assert_eq!(
        send(login.clone(), via_proxy("198.51.100.8")).await.status,
        StatusCode::OK
    );

    let malformed = send(login.clone(), via_proxy("1.1.1.1, not-an-address")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json()["error"], "Malformed forwarded header");
    assert_eq!(probe.calls(), 6);
}

#[test]
fn client_ip_resolution_rules() {
    use http::{Extensions, HeaderMap};
    let resolve = |client_ip: &ClientIp, peer: &str, headers: &[(&str, &str)]| {
        let mut extensions = Extensions::new();
        extensions.insert(ClientAddr(peer.parse().unwrap()));
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        client_ip.resolve(&map, &extensions)
    };
    let ip = |s: &str| Ok::<IpAddr, _>(s.parse().unwrap());
    let trusting = ClientIp::peer()
        .trust_proxies(["10.0.0.0/8", "fd00::/8"])
        .unwrap();
    assert_eq!(
        ClientIp::peer()
            .trust_proxies(["10.0.0.0/8", "not a network"])
            .unwrap_err()
            .to_string(),
        "`not a network` is not a network (CIDR) or an IP address"
    );

    assert_eq!(
        resolve(
            &ClientIp::peer(),
            "192.0.2.1",
            &[("x-forwarded-for", "8.8.8.8")]
        ),
        ip("192.0.2.1")
    );
    assert_eq!(
        resolve(&trusting, "10.0.0.1", &[]),
        ip("10.0.0.1"),
        "no header: the proxy itself"
    );
    assert_eq!(
        resolve(
            &trusting,
            "::ffff:10.0.0.1",
            &[("x-forwarded-for", "192.0.2.9")]
        ),
        ip("192.0.2.9"),
        "mapped IPv4"
    );
    assert_eq!(
        resolve(
            &trusting,
            "10.0.0.1",
            &[
                ("x-forwarded-for", "192.0.2.1"),
                ("x-forwarded-for", "192.0.2.2, 10.1.1.1")
            ]
        ),
        ip("192.0.2.2"),
        "repeated headers are one list"
    );
    assert_eq!(
        resolve(
            &trusting,
            "10.0.0.1",
            &[("x-forwarded-for", "10.2.2.2, 10.1.1.1")]
        ),
        ip("10.2.2.2"),
        "all trusted"
    );
    assert_eq!(
        resolve(
            &trusting,
            "10.0.0.1",
            &[("x-forwarded-for", "[2001:db8::1]:443")]
        ),
        ip("2001:db8::1")
    );
    assert_eq!(
        resolve(
            &trusting,
            "10.0.0.1",
            &[("x-forwarded-for", "192.0.2.1:8080")]
        ),
        ip("192.0.2.1")
    );

    let forwarded = trusting
        .clone()
        .forwarded_header(ForwardedHeader::Forwarded);
    assert_eq!(
        resolve(
            &forwarded,
            "fd00::1",
            &[(
                "forwarded",
                r#"for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711", for=10.0.0.3"#
            )]
        ),
        ip("2001:db8:cafe::17")
    );
    assert!(resolve(&forwarded, "10.0.0.1", &[("forwarded", "for=unknown")]).is_err());
    assert!(resolve(&trusting, "10.0.0.1", &[("x-forwarded-for", "garbage")]).is_err());

    let none = ClientIp::peer().resolve(&HeaderMap::new(), &Extensions::new());
    assert_eq!(
        none,
        Err(tower_api_key::client_ip::ClientIpError::NoPeerAddress)
    );
}

#[tokio::test]
async fn ipv6_clients_share_a_budget_per_64() {
    let (limits, _clock) = fake_limits();
    let probe = Probe::new();
    let login = limits.layer(forg::AUTH).layer(probe.service::<String>());
    for i in 0..5 {
        let request = from(
            &format!("2001:db8:1:2::{i:x}"),
            Request::post("/").body(String::new()).unwrap(),
        );
        assert_eq!(send(login.clone(), request).await.status, StatusCode::OK);
    }
    let same_64 = from(
        "2001:db8:1:2:ffff::1",
        Request::post("/").body(String::new()).unwrap(),
    );
    assert_eq!(
        send(login.clone(), same_64).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let other_64 = from(
        "2001:db8:1:3::1",
        Request::post("/").body(String::new()).unwrap(),
    );
    assert_eq!(send(login, other_64).await.status, StatusCode::OK);
}

#[tokio::test]
async fn requests_without_a_client_address_or_identity_fail_closed() {
    let (limits, _clock) = fake_limits();
    let probe = Probe::new();
    let login = limits.layer(forg::AUTH).layer(probe.service::<String>());
    let answer = send(
        login,
        Request::post("/auth/login").body(String::new()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        answer.json()["error"],
        "Server misconfigured: the client address (ConnectInfo or ClientAddr) is missing for this route"
    );

    let standard = limits
        .layer(forg::STANDARD)
        .layer(probe.service::<String>());
    let answer = send(standard, Request::get("/").body(String::new()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        answer.json()["error"],
        "Server misconfigured: AuthLayer is missing for this route"
    );
    assert_eq!(probe.calls(), 0);
    assert_eq!(limits.tracked(), 0, "no shared bucket was created");
}

#[tokio::test]
async fn ipv6_clients_are_grouped_as_configured() {
    // Same /48, different /56 and /64.
    let (a, b) = ("2001:db8:1:100::1", "2001:db8:1:200::1");
    let cases = [
        (None, false),
        (Some(Ipv6Grouping::Prefix64), false),
        (Some(Ipv6Grouping::Prefix56), false),
        (Some(Ipv6Grouping::Prefix48), true),
    ];
    for (grouping, one_client) in cases {
        let (limits, _clock) = fake_limits();
        let probe = Probe::new();
        let one_a_minute = RateClass::per_client_ip(ClassName::from_static("tiny"), per_minute(1));
        let limited = limits.layer(one_a_minute).layer(probe.service::<String>());
        let service = match grouping {
            Some(grouping) => {
                ClientIpLayer::new(ClientIp::peer().ipv6_grouping(grouping)).layer(limited)
            }
            None => ClientIpLayer::new(ClientIp::peer()).layer(limited),
        };
        assert_eq!(
            send(service.clone(), login_from(a, None)).await.status,
            StatusCode::OK
        );
        let expected = if one_client {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::OK
        };
        assert_eq!(
            send(service, login_from(b, None)).await.status,
            expected,
            "{grouping:?}"
        );
    }
}

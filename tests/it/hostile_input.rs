//! One table of hostile requests through the whole layer: each gets its documented status
//! and code, never a panic, and never reaches the inner service.

use crate::common;
use tower_api_key::forg;

use common::*;
use http::header::{HeaderName, HeaderValue};
use http::{Request, StatusCode};
use tower::Layer;
use tower_api_key::key::KeyFamily;
use tower_api_key::store::ManageKeys;
use tower_api_key::{AuthLayer, ForgScope};

/// How a case's headers are given: raw bytes, so invalid UTF-8 and odd bytes can be sent.
type Headers = Vec<(&'static str, Vec<u8>)>;

fn h(name: &'static str, value: impl AsRef<[u8]>) -> (&'static str, Vec<u8>) {
    (name, value.as_ref().to_vec())
}

#[tokio::test]
async fn hostile_requests_get_their_documented_answer() {
    let (store, _) = store_with_clock();
    let good = issue(&store, &KeyFamily::FORG_LIVE, ForgScope::ReadRules);
    let fos = issue(&store, &KeyFamily::FOS, ForgScope::ReadRules);
    let revoked = issue(&store, &KeyFamily::FORG_TEST, ForgScope::ReadRules);
    store.revoke(revoked.record().id()).await.unwrap();
    let key = good.key().expose_secret().to_owned();
    let secret = key["forg_live_".len()..].to_owned();
    let fos_key = fos.key().expose_secret().to_owned();
    let probe = Probe::new();
    let service = AuthLayer::new(store)
        .sources(forg::credential_sources())
        .layer(probe.service::<String>());

    const BAD: (StatusCode, &str) = (StatusCode::UNAUTHORIZED, "invalid_api_key");
    const AMBIGUOUS: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "invalid_request");
    let cases: Vec<(&str, Headers, &str, (StatusCode, &str))> = vec![
        ("no header at all", vec![], "/", BAD),
        (
            "empty authorization",
            vec![h("authorization", "")],
            "/",
            BAD,
        ),
        (
            "empty forgeos header",
            vec![h("x-forgeos-api-key", "")],
            "/",
            BAD,
        ),
        (
            "Bearer with no token",
            vec![h("authorization", "Bearer")],
            "/",
            BAD,
        ),
        (
            "Bearer and spaces only",
            vec![h("authorization", "Bearer    ")],
            "/",
            BAD,
        ),
        (
            "Bearer glued to the key",
            vec![h("authorization", format!("Bearer{key}"))],
            "/",
            BAD,
        ),
        (
            "tab between scheme and key",
            vec![h("authorization", format!("Bearer\t{key}x"))],
            "/",
            BAD,
        ),
        (
            "tab inside the key",
            vec![h("authorization", format!("Bearer forg_live_\t{secret}"))],
            "/",
            BAD,
        ),
        (
            "percent-encoded NUL after the key",
            vec![h("authorization", format!("Bearer {key}%00"))],
            "/",
            BAD,
        ),
        (
            "non-UTF-8 bytes",
            vec![h("authorization", b"Bearer forg_live_\xff\xfe\xfd")],
            "/",
            BAD,
        ),
        (
            "obs-text bytes in forgeos header",
            vec![h("x-forgeos-api-key", b"fos_\x80\x81\x82")],
            "/",
            BAD,
        ),
        (
            "64 KiB header",
            vec![h(
                "authorization",
                format!("Bearer forg_live_{}", "a".repeat(64 * 1024)),
            )],
            "/",
            BAD,
        ),
        (
            "64 KiB forgeos header",
            vec![h("x-forgeos-api-key", "f".repeat(64 * 1024))],
            "/",
            BAD,
        ),
        (
            "key with a trailing newline char",
            vec![h("authorization", format!("Bearer {}\\n", key))],
            "/",
            BAD,
        ),
        (
            "key with a trailing dot",
            vec![h("authorization", format!("Bearer {key}."))],
            "/",
            BAD,
        ),
        (
            "upper-case hex",
            vec![h(
                "authorization",
                format!("Bearer forg_live_{}", secret.to_uppercase()),
            )],
            "/",
            BAD,
        ),
        (
            "mixed-case prefix",
            vec![h("authorization", format!("Bearer Forg_Live_{secret}"))],
            "/",
            BAD,
        ),
        (
            "upper-case prefix",
            vec![h("authorization", format!("Bearer FORG_LIVE_{secret}"))],
            "/",
            BAD,
        ),
        (
            "doubled prefix",
            vec![h("authorization", format!("Bearer forg_live_{key}"))],
            "/",
            BAD,
        ),
        (
            "prefix only",
            vec![h("authorization", "Bearer forg_live_")],
            "/",
            BAD,
        ),
        (
            "secret without prefix",
            vec![h("authorization", format!("Bearer {secret}"))],
            "/",
            BAD,
        ),
        (
            "one character short",
            vec![h(
                "authorization",
                format!("Bearer {}", &key[..key.len() - 1]),
            )],
            "/",
            BAD,
        ),
        (
            "one character long",
            vec![h("authorization", format!("Bearer {key}0"))],
            "/",
            BAD,
        ),
        (
            "unknown prefix",
            vec![h("authorization", format!("Bearer sk_live_{secret}"))],
            "/",
            BAD,
        ),
        (
            "fos_ too short",
            vec![h("x-forgeos-api-key", format!("fos_{}", "0".repeat(31)))],
            "/",
            BAD,
        ),
        (
            "fos_ too long",
            vec![h("x-forgeos-api-key", format!("fos_{}", "0".repeat(129)))],
            "/",
            BAD,
        ),
        (
            "well-formed unknown key",
            vec![h(
                "authorization",
                "Bearer forg_live_00000000000000000000000000000000",
            )],
            "/",
            BAD,
        ),
        (
            "revoked key",
            vec![h(
                "authorization",
                format!("Bearer {}", revoked.key().expose_secret()),
            )],
            "/",
            BAD,
        ),
        (
            "Basic scheme",
            vec![h("authorization", format!("Basic {key}"))],
            "/",
            BAD,
        ),
        (
            "Token scheme",
            vec![h("authorization", format!("Token {key}"))],
            "/",
            BAD,
        ),
        (
            "key in the query string",
            vec![],
            "/v1/sessions?api_key=forg_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d",
            BAD,
        ),
        (
            "key in the query, token param",
            vec![],
            "/v1/sessions?access_token=x",
            BAD,
        ),
        (
            "scheme only in forgeos header",
            vec![h("x-forgeos-api-key", format!("Bearer {fos_key}"))],
            "/",
            BAD,
        ),
        (
            "unicode look-alike prefix",
            vec![h("authorization", format!("Bearer ｆorg_live_{secret}"))],
            "/",
            BAD,
        ),
        (
            "both headers equal",
            vec![
                h("authorization", format!("Bearer {key}")),
                h("x-forgeos-api-key", &key),
            ],
            "/",
            AMBIGUOUS,
        ),
        (
            "both headers different",
            vec![
                h("authorization", format!("Bearer {key}")),
                h("x-forgeos-api-key", &fos_key),
            ],
            "/",
            AMBIGUOUS,
        ),
        (
            "authorization twice, same",
            vec![
                h("authorization", format!("Bearer {key}")),
                h("authorization", format!("Bearer {key}")),
            ],
            "/",
            AMBIGUOUS,
        ),
        (
            "authorization twice, Basic then Bearer",
            vec![
                h("authorization", "Basic eDp5"),
                h("authorization", format!("Bearer {key}")),
            ],
            "/",
            AMBIGUOUS,
        ),
        (
            "forgeos header twice",
            vec![
                h("x-forgeos-api-key", &fos_key),
                h("x-forgeos-api-key", &fos_key),
            ],
            "/",
            AMBIGUOUS,
        ),
        (
            "forgeos header twice, one empty",
            vec![h("x-forgeos-api-key", ""), h("x-forgeos-api-key", &fos_key)],
            "/",
            AMBIGUOUS,
        ),
        (
            "bad Bearer plus good forgeos",
            vec![
                h("authorization", "Bearer nope"),
                h("x-forgeos-api-key", &fos_key),
            ],
            "/",
            AMBIGUOUS,
        ),
        (
            "empty forgeos plus good bearer",
            vec![
                h("authorization", format!("Bearer {key}")),
                h("x-forgeos-api-key", ""),
            ],
            "/",
            AMBIGUOUS,
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    // Raw control bytes (NUL, CR, LF, DEL) cannot even be a header value: `http` refuses
    // them before any layer runs, as hyper does on the wire.
    for byte in [0u8, b'\r', b'\n', 0x7f] {
        assert!(HeaderValue::from_bytes(&[b'f', byte]).is_err());
    }

    for (name, headers, uri, (status, code)) in cases {
        let mut request = Request::get(uri).body(String::new()).unwrap();
        for (header, value) in headers {
            let value = HeaderValue::from_bytes(&value)
                .unwrap_or_else(|_| panic!("{name}: not a header value"));
            request
                .headers_mut()
                .append(HeaderName::from_static(header), value);
        }
        let answer = send(service.clone(), request).await;
        assert_eq!(
            (answer.status, answer.json()["code"].as_str()),
            (status, Some(code)),
            "{name}"
        );
        assert!(
            !String::from_utf8_lossy(&answer.body).contains(&secret),
            "{name}: body echoes the key"
        );
        for value in answer.headers.values() {
            assert!(
                !value
                    .as_bytes()
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "{name}: header echoes the key"
            );
        }
    }
    assert_eq!(
        probe.calls(),
        0,
        "no hostile request reached the inner service"
    );

    // And the good keys still work afterwards.
    assert_eq!(
        send(service.clone(), bearer(&key)).await.status,
        StatusCode::OK
    );
    let request = Request::get("/")
        .header("x-forgeos-api-key", &fos_key)
        .body(String::new())
        .unwrap();
    assert_eq!(send(service, request).await.status, StatusCode::OK);
}

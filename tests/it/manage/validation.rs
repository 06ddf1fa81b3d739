//! Bodies that are JSON but wrong: 422 naming the field, in words, never the value;
//! names and metadata refused for bidi or invisible characters.

use super::*;

/// Issue 21.2: an `expires_at` past what the clock can count is a 422 naming the field,
/// not a panic ("overflow when adding duration to instant") that kills the connection.
/// Issue 22: the time is RFC 3339, as every time the API writes.
#[tokio::test]
async fn an_expiry_out_of_range_is_a_validation_error() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    for expires_at in [
        json!("10000-01-01T00:00:00Z"), // past RFC 3339
        json!("+10000-01-01T00:00:00Z"),
        json!("1970-01-01T00:00:00Z"), // the past
        json!("2026-02-30T00:00:00Z"),
        json!("253402300799"),
    ] {
        let (status, body) = alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": "k", "environment": "test", "expires_at": expires_at })),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{expires_at}: {body}"
        );
        assert_eq!(body["fields"][0]["field"], "expires_at");
    }
    for expires_at in [
        json!(-1),
        json!(1.5),
        json!("tomorrow"),
        json!(1e300),
        json!(253_402_300_799u64),
    ] {
        let (status, body) = alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": "k", "environment": "test", "expires_at": expires_at })),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{expires_at}: {body}"
        );
        assert_eq!(body["fields"][0]["field"], "expires_at", "{body}");
    }
    let (status, body) = alice
        .call(
            "POST",
            "/keys",
            Some(
                json!({ "name": "k", "environment": "test", "expires_at": "9999-12-31T23:59:59Z" }),
            ),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the last second of 9999 is fine"
    );
    // Every time the API writes is RFC 3339 in UTC.
    let record = &body["record"];
    assert_eq!(record["expires_at"], "9999-12-31T23:59:59Z");
    let created = record["created_at"].as_str().expect("a string");
    assert!(
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$")
            .unwrap()
            .is_match(created),
        "{created}"
    );
    assert_eq!(record["revoked_at"], Value::Null);
    let (status, body) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "k", "environment": "test", "expires_at": "9999-12-31T23:59:59.5-01:00" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

/// `/keys/{id}/rotate` of a test key `user` just created.
async fn rotate_path_of_a_new_key(user: &User) -> String {
    let (_, created) = user
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "k", "environment": "test" })),
        )
        .await;
    let id = created["record"]["id"].as_str().unwrap();
    format!("/keys/{id}/rotate")
}

/// Issue 21.7: JSON that misses or mistypes a field is 422 naming it, on every endpoint
/// with a body; 400 stays for bodies that are not JSON.
#[tokio::test]
async fn json_with_a_wrong_field_is_422_naming_the_field() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    let rotate = rotate_path_of_a_new_key(&alice).await;
    for (path, body, field) in [
        ("/keys", json!({ "environment": "test" }), "name"),
        ("/keys", json!({ "name": 7, "environment": "test" }), "name"),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "scopes": "admin" }),
            "scopes",
        ),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "scopes": [1] }),
            "scopes[0]",
        ),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "metadata": [] }),
            "metadata",
        ),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "colour": "red" }),
            "colour",
        ),
        ("/keys", json!([]), "body"),
        ("/keys", json!(null), "body"),
        (&rotate, json!({ "grace_seconds": "soon" }), "grace_seconds"),
        (&rotate, json!({ "grace_seconds": -5 }), "grace_seconds"),
    ] {
        let (status, answer) = alice.call("POST", path, Some(body.clone())).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")),
            "{body}: {answer}"
        );
        assert_eq!(answer["fields"][0]["field"], field, "{body}: {answer}");
        assert!(
            !answer.to_string().contains("line 1"),
            "no parser positions"
        );
    }
}

/// Issue 36.4: a 422 never repeats the value sent and speaks in a client's words.
/// Failed before: `{"grace_seconds": "1, expected hunter2-SECRET"}` answered
/// `expected hunter2-SECRET", expected u64` (serde's text searched for `", expected "`,
/// which matched inside the quoted value); and `501.0`, a JSON Schema integer, was refused.
#[tokio::test]
async fn a_422_names_the_field_in_words_and_never_repeats_the_value() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    let rotate = rotate_path_of_a_new_key(&alice).await;
    let rotate = rotate.as_str();
    let secret = "1, expected hunter2-SECRET";
    for (path, body, field, words) in [
        (
            rotate,
            json!({ "grace_seconds": secret }),
            "grace_seconds",
            "a whole number of seconds",
        ),
        (
            rotate,
            json!({ "grace_seconds": 1.5 }),
            "grace_seconds",
            "a whole number of seconds",
        ),
        (
            "/keys",
            json!({ "name": ["hunter2-SECRET"], "environment": "test" }),
            "name",
            "text",
        ),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "scopes": [secret] }),
            "scopes",
            "item 0 is not a known scope name",
        ),
        (
            "/keys",
            json!({ "name": "k", "environment": "test", "metadata": { "team": [secret] } }),
            "metadata.team",
            "text",
        ),
    ] {
        let (status, answer) = alice.call("POST", path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        let text = answer.to_string();
        assert!(!text.contains("hunter2"), "the value is repeated: {text}");
        assert!(
            !text.contains("u64") && !text.contains("a sequence"),
            "Rust words: {text}"
        );
        assert_eq!(answer["fields"][0]["field"], field, "{text}");
        assert!(
            answer["fields"][0]["message"]
                .as_str()
                .unwrap()
                .contains(words),
            "{text}"
        );
    }
    // An integral number written with a fraction is the integer the schema says.
    let (status, answer) = alice
        .call("POST", rotate, Some(json!({ "grace_seconds": 501.0 })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// Issue 21.8: bidi controls and invisible characters in names and metadata are refused
/// like control characters, so a name cannot display as another key's.
#[tokio::test]
async fn names_and_metadata_with_bidi_or_invisible_characters_are_refused() {
    let server = serve(|api| api).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    for spoof in [
        "prod\u{202E}tset",
        "ci\u{200B}",
        "a\u{2066}b\u{2069}",
        "\u{FEFF}deploy",
        "x\u{200D}y",
        "\u{061C}",
    ] {
        let (status, body) = alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": spoof, "environment": "test" })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{spoof:?}");
        assert_eq!(body["fields"][0]["field"], "name");
        let (status, body) = alice
            .call(
                "POST",
                "/keys",
                Some(json!({ "name": "k", "environment": "test", "metadata": { "team": spoof } })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{spoof:?}");
        assert_eq!(body["fields"][0]["field"], "metadata");
    }
    let (status, _) = alice
        .call(
            "POST",
            "/keys",
            Some(json!({ "name": "déploiement — prod ✓", "environment": "test" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "ordinary Unicode is fine");
}

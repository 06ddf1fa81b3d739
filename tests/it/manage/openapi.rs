//! The committed OpenAPI document is the generated one, and every operation it describes
//! is routed.

use super::*;

/// Issue 22: `docs/openapi.json` is what `KeysApi::openapi` and `SpendApi::openapi`
/// generate from the route tables and the body types, so its schemas cannot drift from the
/// code. Regenerate it with `UPDATE_OPENAPI=1 cargo test --test it openapi`.
#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let store = Arc::new(Store::new().with_policy(tower_api_key::forg::key_policy()));
    let caps = tower_api_key::usage::SpendCaps::new(tower_api_key::usage::Budgets::new());
    let mut document = KeysApi::new(Arc::clone(&store)).openapi();
    document.merge(tower_api_key::manage::SpendApi::new(store, &caps).openapi());
    let generated = document.to_pretty_json().unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(
        committed == generated,
        "docs/openapi.json differs from KeysApi::openapi() + SpendApi::openapi(): run UPDATE_OPENAPI=1 cargo test --test it openapi"
    );
    let spec: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(spec["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    // The schemas are the handlers' types: a key's times are RFC 3339 strings, a new key
    // refuses unknown fields.
    let key = &spec["components"]["schemas"]["Key"]["properties"];
    assert_eq!(key["created_at"]["format"], "date-time");
    assert_eq!(
        spec["components"]["schemas"]["NewKey"]["additionalProperties"],
        false
    );
    assert_eq!(key["rotation_due"]["type"], "boolean");
    let budget = &spec["components"]["schemas"]["Budget"]["properties"];
    assert_eq!(budget["period_end"]["format"], "date-time");
    assert!(spec["paths"]["/billing/spend"]["get"].is_object());
    // Every reference resolves.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut targets = Vec::new();
    refs(&spec, &mut targets);
    assert!(targets.len() > 20);
    for target in targets {
        let name = target.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            spec["components"]["schemas"].get(name).is_some(),
            "{target} is not in the document"
        );
    }
}

/// Every operation the document describes is served (an unknown id is the API's own JSON
/// 404, never the router's empty one or a 405).
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let webhooks = Arc::new(tower_api_key::webhooks::MemoryWebhookStore::new());
    let server = serve(|api| api.webhooks(webhooks)).await;
    let alice = User::login(&server, "org_a", "read:rules").await;
    let spec = KeysApi::new(Arc::new(
        Store::new().with_policy(tower_api_key::forg::key_policy()),
    ))
    .openapi();
    let mut operations = 0;
    for (path, item) in &spec.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("DELETE", item.delete.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
        ];
        for (method, described) in methods {
            let path = path.replace("{id}", "key_0123456789abcdef01234567");
            let body = match (method, path.as_str()) {
                ("POST", "/keys") => Some(json!({ "name": "k", "environment": "test" })),
                ("PATCH", _) => Some(json!({ "name": "k" })),
                ("POST", "/webhooks") => Some(json!({ "url": "https://hooks.example.com/" })),
                _ => None,
            };
            let (status, answer) = alice.call(method, &path, body).await;
            if described {
                operations += 1;
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(
                    answer.get("data").is_some()
                        || answer.get("key").is_some()
                        || answer["code"] == "key_not_found"
                        || answer["code"] == "webhook_not_found",
                    "{method} {path}: {status} {answer}"
                );
            } else {
                assert!(
                    status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND,
                    "{method} {path} is routed but not described: {status}"
                );
            }
        }
    }
    assert_eq!(operations, 17);
}

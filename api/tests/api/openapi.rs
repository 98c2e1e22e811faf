//! The checked-in OpenAPI document is what the code generates. To update
//! it after changing the API: `SLUICE_UPDATE_OPENAPI=1 cargo test -p api --test api openapi`.

#[test]
fn openapi_document_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let generated = api::api::openapi_json();
    assert!(!generated.contains("\"error\""), "{generated}");
    if std::env::var_os("SLUICE_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "api/openapi.json is out of date with the code; regenerate it with \
         SLUICE_UPDATE_OPENAPI=1 cargo test -p api --test api openapi"
    );
}

/// Every JSON body the API answers with has a real schema: none is an
/// untyped `{}` (a `serde_json::Value`, described or not), in a response or in a field of
/// one, so a client generated from the document, and the CLI and metrics
/// that read the same types, fail to build when a field changes. The one
/// `{}` left is `/metrics`, which answers Prometheus text, not JSON.
#[test]
fn openapi_document_has_no_untyped_json() {
    fn walk(v: &serde_json::Value, path: &str, found: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let p = format!("{path}/{k}");
                    // A schema that says nothing of its type (at most a
                    // description or a title) takes any JSON.
                    let untyped = x.as_object().is_some_and(|o| {
                        o.keys().all(|k| {
                            matches!(k.as_str(), "description" | "title" | "default" | "nullable")
                        })
                    });
                    let in_schema = k == "schema"
                        || k == "items"
                        || k == "additionalProperties"
                        || path.ends_with("/properties");
                    if untyped && in_schema && !p.contains("/*/*/") {
                        found.push(p.clone());
                    }
                    walk(x, &p, found);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}/{i}"), found);
                }
            }
            _ => {}
        }
    }
    let doc: serde_json::Value = serde_json::from_str(&api::api::openapi_json()).unwrap();
    let mut found = Vec::new();
    walk(&doc, "", &mut found);
    assert!(found.is_empty(), "untyped JSON in the API: {found:#?}");
    // The walk does see the one non-JSON answer, so it can find one.
    let metrics = &doc["paths"]["/metrics"]["get"]["responses"]["default"]["content"]["*/*"];
    assert_eq!(metrics["schema"], serde_json::json!({}), "{metrics}");
}

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

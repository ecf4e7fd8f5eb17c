//! `GET /api/openapi.json`: the OpenAPI 3.1 description of every HTTP
//! route, kept as one static document (`openapi.json`) next to the route
//! table. The tests below fail when a route of `routes::TABLE` is missing
//! from it or it documents a route that is not served; tests/openapi.rs
//! validates real responses against its schemas.

use worker::Response;

use crate::error::ApiError;

pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn document() -> Result<Response, ApiError> {
    let mut resp = Response::ok(DOCUMENT)?;
    let headers = resp.headers_mut();
    headers.set("Content-Type", "application/json")?;
    headers.set("Cache-Control", "public, max-age=300")?;
    Ok(resp)
}

/// `/api/projects/:id` → `/api/projects/{id}`.
pub fn openapi_path(template: &str) -> String {
    template
        .split('/')
        .map(|part| match part.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::http::routes::TABLE;

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    /// (method, path) of every operation the document describes.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, _) in item.as_object().unwrap() {
                assert!(METHODS.contains(&method.as_str()), "{method} {path}");
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
        ops
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_is_served() {
        let doc = doc();
        let routed: BTreeSet<(String, String)> = TABLE
            .iter()
            .map(|e| (e.method.to_string(), openapi_path(e.template)))
            .collect();
        assert_eq!(routed.len(), TABLE.len(), "a route is listed twice");
        let documented = documented(&doc);
        let missing: Vec<_> = routed.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routes missing from openapi.json: {missing:?}"
        );
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            unrouted.is_empty(),
            "documented but not routed: {unrouted:?}"
        );
    }

    #[test]
    fn it_is_openapi_3_1_with_the_three_credentials() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearerJwt"]["scheme"], "bearer");
        assert_eq!(schemes["bearerJwt"]["bearerFormat"], "JWT");
        assert_eq!(schemes["bearerApiKey"]["scheme"], "bearer");
        assert_eq!(schemes["delegate"]["in"], "header");
        assert_eq!(schemes["delegate"]["name"], "Authorization");
        // Instance data may be used with any of the three.
        let security = &doc["paths"]["/api/instances/{id}"]["get"]["security"];
        for scheme in ["bearerJwt", "bearerApiKey", "delegate"] {
            assert!(
                security
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s.get(scheme).is_some()),
                "{scheme}"
            );
        }
    }

    /// Every `$ref` in `value` points at something in the document.
    fn check_refs(doc: &Value, value: &Value, at: &str) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    let pointer = target.strip_prefix('#').expect("local refs only");
                    assert!(doc.pointer(pointer).is_some(), "{at}: dangling {target}");
                }
                for (k, v) in map {
                    check_refs(doc, v, &format!("{at}/{k}"));
                }
            }
            Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v, at)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = doc();
        check_refs(&doc, &doc, "");
    }

    #[test]
    fn every_operation_is_complete() {
        let doc = doc();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let names: Vec<&str> = path
                .split('/')
                .filter_map(|p| p.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in item.as_object().unwrap() {
                let at = format!("{method} {path}");
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{at}: operationId"));
                assert!(ids.insert(id.to_string()), "{at}: operationId {id} twice");
                assert!(op["summary"].is_string(), "{at}: summary");
                assert!(op["security"].is_array(), "{at}: security");
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|k| k.starts_with('2') || k == "101"),
                    "{at}: a success response"
                );
                assert!(responses.contains_key("default"), "{at}: the error shape");
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                for name in &names {
                    assert!(
                        params.iter().any(|p| p["name"] == *name
                            && p["in"] == "path"
                            && p["required"] == true),
                        "{at}: path parameter {name}"
                    );
                }
                if ["post", "put", "patch"].contains(&method.as_str()) && path != "/webhooks/clerk"
                {
                    assert!(op["requestBody"].is_object(), "{at}: request body");
                }
            }
        }
    }

    #[test]
    fn paths_are_written_the_openapi_way() {
        assert_eq!(openapi_path("/api/projects/:id"), "/api/projects/{id}");
        assert_eq!(
            openapi_path("/api/groups/:id/members/:userId"),
            "/api/groups/{id}/members/{userId}"
        );
        assert_eq!(openapi_path("/health"), "/health");
    }
}

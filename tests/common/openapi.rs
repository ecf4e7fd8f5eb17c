//! Checks real responses against the server's OpenAPI document with the
//! `jsonschema` crate (JSON Schema 2020-12, the dialect of OpenAPI 3.1).
//!
//! The document's schemas are open (clients must tolerate new fields); for
//! the tests every object schema that lists its `properties` and says
//! nothing about others is closed (`additionalProperties: false`), so a
//! field the server sends but the document does not name fails too.

use std::collections::BTreeSet;

use serde_json::{json, Value};

pub struct Spec {
    /// The document with its object schemas closed.
    strict: Value,
    /// (method, path template) of every operation, for coverage.
    pub operations: BTreeSet<(String, String)>,
}

/// `~` and `/` escaped for a JSON pointer.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn close_objects(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("type") == Some(&json!("object"))
                && map.contains_key("properties")
                && !map.contains_key("additionalProperties")
            {
                map.insert("additionalProperties".into(), json!(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

impl Spec {
    pub fn new(document: &Value) -> Spec {
        let mut strict = document.clone();
        close_objects(&mut strict);
        let mut operations = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
        Spec { strict, operations }
    }

    /// The documented path template a concrete path (no query) matches.
    pub fn template(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        self.strict["paths"]
            .as_object()?
            .keys()
            .find(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(p, s)| {
                        if p.starts_with('{') {
                            !s.is_empty()
                        } else {
                            p == s
                        }
                    })
            })
            .cloned()
    }

    /// Checks one response: the status is one the operation documents (or
    /// an error under `default`), the content type is documented, and a
    /// JSON body validates against the documented schema. Returns the
    /// operation's (method, template).
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: &str,
        body: &Value,
    ) -> Result<(String, String), String> {
        let path = path.split('?').next().unwrap_or(path);
        let template = self
            .template(path)
            .ok_or_else(|| format!("{path} is not in the document"))?;
        let op_pointer = format!("/paths/{}/{}", escape(&template), method.to_lowercase());
        let Some(op) = self.strict.pointer(&op_pointer) else {
            // A documented path, another method: 405 with the error shape.
            if status == 405 {
                self.validate("/components/schemas/Error", body)
                    .map_err(|e| format!("{method} {path} 405: {e}"))?;
                return Ok((method.to_string(), template));
            }
            return Err(format!("{method} {template} is not in the document"));
        };
        let (code, mut response) = match op["responses"].get(status.to_string()) {
            Some(r) => (status.to_string(), r),
            None if status >= 400 && op["responses"].get("default").is_some() => {
                ("default".to_string(), &op["responses"]["default"])
            }
            None => {
                return Err(format!(
                    "{method} {template}: status {status} is not documented"
                ))
            }
        };
        let mut pointer = format!("{op_pointer}/responses/{code}");
        if let Some(target) = response.get("$ref").and_then(Value::as_str) {
            pointer = target.trim_start_matches('#').to_string();
            response = self.strict.pointer(&pointer).ok_or("dangling $ref")?;
        }
        let Some(content) = response.get("content") else {
            return Ok((method.to_string(), template));
        };
        let media = content_type.split(';').next().unwrap_or("").trim();
        if content.get(media).is_none() {
            return Err(format!(
                "{method} {template} {status}: content type {media:?} is not documented"
            ));
        }
        if media != "application/json" {
            return Ok((method.to_string(), template));
        }
        let schema = format!("{pointer}/content/{}/schema", escape(media));
        self.validate(&schema, body)
            .map(|()| (method.to_string(), template))
            .map_err(|e| {
                format!(
                    "{method} {path} {status} does not match the document:\n  {e}\nbody: {body}"
                )
            })
    }

    /// Checks one event of a documented `text/event-stream` response: the
    /// media type's `x-events` (event name → schema of its JSON data) names
    /// it, and its data validates against that schema.
    pub fn check_event(
        &self,
        method: &str,
        path: &str,
        status: u16,
        name: &str,
        data: &Value,
    ) -> Result<(), String> {
        let path = path.split('?').next().unwrap_or(path);
        let template = self
            .template(path)
            .ok_or_else(|| format!("{path} is not in the document"))?;
        let pointer = format!(
            "/paths/{}/{}/responses/{status}/content/text~1event-stream/x-events/{}",
            escape(&template),
            method.to_lowercase(),
            escape(name)
        );
        if self.strict.pointer(&pointer).is_none() {
            return Err(format!(
                "{method} {template} {status}: event {name:?} is not documented"
            ));
        }
        self.validate(&pointer, data).map_err(|e| {
            format!(
                "{method} {path} event {name:?} does not match the document:\n  {e}\ndata: {data}"
            )
        })
    }

    /// Validates `body` against the schema at this JSON pointer of the
    /// document (resolved within the whole document, so its `$ref`s work).
    fn validate(&self, pointer: &str, body: &Value) -> Result<(), String> {
        let mut root = self.strict.clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        // As a URI fragment, the pointer's braces are percent-encoded.
        root["$ref"] = json!(format!("#{pointer}")
            .replace('{', "%7B")
            .replace('}', "%7D"));
        let validator = jsonschema::draft202012::new(&root)
            .map_err(|e| format!("the document's schema does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n  "))
        }
    }
}

//! Attributes between generations (yjs.md's table). The key rows keep the
//! 2.0 form, with the 3.x fields as extras; the Y document holds the 3.x
//! form. The 2.0 booleans and tags are authoritative: `contentTags` and
//! `systemTags` are derived from them whenever a 2.0 write is mirrored.
//! `LLMRead` has no 2.0 field: it is kept only when a 3.x client set it.

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::instance::attributes::Attributes;
use crate::instance::error::ProtocolError;

pub const SYSTEM_PROMPT: &str = "SystemPrompt";
pub const LLM_READ: &str = "LLMRead";
pub const LLM_WRITE: &str = "LLMWrite";
pub const APPLY_TEMPLATE: &str = "ApplyTemplate";

/// The 3.x fields a 2.0 client does not know; a 2.0 write that leaves them
/// out keeps them (see [`carry_v3_fields`]).
const V3_FIELDS: [&str; 4] = ["contentTags", "systemTags", "zIndex", "customType"];

fn extra_value(a: &Attributes, name: &str) -> Option<Value> {
    a.extra
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, raw)| serde_json::from_str(raw.get()).ok())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `systemTags` for 2.0 attributes, in a fixed order.
fn system_tags(a: &Attributes, llm_read: bool) -> Vec<&'static str> {
    let mut tags = Vec::new();
    if a.visible {
        tags.push(SYSTEM_PROMPT);
    }
    if llm_read {
        tags.push(LLM_READ);
    }
    if !a.readonly {
        tags.push(LLM_WRITE);
    }
    if a.template {
        tags.push(APPLY_TEMPLATE);
    }
    tags
}

fn carries_llm_read(a: &Attributes) -> bool {
    strings(extra_value(a, "systemTags").as_ref())
        .iter()
        .any(|t| t == LLM_READ)
}

/// The 3.x attributes object of a key's 2.0 attributes. `hardcoded` stays
/// out: it lives only in the key row.
pub fn to_v3(a: &Attributes) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(a.key_type.as_str()));
    if let Some(ct) = &a.content_type {
        m.insert("contentType".into(), json!(ct));
    }
    m.insert("contentTags".into(), json!(a.tags));
    m.insert(
        "systemTags".into(),
        json!(system_tags(a, carries_llm_read(a))),
    );
    m.insert(
        "zIndex".into(),
        extra_value(a, "zIndex").unwrap_or_else(|| json!(0)),
    );
    for (name, raw) in &a.extra {
        if matches!(name.as_str(), "contentTags" | "systemTags" | "zIndex") {
            continue;
        }
        if let Ok(v) = serde_json::from_str(raw.get()) {
            m.insert(name.clone(), v);
        }
    }
    m.insert("tags".into(), json!(a.tags));
    m
}

/// The 2.0 attributes of a 3.x attributes object, validated like any
/// client's. `hardcoded` comes from the stored row (`previous`).
pub fn from_v3(
    v3: &Map<String, Value>,
    previous: Option<&Attributes>,
) -> Result<Attributes, ProtocolError> {
    let mut two = Map::new();
    for (name, value) in v3 {
        if name != "tags" {
            two.insert(name.clone(), value.clone());
        }
    }
    let system = strings(v3.get("systemTags"));
    let has = |t: &str| system.iter().any(|s| s == t);
    let tags = match (v3.get("contentTags"), v3.get("tags")) {
        (Some(Value::Array(_)), _) => strings(v3.get("contentTags")),
        (_, Some(Value::Array(_))) => strings(v3.get("tags")),
        _ => Vec::new(),
    };
    two.insert("tags".into(), json!(tags));
    two.insert("visible".into(), json!(has(SYSTEM_PROMPT)));
    two.insert("readonly".into(), json!(!has(LLM_WRITE)));
    two.insert("template".into(), json!(has(APPLY_TEMPLATE)));
    two.insert(
        "hardcoded".into(),
        json!(previous.is_some_and(|p| p.hardcoded)),
    );
    Attributes::from_json(&Value::Object(two).to_string())
}

/// For an instance with a Y document: a 2.0 write whose attributes leave
/// out the 3.x fields the key has keeps them, re-derived from what the 2.0
/// client set (a 2.0 client cannot know them; re-sending its whole state
/// must change nothing). Values equal as sets keep their stored order.
pub fn carry_v3_fields(mut given: Attributes, stored: &Attributes) -> Attributes {
    let has = |a: &Attributes, n: &str| a.extra.iter().any(|(x, _)| x == n);
    for name in V3_FIELDS {
        if has(&given, name) || !has(stored, name) {
            continue;
        }
        let kept = extra_value(stored, name);
        let value = match name {
            "contentTags" => same_set_or(kept, given.tags.iter().map(String::as_str).collect()),
            "systemTags" => same_set_or(kept, system_tags(&given, carries_llm_read(stored))),
            _ => kept.unwrap_or(Value::Null),
        };
        if let Ok(raw) = RawValue::from_string(value.to_string()) {
            given.extra.push((name.to_owned(), raw));
        }
    }
    given
}

fn same_set_or(kept: Option<Value>, derived: Vec<&str>) -> Value {
    use std::collections::BTreeSet;
    let kept_strings = strings(kept.as_ref());
    let kept_set: BTreeSet<&str> = kept_strings.iter().map(String::as_str).collect();
    let derived_set: BTreeSet<&str> = derived.iter().copied().collect();
    match kept {
        Some(v) if kept_set == derived_set => v,
        _ => json!(derived),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(json: Value) -> Attributes {
        Attributes::from_json(&json.to_string()).unwrap()
    }

    #[test]
    fn two_to_three_follows_the_table() {
        let a = attrs(
            json!({"type":"image","readonly":false,"visible":true,"template":true,
            "hardcoded":true,"tags":["x","y"],"contentType":"image/png"}),
        );
        let v3 = Value::Object(to_v3(&a));
        assert_eq!(
            v3,
            json!({"type":"image","contentType":"image/png","contentTags":["x","y"],
                "systemTags":["SystemPrompt","LLMWrite","ApplyTemplate"],"zIndex":0,"tags":["x","y"]})
        );
        let ro = attrs(json!({"readonly":true,"visible":false}));
        assert_eq!(to_v3(&ro)["systemTags"], json!([]));
    }

    #[test]
    fn three_to_two_and_back_keeps_every_field() {
        let v3 = json!({"type":"document","contentTags":["a"],"systemTags":["LLMRead","LLMWrite"],
            "zIndex":3,"customType":"todo"});
        let Value::Object(m) = &v3 else {
            unreachable!()
        };
        let two = from_v3(m, None).unwrap();
        let seen: Value = serde_json::from_str(&two.to_json()).unwrap();
        assert_eq!(seen["type"], "document");
        assert_eq!(seen["tags"], json!(["a"]));
        assert_eq!(
            (&seen["visible"], &seen["readonly"], &seen["template"]),
            (&json!(false), &json!(false), &json!(false))
        );
        assert_eq!(seen["customType"], "todo");
        assert_eq!(seen["systemTags"], json!(["LLMRead", "LLMWrite"]));
        let back = Value::Object(to_v3(&two));
        assert_eq!(back["systemTags"], json!(["LLMRead", "LLMWrite"]));
        assert_eq!(back["zIndex"], 3);
        assert_eq!(back["customType"], "todo");
        assert_eq!(back["contentTags"], json!(["a"]));
    }

    #[test]
    fn hardcoded_stays_in_the_row() {
        let stored = attrs(json!({"hardcoded":true}));
        let Value::Object(m) = json!({"systemTags":[]}) else {
            unreachable!()
        };
        assert!(from_v3(&m, Some(&stored)).unwrap().hardcoded);
        assert!(to_v3(&stored).get("hardcoded").is_none());
    }

    #[test]
    fn a_2_0_resend_without_the_3_fields_is_a_no_op() {
        let Value::Object(m) = json!({"type":"text","contentTags":["b","a"],"systemTags":["LLMWrite","SystemPrompt"],"zIndex":2})
        else {
            unreachable!()
        };
        let stored = from_v3(&m, None).unwrap();
        // What a 2.0 client knows of it, tags reordered.
        let resent = attrs(json!({"type":"text","readonly":false,"visible":true,"tags":["a","b"]}));
        assert!(carry_v3_fields(resent, &stored) == stored);
        // A real change re-derives the 3.x fields.
        let changed = attrs(json!({"readonly":true,"visible":true,"tags":["a","b"]}));
        let carried = carry_v3_fields(changed, &stored);
        assert_eq!(to_v3(&carried)["systemTags"], json!(["SystemPrompt"]));
        assert_eq!(to_v3(&carried)["zIndex"], 2);
    }

    #[test]
    fn bad_3_attributes_are_refused() {
        let Value::Object(m) = json!({"type":"video"}) else {
            unreachable!()
        };
        assert!(from_v3(&m, None).is_err());
    }
}

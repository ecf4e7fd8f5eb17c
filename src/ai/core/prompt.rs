//! The chat system prompt, built from the instance's keys.

use super::tools::Mode;
use serde_json::Value;
use std::fmt::Write;

/// The tag that puts a key's value into the system prompt.
pub const SYSTEM_PROMPT_TAG: &str = "SystemPrompt";

/// One key of the instance as the AI module sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub key: String,
    pub value: Value,
    /// Attribute `type` (`text`, `json`, `image`, `file`, `markdown`).
    pub key_type: String,
    pub tags: Vec<String>,
    pub readonly: bool,
}

impl KeyEntry {
    /// Reads the fields from a stored attributes object, with the protocol's
    /// defaults for anything missing or ill-typed.
    pub fn from_attributes(key: impl Into<String>, value: Value, attributes: &Value) -> Self {
        let key_type = attributes
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("text")
            .to_owned();
        let tags = attributes
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let readonly = attributes
            .get("readonly")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Self {
            key: key.into(),
            value,
            key_type,
            tags,
            readonly,
        }
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub fn is_system_prompt(&self) -> bool {
        self.has_tag(SYSTEM_PROMPT_TAG)
    }
}

/// Strings as they are, anything else as compact JSON (the same rule as
/// template placeholders).
pub fn value_as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

const PREAMBLE: &str = "\
You are an assistant working on a MindCache instance: a set of named keys that \
hold the user's data and context. You can read and change the keys with the \
tools read_key, write_key, delete_key and list_keys.

When the user tells you a fact or gives you information, store it with \
write_key in the existing key it belongs to, using that key's exact name as \
listed below; create a new key only when no existing key fits. Read a key \
before you change it when you need its current value.";

/// Builds the system prompt: preamble, the `SystemPrompt` keys, then the list
/// of all keys.
pub fn build_system_prompt(entries: &[KeyEntry], mode: Mode) -> String {
    let mut out = String::from(PREAMBLE);
    out.push_str(match mode {
        Mode::Use => {
            "\n\nKeys marked (readonly) and keys tagged SystemPrompt cannot be \
             changed or deleted in this session."
        }
        Mode::Edit => {
            "\n\nThis is an editing session: every key may be changed, including \
             keys marked (readonly) and keys tagged SystemPrompt."
        }
    });

    for e in entries.iter().filter(|e| e.is_system_prompt()) {
        let _ = write!(out, "\n\n## {}\n\n", e.key);
        // Image and file bodies are base64: useless as instructions and huge.
        if matches!(e.key_type.as_str(), "image" | "file") {
            let _ = write!(out, "({} value not shown)", e.key_type);
        } else {
            out.push_str(&value_as_text(&e.value));
        }
    }

    out.push_str("\n\n## Keys in this instance\n");
    if entries.is_empty() {
        out.push_str("\n(none yet)");
    }
    for e in entries {
        let _ = write!(out, "\n- {} (type: {}", e.key, e.key_type);
        if !e.tags.is_empty() {
            let _ = write!(out, "; tags: {}", e.tags.join(", "));
        }
        out.push(')');
        if e.readonly {
            out.push_str(" (readonly)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(key: &str, value: Value, ty: &str, tags: &[&str], readonly: bool) -> KeyEntry {
        KeyEntry {
            key: key.into(),
            value,
            key_type: ty.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            readonly,
        }
    }

    #[test]
    fn prompt_layout() {
        let entries = vec![
            entry(
                "persona",
                json!("Be brief."),
                "text",
                &["SystemPrompt"],
                true,
            ),
            entry("name", json!("Ada"), "text", &[], false),
            entry(
                "prefs",
                json!({"a":1}),
                "json",
                &["SystemPrompt", "x"],
                false,
            ),
            entry("photo", json!("AAAA"), "image", &["SystemPrompt"], false),
        ];
        let p = build_system_prompt(&entries, Mode::Use);
        assert!(p.starts_with(PREAMBLE));
        assert!(p.contains("exact name"));
        assert!(p.contains("cannot be changed"));
        assert!(p.contains("\n\n## persona\n\nBe brief.\n\n## prefs\n\n{\"a\":1}\n\n## photo\n\n(image value not shown)"));
        assert!(!p.contains("## name\n"));
        assert!(p.ends_with(
            "## Keys in this instance\n\
             \n- persona (type: text; tags: SystemPrompt) (readonly)\
             \n- name (type: text)\
             \n- prefs (type: json; tags: SystemPrompt, x)\
             \n- photo (type: image; tags: SystemPrompt)"
        ));
        let edit = build_system_prompt(&[], Mode::Edit);
        assert!(edit.contains("editing session"));
        assert!(edit.ends_with("(none yet)"));
    }

    #[test]
    fn entry_from_attributes() {
        let e = KeyEntry::from_attributes(
            "k",
            json!(1),
            &json!({"type":"json","tags":["a",5,"b"],"readonly":true,"contentTags":["z"]}),
        );
        assert_eq!(e, entry("k", json!(1), "json", &["a", "b"], true));
        let d = KeyEntry::from_attributes("k", json!(null), &json!({}));
        assert_eq!(d, entry("k", json!(null), "text", &[], false));
    }
}

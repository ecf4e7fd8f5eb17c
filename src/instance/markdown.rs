//! The readable export (`GET …/export?format=markdown`, data-api.md): one
//! `## <key>` section per key in key order, a bullet list of its
//! attributes, then its value — text and markdown as they are, JSON in a
//! fenced block, images and files as a data URL line. It is for reading;
//! the JSON export is the lossless one.

use super::attributes::{Attributes, KeyType};
use super::store::Entry;

pub fn render(title: &str, entries: &[Entry]) -> String {
    let mut out = format!("# {title}\n");
    for entry in entries {
        out.push_str(&format!("\n## {}\n\n", entry.key));
        out.push_str(&bullets(&entry.attributes));
        out.push('\n');
        out.push_str(&value(entry));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn bullets(a: &Attributes) -> String {
    let mut out = format!("- type: {}\n", a.key_type.as_str());
    if let Some(ct) = &a.content_type {
        out.push_str(&format!("- contentType: {ct}\n"));
    }
    if !a.tags.is_empty() {
        out.push_str(&format!("- tags: {}\n", a.tags.join(", ")));
    }
    let flags: Vec<&str> = [
        (a.readonly, "readonly"),
        (!a.visible, "hidden"),
        (a.hardcoded, "hardcoded"),
        (a.template, "template"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect();
    if !flags.is_empty() {
        out.push_str(&format!("- flags: {}\n", flags.join(", ")));
    }
    out
}

fn value(entry: &Entry) -> String {
    let text = serde_json::from_str::<String>(entry.value.get()).ok();
    match (entry.attributes.key_type, text) {
        (KeyType::Text | KeyType::Markdown, Some(text)) => text,
        (KeyType::Image | KeyType::File, Some(data)) if data.starts_with("data:") => data,
        (KeyType::Image | KeyType::File, Some(data)) => {
            let ct = entry
                .attributes
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream");
            format!("data:{ct};base64,{data}")
        }
        _ => fenced_json(entry.value.get()),
    }
}

/// JSON in a fence long enough that no run of backticks inside closes it.
fn fenced_json(json: &str) -> String {
    let pretty = serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_string());
    let mut fence = "```".to_string();
    while pretty.contains(&fence) {
        fence.push('`');
    }
    format!("{fence}json\n{pretty}\n{fence}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn entry(key: &str, value: &str, attributes: &str) -> Entry {
        Entry {
            key: key.into(),
            value: RawValue::from_string(value.into()).unwrap(),
            attributes: Attributes::from_json(attributes).unwrap(),
            updated_at: 1,
        }
    }

    #[test]
    fn renders_each_kind_of_value() {
        let md = render(
            "Notes",
            &[
                entry(
                    "a",
                    r##""# Title\nbody""##,
                    r#"{"type":"markdown","tags":["x","y"]}"#,
                ),
                entry(
                    "cfg",
                    r#"{"n":[1,2]}"#,
                    r#"{"type":"json","readonly":true,"visible":false}"#,
                ),
                entry(
                    "pic",
                    r#""iVBORw0K""#,
                    r#"{"type":"image","contentType":"image/png"}"#,
                ),
                entry("plain", r#""hello""#, "{}"),
            ],
        );
        assert!(
            md.starts_with("# Notes\n\n## a\n\n- type: markdown\n- tags: x, y\n\n# Title\nbody\n")
        );
        assert!(md.contains(
            "## cfg\n\n- type: json\n- flags: readonly, hidden\n\n```json\n{\n  \"n\": ["
        ));
        assert!(md.contains(
            "## pic\n\n- type: image\n- contentType: image/png\n\ndata:image/png;base64,iVBORw0K\n"
        ));
        assert!(md.ends_with("## plain\n\n- type: text\n\nhello\n"));
    }

    #[test]
    fn fences_outgrow_backticks_inside() {
        let out = fenced_json(r#""```""#);
        assert!(out.starts_with("````json\n"));
    }
}

//! `{{name}}` templates for `/api/transform`, and image URL helpers.

use super::prompt::value_as_text;
use serde_json::Value;

/// Most bytes a resolved template may have (docs/decisions.md): more text
/// than any model's context takes, so nothing useful is refused, while a
/// template that repeats a large key (`{{big}}{{big}}…`) cannot expand
/// into gigabytes.
pub const MAX_RESOLVED_TEMPLATE_BYTES: usize = 1024 * 1024;

/// A template whose resolved text would be over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Template too large: with its placeholders filled in it exceeds {} MiB", .limit / (1024 * 1024))]
pub struct TemplateTooLarge {
    pub limit: usize,
}

/// Text that refuses to grow past `limit` bytes: each piece is measured
/// before it is copied in, so the text itself never exceeds the limit.
struct Bounded {
    text: String,
    limit: usize,
}

impl Bounded {
    fn push(&mut self, piece: &str) -> Result<(), TemplateTooLarge> {
        if piece.len() > self.limit - self.text.len() {
            return Err(TemplateTooLarge { limit: self.limit });
        }
        self.text.push_str(piece);
        Ok(())
    }
}

/// Replaces each `{{ name }}` by the text of key `name` (strings as they are,
/// other JSON compact). Whitespace around the name is ignored; unknown or
/// empty names stay exactly as written. With nested openers (`{{{a}}}`,
/// `{{x {{a}}`) the innermost `{{` before a `}}` opens the placeholder.
/// The result may have at most `limit` bytes; the expansion stops as soon
/// as the next piece would go over it.
pub fn resolve_template<'a>(
    template: &str,
    limit: usize,
    lookup: impl Fn(&str) -> Option<&'a Value>,
) -> Result<String, TemplateTooLarge> {
    let mut out = Bounded {
        text: String::with_capacity(template.len().min(limit)),
        limit,
    };
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}").map(|c| c + open + 2) else {
            break;
        };
        // The last `{{` that starts before the `}}` (may overlap the first).
        let open = rest[open..close].rfind("{{").map_or(open, |o| o + open);
        out.push(&rest[..open])?;
        let name = rest[open + 2..close].trim();
        match lookup(name).filter(|_| !name.is_empty()) {
            // A string goes in without a copy of its own.
            Some(Value::String(s)) => out.push(s)?,
            Some(v) => out.push(&value_as_text(v))?,
            None => out.push(&rest[open..close + 2])?,
        }
        rest = &rest[close + 2..];
    }
    out.push(rest)?;
    Ok(out.text)
}

/// The key names `template` asks for, as `resolve_template` would look
/// them up (so a reader can fetch just those keys).
pub fn placeholders(template: &str) -> Vec<String> {
    let names = std::cell::RefCell::new(Vec::new());
    // No limit: nothing is refused here, only names collected.
    let _ = resolve_template(template, usize::MAX, |name| {
        if !name.is_empty() {
            names.borrow_mut().push(name.to_owned());
        }
        None
    });
    names.into_inner()
}

/// The user message of a transform: the prompt, then the resolved template
/// as its input; the template alone when there is no (or a blank) prompt.
pub fn transform_prompt(prompt: Option<&str>, resolved: &str) -> String {
    match prompt.filter(|p| !p.trim().is_empty()) {
        Some(p) => format!("{p}\n\nInput:\n{resolved}"),
        None => resolved.to_owned(),
    }
}

/// The JPEG data-URL prefix that bare base64 gets.
pub const JPEG_DATA_URL_PREFIX: &str = "data:image/jpeg;base64,";

/// An image reference the upstreams accept: data URLs (and web URLs) pass
/// through; anything else is taken as bare base64 of a JPEG.
pub fn to_data_url(image: &str) -> String {
    let image = image.trim();
    let lower = image.get(..8).unwrap_or(image).to_ascii_lowercase();
    if lower.starts_with("data:") || lower.starts_with("http://") || lower.starts_with("https://") {
        image.to_owned()
    } else {
        format!("{JPEG_DATA_URL_PREFIX}{image}")
    }
}

/// The base64 payload of a `data:…;base64,` URL.
pub fn data_url_base64(url: &str) -> Option<&str> {
    let rest = url.trim().strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    meta.ends_with(";base64").then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn resolve(template: &str) -> String {
        let keys: HashMap<&str, Value> = HashMap::from([
            ("name", json!("Ada")),
            ("obj", json!({"a":[1,2]})),
            ("num", json!(42)),
            ("nil", json!(null)),
            ("my key", json!("spaced")),
            ("emoji", json!("😀")),
        ]);
        resolve_template(template, MAX_RESOLVED_TEMPLATE_BYTES, |n| keys.get(n)).unwrap()
    }

    #[test]
    fn placeholders_name_what_resolving_looks_up() {
        assert_eq!(
            placeholders("{{ a }} {{}} {{{b}}} {{x {{c}} {{a"),
            ["a", "b", "c"]
        );
        assert!(placeholders("plain").is_empty());
    }

    #[test]
    fn placeholders_resolve() {
        let cases = [
            // Substitutions.
            ("Hi {{name}}!", "Hi Ada!"),
            ("{{ name }}{{\tname\n}}", "AdaAda"),
            ("{{obj}} {{num}} {{nil}}", r#"{"a":[1,2]} 42 null"#),
            ("{{ my key }}", "spaced"),
            ("é{{emoji}}ü", "é😀ü"),
            // Edge cases stay as written.
            (
                "{{unknown}} and {{ unknown }}",
                "{{unknown}} and {{ unknown }}",
            ),
            ("{{}} {{ }}", "{{}} {{ }}"),
            ("open {{name", "open {{name"),
            ("close name}} {{name}}", "close name}} Ada"),
            ("{name} { {name} }", "{name} { {name} }"),
            ("", ""),
            ("no placeholders", "no placeholders"),
            // Nested braces.
            ("{{{name}}}", "{Ada}"),
            ("{{x {{name}}", "{{x Ada"),
            ("{{name}}}}", "Ada}}"),
        ];
        for (template, resolved) in cases {
            assert_eq!(resolve(template), resolved, "{template:?}");
        }
    }

    #[test]
    fn a_value_that_looks_like_a_placeholder_is_not_expanded_again() {
        let keys = HashMap::from([("a", json!("{{b}}")), ("b", json!("no"))]);
        assert_eq!(
            resolve_template("{{a}}", 100, |n| keys.get(n)).unwrap(),
            "{{b}}"
        );
    }

    #[test]
    fn expansion_stops_at_the_limit() {
        let keys = HashMap::from([
            ("big", json!("x".repeat(1000))),
            ("obj", json!({"a": "y".repeat(100)})),
        ]);
        let lookup = |n: &str| keys.get(n);
        // Exactly the limit is fine; one byte more is not.
        let two = resolve_template("{{big}}{{big}}", 2000, lookup).unwrap();
        assert_eq!(two.len(), 2000);
        let too_large = TemplateTooLarge { limit: 1999 };
        assert_eq!(
            resolve_template("{{big}}{{big}}", 1999, lookup),
            Err(too_large)
        );
        // Literal text, non-string values and unknown placeholders count too.
        assert!(resolve_template(&"a".repeat(11), 10, lookup).is_err());
        assert!(resolve_template("{{obj}}", 100, lookup).is_err());
        assert!(resolve_template("{{obj}}", 120, lookup).is_ok());
        assert!(resolve_template("{{nope}}", 7, lookup).is_err());
        assert_eq!(resolve_template("{{nope}}", 8, lookup).unwrap(), "{{nope}}");
        // A template of a million placeholders of a 1000-byte key would
        // expand to a gigabyte; it stops at the cap instead.
        let bomb = "{{big}}".repeat(1_000_000);
        let e = resolve_template(&bomb, MAX_RESOLVED_TEMPLATE_BYTES, lookup).unwrap_err();
        assert_eq!(e.limit, MAX_RESOLVED_TEMPLATE_BYTES);
        assert_eq!(
            e.to_string(),
            "Template too large: with its placeholders filled in it exceeds 1 MiB"
        );
    }

    #[test]
    fn transform_prompt_composition() {
        assert_eq!(
            transform_prompt(Some("Summarise"), "text"),
            "Summarise\n\nInput:\ntext"
        );
        assert_eq!(transform_prompt(None, "text"), "text");
        assert_eq!(transform_prompt(Some("  "), "text"), "text");
    }

    #[test]
    fn data_urls() {
        assert_eq!(to_data_url("AAAA"), "data:image/jpeg;base64,AAAA");
        assert_eq!(to_data_url(" AAAA\n"), "data:image/jpeg;base64,AAAA");
        assert_eq!(
            to_data_url("data:image/png;base64,BB"),
            "data:image/png;base64,BB"
        );
        assert_eq!(to_data_url("https://x/y.png"), "https://x/y.png");
        assert_eq!(to_data_url("é"), "data:image/jpeg;base64,é");
        assert_eq!(data_url_base64("data:image/png;base64,BB"), Some("BB"));
        assert_eq!(data_url_base64("data:text/plain,hi"), None);
        assert_eq!(data_url_base64("BB"), None);
    }
}

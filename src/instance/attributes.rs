//! Key attributes (protocol.md §4): the fields the server knows, with their
//! defaults, plus every other field kept losslessly as raw JSON.

use super::error::ProtocolError;
use super::json::{json_equal, RawObject};
use super::limits::{MAX_ATTRIBUTES_BYTES, MAX_TAGS, MAX_TAG_BYTES};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

/// `attributes.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    #[default]
    Text,
    Json,
    Image,
    File,
    Markdown,
    /// A MindCache 3 collaborative text (yjs.md): a string to 2.0 clients,
    /// a Y.Text in the Y document.
    Document,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Text => "text",
            KeyType::Json => "json",
            KeyType::Image => "image",
            KeyType::File => "file",
            KeyType::Markdown => "markdown",
            KeyType::Document => "document",
        }
    }

    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "text" => Some(KeyType::Text),
            "json" => Some(KeyType::Json),
            "image" => Some(KeyType::Image),
            "file" => Some(KeyType::File),
            "markdown" => Some(KeyType::Markdown),
            "document" => Some(KeyType::Document),
            _ => None,
        }
    }
}

/// A key's attributes with the defaults of §4 filled in. `extra` holds the
/// fields the server does not model (e.g. `contentTags`, `systemTags`) in the
/// order and exact JSON text the client sent.
#[derive(Debug, Clone)]
pub struct Attributes {
    pub key_type: KeyType,
    pub readonly: bool,
    pub visible: bool,
    pub hardcoded: bool,
    pub template: bool,
    pub tags: Vec<String>,
    pub content_type: Option<String>,
    pub extra: Vec<(String, Box<RawValue>)>,
}

impl Default for Attributes {
    fn default() -> Self {
        Attributes {
            key_type: KeyType::Text,
            readonly: false,
            visible: true,
            hardcoded: false,
            template: false,
            tags: Vec::new(),
            content_type: None,
            extra: Vec::new(),
        }
    }
}

/// Names of the fields the server models; everything else goes to `extra`.
const KNOWN_FIELDS: [&str; 7] = [
    "type",
    "readonly",
    "visible",
    "hardcoded",
    "template",
    "tags",
    "contentType",
];

impl Attributes {
    /// Parses and validates a client's `attributes` object. A known field that
    /// is `null` counts as missing and takes its default.
    pub fn from_json(text: &str) -> Result<Attributes, ProtocolError> {
        if text.len() > MAX_ATTRIBUTES_BYTES {
            return Err(ProtocolError::too_large(format!(
                "\"attributes\" is {} bytes as JSON; the limit is {MAX_ATTRIBUTES_BYTES}",
                text.len()
            )));
        }
        let object = RawObject::parse(text)
            .ok_or_else(|| ProtocolError::invalid("\"attributes\" must be a JSON object"))?;
        let mut attrs = Attributes::default();
        for (name, raw) in object.0 {
            let raw_text = raw.get();
            match name.as_str() {
                "type" => {
                    if let Some(t) = opt_string(raw_text, "type")? {
                        attrs.key_type = KeyType::parse(&t).ok_or_else(|| {
                            ProtocolError::invalid(format!(
                                "\"attributes.type\" must be one of text, json, image, file, markdown, document (got {t:?})"
                            ))
                        })?;
                    }
                }
                "readonly" => attrs.readonly = opt_bool(raw_text, "readonly")?.unwrap_or(false),
                "visible" => attrs.visible = opt_bool(raw_text, "visible")?.unwrap_or(true),
                "hardcoded" => attrs.hardcoded = opt_bool(raw_text, "hardcoded")?.unwrap_or(false),
                "template" => attrs.template = opt_bool(raw_text, "template")?.unwrap_or(false),
                "tags" => attrs.tags = parse_tags(raw_text)?,
                "contentType" => attrs.content_type = opt_string(raw_text, "contentType")?,
                _ => attrs.extra.push((name, raw)),
            }
        }
        attrs.validate()?;
        Ok(attrs)
    }

    /// The limits of §6 on tags, and the overall size bound. `from_json`
    /// applies them; callers building attributes in code call it directly.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.tags.len() > MAX_TAGS {
            return Err(ProtocolError::too_large(format!(
                "\"attributes.tags\" has {} tags; a key may have at most {MAX_TAGS}",
                self.tags.len()
            )));
        }
        if let Some(t) = self.tags.iter().find(|t| t.len() > MAX_TAG_BYTES) {
            return Err(ProtocolError::too_large(format!(
                "a tag in \"attributes.tags\" is {} bytes; each tag may be at most {MAX_TAG_BYTES} bytes",
                t.len()
            )));
        }
        // An upper estimate of the serialised size that needs no serialising:
        // fixed fields, plus quotes, separators and escapes for the rest.
        let strings = self.tags.iter().map(String::len).sum::<usize>()
            + self.content_type.as_deref().map_or(0, str::len)
            + self
                .extra
                .iter()
                .map(|(n, v)| n.len() + v.get().len())
                .sum::<usize>();
        let approx = 128 + 2 * strings + 4 * (self.tags.len() + self.extra.len());
        if approx > MAX_ATTRIBUTES_BYTES && self.to_json().len() > MAX_ATTRIBUTES_BYTES {
            return Err(ProtocolError::too_large(format!(
                "\"attributes\" are over {MAX_ATTRIBUTES_BYTES} bytes as JSON"
            )));
        }
        Ok(())
    }

    /// Compact JSON with the known fields first, then the extras unchanged.
    pub fn to_json(&self) -> String {
        // Serialising strings, bools and RawValues into a String cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The `tags` column: a JSON array of strings.
    pub fn tags_json(&self) -> String {
        serde_json::to_string(&self.tags).unwrap_or_else(|_| "[]".to_owned())
    }

    /// The `extra` column: a JSON object of the unmodelled fields, or `None`
    /// when there are none (stored as SQL NULL).
    pub fn extra_json(&self) -> Option<String> {
        if self.extra.is_empty() {
            return None;
        }
        let extras = Extras(&self.extra);
        serde_json::to_string(&extras).ok()
    }

    /// Restores the unmodelled fields from the `extra` column.
    pub fn set_extra_json(&mut self, text: Option<&str>) -> Result<(), String> {
        self.extra = match text {
            None => Vec::new(),
            Some(t) => RawObject::parse(t)
                .ok_or_else(|| format!("stored attribute extras are not a JSON object: {t:.80}"))?
                .0
                .into_iter()
                // A field we now model must not be emitted twice.
                .filter(|(n, _)| !KNOWN_FIELDS.contains(&n.as_str()))
                .collect(),
        };
        Ok(())
    }

    /// Restores tags from the `tags` column (NULL → none).
    pub fn set_tags_json(&mut self, text: Option<&str>) -> Result<(), String> {
        self.tags = match text {
            None => Vec::new(),
            Some(t) => serde_json::from_str::<Option<Vec<String>>>(t)
                .map_err(|e| format!("stored tags are not an array of strings: {e}"))?
                .unwrap_or_default(),
        };
        Ok(())
    }
}

/// Equal after normalisation: known fields by value, tags as sets (yjs.md:
/// the no-op rule holds across generations, which order tags differently),
/// extras by name and JSON value regardless of member order. This is the
/// no-op test of §5.
impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        if self.key_type != other.key_type
            || self.readonly != other.readonly
            || self.visible != other.visible
            || self.hardcoded != other.hardcoded
            || self.template != other.template
            || !same_tags(&self.tags, &other.tags)
            || self.content_type != other.content_type
            || self.extra.len() != other.extra.len()
        {
            return false;
        }
        let same_order = self
            .extra
            .iter()
            .zip(&other.extra)
            .all(|((a, _), (b, _))| a == b);
        if same_order {
            return self
                .extra
                .iter()
                .zip(&other.extra)
                .all(|((_, x), (_, y))| json_equal(x.get(), y.get()));
        }
        sorted(&self.extra)
            .into_iter()
            .zip(sorted(&other.extra))
            .all(|((a, x), (b, y))| a == b && json_equal(x, y))
    }
}

/// The same tags, in any order (duplicates count once).
fn same_tags(a: &[String], b: &[String]) -> bool {
    if a == b {
        return true;
    }
    fn set(t: &[String]) -> std::collections::BTreeSet<&str> {
        t.iter().map(String::as_str).collect()
    }
    set(a) == set(b)
}

/// Extras as (name, JSON text) pairs sorted by name, for order-free comparison.
fn sorted(extra: &[(String, Box<RawValue>)]) -> Vec<(&str, &str)> {
    let mut v: Vec<(&str, &str)> = extra.iter().map(|(n, r)| (n.as_str(), r.get())).collect();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = 6 + usize::from(self.content_type.is_some()) + self.extra.len();
        let mut map = serializer.serialize_map(Some(len))?;
        map.serialize_entry("type", self.key_type.as_str())?;
        map.serialize_entry("readonly", &self.readonly)?;
        map.serialize_entry("visible", &self.visible)?;
        map.serialize_entry("hardcoded", &self.hardcoded)?;
        map.serialize_entry("template", &self.template)?;
        map.serialize_entry("tags", &self.tags)?;
        if let Some(ct) = &self.content_type {
            map.serialize_entry("contentType", ct)?;
        }
        for (name, raw) in &self.extra {
            map.serialize_entry(name, raw)?;
        }
        map.end()
    }
}

struct Extras<'a>(&'a [(String, Box<RawValue>)]);

impl Serialize for Extras<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, raw) in self.0 {
            map.serialize_entry(name, raw)?;
        }
        map.end()
    }
}

fn opt_bool(raw: &str, field: &str) -> Result<Option<bool>, ProtocolError> {
    serde_json::from_str::<Option<bool>>(raw).map_err(|_| {
        ProtocolError::invalid(format!(
            "\"attributes.{field}\" must be true or false (got {raw:.40})"
        ))
    })
}

fn opt_string(raw: &str, field: &str) -> Result<Option<String>, ProtocolError> {
    serde_json::from_str::<Option<String>>(raw).map_err(|_| {
        ProtocolError::invalid(format!(
            "\"attributes.{field}\" must be a string (got {raw:.40})"
        ))
    })
}

fn parse_tags(raw: &str) -> Result<Vec<String>, ProtocolError> {
    serde_json::from_str::<Option<Vec<String>>>(raw)
        .map(Option::unwrap_or_default)
        .map_err(|_| ProtocolError::invalid("\"attributes.tags\" must be an array of strings"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::error::ErrorCode;

    fn parse(text: &str) -> Attributes {
        Attributes::from_json(text).unwrap()
    }

    fn err(text: &str) -> ProtocolError {
        Attributes::from_json(text).unwrap_err()
    }

    #[test]
    fn defaults_are_filled_in() {
        let a = parse("{}");
        assert_eq!(a, Attributes::default());
        assert_eq!(
            a.to_json(),
            r#"{"type":"text","readonly":false,"visible":true,"hardcoded":false,"template":false,"tags":[]}"#
        );
    }

    #[test]
    fn known_fields_are_read() {
        let a = parse(
            r#"{"type":"image","readonly":true,"visible":false,"hardcoded":true,
               "template":true,"tags":["a","b"],"contentType":"image/png"}"#,
        );
        assert_eq!(a.key_type, KeyType::Image);
        assert!(a.readonly && !a.visible && a.hardcoded && a.template);
        assert_eq!(a.tags, ["a", "b"]);
        assert_eq!(a.content_type.as_deref(), Some("image/png"));
        assert_eq!(
            a.to_json(),
            r#"{"type":"image","readonly":true,"visible":false,"hardcoded":true,"template":true,"tags":["a","b"],"contentType":"image/png"}"#
        );
        for t in ["text", "json", "image", "file", "markdown"] {
            let a = parse(&format!(r#"{{"type":"{t}"}}"#));
            assert_eq!(a.key_type.as_str(), t);
        }
    }

    #[test]
    fn null_known_fields_take_defaults() {
        let a = parse(r#"{"type":null,"visible":null,"tags":null,"contentType":null}"#);
        assert_eq!(a, Attributes::default());
    }

    #[test]
    fn unknown_fields_round_trip_losslessly() {
        let text = r#"{"type":"json","contentTags":["x", "y"],"systemTags":["SystemPrompt"],"zeta":{"n":1.50,"deep":[null]},"alpha":0}"#;
        let a = parse(text);
        let names: Vec<&str> = a.extra.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["contentTags", "systemTags", "zeta", "alpha"]);
        let out = a.to_json();
        assert_eq!(
            out,
            r#"{"type":"json","readonly":false,"visible":true,"hardcoded":false,"template":false,"tags":[],"contentTags":["x", "y"],"systemTags":["SystemPrompt"],"zeta":{"n":1.50,"deep":[null]},"alpha":0}"#
        );
        // Through the storage columns and back.
        let mut b = Attributes {
            key_type: a.key_type,
            ..Attributes::default()
        };
        b.set_extra_json(a.extra_json().as_deref()).unwrap();
        b.set_tags_json(Some(&a.tags_json())).unwrap();
        assert_eq!(b.to_json(), out);
        assert_eq!(a, b);
    }

    #[test]
    fn no_extras_store_as_null() {
        assert_eq!(parse(r#"{"tags":["t"]}"#).extra_json(), None);
        assert_eq!(parse(r#"{"tags":["t"]}"#).tags_json(), r#"["t"]"#);
    }

    #[test]
    fn equality_ignores_extra_order_and_spacing() {
        let a = parse(r#"{"x":[1, 2],"y":{"a":1,"b":2}}"#);
        let b = parse(r#"{"y":{"b":2,"a":1},"x":[1,2]}"#);
        assert_eq!(a, b);
        let c = parse(r#"{"y":{"b":2,"a":1},"x":[1,3]}"#);
        assert_ne!(a, c);
        let d = parse(r#"{"x":[1,2],"z":{"a":1,"b":2}}"#);
        assert_ne!(a, d);
        assert_ne!(parse(r#"{"x":1}"#), parse(r#"{}"#));
        assert_ne!(parse(r#"{"tags":["a"]}"#), parse(r#"{"tags":[]}"#));
        assert_ne!(parse(r#"{"contentType":"a"}"#), parse(r#"{}"#));
        // Defaults written out equal defaults left out.
        assert_eq!(
            parse(r#"{"visible":true,"type":"text","tags":[]}"#),
            parse("{}")
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = err(r#"{"type":"TEXT"}"#);
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        assert!(e.message.contains("attributes.type"), "{}", e.message);
        let e = err(r#"{"type":3}"#);
        assert!(e.message.contains("attributes.type"), "{}", e.message);
        for f in ["readonly", "visible", "hardcoded", "template"] {
            let e = err(&format!(r#"{{"{f}":"yes"}}"#));
            assert_eq!(e.code, ErrorCode::InvalidMessage);
            assert!(
                e.message.contains(&format!("attributes.{f}")),
                "{}",
                e.message
            );
            assert!(Attributes::from_json(&format!(r#"{{"{f}":1}}"#)).is_err());
        }
        for bad in [
            r#"{"tags":"a"}"#,
            r#"{"tags":[1]}"#,
            r#"{"tags":[["a"]]}"#,
            r#"{"tags":{}}"#,
        ] {
            let e = err(bad);
            assert_eq!(e.code, ErrorCode::InvalidMessage, "{bad}");
            assert!(e.message.contains("attributes.tags"), "{}", e.message);
        }
        let e = err(r#"{"contentType":5}"#);
        assert!(
            e.message.contains("attributes.contentType"),
            "{}",
            e.message
        );
        for not_object in ["[]", "\"x\"", "1", "null", "true"] {
            let e = err(not_object);
            assert_eq!(e.code, ErrorCode::InvalidMessage);
            assert!(e.message.contains("\"attributes\""), "{}", e.message);
        }
    }

    #[test]
    fn tag_limits() {
        let tags = |n: usize, len: usize| {
            let list: Vec<String> = (0..n).map(|_| format!("\"{}\"", "t".repeat(len))).collect();
            format!(r#"{{"tags":[{}]}}"#, list.join(","))
        };
        assert_eq!(parse(&tags(64, 128)).tags.len(), 64);
        assert_eq!(err(&tags(65, 1)).code, ErrorCode::TooLarge);
        assert_eq!(err(&tags(1, 129)).code, ErrorCode::TooLarge);
        // 128 bytes counted in UTF-8, not characters: 43 × "€" = 129 bytes.
        assert_eq!(
            err(&format!(r#"{{"tags":["{}"]}}"#, "€".repeat(43))).code,
            ErrorCode::TooLarge
        );
        assert!(Attributes::from_json(&format!(r#"{{"tags":["{}"]}}"#, "€".repeat(42))).is_ok());
    }

    #[test]
    fn attributes_size_limit() {
        let pad = "p".repeat(MAX_ATTRIBUTES_BYTES);
        let e = err(&format!(r#"{{"note":"{pad}"}}"#));
        assert_eq!(e.code, ErrorCode::TooLarge);
    }

    #[test]
    fn stored_columns_tolerate_nulls_and_reject_garbage() {
        let mut a = Attributes::default();
        a.set_tags_json(None).unwrap();
        a.set_tags_json(Some("null")).unwrap();
        a.set_extra_json(None).unwrap();
        assert_eq!(a, Attributes::default());
        assert!(a.set_tags_json(Some("{")).is_err());
        assert!(a.set_extra_json(Some("[1]")).is_err());
        // A modelled name that somehow sits in `extra` is not emitted twice.
        a.set_extra_json(Some(r#"{"type":"json","k":1}"#)).unwrap();
        assert_eq!(a.extra.len(), 1);
    }
}

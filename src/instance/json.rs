//! Small helpers for handling JSON as text: objects whose member values stay
//! raw, and equality that avoids parsing when the texts already match.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::fmt;

/// A JSON object whose members keep their order and their exact JSON text.
/// A repeated name keeps its first position and its last value, as
/// `JSON.parse` does in the clients.
#[derive(Debug, Default)]
pub struct RawObject(pub Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut members: Vec<(String, Box<RawValue>)> = Vec::new();
                let mut position: HashMap<String, usize> = HashMap::new();
                while let Some((name, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    match position.get(&name) {
                        Some(&i) => members[i].1 = value,
                        None => {
                            position.insert(name.clone(), members.len());
                            members.push((name, value));
                        }
                    }
                }
                Ok(RawObject(members))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

impl RawObject {
    /// Parses `text` as a JSON object; `None` when it is not valid JSON or not an object.
    pub fn parse(text: &str) -> Option<RawObject> {
        serde_json::from_str(text).ok()
    }
}

/// Whether two JSON texts mean the same value: byte equality first (the usual
/// case for a client re-sending its state), a parse only when they differ.
pub fn json_equal(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        // Unparseable as a Value (e.g. a number out of f64 range): treat as a
        // change, which costs at most one redundant write.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_object_keeps_order_and_text() {
        let o = RawObject::parse(r#"{"b": 1.50, "a":{"x" :[1, 2]}, "c":null}"#).unwrap();
        let names: Vec<&str> = o.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(o.0[0].1.get(), "1.50");
        assert_eq!(o.0[1].1.get(), r#"{"x" :[1, 2]}"#);
        assert_eq!(o.0[2].1.get(), "null");
    }

    #[test]
    fn raw_object_repeated_name_keeps_first_position_last_value() {
        let o = RawObject::parse(r#"{"a":1,"b":2,"a":3,"c":4,"b":5}"#).unwrap();
        let got: Vec<(&str, &str)> = o.0.iter().map(|(n, v)| (n.as_str(), v.get())).collect();
        assert_eq!(got, [("a", "3"), ("b", "5"), ("c", "4")]);
    }

    #[test]
    fn raw_object_refuses_non_objects() {
        assert!(RawObject::parse("[1]").is_none());
        assert!(RawObject::parse("\"x\"").is_none());
        assert!(RawObject::parse("{").is_none());
        assert!(RawObject::parse("{}").unwrap().0.is_empty());
    }

    #[test]
    fn json_equality() {
        assert!(json_equal("1", "1"));
        assert!(json_equal(
            r#"{"a":1,"b":[true]}"#,
            r#"{ "b" : [ true ], "a" : 1 }"#
        ));
        assert!(!json_equal(r#"{"a":1}"#, r#"{"a":2}"#));
        assert!(!json_equal("\"1\"", "1"));
        assert!(!json_equal("null", "\"null\""));
        // Out-of-range numbers are not parseable as Value: counted as different.
        assert!(!json_equal("1e400", "1E400"));
    }
}

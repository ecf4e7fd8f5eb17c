//! Delivery bodies (webhooks-out.md), built from the broadcast frame the
//! instance publishes for every applied change (protocol.md §2), so every
//! path that changes keys (WebSocket, data API, AI tools, import, clear)
//! is announced the same way.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::events::{INSTANCE_CLEARED, KEY_DELETED, KEY_UPDATED, WEBHOOK_TEST};

/// Values larger than this are left out of bodies (`"valueOmitted":true`).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A broadcast frame, as far as webhooks need it.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    #[serde(default, borrow)]
    attributes: Option<&'a RawValue>,
    #[serde(default, rename = "updatedBy")]
    updated_by: Option<String>,
    #[serde(default, rename = "deletedBy")]
    deleted_by: Option<String>,
    #[serde(default, rename = "clearedBy")]
    cleared_by: Option<String>,
    timestamp: i64,
}

/// One applied change, parsed from its frame.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// `key.updated`, `key.deleted` or `instance.cleared`.
    pub event: &'static str,
    pub key: Option<String>,
    pub value: Option<&'a RawValue>,
    pub attributes: Option<&'a RawValue>,
    pub by: String,
    /// Server ms (the key's new `updatedAt`).
    pub timestamp: i64,
}

/// The change a broadcast frame announces; `None` for any other frame.
pub fn parse_frame(text: &str) -> Option<Change<'_>> {
    let frame: Frame<'_> = serde_json::from_str(text).ok()?;
    let (event, by) = match frame.kind {
        "key_updated" => (KEY_UPDATED, frame.updated_by),
        "key_deleted" => (KEY_DELETED, frame.deleted_by),
        "cleared" => (INSTANCE_CLEARED, frame.cleared_by),
        _ => return None,
    };
    Some(Change {
        event,
        key: frame.key,
        value: frame.value,
        attributes: frame.attributes,
        by: by.unwrap_or_default(),
        timestamp: frame.timestamp,
    })
}

#[derive(Serialize)]
struct Body<'a, D: Serialize> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(rename = "instanceId")]
    instance_id: &'a str,
    timestamp: i64,
    data: D,
}

#[derive(Serialize)]
struct Updated<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a RawValue>,
    #[serde(rename = "valueOmitted", skip_serializing_if = "std::ops::Not::not")]
    value_omitted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<&'a RawValue>,
    #[serde(rename = "updatedAt")]
    updated_at: i64,
    #[serde(rename = "updatedBy")]
    updated_by: &'a str,
}

#[derive(Serialize)]
struct Deleted<'a> {
    key: &'a str,
    #[serde(rename = "updatedBy")]
    updated_by: &'a str,
}

#[derive(Serialize)]
struct Cleared<'a> {
    #[serde(rename = "updatedBy")]
    updated_by: &'a str,
}

fn encode<D: Serialize>(body: &Body<'_, D>) -> String {
    // Serialising plain strings, integers and already-valid raw JSON cannot fail.
    serde_json::to_string(body).unwrap_or_default()
}

/// The JSON body of delivery `id` of `change`.
pub fn body(id: &str, instance_id: &str, change: &Change<'_>) -> String {
    let key = change.key.as_deref().unwrap_or_default();
    let by = change.by.as_str();
    let (kind, timestamp) = (change.event, change.timestamp);
    match change.event {
        KEY_UPDATED => {
            let omitted = change
                .value
                .is_some_and(|v| v.get().len() > MAX_VALUE_BYTES);
            encode(&Body {
                id,
                kind,
                instance_id,
                timestamp,
                data: Updated {
                    key,
                    value: change.value.filter(|_| !omitted),
                    value_omitted: omitted,
                    attributes: change.attributes,
                    updated_at: change.timestamp,
                    updated_by: by,
                },
            })
        }
        KEY_DELETED => encode(&Body {
            id,
            kind,
            instance_id,
            timestamp,
            data: Deleted {
                key,
                updated_by: by,
            },
        }),
        _ => encode(&Body {
            id,
            kind,
            instance_id,
            timestamp,
            data: Cleared { updated_by: by },
        }),
    }
}

/// The body of a test send.
pub fn test_body(id: &str, instance_id: &str, timestamp: i64) -> String {
    encode(&Body {
        id,
        kind: WEBHOOK_TEST,
        instance_id,
        timestamp,
        data: serde_json::Map::new(),
    })
}

/// A new delivery id from 16 random bytes (`msg_` + 32 hex).
pub fn delivery_id(bytes: [u8; 16]) -> String {
    format!("msg_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parsed(body: &str) -> Value {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn key_updated() {
        let frame = r#"{"type":"key_updated","key":"a\"b","value":{"x":[1,2]},"attributes":{"type":"json","tags":[]},"updatedBy":"u1","timestamp":1700000000123}"#;
        let change = parse_frame(frame).unwrap();
        assert_eq!(change.event, KEY_UPDATED);
        assert_eq!(
            parsed(&body("msg_1", "i1", &change)),
            json!({"id":"msg_1","type":"key.updated","instanceId":"i1","timestamp":1700000000123_i64,
                   "data":{"key":"a\"b","value":{"x":[1,2]},"attributes":{"type":"json","tags":[]},
                           "updatedAt":1700000000123_i64,"updatedBy":"u1"}})
        );
    }

    #[test]
    fn deleted_and_cleared() {
        let deleted =
            parse_frame(r#"{"type":"key_deleted","key":"k","deletedBy":"u2","timestamp":5}"#)
                .unwrap();
        assert_eq!(
            parsed(&body("m", "i", &deleted)),
            json!({"id":"m","type":"key.deleted","instanceId":"i","timestamp":5,
                   "data":{"key":"k","updatedBy":"u2"}})
        );
        let cleared =
            parse_frame(r#"{"type":"cleared","clearedBy":"system","timestamp":6}"#).unwrap();
        assert_eq!(cleared.key, None);
        assert_eq!(
            parsed(&body("m", "i", &cleared)),
            json!({"id":"m","type":"instance.cleared","instanceId":"i","timestamp":6,
                   "data":{"updatedBy":"system"}})
        );
    }

    #[test]
    fn large_values_are_omitted() {
        let big = "x".repeat(MAX_VALUE_BYTES);
        let frame = json!({"type":"key_updated","key":"k","value":big,"attributes":{},
                           "updatedBy":"u","timestamp":1})
        .to_string();
        let b = parsed(&body("m", "i", &parse_frame(&frame).unwrap()));
        assert_eq!(b["data"]["valueOmitted"], true);
        assert!(b["data"].get("value").is_none());
        assert_eq!(b["data"]["key"], "k");
    }

    #[test]
    fn other_frames_are_not_changes() {
        assert!(parse_frame(r#"{"type":"ack","id":"1","timestamp":1}"#).is_none());
        assert!(parse_frame("not json").is_none());
    }

    #[test]
    fn test_body_and_ids() {
        assert_eq!(
            parsed(&test_body("m", "i", 9)),
            json!({"id":"m","type":"webhook.test","instanceId":"i","timestamp":9,"data":{}})
        );
        assert_eq!(delivery_id([0xab; 16]), format!("msg_{}", "ab".repeat(16)));
    }
}

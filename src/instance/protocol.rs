//! The wire format of protocol.md §2–§3: client frames parsed into typed
//! messages, server messages encoded once into the compact JSON that is sent.

use super::attributes::Attributes;
use super::error::{ErrorCode, MessageId, ProtocolError};
use super::limits::{check_frame_size, MAX_ID_CHARS};
use super::store::Entry;
use crate::permission::Permission;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::error::Category;
use serde_json::value::RawValue;

const MESSAGE_TYPES: &str = "auth, set, delete, clear, ping";

/// A client message, its value kept as the raw JSON text the client sent
/// (borrowed from the frame) so it is stored and echoed without re-serialising.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    Auth {
        api_key: String,
    },
    Set {
        key: String,
        value: &'a RawValue,
        /// `None`: keep the key's current attributes (defaults for a new key).
        attributes: Option<Attributes>,
        /// The client's clock; informational only.
        timestamp: Option<f64>,
    },
    Delete {
        key: String,
        timestamp: Option<f64>,
    },
    Clear {
        timestamp: Option<f64>,
    },
    Ping,
}

/// One parsed frame: the message and its extension `id`.
#[derive(Debug)]
pub struct ClientFrame<'a> {
    pub id: Option<MessageId>,
    pub message: ClientMessage<'a>,
}

/// Every field any message may have, each still raw, so that one pass over the
/// frame finds the `id` even when the rest of the message is wrong.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", default, borrow, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(rename = "apiKey", default, borrow, deserialize_with = "present")]
    api_key: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    key: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    attributes: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    timestamp: Option<&'a RawValue>,
}

/// `Some` whenever the field is there, `null` included: `"value": null` is a
/// value, not a missing field.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Parses one text frame. Errors carry the frame's `id` whenever it could be read.
pub fn parse_client_frame(frame: &str) -> Result<ClientFrame<'_>, ProtocolError> {
    check_frame_size(frame.len())?;
    // A derived struct would also accept a JSON array positionally; only objects are messages.
    if !frame.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(frame) {
            Ok(_) => ProtocolError::invalid(
                "a message must be a JSON object such as {\"type\":\"ping\"}",
            ),
            Err(e) => not_json(&e),
        });
    }
    let env: Envelope<'_> = serde_json::from_str(frame).map_err(|e| match e.classify() {
        Category::Data => ProtocolError::invalid(format!("malformed message: {e}")),
        _ => not_json(&e),
    })?;
    let id = parse_id(env.id)?;
    match parse_message(&env) {
        Ok(message) => Ok(ClientFrame { id, message }),
        Err(e) => Err(e.with_id(id)),
    }
}

fn not_json(e: &serde_json::Error) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::ParseError,
        format!("the frame is not valid JSON: {e}"),
    )
}

/// `id`: a string or number of at most 64 characters; `null` counts as absent.
/// A bad id is not echoed (it may be huge or not scalar).
fn parse_id(raw: Option<&RawValue>) -> Result<Option<MessageId>, ProtocolError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get();
    let rendered_chars = match text.as_bytes().first() {
        Some(b'n') => return Ok(None),
        Some(b'"') => serde_json::from_str::<String>(text)
            .map_err(|_| ProtocolError::invalid("\"id\" is not a valid JSON string"))?
            .chars()
            .count(),
        Some(b'-' | b'0'..=b'9') => text.chars().count(),
        _ => {
            return Err(ProtocolError::invalid(
                "\"id\" must be a string or a number",
            ))
        }
    };
    if rendered_chars > MAX_ID_CHARS {
        return Err(ProtocolError::invalid(format!(
            "\"id\" is {rendered_chars} characters; the limit is {MAX_ID_CHARS}"
        )));
    }
    Ok(Some(MessageId::from_raw(raw.to_owned())))
}

fn parse_message<'a>(env: &Envelope<'a>) -> Result<ClientMessage<'a>, ProtocolError> {
    let kind = match env.kind {
        None => {
            return Err(ProtocolError::invalid(format!(
                "the message has no \"type\"; expected one of {MESSAGE_TYPES}"
            )))
        }
        Some(raw) => serde_json::from_str::<String>(raw.get()).map_err(|_| {
            ProtocolError::invalid(format!("\"type\" must be a string, one of {MESSAGE_TYPES}"))
        })?,
    };
    match kind.as_str() {
        "auth" => Ok(ClientMessage::Auth {
            api_key: required_string(env.api_key, "auth", "apiKey")?,
        }),
        "set" => {
            let key = required_string(env.key, "set", "key")?;
            let value = env.value.ok_or_else(|| {
                ProtocolError::invalid(
                    "\"set\" needs \"value\" (any JSON value; send null to store null)",
                )
            })?;
            let attributes = match env.attributes {
                Some(raw) if raw.get() != "null" => Some(Attributes::from_json(raw.get())?),
                _ => None,
            };
            Ok(ClientMessage::Set {
                key,
                value,
                attributes,
                timestamp: timestamp(env.timestamp)?,
            })
        }
        "delete" => Ok(ClientMessage::Delete {
            key: required_string(env.key, "delete", "key")?,
            timestamp: timestamp(env.timestamp)?,
        }),
        "clear" => Ok(ClientMessage::Clear {
            timestamp: timestamp(env.timestamp)?,
        }),
        "ping" => Ok(ClientMessage::Ping),
        other => Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {other:?}; expected one of {MESSAGE_TYPES}"),
        )),
    }
}

fn required_string(
    raw: Option<&RawValue>,
    kind: &str,
    field: &str,
) -> Result<String, ProtocolError> {
    let raw = raw.ok_or_else(|| {
        ProtocolError::invalid(format!("\"{kind}\" needs \"{field}\" (a string)"))
    })?;
    serde_json::from_str::<String>(raw.get()).map_err(|_| {
        ProtocolError::invalid(format!(
            "\"{field}\" must be a string (got {:.40})",
            raw.get()
        ))
    })
}

fn timestamp(raw: Option<&RawValue>) -> Result<Option<f64>, ProtocolError> {
    match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Option<f64>>(raw.get()).map_err(|_| {
            ProtocolError::invalid(
                "\"timestamp\" must be a number (milliseconds since the Unix epoch)",
            )
        }),
    }
}

// ---------------------------------------------------------------------------
// Server → client. Each encoder returns the frame text once; the caller sends
// the same String to every socket that should get it.

/// `auth_error.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorCode {
    InvalidKey,
    Expired,
    NoAccess,
    InstanceNotFound,
    AuthTimeout,
}

impl AuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthErrorCode::InvalidKey => "INVALID_KEY",
            AuthErrorCode::Expired => "EXPIRED",
            AuthErrorCode::NoAccess => "NO_ACCESS",
            AuthErrorCode::InstanceNotFound => "INSTANCE_NOT_FOUND",
            AuthErrorCode::AuthTimeout => "AUTH_TIMEOUT",
        }
    }
}

/// Our own types always serialise; should that ever break, the client gets an
/// INTERNAL error frame rather than the server panicking.
fn to_frame<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(msg).unwrap_or_else(|_| {
        r#"{"type":"error","error":"the server failed to encode a message","code":"INTERNAL"}"#
            .to_owned()
    })
}

pub fn encode_auth_success(instance_id: &str, user_id: &str, permission: Permission) -> String {
    #[derive(Serialize)]
    struct Msg<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(rename = "instanceId")]
        instance_id: &'a str,
        #[serde(rename = "userId")]
        user_id: &'a str,
        permission: &'static str,
    }
    to_frame(&Msg {
        kind: "auth_success",
        instance_id,
        user_id,
        // The wire knows read|write|admin: an owner is reported as admin.
        permission: permission.for_session().as_str(),
    })
}

/// `auth_error` and `error` frames: the same fields, `id` only on `error`.
#[derive(Serialize)]
struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: &'a str,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
}

pub fn encode_auth_error(code: AuthErrorCode, error: &str) -> String {
    to_frame(&ErrorFrame {
        kind: "auth_error",
        error,
        code: code.as_str(),
        id: None,
    })
}

/// `{ <key>: { value, attributes, updatedAt } }`, the shape of `sync.data`.
struct DataMap<'a>(&'a [Entry]);

impl Serialize for DataMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Item<'a> {
            value: &'a RawValue,
            attributes: &'a Attributes,
            #[serde(rename = "updatedAt")]
            updated_at: i64,
        }
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for e in self.0 {
            map.serialize_entry(
                &e.key,
                &Item {
                    value: &e.value,
                    attributes: &e.attributes,
                    updated_at: e.updated_at,
                },
            )?;
        }
        map.end()
    }
}

/// The key map alone (for `GET /admin/do/:id`, the AI module and clone dumps).
pub fn encode_data(entries: &[Entry]) -> String {
    to_frame(&DataMap(entries))
}

pub fn encode_sync(instance_id: &str, entries: &[Entry]) -> String {
    #[derive(Serialize)]
    struct Msg<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        data: DataMap<'a>,
        #[serde(rename = "instanceId")]
        instance_id: &'a str,
    }
    to_frame(&Msg {
        kind: "sync",
        data: DataMap(entries),
        instance_id,
    })
}

/// The `sync` message around an already-encoded `data` object (from
/// `KeyStore::data_json`), so the map is never parsed and re-serialised.
pub fn encode_sync_with_data(instance_id: &str, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + instance_id.len() + 48);
    out.push_str(r#"{"type":"sync","data":"#);
    out.push_str(data);
    out.push_str(r#","instanceId":"#);
    out.push_str(&serde_json::to_string(instance_id).unwrap_or_else(|_| "\"\"".into()));
    out.push('}');
    out
}

pub fn encode_key_updated(
    key: &str,
    value: &RawValue,
    attributes: &Attributes,
    updated_by: &str,
    timestamp: i64,
) -> String {
    #[derive(Serialize)]
    struct Msg<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        key: &'a str,
        value: &'a RawValue,
        attributes: &'a Attributes,
        #[serde(rename = "updatedBy")]
        updated_by: &'a str,
        timestamp: i64,
    }
    to_frame(&Msg {
        kind: "key_updated",
        key,
        value,
        attributes,
        updated_by,
        timestamp,
    })
}

pub fn encode_key_deleted(key: &str, deleted_by: &str, timestamp: i64) -> String {
    #[derive(Serialize)]
    struct Msg<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        key: &'a str,
        #[serde(rename = "deletedBy")]
        deleted_by: &'a str,
        timestamp: i64,
    }
    to_frame(&Msg {
        kind: "key_deleted",
        key,
        deleted_by,
        timestamp,
    })
}

pub fn encode_cleared(cleared_by: &str, timestamp: i64) -> String {
    #[derive(Serialize)]
    struct Msg<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(rename = "clearedBy")]
        cleared_by: &'a str,
        timestamp: i64,
    }
    to_frame(&Msg {
        kind: "cleared",
        cleared_by,
        timestamp,
    })
}

pub fn encode_error(err: &ProtocolError) -> String {
    to_frame(&ErrorFrame {
        kind: "error",
        error: &err.message,
        code: err.code.as_str(),
        id: err.id.as_ref().map(MessageId::raw),
    })
}

pub fn encode_pong() -> String {
    r#"{"type":"pong"}"#.to_owned()
}

pub fn encode_ack(id: &MessageId, timestamp: i64) -> String {
    #[derive(Serialize)]
    struct Msg<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'a RawValue,
        timestamp: i64,
    }
    to_frame(&Msg {
        kind: "ack",
        id: id.raw(),
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(frame: &str) -> ClientFrame<'_> {
        parse_client_frame(frame).unwrap()
    }

    fn err(frame: &str) -> ProtocolError {
        parse_client_frame(frame).unwrap_err()
    }

    fn as_value(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn parses_every_message_type() {
        match parse(r#"{"type":"auth","apiKey":"mc_live_x"}"#).message {
            ClientMessage::Auth { api_key } => assert_eq!(api_key, "mc_live_x"),
            m => panic!("{m:?}"),
        }
        match parse(r#"{"type":"set","key":"k","value":{"a": [1, 2]},"timestamp":17}"#).message {
            ClientMessage::Set {
                key,
                value,
                attributes,
                timestamp,
            } => {
                assert_eq!(key, "k");
                assert_eq!(value.get(), r#"{"a": [1, 2]}"#);
                assert!(attributes.is_none());
                assert_eq!(timestamp, Some(17.0));
            }
            m => panic!("{m:?}"),
        }
        match parse(r#"{"type":"delete","key":"k\u00e9"}"#).message {
            ClientMessage::Delete { key, timestamp } => {
                assert_eq!(key, "ké");
                assert_eq!(timestamp, None);
            }
            m => panic!("{m:?}"),
        }
        assert!(matches!(
            parse(r#"{"type":"clear","timestamp":1.5}"#).message,
            ClientMessage::Clear { timestamp: Some(_) }
        ));
        assert!(matches!(
            parse(r#" {"type":"ping","extra":[1,{"x":2}]} "#).message,
            ClientMessage::Ping
        ));
    }

    #[test]
    fn set_value_null_is_a_value_and_attributes_null_is_missing() {
        match parse(r#"{"type":"set","key":"k","value":null,"attributes":null}"#).message {
            ClientMessage::Set {
                value, attributes, ..
            } => {
                assert_eq!(value.get(), "null");
                assert!(attributes.is_none());
            }
            m => panic!("{m:?}"),
        }
        match parse(r#"{"type":"set","key":"k","value":1,"attributes":{"tags":["t"]}}"#).message {
            ClientMessage::Set { attributes, .. } => {
                assert_eq!(attributes.unwrap().tags, ["t"]);
            }
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn ids_are_kept_as_sent() {
        assert_eq!(
            parse(r#"{"type":"ping","id":"a-1"}"#).id.unwrap().json(),
            r#""a-1""#
        );
        assert_eq!(parse(r#"{"type":"ping","id":42}"#).id.unwrap().json(), "42");
        assert_eq!(
            parse(r#"{"type":"ping","id":-1.5e3}"#).id.unwrap().json(),
            "-1.5e3"
        );
        assert_eq!(
            parse(r#"{"type":"ping","id":"\u00e9"}"#).id.unwrap().json(),
            r#""\u00e9""#
        );
        assert!(parse(r#"{"type":"ping","id":null}"#).id.is_none());
        assert!(parse(r#"{"type":"ping"}"#).id.is_none());
    }

    #[test]
    fn id_length_is_counted_in_rendered_characters() {
        let ok = format!(r#"{{"type":"ping","id":"{}"}}"#, "é".repeat(64));
        assert!(parse_client_frame(&ok).is_ok());
        let long = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(65));
        let e = err(&long);
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        assert!(e.message.contains("\"id\""), "{}", e.message);
        assert!(e.id.is_none());
        let escaped = format!(r#"{{"type":"ping","id":"{}"}}"#, "\\u0041".repeat(64));
        assert!(parse_client_frame(&escaped).is_ok());
        let num = format!(r#"{{"type":"ping","id":{}}}"#, "9".repeat(65));
        assert_eq!(err(&num).code, ErrorCode::InvalidMessage);
        for bad in [r#"[1]"#, r#"{"a":1}"#, "true"] {
            let e = err(&format!(r#"{{"type":"ping","id":{bad}}}"#));
            assert_eq!(e.code, ErrorCode::InvalidMessage);
            assert!(e.message.contains("\"id\""));
        }
    }

    #[test]
    fn parse_errors() {
        for frame in ["", "not json", "{", r#"{"type":"ping"} x"#, "[1,", "\u{0}"] {
            let e = err(frame);
            assert_eq!(e.code, ErrorCode::ParseError, "{frame:?}");
            assert!(e.message.contains("not valid JSON"));
        }
    }

    #[test]
    fn non_object_json_is_an_invalid_message() {
        for frame in ["[\"set\",\"k\",1]", "\"ping\"", "42", "null"] {
            let e = err(frame);
            assert_eq!(e.code, ErrorCode::InvalidMessage, "{frame}");
            assert!(e.message.contains("JSON object"));
        }
        let e = err(r#"{"type":"ping","type":"set"}"#);
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        assert!(e.message.contains("duplicate field"), "{}", e.message);
    }

    #[test]
    fn invalid_messages_name_the_field_and_keep_the_id() {
        let cases = [
            (r#"{"id":"m","key":"k"}"#, "\"type\""),
            (r#"{"id":"m","type":5}"#, "\"type\""),
            (r#"{"id":"m","type":"auth"}"#, "\"apiKey\""),
            (r#"{"id":"m","type":"auth","apiKey":7}"#, "\"apiKey\""),
            (r#"{"id":"m","type":"set","value":1}"#, "\"key\""),
            (r#"{"id":"m","type":"set","key":null,"value":1}"#, "\"key\""),
            (
                r#"{"id":"m","type":"set","key":["k"],"value":1}"#,
                "\"key\"",
            ),
            (r#"{"id":"m","type":"set","key":"k"}"#, "\"value\""),
            (
                r#"{"id":"m","type":"set","key":"k","value":1,"attributes":[]}"#,
                "\"attributes\"",
            ),
            (
                r#"{"id":"m","type":"set","key":"k","value":1,"attributes":{"visible":"no"}}"#,
                "attributes.visible",
            ),
            (
                r#"{"id":"m","type":"set","key":"k","value":1,"timestamp":"now"}"#,
                "\"timestamp\"",
            ),
            (r#"{"id":"m","type":"delete"}"#, "\"key\""),
            (r#"{"id":"m","type":"delete","key":1}"#, "\"key\""),
            (
                r#"{"id":"m","type":"clear","timestamp":{}}"#,
                "\"timestamp\"",
            ),
        ];
        for (frame, field) in cases {
            let e = err(frame);
            assert_eq!(e.code, ErrorCode::InvalidMessage, "{frame}");
            assert!(e.message.contains(field), "{frame}: {}", e.message);
            assert_eq!(
                e.id.as_ref().map(MessageId::json),
                Some(r#""m""#),
                "{frame}"
            );
        }
    }

    #[test]
    fn unknown_type_keeps_the_id() {
        let e = err(r#"{"type":"subscribe","id":3}"#);
        assert_eq!(e.code, ErrorCode::UnknownType);
        assert!(e.message.contains("\"subscribe\""));
        assert_eq!(e.id.unwrap().json(), "3");
        // Type names are case-sensitive.
        assert_eq!(err(r#"{"type":"PING"}"#).code, ErrorCode::UnknownType);
    }

    #[test]
    fn too_large_tags_keep_the_id() {
        let tags: Vec<String> = (0..65).map(|i| format!("\"t{i}\"")).collect();
        let frame = format!(
            r#"{{"id":"big","type":"set","key":"k","value":1,"attributes":{{"tags":[{}]}}}}"#,
            tags.join(",")
        );
        let e = err(&frame);
        assert_eq!(e.code, ErrorCode::TooLarge);
        assert_eq!(e.id.unwrap().json(), r#""big""#);
    }

    #[test]
    fn frame_size_boundary() {
        let head = r#"{"type":"set","key":"k","value":""#;
        let tail = r#""}"#;
        let fill = crate::instance::limits::MAX_FRAME_BYTES - head.len() - tail.len();
        let exact = format!("{head}{}{tail}", "x".repeat(fill));
        assert!(parse_client_frame(&exact).is_ok());
        let over = format!("{head}{}{tail}", "x".repeat(fill + 1));
        assert_eq!(err(&over).code, ErrorCode::TooLarge);
    }

    #[test]
    fn encoders_produce_the_spec_shapes() {
        assert_eq!(
            as_value(&encode_auth_success("inst", "u1", Permission::Owner)),
            json!({"type":"auth_success","instanceId":"inst","userId":"u1","permission":"admin"})
        );
        assert_eq!(
            as_value(&encode_auth_success("inst", "u1", Permission::Read)),
            json!({"type":"auth_success","instanceId":"inst","userId":"u1","permission":"read"})
        );
        assert_eq!(
            encode_auth_error(AuthErrorCode::AuthTimeout, "too slow"),
            r#"{"type":"auth_error","error":"too slow","code":"AUTH_TIMEOUT"}"#
        );
        for (c, s) in [
            (AuthErrorCode::InvalidKey, "INVALID_KEY"),
            (AuthErrorCode::Expired, "EXPIRED"),
            (AuthErrorCode::NoAccess, "NO_ACCESS"),
            (AuthErrorCode::InstanceNotFound, "INSTANCE_NOT_FOUND"),
        ] {
            assert_eq!(c.as_str(), s);
        }
        let value = RawValue::from_string("[1,{\"a\":null}]".into()).unwrap();
        assert_eq!(
            encode_key_updated("k", &value, &Attributes::default(), "u1", 5),
            r#"{"type":"key_updated","key":"k","value":[1,{"a":null}],"attributes":{"type":"text","readonly":false,"visible":true,"hardcoded":false,"template":false,"tags":[]},"updatedBy":"u1","timestamp":5}"#
        );
        assert_eq!(
            encode_key_deleted("k\"", "u1", 6),
            r#"{"type":"key_deleted","key":"k\"","deletedBy":"u1","timestamp":6}"#
        );
        assert_eq!(
            encode_cleared("system", 7),
            r#"{"type":"cleared","clearedBy":"system","timestamp":7}"#
        );
        assert_eq!(encode_pong(), r#"{"type":"pong"}"#);
        let id = parse(r#"{"type":"ping","id":"x\u0041"}"#).id.unwrap();
        assert_eq!(
            encode_ack(&id, 8),
            r#"{"type":"ack","id":"x\u0041","timestamp":8}"#
        );
        let e = ProtocolError::invalid("bad \"key\"");
        assert_eq!(
            encode_error(&e),
            r#"{"type":"error","error":"bad \"key\"","code":"INVALID_MESSAGE"}"#
        );
        assert_eq!(
            encode_error(&e.with_id(Some(id))),
            r#"{"type":"error","error":"bad \"key\"","code":"INVALID_MESSAGE","id":"x\u0041"}"#
        );
    }

    #[test]
    fn sync_and_data_shapes() {
        let entries = vec![
            Entry {
                key: "a".into(),
                value: RawValue::from_string("\"x\"".into()).unwrap(),
                attributes: Attributes::from_json(r#"{"type":"json","contentTags":["c"]}"#)
                    .unwrap(),
                updated_at: 10,
            },
            Entry {
                key: "b".into(),
                value: RawValue::from_string("null".into()).unwrap(),
                attributes: Attributes::default(),
                updated_at: 11,
            },
        ];
        let data = json!({
            "a": {"value":"x","attributes":{"type":"json","readonly":false,"visible":true,"hardcoded":false,"template":false,"tags":[],"contentTags":["c"]},"updatedAt":10},
            "b": {"value":null,"attributes":{"type":"text","readonly":false,"visible":true,"hardcoded":false,"template":false,"tags":[]},"updatedAt":11}
        });
        assert_eq!(as_value(&encode_data(&entries)), data);
        assert_eq!(
            as_value(&encode_sync("inst-1", &entries)),
            json!({"type":"sync","data":data,"instanceId":"inst-1"})
        );
        assert_eq!(
            encode_sync("i", &[]),
            r#"{"type":"sync","data":{},"instanceId":"i"}"#
        );
    }
}

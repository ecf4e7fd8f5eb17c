//! The chat tools as pure logic over the instance's keys.
//!
//! [`execute`] decides; it never writes. A write or delete comes back as an
//! intent with the result to report once the caller has performed it through
//! the instance (which validates and broadcasts like any other write). If that
//! fails, the caller reports [`tool_error`] instead.

use super::prompt::KeyEntry;
use serde_json::{json, Map, Value};

/// Chat mode: `use` protects readonly and `SystemPrompt` keys from the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    Edit,
    #[default]
    Use,
}

impl Mode {
    /// `"edit"` selects edit mode; anything else, or nothing, the safer `use`.
    pub fn from_request(mode: Option<&str>) -> Self {
        match mode {
            Some("edit") => Self::Edit,
            _ => Self::Use,
        }
    }
}

/// A key write the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteIntent {
    pub key: String,
    pub value: Value,
    /// New `type`, if it changes (always set for a new key).
    pub key_type: Option<String>,
    /// New `tags`, if they change (always set for a new key).
    pub tags: Option<Vec<String>>,
}

impl WriteIntent {
    /// The attributes to store: the existing object kept as is (unknown fields
    /// included) with only `type`/`tags` replaced, or the protocol defaults
    /// for a new key.
    pub fn attributes(&self, existing: Option<&Value>) -> Value {
        let mut attrs = match existing {
            Some(Value::Object(o)) => o.clone(),
            _ => default_attributes(),
        };
        if let Some(t) = &self.key_type {
            attrs.insert("type".into(), json!(t));
        }
        if let Some(tags) = &self.tags {
            attrs.insert("tags".into(), json!(tags));
        }
        Value::Object(attrs)
    }
}

fn default_attributes() -> Map<String, Value> {
    [
        ("type", json!("text")),
        ("readonly", json!(false)),
        ("visible", json!(true)),
        ("hardcoded", json!(false)),
        ("template", json!(false)),
        ("tags", json!([])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// What the caller has to do for one tool call.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolAction {
    /// Nothing to change: send `result` to the model.
    Reply(Value),
    /// Perform the write, then send `result`.
    Write { write: WriteIntent, result: Value },
    /// Delete the key, then send `result`.
    Delete { key: String, result: Value },
}

impl ToolAction {
    /// The result to send the model once the action has succeeded.
    pub fn result(&self) -> &Value {
        match self {
            Self::Reply(r) | Self::Write { result: r, .. } | Self::Delete { result: r, .. } => r,
        }
    }

    /// Mirrors a performed write or delete into `entries`, so that later tool
    /// calls of the same chat request see it without re-reading the instance.
    pub fn apply_to(&self, entries: &mut Vec<KeyEntry>) {
        match self {
            Self::Reply(_) => {}
            Self::Delete { key, .. } => entries.retain(|e| &e.key != key),
            Self::Write { write, .. } => {
                let pos = entries.iter().position(|e| e.key == write.key);
                let entry = match pos {
                    Some(i) => &mut entries[i],
                    None => {
                        entries.push(KeyEntry {
                            key: write.key.clone(),
                            value: Value::Null,
                            key_type: "text".into(),
                            tags: Vec::new(),
                            readonly: false,
                        });
                        let last = entries.len() - 1;
                        &mut entries[last]
                    }
                };
                entry.value = write.value.clone();
                if let Some(t) = &write.key_type {
                    entry.key_type = t.clone();
                }
                if let Some(tags) = &write.tags {
                    entry.tags = tags.clone();
                }
            }
        }
    }
}

/// A tool result the model reads as a refusal or failure.
pub fn tool_error(message: impl Into<String>) -> Value {
    json!({ "error": message.into() })
}

/// Names of the tools [`execute`] knows.
pub const TOOL_NAMES: [&str; 4] = ["read_key", "write_key", "delete_key", "list_keys"];

/// Decides what tool call `name(arguments)` does against `entries`.
pub fn execute(name: &str, arguments: &str, entries: &[KeyEntry], mode: Mode) -> ToolAction {
    let args = match parse_args(name, arguments) {
        Ok(a) => a,
        Err(e) => return ToolAction::Reply(tool_error(e)),
    };
    let outcome = match name {
        "read_key" => read_key(&args, entries),
        "write_key" => write_key(&args, entries, mode),
        "delete_key" => delete_key(&args, entries, mode),
        "list_keys" => list_keys(&args, entries),
        other => Err(format!("Unknown tool \"{other}\"")),
    };
    outcome.unwrap_or_else(|e| ToolAction::Reply(tool_error(e)))
}

fn parse_args(tool: &str, arguments: &str) -> Result<Map<String, Value>, String> {
    // Models send "" for tools without required arguments.
    if arguments.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(format!("Arguments for {tool} must be a JSON object")),
        Err(e) => Err(format!("Arguments for {tool} are not valid JSON: {e}")),
    }
}

/// An optional argument; `null` counts as absent, as models send it for
/// optional fields.
fn opt<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    args.get(name).filter(|v| !v.is_null())
}

fn opt_str<'a>(args: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match opt(args, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("Argument \"{name}\" must be a string")),
    }
}

fn key_arg(args: &Map<String, Value>) -> Result<&str, String> {
    match opt_str(args, "key")? {
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err("Missing required argument \"key\"".into()),
    }
}

fn find<'a>(entries: &'a [KeyEntry], key: &str) -> Option<&'a KeyEntry> {
    entries.iter().find(|e| e.key == key)
}

fn not_found(key: &str) -> String {
    format!("Key \"{key}\" not found")
}

/// In `use` mode the model may not touch what configures it.
fn check_protected(entry: &KeyEntry, mode: Mode, verb: &str) -> Result<(), String> {
    if mode == Mode::Edit {
        return Ok(());
    }
    if entry.readonly {
        return Err(format!(
            "Key \"{}\" is readonly and cannot be {verb} in this session",
            entry.key
        ));
    }
    if entry.is_system_prompt() {
        return Err(format!(
            "Key \"{}\" is part of the system prompt and cannot be {verb} in this session",
            entry.key
        ));
    }
    Ok(())
}

fn describe(e: &KeyEntry) -> Value {
    json!({ "key": e.key, "type": e.key_type, "tags": e.tags, "readonly": e.readonly })
}

/// The entry the `key` argument names, which must exist.
fn named<'a>(args: &Map<String, Value>, entries: &'a [KeyEntry]) -> Result<&'a KeyEntry, String> {
    let key = key_arg(args)?;
    find(entries, key).ok_or_else(|| not_found(key))
}

fn read_key(args: &Map<String, Value>, entries: &[KeyEntry]) -> Result<ToolAction, String> {
    let e = named(args, entries)?;
    let mut out = describe(e);
    out["value"] = e.value.clone();
    Ok(ToolAction::Reply(out))
}

fn write_key(
    args: &Map<String, Value>,
    entries: &[KeyEntry],
    mode: Mode,
) -> Result<ToolAction, String> {
    let key = key_arg(args)?;
    // An explicit `null` is a legitimate value here, unlike for the options.
    let value = args
        .get("value")
        .cloned()
        .ok_or("Missing required argument \"value\"")?;
    let key_type = match opt_str(args, "type")? {
        None => None,
        Some(t @ ("text" | "json")) => Some(t.to_owned()),
        Some(_) => return Err("Argument \"type\" must be \"text\" or \"json\"".into()),
    };
    let tags = match opt(args, "tags") {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|t| t.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("Argument \"tags\" must be an array of strings")?,
        ),
        Some(_) => return Err("Argument \"tags\" must be an array of strings".into()),
    };
    if mode == Mode::Use
        && tags
            .as_ref()
            .is_some_and(|t| t.iter().any(|t| t == super::prompt::SYSTEM_PROMPT_TAG))
    {
        return Err("The SystemPrompt tag cannot be set in this session".into());
    }
    let write = match find(entries, key) {
        Some(existing) => {
            check_protected(existing, mode, "changed")?;
            WriteIntent {
                key: key.to_owned(),
                value,
                key_type,
                tags,
            }
        }
        None => {
            // A new key without a type gets the one its value suggests.
            let inferred = if value.is_string() { "text" } else { "json" };
            WriteIntent {
                key: key.to_owned(),
                key_type: Some(key_type.unwrap_or_else(|| inferred.to_owned())),
                tags: Some(tags.unwrap_or_default()),
                value,
            }
        }
    };
    let result = json!({ "success": true, "key": write.key, "value": write.value });
    Ok(ToolAction::Write { write, result })
}

fn delete_key(
    args: &Map<String, Value>,
    entries: &[KeyEntry],
    mode: Mode,
) -> Result<ToolAction, String> {
    let e = named(args, entries)?;
    check_protected(e, mode, "deleted")?;
    Ok(ToolAction::Delete {
        key: e.key.clone(),
        result: json!({ "success": true, "key": e.key }),
    })
}

fn list_keys(args: &Map<String, Value>, entries: &[KeyEntry]) -> Result<ToolAction, String> {
    let tag = opt_str(args, "tag")?.filter(|t| !t.is_empty());
    let keys: Vec<Value> = entries
        .iter()
        .filter(|e| tag.is_none_or(|t| e.has_tag(t)))
        .map(describe)
        .collect();
    Ok(ToolAction::Reply(json!({ "keys": keys })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<KeyEntry> {
        let mk = |key: &str, value: Value, ty: &str, tags: &[&str], readonly| KeyEntry {
            key: key.into(),
            value,
            key_type: ty.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            readonly,
        };
        vec![
            mk("name", json!("Ada"), "text", &["profile"], false),
            mk("locked", json!("x"), "text", &[], true),
            mk(
                "persona",
                json!("Be brief"),
                "text",
                &["SystemPrompt"],
                false,
            ),
            mk("prefs", json!({"a":1}), "json", &["profile"], false),
        ]
    }

    fn reply(a: ToolAction) -> Value {
        match a {
            ToolAction::Reply(v) => v,
            other => panic!("expected reply, got {other:?}"),
        }
    }

    fn error_of(a: ToolAction) -> String {
        reply(a)["error"].as_str().expect("error").to_owned()
    }

    #[test]
    fn read() {
        let e = entries();
        assert_eq!(
            reply(execute("read_key", r#"{"key":"prefs"}"#, &e, Mode::Use)),
            json!({"key":"prefs","value":{"a":1},"type":"json","tags":["profile"],"readonly":false})
        );
        assert_eq!(
            error_of(execute("read_key", r#"{"key":"nope"}"#, &e, Mode::Use)),
            "Key \"nope\" not found"
        );
        assert_eq!(
            error_of(execute("read_key", "{}", &e, Mode::Use)),
            "Missing required argument \"key\""
        );
    }

    #[test]
    fn bad_arguments_name_the_problem() {
        let e = entries();
        let msg = error_of(execute("write_key", r#"{"key":"a","val"#, &e, Mode::Use));
        assert!(
            msg.starts_with("Arguments for write_key are not valid JSON"),
            "{msg}"
        );
        let msg = error_of(execute("read_key", "[1]", &e, Mode::Use));
        assert_eq!(msg, "Arguments for read_key must be a JSON object");
        let msg = error_of(execute("read_key", r#"{"key":5}"#, &e, Mode::Use));
        assert_eq!(msg, "Argument \"key\" must be a string");
        let msg = error_of(execute("write_key", r#"{"key":"a"}"#, &e, Mode::Use));
        assert_eq!(msg, "Missing required argument \"value\"");
        let msg = error_of(execute(
            "write_key",
            r#"{"key":"a","value":1,"type":"image"}"#,
            &e,
            Mode::Use,
        ));
        assert_eq!(msg, "Argument \"type\" must be \"text\" or \"json\"");
        let msg = error_of(execute(
            "write_key",
            r#"{"key":"a","value":1,"tags":[1]}"#,
            &e,
            Mode::Use,
        ));
        assert_eq!(msg, "Argument \"tags\" must be an array of strings");
        let msg = error_of(execute("frobnicate", "{}", &e, Mode::Use));
        assert_eq!(msg, "Unknown tool \"frobnicate\"");
    }

    #[test]
    fn write_existing_keeps_attributes() {
        let e = entries();
        let a = execute(
            "write_key",
            r#"{"key":"name","value":"Grace","type":null}"#,
            &e,
            Mode::Use,
        );
        let ToolAction::Write { write, result } = &a else {
            panic!("{a:?}")
        };
        assert_eq!(
            result,
            &json!({"success":true,"key":"name","value":"Grace"})
        );
        assert_eq!(write.key_type, None);
        assert_eq!(write.tags, None);
        let stored = json!({"type":"text","readonly":false,"visible":false,"tags":["profile"],"contentTags":["c"]});
        assert_eq!(write.attributes(Some(&stored)), stored);

        let a = execute(
            "write_key",
            r#"{"key":"name","value":{"n":1},"type":"json","tags":["t"]}"#,
            &e,
            Mode::Use,
        );
        let ToolAction::Write { write, .. } = a else {
            panic!()
        };
        assert_eq!(
            write.attributes(Some(&stored)),
            json!({"type":"json","readonly":false,"visible":false,"tags":["t"],"contentTags":["c"]})
        );
    }

    #[test]
    fn write_new_key_gets_defaults() {
        let mut e = entries();
        let a = execute(
            "write_key",
            r#"{"key":"city","value":"Paris"}"#,
            &e,
            Mode::Use,
        );
        let ToolAction::Write { write, .. } = &a else {
            panic!()
        };
        assert_eq!(
            write.attributes(None),
            json!({"type":"text","readonly":false,"visible":true,"hardcoded":false,"template":false,"tags":[]})
        );
        a.apply_to(&mut e);
        assert_eq!(
            reply(execute("read_key", r#"{"key":"city"}"#, &e, Mode::Use))["value"],
            "Paris"
        );
        let a = execute("write_key", r#"{"key":"n","value":[1]}"#, &e, Mode::Use);
        let ToolAction::Write { write, .. } = a else {
            panic!()
        };
        assert_eq!(write.key_type.as_deref(), Some("json"));
        let a = execute("write_key", r#"{"key":"z","value":null}"#, &e, Mode::Use);
        assert!(matches!(a, ToolAction::Write { .. }));
    }

    #[test]
    fn use_mode_protects_readonly_and_system_prompt() {
        let e = entries();
        for (tool, key) in [
            ("write_key", "locked"),
            ("write_key", "persona"),
            ("delete_key", "locked"),
            ("delete_key", "persona"),
        ] {
            let args = json!({"key": key, "value": "v"}).to_string();
            let msg = error_of(execute(tool, &args, &e, Mode::Use));
            assert!(msg.contains(key) && msg.contains("cannot be"), "{msg}");
            assert!(!matches!(
                execute(tool, &args, &e, Mode::Edit),
                ToolAction::Reply(_)
            ));
        }
        let msg = error_of(execute(
            "write_key",
            r#"{"key":"new","value":"v","tags":["SystemPrompt"]}"#,
            &e,
            Mode::Use,
        ));
        assert!(msg.contains("SystemPrompt"));
    }

    #[test]
    fn delete_and_list() {
        let mut e = entries();
        let a = execute("delete_key", r#"{"key":"name"}"#, &e, Mode::Use);
        assert_eq!(
            a,
            ToolAction::Delete {
                key: "name".into(),
                result: json!({"success":true,"key":"name"})
            }
        );
        assert_eq!(a.result(), &json!({"success":true,"key":"name"}));
        a.apply_to(&mut e);
        assert_eq!(
            error_of(execute("delete_key", r#"{"key":"name"}"#, &e, Mode::Use)),
            "Key \"name\" not found"
        );
        assert_eq!(
            reply(execute("list_keys", r#"{"tag":"profile"}"#, &e, Mode::Use)),
            json!({"keys":[{"key":"prefs","type":"json","tags":["profile"],"readonly":false}]})
        );
        let all = reply(execute("list_keys", "", &e, Mode::Use));
        assert_eq!(all["keys"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            reply(execute("list_keys", r#"{"tag":null}"#, &e, Mode::Use)),
            all
        );
    }

    #[test]
    fn mode_parsing() {
        assert_eq!(Mode::from_request(Some("edit")), Mode::Edit);
        assert_eq!(Mode::from_request(Some("use")), Mode::Use);
        assert_eq!(Mode::from_request(None), Mode::Use);
        assert_eq!(Mode::from_request(Some("EDIT")), Mode::Use);
    }
}

//! Chat Completions request building: the conversion of AI SDK `UIMessage`s
//! into upstream messages, the tool definitions and the request bodies.

use super::openai_stream::CompletedToolCall;
use super::prompt::value_as_text;
use serde_json::{json, Value};

/// Tool result sent for a call the client shows without a result (the stream
/// was cut, or the call awaited approval): the upstream rejects an assistant
/// `tool_calls` message whose calls are not all answered.
const NO_RESULT: &str = "No result: the tool call did not complete.";
const DENIED: &str = "The tool call was denied.";
const FAILED: &str = "The tool call failed.";

/// Converts the request's `messages` (AI SDK `UIMessage`s, kept as raw JSON so
/// one odd message cannot fail the request) into Chat Completions messages.
/// Messages with an unknown role or nothing to say are dropped.
pub fn convert_ui_messages(messages: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for m in messages {
        let parts = message_parts(m);
        match m.get("role").and_then(Value::as_str) {
            Some("user") => convert_user(&parts, &mut out),
            Some("system") => {
                let text = texts(&parts).collect::<Vec<_>>().join("\n");
                if !text.is_empty() {
                    out.push(json!({ "role": "system", "content": text }));
                }
            }
            Some("assistant") => convert_assistant(&parts, &mut out),
            _ => {}
        }
    }
    out
}

/// The system prompt followed by the converted conversation.
pub fn build_conversation(system_prompt: &str, messages: &[Value]) -> Vec<Value> {
    let mut out = vec![json!({ "role": "system", "content": system_prompt })];
    out.extend(convert_ui_messages(messages));
    out
}

/// `parts`, or a single text part made from a legacy string `content` (older
/// AI SDK clients send that instead).
fn message_parts(m: &Value) -> Vec<Value> {
    match (m.get("parts"), m.get("content")) {
        (Some(Value::Array(p)), _) => p.clone(),
        (_, Some(Value::String(s))) => vec![json!({ "type": "text", "text": s })],
        _ => Vec::new(),
    }
}

fn part_type(p: &Value) -> &str {
    p.get("type").and_then(Value::as_str).unwrap_or("")
}

fn texts(parts: &[Value]) -> impl Iterator<Item = &str> {
    parts
        .iter()
        .filter(|p| part_type(p) == "text")
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .filter(|t| !t.is_empty())
}

/// A `file` part the model can see: an image given as a data URL.
fn image_url(p: &Value) -> Option<&str> {
    if part_type(p) != "file" {
        return None;
    }
    // `mimeType` is the pre-5.0 spelling.
    let media = p
        .get("mediaType")
        .or_else(|| p.get("mimeType"))
        .and_then(Value::as_str)?;
    let url = p.get("url").and_then(Value::as_str)?;
    (media.starts_with("image/") && url.starts_with("data:")).then_some(url)
}

fn convert_user(parts: &[Value], out: &mut Vec<Value>) {
    let mut content = Vec::new();
    for p in parts {
        if part_type(p) == "text" {
            if let Some(t) = p
                .get("text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                content.push(json!({ "type": "text", "text": t }));
            }
        } else if let Some(url) = image_url(p) {
            content.push(json!({ "type": "image_url", "image_url": { "url": url } }));
        }
    }
    let content = match content.as_slice() {
        [] => return,
        // The plain string form for the common case.
        [only] if only["type"] == "text" => only["text"].clone(),
        _ => Value::Array(content),
    };
    out.push(json!({ "role": "user", "content": content }));
}

/// One model call reconstructed from an assistant message.
#[derive(Default)]
struct Turn {
    text: Vec<String>,
    calls: Vec<Value>,
    results: Vec<Value>,
}

impl Turn {
    fn flush(&mut self, out: &mut Vec<Value>) {
        let turn = std::mem::take(self);
        if turn.text.is_empty() && turn.calls.is_empty() {
            return;
        }
        let mut msg = json!({ "role": "assistant", "content": Value::Null });
        if !turn.text.is_empty() {
            msg["content"] = json!(turn.text.join("\n"));
        }
        if !turn.calls.is_empty() {
            msg["tool_calls"] = Value::Array(turn.calls);
        }
        out.push(msg);
        out.extend(turn.results);
    }
}

fn convert_assistant(parts: &[Value], out: &mut Vec<Value>) {
    let mut turn = Turn::default();
    for p in parts {
        let ty = part_type(p);
        if ty == "step-start" {
            turn.flush(out);
        } else if ty == "text" {
            let Some(t) = p
                .get("text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            else {
                continue;
            };
            // A model call emits its text before its tool calls, so text after
            // a call means a new call even when `step-start` is missing.
            if !turn.calls.is_empty() {
                turn.flush(out);
            }
            turn.text.push(t.to_owned());
        } else if let Some((call, result)) = tool_part(p) {
            turn.calls.push(call);
            turn.results.push(result);
        }
    }
    turn.flush(out);
}

/// A `tool-<name>` (or `dynamic-tool`) part as an upstream call and its result.
fn tool_part(p: &Value) -> Option<(Value, Value)> {
    let ty = part_type(p);
    let name = match ty.strip_prefix("tool-") {
        Some(n) => n,
        None if ty == "dynamic-tool" => p.get("toolName").and_then(Value::as_str)?,
        None => return None,
    };
    let id = p
        .get("toolCallId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?;
    let state = p.get("state").and_then(Value::as_str).unwrap_or("");
    let result = match state {
        // Arguments still arriving: the call never ran.
        "input-streaming" => return None,
        "output-available" => value_as_text(p.get("output").unwrap_or(&Value::Null)),
        "output-error" => p
            .get("errorText")
            .and_then(Value::as_str)
            .unwrap_or(FAILED)
            .to_owned(),
        "output-denied" => DENIED.to_owned(),
        _ => NO_RESULT.to_owned(),
    };
    let arguments = match p.get("input") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(input) => input.to_string(),
    };
    Some((
        json!({
            "id": id, "type": "function",
            "function": { "name": name, "arguments": arguments }
        }),
        json!({ "role": "tool", "tool_call_id": id, "content": result }),
    ))
}

/// The assistant message of a finished step, to send back with its results
/// in the next step.
pub fn assistant_message(text: &str, calls: &[CompletedToolCall]) -> Value {
    let mut msg = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { json!(text) },
    });
    if !calls.is_empty() {
        msg["tool_calls"] = calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id, "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments }
                })
            })
            .collect();
    }
    msg
}

/// The `role:"tool"` message answering call `call_id`.
pub fn tool_message(call_id: &str, result: &Value) -> Value {
    json!({ "role": "tool", "tool_call_id": call_id, "content": value_as_text(result) })
}

/// The four chat tools as Chat Completions function definitions.
pub fn tool_definitions() -> Value {
    let key = json!({ "type": "string", "description": "The exact key name." });
    json!([
        function(
            "read_key",
            "Read a key's value and attributes.",
            json!({ "key": key }),
            &["key"],
        ),
        function(
            "write_key",
            "Create or update a key. The key's existing type and tags are kept unless given.",
            json!({
                "key": key,
                // No `type`: a value may be any JSON (`{}` schema = anything).
                "value": { "description": "The new value: a string for text keys, any JSON value for json keys." },
                "type": { "type": "string", "enum": ["text", "json"], "description": "The key's type." },
                "tags": { "type": "array", "items": { "type": "string" }, "description": "Replaces the key's tags." },
            }),
            &["key", "value"],
        ),
        function(
            "delete_key",
            "Delete a key.",
            json!({ "key": key }),
            &["key"],
        ),
        function(
            "list_keys",
            "List the keys with their type, tags and readonly flag, optionally only those with a tag.",
            json!({ "tag": { "type": "string", "description": "Only keys with this tag." } }),
            &[],
        ),
    ])
}

fn function(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": { "type": "object", "properties": properties, "required": required },
        }
    })
}

/// Body of a streaming chat call with tools.
pub fn chat_stream_body(model: &str, messages: &[Value], tools: &Value) -> Value {
    // `include_usage`: the stream's last chunk reports the tokens used, for
    // the call's usage row (webhooks-out.md "Usage").
    json!({
        "model": model,
        "messages": messages,
        "tools": tools,
        "stream": true,
        "stream_options": {"include_usage": true},
    })
}

/// Body of a plain (non-streaming) call with one user message, for transform
/// and image analysis. `content` is a string or a list of content parts.
pub fn completion_body(model: &str, content: Value) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": content }] })
}

/// User content asking about one image (a data URL or a web URL).
pub fn vision_content(prompt: &str, image_url: &str) -> Value {
    json!([
        { "type": "text", "text": prompt },
        { "type": "image_url", "image_url": { "url": image_url } },
    ])
}

/// The answer text of a non-streaming Chat Completions response.
pub fn completion_text(response: &Value) -> Option<String> {
    let content = response.pointer("/choices/0/message/content")?;
    match content {
        Value::String(s) => Some(s.clone()),
        // Some compatible servers answer with content parts.
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_with_tool_call_round_trips() {
        let ui = json!([
            {"id":"u1","role":"user","parts":[{"type":"text","text":"My name is Ada"}]},
            {"id":"a1","role":"assistant","parts":[
                {"type":"step-start"},
                {"type":"text","text":"Saving it."},
                {"type":"tool-write_key","toolCallId":"call_1","state":"output-available",
                 "input":{"key":"name","value":"Ada"},"output":{"key":"name","success":true,"value":"Ada"}},
                {"type":"tool-read_key","toolCallId":"call_2","state":"output-error",
                 "input":{"key":"x"},"errorText":"boom"},
                {"type":"step-start"},
                {"type":"reasoning","text":"hidden"},
                {"type":"text","text":"Done."}
            ]},
            {"id":"u2","role":"user","parts":[{"type":"text","text":"Thanks"}]}
        ]);
        let out = build_conversation("SYS", ui.as_array().unwrap());
        assert_eq!(
            Value::Array(out),
            json!([
                {"role":"system","content":"SYS"},
                {"role":"user","content":"My name is Ada"},
                {"role":"assistant","content":"Saving it.","tool_calls":[
                    {"id":"call_1","type":"function","function":{"name":"write_key","arguments":"{\"key\":\"name\",\"value\":\"Ada\"}"}},
                    {"id":"call_2","type":"function","function":{"name":"read_key","arguments":"{\"key\":\"x\"}"}}
                ]},
                {"role":"tool","tool_call_id":"call_1","content":"{\"key\":\"name\",\"success\":true,\"value\":\"Ada\"}"},
                {"role":"tool","tool_call_id":"call_2","content":"boom"},
                {"role":"assistant","content":"Done."},
                {"role":"user","content":"Thanks"}
            ])
        );
    }

    #[test]
    fn streamed_step_matches_converted_history() {
        // What the server sends upstream mid-request equals what it rebuilds
        // from the client's parts in the next request.
        let calls = [CompletedToolCall {
            id: "call_1".into(),
            name: "list_keys".into(),
            arguments: "{}".into(),
        }];
        let result = json!({"keys":[]});
        let live = vec![
            assistant_message("", &calls),
            tool_message("call_1", &result),
        ];
        let ui = json!([{"role":"assistant","parts":[
            {"type":"step-start"},
            {"type":"tool-list_keys","toolCallId":"call_1","state":"output-available","input":{},"output":{"keys":[]}}
        ]}]);
        assert_eq!(convert_ui_messages(ui.as_array().unwrap()), live);
    }

    #[test]
    fn tool_states_and_missing_step_start() {
        let ui = json!([{"role":"assistant","parts":[
            {"type":"tool-read_key","toolCallId":"c0","state":"input-streaming","input":{"ke":1}},
            {"type":"tool-read_key","toolCallId":"c1","state":"input-available","input":{"key":"a"}},
            {"type":"dynamic-tool","toolName":"list_keys","toolCallId":"c2","state":"output-available","output":"plain"},
            {"type":"text","text":"After"},
            {"type":"tool-delete_key","state":"output-available"},
            {"type":"source-url","url":"x"}
        ]}]);
        assert_eq!(
            Value::Array(convert_ui_messages(ui.as_array().unwrap())),
            json!([
                {"role":"assistant","content":null,"tool_calls":[
                    {"id":"c1","type":"function","function":{"name":"read_key","arguments":"{\"key\":\"a\"}"}},
                    {"id":"c2","type":"function","function":{"name":"list_keys","arguments":"{}"}}
                ]},
                {"role":"tool","tool_call_id":"c1","content":NO_RESULT},
                {"role":"tool","tool_call_id":"c2","content":"plain"},
                {"role":"assistant","content":"After"}
            ])
        );
    }

    #[test]
    fn user_images_system_and_legacy_content() {
        let ui = json!([
            {"role":"system","parts":[{"type":"text","text":"Be nice"}]},
            {"role":"user","parts":[
                {"type":"text","text":"What is this?"},
                {"type":"file","mediaType":"image/png","url":"data:image/png;base64,AAA"},
                {"type":"file","mediaType":"application/pdf","url":"data:application/pdf;base64,BBB"},
                {"type":"file","mediaType":"image/png","url":"https://example.com/x.png"}
            ]},
            {"role":"user","content":"legacy"},
            {"role":"user","parts":[{"type":"text","text":""}]},
            {"role":"tool","parts":[{"type":"text","text":"ignored"}]},
            {"parts":[]}
        ]);
        assert_eq!(
            Value::Array(convert_ui_messages(ui.as_array().unwrap())),
            json!([
                {"role":"system","content":"Be nice"},
                {"role":"user","content":[
                    {"type":"text","text":"What is this?"},
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,AAA"}}
                ]},
                {"role":"user","content":"legacy"}
            ])
        );
    }

    #[test]
    fn bodies_and_tools() {
        let tools = tool_definitions();
        let names: Vec<_> = tools
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, super::super::tools::TOOL_NAMES);
        assert_eq!(
            tools[1]["function"]["parameters"]["required"],
            json!(["key", "value"])
        );
        assert_eq!(tools[3]["function"]["parameters"]["required"], json!([]));

        let msgs = [json!({"role":"user","content":"hi"})];
        let body = chat_stream_body("gpt-4o", &msgs, &tools);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["model"], "gpt-4o");
        assert_eq!(body["messages"], json!(msgs));
        assert_eq!(body["tools"], tools);

        let body = completion_body(
            "gpt-4o",
            vision_content("Describe", "data:image/jpeg;base64,A"),
        );
        assert_eq!(
            body,
            json!({"model":"gpt-4o","messages":[{"role":"user","content":[
                {"type":"text","text":"Describe"},
                {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,A"}}
            ]}]})
        );
        assert_eq!(
            completion_text(&json!({"choices":[{"message":{"content":"Hi"}}]})).as_deref(),
            Some("Hi")
        );
        assert_eq!(completion_text(&json!({"choices":[]})), None);
    }
}

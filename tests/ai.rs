//! The AI endpoints (ai.md) against real servers whose OpenAI and Fireworks
//! are a local fake. Tests share the servers and the fake, so every test
//! uses its own instance and a unique tag that the fake uses to pick that
//! test's scripted answers (the tag is the model name, or text inside the
//! prompt).

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use common::api::{assert_refusal, Api};
use common::fake::FakeResponse;
use common::scripted::{
    completion, delta, fake, pending, ready, script, sent, sent_requests, silent, sse, tag,
    text_step, tool_arguments, tool_call, tool_step, upstream_error, upstream_messages,
    with_upstreams, COMPLETIONS, RESULT, SUBMIT, TIMEOUT_SECS,
};
use common::server::{dev_server, shared, ServerOptions, TestServer};
use common::unique_id;
use common::world::{grant, World};
use common::ws::WsClient;
use serde_json::{json, Value};

// ---------------------------------------------------------------- servers

/// Development mode with both providers configured.
fn dev() -> &'static TestServer {
    shared(with_upstreams(ServerOptions::development()))
}

/// Production mode with both providers configured and seeded users.
fn prod() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| World::seed(shared(with_upstreams(ServerOptions::production())), "ai"))
}

// ---------------------------------------------------------------- helpers

/// Sets keys over a WebSocket as a client would.
async fn seed(
    server: &TestServer,
    instance: &str,
    key: Option<&str>,
    keys: &[(&str, Value, Value)],
) {
    let (mut c, _) = WsClient::join(server, instance, key).await;
    for (k, v, attrs) in keys {
        c.send(&json!({"type":"set","key":k,"value":v,"attributes":attrs}))
            .await;
        let m = c.recv_type("key_updated").await;
        assert_eq!(m["key"], *k);
    }
}

/// Every key of an instance (`sync.data`).
async fn stored(server: &TestServer, instance: &str, key: Option<&str>) -> Value {
    WsClient::join(server, instance, key).await.1["data"].clone()
}

fn text_attrs(tags: &[&str]) -> Value {
    json!({"type":"text","tags":tags})
}

/// Asserts that each POST answers `status` with exactly `{"error": error}`.
async fn assert_refused(api: &Api<'_>, status: u16, cases: Vec<(&str, Value, &str)>) {
    for (path, body, error) in cases {
        assert_eq!(
            api.post(path, None, body.clone()).await,
            (status, json!({ "error": error })),
            "{path} {body}"
        );
    }
}

/// The next update a watcher gets: of `key` to `value`, by dev-user.
async fn expect_update(watcher: &mut WsClient, key: &str, value: &str) -> Value {
    let update = watcher.recv_type("key_updated").await;
    assert_eq!(update["key"], key);
    assert_eq!(update["value"], value);
    assert_eq!(update["updatedBy"], "dev-user");
    update
}

fn readonly_text() -> Value {
    json!({"type":"text","readonly":true})
}

struct ChatReply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    raw: String,
    /// Every chunk before `[DONE]`.
    chunks: Vec<Value>,
    done: bool,
    /// When each chunk arrived, from the request's start.
    arrivals: Vec<Duration>,
}

impl ChatReply {
    fn types(&self) -> Vec<String> {
        self.chunks
            .iter()
            .map(|c| c["type"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.chunks.iter().filter(|c| c["type"] == ty).collect()
    }

    /// The last chunk.
    fn last(&self) -> &Value {
        self.chunks.last().unwrap()
    }

    /// The stream ended with `last`, then `[DONE]`.
    fn assert_ends_with(&self, last: Value) {
        assert_eq!(self.last(), &last);
        assert!(self.done);
    }

    fn text(&self) -> String {
        self.of_type("text-delta")
            .iter()
            .map(|c| c["delta"].as_str().unwrap_or(""))
            .collect()
    }
}

async fn post_chat(server: &TestServer, key: Option<&str>, body: &Value) -> ChatReply {
    let client = reqwest::Client::new();
    let mut req = client.post(server.local_url("/api/chat")).json(body);
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let started = Instant::now();
    let mut resp = req.send().await.expect("chat request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut raw = String::new();
    let mut chunks = Vec::new();
    let mut arrivals = Vec::new();
    let mut done = false;
    let mut pending = String::new();
    while let Some(bytes) = tokio::time::timeout(Duration::from_secs(30), resp.chunk())
        .await
        .expect("chat stream stalled")
        .expect("chat stream")
    {
        let text = String::from_utf8(bytes.to_vec()).expect("utf-8 stream");
        raw.push_str(&text);
        pending.push_str(&text);
        while let Some(end) = pending.find("\n\n") {
            let frame: String = pending.drain(..end + 2).collect();
            if status != 200 {
                continue;
            }
            let data = frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("frame without data: {frame:?}"))
                .trim_end_matches('\n');
            assert!(!done, "a frame after [DONE]: {frame:?}");
            if data == "[DONE]" {
                done = true;
            } else {
                assert!(!data.contains('\n'), "frame JSON not compact: {data}");
                chunks.push(serde_json::from_str(data).expect("chunk JSON"));
                arrivals.push(started.elapsed());
            }
        }
    }
    if status == 200 {
        assert!(pending.is_empty(), "trailing bytes: {pending:?}");
    }
    ChatReply {
        status,
        headers,
        raw,
        chunks,
        done,
        arrivals,
    }
}

fn user(text: &str) -> Value {
    json!({"id": unique_id("u"), "role": "user", "parts": [{"type":"text","text": text}]})
}

fn usage_rows(server: &TestServer, instance: &str) -> Vec<Value> {
    server.d1_rows(&format!(
        "SELECT user_id, api_key_id, endpoint, instance_id FROM usage_logs WHERE instance_id = '{instance}'"
    ))
}

/// One test's own instance on the development server with both providers
/// configured, and its own tag for the fake's scripts; requests go without
/// credentials (as dev-user).
struct Case {
    server: &'static TestServer,
    api: Api<'static>,
    /// The tag: the model name of chats, or text inside prompts.
    t: String,
    /// The instance id.
    id: String,
}

impl Case {
    fn new(instance_prefix: &str) -> Case {
        let server = dev();
        Case {
            server,
            api: Api::new(server),
            t: tag(),
            id: unique_id(instance_prefix),
        }
    }

    /// The same instance with a fresh tag.
    fn retagged(&self) -> Case {
        Case {
            server: self.server,
            api: Api::new(self.server),
            t: tag(),
            id: self.id.clone(),
        }
    }

    /// What the fake answers this case's requests, one answer a request.
    fn script(&self, answers: Vec<FakeResponse>) {
        script(&self.t, answers);
    }

    async fn seed(&self, keys: &[(&str, Value, Value)]) {
        seed(self.server, &self.id, None, keys).await;
    }

    async fn stored(&self) -> Value {
        stored(self.server, &self.id, None).await
    }

    /// A client on the instance, to watch its updates.
    async fn watch(&self) -> WsClient {
        WsClient::join(self.server, &self.id, None).await.0
    }

    /// A chat body on this instance, the tag as the model.
    fn chat_body(&self, messages: Value) -> Value {
        json!({"messages": messages, "instanceId": self.id, "model": self.t})
    }

    async fn chat(&self, body: &Value) -> ChatReply {
        post_chat(self.server, None, body).await
    }

    /// A chat of one user message.
    async fn say(&self, text: &str) -> ChatReply {
        self.chat(&self.chat_body(json!([user(text)]))).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.api.post(path, None, body).await
    }

    /// POSTs `body` to `path`, which must answer 200; the answer.
    async fn post_ok(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    }

    /// The usage rows of the instance.
    fn usage(&self) -> Vec<Value> {
        usage_rows(self.server, &self.id)
    }

    /// The case's first completion request, which must ask for `model`.
    fn first_completion(&self, model: &str) -> Value {
        let req = self.sent(COMPLETIONS).swap_remove(0);
        assert_eq!(req["model"], model, "{req}");
        req
    }

    /// The bodies of the requests to `path` that carry the tag.
    fn sent(&self, path: &str) -> Vec<Value> {
        sent(path, &self.t)
    }

    /// The system prompt of the n-th completion request.
    fn system_prompt(&self, n: usize) -> String {
        upstream_messages(&self.t, n)[0]["content"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

// ---------------------------------------------------------------- chat

#[tokio::test]
async fn chat_streams_text_as_it_arrives() {
    let case = Case::new("chat-text");
    case.script(vec![sse(
        ["Hel", "lo ", "the", "re", "!"]
            .iter()
            .map(|p| delta(json!({"content": p}), None))
            .chain([delta(json!({}), Some("stop"))])
            .collect(),
        Duration::from_millis(300),
    )]);
    let reply = case.say("Hi").await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    for (name, value) in [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("x-vercel-ai-ui-message-stream", "v1"),
        ("x-accel-buffering", "no"),
        ("access-control-allow-origin", "*"),
    ] {
        assert_eq!(reply.headers[name], value, "header {name}");
    }
    assert!(reply.done, "no [DONE]: {}", reply.raw);
    assert!(reply.raw.ends_with("data: [DONE]\n\n"));
    assert_eq!(
        reply.types(),
        [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "text-delta",
            "text-delta",
            "text-delta",
            "text-end",
            "finish-step",
            "finish"
        ]
    );
    assert_eq!(reply.text(), "Hello there!");
    assert_eq!(reply.chunks[0].as_object().unwrap().len(), 2);
    assert!(reply.chunks[0]["messageId"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(
        reply.chunks[10],
        json!({"type":"finish","finishReason":"stop"})
    );
    // Streamed, not buffered: the first delta came well before the last.
    let deltas: Vec<Duration> = reply
        .chunks
        .iter()
        .zip(&reply.arrivals)
        .filter(|(c, _)| c["type"] == "text-delta")
        .map(|(_, at)| *at)
        .collect();
    assert!(
        deltas[4] - deltas[0] >= Duration::from_millis(800),
        "deltas arrived together: {deltas:?}"
    );

    // What the upstream was asked.
    let reqs = sent_requests(COMPLETIONS, &case.t);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("authorization"), Some("Bearer test-key"));
    let body = reqs[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], case.t.as_str());
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["read_key", "write_key", "delete_key", "list_keys"]);
    assert_eq!(body["messages"][1], json!({"role":"user","content":"Hi"}));

    let rows = case.usage();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["endpoint"], "/api/chat");
    assert_eq!(rows[0]["user_id"], "dev-user");
}

#[tokio::test]
async fn chat_tool_call_writes_the_key_and_the_next_step_sees_the_result() {
    let case = Case::new("chat-tool");
    let profile = json!({"type":"text","tags":["profile"],"contentTags":["kept"]});
    case.seed(&[("name", json!(""), profile)]).await;
    let mut watcher = case.watch().await;
    let ada = json!({"key":"name","value":"Ada Lovelace"});
    case.script(vec![
        tool_step(&[("call_w1", "write_key", ada)]),
        text_step(&["Saved ", "your name."]),
    ]);
    let mut body = case.chat_body(json!([user("My name is Ada Lovelace")]));
    body["mode"] = json!("use");
    let reply = case.chat(&body).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(
        reply.types(),
        [
            "start",
            "start-step",
            "tool-input-start",
            "tool-input-delta",
            "tool-input-delta",
            "tool-input-delta",
            "tool-input-available",
            "tool-output-available",
            "finish-step",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "text-end",
            "finish-step",
            "finish"
        ]
    );
    assert_eq!(
        reply.of_type("tool-input-start")[0],
        &json!({"type":"tool-input-start","toolCallId":"call_w1","toolName":"write_key"})
    );
    let fragments: String = reply
        .of_type("tool-input-delta")
        .iter()
        .map(|c| c["inputTextDelta"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&fragments).unwrap(),
        json!({"key":"name","value":"Ada Lovelace"})
    );
    assert_eq!(
        reply.of_type("tool-input-available")[0],
        &json!({"type":"tool-input-available","toolCallId":"call_w1","toolName":"write_key","input":{"key":"name","value":"Ada Lovelace"}})
    );
    assert_eq!(
        reply.of_type("tool-output-available")[0],
        &json!({"type":"tool-output-available","toolCallId":"call_w1","output":{"success":true,"key":"name","value":"Ada Lovelace"}})
    );
    assert_eq!(reply.text(), "Saved your name.");
    assert_eq!(
        reply.last(),
        &json!({"type":"finish","finishReason":"stop"})
    );

    // The write went through the instance like any other.
    let update = expect_update(&mut watcher, "name", "Ada Lovelace").await;
    assert_eq!(update["attributes"]["tags"], json!(["profile"]));
    assert_eq!(update["attributes"]["contentTags"], json!(["kept"]));

    // The second call carried the assistant's call and the tool's result.
    let second = upstream_messages(&case.t, 1);
    let n = second.len();
    assert_eq!(second[n - 2]["role"], "assistant");
    assert_eq!(second[n - 2]["tool_calls"][0]["id"], "call_w1");
    assert_eq!(
        second[n - 2]["tool_calls"][0]["function"]["name"],
        "write_key"
    );
    assert_eq!(second[n - 1]["role"], "tool");
    assert_eq!(second[n - 1]["tool_call_id"], "call_w1");
    let result: Value = serde_json::from_str(second[n - 1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        result,
        json!({"success":true,"key":"name","value":"Ada Lovelace"})
    );
    // The first call's system prompt listed the key by its exact name.
    let system = case.system_prompt(0);
    assert!(
        system.contains("- name (type: text; tags: profile)"),
        "{system}"
    );
    assert_eq!(case.usage().len(), 1);
}

#[tokio::test]
async fn chat_use_mode_protects_readonly_and_system_prompt_keys() {
    let case = Case::new("chat-protect");
    case.seed(&[
        ("locked", json!("original"), readonly_text()),
        (
            "persona",
            json!("Always answer in French."),
            text_attrs(&["SystemPrompt"]),
        ),
        ("notes", json!("n"), text_attrs(&[])),
    ])
    .await;
    let hack = json!({"key":"locked","value":"hacked"});
    case.script(vec![
        tool_step(&[
            ("call_a", "write_key", hack),
            ("call_b", "delete_key", json!({"key":"persona"})),
            ("call_c", "read_key", json!({"key":"notes"})),
        ]),
        text_step(&["Je ne peux pas."]),
    ]);
    let reply = case.say("Change everything").await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    let outputs = reply.of_type("tool-output-available");
    assert_eq!(outputs.len(), 3, "{}", reply.raw);
    let err_a = outputs[0]["output"]["error"].as_str().unwrap();
    assert!(
        err_a.contains("locked") && err_a.contains("readonly"),
        "{err_a}"
    );
    let err_b = outputs[1]["output"]["error"].as_str().unwrap();
    assert!(
        err_b.contains("persona") && err_b.contains("system prompt"),
        "{err_b}"
    );
    assert_eq!(
        outputs[2]["output"],
        json!({"key":"notes","value":"n","type":"text","tags":[],"readonly":false})
    );

    // The model was told, and the keys did not change.
    let second = upstream_messages(&case.t, 1);
    let tool_msgs: Vec<&Value> = second.iter().filter(|m| m["role"] == "tool").collect();
    let told = |i: usize| tool_msgs[i]["content"].as_str().unwrap();
    assert_eq!(tool_msgs.len(), 3);
    assert_eq!(tool_msgs[0]["tool_call_id"], "call_a");
    assert!(told(0).contains("readonly"));
    assert_eq!(tool_msgs[1]["tool_call_id"], "call_b");
    assert!(told(1).contains("system prompt"));
    let keys = case.stored().await;
    assert_eq!(keys["locked"]["value"], "original");
    assert_eq!(keys["persona"]["value"], "Always answer in French.");

    // The SystemPrompt key's value is in the system message.
    let first = upstream_messages(&case.t, 0);
    assert_eq!(first[0]["role"], "system");
    let system = first[0]["content"].as_str().unwrap();
    assert!(
        system.contains("## persona\n\nAlways answer in French."),
        "{system}"
    );
    assert!(
        system.contains("- locked (type: text) (readonly)"),
        "{system}"
    );
}

#[tokio::test]
async fn chat_edit_mode_may_change_protected_keys() {
    let case = Case::new("chat-edit");
    case.seed(&[("locked", json!("v1"), readonly_text())]).await;
    let edit = json!({"key":"locked","value":"v2","tags":["edited"]});
    case.script(vec![
        tool_step(&[("call_e", "write_key", edit)]),
        text_step(&["Done."]),
    ]);
    let mut body = case.chat_body(json!([user("Edit it")]));
    body["mode"] = json!("edit");
    let reply = case.chat(&body).await;
    assert_eq!(
        reply.of_type("tool-output-available")[0]["output"],
        json!({"success":true,"key":"locked","value":"v2"})
    );
    let keys = case.stored().await;
    assert_eq!(keys["locked"]["value"], "v2");
    assert_eq!(keys["locked"]["attributes"]["tags"], json!(["edited"]));
    assert_eq!(keys["locked"]["attributes"]["readonly"], true);
    assert!(case.system_prompt(0).contains("editing session"));
}

#[tokio::test]
async fn chat_step_cap_is_honoured() {
    // The model never stops calling tools.
    let loop_step = tool_step(&[("call_l", "list_keys", json!({}))]);
    for (max, expected) in [(None, 8usize), (Some(json!(3)), 3), (Some(json!(99)), 20)] {
        let case = Case::new("chat-cap");
        case.script(vec![loop_step.clone()]);
        let mut body = case.chat_body(json!([user("loop")]));
        if let Some(m) = max {
            body["maxSteps"] = m;
        }
        let reply = case.chat(&body).await;
        assert_eq!(reply.status, 200);
        assert_eq!(case.sent(COMPLETIONS).len(), expected);
        assert_eq!(reply.of_type("start-step").len(), expected);
        assert_eq!(reply.of_type("finish-step").len(), expected);
        reply.assert_ends_with(json!({"type":"finish","finishReason":"tool-calls"}));
    }
}

#[tokio::test]
async fn chat_upstream_failures_end_the_stream_with_an_error() {
    // An HTTP 500 on the first call.
    let case = Case::new("chat-500");
    let message = "The server had an error while processing your request.";
    case.script(vec![upstream_error(500, message)]);
    let reply = case.say("x").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.last(), &json!({"type":"error","errorText": message}));
    assert!(reply.done && reply.raw.ends_with("data: [DONE]\n\n"));
    assert!(!reply.raw.contains("test-key"));

    // An error inside the stream, after a successful tool step.
    let case = Case::new("chat-midway");
    let kept = json!({"key":"k","value":"kept"});
    let failing = vec![
        delta(json!({"content":"Part"}), None),
        json!({"error":{"message":"Rate limit reached"}}),
    ];
    case.script(vec![
        tool_step(&[("call_1", "write_key", kept)]),
        sse(failing, Duration::ZERO),
    ]);
    let reply = case.say("x").await;
    let types = reply.types();
    assert_eq!(types.last().unwrap(), "error", "{types:?}");
    assert_eq!(reply.last()["errorText"], "Rate limit reached");
    assert!(types.contains(&"tool-output-available".to_string()));
    assert!(reply.done);
    assert_eq!(case.stored().await["k"]["value"], "kept");

    // Silence: the upstream timeout ends the stream.
    let case = Case::new("chat-silent");
    case.script(vec![silent()]);
    let started = Instant::now();
    let reply = case.say("x").await;
    assert!(started.elapsed() < Duration::from_secs(TIMEOUT_SECS + 3));
    reply.assert_ends_with(json!({"type":"error","errorText":"OpenAI request timed out"}));
}

#[tokio::test]
async fn chat_stops_when_the_client_goes_away() {
    let case = Case::new("chat-gone");
    // A slow first step that would end with a write, then a second step.
    let mut chunks: Vec<Value> = (0..16)
        .map(|i| delta(json!({"content": format!("w{i} ")}), None))
        .collect();
    let late = r#"{"key":"late","value":1}"#;
    chunks.push(tool_call(0, "call_late", "write_key", late));
    chunks.push(delta(json!({}), Some("tool_calls")));
    case.script(vec![
        sse(chunks, Duration::from_millis(250)),
        text_step(&["never"]),
    ]);

    let client = reqwest::Client::new();
    let mut resp = client
        .post(case.server.local_url("/api/chat"))
        .json(&case.chat_body(json!([user("x")])))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("text-delta") {
        let bytes = resp.chunk().await.unwrap().expect("stream ended early");
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    drop(resp);
    drop(client);
    // Longer than the upstream would have taken to finish its step.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(case.sent(COMPLETIONS).len(), 1, "a second step ran");
    assert!(
        case.stored().await.get("late").is_none(),
        "the late write happened"
    );
}

#[tokio::test]
async fn the_ai_package_reads_our_stream() {
    let case = Case::new("chat-sdk");
    case.seed(&[("city", json!("Paris"), text_attrs(&[]))])
        .await;
    let country = r#"{"key":"country","value":"France"}"#;
    let first_step = vec![
        delta(json!({"content":"Let me check."}), None),
        tool_call(0, "call_r", "read_key", r#"{"key":"#),
        tool_arguments(0, r#""city"}"#),
        tool_call(1, "call_w", "write_key", country),
        delta(json!({}), Some("tool_calls")),
    ];
    case.script(vec![
        sse(first_step, Duration::from_millis(10)),
        text_step(&["You live in ", "Paris, France."]),
    ]);
    let reply = case.say("Where do I live?").await;
    assert_eq!(reply.status, 200, "{}", reply.raw);

    let parsed = read_with_ai_package(&reply.raw);
    assert_eq!(parsed["errors"], json!([]));
    let message = &parsed["message"];
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["id"], reply.chunks[0]["messageId"]);
    let parts = message["parts"].as_array().unwrap();
    let kinds: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "step-start",
            "text",
            "tool-read_key",
            "tool-write_key",
            "step-start",
            "text"
        ]
    );
    assert_eq!(parts[1]["text"], "Let me check.");
    assert_eq!(parts[2]["toolCallId"], "call_r");
    assert_eq!(parts[2]["state"], "output-available");
    assert_eq!(parts[2]["input"], json!({"key":"city"}));
    assert_eq!(parts[2]["output"]["value"], "Paris");
    assert_eq!(parts[3]["state"], "output-available");
    assert_eq!(
        parts[3]["output"],
        json!({"success":true,"key":"country","value":"France"})
    );
    assert_eq!(parts[5]["text"], "You live in Paris, France.");

    // The message the client keeps is what it sends back next time: our
    // conversion turns it into the same upstream turns.
    let next = case.retagged();
    next.script(vec![text_step(&["ok"])]);
    let history = json!([user("Where do I live?"), message, user("Thanks")]);
    let again = next.chat(&next.chat_body(history)).await;
    assert_eq!(again.status, 200);
    let msgs = upstream_messages(&next.t, 0);
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "assistant",
            "tool",
            "tool",
            "assistant",
            "user"
        ]
    );
    assert_eq!(msgs[2]["content"], "Let me check.");
    assert_eq!(msgs[2]["tool_calls"][1]["id"], "call_w");
    assert_eq!(msgs[3]["tool_call_id"], "call_r");
    assert_eq!(msgs[5]["content"], "You live in Paris, France.");

    // An error stream is read as the client reads it: the error is reported.
    let failing = Case::new("chat-sdk-err");
    failing.script(vec![upstream_error(500, "Upstream exploded")]);
    let failed = failing.say("x").await;
    let parsed = read_with_ai_package(&failed.raw);
    assert_eq!(parsed["errors"], json!(["Upstream exploded"]));
}

/// Runs tests/ai_stream/read.mjs (the `ai` package's own reader) on a body.
fn read_with_ai_package(body: &str) -> Value {
    let refusal = format!("the ai package rejected the stream\n{body}\n");
    let out = common::node::run(&["tests/ai_stream/read.mjs"], body, &refusal);
    serde_json::from_slice(&out).expect("reader output")
}

#[tokio::test]
async fn chat_bad_requests() {
    let case = Case::new("chat-bad");
    let (id, m) = (&case.id, json!([user("x")]));
    let required = "instanceId and messages required";
    let chat = |body: Value, error| ("/api/chat", body, error);
    let cases = vec![
        chat(json!({"instanceId": id}), required),
        chat(json!({"messages": m}), required),
        chat(
            json!({"messages": "hi", "instanceId": id}),
            "messages must be an array",
        ),
        chat(
            json!({"messages": m, "instanceId": 7}),
            "instanceId must be a string",
        ),
        chat(
            json!({"messages": m, "instanceId": "a b"}),
            "instanceId is not a valid instance id",
        ),
        chat(
            json!({"messages": m, "instanceId": id, "mode": "admin"}),
            "mode must be \"edit\" or \"use\"",
        ),
        chat(
            json!({"messages": m, "instanceId": id, "model": 4}),
            "model must be a string",
        ),
        chat(
            json!({"messages": m, "instanceId": id, "maxSteps": 0}),
            "maxSteps must be an integer of at least 1",
        ),
    ];
    assert_refused(&case.api, 400, cases).await;
    let big = format!(
        "{{\"messages\":[],\"instanceId\":\"x\",\"pad\":\"{}\"}}",
        "a".repeat(8 * 1024 * 1024 + 10)
    );
    for (body, status) in [("{not json".to_string(), 400), (big, 413)] {
        let json = Some("application/json");
        let got = case.api.post_raw("/api/chat", None, json, body).await;
        assert_eq!(got, status);
    }
    // Bad requests never reach the upstream nor the usage log.
    assert!(case.usage().is_empty());
}

// ---------------------------------------------------------------- paging

/// An instance larger than one listing page (pages stop at ~1 KB on this
/// server, docs/faults.md): the admin route streams every key, transform
/// finds a template on a later page naming keys on earlier ones, and a
/// chat's system prompt lists keys from every page.
#[tokio::test]
async fn admin_and_ai_routes_read_an_instance_page_by_page() {
    const ADMIN: &str = "paging-admin-token";
    let server = shared(with_upstreams(
        ServerOptions::development()
            .var("MINDCACHE_TEST_PAGE_BUDGET_BYTES", "1000")
            .var("ADMIN_TOKEN", ADMIN),
    ));
    let case = Case {
        server,
        api: Api::new(server),
        t: tag(),
        id: unique_id("paged"),
    };
    let t = &case.t;
    let value = |i: usize| format!("{i:02}-{}", "x".repeat(200));
    let mut set = serde_json::Map::new();
    for i in 0..40 {
        set.insert(format!("k{i:02}"), json!({ "value": value(i) }));
    }
    set.insert(
        "tpl".into(),
        json!({"value": format!("{t} {{{{k00}}}} / {{{{k39}}}}")}),
    );
    let before = server.object_ids();
    let batch = format!("/api/instances/{}/batch", case.id);
    let (status, body) = case.post(&batch, json!({ "set": set })).await;
    assert_eq!(status, 200, "{body}");
    let new: Vec<String> = server.object_ids().difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "{new:?}");

    // More than one page.
    let listing = format!("/api/instances/{}/keys", case.id);
    let (status, page) = case.api.get(&listing, None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page["cursor"].is_string(), "{page}");
    assert!(page["keys"].as_object().unwrap().len() < 10, "{page}");

    // The admin document is the sync's data, in one well-formed body.
    let resp = reqwest::Client::new()
        .get(server.local_url(&format!("/admin/do/{}", new[0])))
        .header("X-Admin-Token", ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let raw = resp.text().await.unwrap();
    assert!(raw.starts_with(r#"{"keys":{"k00":{"#), "{}", &raw[..80]);
    let doc: Value = serde_json::from_str(&raw).unwrap();
    let data = case.stored().await;
    assert_eq!(data.as_object().unwrap().len(), 41);
    assert_eq!(doc, json!({ "keys": data }));

    // Transform: template on the last page, its placeholders on the first
    // and the last.
    case.script(vec![completion("paged")]);
    let body = json!({"instanceId": case.id, "templateKey": "tpl", "outputKey": "out"});
    case.post_ok("/api/transform", body).await;
    let req = case.first_completion("gpt-4o-mini");
    let expected = format!("{t} {} / {}", value(0), value(39));
    assert_eq!(req["messages"][0]["content"], expected);
    assert_eq!(case.stored().await["out"]["value"], "paged");

    // Chat: the system prompt lists keys from the first and the last page.
    let chat = case.retagged();
    chat.script(vec![text_step(&["ok"])]);
    let reply = chat.say("Hi").await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    let system = upstream_messages(&chat.t, 0)[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    for key in ["k00", "k39", "out", "tpl"] {
        assert!(system.contains(key), "{key} missing from the prompt");
    }
}

// ---------------------------------------------------------------- transform

#[tokio::test]
async fn transform_resolves_placeholders_and_stores_the_answer() {
    let case = Case::new("transform");
    let t = &case.t;
    case.seed(&[
        ("name", json!("Ada"), text_attrs(&[])),
        ("facts", json!({"born": 1815}), json!({"type":"json"})),
    ])
    .await;
    let mut watcher = case.watch().await;
    case.script(vec![completion("Ada was born in 1815.")]);
    let body = case
        .post_ok(
            "/api/transform",
            json!({
                "instanceId": case.id,
                "template": format!("{t} Name: {{{{ name }}}}; facts: {{{{facts}}}}; {{{{unknown}}}}"),
                "prompt": "Summarise",
                "outputKey": "summary",
            }),
        )
        .await;
    assert_eq!(
        body,
        json!({"success":true,"outputKey":"summary","result":"Ada was born in 1815."})
    );
    let req = case.first_completion("gpt-4o-mini");
    assert!(req.get("stream").is_none_or(|s| s == false));
    assert_eq!(
        req["messages"],
        json!([{"role":"user","content": format!("Summarise\n\nInput:\n{t} Name: Ada; facts: {{\"born\":1815}}; {{{{unknown}}}}")}])
    );
    let update = expect_update(&mut watcher, "summary", "Ada was born in 1815.").await;
    assert_eq!(update["attributes"]["type"], "text");
    assert_eq!(update["attributes"]["tags"], json!(["generated"]));
    let rows = case.usage();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["endpoint"], "/api/transform");
}

#[tokio::test]
async fn transform_reads_template_and_prompt_from_keys() {
    let case = Case::new("transform-keys");
    let (t, id) = (&case.t, &case.id);
    case.seed(&[
        (
            "tpl",
            json!(format!("{t} Dear {{{{who}}}}")),
            text_attrs(&[]),
        ),
        ("who", json!("Grace"), text_attrs(&[])),
        ("instructions", json!("Make it formal"), text_attrs(&[])),
    ])
    .await;
    case.script(vec![completion("Dear Ms Grace,")]);
    case
        .post_ok(
            "/api/transform",
            json!({"instanceId": id, "templateKey": "tpl", "promptKey": "instructions", "outputKey": "letter", "model": "gpt-4.1"}),
        )
        .await;
    let req = case.first_completion("gpt-4.1");
    assert_eq!(
        req["messages"][0]["content"],
        format!("Make it formal\n\nInput:\n{t} Dear Grace")
    );
    assert_eq!(case.stored().await["letter"]["value"], "Dear Ms Grace,");

    // A missing input key: 404, no upstream call, nothing written.
    for (field, key) in [("templateKey", "nope"), ("promptKey", "absent")] {
        let mut b = json!({"instanceId": id, "templateKey": "tpl", "outputKey": "other"});
        b[field] = json!(key);
        let answer = case.post("/api/transform", b).await;
        assert_refusal(answer, 404, &format!("Key \"{key}\" not found"));
    }
    assert_eq!(case.sent(COMPLETIONS).len(), 1);
    assert!(case.stored().await.get("other").is_none());
    assert_eq!(case.usage().len(), 1);
}

#[tokio::test]
async fn transform_upstream_failures() {
    let case = Case::new("transform-fail");
    let wrong_key = "Incorrect API key provided: sk-***";
    for (answer, status, error) in [
        (upstream_error(401, wrong_key), 502, wrong_key),
        (silent(), 504, "OpenAI request timed out"),
    ] {
        let t = tag();
        script(&t, vec![answer]);
        let started = Instant::now();
        let body = json!({"instanceId": case.id, "template": t, "outputKey": "out"});
        let answer = case.post("/api/transform", body).await;
        assert_eq!(answer, (status, json!({ "error": error })));
        assert!(started.elapsed() < Duration::from_secs(TIMEOUT_SECS + 3));
    }
    assert!(case.stored().await.get("out").is_none());
}

// ---------------------------------------------------------------- images

/// Minimal JPEG-looking bytes and their base64.
fn image_bytes(seed: u8) -> (Vec<u8>, String) {
    let bytes: Vec<u8> = [0xFF, 0xD8, 0xFF, 0xE0, seed, 1, 2, 3].to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    (bytes, b64)
}

#[tokio::test]
async fn generate_image_from_a_prompt_key() {
    let case = Case::new("gen");
    let prompt = format!("a red fox {}", case.t);
    case.seed(&[("idea", json!(prompt), text_attrs(&[]))]).await;
    let (bytes, b64) = image_bytes(7);
    let file = format!("/files/{}.jpg", unique_id("img"));
    fake().on("GET", &file, move |_| {
        FakeResponse::stream("image/jpeg", vec![bytes.clone()], Duration::ZERO)
    });
    case.script(vec![pending(), ready(&fake().url(&file))]);
    let mut watcher = case.watch().await;
    let body = case
        .post_ok(
            "/api/generate-image",
            json!({"instanceId": case.id, "promptKey": "idea", "outputKey": "picture", "seed": 7, "aspectRatio": "16:9"}),
        )
        .await;
    assert_eq!(
        body,
        json!({"success":true,"outputKey":"picture","message":"Image generated and saved to MindCache"})
    );
    let submits = case.sent(SUBMIT);
    assert_eq!(
        submits,
        vec![json!({"prompt": prompt, "seed": 7, "aspect_ratio": "16:9"})]
    );
    let submit = &sent_requests(SUBMIT, &case.t)[0];
    assert_eq!(submit.header("authorization"), Some("Bearer fw-test-key"));
    let polls = case.sent(RESULT);
    assert_eq!(polls.len(), 2);
    assert_eq!(polls[0], json!({"id": format!("req:{prompt}")}));
    // The image went into the key, not into the response.
    let image = format!("data:image/jpeg;base64,{b64}");
    let update = expect_update(&mut watcher, "picture", &image).await;
    assert_eq!(update["attributes"]["type"], "image");
    assert_eq!(update["attributes"]["contentType"], "image/jpeg");
    assert_eq!(
        update["attributes"]["tags"],
        json!(["generated", "fireworks"])
    );
    assert_eq!(case.usage()[0]["endpoint"], "/api/generate-image");
}

#[tokio::test]
async fn generate_image_edits_source_images_from_keys() {
    let case = Case::new("gen-edit");
    let (_, photo) = image_bytes(1);
    let (_, other) = image_bytes(2);
    let (_, result) = image_bytes(3);
    let (photo_url, other_url, result_url) = (
        format!("data:image/jpeg;base64,{photo}"),
        format!("data:image/png;base64,{other}"),
        format!("data:image/jpeg;base64,{result}"),
    );
    let image = json!({"type":"image"});
    case.seed(&[
        ("photo", json!(photo), image.clone()),
        ("other", json!(other_url), image),
    ])
    .await;
    case.script(vec![ready(&result)]);
    let prompt = format!("make it blue {}", case.t);
    case
        .post_ok(
            "/api/generate-image",
            json!({"instanceId": case.id, "prompt": prompt, "imageKey": "photo", "outputKey": "edited"}),
        )
        .await;
    assert_eq!(
        case.sent(SUBMIT),
        vec![
            json!({"prompt": prompt, "seed": -1, "input_image": photo_url, "prompt_upsampling": false, "safety_tolerance": 2})
        ]
    );
    assert_eq!(case.stored().await["edited"]["value"], result_url);

    // Several sources go as an array, in order.
    let merge = case.retagged();
    merge.script(vec![ready(&result_url)]);
    let prompt2 = format!("merge {}", merge.t);
    case
        .post_ok(
            "/api/generate-image",
            json!({"instanceId": case.id, "prompt": prompt2, "imageKey": "photo", "imageKeys": ["other"], "safetyTolerance": 5, "outputKey": "merged"}),
        )
        .await;
    let submit = &merge.sent(SUBMIT)[0];
    assert_eq!(submit["input_image"], json!([photo_url, other_url]));
    assert_eq!(submit["safety_tolerance"], 5);
    assert!(submit.get("aspect_ratio").is_none());

    // A missing source key: 404 before anything is submitted.
    let (s, body) = case
        .post(
            "/api/generate-image",
            json!({"instanceId": case.id, "prompt": "x", "imageKeys": ["ghost"], "outputKey": "o"}),
        )
        .await;
    assert_eq!((s, body), (404, json!({"error":"Key \"ghost\" not found"})));
}

#[tokio::test]
async fn generate_image_failures() {
    let case = Case::new("gen-fail");
    let post = |prompt: String| {
        let body = json!({"instanceId": case.id, "prompt": prompt, "outputKey": "img"});
        case.post("/api/generate-image", body)
    };
    let moderated = FakeResponse::json(200, &json!({"status":"Request Moderated"}));
    let failed = FakeResponse::json(200, &json!({"status":"Error","details":"GPU on fire"}));
    for (answers, status, error) in [
        (
            vec![pending(), moderated],
            400,
            "Request blocked by content moderation",
        ),
        (vec![failed], 502, "Image generation failed: GPU on fire"),
    ] {
        let t = tag();
        script(&t, answers);
        let answer = post(format!("p {t}")).await;
        assert_eq!(answer, (status, json!({ "error": error })));
    }
    assert_eq!(
        post(format!("refuse-submit {}", tag())).await,
        (502, json!({"error":"Prompt refused by the service"}))
    );
    let t = tag();
    script(&t, vec![pending()]);
    let started = Instant::now();
    assert_eq!(
        post(format!("p {t}")).await,
        (504, json!({"error":"Image generation timed out"}))
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(TIMEOUT_SECS) - Duration::from_millis(200),
        "{took:?}"
    );
    assert!(took < Duration::from_secs(TIMEOUT_SECS + 3), "{took:?}");
    // About one poll a second.
    let polls = sent(RESULT, &t).len();
    assert!((2..=4).contains(&polls), "{polls} polls");
    assert!(case.stored().await.get("img").is_none());
}

// ---------------------------------------------------------------- analysis

#[tokio::test]
async fn analyze_image_from_a_key_holding_bare_base64() {
    let case = Case::new("analyze");
    let (t, id) = (&case.t, &case.id);
    let (_, b64) = image_bytes(9);
    let jpeg = format!("data:image/jpeg;base64,{b64}");
    let question = format!("What is in it? {t}");
    case.seed(&[
        ("photo", json!(b64), json!({"type":"image"})),
        ("question", json!(question), text_attrs(&[])),
    ])
    .await;
    case.script(vec![completion("A tiny JPEG.")]);
    let body = case
        .post_ok(
            "/api/analyze-image",
            json!({"instanceId": id, "imageKey": "photo", "promptKey": "question", "outputKey": "analysis"}),
        )
        .await;
    assert_eq!(
        body,
        json!({"success":true,"outputKey":"analysis","analysis":"A tiny JPEG."})
    );
    let req = case.first_completion("gpt-4o");
    assert_eq!(
        req["messages"],
        json!([{"role":"user","content":[
            {"type":"text","text": question},
            {"type":"image_url","image_url":{"url": jpeg}}
        ]}])
    );
    let keys = case.stored().await;
    assert_eq!(keys["analysis"]["value"], "A tiny JPEG.");
    assert_eq!(
        keys["analysis"]["attributes"]["tags"],
        json!(["generated", "vision-analysis"])
    );

    // Inline sources: a URL as is, base64 with the JPEG prefix.
    let cat = "https://example.com/cat.png";
    for (field, value, url) in [("imageUrl", cat, cat), ("imageBase64", &b64, &jpeg)] {
        let t = tag();
        script(&t, vec![completion("ok")]);
        let mut b =
            json!({"instanceId": id, "prompt": t, "outputKey": "a2", "model": "gpt-4o-mini"});
        b[field] = json!(value);
        case.post_ok("/api/analyze-image", b).await;
        let req = &sent(COMPLETIONS, &t)[0];
        assert_eq!(req["model"], "gpt-4o-mini");
        assert_eq!(req["messages"][0]["content"][1]["image_url"]["url"], url);
    }
    let missing = json!({"instanceId": id, "imageKey": "missing", "prompt": "x", "outputKey": "o"});
    let answer = case.post("/api/analyze-image", missing).await;
    assert_refusal(answer, 404, "Key \"missing\" not found");
}

// ---------------------------------------------------------------- validation

#[tokio::test]
async fn bad_bodies_name_the_field() {
    let case = Case::new("bad");
    let id = &case.id;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/api/transform", json!({"template": "x", "outputKey": "o"}), "instanceId and outputKey required"),
        ("/api/transform", json!({"instanceId": id, "template": "x"}), "instanceId and outputKey required"),
        ("/api/transform", json!({"instanceId": id, "outputKey": "o"}), "template or templateKey required"),
        ("/api/transform", json!({"instanceId": id, "outputKey": "o", "template": 5}), "template must be a string"),
        ("/api/transform", json!({"instanceId": id, "outputKey": "o", "template": "x", "prompt": []}), "prompt must be a string"),
        ("/api/transform", json!({"instanceId": id, "outputKey": "o", "templateKey": ""}), "templateKey must not be empty"),
        ("/api/transform", json!({"instanceId": id, "outputKey": "$date", "template": "x"}), "outputKey is not a valid key: \"key\" \"$date\" is reserved by clients and cannot be stored"),
        ("/api/transform", json!({"instanceId": "../x", "outputKey": "o", "template": "x"}), "instanceId is not a valid instance id"),
        ("/api/generate-image", json!({"instanceId": id, "prompt": "p"}), "instanceId and outputKey required"),
        ("/api/generate-image", json!({"instanceId": id, "outputKey": "o"}), "prompt or promptKey required"),
        ("/api/generate-image", json!({"instanceId": id, "outputKey": "o", "prompt": "p", "seed": "1"}), "seed must be an integer"),
        ("/api/generate-image", json!({"instanceId": id, "outputKey": "o", "prompt": "p", "safetyTolerance": 1.5}), "safetyTolerance must be an integer"),
        ("/api/generate-image", json!({"instanceId": id, "outputKey": "o", "prompt": "p", "aspectRatio": 1}), "aspectRatio must be a string"),
        ("/api/generate-image", json!({"instanceId": id, "outputKey": "o", "prompt": "p", "imageKeys": "a"}), "imageKeys must be an array of strings"),
        ("/api/generate-image", json!({"instanceId": id, "outputKey": "o", "prompt": "  "}), "prompt must not be empty"),
        ("/api/analyze-image", json!({"instanceId": id, "prompt": "p", "imageUrl": "https://x"}), "instanceId and outputKey required"),
        ("/api/analyze-image", json!({"instanceId": id, "outputKey": "o", "prompt": "p"}), "imageKey, imageUrl or imageBase64 required"),
        ("/api/analyze-image", json!({"instanceId": id, "outputKey": "o", "imageUrl": "https://x"}), "prompt or promptKey required"),
        ("/api/analyze-image", json!({"instanceId": id, "outputKey": "o", "prompt": "p", "imageUrl": "ftp://x"}), "imageUrl must be an http(s) or data: URL"),
        ("/api/analyze-image", json!({"instanceId": id, "outputKey": "o", "prompt": "p", "imageBase64": 12}), "imageBase64 must be a string"),
    ];
    assert_refused(&case.api, 400, cases).await;
    case.seed(&[("n", json!(3), json!({"type":"json"}))]).await;
    let not_an_image = json!({"instanceId": id, "outputKey": "o", "prompt": "p", "imageKey": "n"});
    let answer = case.post("/api/analyze-image", not_an_image).await;
    assert_refusal(answer, 400, "Key \"n\" does not hold an image");
    assert!(case.usage().is_empty());
}

#[tokio::test]
async fn missing_provider_keys_are_reported_after_body_checks() {
    let api = Api::new(dev_server());
    let id = unique_id("nokey");
    let openai = "OpenAI API key not configured";
    let fireworks = "Fireworks API key not configured";
    let cases = vec![
        (
            "/api/chat",
            json!({"messages":[], "instanceId": id}),
            openai,
        ),
        (
            "/api/transform",
            json!({"instanceId": id, "template": "x", "outputKey": "o"}),
            openai,
        ),
        (
            "/api/analyze-image",
            json!({"instanceId": id, "imageUrl": "https://x/y.png", "prompt": "p", "outputKey": "o"}),
            openai,
        ),
        (
            "/api/generate-image",
            json!({"instanceId": id, "prompt": "p", "outputKey": "o"}),
            fireworks,
        ),
        // Even input keys that do not exist: the provider key comes first.
        (
            "/api/transform",
            json!({"instanceId": id, "templateKey": "ghost", "outputKey": "o"}),
            openai,
        ),
        // AI bodies may exceed the 1 MiB of the other routes (images inline).
        (
            "/api/analyze-image",
            json!({"instanceId": id, "imageBase64": "A".repeat(2 * 1024 * 1024), "prompt": "p", "outputKey": "o"}),
            openai,
        ),
    ];
    assert_refused(&api, 500, cases).await;
    // A bad body is still a 400 first.
    for (path, body) in [
        ("/api/transform", json!({"instanceId": id})),
        ("/api/generate-image", json!({"outputKey": "o"})),
    ] {
        assert_eq!(api.post(path, None, body).await.0, 400);
    }
}

// ---------------------------------------------------------------- access

#[tokio::test]
async fn production_authorization() {
    let w = prod();
    let api = w.api();
    let project = w.project(&w.alice, "AI").await;
    let instance = project.main;
    let shares = format!("/api/projects/{}/shares", project.id);
    w.share(&w.alice, &shares, grant("user", &w.bob.id, "read"))
        .await;
    let owls = [("topic", json!("owls"), text_attrs(&[]))];
    seed(w.server, &instance, w.alice.auth(), &owls).await;

    // No credentials at all.
    let untouched = json!({"instanceId": instance, "template": "x", "outputKey": "o"});
    let (s, _) = api.post("/api/transform", None, untouched.clone()).await;
    assert_eq!(s, 401);

    // Bob can read but not write; Eve cannot see the instance.
    let writes = |t: &str| {
        vec![
            (
                "/api/transform",
                json!({"instanceId": instance, "template": t, "outputKey": "o"}),
            ),
            (
                "/api/analyze-image",
                json!({"instanceId": instance, "imageUrl": "https://x/y.png", "prompt": t, "outputKey": "o"}),
            ),
            (
                "/api/generate-image",
                json!({"instanceId": instance, "prompt": t, "outputKey": "o"}),
            ),
            (
                "/api/chat",
                json!({"instanceId": instance, "messages": [user("x")], "mode": "edit", "model": t}),
            ),
        ]
    };
    let t = tag();
    script(&t, vec![completion("should not be asked")]);
    for (path, body) in writes(&t) {
        let (s, b) = api.post(path, w.bob.auth(), body.clone()).await;
        assert_eq!(s, 403, "{path}: {b}");
        let (s, b) = api.post(path, w.eve.auth(), body).await;
        assert_eq!(s, 404, "{path}: {b}");
    }
    assert!(sent(COMPLETIONS, &t).is_empty());
    assert!(sent(SUBMIT, &t).is_empty());

    // Bob may chat in use mode (reading), but the write tool is refused.
    let t = tag();
    let cats = json!({"key":"topic","value":"cats"});
    script(
        &t,
        vec![
            tool_step(&[
                ("call_r", "read_key", json!({"key":"topic"})),
                ("call_w", "write_key", cats),
            ]),
            text_step(&["I can only read."]),
        ],
    );
    let body = json!({"instanceId": instance, "messages": [user("Change the topic")], "model": t});
    let reply = post_chat(w.server, w.bob.auth(), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    let outputs = reply.of_type("tool-output-available");
    assert_eq!(outputs[0]["output"]["value"], "owls");
    let refusal = outputs[1]["output"]["error"].as_str().unwrap();
    assert!(refusal.contains("read access"));
    let keys = stored(w.server, &instance, w.alice.auth()).await;
    assert_eq!(keys["topic"]["value"], "owls");

    // Alice writes, as herself; the usage row names her key.
    let t = tag();
    script(&t, vec![completion("Owls are birds.")]);
    let (s, b) = api
        .post("/api/transform", w.alice.auth(), json!({"instanceId": instance, "template": format!("{t} {{{{topic}}}}"), "outputKey": "fact"}))
        .await;
    assert_eq!(s, 200, "{b}");
    let keys = stored(w.server, &instance, w.alice.auth()).await;
    assert_eq!(keys["fact"]["value"], "Owls are birds.");
    let rows = usage_rows(w.server, &instance);
    let endpoints: Vec<&str> = rows
        .iter()
        .map(|r| r["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(endpoints, ["/api/chat", "/api/transform"], "{rows:?}");
    assert_eq!(rows[0]["user_id"], w.bob.id.as_str());
    assert_eq!(rows[1]["user_id"], w.alice.id.as_str());
    assert_eq!(rows[1]["api_key_id"], format!("key-{}", w.alice.id));

    // A read-only instance refuses AI writes up front, even to its owner.
    // (A fresh client: the pooled connection may have idled out during the
    // D1 query above, and reusing it races the server closing it.)
    let api = w.api();
    let readonly = json!({"is_readonly": true});
    let path = format!("/api/instances/{instance}");
    assert_eq!(api.patch(&path, w.alice.auth(), readonly).await.0, 200);
    let answer = api.post("/api/transform", w.alice.auth(), untouched).await;
    assert_eq!(answer, (403, json!({"error":"Instance is read-only"})));
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn expansions_over_the_caps_are_refused_before_any_upstream_call() {
    let case = Case::new("caps");
    let (t, id) = (&case.t, &case.id);
    let (_, photo) = image_bytes(4);
    // 64 KiB, named 100,000 times: 6.5 GB if it were expanded.
    case.seed(&[
        ("big", json!("b".repeat(64 * 1024)), text_attrs(&[])),
        ("photo", json!(photo), json!({"type":"image"})),
    ])
    .await;
    case.script(vec![completion("short")]);
    let bomb = format!("{t} {}", "{{big}}".repeat(100_000));
    let too_large =
        json!({"error": "Template too large: with its placeholders filled in it exceeds 1 MiB"});
    let answer = case
        .post(
            "/api/transform",
            json!({"instanceId": id, "template": bomb, "outputKey": "out"}),
        )
        .await;
    assert_eq!(answer, (413, too_large.clone()));
    // The same by key: the template stored in the instance.
    let small_bomb = format!("{t} {}", "{{big}}".repeat(17));
    case.seed(&[("tpl", json!(small_bomb), text_attrs(&[]))])
        .await;
    let answer = case
        .post(
            "/api/transform",
            json!({"instanceId": id, "templateKey": "tpl", "outputKey": "out"}),
        )
        .await;
    assert_eq!(answer, (413, too_large));

    // The same image key 100,000 times, or five images in all.
    let many = vec!["photo"; 100_000];
    let refusal = json!({"error": "imageKeys must name at most 4 images (imageKey included)"});
    for body in [
        json!({"instanceId": id, "prompt": format!("p {t}"), "imageKeys": many, "outputKey": "img"}),
        json!({"instanceId": id, "prompt": format!("p {t}"), "imageKey": "photo", "imageKeys": vec!["photo"; 4], "outputKey": "img"}),
    ] {
        let answer = case.post("/api/generate-image", body).await;
        assert_eq!(answer, (400, refusal.clone()));
    }

    // Nothing reached an upstream, nothing was counted or written.
    assert!(case.sent(COMPLETIONS).is_empty());
    assert!(case.sent(SUBMIT).is_empty());
    assert!(case.usage().is_empty());
    let keys = case.stored().await;
    assert!(keys.get("out").is_none() && keys.get("img").is_none());

    // The server keeps serving: fifteen copies (960 KiB) fit the cap, and
    // four input images are accepted.
    let fits = format!("{t} {}", "{{big}}".repeat(15));
    let answer = case
        .post(
            "/api/transform",
            json!({"instanceId": id, "template": fits, "outputKey": "out"}),
        )
        .await;
    assert_eq!(
        answer,
        (
            200,
            json!({"success": true, "outputKey": "out", "result": "short"})
        )
    );
    let sent = case.sent(COMPLETIONS);
    assert_eq!(sent.len(), 1);
    let question = sent[0]["messages"][0]["content"].as_str().unwrap();
    assert_eq!(question.len(), t.len() + 1 + 15 * 64 * 1024);
    let images = case.retagged();
    let (_, result) = image_bytes(5);
    images.script(vec![ready(&result)]);
    case
        .post_ok(
            "/api/generate-image",
            json!({"instanceId": id, "prompt": format!("p {}", images.t), "imageKey": "photo", "imageKeys": vec!["photo"; 3], "outputKey": "img"}),
        )
        .await;
    let submit = &images.sent(SUBMIT)[0];
    assert_eq!(submit["input_image"].as_array().map(Vec::len), Some(4));
    assert_eq!(case.usage().len(), 2);
}

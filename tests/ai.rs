//! The AI endpoints (ai.md) against real servers whose OpenAI and Fireworks
//! are a local fake. Tests share the servers and the fake, so every test
//! uses its own instance and a unique tag that the fake uses to pick that
//! test's scripted answers (the tag is the model name, or text inside the
//! prompt).

mod common;

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use common::api::Api;
use common::fake::FakeResponse;
use common::scripted::{
    completion, delta, fake, pending, ready, script, sent, sent_requests, silent, sse, tag,
    text_step, tool_step, upstream_error, upstream_messages, with_upstreams, COMPLETIONS, RESULT,
    SUBMIT, TIMEOUT_SECS,
};
use common::server::{dev_server, repo_root, shared, ServerOptions, TestServer};
use common::unique_id;
use common::world::World;
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

// ---------------------------------------------------------------- chat

#[tokio::test]
async fn chat_streams_text_as_it_arrives() {
    let server = dev();
    let (t, id) = (tag(), unique_id("chat-text"));
    script(
        &t,
        vec![sse(
            ["Hel", "lo ", "the", "re", "!"]
                .iter()
                .map(|p| delta(json!({"content": p}), None))
                .chain([delta(json!({}), Some("stop"))])
                .collect(),
            Duration::from_millis(300),
        )],
    );
    let reply = post_chat(
        server,
        None,
        &json!({"messages":[user("Hi")],"instanceId":id,"model":t}),
    )
    .await;
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
    let reqs = sent_requests(COMPLETIONS, &t);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("authorization"), Some("Bearer test-key"));
    let body = reqs[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], t.as_str());
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["read_key", "write_key", "delete_key", "list_keys"]);
    assert_eq!(body["messages"][1], json!({"role":"user","content":"Hi"}));

    let rows = usage_rows(server, &id);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["endpoint"], "/api/chat");
    assert_eq!(rows[0]["user_id"], "dev-user");
}

#[tokio::test]
async fn chat_tool_call_writes_the_key_and_the_next_step_sees_the_result() {
    let server = dev();
    let (t, id) = (tag(), unique_id("chat-tool"));
    seed(
        server,
        &id,
        None,
        &[(
            "name",
            json!(""),
            json!({"type":"text","tags":["profile"],"contentTags":["kept"]}),
        )],
    )
    .await;
    let (mut watcher, _) = WsClient::join(server, &id, None).await;
    script(
        &t,
        vec![
            tool_step(&[(
                "call_w1",
                "write_key",
                json!({"key":"name","value":"Ada Lovelace"}),
            )]),
            text_step(&["Saved ", "your name."]),
        ],
    );
    let reply = post_chat(
        server,
        None,
        &json!({"messages":[user("My name is Ada Lovelace")],"instanceId":id,"mode":"use","model":t}),
    )
    .await;
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
        reply.chunks.last().unwrap(),
        &json!({"type":"finish","finishReason":"stop"})
    );

    // The write went through the instance like any other.
    let update = watcher.recv_type("key_updated").await;
    assert_eq!(update["key"], "name");
    assert_eq!(update["value"], "Ada Lovelace");
    assert_eq!(update["updatedBy"], "dev-user");
    assert_eq!(update["attributes"]["tags"], json!(["profile"]));
    assert_eq!(update["attributes"]["contentTags"], json!(["kept"]));

    // The second call carried the assistant's call and the tool's result.
    let second = upstream_messages(&t, 1);
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
    let system = upstream_messages(&t, 0)[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.contains("- name (type: text; tags: profile)"),
        "{system}"
    );
    assert_eq!(usage_rows(server, &id).len(), 1);
}

#[tokio::test]
async fn chat_use_mode_protects_readonly_and_system_prompt_keys() {
    let server = dev();
    let (t, id) = (tag(), unique_id("chat-protect"));
    seed(
        server,
        &id,
        None,
        &[
            (
                "locked",
                json!("original"),
                json!({"type":"text","readonly":true}),
            ),
            (
                "persona",
                json!("Always answer in French."),
                text_attrs(&["SystemPrompt"]),
            ),
            ("notes", json!("n"), text_attrs(&[])),
        ],
    )
    .await;
    script(
        &t,
        vec![
            tool_step(&[
                (
                    "call_a",
                    "write_key",
                    json!({"key":"locked","value":"hacked"}),
                ),
                ("call_b", "delete_key", json!({"key":"persona"})),
                ("call_c", "read_key", json!({"key":"notes"})),
            ]),
            text_step(&["Je ne peux pas."]),
        ],
    );
    let reply = post_chat(
        server,
        None,
        &json!({"messages":[user("Change everything")],"instanceId":id,"model":t}),
    )
    .await;
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
    let second = upstream_messages(&t, 1);
    let tool_msgs: Vec<&Value> = second.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_msgs.len(), 3);
    assert_eq!(tool_msgs[0]["tool_call_id"], "call_a");
    assert!(tool_msgs[0]["content"]
        .as_str()
        .unwrap()
        .contains("readonly"));
    assert_eq!(tool_msgs[1]["tool_call_id"], "call_b");
    assert!(tool_msgs[1]["content"]
        .as_str()
        .unwrap()
        .contains("system prompt"));
    let keys = stored(server, &id, None).await;
    assert_eq!(keys["locked"]["value"], "original");
    assert_eq!(keys["persona"]["value"], "Always answer in French.");

    // The SystemPrompt key's value is in the system message.
    let first = upstream_messages(&t, 0);
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
    let server = dev();
    let (t, id) = (tag(), unique_id("chat-edit"));
    seed(
        server,
        &id,
        None,
        &[(
            "locked",
            json!("v1"),
            json!({"type":"text","readonly":true}),
        )],
    )
    .await;
    script(
        &t,
        vec![
            tool_step(&[(
                "call_e",
                "write_key",
                json!({"key":"locked","value":"v2","tags":["edited"]}),
            )]),
            text_step(&["Done."]),
        ],
    );
    let reply = post_chat(
        server,
        None,
        &json!({"messages":[user("Edit it")],"instanceId":id,"mode":"edit","model":t}),
    )
    .await;
    assert_eq!(
        reply.of_type("tool-output-available")[0]["output"],
        json!({"success":true,"key":"locked","value":"v2"})
    );
    let keys = stored(server, &id, None).await;
    assert_eq!(keys["locked"]["value"], "v2");
    assert_eq!(keys["locked"]["attributes"]["tags"], json!(["edited"]));
    assert_eq!(keys["locked"]["attributes"]["readonly"], true);
    let system = upstream_messages(&t, 0)[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(system.contains("editing session"));
}

#[tokio::test]
async fn chat_step_cap_is_honoured() {
    let server = dev();
    // The model never stops calling tools.
    let loop_step = tool_step(&[("call_l", "list_keys", json!({}))]);
    for (max, expected) in [(None, 8usize), (Some(json!(3)), 3), (Some(json!(99)), 20)] {
        let (t, id) = (tag(), unique_id("chat-cap"));
        script(&t, vec![loop_step.clone()]);
        let mut body = json!({"messages":[user("loop")],"instanceId":id,"model":t});
        if let Some(m) = max {
            body["maxSteps"] = m;
        }
        let reply = post_chat(server, None, &body).await;
        assert_eq!(reply.status, 200);
        assert_eq!(sent(COMPLETIONS, &t).len(), expected);
        assert_eq!(reply.of_type("start-step").len(), expected);
        assert_eq!(reply.of_type("finish-step").len(), expected);
        assert_eq!(
            reply.chunks.last().unwrap(),
            &json!({"type":"finish","finishReason":"tool-calls"})
        );
        assert!(reply.done);
    }
}

#[tokio::test]
async fn chat_upstream_failures_end_the_stream_with_an_error() {
    let server = dev();
    // An HTTP 500 on the first call.
    let (t, id) = (tag(), unique_id("chat-500"));
    script(
        &t,
        vec![upstream_error(
            500,
            "The server had an error while processing your request.",
        )],
    );
    let reply = post_chat(
        server,
        None,
        &json!({"messages":[user("x")],"instanceId":id,"model":t}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.chunks.last().unwrap(),
        &json!({"type":"error","errorText":"The server had an error while processing your request."})
    );
    assert!(reply.done && reply.raw.ends_with("data: [DONE]\n\n"));
    assert!(!reply.raw.contains("test-key"));

    // An error inside the stream, after a successful tool step.
    let (t, id) = (tag(), unique_id("chat-midway"));
    script(
        &t,
        vec![
            tool_step(&[("call_1", "write_key", json!({"key":"k","value":"kept"}))]),
            sse(
                vec![
                    delta(json!({"content":"Part"}), None),
                    json!({"error":{"message":"Rate limit reached"}}),
                ],
                Duration::ZERO,
            ),
        ],
    );
    let reply = post_chat(
        server,
        None,
        &json!({"messages":[user("x")],"instanceId":id,"model":t}),
    )
    .await;
    let types = reply.types();
    assert_eq!(types.last().unwrap(), "error", "{types:?}");
    assert_eq!(
        reply.chunks.last().unwrap()["errorText"],
        "Rate limit reached"
    );
    assert!(types.contains(&"tool-output-available".to_string()));
    assert!(reply.done);
    assert_eq!(stored(server, &id, None).await["k"]["value"], "kept");

    // Silence: the upstream timeout ends the stream.
    let (t, id) = (tag(), unique_id("chat-silent"));
    script(&t, vec![silent()]);
    let started = Instant::now();
    let reply = post_chat(
        server,
        None,
        &json!({"messages":[user("x")],"instanceId":id,"model":t}),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(TIMEOUT_SECS + 3));
    assert_eq!(
        reply.chunks.last().unwrap(),
        &json!({"type":"error","errorText":"OpenAI request timed out"})
    );
    assert!(reply.done);
}

#[tokio::test]
async fn chat_stops_when_the_client_goes_away() {
    let server = dev();
    let (t, id) = (tag(), unique_id("chat-gone"));
    // A slow first step that would end with a write, then a second step.
    let mut chunks: Vec<Value> = (0..16)
        .map(|i| delta(json!({"content": format!("w{i} ")}), None))
        .collect();
    chunks.push(delta(
        json!({"tool_calls":[{"index":0,"id":"call_late","type":"function","function":{"name":"write_key","arguments":"{\"key\":\"late\",\"value\":1}"}}]}),
        None,
    ));
    chunks.push(delta(json!({}), Some("tool_calls")));
    script(
        &t,
        vec![
            sse(chunks, Duration::from_millis(250)),
            text_step(&["never"]),
        ],
    );

    let client = reqwest::Client::new();
    let mut resp = client
        .post(server.local_url("/api/chat"))
        .json(&json!({"messages":[user("x")],"instanceId":id,"model":t}))
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
    assert_eq!(sent(COMPLETIONS, &t).len(), 1, "a second step ran");
    assert!(
        stored(server, &id, None).await.get("late").is_none(),
        "the late write happened"
    );
}

#[tokio::test]
async fn the_ai_package_reads_our_stream() {
    let server = dev();
    let (t, id) = (tag(), unique_id("chat-sdk"));
    seed(
        server,
        &id,
        None,
        &[("city", json!("Paris"), text_attrs(&[]))],
    )
    .await;
    script(
        &t,
        vec![
            sse(
                vec![
                    delta(json!({"content":"Let me check."}), None),
                    delta(
                        json!({"tool_calls":[{"index":0,"id":"call_r","type":"function","function":{"name":"read_key","arguments":"{\"key\":"}}]}),
                        None,
                    ),
                    delta(
                        json!({"tool_calls":[{"index":0,"function":{"arguments":"\"city\"}"}}]}),
                        None,
                    ),
                    delta(
                        json!({"tool_calls":[{"index":1,"id":"call_w","type":"function","function":{"name":"write_key","arguments":"{\"key\":\"country\",\"value\":\"France\"}"}}]}),
                        None,
                    ),
                    delta(json!({}), Some("tool_calls")),
                ],
                Duration::from_millis(10),
            ),
            text_step(&["You live in ", "Paris, France."]),
        ],
    );
    let reply = post_chat(
        server,
        None,
        &json!({"messages":[user("Where do I live?")],"instanceId":id,"model":t}),
    )
    .await;
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
    let (t2, _) = (tag(), ());
    script(&t2, vec![text_step(&["ok"])]);
    let history = json!([user("Where do I live?"), message, user("Thanks")]);
    let again = post_chat(
        server,
        None,
        &json!({"messages":history,"instanceId":id,"model":t2}),
    )
    .await;
    assert_eq!(again.status, 200);
    let msgs = upstream_messages(&t2, 0);
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
    let (t3, id3) = (tag(), unique_id("chat-sdk-err"));
    script(&t3, vec![upstream_error(500, "Upstream exploded")]);
    let failed = post_chat(
        server,
        None,
        &json!({"messages":[user("x")],"instanceId":id3,"model":t3}),
    )
    .await;
    let parsed = read_with_ai_package(&failed.raw);
    assert_eq!(parsed["errors"], json!(["Upstream exploded"]));
}

/// Runs tests/ai_stream/read.mjs (the `ai` package's own reader) on a body.
fn read_with_ai_package(body: &str) -> Value {
    use std::io::Write;
    let mut child = Command::new("node")
        .arg("tests/ai_stream/read.mjs")
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the ai package rejected the stream: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reader output")
}

#[tokio::test]
async fn chat_bad_requests() {
    let server = dev();
    let api = Api::new(server);
    let id = unique_id("chat-bad");
    let m = json!([user("x")]);
    for (body, error) in [
        (
            json!({"instanceId": id}),
            "instanceId and messages required",
        ),
        (json!({"messages": m}), "instanceId and messages required"),
        (
            json!({"messages": "hi", "instanceId": id}),
            "messages must be an array",
        ),
        (
            json!({"messages": m, "instanceId": 7}),
            "instanceId must be a string",
        ),
        (
            json!({"messages": m, "instanceId": "a b"}),
            "instanceId is not a valid instance id",
        ),
        (
            json!({"messages": m, "instanceId": id, "mode": "admin"}),
            "mode must be \"edit\" or \"use\"",
        ),
        (
            json!({"messages": m, "instanceId": id, "model": 4}),
            "model must be a string",
        ),
        (
            json!({"messages": m, "instanceId": id, "maxSteps": 0}),
            "maxSteps must be an integer of at least 1",
        ),
    ] {
        assert_eq!(
            api.post("/api/chat", None, body.clone()).await,
            (400, json!({"error": error})),
            "{body}"
        );
    }
    let client = reqwest::Client::new();
    let resp = client
        .post(server.local_url("/api/chat"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let big = format!(
        "{{\"messages\":[],\"instanceId\":\"x\",\"pad\":\"{}\"}}",
        "a".repeat(8 * 1024 * 1024 + 10)
    );
    let resp = client
        .post(server.local_url("/api/chat"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    // Bad requests never reach the upstream nor the usage log.
    assert!(usage_rows(server, &id).is_empty());
}

// ---------------------------------------------------------------- transform

#[tokio::test]
async fn transform_resolves_placeholders_and_stores_the_answer() {
    let server = dev();
    let api = Api::new(server);
    let (t, id) = (tag(), unique_id("transform"));
    seed(
        server,
        &id,
        None,
        &[
            ("name", json!("Ada"), text_attrs(&[])),
            ("facts", json!({"born": 1815}), json!({"type":"json"})),
        ],
    )
    .await;
    let (mut watcher, _) = WsClient::join(server, &id, None).await;
    script(&t, vec![completion("Ada was born in 1815.")]);
    let (s, body) = api
        .post(
            "/api/transform",
            None,
            json!({
                "instanceId": id,
                "template": format!("{t} Name: {{{{ name }}}}; facts: {{{{facts}}}}; {{{{unknown}}}}"),
                "prompt": "Summarise",
                "outputKey": "summary",
            }),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body,
        json!({"success":true,"outputKey":"summary","result":"Ada was born in 1815."})
    );
    let req = &sent(COMPLETIONS, &t)[0];
    assert_eq!(req["model"], "gpt-4o-mini");
    assert!(req.get("stream").is_none_or(|s| s == false));
    assert_eq!(
        req["messages"],
        json!([{"role":"user","content": format!("Summarise\n\nInput:\n{t} Name: Ada; facts: {{\"born\":1815}}; {{{{unknown}}}}")}])
    );
    let update = watcher.recv_type("key_updated").await;
    assert_eq!(update["key"], "summary");
    assert_eq!(update["value"], "Ada was born in 1815.");
    assert_eq!(update["updatedBy"], "dev-user");
    assert_eq!(update["attributes"]["type"], "text");
    assert_eq!(update["attributes"]["tags"], json!(["generated"]));
    let rows = usage_rows(server, &id);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["endpoint"], "/api/transform");
}

#[tokio::test]
async fn transform_reads_template_and_prompt_from_keys() {
    let server = dev();
    let api = Api::new(server);
    let (t, id) = (tag(), unique_id("transform-keys"));
    seed(
        server,
        &id,
        None,
        &[
            (
                "tpl",
                json!(format!("{t} Dear {{{{who}}}}")),
                text_attrs(&[]),
            ),
            ("who", json!("Grace"), text_attrs(&[])),
            ("instructions", json!("Make it formal"), text_attrs(&[])),
        ],
    )
    .await;
    script(&t, vec![completion("Dear Ms Grace,")]);
    let (s, body) = api
        .post(
            "/api/transform",
            None,
            json!({"instanceId": id, "templateKey": "tpl", "promptKey": "instructions", "outputKey": "letter", "model": "gpt-4.1"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let req = &sent(COMPLETIONS, &t)[0];
    assert_eq!(req["model"], "gpt-4.1");
    assert_eq!(
        req["messages"][0]["content"],
        format!("Make it formal\n\nInput:\n{t} Dear Grace")
    );
    assert_eq!(
        stored(server, &id, None).await["letter"]["value"],
        "Dear Ms Grace,"
    );

    // A missing input key: 404, no upstream call, nothing written.
    for (field, key) in [("templateKey", "nope"), ("promptKey", "absent")] {
        let mut b = json!({"instanceId": id, "templateKey": "tpl", "outputKey": "other"});
        b[field] = json!(key);
        let (s, body) = api.post("/api/transform", None, b).await;
        assert_eq!(
            (s, body),
            (404, json!({"error": format!("Key \"{key}\" not found")}))
        );
    }
    assert_eq!(sent(COMPLETIONS, &t).len(), 1);
    assert!(stored(server, &id, None).await.get("other").is_none());
    assert_eq!(usage_rows(server, &id).len(), 1);
}

#[tokio::test]
async fn transform_upstream_failures() {
    let server = dev();
    let api = Api::new(server);
    let id = unique_id("transform-fail");
    let t = tag();
    script(
        &t,
        vec![upstream_error(401, "Incorrect API key provided: sk-***")],
    );
    let (s, body) = api
        .post(
            "/api/transform",
            None,
            json!({"instanceId": id, "template": t, "outputKey": "out"}),
        )
        .await;
    assert_eq!(
        (s, body),
        (502, json!({"error":"Incorrect API key provided: sk-***"}))
    );

    let t = tag();
    script(&t, vec![silent()]);
    let started = Instant::now();
    let (s, body) = api
        .post(
            "/api/transform",
            None,
            json!({"instanceId": id, "template": t, "outputKey": "out"}),
        )
        .await;
    assert_eq!(
        (s, body),
        (504, json!({"error":"OpenAI request timed out"}))
    );
    assert!(started.elapsed() < Duration::from_secs(TIMEOUT_SECS + 3));
    assert!(stored(server, &id, None).await.get("out").is_none());
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
    let server = dev();
    let api = Api::new(server);
    let (t, id) = (tag(), unique_id("gen"));
    let prompt = format!("a red fox {t}");
    seed(
        server,
        &id,
        None,
        &[("idea", json!(prompt), text_attrs(&[]))],
    )
    .await;
    let (bytes, b64) = image_bytes(7);
    let file = format!("/files/{}.jpg", unique_id("img"));
    fake().on("GET", &file, move |_| FakeResponse {
        status: 200,
        headers: vec![("content-type".into(), "image/jpeg".into())],
        chunks: vec![bytes.clone()],
        pause: Duration::ZERO,
    });
    script(&t, vec![pending(), ready(&fake().url(&file))]);
    let (mut watcher, _) = WsClient::join(server, &id, None).await;
    let (s, body) = api
        .post(
            "/api/generate-image",
            None,
            json!({"instanceId": id, "promptKey": "idea", "outputKey": "picture", "seed": 7, "aspectRatio": "16:9"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body,
        json!({"success":true,"outputKey":"picture","message":"Image generated and saved to MindCache"})
    );
    let submits = sent(SUBMIT, &t);
    assert_eq!(
        submits,
        vec![json!({"prompt": prompt, "seed": 7, "aspect_ratio": "16:9"})]
    );
    let submit = &sent_requests(SUBMIT, &t)[0];
    assert_eq!(submit.header("authorization"), Some("Bearer fw-test-key"));
    let polls = sent(RESULT, &t);
    assert_eq!(polls.len(), 2);
    assert_eq!(polls[0], json!({"id": format!("req:{prompt}")}));
    // The image went into the key, not into the response.
    let update = watcher.recv_type("key_updated").await;
    assert_eq!(update["key"], "picture");
    assert_eq!(update["value"], format!("data:image/jpeg;base64,{b64}"));
    assert_eq!(update["updatedBy"], "dev-user");
    assert_eq!(update["attributes"]["type"], "image");
    assert_eq!(update["attributes"]["contentType"], "image/jpeg");
    assert_eq!(
        update["attributes"]["tags"],
        json!(["generated", "fireworks"])
    );
    assert_eq!(
        usage_rows(server, &id)[0]["endpoint"],
        "/api/generate-image"
    );
}

#[tokio::test]
async fn generate_image_edits_source_images_from_keys() {
    let server = dev();
    let api = Api::new(server);
    let (t, id) = (tag(), unique_id("gen-edit"));
    let (_, photo) = image_bytes(1);
    let (_, other) = image_bytes(2);
    let (_, result) = image_bytes(3);
    seed(
        server,
        &id,
        None,
        &[
            ("photo", json!(photo), json!({"type":"image"})),
            (
                "other",
                json!(format!("data:image/png;base64,{other}")),
                json!({"type":"image"}),
            ),
        ],
    )
    .await;
    script(&t, vec![ready(&result)]);
    let prompt = format!("make it blue {t}");
    let (s, body) = api
        .post(
            "/api/generate-image",
            None,
            json!({"instanceId": id, "prompt": prompt, "imageKey": "photo", "outputKey": "edited"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        sent(SUBMIT, &t),
        vec![
            json!({"prompt": prompt, "seed": -1, "input_image": format!("data:image/jpeg;base64,{photo}"), "prompt_upsampling": false, "safety_tolerance": 2})
        ]
    );
    let keys = stored(server, &id, None).await;
    assert_eq!(
        keys["edited"]["value"],
        format!("data:image/jpeg;base64,{result}")
    );

    // Several sources go as an array, in order.
    let t2 = tag();
    script(
        &t2,
        vec![ready(&format!("data:image/jpeg;base64,{result}"))],
    );
    let prompt2 = format!("merge {t2}");
    let (s, body) = api
        .post(
            "/api/generate-image",
            None,
            json!({"instanceId": id, "prompt": prompt2, "imageKey": "photo", "imageKeys": ["other"], "safetyTolerance": 5, "outputKey": "merged"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let submit = &sent(SUBMIT, &t2)[0];
    assert_eq!(
        submit["input_image"],
        json!([
            format!("data:image/jpeg;base64,{photo}"),
            format!("data:image/png;base64,{other}")
        ])
    );
    assert_eq!(submit["safety_tolerance"], 5);
    assert!(submit.get("aspect_ratio").is_none());

    // A missing source key: 404 before anything is submitted.
    let (s, body) = api
        .post(
            "/api/generate-image",
            None,
            json!({"instanceId": id, "prompt": "x", "imageKeys": ["ghost"], "outputKey": "o"}),
        )
        .await;
    assert_eq!((s, body), (404, json!({"error":"Key \"ghost\" not found"})));
}

#[tokio::test]
async fn generate_image_failures() {
    let server = dev();
    let api = Api::new(server);
    let id = unique_id("gen-fail");
    let post = |prompt: String| {
        let api = Api::new(server);
        let id = id.clone();
        async move {
            api.post(
                "/api/generate-image",
                None,
                json!({"instanceId": id, "prompt": prompt, "outputKey": "img"}),
            )
            .await
        }
    };
    let t = tag();
    script(
        &t,
        vec![
            pending(),
            FakeResponse::json(200, &json!({"status":"Request Moderated"})),
        ],
    );
    assert_eq!(
        post(format!("p {t}")).await,
        (
            400,
            json!({"error":"Request blocked by content moderation"})
        )
    );
    let t = tag();
    script(
        &t,
        vec![FakeResponse::json(
            200,
            &json!({"status":"Error","details":"GPU on fire"}),
        )],
    );
    assert_eq!(
        post(format!("p {t}")).await,
        (502, json!({"error":"Image generation failed: GPU on fire"}))
    );
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
    assert!(stored(server, &id, None).await.get("img").is_none());
    let _ = api;
}

// ---------------------------------------------------------------- analysis

#[tokio::test]
async fn analyze_image_from_a_key_holding_bare_base64() {
    let server = dev();
    let api = Api::new(server);
    let (t, id) = (tag(), unique_id("analyze"));
    let (_, b64) = image_bytes(9);
    seed(
        server,
        &id,
        None,
        &[
            ("photo", json!(b64), json!({"type":"image"})),
            (
                "question",
                json!(format!("What is in it? {t}")),
                text_attrs(&[]),
            ),
        ],
    )
    .await;
    script(&t, vec![completion("A tiny JPEG.")]);
    let (s, body) = api
        .post(
            "/api/analyze-image",
            None,
            json!({"instanceId": id, "imageKey": "photo", "promptKey": "question", "outputKey": "analysis"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body,
        json!({"success":true,"outputKey":"analysis","analysis":"A tiny JPEG."})
    );
    let req = &sent(COMPLETIONS, &t)[0];
    assert_eq!(req["model"], "gpt-4o");
    assert_eq!(
        req["messages"],
        json!([{"role":"user","content":[
            {"type":"text","text": format!("What is in it? {t}")},
            {"type":"image_url","image_url":{"url": format!("data:image/jpeg;base64,{b64}")}}
        ]}])
    );
    let keys = stored(server, &id, None).await;
    assert_eq!(keys["analysis"]["value"], "A tiny JPEG.");
    assert_eq!(
        keys["analysis"]["attributes"]["tags"],
        json!(["generated", "vision-analysis"])
    );

    // Inline sources: a URL as is, base64 with the JPEG prefix.
    for (field, value, url) in [
        (
            "imageUrl",
            "https://example.com/cat.png".to_string(),
            "https://example.com/cat.png".to_string(),
        ),
        (
            "imageBase64",
            b64.clone(),
            format!("data:image/jpeg;base64,{b64}"),
        ),
    ] {
        let t = tag();
        script(&t, vec![completion("ok")]);
        let mut b =
            json!({"instanceId": id, "prompt": t, "outputKey": "a2", "model": "gpt-4o-mini"});
        b[field] = json!(value);
        let (s, body) = api.post("/api/analyze-image", None, b).await;
        assert_eq!(s, 200, "{body}");
        let req = &sent(COMPLETIONS, &t)[0];
        assert_eq!(req["model"], "gpt-4o-mini");
        assert_eq!(req["messages"][0]["content"][1]["image_url"]["url"], url);
    }
    let (s, body) = api
        .post(
            "/api/analyze-image",
            None,
            json!({"instanceId": id, "imageKey": "missing", "prompt": "x", "outputKey": "o"}),
        )
        .await;
    assert_eq!(
        (s, body),
        (404, json!({"error":"Key \"missing\" not found"}))
    );
}

// ---------------------------------------------------------------- validation

#[tokio::test]
async fn bad_bodies_name_the_field() {
    let server = dev();
    let api = Api::new(server);
    let id = unique_id("bad");
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
    for (path, body, error) in cases {
        assert_eq!(
            api.post(path, None, body.clone()).await,
            (400, json!({"error": error})),
            "{path} {body}"
        );
    }
    seed(
        server,
        &id,
        None,
        &[("n", json!(3), json!({"type":"json"}))],
    )
    .await;
    let (s, body) = api
        .post(
            "/api/analyze-image",
            None,
            json!({"instanceId": id, "outputKey": "o", "prompt": "p", "imageKey": "n"}),
        )
        .await;
    assert_eq!(
        (s, body),
        (400, json!({"error":"Key \"n\" does not hold an image"}))
    );
    assert!(usage_rows(server, &id).is_empty());
}

#[tokio::test]
async fn missing_provider_keys_are_reported_after_body_checks() {
    let server = dev_server();
    let api = Api::new(server);
    let id = unique_id("nokey");
    let openai = json!({"error":"OpenAI API key not configured"});
    let fireworks = json!({"error":"Fireworks API key not configured"});
    for (path, body, expected) in [
        (
            "/api/chat",
            json!({"messages":[], "instanceId": id}),
            &openai,
        ),
        (
            "/api/transform",
            json!({"instanceId": id, "template": "x", "outputKey": "o"}),
            &openai,
        ),
        (
            "/api/analyze-image",
            json!({"instanceId": id, "imageUrl": "https://x/y.png", "prompt": "p", "outputKey": "o"}),
            &openai,
        ),
        (
            "/api/generate-image",
            json!({"instanceId": id, "prompt": "p", "outputKey": "o"}),
            &fireworks,
        ),
        // Even input keys that do not exist: the provider key comes first.
        (
            "/api/transform",
            json!({"instanceId": id, "templateKey": "ghost", "outputKey": "o"}),
            &openai,
        ),
    ] {
        assert_eq!(
            api.post(path, None, body.clone()).await,
            (500, expected.clone()),
            "{path}"
        );
    }
    // AI bodies may exceed the 1 MiB of the other routes (images inline).
    let big = "A".repeat(2 * 1024 * 1024);
    let body = json!({"instanceId": id, "imageBase64": big, "prompt": "p", "outputKey": "o"});
    assert_eq!(
        api.post("/api/analyze-image", None, body).await,
        (500, openai.clone())
    );
    // A bad body is still a 400 first.
    assert_eq!(
        api.post("/api/transform", None, json!({"instanceId": id}))
            .await
            .0,
        400
    );
    assert_eq!(
        api.post("/api/generate-image", None, json!({"outputKey": "o"}))
            .await
            .0,
        400
    );
}

// ---------------------------------------------------------------- access

#[tokio::test]
async fn production_authorization() {
    let w = prod();
    let api = w.api();
    let project = w.project(&w.alice, "AI").await;
    let instance = project.main;
    w.share(
        &w.alice,
        &format!("/api/projects/{}/shares", project.id),
        json!({"targetType":"user","targetId": w.bob.id,"permission":"read"}),
    )
    .await;
    seed(
        w.server,
        &instance,
        Some(&w.alice.key),
        &[("topic", json!("owls"), text_attrs(&[]))],
    )
    .await;

    // No credentials at all.
    assert_eq!(
        api.post(
            "/api/transform",
            None,
            json!({"instanceId": instance, "template": "x", "outputKey": "o"})
        )
        .await
        .0,
        401
    );

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
        let (s, b) = api.post(path, Some(&w.bob.key), body.clone()).await;
        assert_eq!(s, 403, "{path}: {b}");
        let (s, b) = api.post(path, Some(&w.eve.key), body).await;
        assert_eq!(s, 404, "{path}: {b}");
    }
    assert!(sent(COMPLETIONS, &t).is_empty());
    assert!(sent(SUBMIT, &t).is_empty());

    // Bob may chat in use mode (reading), but the write tool is refused.
    let t = tag();
    script(
        &t,
        vec![
            tool_step(&[
                ("call_r", "read_key", json!({"key":"topic"})),
                ("call_w", "write_key", json!({"key":"topic","value":"cats"})),
            ]),
            text_step(&["I can only read."]),
        ],
    );
    let reply = post_chat(
        w.server,
        Some(&w.bob.key),
        &json!({"instanceId": instance, "messages": [user("Change the topic")], "model": t}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    let outputs = reply.of_type("tool-output-available");
    assert_eq!(outputs[0]["output"]["value"], "owls");
    assert!(outputs[1]["output"]["error"]
        .as_str()
        .unwrap()
        .contains("read access"));
    assert_eq!(
        stored(w.server, &instance, Some(&w.alice.key)).await["topic"]["value"],
        "owls"
    );

    // Alice writes, as herself; the usage row names her key.
    let t = tag();
    script(&t, vec![completion("Owls are birds.")]);
    let (s, b) = api
        .post("/api/transform", Some(&w.alice.key), json!({"instanceId": instance, "template": format!("{t} {{{{topic}}}}"), "outputKey": "fact"}))
        .await;
    assert_eq!(s, 200, "{b}");
    let keys = stored(w.server, &instance, Some(&w.alice.key)).await;
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
    assert_eq!(
        api.patch(
            &format!("/api/instances/{instance}"),
            Some(&w.alice.key),
            json!({"is_readonly": true})
        )
        .await
        .0,
        200
    );
    let (s, b) = api
        .post(
            "/api/transform",
            Some(&w.alice.key),
            json!({"instanceId": instance, "template": "x", "outputKey": "o"}),
        )
        .await;
    assert_eq!((s, b), (403, json!({"error":"Instance is read-only"})));
}

//! A scripted stand-in for OpenAI and Fireworks, shared by every test of a
//! binary. Each test picks its answers with a unique tag (the model name, or
//! text inside the prompt): the n-th request carrying a tag gets the n-th
//! scripted answer. Also the answers' shapes (streamed completions, tool
//! calls, errors, image results) and what the fake was asked.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use super::fake::{FakeResponse, FakeUpstream, RecordedRequest};
use super::server::ServerOptions;
use super::unique_id;

pub const COMPLETIONS: &str = "/v1/chat/completions";
pub const SUBMIT: &str = "/fw/workflows/accounts/fireworks/models/flux-kontext-pro";
pub const RESULT: &str = "/fw/workflows/accounts/fireworks/models/flux-kontext-pro/get_result";
/// The servers' upstream timeout and image deadline (seconds), short so the
/// timeout tests are quick.
pub const TIMEOUT_SECS: u64 = 3;

/// Scripted answers by tag: the n-th request carrying a tag gets the n-th
/// answer (the last one repeats).
#[derive(Default)]
struct Scripts {
    answers: HashMap<String, Vec<FakeResponse>>,
    served: HashMap<String, usize>,
}

fn scripts() -> &'static Mutex<Scripts> {
    static S: OnceLock<Mutex<Scripts>> = OnceLock::new();
    S.get_or_init(Mutex::default)
}

pub fn script(tag: &str, answers: Vec<FakeResponse>) {
    scripts()
        .lock()
        .unwrap()
        .answers
        .insert(tag.to_string(), answers);
}

/// The next scripted answer for the tag inside `key`.
fn answer(key: &str) -> FakeResponse {
    let mut s = scripts().lock().unwrap();
    let tag = s.answers.keys().find(|t| key.contains(t.as_str())).cloned();
    let Some(tag) = tag else {
        return FakeResponse::json(
            500,
            &json!({"error": {"message": "no script for this request"}}),
        );
    };
    let n = *s.served.get(&tag).unwrap_or(&0);
    s.served.insert(tag.clone(), n + 1);
    let answers = &s.answers[&tag];
    answers[n.min(answers.len() - 1)].clone()
}

pub fn fake() -> &'static FakeUpstream {
    static F: OnceLock<FakeUpstream> = OnceLock::new();
    F.get_or_init(|| {
        let f = FakeUpstream::start();
        f.on("POST", COMPLETIONS, |req| {
            answer(&String::from_utf8_lossy(&req.body))
        });
        // Submit: the request id names the prompt, so polls find the script.
        f.on("POST", SUBMIT, |req| {
            let prompt = req.json()["prompt"].as_str().unwrap_or("").to_string();
            if prompt.contains("refuse-submit") {
                return FakeResponse::json(
                    422,
                    &json!({"detail": "Prompt refused by the service"}),
                );
            }
            FakeResponse::json(200, &json!({"request_id": format!("req:{prompt}")}))
        });
        f.on("POST", RESULT, |req| {
            let id = req.json()["id"].as_str().unwrap_or("").to_string();
            answer(&id)
        });
        f
    })
}

/// The requests the server sent to `path` that carry `tag`.
pub fn sent_requests(path: &str, tag: &str) -> Vec<RecordedRequest> {
    fake()
        .requests_to(path)
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(tag))
        .collect()
}

/// The bodies of the requests the server sent to `path` that carry `tag`.
pub fn sent(path: &str, tag: &str) -> Vec<Value> {
    sent_requests(path, tag).iter().map(|r| r.json()).collect()
}

pub fn tag() -> String {
    format!("T{}T", unique_id("tag"))
}

/// A streamed completion: each chunk one SSE event, then `[DONE]`.
pub fn sse(chunks: Vec<Value>, pause: Duration) -> FakeResponse {
    let mut frames: Vec<Vec<u8>> = chunks
        .into_iter()
        .map(|c| format!("data: {c}\n\n").into_bytes())
        .collect();
    frames.push(b"data: [DONE]\n\n".to_vec());
    FakeResponse::stream("text/event-stream", frames, pause)
}

pub fn delta(d: Value, finish: Option<&str>) -> Value {
    json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":d,"finish_reason":finish}]})
}

pub fn text_step(parts: &[&str]) -> FakeResponse {
    let mut chunks = vec![delta(json!({"role":"assistant","content":""}), None)];
    chunks.extend(parts.iter().map(|p| delta(json!({"content": p}), None)));
    chunks.push(delta(json!({}), Some("stop")));
    sse(chunks, Duration::from_millis(40))
}

/// The chunk that starts tool call `index`, with the first `arguments`.
pub fn tool_call(index: usize, id: &str, name: &str, arguments: &str) -> Value {
    let function = json!({"name": name, "arguments": arguments});
    let call = json!({"index": index, "id": id, "type": "function", "function": function});
    delta(json!({ "tool_calls": [call] }), None)
}

/// A chunk with more `arguments` of tool call `index`.
pub fn tool_arguments(index: usize, arguments: &str) -> Value {
    let call = json!({"index": index, "function": {"arguments": arguments}});
    delta(json!({ "tool_calls": [call] }), None)
}

/// A step that calls tools; each call's arguments arrive in three fragments.
pub fn tool_step(calls: &[(&str, &str, Value)]) -> FakeResponse {
    let mut chunks = Vec::new();
    for (i, (id, name, args)) in calls.iter().enumerate() {
        chunks.push(tool_call(i, id, name, ""));
        let text = args.to_string();
        let chars: Vec<char> = text.chars().collect();
        let third = chars.len().div_ceil(3).max(1);
        for piece in chars.chunks(third) {
            let piece: String = piece.iter().collect();
            chunks.push(tool_arguments(i, &piece));
        }
    }
    chunks.push(delta(json!({}), Some("tool_calls")));
    sse(chunks, Duration::from_millis(10))
}

pub fn completion(text: &str) -> FakeResponse {
    FakeResponse::json(
        200,
        &json!({"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":"stop"}]}),
    )
}

pub fn upstream_error(status: u16, message: &str) -> FakeResponse {
    FakeResponse::json(
        status,
        &json!({"error": {"message": message, "type": "server_error"}}),
    )
}

/// Headers at once, then silence longer than the server's timeout.
pub fn silent() -> FakeResponse {
    FakeResponse::stream(
        "application/json",
        vec![Vec::new(), b"{}".to_vec()],
        Duration::from_secs(TIMEOUT_SECS + 3),
    )
}

/// `options` with both providers pointed at the fake, and short timeouts.
pub fn with_upstreams(options: ServerOptions) -> ServerOptions {
    let f = fake();
    options
        .var("OPENAI_API_KEY", "test-key")
        .var("OPENAI_BASE_URL", &f.url("/v1"))
        .var("FIREWORKS_API_KEY", "fw-test-key")
        .var("FIREWORKS_BASE_URL", &f.url("/fw/"))
        .var("AI_REQUEST_TIMEOUT_SECONDS", &TIMEOUT_SECS.to_string())
        .var("IMAGE_RESULT_TIMEOUT_SECONDS", &TIMEOUT_SECS.to_string())
}

/// The `messages` of the n-th completion request carrying `tag`.
pub fn upstream_messages(tag: &str, n: usize) -> Vec<Value> {
    let reqs = sent(COMPLETIONS, tag);
    assert!(reqs.len() > n, "only {} upstream requests", reqs.len());
    reqs[n]["messages"].as_array().cloned().unwrap_or_default()
}

pub fn ready(sample: &str) -> FakeResponse {
    FakeResponse::json(
        200,
        &json!({"id":"x","status":"Ready","result":{"sample": sample}}),
    )
}

pub fn pending() -> FakeResponse {
    FakeResponse::json(200, &json!({"id":"x","status":"Pending","result":null}))
}

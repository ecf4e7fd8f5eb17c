//! Decoding of one streamed Chat Completions call (one model step).
//!
//! Each SSE `data` payload is a chunk whose `choices[0].delta` carries text
//! and tool-call fragments. [`StepDecoder`] turns them into [`StreamEvent`]s
//! for the UI stream and keeps what the next step needs: the full text and
//! every tool call with its arguments assembled per `index`.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Why the model stopped, as the upstream reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    ToolCalls,
    Length,
    ContentFilter,
    Error,
    Other,
}

impl FinishReason {
    pub fn from_upstream(reason: &str) -> Self {
        match reason {
            "stop" => Self::Stop,
            // `function_call` is the legacy spelling of the same thing.
            "tool_calls" | "function_call" => Self::ToolCalls,
            "length" => Self::Length,
            "content_filter" => Self::ContentFilter,
            "error" => Self::Error,
            _ => Self::Other,
        }
    }
}

/// What one upstream chunk means for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    TextDelta(String),
    /// Emitted once per call, as soon as both its id and name are known.
    ToolCallStarted {
        index: u32,
        id: String,
        name: String,
    },
    ToolArgumentsDelta {
        index: u32,
        fragment: String,
    },
    Finished(FinishReason),
    UpstreamError(String),
}

/// A tool call whose arguments are complete (JSON text, not yet parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl CompletedToolCall {
    /// The arguments as JSON for the client's `input`; text that does not
    /// parse is passed on as a string (the tool then reports the problem).
    pub fn input_value(&self) -> Value {
        serde_json::from_str(&self.arguments)
            .unwrap_or_else(|_| Value::String(self.arguments.clone()))
    }
}

/// Everything a finished step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub text: String,
    pub tool_calls: Vec<CompletedToolCall>,
    pub finish_reason: Option<FinishReason>,
    /// Prompt and completion tokens, when the upstream reported them (the
    /// last chunk of a stream asked for with `include_usage`).
    pub usage: Option<TokenUsage>,
}

/// Token counts of one upstream call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct TokenUsage {
    #[serde(default)]
    pub prompt_tokens: i64,
    #[serde(default)]
    pub completion_tokens: i64,
}

#[derive(Deserialize)]
struct Chunk {
    // `Option` because some compatible servers send `null` for empty lists.
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
    /// `ToolCallStarted` went out; fragments are forwarded from then on.
    announced: bool,
}

/// Stateful decoder for one model call.
#[derive(Debug, Default)]
pub struct StepDecoder {
    text: String,
    calls: BTreeMap<u32, PartialCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<TokenUsage>,
}

impl StepDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one SSE data payload (the caller handles `[DONE]`).
    pub fn push(&mut self, data: &str) -> Vec<StreamEvent> {
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                return vec![StreamEvent::UpstreamError(format!(
                    "invalid chunk in upstream stream: {e}"
                ))]
            }
        };
        if let Some(err) = chunk.error.filter(|e| !e.is_null()) {
            return vec![StreamEvent::UpstreamError(error_message(&err))];
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        let mut out = Vec::new();
        // We never ask for n > 1, so only the first choice exists; a usage-only
        // chunk has none at all.
        let Some(choice) = chunk.choices.into_iter().flatten().next() else {
            return out;
        };
        if let Some(delta) = choice.delta {
            // A refusal is the model's answer in another field: show it as text.
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                if !text.is_empty() {
                    self.text.push_str(&text);
                    out.push(StreamEvent::TextDelta(text));
                }
            }
            for (pos, tc) in delta.tool_calls.into_iter().flatten().enumerate() {
                // `index` is always sent by OpenAI; the position is a fallback.
                let index = tc.index.unwrap_or(pos as u32);
                self.push_tool_fragment(index, tc, &mut out);
            }
        }
        if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
            let reason = FinishReason::from_upstream(&reason);
            self.finish_reason = Some(reason);
            out.push(StreamEvent::Finished(reason));
        }
        out
    }

    fn push_tool_fragment(&mut self, index: u32, tc: ToolCallDelta, out: &mut Vec<StreamEvent>) {
        let call = self.calls.entry(index).or_default();
        if let Some(id) = tc.id.filter(|s| !s.is_empty()) {
            if call.id.is_empty() {
                call.id = id;
            }
        }
        let (name, fragment) = match tc.function {
            Some(f) => (f.name, f.arguments.unwrap_or_default()),
            None => (None, String::new()),
        };
        if let Some(name) = name.filter(|s| !s.is_empty()) {
            if call.name.is_empty() {
                call.name = name;
            }
        }
        call.arguments.push_str(&fragment);
        if call.announced {
            if !fragment.is_empty() {
                out.push(StreamEvent::ToolArgumentsDelta { index, fragment });
            }
        } else if !call.id.is_empty() && !call.name.is_empty() {
            // Providers that send id and name apart get announced late; the
            // arguments received so far go out as one fragment.
            call.announced = true;
            out.push(StreamEvent::ToolCallStarted {
                index,
                id: call.id.clone(),
                name: call.name.clone(),
            });
            if !call.arguments.is_empty() {
                out.push(StreamEvent::ToolArgumentsDelta {
                    index,
                    fragment: call.arguments.clone(),
                });
            }
        }
    }

    /// The id of the call at `index`, once known (to route argument fragments).
    pub fn call_id(&self, index: u32) -> Option<&str> {
        self.calls
            .get(&index)
            .map(|c| c.id.as_str())
            .filter(|id| !id.is_empty())
    }

    /// The text the model produced so far in this step.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish_reason
    }

    /// Ends the step: tool calls ordered by `index`. A call without an id gets
    /// `call_<index>` so it can still be answered; empty arguments become `{}`
    /// because the next request must carry valid JSON there.
    pub fn finish(self) -> StepOutcome {
        let tool_calls = self
            .calls
            .into_iter()
            .map(|(index, c)| CompletedToolCall {
                id: if c.id.is_empty() {
                    format!("call_{index}")
                } else {
                    c.id
                },
                name: c.name,
                arguments: if c.arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    c.arguments
                },
            })
            .collect();
        StepOutcome {
            text: self.text,
            tool_calls,
            finish_reason: self.finish_reason,
            usage: self.usage,
        }
    }
}

/// The human message inside an OpenAI-style `error` value
/// (`{"message": …}` or a bare string).
pub fn error_message(err: &Value) -> String {
    match err {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("message") {
            Some(Value::String(s)) => s.clone(),
            _ => err.to_string(),
        },
        other => other.to_string(),
    }
}

/// The message of a non-2xx upstream response body, for the `502` we return:
/// OpenAI's `error`, or the `detail`/`message` other services (Fireworks)
/// use. Falls back to the status when the body is none of these.
pub fn http_error_message(status: u16, body: &str) -> String {
    let doc = serde_json::from_str::<Value>(body).ok();
    ["error", "detail", "message"]
        .iter()
        .filter_map(|field| doc.as_ref()?.get(*field))
        .filter(|v| !v.is_null())
        .map(error_message)
        .find(|m| !m.is_empty())
        .unwrap_or_else(|| format!("upstream returned HTTP {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::core::sse::{SseEvent, SseParser};

    /// A recorded tool-calling step, as OpenAI streams it.
    const TOOL_STEP: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Saving \u{e9}\"},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"write_key\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"ke\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"y\\\":\\\"name\\\",\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"list_keys\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"value\\\":\\\"Al\u{e9}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4,\"total_tokens\":9}}\n\n",
        "data: [DONE]\n\n",
    );

    fn run(chunks: &[&[u8]]) -> (Vec<StreamEvent>, StepOutcome, bool) {
        let mut sse = SseParser::new();
        let mut dec = StepDecoder::new();
        let mut events = Vec::new();
        let mut done = false;
        let mut handle = |evs: Vec<SseEvent>, dec: &mut StepDecoder| {
            for e in evs {
                match e {
                    SseEvent::Data(d) => events.extend(dec.push(&d)),
                    SseEvent::Done => done = true,
                }
            }
        };
        for c in chunks {
            let evs = sse.feed(c);
            handle(evs, &mut dec);
        }
        let evs = sse.finish();
        handle(evs, &mut dec);
        (events, dec.finish(), done)
    }

    /// Merges consecutive fragments so results compare regardless of splits.
    fn normalise(events: Vec<StreamEvent>) -> Vec<StreamEvent> {
        let mut out: Vec<StreamEvent> = Vec::new();
        for e in events {
            match (out.last_mut(), e) {
                (Some(StreamEvent::TextDelta(a)), StreamEvent::TextDelta(b)) => a.push_str(&b),
                (
                    Some(StreamEvent::ToolArgumentsDelta { index: i, fragment }),
                    StreamEvent::ToolArgumentsDelta { index, fragment: f },
                ) if *i == index => fragment.push_str(&f),
                (_, e) => out.push(e),
            }
        }
        out
    }

    fn expected_outcome() -> StepOutcome {
        StepOutcome {
            text: "Saving é".into(),
            tool_calls: vec![
                CompletedToolCall {
                    id: "call_a".into(),
                    name: "write_key".into(),
                    arguments: r#"{"key":"name","value":"Alé"}"#.into(),
                },
                CompletedToolCall {
                    id: "call_b".into(),
                    name: "list_keys".into(),
                    arguments: "{}".into(),
                },
            ],
            finish_reason: Some(FinishReason::ToolCalls),
            usage: Some(TokenUsage {
                prompt_tokens: 5,
                completion_tokens: 4,
            }),
        }
    }

    #[test]
    fn recorded_tool_step() {
        let (events, outcome, done) = run(&[TOOL_STEP.as_bytes()]);
        assert!(done);
        assert_eq!(outcome, expected_outcome());
        assert_eq!(
            events,
            vec![
                StreamEvent::TextDelta("Saving é".into()),
                StreamEvent::ToolCallStarted {
                    index: 0,
                    id: "call_a".into(),
                    name: "write_key".into()
                },
                StreamEvent::ToolArgumentsDelta {
                    index: 0,
                    fragment: "{\"ke".into()
                },
                StreamEvent::ToolArgumentsDelta {
                    index: 0,
                    fragment: "y\":\"name\",".into()
                },
                StreamEvent::ToolCallStarted {
                    index: 1,
                    id: "call_b".into(),
                    name: "list_keys".into()
                },
                StreamEvent::ToolArgumentsDelta {
                    index: 0,
                    fragment: "\"value\":\"Alé".into()
                },
                StreamEvent::ToolArgumentsDelta {
                    index: 0,
                    fragment: "\"}".into()
                },
                StreamEvent::Finished(FinishReason::ToolCalls),
            ]
        );
    }

    #[test]
    fn recorded_tool_step_every_split_point() {
        let bytes = TOOL_STEP.as_bytes();
        let (whole, _, _) = run(&[bytes]);
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            let (events, outcome, done) = run(&[a, b]);
            assert!(done, "split at {i}");
            assert_eq!(outcome, expected_outcome(), "split at {i}");
            assert_eq!(normalise(events), normalise(whole.clone()), "split at {i}");
        }
    }

    #[test]
    fn arguments_in_many_tiny_fragments() {
        let args = r#"{"key":"notes","value":"a \"quoted\" ünïcødé text"}"#;
        let mut dec = StepDecoder::new();
        let first = r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_x","function":{"name":"write_key"}}]}}]}"#;
        assert_eq!(dec.push(first).len(), 1);
        let mut streamed = String::new();
        for ch in args.chars() {
            let chunk = serde_json::json!({"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":ch.to_string()}}]}}]});
            for e in dec.push(&chunk.to_string()) {
                if let StreamEvent::ToolArgumentsDelta { fragment, .. } = e {
                    streamed.push_str(&fragment);
                }
            }
        }
        assert_eq!(streamed, args);
        let out = dec.finish();
        assert_eq!(out.tool_calls[0].arguments, args);
        assert_eq!(out.finish_reason, None);
    }

    #[test]
    fn late_name_is_announced_with_buffered_arguments() {
        let mut dec = StepDecoder::new();
        let a = dec.push(r#"{"choices":[{"delta":{"tool_calls":[{"index":2,"id":"call_q","function":{"arguments":"{\"k"}}]}}]}"#);
        assert!(a.is_empty());
        let b = dec.push(r#"{"choices":[{"delta":{"tool_calls":[{"index":2,"function":{"name":"read_key","arguments":"ey\":1}"}}]}}]}"#);
        assert_eq!(
            b,
            vec![
                StreamEvent::ToolCallStarted {
                    index: 2,
                    id: "call_q".into(),
                    name: "read_key".into()
                },
                StreamEvent::ToolArgumentsDelta {
                    index: 2,
                    fragment: "{\"key\":1}".into()
                },
            ]
        );
    }

    #[test]
    fn missing_id_gets_a_stable_one() {
        let mut dec = StepDecoder::new();
        dec.push(r#"{"choices":[{"delta":{"tool_calls":[{"index":3,"function":{"name":"list_keys"}}]}}]}"#);
        let out = dec.finish();
        assert_eq!(out.tool_calls[0].id, "call_3");
        assert_eq!(out.tool_calls[0].arguments, "{}");
    }

    #[test]
    fn null_lists_and_helpers() {
        let mut dec = StepDecoder::new();
        assert!(dec.push(r#"{"choices":null}"#).is_empty());
        assert_eq!(
            dec.push(
                r#"{"choices":[{"delta":{"content":"a","tool_calls":null},"finish_reason":null}]}"#
            ),
            vec![StreamEvent::TextDelta("a".into())]
        );
        dec.push(r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_z","function":{"name":"read_key","arguments":"{\"key\""}}]}}]}"#);
        assert_eq!(dec.call_id(0), Some("call_z"));
        assert_eq!(dec.call_id(1), None);
        let call = &dec.finish().tool_calls[0];
        assert_eq!(call.input_value(), Value::String("{\"key\"".into()));
        let ok = CompletedToolCall {
            id: "c".into(),
            name: "n".into(),
            arguments: r#"{"key":"a"}"#.into(),
        };
        assert_eq!(ok.input_value(), serde_json::json!({"key":"a"}));
    }

    #[test]
    fn errors_and_reasons() {
        let mut dec = StepDecoder::new();
        assert_eq!(
            dec.push(r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#),
            vec![StreamEvent::UpstreamError("Rate limit reached".into())]
        );
        assert_eq!(
            dec.push(r#"{"error":"boom"}"#),
            vec![StreamEvent::UpstreamError("boom".into())]
        );
        assert!(matches!(
            dec.push("not json")[..],
            [StreamEvent::UpstreamError(_)]
        ));
        assert_eq!(
            dec.push(
                r#"{"choices":[{"delta":{"refusal":"No."},"finish_reason":"content_filter"}]}"#
            ),
            vec![
                StreamEvent::TextDelta("No.".into()),
                StreamEvent::Finished(FinishReason::ContentFilter)
            ]
        );
        for (s, r) in [
            ("stop", FinishReason::Stop),
            ("tool_calls", FinishReason::ToolCalls),
            ("length", FinishReason::Length),
            ("content_filter", FinishReason::ContentFilter),
            ("error", FinishReason::Error),
            ("weird", FinishReason::Other),
        ] {
            assert_eq!(FinishReason::from_upstream(s), r);
        }
    }

    #[test]
    fn http_errors() {
        assert_eq!(
            http_error_message(401, r#"{"error":{"message":"Incorrect API key provided"}}"#),
            "Incorrect API key provided"
        );
        assert_eq!(
            http_error_message(503, "<html>"),
            "upstream returned HTTP 503"
        );
        assert_eq!(
            http_error_message(400, r#"{"detail":"Invalid aspect ratio"}"#),
            "Invalid aspect ratio"
        );
        assert_eq!(
            http_error_message(500, r#"{"error":null,"message":"boom"}"#),
            "boom"
        );
        assert_eq!(
            http_error_message(500, r#"{"error":""}"#),
            "upstream returned HTTP 500"
        );
    }
}

//! Encoder for the AI SDK UI-message stream (v1) that `useChat` consumes.
//!
//! The client validates chunk order and, in several releases, rejects unknown
//! fields, so every chunk carries exactly the fields of ai.md and
//! [`UiStreamEncoder`] refuses (or repairs, where unambiguous) a wrong order.

use super::openai_stream::FinishReason;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;

/// Response headers of a chat stream.
pub const HEADERS: [(&str, &str); 5] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("connection", "keep-alive"),
    ("x-vercel-ai-ui-message-stream", "v1"),
    ("x-accel-buffering", "no"),
];

/// The frame that ends the stream.
pub const DONE_FRAME: &str = "data: [DONE]\n\n";

/// The `finishReason` spelling the client expects.
pub fn ui_finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::ToolCalls => "tool-calls",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content-filter",
        FinishReason::Error => "error",
        FinishReason::Other => "other",
    }
}

#[derive(Serialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
enum Chunk<'a> {
    Start {
        message_id: &'a str,
    },
    StartStep,
    TextStart {
        id: &'a str,
    },
    TextDelta {
        id: &'a str,
        delta: &'a str,
    },
    TextEnd {
        id: &'a str,
    },
    ToolInputStart {
        tool_call_id: &'a str,
        tool_name: &'a str,
    },
    ToolInputDelta {
        tool_call_id: &'a str,
        input_text_delta: &'a str,
    },
    ToolInputAvailable {
        tool_call_id: &'a str,
        tool_name: &'a str,
        input: &'a Value,
    },
    ToolOutputAvailable {
        tool_call_id: &'a str,
        output: &'a Value,
    },
    ToolOutputError {
        tool_call_id: &'a str,
        error_text: &'a str,
    },
    FinishStep,
    Finish {
        finish_reason: &'a str,
    },
    Error {
        error_text: &'a str,
    },
}

/// Frames one chunk as `data: <compact JSON>\n\n`.
fn frame(chunk: &Chunk<'_>, out: &mut String) {
    // Serialising `&str`s and a `Value` cannot fail; the fallback only keeps
    // this free of panics.
    let json = serde_json::to_string(chunk)
        .unwrap_or_else(|_| r#"{"type":"error","errorText":"encoding failed"}"#.to_owned());
    out.push_str("data: ");
    out.push_str(&json);
    out.push_str("\n\n");
}

/// A call made in the wrong order; the encoder's state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderError {
    AlreadyStarted,
    NotStarted,
    StepAlreadyOpen,
    NoOpenStep,
    /// After `finish`, `error` or `done` only `done` (once) may follow.
    Closed,
    DuplicateToolCall(String),
    ToolInputNotStarted(String),
    ToolInputNotAvailable(String),
    ToolOutputAlreadySent(String),
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyStarted => f.write_str("stream already started"),
            Self::NotStarted => f.write_str("stream not started"),
            Self::StepAlreadyOpen => f.write_str("a step is already open"),
            Self::NoOpenStep => f.write_str("no step is open"),
            Self::Closed => f.write_str("stream already finished"),
            Self::DuplicateToolCall(id) => write!(f, "tool call {id} already announced"),
            Self::ToolInputNotStarted(id) => write!(f, "tool input {id} not started"),
            Self::ToolInputNotAvailable(id) => write!(f, "tool input {id} not available"),
            Self::ToolOutputAlreadySent(id) => write!(f, "tool output {id} already sent"),
        }
    }
}

impl std::error::Error for OrderError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Started,
    InStep,
    /// `finish` or `error` went out; only `[DONE]` remains.
    Closing,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolPhase {
    InputStreaming,
    InputAvailable,
    OutputSent,
}

/// Order-enforcing encoder. Every method returns the bytes to send (possibly
/// several frames, possibly none). Text runs are implicit: the first delta
/// opens a part with a fresh id, and anything that is not text (a tool chunk,
/// the end of the step) closes it.
#[derive(Debug)]
pub struct UiStreamEncoder {
    message_id: String,
    phase: Phase,
    open_text: Option<String>,
    text_parts: u32,
    tools: HashMap<String, ToolPhase>,
}

impl UiStreamEncoder {
    pub fn new(message_id: impl Into<String>) -> Self {
        Self {
            message_id: message_id.into(),
            phase: Phase::Idle,
            open_text: None,
            text_parts: 0,
            tools: HashMap::new(),
        }
    }

    pub fn start(&mut self) -> Result<String, OrderError> {
        match self.phase {
            Phase::Idle => {}
            Phase::Closing | Phase::Done => return Err(OrderError::Closed),
            _ => return Err(OrderError::AlreadyStarted),
        }
        self.phase = Phase::Started;
        let mut out = String::new();
        frame(
            &Chunk::Start {
                message_id: &self.message_id,
            },
            &mut out,
        );
        Ok(out)
    }

    pub fn start_step(&mut self) -> Result<String, OrderError> {
        match self.phase {
            Phase::Started => {}
            Phase::Idle => return Err(OrderError::NotStarted),
            Phase::InStep => return Err(OrderError::StepAlreadyOpen),
            Phase::Closing | Phase::Done => return Err(OrderError::Closed),
        }
        self.phase = Phase::InStep;
        let mut out = String::new();
        frame(&Chunk::StartStep, &mut out);
        Ok(out)
    }

    pub fn text_delta(&mut self, delta: &str) -> Result<String, OrderError> {
        self.require_step()?;
        let mut out = String::new();
        if delta.is_empty() {
            return Ok(out);
        }
        let id = match &self.open_text {
            Some(id) => id.clone(),
            None => {
                self.text_parts += 1;
                let id = format!("text-{}", self.text_parts);
                frame(&Chunk::TextStart { id: &id }, &mut out);
                self.open_text = Some(id.clone());
                id
            }
        };
        frame(&Chunk::TextDelta { id: &id, delta }, &mut out);
        Ok(out)
    }

    /// Closes the current text run, if any.
    pub fn text_end(&mut self) -> Result<String, OrderError> {
        self.require_step()?;
        let mut out = String::new();
        self.close_text(&mut out);
        Ok(out)
    }

    pub fn tool_input_start(&mut self, call_id: &str, name: &str) -> Result<String, OrderError> {
        self.require_step()?;
        if self.tools.contains_key(call_id) {
            return Err(OrderError::DuplicateToolCall(call_id.to_owned()));
        }
        self.tools
            .insert(call_id.to_owned(), ToolPhase::InputStreaming);
        Ok(self.after_text(&Chunk::ToolInputStart {
            tool_call_id: call_id,
            tool_name: name,
        }))
    }

    pub fn tool_input_delta(&mut self, call_id: &str, delta: &str) -> Result<String, OrderError> {
        self.require_step()?;
        if self.tools.get(call_id) != Some(&ToolPhase::InputStreaming) {
            return Err(OrderError::ToolInputNotStarted(call_id.to_owned()));
        }
        let mut out = String::new();
        if !delta.is_empty() {
            frame(
                &Chunk::ToolInputDelta {
                    tool_call_id: call_id,
                    input_text_delta: delta,
                },
                &mut out,
            );
        }
        Ok(out)
    }

    /// The complete input. A preceding `tool_input_start` is optional (the
    /// client creates the part here when it has not seen one).
    pub fn tool_input_available(
        &mut self,
        call_id: &str,
        name: &str,
        input: &Value,
    ) -> Result<String, OrderError> {
        self.require_step()?;
        match self.tools.get(call_id) {
            None | Some(ToolPhase::InputStreaming) => {}
            Some(_) => return Err(OrderError::DuplicateToolCall(call_id.to_owned())),
        }
        self.tools
            .insert(call_id.to_owned(), ToolPhase::InputAvailable);
        Ok(self.after_text(&Chunk::ToolInputAvailable {
            tool_call_id: call_id,
            tool_name: name,
            input,
        }))
    }

    /// A tool call's result: its output, or the text of its failure.
    pub fn tool_output(
        &mut self,
        call_id: &str,
        result: Result<&Value, &str>,
    ) -> Result<String, OrderError> {
        self.claim_output(call_id)?;
        let chunk = match result {
            Ok(output) => Chunk::ToolOutputAvailable {
                tool_call_id: call_id,
                output,
            },
            Err(error_text) => Chunk::ToolOutputError {
                tool_call_id: call_id,
                error_text,
            },
        };
        Ok(self.after_text(&chunk))
    }

    pub fn finish_step(&mut self) -> Result<String, OrderError> {
        self.require_step()?;
        let out = self.after_text(&Chunk::FinishStep);
        self.phase = Phase::Started;
        Ok(out)
    }

    /// Ends the message, closing an open text run and step first.
    pub fn finish(&mut self, reason: FinishReason) -> Result<String, OrderError> {
        let mut out = match self.phase {
            Phase::Started => String::new(),
            Phase::InStep => self.finish_step()?,
            Phase::Idle => return Err(OrderError::NotStarted),
            Phase::Closing | Phase::Done => return Err(OrderError::Closed),
        };
        frame(
            &Chunk::Finish {
                finish_reason: ui_finish_reason(reason),
            },
            &mut out,
        );
        self.phase = Phase::Closing;
        Ok(out)
    }

    /// A fatal error; only `done` may follow. Allowed before `start` too, so
    /// a failure of the very first upstream call can still be reported.
    pub fn error(&mut self, error_text: &str) -> Result<String, OrderError> {
        if matches!(self.phase, Phase::Closing | Phase::Done) {
            return Err(OrderError::Closed);
        }
        let mut out = String::new();
        frame(&Chunk::Error { error_text }, &mut out);
        self.phase = Phase::Closing;
        Ok(out)
    }

    /// The final `[DONE]`; allowed once, from any state, so an aborted stream
    /// still terminates cleanly.
    pub fn done(&mut self) -> Result<String, OrderError> {
        if self.phase == Phase::Done {
            return Err(OrderError::Closed);
        }
        self.phase = Phase::Done;
        Ok(DONE_FRAME.to_owned())
    }

    /// Whether a model step is open (between `start_step` and `finish_step`).
    pub fn in_step(&self) -> bool {
        self.phase == Phase::InStep
    }

    fn require_step(&self) -> Result<(), OrderError> {
        match self.phase {
            Phase::InStep => Ok(()),
            Phase::Idle => Err(OrderError::NotStarted),
            Phase::Started => Err(OrderError::NoOpenStep),
            Phase::Closing | Phase::Done => Err(OrderError::Closed),
        }
    }

    fn claim_output(&mut self, call_id: &str) -> Result<(), OrderError> {
        self.require_step()?;
        match self.tools.get_mut(call_id) {
            Some(p @ ToolPhase::InputAvailable) => {
                *p = ToolPhase::OutputSent;
                Ok(())
            }
            Some(ToolPhase::OutputSent) => {
                Err(OrderError::ToolOutputAlreadySent(call_id.to_owned()))
            }
            _ => Err(OrderError::ToolInputNotAvailable(call_id.to_owned())),
        }
    }

    fn close_text(&mut self, out: &mut String) {
        if let Some(id) = self.open_text.take() {
            frame(&Chunk::TextEnd { id: &id }, out);
        }
    }

    /// `chunk`, after the end of an open text part: a tool call or a step's
    /// end closes the text run before it.
    fn after_text(&mut self, chunk: &Chunk<'_>) -> String {
        let mut out = String::new();
        self.close_text(&mut out);
        frame(chunk, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Splits encoder output back into JSON chunks, checking the framing.
    fn chunks(s: &str) -> Vec<Value> {
        assert!(s.ends_with("\n\n") || s.is_empty(), "bad framing: {s:?}");
        s.split_terminator("\n\n")
            .map(|f| {
                let body = f.strip_prefix("data: ").expect("data: prefix");
                assert!(!body.contains('\n'));
                serde_json::from_str(body).expect("compact JSON")
            })
            .collect()
    }

    #[test]
    fn full_conversation_in_order() {
        let mut e = UiStreamEncoder::new("msg_1");
        let mut s = String::new();
        s += &e.start().unwrap();
        s += &e.start_step().unwrap();
        s += &e.text_delta("Hel").unwrap();
        s += &e.text_delta("lo").unwrap();
        s += &e.tool_input_start("call_1", "write_key").unwrap();
        s += &e.tool_input_delta("call_1", "{\"ke").unwrap();
        s += &e
            .tool_input_available("call_1", "write_key", &json!({"key":"k","value":"v"}))
            .unwrap();
        s += &e
            .tool_output("call_1", Ok(&json!({"success":true,"key":"k","value":"v"})))
            .unwrap();
        s += &e.finish_step().unwrap();
        s += &e.start_step().unwrap();
        s += &e.text_delta("Done.").unwrap();
        s += &e.finish(FinishReason::Stop).unwrap();
        s += &e.done().unwrap();

        assert!(s.ends_with(
            "data: {\"type\":\"finish\",\"finishReason\":\"stop\"}\n\ndata: [DONE]\n\n"
        ));
        let body = s.strip_suffix(DONE_FRAME).unwrap();
        assert_eq!(
            chunks(body),
            vec![
                json!({"type":"start","messageId":"msg_1"}),
                json!({"type":"start-step"}),
                json!({"type":"text-start","id":"text-1"}),
                json!({"type":"text-delta","id":"text-1","delta":"Hel"}),
                json!({"type":"text-delta","id":"text-1","delta":"lo"}),
                json!({"type":"text-end","id":"text-1"}),
                json!({"type":"tool-input-start","toolCallId":"call_1","toolName":"write_key"}),
                json!({"type":"tool-input-delta","toolCallId":"call_1","inputTextDelta":"{\"ke"}),
                json!({"type":"tool-input-available","toolCallId":"call_1","toolName":"write_key","input":{"key":"k","value":"v"}}),
                json!({"type":"tool-output-available","toolCallId":"call_1","output":{"success":true,"key":"k","value":"v"}}),
                json!({"type":"finish-step"}),
                json!({"type":"start-step"}),
                json!({"type":"text-start","id":"text-2"}),
                json!({"type":"text-delta","id":"text-2","delta":"Done."}),
                json!({"type":"text-end","id":"text-2"}),
                json!({"type":"finish-step"}),
                json!({"type":"finish","finishReason":"stop"}),
            ]
        );
        // `type` comes first on the wire, as the AI SDK itself writes it.
        assert!(s.starts_with("data: {\"type\":\"start\",\"messageId\":\"msg_1\"}\n\n"));
    }

    /// The glue a handler needs: recorded upstream bytes → SSE → decoder →
    /// encoder, then tool execution, all in an order the client accepts.
    #[test]
    fn relay_recorded_upstream_step() {
        use crate::ai::core::openai_stream::{StepDecoder, StreamEvent};
        use crate::ai::core::sse::{SseEvent, SseParser};
        let upstream: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"On it\"}}]}\r\n\r\n\
            data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"function\":{\"name\":\"list_keys\",\"arguments\":\"{\\\"ta\"}}]}}]}\r\n\r\n\
            data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"g\\\":\\\"x\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\r\n\r\n\
            data: [DONE]\r\n\r\n";
        let mut enc = UiStreamEncoder::new("m");
        let mut wire = enc.start().unwrap() + &enc.start_step().unwrap();
        let mut sse = SseParser::new();
        let mut dec = StepDecoder::new();
        for chunk in upstream.chunks(7) {
            for ev in sse.feed(chunk) {
                let SseEvent::Data(d) = ev else { continue };
                for e in dec.push(&d) {
                    wire += &match e {
                        StreamEvent::TextDelta(t) => enc.text_delta(&t).unwrap(),
                        StreamEvent::ToolCallStarted { id, name, .. } => {
                            enc.tool_input_start(&id, &name).unwrap()
                        }
                        StreamEvent::ToolArgumentsDelta { index, fragment } => {
                            let id = dec.call_id(index).unwrap().to_owned();
                            enc.tool_input_delta(&id, &fragment).unwrap()
                        }
                        _ => String::new(),
                    };
                }
            }
        }
        let step = dec.finish();
        for call in &step.tool_calls {
            wire += &enc
                .tool_input_available(&call.id, &call.name, &call.input_value())
                .unwrap();
            wire += &enc.tool_output(&call.id, Ok(&json!({"keys":[]}))).unwrap();
        }
        wire += &enc.finish(step.finish_reason.unwrap()).unwrap();
        let types: Vec<_> = chunks(&wire)
            .iter()
            .map(|c| c["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            types,
            [
                "start",
                "start-step",
                "text-start",
                "text-delta",
                "text-end",
                "tool-input-start",
                "tool-input-delta",
                "tool-input-delta",
                "tool-input-available",
                "tool-output-available",
                "finish-step",
                "finish"
            ]
        );
        assert!(wire.contains(r#""input":{"tag":"x"}"#));
        assert!(wire.ends_with("data: {\"type\":\"finish\",\"finishReason\":\"tool-calls\"}\n\n"));
    }

    #[test]
    fn order_is_enforced() {
        let mut e = UiStreamEncoder::new("m");
        assert_eq!(e.start_step(), Err(OrderError::NotStarted));
        assert_eq!(e.text_delta("x"), Err(OrderError::NotStarted));
        e.start().unwrap();
        assert_eq!(e.start(), Err(OrderError::AlreadyStarted));
        assert_eq!(e.text_delta("x"), Err(OrderError::NoOpenStep));
        assert_eq!(e.finish_step(), Err(OrderError::NoOpenStep));
        e.start_step().unwrap();
        assert_eq!(e.start_step(), Err(OrderError::StepAlreadyOpen));
        assert_eq!(
            e.tool_input_delta("c", "{"),
            Err(OrderError::ToolInputNotStarted("c".into()))
        );
        assert_eq!(
            e.tool_output("c", Ok(&json!(1))),
            Err(OrderError::ToolInputNotAvailable("c".into()))
        );
        e.tool_input_start("c", "read_key").unwrap();
        assert_eq!(
            e.tool_input_start("c", "read_key"),
            Err(OrderError::DuplicateToolCall("c".into()))
        );
        assert_eq!(
            e.tool_output("c", Err("x")),
            Err(OrderError::ToolInputNotAvailable("c".into()))
        );
        e.tool_input_available("c", "read_key", &json!({})).unwrap();
        assert_eq!(
            e.tool_input_delta("c", "x"),
            Err(OrderError::ToolInputNotStarted("c".into()))
        );
        e.tool_output("c", Err("failed")).unwrap();
        assert_eq!(
            e.tool_output("c", Ok(&json!(1))),
            Err(OrderError::ToolOutputAlreadySent("c".into()))
        );
        // finish closes the open step itself.
        let s = e.finish(FinishReason::ToolCalls).unwrap();
        assert_eq!(
            chunks(&s),
            vec![
                json!({"type":"finish-step"}),
                json!({"type":"finish","finishReason":"tool-calls"})
            ]
        );
        assert_eq!(e.start_step(), Err(OrderError::Closed));
        assert_eq!(e.error("x"), Err(OrderError::Closed));
        assert_eq!(e.done().unwrap(), DONE_FRAME);
        assert_eq!(e.done(), Err(OrderError::Closed));
    }

    #[test]
    fn one_text_id_per_run() {
        let mut e = UiStreamEncoder::new("m");
        e.start().unwrap();
        e.start_step().unwrap();
        let mut s = e.text_delta("a").unwrap();
        s += &e.text_delta("").unwrap();
        s += &e.text_end().unwrap();
        s += &e.text_end().unwrap();
        s += &e.text_delta("b").unwrap();
        let ids: Vec<_> = chunks(&s)
            .iter()
            .map(|c| format!("{} {}", c["type"], c["id"]))
            .collect();
        assert_eq!(
            ids,
            [
                r#""text-start" "text-1""#,
                r#""text-delta" "text-1""#,
                r#""text-end" "text-1""#,
                r#""text-start" "text-2""#,
                r#""text-delta" "text-2""#,
            ]
        );
    }

    #[test]
    fn error_then_done() {
        let mut e = UiStreamEncoder::new("m");
        let s = e.error("Upstream failed").unwrap();
        assert_eq!(
            s,
            "data: {\"type\":\"error\",\"errorText\":\"Upstream failed\"}\n\n"
        );
        assert_eq!(e.start(), Err(OrderError::Closed));
        assert_eq!(e.done().unwrap(), DONE_FRAME);
    }

    #[test]
    fn finish_reasons_and_headers() {
        use FinishReason::*;
        let all = [
            (Stop, "stop"),
            (ToolCalls, "tool-calls"),
            (Length, "length"),
            (ContentFilter, "content-filter"),
            (Error, "error"),
            (Other, "other"),
        ];
        for (r, s) in all {
            assert_eq!(ui_finish_reason(r), s);
        }
        assert!(HEADERS.contains(&("x-vercel-ai-ui-message-stream", "v1")));
        assert_eq!(HEADERS[0], ("content-type", "text/event-stream"));
    }
}

//! `POST /api/chat`: a streamed, multi-step conversation whose tools act on
//! the instance. The handler checks the request and answers at once with a
//! stream; the run (upstream calls, tools) lives inside that stream and is
//! driven by the client reading it, so when the client goes away the stream
//! is dropped and the run with it: the upstream request is aborted and no
//! further tool runs.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_util::Stream;
use serde_json::value::to_raw_value;
use serde_json::Value;
use worker::{Headers, Response};

use super::core::jobs::ChatRequest;
use super::core::messages::{
    assistant_message, build_conversation, chat_stream_body, tool_definitions, tool_message,
};
use super::core::openai_stream::{FinishReason, StepDecoder, StepOutcome, StreamEvent, TokenUsage};
use super::core::prompt::{build_system_prompt, KeyEntry};
use super::core::sse::{SseEvent, SseParser};
use super::core::tools::{execute, tool_error, Mode, ToolAction};
use super::core::ui_stream::{OrderError, UiStreamEncoder, HEADERS};
use super::run::record_usage;
use super::upstream::openai::OpenAi;
use crate::auth::caller::Caller;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::instance::client::InstanceClient;
use crate::instance::pages::StoredEntry;
use crate::permission::Permission;
use crate::services::{access, new_id, usage};

/// Checks the request and answers with the stream that runs the chat.
pub async fn start(ctx: &Ctx, caller: &Caller, request: ChatRequest) -> Result<Response, ApiError> {
    let ChatRequest {
        instance_id,
        messages,
        mode,
        model,
        max_steps,
    } = request;
    let openai = OpenAi::from_env(&ctx.env)?;

    let access = access::instance_data(ctx, caller, &instance_id).await?;
    let read_only = access.read_only();
    let may_write = access.role.allows(Permission::Write);
    if mode == Mode::Edit && !may_write {
        return Err(ApiError::Forbidden(
            "Edit mode requires write access to this instance".into(),
        ));
    }
    let write_refusal = if read_only {
        Some("This instance is read-only; keys cannot be changed")
    } else if !may_write {
        Some("You have read access only; keys cannot be changed")
    } else {
        None
    };
    let client = InstanceClient::with_read_only(&ctx.env, &instance_id, Some(access.flag))?;
    // The prompt lists every key: built page by page (pages.rs), so the
    // instance is never held as one document besides these entries.
    let mut entries = Vec::new();
    let mut attributes = BTreeMap::new();
    client
        .for_each_key(|key, stored| {
            let stored: StoredEntry = serde_json::from_str(stored.get())?;
            entries.push(KeyEntry::from_attributes(
                key.clone(),
                stored.value,
                &stored.attributes,
            ));
            attributes.insert(key, stored.attributes);
            Ok(())
        })
        .await?;
    let conversation = build_conversation(&build_system_prompt(&entries, mode), &messages);

    let usage_row = record_usage(ctx, caller, "/api/chat", &instance_id, Some(&model)).await?;
    let queue = Rc::new(RefCell::new(VecDeque::new()));
    let run = Run {
        openai,
        client,
        ctx: Ctx {
            env: ctx.env.clone(),
            development: ctx.development,
        },
        caller: caller.clone(),
        instance_id: instance_id.clone(),
        actor: caller.user_id.clone(),
        mode,
        write_refusal,
        model,
        max_steps,
        entries,
        attributes,
        conversation,
        encoder: UiStreamEncoder::new(new_id()?),
        queue: queue.clone(),
        usage_row,
        tokens: TokenUsage::default(),
    };
    let stream = FrameStream {
        work: Some(Box::pin(run.run())),
        queue,
    };
    let headers = Headers::new();
    for (name, value) in HEADERS {
        headers.set(name, value)?;
    }
    Ok(Response::from_stream(stream)?.with_headers(headers))
}

/// Frames waiting to be read by the client.
type Queue = Rc<RefCell<VecDeque<String>>>;

/// The response body: polling it advances the run, which queues frames.
/// Dropping it (the client went away) drops the run.
struct FrameStream<F> {
    work: Option<Pin<Box<F>>>,
    queue: Queue,
}

impl<F: Future<Output = ()>> Stream for FrameStream<F> {
    type Item = Result<Vec<u8>, worker::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(work) = this.work.as_mut() {
            if work.as_mut().poll(cx).is_ready() {
                this.work = None;
            }
        }
        let mut queue = this.queue.borrow_mut();
        if !queue.is_empty() {
            let bytes: String = queue.drain(..).collect();
            return Poll::Ready(Some(Ok(bytes.into_bytes())));
        }
        if this.work.is_none() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// Everything one chat request needs after its checks passed.
struct Run {
    openai: OpenAi,
    client: InstanceClient,
    /// To re-verify the caller's access before each write (§8).
    ctx: Ctx,
    caller: Caller,
    instance_id: String,
    actor: String,
    mode: Mode,
    /// Why writes are refused for this caller, if they are.
    write_refusal: Option<&'static str>,
    model: String,
    max_steps: u32,
    /// The keys as the tools see them, updated after each write.
    entries: Vec<KeyEntry>,
    /// Stored attributes per key, so a write keeps what it does not change.
    attributes: BTreeMap<String, Value>,
    conversation: Vec<Value>,
    encoder: UiStreamEncoder,
    queue: Queue,
    /// The request's `usage_logs` row, and the tokens its steps used so far.
    usage_row: i64,
    tokens: TokenUsage,
}

impl Run {
    async fn run(mut self) {
        let started = self.encoder.start();
        self.emit(started);
        let mut reason = FinishReason::Stop;
        for step in 1..=self.max_steps {
            let opened = self.encoder.start_step();
            self.emit(opened);
            let outcome = match self.step().await {
                Ok(outcome) => outcome,
                Err(message) => {
                    self.record_tokens().await;
                    return self.fail(&message);
                }
            };
            if let Some(used) = outcome.usage {
                self.tokens.prompt_tokens += used.prompt_tokens;
                self.tokens.completion_tokens += used.completion_tokens;
            }
            reason = outcome.finish_reason.unwrap_or(FinishReason::Stop);
            let had_calls = !outcome.tool_calls.is_empty();
            if had_calls {
                self.run_tools(outcome).await;
                reason = FinishReason::ToolCalls;
            }
            let closed = self.encoder.finish_step();
            self.emit(closed);
            if !had_calls || step == self.max_steps {
                break;
            }
        }
        // Before the end of the stream, so a client that has read it all
        // finds the tokens recorded.
        self.record_tokens().await;
        let finished = self.encoder.finish(reason);
        self.emit(finished);
        let done = self.encoder.done();
        self.emit(done);
    }

    /// Adds the tokens every step reported to the request's usage row (a
    /// failure is logged: the answer is being streamed already).
    async fn record_tokens(&self) {
        let TokenUsage {
            prompt_tokens,
            completion_tokens,
        } = self.tokens;
        if prompt_tokens == 0 && completion_tokens == 0 {
            return;
        }
        let added =
            usage::add_tokens(&self.ctx, self.usage_row, prompt_tokens, completion_tokens).await;
        if let Err(e) = added {
            crate::log_error!("chat usage tokens not recorded: {e}");
        }
    }

    /// One model call, relayed to the client as it arrives.
    async fn step(&mut self) -> Result<StepOutcome, String> {
        let tools = tool_definitions();
        let body = chat_stream_body(&self.model, &self.conversation, &tools);
        let mut upstream = self
            .openai
            .stream(&body)
            .await
            .map_err(|e| e.public_message())?;
        let mut sse = SseParser::new();
        let mut decoder = StepDecoder::new();
        loop {
            let (events, end) = match upstream.next().await.map_err(|e| e.public_message())? {
                Some(bytes) => (sse.feed(&bytes), false),
                None => (sse.finish(), true),
            };
            for event in events {
                match event {
                    SseEvent::Done => return Ok(decoder.finish()),
                    SseEvent::Data(data) => {
                        for e in decoder.push(&data) {
                            self.relay(&decoder, e)?;
                        }
                    }
                }
            }
            if end {
                return Ok(decoder.finish());
            }
        }
    }

    fn relay(&mut self, decoder: &StepDecoder, event: StreamEvent) -> Result<(), String> {
        let frames = match event {
            StreamEvent::TextDelta(text) => self.encoder.text_delta(&text),
            StreamEvent::ToolCallStarted { id, name, .. } => {
                self.encoder.tool_input_start(&id, &name)
            }
            StreamEvent::ToolArgumentsDelta { index, fragment } => match decoder.call_id(index) {
                Some(id) => self.encoder.tool_input_delta(id, &fragment),
                None => Ok(String::new()),
            },
            StreamEvent::Finished(_) => Ok(String::new()),
            StreamEvent::UpstreamError(message) => return Err(message),
        };
        self.emit(frames);
        Ok(())
    }

    /// Runs the step's tool calls in order and queues the next request.
    async fn run_tools(&mut self, outcome: StepOutcome) {
        self.conversation
            .push(assistant_message(&outcome.text, &outcome.tool_calls));
        for call in &outcome.tool_calls {
            let input = call.input_value();
            let announced = self
                .encoder
                .tool_input_available(&call.id, &call.name, &input);
            self.emit(announced);
            let action = execute(&call.name, &call.arguments, &self.entries, self.mode);
            let frames = match self.perform(&action).await {
                Ok(()) => {
                    action.apply_to(&mut self.entries);
                    self.conversation
                        .push(tool_message(&call.id, action.result()));
                    self.encoder.tool_output(&call.id, Ok(action.result()))
                }
                Err(Refused(result)) => {
                    self.conversation.push(tool_message(&call.id, &result));
                    self.encoder.tool_output(&call.id, Ok(&result))
                }
                Err(Failed(text)) => {
                    self.conversation
                        .push(tool_message(&call.id, &tool_error(text.clone())));
                    self.encoder.tool_output(&call.id, Err(&text))
                }
            };
            self.emit(frames);
        }
    }

    /// Carries out a write or delete through the instance (validation and
    /// broadcast as for any client write).
    async fn perform(&mut self, action: &ToolAction) -> Result<(), ToolFailure> {
        let (key, outcome) = match action {
            ToolAction::Reply(_) => return Ok(()),
            ToolAction::Write { write, .. } => {
                self.check_writable().await?;
                let existing = self.attributes.get(&write.key);
                let attrs = (write.key_type.is_some() || write.tags.is_some())
                    .then(|| write.attributes(existing));
                let value = to_raw_value(&write.value).map_err(|e| Failed(e.to_string()))?;
                let attrs_raw = match &attrs {
                    Some(a) => Some(to_raw_value(a).map_err(|e| Failed(e.to_string()))?),
                    None => None,
                };
                let outcome = self
                    .client
                    .set(&self.actor, &write.key, &value, attrs_raw.as_deref())
                    .await;
                if let (Ok(_), Some(a)) = (&outcome, attrs) {
                    self.attributes.insert(write.key.clone(), a);
                }
                (write.key.clone(), outcome)
            }
            ToolAction::Delete { key, .. } => {
                self.check_writable().await?;
                let outcome = self.client.delete(&self.actor, key).await;
                if outcome.is_ok() {
                    self.attributes.remove(key);
                }
                (key.clone(), outcome)
            }
        };
        match outcome {
            Ok(_) => Ok(()),
            Err(ApiError::Internal(detail)) => {
                crate::log_error!("chat tool on key {key:?} failed: {detail}");
                Err(Failed("The instance could not be reached".into()))
            }
            // Refusals the model can explain (invalid key, too large, read-only).
            Err(other) => Err(Refused(tool_error(other.public_message()))),
        }
    }

    /// Writes are refused when they were from the start, and when the
    /// caller's access was revoked or lowered since the chat began.
    async fn check_writable(&self) -> Result<(), ToolFailure> {
        if let Some(why) = self.write_refusal {
            return Err(Refused(tool_error(why)));
        }
        match access::still_may_write(&self.ctx, &self.caller, &self.instance_id).await {
            Ok(()) => Ok(()),
            Err(ApiError::Forbidden(why)) => Err(Refused(tool_error(why))),
            Err(e) => {
                crate::log_error!("chat: re-checking access failed: {e}");
                Err(Failed("Access could not be verified".into()))
            }
        }
    }

    /// A fatal error: the client sees an `error` chunk, then `[DONE]`.
    fn fail(&mut self, message: &str) {
        crate::log_warn!("chat stopped: {message}");
        let error = self.encoder.error(message);
        self.emit(error);
        let done = self.encoder.done();
        self.emit(done);
    }

    fn emit(&self, frames: Result<String, OrderError>) {
        match frames {
            Ok(f) if f.is_empty() => {}
            Ok(f) => self.queue.borrow_mut().push_back(f),
            // A provider that repeats a call id, say: drop the frame rather
            // than send the client a stream it rejects.
            Err(e) => crate::log_warn!("chat stream: skipped a chunk ({e})"),
        }
    }
}

/// Why a tool call produced no success.
enum ToolFailure {
    /// The model gets `{"error": …}` as a normal result.
    Refused(Value),
    /// The tool could not run at all (`tool-output-error`).
    Failed(String),
}
use ToolFailure::{Failed, Refused};

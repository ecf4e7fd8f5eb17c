//! The object's side of the HTTP data API (data-api.md): the internal
//! `/internal/data/*` routes over the engine, and the server-sent event
//! streams it holds. A child of `object` so it shares the object's state.

use std::rc::Rc;
use std::time::Duration;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsValue;
use worker::web_sys::{TransformStream, WritableStreamDefaultWriter};
use worker::{js_sys, Headers, Method, Request, Response, ResponseBody, Result};

use super::{json_text, now_ms, refusal, Instance};
use crate::fields::Query;
use crate::instance::data_ops::{
    decode_cursor, BatchResult, Conditions, ImportMode, ImportResult, ListQuery, MAX_PAGE_KEYS,
};
use crate::instance::engine::CLOSE_ACCESS_REVOKED;
use crate::instance::error::ProtocolError;
use crate::instance::internal::{self, Affected};
use crate::instance::sse;
use crate::permission::AccessBasis;

/// One open event stream and who it serves (for revocation and expiry).
pub(super) struct EventStream {
    writer: WritableStreamDefaultWriter,
    id: u32,
    pub user_id: String,
    pub basis: AccessBasis,
    pub development: bool,
}

/// The object's open event streams. Nothing here is persisted: a stream is
/// a request in flight, which keeps the object in memory while it lasts.
#[derive(Default)]
pub(super) struct Streams {
    open: Vec<EventStream>,
    /// Event ids, monotonic within the object's lifetime.
    next_event: u64,
    next_stream: u32,
    ticking: bool,
    /// Swallows a rejected write (the client went away; `closed` reports it).
    ignore: Option<Closure<dyn FnMut(JsValue)>>,
}

impl Streams {
    fn next_event(&mut self) -> u64 {
        self.next_event += 1;
        self.next_event
    }

    /// Writes `text`; false when the client has fallen too far behind.
    fn write(&mut self, at: usize, text: &str) -> bool {
        self.write_chunk(at, &js_sys::Uint8Array::from(text.as_bytes()))
    }

    /// Writes bytes already in JavaScript (one copy shared by every stream:
    /// readers only read them).
    fn write_chunk(&mut self, at: usize, chunk: &js_sys::Uint8Array) -> bool {
        let ignore = self
            .ignore
            .get_or_insert_with(|| Closure::new(|_: JsValue| {}));
        let stream = &self.open[at];
        let _ = stream.writer.write_with_chunk(chunk).catch(ignore);
        !matches!(stream.writer.desired_size(), Ok(Some(d)) if d < -sse::MAX_QUEUED_EVENTS)
    }

    /// Ends the streams `doomed` picks, with a last `closed` event.
    pub fn close_where(
        &mut self,
        doomed: impl Fn(&EventStream) -> bool,
        code: u16,
        reason: &str,
    ) -> u32 {
        let mut closed = 0;
        let mut at = 0;
        while at < self.open.len() {
            if doomed(&self.open[at]) {
                let id = self.next_event();
                self.write(at, &sse::closing(id, code, reason));
                let stream = self.open.remove(at);
                let _ = stream.writer.close();
                closed += 1;
            } else {
                at += 1;
            }
        }
        closed
    }

    /// Sends a broadcast frame to every stream (a cheap no-op with none).
    pub fn publish(&mut self, frame: &str) {
        if self.open.is_empty() {
            return;
        }
        let id = self.next_event();
        let text = sse::event(sse::event_name(frame), id, frame);
        let chunk = js_sys::Uint8Array::from(text.as_bytes());
        let mut slow = Vec::new();
        for at in 0..self.open.len() {
            if !self.write_chunk(at, &chunk) {
                slow.push(self.open[at].id);
            }
        }
        if !slow.is_empty() {
            self.close_where(|s| slow.contains(&s.id), 1008, "Client too slow");
        }
    }

    /// The streams a recheck concerns.
    pub fn affected<'a>(
        &'a self,
        affected: &'a Affected,
    ) -> impl Iterator<Item = &'a EventStream> + 'a {
        self.open
            .iter()
            .filter(move |s| affected.matches(&s.user_id, &s.basis))
    }

    fn forget(&mut self, id: u32) {
        self.open.retain(|s| s.id != id);
    }
}

impl Instance {
    /// `/internal/data/*`: the Worker has checked the caller's role; the
    /// object validates, applies and broadcasts.
    pub(super) async fn data(&self, mut req: Request, path: &str) -> Result<Response> {
        let query = Query::of(&req.url()?);
        let headers = req.headers();
        let actor = headers
            .get(internal::HEADER_ACTOR)?
            .unwrap_or_else(|| "system".into());
        let conditions = Conditions::parse(
            headers.get(internal::HEADER_IF_MATCH)?.as_deref(),
            headers.get(internal::HEADER_IF_NONE_MATCH)?.as_deref(),
        );
        let key = query.get("key").unwrap_or_default().to_string();
        let now = now_ms();
        match (req.method(), path) {
            (Method::Get, internal::PATH_DATA_LIST) => {
                let after = match query.get("after") {
                    Some(c) => match decode_cursor(c) {
                        Some(after) => Some(after),
                        None => return refusal(&ProtocolError::invalid("unknown cursor")),
                    },
                    None => None,
                };
                let list = ListQuery {
                    prefix: query.get("prefix").unwrap_or_default().to_string(),
                    tag: query.get("tag").map(str::to_string),
                    limit: query
                        .get("limit")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(MAX_PAGE_KEYS),
                    after,
                };
                match self.with_engine(|e| e.list(&list)) {
                    Ok(body) => json_text(body),
                    Err(e) => refusal(&e),
                }
            }
            (Method::Get, internal::PATH_DATA_KEY) => {
                match self.with_engine(|e| e.read_key(&key)) {
                    Ok(Some((body, version))) => versioned(body, version),
                    Ok(None) => json_text("null".into()),
                    Err(e) => refusal(&e),
                }
            }
            (Method::Put, internal::PATH_DATA_KEY) => {
                let body = req.text().await?;
                let put = self.with_engine(|e| e.put_key(&actor, &key, &body, &conditions, now));
                match put {
                    Ok(out) => {
                        if let Some(b) = &out.broadcast {
                            self.publish(b);
                        }
                        versioned(out.body, out.updated_at)
                    }
                    Err(e) => refusal(&e),
                }
            }
            (Method::Delete, internal::PATH_DATA_KEY) => {
                match self.with_engine(|e| e.delete_key(&actor, &key, &conditions, now)) {
                    Ok(broadcast) => {
                        if let Some(b) = &broadcast {
                            self.publish(b);
                        }
                        json_text(format!(r#"{{"deleted":{}}}"#, broadcast.is_some()))
                    }
                    Err(e) => refusal(&e),
                }
            }
            (Method::Post, internal::PATH_DATA_BATCH) => {
                let body = req.text().await?;
                match self.with_engine(|e| e.batch(&actor, &body, now)) {
                    Ok((result, broadcasts)) => self.published::<BatchResult>(result, broadcasts),
                    Err(e) => refusal(&e),
                }
            }
            (Method::Post, internal::PATH_DATA_IMPORT) => {
                let mode = match query.get("mode") {
                    Some("replace") => ImportMode::Replace,
                    _ => ImportMode::Merge,
                };
                let body = req.text().await?;
                match self.with_engine(|e| e.import_document(&actor, &body, mode, now)) {
                    Ok((result, broadcasts)) => self.published::<ImportResult>(result, broadcasts),
                    Err(e) => refusal(&e),
                }
            }
            (Method::Get, internal::PATH_DATA_EXPORT) => {
                let exported = if query.get("format") == Some("markdown") {
                    let title = query.get("title").unwrap_or_default();
                    self.with_engine(|e| e.export_markdown(title))
                } else {
                    self.with_engine(|e| e.export_json(now))
                };
                match exported {
                    Ok(body) => Response::ok(body),
                    Err(e) => refusal(&e),
                }
            }
            _ => Response::error("Not found", 404),
        }
    }

    /// Publishes a write's broadcasts in order, then answers its result.
    fn published<T: serde::Serialize>(
        &self,
        result: T,
        broadcasts: Vec<String>,
    ) -> Result<Response> {
        for b in &broadcasts {
            self.publish(b);
        }
        Response::from_json(&result)
    }

    /// `GET /internal/events`: a stream that starts with the `sync` event
    /// and then carries every broadcast.
    pub(super) fn open_stream(this: &Rc<Self>, req: &Request) -> Result<Response> {
        let headers = req.headers();
        let user_id = headers
            .get(internal::HEADER_USER_ID)?
            .ok_or_else(|| worker::Error::RustError("event stream without a user".into()))?;
        let basis = match headers.get(internal::HEADER_BASIS)? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| worker::Error::RustError(format!("basis header: {e}")))?,
            None => AccessBasis::default(),
        };
        let development = headers.get(internal::HEADER_DEVELOPMENT)?.as_deref() == Some("1");
        let sync = match this.with_engine(|e| e.sync_message()) {
            Ok(sync) => sync,
            Err(e) => return refusal(&e),
        };
        let pipe = TransformStream::new().map_err(js_error)?;
        let writer = pipe.writable().get_writer().map_err(js_error)?;
        let closed = writer.closed();
        let id = {
            let mut streams = this.streams.borrow_mut();
            streams.next_stream += 1;
            let id = streams.next_stream;
            streams.open.push(EventStream {
                writer,
                id,
                user_id,
                basis,
                development,
            });
            let event = streams.next_event();
            let at = streams.open.len() - 1;
            streams.write(at, &sse::event("sync", event, &sync));
            id
        };
        // The client went away (or the stream was closed): forget it.
        let watcher = Rc::clone(this);
        worker::wasm_bindgen_futures::spawn_local(async move {
            let _ = worker::wasm_bindgen_futures::JsFuture::from(closed).await;
            watcher.streams.borrow_mut().forget(id);
        });
        Instance::keep_streams_alive(this);
        let out = Headers::new();
        out.set("Content-Type", "text/event-stream; charset=utf-8")?;
        out.set("Cache-Control", "no-cache, no-transform")?;
        Ok(Response::from_body(ResponseBody::Stream(pipe.readable()))?.with_headers(out))
    }

    /// While any stream is open: a keep-alive comment every
    /// `KEEP_ALIVE_MS`, and the end of streams whose delegate access
    /// expired. Stops with the last stream, so an object without streams
    /// has no timer keeping it awake.
    fn keep_streams_alive(this: &Rc<Self>) {
        if std::mem::replace(&mut this.streams.borrow_mut().ticking, true) {
            return;
        }
        let this = Rc::clone(this);
        worker::wasm_bindgen_futures::spawn_local(async move {
            loop {
                worker::Delay::from(Duration::from_millis(sse::KEEP_ALIVE_MS)).await;
                let mut streams = this.streams.borrow_mut();
                let now = now_ms();
                streams.close_where(
                    |s| s.basis.expired(now),
                    CLOSE_ACCESS_REVOKED,
                    "Access revoked",
                );
                let chunk = js_sys::Uint8Array::from(sse::KEEP_ALIVE.as_bytes());
                for at in 0..streams.open.len() {
                    streams.write_chunk(at, &chunk);
                }
                if streams.open.is_empty() {
                    streams.ticking = false;
                    break;
                }
            }
        });
    }
}

/// A key's answer with its version for the Worker's `ETag`.
fn versioned(body: String, version: i64) -> Result<Response> {
    let resp = json_text(body)?;
    resp.headers()
        .set(internal::HEADER_VERSION, &version.to_string())?;
    Ok(resp)
}

fn js_error(e: JsValue) -> worker::Error {
    worker::Error::JsError(format!("{e:?}"))
}

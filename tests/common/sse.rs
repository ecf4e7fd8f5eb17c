//! A server-sent events reader over a streaming HTTP response, as a
//! browser's `EventSource` parses it (event name, data lines joined).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

/// One parsed event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

pub struct SseClient {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    /// Comment lines seen (`: keep-alive`).
    pub comments: usize,
}

/// What waiting for an event gave.
#[derive(Debug)]
pub enum Next {
    Event(SseEvent),
    Ended,
    Timeout,
}

impl SseClient {
    pub fn new(resp: reqwest::Response) -> SseClient {
        SseClient {
            stream: resp.bytes_stream().boxed(),
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next event within `wait`, the end of the stream, or a timeout.
    pub async fn next(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.parse_one() {
                return Next::Event(event);
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Next::Timeout,
                Ok(None) | Ok(Some(Err(_))) => return Next::Ended,
                Ok(Some(Ok(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
            }
        }
    }

    /// The next event, which must come within `wait`.
    pub async fn event(&mut self, wait: Duration) -> SseEvent {
        match self.next(wait).await {
            Next::Event(e) => e,
            other => panic!("expected an event within {wait:?}, got {other:?}"),
        }
    }

    /// Takes one complete event (blank-line terminated) off the buffer.
    fn parse_one(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent {
                name: "message".into(),
                id: None,
                data: String::new(),
            };
            let mut has_data = false;
            for line in block.lines() {
                if line.starts_with(':') {
                    self.comments += 1;
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event.name = v.to_string();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    event.id = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(v);
                    has_data = true;
                }
            }
            if has_data {
                return Some(event);
            }
        }
    }
}

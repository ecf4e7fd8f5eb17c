//! WebSocket clients of the sync protocol.
//!
//! Every socket gets a reader task that stamps each frame with the time it
//! came off the socket (before any parsing) and forwards it, classified, to
//! the [`Group`] the socket belongs to. A scenario owns its groups and reads
//! their frames one at a time, so all bookkeeping is single-threaded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::target::Target;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Ws, Message>;

/// The attributes every benchmark `set` carries.
pub const ATTRIBUTES: &str = r#"{"type":"text","readonly":false,"visible":true,"hardcoded":false,"template":false,"tags":[]}"#;

pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// A `set` frame for a string value.
pub fn set_frame(key: &str, value: &str) -> String {
    format!(
        r#"{{"type":"set","key":{},"value":{},"attributes":{ATTRIBUTES},"timestamp":{}}}"#,
        json_string(key),
        json_string(value),
        now_ms()
    )
}

/// `prefix` followed by filler up to exactly `len` bytes (or `prefix` alone
/// when it is already longer).
pub fn padded(prefix: &str, len: usize) -> String {
    let mut s = String::with_capacity(len.max(prefix.len()));
    s.push_str(prefix);
    let filler = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut i = 0;
    while s.len() < len {
        s.push(filler[i % filler.len()] as char);
        i += 1;
    }
    s
}

/// What a frame from the server was.
#[derive(Debug)]
pub enum Kind {
    AuthSuccess,
    Sync {
        bytes: usize,
        data: Map<String, Value>,
    },
    KeyUpdated {
        key: String,
        value: Value,
        bytes: usize,
    },
    KeyDeleted,
    Cleared,
    ServerError(String),
    Pong,
    Ack,
    Other,
    NonJson(String),
    Binary,
    /// The server's close frame.
    Closed(Option<u16>, String),
    /// The stream ended (after a close frame or without one).
    Ended,
    SocketError(String),
}

#[derive(Debug)]
pub struct Frame {
    pub sock: usize,
    pub at: Instant,
    pub kind: Kind,
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    ty: Option<String>,
    key: Option<String>,
    value: Option<Value>,
    data: Option<Map<String, Value>>,
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

fn classify(text: &str) -> Kind {
    let Ok(msg) = serde_json::from_str::<Incoming>(text) else {
        return Kind::NonJson(truncate(text, 200));
    };
    match msg.ty.as_deref() {
        Some("key_updated") => Kind::KeyUpdated {
            key: msg.key.unwrap_or_default(),
            value: msg.value.unwrap_or(Value::Null),
            bytes: text.len(),
        },
        Some("sync") => Kind::Sync {
            bytes: text.len(),
            data: msg.data.unwrap_or_default(),
        },
        Some("auth_success") => Kind::AuthSuccess,
        Some("key_deleted") => Kind::KeyDeleted,
        Some("cleared") => Kind::Cleared,
        Some("error") => Kind::ServerError(truncate(text, 300)),
        Some("pong") => Kind::Pong,
        Some("ack") => Kind::Ack,
        Some(_) | None => Kind::Other,
    }
}

async fn read_loop(mut stream: SplitStream<Ws>, sock: usize, tx: UnboundedSender<Frame>) {
    loop {
        let next = stream.next().await;
        let at = Instant::now();
        let (kind, last) = match next {
            Some(Ok(Message::Text(t))) => (classify(t.as_str()), false),
            Some(Ok(Message::Binary(_))) => (Kind::Binary, false),
            Some(Ok(Message::Close(f))) => (
                Kind::Closed(
                    f.as_ref().map(|f| u16::from(f.code)),
                    f.map(|f| f.reason.to_string()).unwrap_or_default(),
                ),
                false,
            ),
            Some(Ok(_)) => continue,
            Some(Err(e)) => (Kind::SocketError(e.to_string()), true),
            None => (Kind::Ended, true),
        };
        if tx.send(Frame { sock, at, kind }).is_err() || last {
            return;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    /// We sent a close frame and wait for the server's.
    Closing,
    Closed,
}

pub struct Conn {
    sink: Option<Sink>,
    reader: JoinHandle<()>,
    pub state: State,
    /// When the connection attempt started.
    pub started: Instant,
    pub synced: Option<Instant>,
    /// A close of ours was already accounted for.
    closed_by_us: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Opens one socket to `/sync/<instance>`; frames go to `tx` as socket `sock`.
pub async fn open(
    target: &Target,
    instance: &str,
    sock: usize,
    tx: UnboundedSender<Frame>,
    timeout: Duration,
) -> Result<Conn, String> {
    let started = Instant::now();
    let url = target.sync_url(instance);
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad WebSocket URL {url}: {e}"))?;
    if let Some(auth) = &target.auth {
        let v = HeaderValue::from_str(auth).map_err(|_| "bad token".to_string())?;
        req.headers_mut().insert("authorization", v);
    }
    let connecting = tokio_tungstenite::connect_async_with_config(req, None, true);
    let (ws, _resp) = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(format!("connect {url}: {e}")),
        Err(_) => return Err(format!("connect {url}: no upgrade within {timeout:?}")),
    };
    let (sink, stream) = ws.split();
    let reader = tokio::spawn(read_loop(stream, sock, tx));
    Ok(Conn {
        sink: Some(sink),
        reader,
        state: State::Open,
        started,
        synced: None,
        closed_by_us: false,
    })
}

/// A struct of `u64` counters that add up across groups: each field is
/// named once, for the struct and for `merge`.
macro_rules! counters {
    ($(#[$attr:meta])* pub struct $name:ident { $($(#[$doc:meta])* $field:ident),+ $(,)? }) => {
        $(#[$attr])*
        pub struct $name {
            $($(#[$doc])* pub $field: u64,)+
        }

        impl $name {
            pub fn merge(&mut self, o: &$name) {
                $(self.$field += o.$field;)+
            }
        }
    };
}

counters! {
    /// What went wrong or was odd, counted per scenario.
    #[derive(Debug, Clone, Default, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Counts {
        server_errors, parse_errors, binary_frames, duplicate_deliveries, reordered_deliveries,
        dropped_deliveries, value_mismatches, unmatched_key_updates, unexpected_closes,
        client_errors, connect_failures, key_updated, syncs, auth_success, other_messages,
    }
}

impl Counts {
    /// Warnings a reader should see: everything that is not plain traffic.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let mut add = |n: u64, what: &str| {
            if n > 0 {
                w.push(format!("{n} {what}"));
            }
        };
        add(self.server_errors, "server error messages");
        add(self.parse_errors, "non-JSON frames");
        // Binary frames are MindCache 3 sync messages (yjs.md: a Step1
        // ends every connect, updates follow on instances with a Y
        // document): counted, not a warning.
        add(self.duplicate_deliveries, "duplicate deliveries");
        add(self.reordered_deliveries, "reordered deliveries");
        add(self.dropped_deliveries, "dropped deliveries");
        add(self.value_mismatches, "key_updated with a wrong value");
        add(self.unmatched_key_updates, "unexpected key_updated");
        add(self.unexpected_closes, "sockets closed by the server");
        add(self.client_errors, "socket errors");
        add(self.connect_failures, "failed connection attempts");
        w
    }
}

counters! {
    #[derive(Debug, Clone, Default, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CloseStats {
        sockets, closed_cleanly, terminated_after_grace,
        /// Our close was answered by the connection ending without a close frame.
        ended_without_close_frame,
        already_closed,
    }
}

/// Sockets whose frames are read together (usually: one instance).
pub struct Group {
    tx: UnboundedSender<Frame>,
    rx: UnboundedReceiver<Frame>,
    pub conns: Vec<Conn>,
    pub counts: Counts,
    pub server_error_samples: Vec<String>,
    pub client_error_samples: Vec<String>,
    pub close: CloseStats,
}

impl Default for Group {
    fn default() -> Self {
        Self::new()
    }
}

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

impl Group {
    pub fn new() -> Group {
        let (tx, rx) = unbounded_channel();
        Group {
            tx,
            rx,
            conns: Vec::new(),
            counts: Counts::default(),
            server_error_samples: Vec::new(),
            client_error_samples: Vec::new(),
            close: CloseStats::default(),
        }
    }

    fn client_error(&mut self, e: String) {
        self.counts.client_errors += 1;
        if self.client_error_samples.len() < 10 {
            self.client_error_samples.push(e);
        }
    }

    /// Opens `n` sockets, `concurrency` at a time; returns their indices.
    pub async fn connect(
        &mut self,
        target: &Target,
        instance: &str,
        n: usize,
        concurrency: usize,
    ) -> Result<Vec<usize>, String> {
        let mut ids = Vec::with_capacity(n);
        let mut remaining = n;
        while remaining > 0 {
            let batch = remaining.min(concurrency.max(1));
            let base = self.conns.len();
            let opens = (0..batch)
                .map(|i| open(target, instance, base + i, self.tx.clone(), CONNECT_TIMEOUT));
            let results = futures_util::future::join_all(opens).await;
            let failures: Vec<String> = results
                .iter()
                .filter_map(|r| r.as_ref().err().cloned())
                .collect();
            if let Some(e) = failures.first() {
                // Socket numbers were handed out by position: drop the whole
                // batch rather than leave them misnumbered.
                self.counts.connect_failures += failures.len() as u64;
                return Err(format!(
                    "{} of {batch} connections failed, first: {e}",
                    failures.len()
                ));
            }
            for c in results.into_iter().flatten() {
                ids.push(self.conns.len());
                self.conns.push(c);
            }
            remaining -= batch;
        }
        Ok(ids)
    }

    /// Next frame, or None at `deadline`. Counts what every scenario counts.
    pub async fn recv(&mut self, deadline: Instant) -> Option<Frame> {
        let f = tokio::time::timeout_at(deadline.into(), self.rx.recv())
            .await
            .ok()??;
        let idx = f.sock;
        match &f.kind {
            Kind::ServerError(t) => {
                self.counts.server_errors += 1;
                if self.server_error_samples.len() < 10 {
                    self.server_error_samples.push(t.clone());
                }
            }
            Kind::NonJson(t) => {
                self.counts.parse_errors += 1;
                let t = format!("socket {idx}: non-JSON frame: {t}");
                if self.client_error_samples.len() < 10 {
                    self.client_error_samples.push(t);
                }
            }
            Kind::Binary => self.counts.binary_frames += 1,
            Kind::KeyUpdated { .. } => self.counts.key_updated += 1,
            Kind::Sync { .. } => {
                self.counts.syncs += 1;
                if let Some(c) = self.conns.get_mut(idx) {
                    c.synced.get_or_insert(f.at);
                }
            }
            Kind::AuthSuccess => self.counts.auth_success += 1,
            Kind::Other | Kind::KeyDeleted | Kind::Cleared | Kind::Ack | Kind::Pong => {
                self.counts.other_messages += 1
            }
            Kind::Closed(code, reason) => {
                let state = self.conns.get(idx).map(|c| c.state);
                match state {
                    Some(State::Open) => {
                        self.counts.unexpected_closes += 1;
                        let msg = format!("socket {idx} closed by the server: {code:?} {reason}");
                        if self.client_error_samples.len() < 10 {
                            self.client_error_samples.push(msg);
                        }
                    }
                    Some(State::Closing) => self.close.closed_cleanly += 1,
                    _ => {}
                }
                if let Some(c) = self.conns.get_mut(idx) {
                    c.state = State::Closed;
                }
            }
            Kind::Ended => {
                if let Some(c) = self.conns.get_mut(idx) {
                    match c.state {
                        State::Open => self.counts.unexpected_closes += 1,
                        State::Closing => self.close.ended_without_close_frame += 1,
                        State::Closed => {}
                    }
                    c.state = State::Closed;
                }
            }
            Kind::SocketError(e) => {
                let state = self.conns.get(idx).map(|c| c.state);
                match state {
                    Some(State::Open) => {
                        self.client_error(format!("socket {idx}: {e}"));
                        self.counts.unexpected_closes += 1;
                    }
                    Some(State::Closing) => self.close.ended_without_close_frame += 1,
                    _ => {}
                }
                if let Some(c) = self.conns.get_mut(idx) {
                    c.state = State::Closed;
                }
            }
        }
        Some(f)
    }

    /// Reads frames until `done` says so (true) or `deadline` passes (false).
    pub async fn pump<F: FnMut(&Frame) -> bool>(&mut self, deadline: Instant, mut done: F) -> bool {
        while let Some(f) = self.recv(deadline).await {
            if done(&f) {
                return true;
            }
        }
        false
    }

    /// Waits until every socket in `ids` has received `sync`.
    pub async fn wait_synced(&mut self, ids: &[usize], deadline: Instant) -> Result<(), String> {
        let missing = |g: &Group| ids.iter().filter(|i| g.conns[**i].synced.is_none()).count();
        while missing(self) > 0 {
            if self.recv(deadline).await.is_none() {
                return Err(format!(
                    "only {}/{} sockets received sync in time",
                    ids.len() - missing(self),
                    ids.len()
                ));
            }
        }
        Ok(())
    }

    fn sink(&mut self, idx: usize) -> Result<&mut Sink, String> {
        self.conns
            .get_mut(idx)
            .and_then(|c| c.sink.as_mut())
            .ok_or_else(|| format!("socket {idx} has no writer"))
    }

    /// Sends one text frame and flushes it.
    pub async fn send(&mut self, idx: usize, text: String) -> Result<(), String> {
        let sink = self.sink(idx)?;
        match tokio::time::timeout(Duration::from_secs(15), sink.send(Message::text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("send on socket {idx}: {e}")),
            Err(_) => Err(format!("send on socket {idx}: stuck for 15 s")),
        }
    }

    /// Queues frames and flushes once.
    pub async fn send_batch(&mut self, idx: usize, frames: Vec<String>) -> Result<(), String> {
        let sink = self.sink(idx)?;
        send_all(sink, frames)
            .await
            .map_err(|e| format!("send on socket {idx}: {e}"))
    }

    /// Takes the writer of a socket so another task can drive it.
    pub fn take_sink(&mut self, idx: usize) -> Option<Sink> {
        self.conns.get_mut(idx).and_then(|c| c.sink.take())
    }

    pub fn put_sink(&mut self, idx: usize, sink: Sink) {
        if let Some(c) = self.conns.get_mut(idx) {
            c.sink = Some(sink);
        }
    }

    /// Closes the given sockets (close frame; the server's close frame is
    /// waited for up to `grace`, after that the socket is dropped).
    pub async fn close_some(&mut self, ids: &[usize], grace: Duration) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "bench done".into(),
        };
        for &i in ids {
            self.close.sockets += 1;
            let Some(c) = self.conns.get_mut(i) else {
                continue;
            };
            c.closed_by_us = true;
            if c.state != State::Open {
                self.close.already_closed += 1;
                continue;
            }
            c.state = State::Closing;
            if let Some(sink) = c.sink.as_mut() {
                let sent = tokio::time::timeout(
                    Duration::from_secs(2),
                    sink.send(Message::Close(Some(frame.clone()))),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    c.state = State::Closed;
                    c.reader.abort();
                    self.close.terminated_after_grace += 1;
                }
            }
        }
        let deadline = Instant::now() + grace;
        let closing = |g: &Group| {
            ids.iter()
                .any(|i| g.conns.get(*i).map(|c| c.state) == Some(State::Closing))
        };
        while closing(self) {
            if self.recv(deadline).await.is_none() {
                break;
            }
        }
        for &i in ids {
            if let Some(c) = self.conns.get_mut(i) {
                if c.state == State::Closing {
                    c.state = State::Closed;
                    c.reader.abort();
                    c.sink = None;
                    self.close.terminated_after_grace += 1;
                }
            }
        }
    }

    pub async fn close_all(&mut self, grace: Duration) {
        let ids: Vec<usize> = (0..self.conns.len())
            .filter(|i| !self.conns[*i].closed_by_us)
            .collect();
        self.close_some(&ids, grace).await;
    }
}

/// Feeds frames into a writer and flushes once at the end.
pub async fn send_all(sink: &mut Sink, frames: Vec<String>) -> Result<(), String> {
    let work = async {
        for f in frames {
            sink.feed(Message::text(f)).await?;
        }
        sink.flush().await
    };
    match tokio::time::timeout(Duration::from_secs(20), work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("writer stuck for 20 s".to_string()),
    }
}

/// Delivery bookkeeping for keys that are each set once: which socket got
/// which key when, and what was odd (duplicates, reordering, wrong values,
/// keys never sent, deliveries that never came).
pub struct Tracker {
    sockets: usize,
    index: HashMap<String, usize>,
    pub values: Vec<String>,
    pub sent_at: Vec<Option<Instant>>,
    pub arrivals: Vec<Vec<Option<Instant>>>,
    pub delivered: Vec<usize>,
    last_seq: Vec<Option<usize>>,
    pub counts: Counts,
}

pub enum Delivery {
    /// The first delivery of key `seq` to this socket; `complete` when every
    /// socket now has it.
    New {
        seq: usize,
        complete: bool,
    },
    Duplicate,
    Unmatched,
}

impl Tracker {
    pub fn new(sockets: usize) -> Tracker {
        Tracker {
            sockets,
            index: HashMap::new(),
            values: Vec::new(),
            sent_at: Vec::new(),
            arrivals: Vec::new(),
            delivered: Vec::new(),
            last_seq: vec![None; sockets],
            counts: Counts::default(),
        }
    }

    pub fn register(&mut self, key: String, value: String) -> usize {
        let seq = self.values.len();
        self.index.insert(key, seq);
        self.values.push(value);
        self.sent_at.push(None);
        self.arrivals.push(vec![None; self.sockets]);
        self.delivered.push(0);
        seq
    }

    pub fn on_key_updated(
        &mut self,
        sock: usize,
        key: &str,
        value: &Value,
        at: Instant,
    ) -> Delivery {
        let Some(&seq) = self.index.get(key) else {
            self.counts.unmatched_key_updates += 1;
            return Delivery::Unmatched;
        };
        if sock >= self.sockets {
            self.counts.unmatched_key_updates += 1;
            return Delivery::Unmatched;
        }
        if self.arrivals[seq][sock].is_some() {
            self.counts.duplicate_deliveries += 1;
            return Delivery::Duplicate;
        }
        if value.as_str() != Some(self.values[seq].as_str()) {
            self.counts.value_mismatches += 1;
        }
        match self.last_seq[sock] {
            Some(last) if last > seq => self.counts.reordered_deliveries += 1,
            _ => self.last_seq[sock] = Some(seq),
        }
        self.arrivals[seq][sock] = Some(at);
        self.delivered[seq] += 1;
        Delivery::New {
            seq,
            complete: self.delivered[seq] >= self.sockets,
        }
    }

    /// (first, last) arrival of `seq` over all sockets.
    pub fn first_last(&self, seq: usize) -> (Option<Instant>, Option<Instant>) {
        let it = self.arrivals[seq].iter().flatten();
        (it.clone().min().copied(), it.max().copied())
    }

    /// Counts every delivery that never came (for the keys sent so far).
    pub fn finish(&mut self) {
        let sent = self.sent_at.iter().filter(|s| s.is_some()).count();
        let missing: usize = self.delivered[..sent]
            .iter()
            .map(|d| self.sockets.saturating_sub(*d))
            .sum();
        self.counts.dropped_deliveries += missing as u64;
    }
}

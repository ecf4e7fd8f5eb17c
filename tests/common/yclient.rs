//! A MindCache 3 client for tests (yjs.md): a real Y document (`yrs`)
//! synced over binary frames that carry one y-protocols sync message each
//! — written here from the spec, not shared with the server's code.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, ClientID, Doc, GetString, In, Map, MapPrelim, MapRef, OffsetKind, Options, Out, ReadTxn,
    Text, Transact, TransactionMut, Update, WriteTxn,
};

use super::server::TestServer;

pub const ROOT: &str = "mindcache";

pub struct YClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub doc: Doc,
    /// JSON text frames received, in order.
    pub json: Vec<Value>,
    /// Binary updates (Step2/Update) received.
    pub updates: usize,
    /// A Step2 arrived (the first sync is done).
    pub synced: bool,
    /// The server closed the socket: its code and reason.
    pub closed: Option<(u16, String)>,
}

fn varuint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varuint(buf: &[u8], at: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = buf[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

pub fn frame(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varuint(&mut out, kind);
    varuint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

pub fn new_doc() -> Doc {
    let mut id = [0u8; 4];
    getrandom::fill(&mut id).unwrap();
    Doc::with_options(Options {
        client_id: ClientID::new(u64::from(u32::from_le_bytes(id).max(1))),
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

impl YClient {
    /// Connects to `/sync/{path}` and, like a 3.x client, sends its Step1
    /// at once; then waits for the server's Step2.
    pub async fn connect(server: &TestServer, path: &str) -> YClient {
        YClient::connect_with(server, path, new_doc()).await
    }

    /// The same with an existing document (a client coming back).
    pub async fn connect_with(server: &TestServer, path: &str, doc: Doc) -> YClient {
        let url = server.ws_url(&format!("/sync/{path}"));
        let (stream, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let mut c = YClient {
            stream,
            doc,
            json: Vec::new(),
            updates: 0,
            synced: false,
            closed: None,
        };
        let sv = c.doc.transact().state_vector().encode_v1();
        c.send(frame(0, &sv)).await;
        c.until("the server's Step2", |c| c.synced).await;
        c
    }

    pub async fn send(&mut self, bytes: Vec<u8>) {
        self.stream
            .send(Message::binary(bytes))
            .await
            .expect("send binary frame");
    }

    /// Handles what arrives within `wait`; false when nothing did.
    pub async fn pump_once(&mut self, wait: Duration) -> bool {
        let Ok(next) = tokio::time::timeout(wait, self.stream.next()).await else {
            return false;
        };
        match next {
            Some(Ok(Message::Binary(b))) => {
                let mut at = 0;
                let kind = read_varuint(&b, &mut at);
                let len = read_varuint(&b, &mut at) as usize;
                assert_eq!(at + len, b.len(), "one message per frame");
                let payload = &b[at..];
                match kind {
                    0 => {
                        let sv = yrs::StateVector::decode_v1(payload).expect("state vector");
                        let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                        self.send(frame(1, &diff)).await;
                    }
                    1 | 2 => {
                        let u = Update::decode_v1(payload).expect("v1 update");
                        self.doc.transact_mut().apply_update(u).expect("apply");
                        self.updates += 1;
                        if kind == 1 {
                            self.synced = true;
                        }
                    }
                    other => panic!("unknown sync message {other}"),
                }
            }
            Some(Ok(Message::Text(t))) => {
                self.json
                    .push(serde_json::from_str(t.as_str()).expect("JSON text frame"));
            }
            Some(Ok(Message::Close(frame))) => {
                self.closed = Some(frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                }));
                return false;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket failed: {e}"),
            None => {
                self.closed.get_or_insert((1006, String::new()));
                return false;
            }
        }
        true
    }

    /// Waits (up to `limit`) for the server to close the socket.
    pub async fn wait_closed(&mut self, limit: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "not closed within {limit:?}");
            self.pump_once(left).await;
        }
        self.closed.clone().unwrap()
    }

    /// Handles frames until `done`, failing after 10 s.
    pub async fn until(&mut self, what: &str, done: impl Fn(&YClient) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero() && self.closed.is_none(),
                "waited for {what} (closed: {:?}); JSON seen: {:?}",
                self.closed,
                self.json
            );
            self.pump_once(left).await;
        }
    }

    /// Handles frames until none arrive for `quiet`.
    pub async fn settle(&mut self, quiet: Duration) {
        while self.pump_once(quiet).await {}
    }

    /// Edits the document and sends the update.
    pub async fn edit(&mut self, f: impl FnOnce(&mut TransactionMut, &MapRef)) {
        let update = {
            let mut txn = self.doc.transact_mut();
            let root = txn.get_or_insert_map(ROOT);
            f(&mut txn, &root);
            txn.encode_update_v1()
        };
        self.send(frame(2, &update)).await;
    }

    /// Sets a key as a 3.x client does: a filled Y.Map.
    pub async fn set(&mut self, key: &str, value: Value, attributes: Value) {
        let key = key.to_owned();
        self.edit(move |txn, root| {
            root.insert(txn, key, entry(In::Any(any(&value)), &attributes));
        })
        .await;
    }

    /// The document as JSON: `{key: {value, attributes}}`.
    pub fn state(&self) -> Value {
        let root = self.doc.get_or_insert_map(ROOT);
        let json = root.to_json(&self.doc.transact());
        serde_json::to_value(&json).unwrap()
    }

    pub fn value(&self, key: &str) -> Option<Value> {
        self.state().get(key).map(|e| e["value"].clone())
    }

    /// A `document` key's Y.Text.
    pub fn text(&self, key: &str) -> Option<yrs::TextRef> {
        let root = self.doc.get_or_insert_map(ROOT);
        let txn = self.doc.transact();
        match root.get(&txn, key) {
            Some(Out::YMap(m)) => match m.get(&txn, "value") {
                Some(Out::YText(t)) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn text_string(&self, key: &str) -> Option<String> {
        let t = self.text(key)?;
        Some(t.get_string(&self.doc.transact()))
    }

    /// Inserts into a `document` key's text and sends the update.
    pub async fn insert_text(&mut self, key: &str, at: u32, chunk: &str) {
        let t = self.text(key).expect("a document key");
        let update = {
            let mut txn = self.doc.transact_mut();
            t.insert(&mut txn, at, chunk);
            txn.encode_update_v1()
        };
        self.send(frame(2, &update)).await;
    }

    /// The next JSON `error` (frames before it are handled).
    pub async fn next_error(&mut self) -> Value {
        let seen = self.json.len();
        self.until("an error", |c| {
            c.json[seen..].iter().any(|m| m["type"] == "error")
        })
        .await;
        self.json[seen..]
            .iter()
            .find(|m| m["type"] == "error")
            .cloned()
            .unwrap()
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// A key's entry as 3.x clients write it: a map with `value` and
/// `attributes`, filled before it is inserted (one update).
pub fn entry(value: In, attributes: &Value) -> MapPrelim {
    let mut fill = MapPrelim::default();
    fill.insert("value".into(), value);
    fill.insert("attributes".into(), In::Any(any(attributes)));
    fill
}

pub fn any(v: &Value) -> Any {
    Any::from_json(&v.to_string()).unwrap()
}

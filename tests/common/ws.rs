//! A WebSocket client for tests: JSON frames in and out, with timeouts so
//! a missing message fails the test instead of hanging it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::server::TestServer;

pub const WAIT: Duration = Duration::from_secs(10);

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Binary frames received (and skipped): MindCache 3's (yjs.md).
    pub binary_frames: usize,
}

/// What ended a wait for a message.
#[derive(Debug)]
pub enum Event {
    Json(Value),
    Closed(Option<(u16, String)>),
    Timeout,
}

impl WsClient {
    pub async fn connect_with_headers(url: &str, headers: &[(&str, &str)]) -> WsClient {
        Self::try_connect(url, headers)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    /// Connects to `/sync/{path}` on `server` (`path`: an instance id, maybe
    /// with a query), with `key` as the Bearer credential when given, or
    /// returns the HTTP status the server refused with.
    pub async fn try_connect_to(
        server: &TestServer,
        path: &str,
        key: Option<&str>,
    ) -> Result<WsClient, String> {
        let url = server.ws_url(&format!("/sync/{path}"));
        let auth = key.map(super::api::authorization);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        Self::try_connect(&url, &headers).await
    }

    /// [`WsClient::try_connect_to`], failing the test when refused.
    pub async fn connect_to(server: &TestServer, path: &str, key: Option<&str>) -> WsClient {
        Self::try_connect_to(server, path, key)
            .await
            .unwrap_or_else(|e| panic!("connect /sync/{path}: {e}"))
    }

    /// Connects and reads `auth_success` then `sync`: the client and the
    /// sync message.
    pub async fn join(server: &TestServer, path: &str, key: Option<&str>) -> (WsClient, Value) {
        let mut c = Self::connect_to(server, path, key).await;
        let sync = c.handshake().await;
        (c, sync)
    }

    /// Connects, or returns the HTTP status the server refused with.
    pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, String> {
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(http_name(name), value.parse().expect("header value"));
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _)) => Ok(WsClient {
                stream,
                binary_frames: 0,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let status = resp.status().as_u16();
                if !body.is_empty() {
                    return Err(format!("{status} {body}"));
                }
                // The client library keeps only the body bytes that came
                // with the headers; on a loaded machine that can be none.
                // Most refusals are the same when asked again: read it
                // whole (a one-time token's may not be: then keep none).
                let http_url = url.replacen("ws", "http", 1);
                match upgrade_refusal(&http_url, headers).await {
                    (again, body) if again == status => Err(format!("{status} {body}")),
                    _ => Err(format!("{status} ")),
                }
            }
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn send(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sets `key` to `value`; the `key_updated` that must come next.
    pub async fn set(&mut self, key: &str, value: Value) -> Value {
        let set = serde_json::json!({"type": "set", "key": key, "value": value});
        self.send(&set).await;
        self.recv_type("key_updated").await
    }

    /// Sets `k` to 1, which must be refused; the error's code.
    pub async fn set_refused(&mut self) -> String {
        let set = serde_json::json!({"type": "set", "key": "k", "value": 1});
        self.send(&set).await;
        let error = self.recv_type("error").await;
        error["code"].as_str().unwrap().to_string()
    }

    /// Sends if the socket still takes frames; whether it did.
    pub async fn try_send(&mut self, value: &Value) -> bool {
        self.stream
            .send(Message::text(value.to_string()))
            .await
            .is_ok()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::text(text.to_string()))
            .await
            .expect("send text frame");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.stream
            .send(Message::binary(bytes.to_vec()))
            .await
            .expect("send binary frame");
    }

    /// The next event within `wait` (pings and pongs of the transport skipped).
    pub async fn next_event(&mut self, wait: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.stream.next()).await else {
                return Event::Timeout;
            };
            match next {
                Some(Ok(Message::Text(t))) => {
                    let value = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("server sent non-JSON {t:?}: {e}"));
                    return Event::Json(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Event::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                // MindCache 3's sync messages (yjs.md): a 2.0 client ignores them.
                Some(Ok(Message::Binary(_))) => {
                    self.binary_frames += 1;
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Event::Closed(None),
            }
        }
    }

    /// The next JSON message, failing the test when none comes in time.
    pub async fn recv(&mut self) -> Value {
        match self.next_event(WAIT).await {
            Event::Json(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next message, which must be of type `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], kind, "expected {kind}, got {v}");
        v
    }

    /// Asserts that nothing arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        match self.next_event(wait).await {
            Event::Timeout => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Reads `auth_success` then `sync`, returning the sync message.
    /// Past `auth_success` and `sync`; the permission the socket got.
    pub async fn handshake_permission(&mut self) -> String {
        let hello = self.recv_type("auth_success").await;
        self.recv_type("sync").await;
        hello["permission"].as_str().unwrap_or_default().to_string()
    }

    pub async fn handshake(&mut self) -> Value {
        self.recv_type("auth_success").await;
        self.recv_type("sync").await
    }

    /// Sends a close frame and returns the server's answering close frame.
    pub async fn close(&mut self, code: u16, reason: &str) -> Option<(u16, String)> {
        self.stream
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_string().into(),
            })))
            .await
            .expect("send close");
        loop {
            match self.next_event(WAIT).await {
                Event::Closed(frame) => return frame,
                Event::Json(_) => continue,
                Event::Timeout => panic!("server did not answer the close frame"),
            }
        }
    }

    /// Waits for the server to close the socket, returning its close frame.
    pub async fn expect_closed(&mut self) -> Option<(u16, String)> {
        loop {
            match self.next_event(WAIT).await {
                Event::Closed(frame) => return frame,
                Event::Json(_) => continue,
                Event::Timeout => panic!("server did not close the socket"),
            }
        }
    }
}

fn http_name(name: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
        .expect("header name")
}

/// Sends a WebSocket upgrade request over plain HTTP and returns the
/// refusal's status and JSON body (for asserting on the error message,
/// which a WebSocket client library may not hand back).
pub async fn upgrade_refusal(http_url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .get(http_url)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("upgrade request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

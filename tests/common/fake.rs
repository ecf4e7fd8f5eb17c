//! A tiny programmable HTTP server on 127.0.0.1 standing in for Clerk's
//! JWKS, OpenAI and Fireworks. Tests register handlers by method and path;
//! every request is recorded so a test can assert what the server sent.
//! A response is a status, headers and body chunks written with pauses,
//! which is how streamed answers (server-sent events) are imitated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct FakeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<Vec<u8>>,
    pub pause: Duration,
    /// How long the server waits before answering at all.
    pub delay: Duration,
}

impl FakeResponse {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        FakeResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![body.to_string().into_bytes()],
            pause: Duration::ZERO,
            delay: Duration::ZERO,
        }
    }

    /// A status with no body.
    pub fn empty(status: u16) -> Self {
        FakeResponse {
            status,
            headers: Vec::new(),
            chunks: Vec::new(),
            pause: Duration::ZERO,
            delay: Duration::ZERO,
        }
    }

    /// The same answer, sent only after `delay` (a slow server).
    pub fn after(self, delay: Duration) -> Self {
        FakeResponse { delay, ..self }
    }

    /// A streamed body sent chunk by chunk, `pause` apart.
    pub fn stream(content_type: &str, chunks: Vec<Vec<u8>>, pause: Duration) -> Self {
        FakeResponse {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            chunks,
            pause,
            delay: Duration::ZERO,
        }
    }
}

type Handler = Arc<dyn Fn(&RecordedRequest) -> FakeResponse + Send + Sync>;

#[derive(Default)]
struct State {
    routes: HashMap<(String, String), Handler>,
    requests: Vec<RecordedRequest>,
}

#[derive(Clone)]
pub struct FakeUpstream {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeUpstream {
    /// Starts the server on its own thread and runtime, so it outlives any
    /// single test's runtime.
    pub fn start() -> FakeUpstream {
        FakeUpstream::start_on(0)
    }

    /// Starts the server on `port` (0: any free one).
    pub fn start_on(port: u16) -> FakeUpstream {
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_state = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("fake upstream runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind(("127.0.0.1", port))
                    .await
                    .expect("bind fake");
                let port = listener.local_addr().expect("fake addr").port();
                tx.send(port).expect("report fake port");
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(serve(socket, thread_state.clone()));
                }
            });
        });
        let port = rx.recv().expect("fake upstream port");
        FakeUpstream { port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn on<F>(&self, method: &str, path: &str, handler: F)
    where
        F: Fn(&RecordedRequest) -> FakeResponse + Send + Sync + 'static,
    {
        let mut state = self.state.lock().expect("fake state");
        state
            .routes
            .insert((method.to_string(), path.to_string()), Arc::new(handler));
    }

    /// Every request received so far on `path`, oldest first.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        let state = self.state.lock().expect("fake state");
        state
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

async fn serve(socket: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let path = target.split('?').next().unwrap_or("/").to_string();

    let mut headers = HashMap::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((k, v)) = trimmed.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).await.is_err() {
        return;
    }

    let request = RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        headers,
        body,
    };
    let handler = {
        let mut state = state.lock().expect("fake state");
        state.requests.push(request.clone());
        state.routes.get(&(method, path)).cloned()
    };
    let response = match handler {
        Some(h) => h(&request),
        None => FakeResponse::json(404, &serde_json::json!({"error": "no fake route"})),
    };

    tokio::time::sleep(response.delay).await;
    // No Content-Length: the body ends when the connection closes, which
    // lets a handler stream chunks with pauses in between.
    let mut head = format!("HTTP/1.1 {} Fake\r\nconnection: close\r\n", response.status);
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if write.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for chunk in &response.chunks {
        if write.write_all(chunk).await.is_err() || write.flush().await.is_err() {
            return;
        }
        if !response.pause.is_zero() {
            tokio::time::sleep(response.pause).await;
        }
    }
    let _ = write.shutdown().await;
}

//! The Worker's edge against the real runtime: health in both modes, CORS,
//! JSON errors, the development-mode safety net, a restart on the same
//! state, and the production dry-run deploy.

mod common;

use common::api::answer;
use common::fake::{FakeResponse, FakeUpstream};
use common::server::{
    dev_server, prod_server, repo_root, try_run_wrangler, ServerOptions, TestServer,
};
use reqwest::header::HeaderMap;
use reqwest::RequestBuilder;
use serde_json::{json, Value};

fn assert_cors(h: &HeaderMap) {
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    );
    assert_eq!(
        h["access-control-allow-headers"],
        "Content-Type, Authorization, If-Match, If-None-Match, Last-Event-ID"
    );
    assert_eq!(
        h["access-control-expose-headers"],
        "ETag, Content-Disposition, X-Request-Id"
    );
}

/// Sends `req`; the answer's status, headers and JSON body.
async fn answer_and_headers(req: RequestBuilder) -> (u16, HeaderMap, Value) {
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap())
}

fn get(url: String) -> RequestBuilder {
    reqwest::Client::new().get(url)
}

#[tokio::test]
async fn health_in_development() {
    let (status, headers, body) = answer_and_headers(get(dev_server().local_url("/health"))).await;
    assert_eq!(status, 200);
    assert_cors(&headers);
    assert_eq!(body, json!({"status": "ok", "environment": "development"}));
}

#[tokio::test]
async fn health_in_production() {
    let (status, _, body) = answer_and_headers(get(prod_server().local_url("/health"))).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok", "environment": "production"}));
}

#[tokio::test]
async fn development_mode_only_on_loopback_hosts() {
    // The same development server, addressed by a public host name, must
    // behave as production (auth.md, safety net).
    let public = get(dev_server().url("/health")).header("Host", "mindcache.example.com");
    let (status, _, body) = answer_and_headers(public).await;
    assert_eq!(status, 200);
    assert_eq!(body["environment"], "production");
}

#[tokio::test]
async fn unknown_route_is_a_json_404_with_cors() {
    let (status, headers, body) =
        answer_and_headers(get(dev_server().local_url("/no/such/route"))).await;
    assert_eq!(status, 404);
    assert_cors(&headers);
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn options_is_204_with_cors_on_any_path() {
    let client = reqwest::Client::new();
    for path in ["/health", "/api/projects", "/whatever"] {
        let resp = client
            .request(reqwest::Method::OPTIONS, dev_server().local_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{path}");
        assert_cors(resp.headers());
        assert!(resp.bytes().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn wrong_method_on_a_known_path_is_405() {
    let post = reqwest::Client::new().post(dev_server().local_url("/health"));
    let (status, headers, body) = answer_and_headers(post).await;
    assert_eq!(status, 405);
    assert_cors(&headers);
    assert_eq!(body["error"], "Method not allowed");
}

#[tokio::test]
async fn restarted_server_on_the_same_state_is_healthy() {
    let mut server = TestServer::start(ServerOptions::development());
    let before = reqwest::get(server.local_url("/health")).await.unwrap();
    assert_eq!(before.status(), 200);
    server.restart();
    let after = reqwest::get(server.local_url("/health")).await.unwrap();
    assert_eq!(after.status(), 200);
    let body: Value = after.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

/// The production dry run. Tests build with fault injection
/// (build/FAULT_INJECTION); the deploy path must refuse that build
/// (scripts/build.sh under wrangler's WRANGLER_COMMAND=deploy), and the
/// production config must still bundle: checked through a copy of it
/// without the build command, so that no second, fault-free release
/// build is compiled for the test (docs/faults.md).
#[test]
fn production_dry_run_deploy_succeeds() {
    let out = tempfile::tempdir().unwrap();
    let outdir = out.path().join("bundle");
    let dry_run = |config: Option<&str>| {
        let mut args = vec!["deploy", "--dry-run", "--env", "production"];
        args.extend(["--outdir", outdir.to_str().unwrap()]);
        args.extend(config.iter().flat_map(|c| ["--config", *c]));
        try_run_wrangler(&args)
    };
    let config = if repo_root().join("build/FAULT_INJECTION").exists() {
        let refused = dry_run(None).expect_err("a fault-injection build was bundled for deploy");
        assert!(refused.contains("fault-injection test build"), "{refused}");
        let toml = std::fs::read_to_string(repo_root().join("wrangler.toml")).unwrap();
        let main = repo_root().join("build/index.js");
        let copy = toml
            .replace(r#"command = "bash scripts/build.sh""#, "")
            .replace(
                r#""build/index.js""#,
                &format!("{:?}", main.to_str().unwrap()),
            );
        assert!(!copy.contains("scripts/build.sh") && copy != toml);
        let path = out.path().join("wrangler.toml");
        std::fs::write(&path, copy).unwrap();
        Some(path.to_str().unwrap().to_string())
    } else {
        None
    };
    let stdout = dry_run(config.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    assert!(stdout.contains("--dry-run: exiting now"), "{stdout}");
    assert!(outdir.join("index.js").exists());
}

#[tokio::test]
async fn fake_upstream_serves_and_records() {
    let fake = FakeUpstream::start();
    fake.on("POST", "/v1/echo", |req| {
        FakeResponse::json(201, &json!({"got": req.json()}))
    });
    let echo = reqwest::Client::new().post(fake.url("/v1/echo"));
    let got = answer(echo.json(&json!({"a": 1}))).await;
    assert_eq!(got, (201, json!({"got": {"a": 1}})));
    assert_eq!(fake.requests_to("/v1/echo").len(), 1);
    let missing = reqwest::get(fake.url("/nope")).await.unwrap();
    assert_eq!(missing.status(), 404);
}

/// What a raw chunked upload saw: the answer's status and body, and how
/// many body bytes had been sent when the answer arrived.
struct ChunkedAnswer {
    status: u16,
    body: Value,
    /// Whether the whole body arrived: a server that answers before it has
    /// read the upload closes the connection, and the client's bytes still
    /// in flight then make it reset, which may drop the answer's tail.
    complete: bool,
    sent_before_answer: usize,
}

const MIB: usize = 1024 * 1024;

/// POSTs a body of `total` bytes, `prefix` then `filler` bytes, in 64 KiB
/// chunks with `Transfer-Encoding: chunked` and no `Content-Length`, on a
/// connection of its own, while reading the answer. The upload stops when
/// the answer has come or the server stops taking bytes.
async fn post_chunked(
    server: &TestServer,
    path: &str,
    prefix: &str,
    filler: u8,
    total: usize,
) -> ChunkedAnswer {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicBool::new(false));
    let upload = {
        let (sent, answered) = (sent.clone(), answered.clone());
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            server.port
        );
        let prefix = prefix.as_bytes().to_vec();
        tokio::spawn(async move {
            if writer.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut at = 0;
            while at < total && !answered.load(Ordering::SeqCst) {
                let len = (64 * 1024).min(total - at);
                let mut frame = format!("{len:x}\r\n").into_bytes();
                frame.extend((at..at + len).map(|i| prefix.get(i).copied().unwrap_or(filler)));
                frame.extend_from_slice(b"\r\n");
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
                at += len;
                sent.store(at, Ordering::SeqCst);
            }
            let _ = writer.write_all(b"0\r\n\r\n").await;
        })
    };
    let mut response = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent_before_answer = None;
    let read = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sent_before_answer.is_none() {
                        sent_before_answer = Some(sent.load(Ordering::SeqCst));
                        answered.store(true, Ordering::SeqCst);
                    }
                    response.extend_from_slice(&buf[..n]);
                }
            }
        }
    };
    let in_time = tokio::time::timeout(std::time::Duration::from_secs(60), read).await;
    upload.abort();
    in_time.unwrap_or_else(|_| {
        panic!(
            "{path}: no complete answer within a minute ({} bytes sent)",
            sent.load(Ordering::SeqCst)
        )
    });
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no status line in {text:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let declared = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    ChunkedAnswer {
        status,
        complete: declared.is_none_or(|n| n == body.len()),
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
        sent_before_answer: sent_before_answer.unwrap_or(usize::MAX),
    }
}

/// The payload of a chunked HTTP body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// What wrangler dev's own proxy (a Worker in front of ours) answers when
/// its forwarding of a request fails. After an early answer to a chunked
/// upload it sometimes does: for that upload (it was still sending it to
/// our Worker, which had stopped reading), or for the next request on its
/// connection to our Worker (left behind by a client that stopped sending
/// mid-body). Our Worker never sees such a request; nothing restarts; in
/// production there is no such proxy. Such answers are tried again.
const DEV_PROXY_LOST_RACE: &str = "Your worker restarted mid-request. Please try sending the request again. Only GET or HEAD requests are retried automatically.";

/// [`post_chunked`] until an answer comes from our Worker, whole: one lost
/// by the dev proxy (above), or cut by a reset (the server closes the
/// connection while the client's unread upload is still arriving), is
/// tried again, up to five uploads. Each answer from our Worker is checked
/// with `check`.
async fn chunked_answer(
    server: &TestServer,
    path: &str,
    upload: (&str, u8, usize),
    check: impl Fn(&ChunkedAnswer),
) -> ChunkedAnswer {
    let (prefix, filler, total) = upload;
    for _ in 0..5 {
        let answer = post_chunked(server, path, prefix, filler, total).await;
        if answer.status == 503 && answer.body == DEV_PROXY_LOST_RACE {
            continue;
        }
        check(&answer);
        if answer.complete {
            return answer;
        }
    }
    panic!("{path}: five uploads in a row did not get a whole answer");
}

/// Uploads `total` bytes chunked (a JSON string that does not end in time)
/// and expects `413` with its message, answered before 64 MiB were sent.
async fn refused_while_uploading(server: &TestServer, path: &str, total: usize) {
    let upload = ("{\"name\":\"", b'x', total);
    let answer = chunked_answer(server, path, upload, |answer| {
        assert_eq!(answer.status, 413, "{path}: {}", answer.body);
        assert!(
            answer.sent_before_answer < 64 * MIB,
            "{path}: answered only after {} bytes",
            answer.sent_before_answer
        );
    })
    .await;
    let too_large = json!({"error": "Request body too large (limit 1 MiB)"});
    assert_eq!(answer.body, too_large, "{path}");
}

#[tokio::test]
async fn chunked_bodies_are_limited_while_they_are_read() {
    let server = dev_server();
    for path in ["/webhooks/clerk", "/api/projects"] {
        // Far more than the limit: a server that read it all before looking
        // at its size would hold 256 MiB, if it answered at all.
        refused_while_uploading(server, path, 256 * MIB).await;
        // One byte over the limit is refused too.
        refused_while_uploading(server, path, MIB + 1).await;
    }
    // The server keeps serving, chunked bodies within the limit included
    // (JSON padded with spaces to exactly 1 MiB, in sixteen chunks).
    let project = json!({"name": "chunked"}).to_string();
    let upload = (project.as_str(), b' ', MIB);
    let created = chunked_answer(server, "/api/projects", upload, |_| {}).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["name"], "chunked");
    let event = json!({"type": "user.created", "object": "event", "data": {
        "id": "user_chunked", "first_name": "Chunk", "last_name": null,
        "primary_email_address_id": "e1",
        "email_addresses": [{"id": "e1", "email_address": "chunk@example.com"}]}});
    let event = event.to_string();
    let upload = (event.as_str(), b' ', MIB);
    let received = chunked_answer(server, "/webhooks/clerk", upload, |_| {}).await;
    assert_eq!(
        (received.status, received.body),
        (200, json!({"received": true}))
    );
    let health = reqwest::get(server.local_url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
}

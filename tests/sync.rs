//! The real-time protocol (protocol.md) against the real runtime: several
//! WebSocket clients on instances of a `wrangler dev` server.

mod common;

use std::time::Duration;

use common::api::answer;
use common::server::{prod_server, shared, ServerOptions, TestServer};
use common::unique_id;
use common::world::Rows;
use common::ws::{Event, WsClient};
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(700);

fn dev() -> &'static TestServer {
    shared(ServerOptions::development().var("ADMIN_TOKEN", "admin-secret-123"))
}

async fn join(server: &TestServer, instance: &str) -> (WsClient, Value) {
    WsClient::join(server, instance, None).await
}

/// The `data` of the `sync` a fresh join of `instance` gets.
async fn data(server: &TestServer, instance: &str) -> Value {
    join(server, instance).await.1["data"].take()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn set(key: &str, value: Value) -> Value {
    json!({"type": "set", "key": key, "value": value, "timestamp": 1})
}

#[tokio::test]
async fn auth_success_then_sync_on_connect() {
    let id = unique_id("hello");
    let mut c = WsClient::connect_to(dev(), &id, None).await;
    let auth = c.recv_type("auth_success").await;
    assert_eq!(auth["instanceId"], id.as_str());
    assert_eq!(auth["userId"], "dev-user");
    assert_eq!(auth["permission"], "admin");
    let sync = c.recv_type("sync").await;
    assert_eq!(sync["instanceId"], id.as_str());
    assert_eq!(sync["data"], json!({}));
}

#[tokio::test]
async fn a_set_reaches_every_client_with_server_time() {
    let id = unique_id("fanout");
    let (mut a, _) = join(dev(), &id).await;
    let (mut b, _) = join(dev(), &id).await;
    let (mut c, _) = join(dev(), &id).await;
    let before = now_ms();
    a.send(&set("greeting", json!("hello"))).await;
    for client in [&mut a, &mut b, &mut c] {
        let m = client.recv_type("key_updated").await;
        assert_eq!(m["key"], "greeting");
        assert_eq!(m["value"], "hello");
        assert_eq!(m["updatedBy"], "dev-user");
        assert_eq!(m["attributes"]["type"], "text");
        assert_eq!(m["attributes"]["visible"], true);
        let ts = m["timestamp"].as_i64().expect("numeric timestamp");
        assert!(
            ts >= before - 1000 && ts <= now_ms() + 1000,
            "server time {ts}"
        );
        assert_ne!(ts, 1, "the client's timestamp must not be trusted");
    }
}

#[tokio::test]
async fn deletes_and_clears_are_broadcast() {
    let id = unique_id("delclear");
    let (mut a, _) = join(dev(), &id).await;
    let (mut b, _) = join(dev(), &id).await;
    a.send(&set("x", json!(1))).await;
    a.send(&set("y", json!(2))).await;
    for client in [&mut a, &mut b] {
        client.recv_type("key_updated").await;
        client.recv_type("key_updated").await;
    }
    a.send(&json!({"type": "delete", "key": "x", "timestamp": 2}))
        .await;
    for client in [&mut a, &mut b] {
        let m = client.recv_type("key_deleted").await;
        assert_eq!(m["key"], "x");
        assert_eq!(m["deletedBy"], "dev-user");
        assert!(m["timestamp"].is_i64());
    }
    // Deleting a missing key is not an error and broadcasts nothing.
    a.send(&json!({"type": "delete", "key": "x"})).await;
    b.expect_silence(QUIET).await;
    a.expect_silence(Duration::from_millis(10)).await;

    b.send(&json!({"type": "clear", "timestamp": 3})).await;
    for client in [&mut a, &mut b] {
        let m = client.recv_type("cleared").await;
        assert_eq!(m["clearedBy"], "dev-user");
    }
    assert_eq!(data(dev(), &id).await, json!({}));
}

#[tokio::test]
async fn a_late_joiner_gets_the_current_state() {
    let id = unique_id("late");
    let (mut a, _) = join(dev(), &id).await;
    a.send(&set("name", json!("Ada"))).await;
    a.send(
        &json!({"type":"set","key":"profile","value":{"age":36,"langs":["en"]},
        "attributes":{"type":"json","tags":["person"],"readonly":true}}),
    )
    .await;
    let first = a.recv_type("key_updated").await;
    a.recv_type("key_updated").await;
    let seen = data(dev(), &id).await;
    assert_eq!(seen["name"]["value"], "Ada");
    assert_eq!(seen["name"]["updatedAt"], first["timestamp"]);
    assert_eq!(seen["profile"]["value"], json!({"age":36,"langs":["en"]}));
    assert_eq!(seen["profile"]["attributes"]["type"], "json");
    assert_eq!(seen["profile"]["attributes"]["tags"], json!(["person"]));
    assert_eq!(seen["profile"]["attributes"]["readonly"], true);
    assert_eq!(seen["profile"]["attributes"]["visible"], true);
}

#[tokio::test]
async fn unknown_attribute_fields_round_trip() {
    let id = unique_id("lossless");
    let (mut a, _) = join(dev(), &id).await;
    let (mut b, _) = join(dev(), &id).await;
    let attrs = json!({"type":"markdown","readonly":false,"visible":false,"hardcoded":true,
        "template":true,"tags":["t1","t2"],"contentType":"text/markdown",
        "contentTags":["c"],"systemTags":["SystemPrompt"],"zIndex":{"deep":[1,2]}});
    a.send(&json!({"type":"set","key":"doc","value":"# hi","attributes":attrs}))
        .await;
    let got = b.recv_type("key_updated").await;
    assert_eq!(got["attributes"], attrs);
    let seen = data(dev(), &id).await;
    assert_eq!(seen["doc"]["attributes"], attrs);
    assert_eq!(seen["doc"]["value"], "# hi");
}

#[tokio::test]
async fn a_set_that_changes_nothing_is_not_broadcast_but_acked() {
    let id = unique_id("noop");
    let (mut a, _) = join(dev(), &id).await;
    let (mut b, _) = join(dev(), &id).await;
    a.send(&json!({"type":"set","key":"k","value":{"a":1},"attributes":{"tags":["x"]}}))
        .await;
    a.recv_type("key_updated").await;
    b.recv_type("key_updated").await;
    // Same value and attributes, spelled differently (defaults filled in).
    a.send(&json!({"type":"set","key":"k","value":{"a":1},
        "attributes":{"tags":["x"],"type":"text","visible":true},"id":"req-7"}))
        .await;
    let ack = a.recv_type("ack").await;
    assert_eq!(ack["id"], "req-7");
    assert!(ack["timestamp"].is_i64());
    b.expect_silence(QUIET).await;
    a.expect_silence(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn ack_echoes_the_id() {
    let id = unique_id("ack");
    let (mut a, _) = join(dev(), &id).await;
    a.send(&json!({"type":"set","key":"k","value":1,"id":42}))
        .await;
    a.recv_type("key_updated").await;
    let ack = a.recv_type("ack").await;
    assert_eq!(ack["id"], 42);
    a.send(&json!({"type":"delete","key":"k","id":"d-1"})).await;
    a.recv_type("key_deleted").await;
    assert_eq!(a.recv_type("ack").await["id"], "d-1");
    // A refused message carries the id in its error.
    a.send(&json!({"type":"set","key":"$date","value":1,"id":"bad-1"}))
        .await;
    let err = a.recv_type("error").await;
    assert_eq!(err["code"], "INVALID_KEY");
    assert_eq!(err["id"], "bad-1");
}

async fn expect_error(c: &mut WsClient, code: &str) -> Value {
    let err = c.recv_type("error").await;
    assert_eq!(err["code"], code, "{err}");
    assert!(err["error"].as_str().is_some_and(|t| t.len() > 5), "{err}");
    err
}

#[tokio::test]
async fn every_bad_frame_gets_its_error_code_and_the_socket_stays_open() {
    let id = unique_id("errors");
    let (mut a, _) = join(dev(), &id).await;
    let (mut b, _) = join(dev(), &id).await;

    a.send_text("{not json").await;
    expect_error(&mut a, "PARSE_ERROR").await;
    a.send_binary(b"\x01\x02").await;
    expect_error(&mut a, "PARSE_ERROR").await;
    a.send(&json!({"type":"launch"})).await;
    expect_error(&mut a, "UNKNOWN_TYPE").await;
    a.send(&json!({"type":"set","value":1})).await;
    let e = expect_error(&mut a, "INVALID_MESSAGE").await;
    assert!(e["error"].as_str().unwrap().contains("key"), "{e}");
    a.send(&json!({"type":"set","key":"k"})).await;
    let e = expect_error(&mut a, "INVALID_MESSAGE").await;
    assert!(e["error"].as_str().unwrap().contains("value"), "{e}");
    a.send(&json!({"type":"set","key":"k","value":1,"attributes":{"type":"video"}}))
        .await;
    expect_error(&mut a, "INVALID_MESSAGE").await;
    a.send(&set("big", json!("x".repeat(1_500_001)))).await;
    expect_error(&mut a, "TOO_LARGE").await;
    a.send(&set("", json!(1))).await;
    expect_error(&mut a, "INVALID_KEY").await;
    a.send(&set("$time", json!(1))).await;
    expect_error(&mut a, "INVALID_KEY").await;
    a.send(&set("bad\u{7}key", json!(1))).await;
    expect_error(&mut a, "INVALID_KEY").await;
    a.send(&set(&"k".repeat(513), json!(1))).await;
    expect_error(&mut a, "INVALID_KEY").await;

    // Nothing refused was applied or broadcast, and the socket still works.
    b.expect_silence(QUIET).await;
    a.send(&set("ok", json!(true))).await;
    assert_eq!(a.recv_type("key_updated").await["key"], "ok");
    assert_eq!(data(dev(), &id).await.as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn values_at_the_limit_are_accepted() {
    let id = unique_id("limits");
    let (mut a, _) = join(dev(), &id).await;
    // 1,500,000 bytes of serialised JSON: a string of 1,499,998 chars plus quotes.
    a.send(&set("big", json!("y".repeat(1_499_998)))).await;
    let m = a.recv_type("key_updated").await;
    assert_eq!(m["value"].as_str().unwrap().len(), 1_499_998);
    a.send(&set(&"k".repeat(512), json!(null))).await;
    let m = a.recv_type("key_updated").await;
    assert_eq!(m["value"], Value::Null);
}

#[tokio::test]
async fn pings_are_answered() {
    let id = unique_id("ping");
    let (mut a, _) = join(dev(), &id).await;
    a.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(a.recv().await, json!({"type":"pong"}));
    a.send_text(r#"{ "type": "ping" }"#).await;
    assert_eq!(a.recv().await, json!({"type":"pong"}));
}

#[tokio::test]
async fn write_on_a_read_only_instance_is_refused() {
    let server = dev();
    let id = unique_id("ro");
    let project = format!("p-{id}");
    Rows::default()
        .owner("ro-owner")
        .project("ro-owner", &project, "p")
        .instance("ro-owner", &project, &id, "main")
        .write(server);
    let (mut a, _) = join(server, &id).await;
    a.send(&set("k", json!(1))).await;
    a.recv_type("key_updated").await;
    // dev-user is admin on every instance in development mode.
    let resp = reqwest::Client::new()
        .patch(server.local_url(&format!("/api/instances/{id}")))
        .json(&json!({"is_readonly": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    a.send(&set("k", json!(2))).await;
    expect_error(&mut a, "READ_ONLY").await;
    a.send(&json!({"type":"delete","key":"k"})).await;
    expect_error(&mut a, "READ_ONLY").await;
    a.send(&json!({"type":"clear"})).await;
    expect_error(&mut a, "READ_ONLY").await;
    // A new connection finds it read-only too.
    let (mut b, sync) = join(server, &id).await;
    assert_eq!(sync["data"]["k"]["value"], 1);
    b.send(&set("k", json!(3))).await;
    expect_error(&mut b, "READ_ONLY").await;
}

#[tokio::test]
async fn a_client_supplied_internal_header_does_not_change_identity() {
    let id = unique_id("spoof");
    let spoof = [
        ("x-mc-internal-user-id", "attacker"),
        ("x-mc-internal-permission", "admin"),
        ("x-mc-internal-development", "1"),
    ];
    let mut c = WsClient::connect_with_headers(&dev().ws_url(&format!("/sync/{id}")), &spoof).await;
    let auth = c.recv_type("auth_success").await;
    assert_eq!(auth["userId"], "dev-user");

    // In production the same headers leave the socket unauthenticated.
    let mut p =
        WsClient::connect_with_headers(&prod_server().ws_url(&format!("/sync/{id}")), &spoof).await;
    p.send(&set("k", json!(1))).await;
    expect_error(&mut p, "NOT_AUTHENTICATED").await;
}

#[tokio::test]
async fn production_sockets_must_authenticate() {
    let id = unique_id("prodauth");
    let mut c = WsClient::connect_to(prod_server(), &id, None).await;
    c.send(&set("k", json!(1))).await;
    expect_error(&mut c, "NOT_AUTHENTICATED").await;
    c.send_text(r#"{"type":"ping"}"#).await;
    c.recv_type("pong").await;
    c.send(&json!({"type":"auth","apiKey":"mc_live_00000000000000000000000000000000"}))
        .await;
    let err = c.recv_type("auth_error").await;
    assert!(err["code"].is_string());
    assert_eq!(c.expect_closed().await.map(|f| f.0), Some(1008));
}

#[tokio::test]
async fn unauthenticated_sockets_time_out_after_ten_seconds() {
    let id = unique_id("timeout");
    let mut c = WsClient::connect_to(prod_server(), &id, None).await;
    let started = std::time::Instant::now();
    match c.next_event(Duration::from_secs(20)).await {
        Event::Json(m) => {
            assert_eq!(m["type"], "auth_error");
            assert_eq!(m["code"], "AUTH_TIMEOUT");
        }
        other => panic!("expected auth_error, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9),
        "timed out after {waited:?}"
    );
    assert_eq!(c.expect_closed().await.map(|f| f.0), Some(1008));
}

#[tokio::test]
async fn instances_are_isolated() {
    let one = unique_id("iso-a");
    let two = unique_id("iso-b");
    let (mut a, _) = join(dev(), &one).await;
    let (mut b, _) = join(dev(), &two).await;
    a.send(&set("secret", json!("only in one"))).await;
    a.recv_type("key_updated").await;
    b.expect_silence(QUIET).await;
    assert_eq!(data(dev(), &two).await, json!({}));
}

#[tokio::test]
async fn the_close_handshake_is_answered() {
    let id = unique_id("close");
    let (mut a, _) = join(dev(), &id).await;
    let answer = a.close(4001, "bye").await;
    assert_eq!(answer.map(|f| f.0), Some(4001));
}

#[tokio::test]
async fn http_errors_before_the_upgrade() {
    let client = reqwest::Client::new();
    let plain = answer(client.get(dev().local_url("/sync/ok-id"))).await;
    assert_eq!(plain.0, 426);
    let bad = answer(client.get(dev().local_url("/sync/bad.id"))).await;
    assert_eq!(bad, (400, json!({"error":"Invalid instance id"})));
    match WsClient::try_connect_to(dev(), "bad%20id", None).await {
        Err(status) => assert!(status.starts_with("400"), "{status}"),
        Ok(_) => panic!("upgrade with an invalid id must be refused"),
    }
}

#[tokio::test]
async fn keys_survive_a_restart() {
    let mut server = TestServer::start(ServerOptions::development());
    let id = unique_id("durable");
    {
        let (mut a, _) = join(&server, &id).await;
        a.send(&json!({"type":"set","key":"kept","value":[1,2,3],"id":"w"}))
            .await;
        a.recv_type("key_updated").await;
        a.recv_type("ack").await;
    }
    server.restart();
    assert_eq!(data(&server, &id).await["kept"]["value"], json!([1, 2, 3]));
}

/// The Durable Object id of the instance whose storage file appeared last.
fn newest_object_id(server: &TestServer) -> String {
    let mut newest: Option<(std::time::SystemTime, String)> = None;
    let mut stack = vec![server.persist_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".sqlite"))
            {
                if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let created = entry.metadata().unwrap().modified().unwrap();
                    if newest.as_ref().is_none_or(|(t, _)| created > *t) {
                        newest = Some((created, stem.to_string()));
                    }
                }
            }
        }
    }
    newest.expect("an object storage file").1
}

#[tokio::test]
async fn admin_route_needs_the_token() {
    let server = TestServer::start(ServerOptions::development().var("ADMIN_TOKEN", "tok-abc-123"));
    let id = unique_id("admin");
    let (mut a, _) = join(&server, &id).await;
    a.send(&set("inspect", json!("me"))).await;
    a.recv_type("key_updated").await;
    let object_id = newest_object_id(&server);

    let client = reqwest::Client::new();
    let admin = |url: &str, token: &str| client.get(url).header("X-Admin-Token", token);
    let url = server.local_url(&format!("/admin/do/{object_id}"));
    let (status, body) = answer(admin(&url, "tok-abc-123")).await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"]["inspect"]["value"], "me");
    assert_eq!(answer(admin(&url, "nope")).await.0, 401);
    assert_eq!(answer(client.get(&url)).await.0, 401);
    let bad_id = server.local_url("/admin/do/xyz");
    assert_eq!(answer(admin(&bad_id, "tok-abc-123")).await.0, 400);

    // Without ADMIN_TOKEN configured the route does not exist.
    let elsewhere = prod_server().local_url(&format!("/admin/do/{object_id}"));
    assert_eq!(answer(admin(&elsewhere, "tok-abc-123")).await.0, 404);
}

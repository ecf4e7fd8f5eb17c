//! Faults (docs/faults.md): a panic inside an instance's object or inside
//! the Worker's request handling is survived; an instance's total size is
//! capped, and one over the cap (filled before it) can still be connected
//! to and cleared. Needs a build with fault
//! injection (`MINDCACHE_FAULTS=1 bash scripts/build.sh`, as scripts/test.sh
//! and the harness build). Each test has a server of its own: a panic
//! re-instantiates the whole module, which must not touch other tests'
//! requests in flight.

mod common;

use std::time::Duration;

use common::server::{repo_root, ServerOptions, TestServer};
use common::unique_id;
use common::ws::{Event, WsClient};
use serde_json::{json, Value};

const PANIC_FRAME: &str = r#"{"type":"__panic"}"#;

fn server() -> TestServer {
    assert!(
        repo_root().join("build/FAULT_INJECTION").exists(),
        "build/ has no fault injection: run MINDCACHE_FAULTS=1 bash scripts/build.sh"
    );
    TestServer::start(ServerOptions::development())
}

/// Sets `key` with an id and waits for its broadcast and its ack.
async fn acked_set(c: &mut WsClient, key: &str, value: Value) {
    let id = unique_id("m");
    c.send(&json!({"type": "set", "key": key, "value": value, "id": id}))
        .await;
    let updated = c.recv_type("key_updated").await;
    assert_eq!(updated["key"], key);
    let ack = c.recv_type("ack").await;
    assert_eq!(ack["id"], id.as_str());
}

/// A fresh connection's `sync` data.
async fn synced(server: &TestServer, instance: &str) -> (WsClient, Value) {
    let (c, sync) = WsClient::join(server, instance, None).await;
    (c, sync["data"].clone())
}

fn values(data: &Value) -> Vec<(String, Value)> {
    data.as_object()
        .expect("sync data is an object")
        .iter()
        .map(|(k, v)| (k.clone(), v["value"].clone()))
        .collect()
}

/// The server logged the panic and `n` re-instantiations of the module
/// (the log file lags a little behind the server).
async fn assert_recovered(server: &TestServer, n: usize) {
    let count = |lines: &[Value], needle: &str| {
        lines
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(needle)))
            .count()
    };
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = server.log_lines();
        if count(&lines, "injected fault") == n
            && count(&lines, "module re-instantiated after a panic") == n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected {n} panics and re-instantiations in the log: {lines:?}");
}

async fn health(server: &TestServer) -> u16 {
    reqwest::get(server.local_url("/health"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Two instances with acknowledged keys; the bystander's socket stays open.
async fn two_instances(server: &TestServer) -> (String, String, WsClient) {
    let victim = unique_id("victim");
    let bystander = unique_id("bystander");
    let (mut v, _) = WsClient::join(server, &victim, None).await;
    for i in 0..3 {
        acked_set(&mut v, &format!("k{i}"), json!({"n": i})).await;
    }
    let (mut b, _) = WsClient::join(server, &bystander, None).await;
    acked_set(&mut b, "before", json!("b")).await;
    (victim, bystander, b)
}

/// Everything acknowledged before is in a new connection's sync, it takes
/// writes, and the bystander's open socket still works.
async fn all_served(server: &TestServer, victim: &str, bystander: &str, b: &mut WsClient) {
    let (mut again, data) = synced(server, victim).await;
    assert_eq!(
        values(&data),
        vec![
            ("k0".to_string(), json!({"n": 0})),
            ("k1".to_string(), json!({"n": 1})),
            ("k2".to_string(), json!({"n": 2})),
        ]
    );
    acked_set(&mut again, "after", json!(true)).await;
    let (_, data) = synced(server, victim).await;
    assert_eq!(data["after"]["value"], true);

    // The bystander noticed nothing: its socket takes writes and the
    // broadcast comes back on it.
    acked_set(b, "during", json!("still here")).await;
    let (_, data) = synced(server, bystander).await;
    assert_eq!(data["before"]["value"], "b");
    assert_eq!(data["during"]["value"], "still here");
    assert_eq!(health(server).await, 200);
}

#[tokio::test]
async fn a_panic_inside_an_object_is_survived() {
    let server = server();
    let (victim, bystander, mut b) = two_instances(&server).await;

    let (mut doomed, _) = WsClient::join(&server, &victim, None).await;
    doomed.send_text(PANIC_FRAME).await;
    // The panicking frame gets no answer; what happens to its socket is
    // the runtime's business.
    if let Event::Json(v) = doomed.next_event(Duration::from_millis(500)).await {
        panic!("the panicking frame was answered: {v}");
    }
    all_served(&server, &victim, &bystander, &mut b).await;
    assert_recovered(&server, 1).await;

    // And again: recovery is not a one-off.
    let (mut doomed, _) = WsClient::join(&server, &victim, None).await;
    doomed.send_text(PANIC_FRAME).await;
    let _ = doomed.next_event(Duration::from_millis(500)).await;
    let (mut c, data) = synced(&server, &victim).await;
    assert_eq!(data["after"]["value"], true);
    acked_set(&mut c, "third", json!(3)).await;
    acked_set(&mut b, "later", json!(1)).await;
    assert_recovered(&server, 2).await;
}

#[tokio::test]
async fn a_panic_inside_the_worker_is_survived() {
    let server = server();
    let (victim, bystander, mut b) = two_instances(&server).await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let panicked = client
        .get(server.local_url("/health"))
        .header("X-MindCache-Fault", "panic")
        .send()
        .await;
    // The panicking request itself fails (an error status or no answer).
    if let Ok(resp) = &panicked {
        assert!(resp.status().as_u16() >= 500, "{:?}", resp.status());
    }
    assert_eq!(health(&server).await, 200);
    all_served(&server, &victim, &bystander, &mut b).await;
    assert_recovered(&server, 1).await;

    // The HTTP data API answers too.
    let (status, body) = common::api::answer(
        client.get(server.local_url(&format!("/api/instances/{victim}/keys/k1"))),
    )
    .await;
    assert!(status == 200 || status == 404, "{status} {body}");
}

/// Caps small enough to reach in a test (honoured in development mode only).
fn small_caps() -> ServerOptions {
    ServerOptions::development()
        .var("MINDCACHE_TEST_MAX_INSTANCE_BYTES", "5000")
        .var("MINDCACHE_TEST_MAX_SYNC_BYTES", "7000")
}

fn blob(n: usize) -> Value {
    json!("x".repeat(n))
}

#[tokio::test]
async fn the_size_cap_refuses_every_write_path_and_an_instance_over_it_stays_usable() {
    let mut server = server();
    let api = common::api::Api::new(&server);
    let (status, project) = api
        .post("/api/projects", None, json!({"name": "caps"}))
        .await;
    assert_eq!(status, 201, "{project}");
    let project = project["id"].as_str().unwrap().to_string();
    let new_instance = |name: &'static str| {
        let api = &api;
        let path = format!("/api/projects/{project}/instances");
        async move {
            let (status, body) = api.post(&path, None, json!({"name": name})).await;
            assert_eq!(status, 201, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    };
    let big = new_instance("big").await;
    let small = new_instance("small").await;

    // Filled before the cap: ~8.6 KB, over 5,000 and over the 7,000 a sync may carry.
    let (mut c, _) = WsClient::join(&server, &big, None).await;
    for i in 0..4 {
        acked_set(&mut c, &format!("k{i}"), blob(2000)).await;
    }
    let (mut c, _) = WsClient::join(&server, &small, None).await;
    acked_set(&mut c, "a", blob(100)).await;
    drop(c);
    server.restart_with(small_caps());
    let api = common::api::Api::new(&server);

    // Every write path refuses growth past the cap with TOO_LARGE, and writes nothing.
    let (mut c, data) = synced(&server, &small).await;
    assert_eq!(values(&data), vec![("a".to_string(), blob(100))]);
    c.send(&json!({"type": "set", "key": "b", "value": blob(6000), "id": "s1"}))
        .await;
    let e = c.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("TOO_LARGE"), Some("s1"))
    );
    assert!(e["error"].as_str().unwrap().contains("per instance"), "{e}");
    let keys = format!("/api/instances/{small}/keys");
    let refused = [
        api.put(&format!("{keys}/b"), None, json!({"value": blob(6000)})).await,
        api.post(
            &format!("/api/instances/{small}/batch"),
            None,
            json!({"set": {"b": {"value": 1}, "c": {"value": blob(6000)}}}),
        )
        .await,
        api.post(
            &format!("/api/instances/{small}/import"),
            None,
            json!({"format": "mindcache-export", "version": 1, "keys": {"b": {"value": blob(6000)}}}),
        )
        .await,
    ];
    for (status, body) in refused {
        assert_eq!(status, 413, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("per instance"),
            "{body}"
        );
    }
    let (_, data) = synced(&server, &small).await;
    assert_eq!(values(&data), vec![("a".to_string(), blob(100))]);

    // The instance over the cap: connecting works; instead of a sync it
    // gets TOO_LARGE, and the socket stays open for deletes and clear.
    let mut c = WsClient::connect_to(&server, &big, None).await;
    c.recv_type("auth_success").await;
    let e = c.recv_type("error").await;
    assert_eq!(e["code"], "TOO_LARGE", "{e}");
    c.send(&json!({"type": "set", "key": "k9", "value": 1, "id": "s2"}))
        .await;
    assert_eq!(c.recv_type("error").await["code"], "TOO_LARGE");
    c.send(&json!({"type": "delete", "key": "k0"})).await;
    assert_eq!(c.recv_type("key_deleted").await["key"], "k0");
    // ~6.5 KB now: still over the write cap, but a sync fits again.
    let (_, data) = synced(&server, &big).await;
    assert_eq!(data.as_object().unwrap().len(), 3);
    c.send(&json!({"type": "clear", "id": "c1"})).await;
    c.recv_type("cleared").await;
    c.recv_type("ack").await;
    let (mut again, data) = synced(&server, &big).await;
    assert_eq!(data, json!({}));
    acked_set(&mut again, "fresh", blob(10)).await;
}

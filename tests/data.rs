//! The HTTP data API (data-api.md) against a production-mode server:
//! keys, conditional writes, atomic batches, server-sent events, export
//! and import, each with its refusals, and every write seen live by
//! WebSocket clients exactly as a WebSocket write would be.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::api::{authorization, usage_bucket};
use common::clerk::SignedIn;
use common::server::ServerOptions;
use common::sse::{Next, SseClient};
use common::world::{grant, Project, User, World};
use common::ws::WsClient;
use serde_json::{json, Value};

/// The binary's seeded users (seeded once: writing to D1 from the command
/// line while the server runs can lock it out).
fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| World::seed(signed_in().server, "data"))
}

/// A production server trusting a JWKS this test serves (API keys are
/// managed by signed-in users only).
fn signed_in() -> &'static SignedIn {
    static S: OnceLock<SignedIn> = OnceLock::new();
    S.get_or_init(|| SignedIn::start(ServerOptions::production()))
}

fn keys(instance: &str) -> String {
    format!("/api/instances/{instance}/keys")
}

fn key(instance: &str, name: &str) -> String {
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/api/instances/{instance}/keys/{encoded}")
}

/// A fresh project of alice's.
async fn project(name: &str) -> Project {
    world().project(&world().alice, name).await
}

/// A request with the user's credential and extra headers; status, headers
/// and JSON body.
async fn send(
    method: reqwest::Method,
    path: &str,
    user: &User,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let client = reqwest::Client::new();
    let mut req = client
        .request(method, world().server.local_url(path))
        .header("Authorization", authorization(&user.key));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, value)
}

async fn put(instance: &str, name: &str, user: &User, body: Value) -> (u16, Value) {
    world()
        .api()
        .put(&key(instance, name), user.auth(), body)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_read_and_written_over_http_and_seen_live() {
    let w = world();
    let p = project("http keys").await;
    let mut ws = w.join(&p.main, &w.alice.key).await;

    let (status, body) = put(&p.main, "a/b c", &w.alice, json!({"value": {"n": 1}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "a/b c");
    assert_eq!(body["value"], json!({"n": 1}));
    assert_eq!(body["attributes"]["type"], "text");
    assert_eq!(body["changed"], true);
    let live = ws.recv_type("key_updated").await;
    assert_eq!(live["key"], "a/b c");
    assert_eq!(live["updatedBy"], w.alice.id);
    assert_eq!(live["timestamp"], body["updatedAt"]);

    // The same again is a no-op: nothing broadcast.
    let (status, again) = put(&p.main, "a/b c", &w.alice, json!({"value": {"n": 1}})).await;
    assert_eq!((status, again["changed"].clone()), (200, json!(false)));
    ws.expect_silence(Duration::from_millis(500)).await;

    let (status, headers, got) = send(
        reqwest::Method::GET,
        &key(&p.main, "a/b c"),
        &w.alice,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["value"], json!({"n": 1}));
    assert_eq!(
        headers["etag"].to_str().unwrap(),
        format!("\"{}\"", got["updatedAt"])
    );
    assert!(headers.contains_key("x-request-id"));

    let (status, missing) = w.api().get(&key(&p.main, "nope"), w.alice.auth()).await;
    assert_eq!((status, missing), (404, json!({"error": "Key not found"})));

    let (status, deleted) = w.api().delete(&key(&p.main, "a/b c"), w.alice.auth()).await;
    assert_eq!((status, deleted), (200, json!({"deleted": true})));
    let live = ws.recv_type("key_deleted").await;
    assert_eq!(
        (live["key"].clone(), live["deletedBy"].clone()),
        (json!("a/b c"), json!(w.alice.id))
    );
    let (status, deleted) = w.api().delete(&key(&p.main, "a/b c"), w.alice.auth()).await;
    assert_eq!((status, deleted), (200, json!({"deleted": false})));

    // HTTP writes are metered (webhooks-out.md "Usage").
    let (status, usage) = w
        .api()
        .get(
            "/api/usage?groupBy=endpoint",
            Some(&signed_in().jwt(&w.alice.id)),
        )
        .await;
    assert_eq!(status, 200, "{usage}");
    let writes = usage_bucket(&usage, "/api/instances/:id/keys/:key")
        .unwrap_or_else(|| panic!("no data-API bucket in {usage}"));
    assert!(writes["count"].as_i64().unwrap() >= 3, "{usage}");

    // A WebSocket write is visible over HTTP.
    ws.send(&json!({"type": "set", "key": "from-ws", "value": "hi", "attributes": {"type": "markdown", "tags": ["t"]}})).await;
    ws.recv_type("key_updated").await;
    let (_, got) = w.api().get(&key(&p.main, "from-ws"), w.alice.auth()).await;
    assert_eq!(got["attributes"]["type"], "markdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_who_may_not_and_what_is_wrong() {
    let w = world();
    let p = project("refusals").await;
    let api = w.api();
    put(&p.main, "k", &w.alice, json!({"value": 1})).await;
    // Bob can read it (share), Carol sees nothing.
    w.share(
        &w.alice,
        &format!("/api/instances/{}/shares", p.main),
        grant("user", &w.bob.id, "read"),
    )
    .await;
    let batch = format!("/api/instances/{}/batch", p.main);
    let import = format!("/api/instances/{}/import", p.main);
    let export = format!("/api/instances/{}/export", p.main);
    let events = format!("/api/instances/{}/events", p.main);
    let doc = json!({"format": "mindcache-export", "version": 1, "keys": {}});

    for path in [
        keys(&p.main),
        key(&p.main, "k"),
        export.clone(),
        events.clone(),
    ] {
        let (status, body) = api.get(&path, w.carol.auth()).await;
        assert_eq!(status, 404, "GET {path} as a stranger: {body}");
    }
    // A reader reads.
    for path in [key(&p.main, "k"), keys(&p.main), export.clone()] {
        let (status, body) = api.get(&path, w.bob.auth()).await;
        assert_eq!(status, 200, "GET {path} as a reader: {body}");
    }
    // Neither may write: the stranger is told the instance is not there.
    for (user, refused) in [(&w.carol, 404), (&w.bob, 403)] {
        let writes = [
            put(&p.main, "k", user, json!({"value": 2})).await,
            api.delete(&key(&p.main, "k"), user.auth()).await,
            api.post(&batch, user.auth(), json!({"delete": ["k"]}))
                .await,
            api.post(&import, user.auth(), doc.clone()).await,
        ];
        for (i, (status, body)) in writes.into_iter().enumerate() {
            assert_eq!(status, refused, "write {i} as {}: {body}", user.id);
        }
    }
    let (_, got) = api.get(&key(&p.main, "k"), w.alice.auth()).await;
    assert_eq!(got["value"], 1);

    // Bad input is named and changes nothing.
    let (status, body) = put(&p.main, "$date", &w.alice, json!({"value": 1})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = put(&p.main, "k", &w.alice, json!({"valu": 1})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("valu"), "{body}");
    let (status, body) = api
        .get(&format!("{}?limit=0", keys(&p.main)), w.alice.auth())
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api
        .get(&format!("{}?limit=1001", keys(&p.main)), w.alice.auth())
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .get(&format!("{}?cursor=%25%25", keys(&p.main)), w.alice.auth())
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .get(&format!("{export}?format=pdf"), w.alice.auth())
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .post(&format!("{import}?mode=wipe"), w.alice.auth(), doc.clone())
        .await;
    assert_eq!(status, 400);
    let (status, body) = api.post(&import, w.alice.auth(), json!({"keys": {}})).await;
    assert_eq!(status, 400, "{body}");

    // Over the limits: 413.
    let big = "x".repeat(1_500_001);
    let (status, body) = put(&p.main, "big", &w.alice, json!({"value": big})).await;
    assert_eq!(status, 413, "{body}");
    let huge = "x".repeat(2 * 1024 * 1024 + 1);
    let (status, body) = put(&p.main, "huge", &w.alice, json!({"value": huge})).await;
    assert_eq!(status, 413, "{body}");
    let (_, got) = api.get(&key(&p.main, "big"), w.alice.auth()).await;
    assert_eq!(got["error"], "Key not found");

    // A read-only instance refuses writes with 409 and a code.
    let (status, _) = api
        .patch(
            &format!("/api/instances/{}", p.main),
            w.alice.auth(),
            json!({"is_readonly": true}),
        )
        .await;
    assert_eq!(status, 200);
    let expected = json!({"error": "Instance is read-only", "code": "READ_ONLY"});
    assert_eq!(
        put(&p.main, "k", &w.alice, json!({"value": 3})).await,
        (409, expected.clone())
    );
    assert_eq!(
        api.delete(&key(&p.main, "k"), w.alice.auth()).await,
        (409, expected.clone())
    );
    assert_eq!(
        api.post(&batch, w.alice.auth(), json!({"delete": ["k"]}))
            .await,
        (409, expected.clone())
    );
    assert_eq!(
        api.post(&import, w.alice.auth(), doc).await,
        (409, expected)
    );
    let (_, got) = api.get(&key(&p.main, "k"), w.alice.auth()).await;
    assert_eq!(got["value"], 1);
}

/// A conditional write of alice's to `name` on `instance`: `PUT` with
/// `{"value": value}` when a value is given, else `DELETE`; the status.
async fn conditional(instance: &str, name: &str, header: (&str, &str), value: Option<&str>) -> u16 {
    let (method, body) = match value {
        Some(v) => (
            reqwest::Method::PUT,
            Some(json!({ "value": v }).to_string()),
        ),
        None => (reqwest::Method::DELETE, None),
    };
    let path = key(instance, name);
    send(method, &path, &world().alice, &[header], body).await.0
}

/// The current `ETag` of a key of alice's.
async fn etag_of(instance: &str, name: &str) -> String {
    let (_, headers, _) = send(
        reqwest::Method::GET,
        &key(instance, name),
        &world().alice,
        &[],
        None,
    )
    .await;
    headers["etag"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_writes_let_only_one_racer_win() {
    let w = world();
    let p = project("etags").await;
    let (_, first) = put(&p.main, "doc", &w.alice, json!({"value": "v1"})).await;
    let tag = format!("\"{}\"", first["updatedAt"]);
    assert_eq!(etag_of(&p.main, "doc").await, tag);

    // Two agents hold the same version; the first write wins, the second is stale.
    assert_eq!(
        conditional(&p.main, "doc", ("If-Match", &tag), Some("agent-1")).await,
        200
    );
    assert_eq!(
        conditional(&p.main, "doc", ("If-Match", &tag), Some("agent-2")).await,
        412
    );
    let (_, now) = w.api().get(&key(&p.main, "doc"), w.alice.auth()).await;
    assert_eq!(now["value"], "agent-1");
    // The fresh tag wins.
    let fresh = etag_of(&p.main, "doc").await;
    assert_eq!(
        conditional(&p.main, "doc", ("If-Match", &fresh), Some("agent-2")).await,
        200
    );

    // If-None-Match: * creates only; If-Match: * updates only.
    assert_eq!(
        conditional(&p.main, "doc", ("If-None-Match", "*"), Some("x")).await,
        412
    );
    assert_eq!(
        conditional(&p.main, "new", ("If-Match", "*"), Some("x")).await,
        412
    );
    assert_eq!(
        conditional(&p.main, "new", ("If-None-Match", "*"), Some("x")).await,
        200
    );
    // A conditional delete with a stale tag deletes nothing.
    assert_eq!(
        conditional(&p.main, "doc", ("If-Match", &tag), None).await,
        412
    );
    let (_, got) = w.api().get(&key(&p.main, "doc"), w.alice.auth()).await;
    assert_eq!(got["value"], "agent-2");

    // Many racers with one tag: exactly one wins.
    let tag = etag_of(&p.main, "doc").await;
    let racers = (0..8).map(|i| {
        let (tag, instance) = (tag.clone(), p.main.clone());
        tokio::spawn(async move {
            let value = format!("racer-{i}");
            conditional(&instance, "doc", ("If-Match", &tag), Some(&value)).await
        })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        7,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_all_or_nothing_and_broadcast_in_order() {
    let w = world();
    let p = project("batches").await;
    let batch = format!("/api/instances/{}/batch", p.main);
    let mut ws = w.join(&p.main, &w.alice.key).await;
    put(&p.main, "old", &w.alice, json!({"value": 0})).await;
    ws.recv_type("key_updated").await;

    let bad = json!({"set": {"a": {"value": 1}, "b": {"value": 2, "attributes": {"type": "video"}}}, "delete": ["old"]});
    let (status, body) = w.api().post(&batch, w.alice.auth(), bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("\"b\""), "{body}");
    assert_eq!(w.api().get(&key(&p.main, "a"), w.alice.auth()).await.0, 404);
    assert_eq!(
        w.api().get(&key(&p.main, "old"), w.alice.auth()).await.0,
        200
    );
    ws.expect_silence(Duration::from_millis(300)).await;

    let too_big = json!({"set": {"a": {"value": "x".repeat(1_500_001)}}});
    assert_eq!(w.api().post(&batch, w.alice.auth(), too_big).await.0, 413);
    let ops: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    assert_eq!(
        w.api()
            .post(&batch, w.alice.auth(), json!({"delete": ops}))
            .await
            .0,
        413
    );

    // 1,000 sets in one batch: one answer, then every broadcast in body order.
    // Written by hand: a JSON map here would sort its members.
    let names: Vec<String> = (0..1000).map(|i| format!("item-{:04}", 999 - i)).collect();
    let members: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| format!(r#""{name}":{{"value":{i}}}"#))
        .collect();
    let body = format!(r#"{{"set":{{{}}}}}"#, members.join(","));
    let (status, result) = w.api().post_text(&batch, w.alice.auth(), body).await;
    assert_eq!(
        (status, result),
        (200, json!({"applied": 1000, "changed": 1000}))
    );
    for (i, name) in names.iter().enumerate() {
        let live = ws.recv().await;
        assert_eq!(
            (live["type"].as_str(), live["key"].as_str()),
            (Some("key_updated"), Some(name.as_str())),
            "broadcast {i}"
        );
        assert_eq!(live["value"], i);
    }
    // Sets first, then deletes; a no-op counts as applied, not changed.
    let body = json!({"set": {"item-0000": {"value": 999}, "fresh": {"value": 1}}, "delete": ["old", "never"]});
    let (status, result) = w.api().post(&batch, w.alice.auth(), body).await;
    assert_eq!((status, result), (200, json!({"applied": 4, "changed": 2})));
    assert_eq!(ws.recv().await["key"], "fresh");
    let live = ws.recv().await;
    assert_eq!(
        (live["type"].clone(), live["key"].clone()),
        (json!("key_deleted"), json!("old"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_pages_through_five_thousand_keys_once_each() {
    let w = world();
    let p = project("listing").await;
    let batch = format!("/api/instances/{}/batch", p.main);
    for chunk in 0..5 {
        let mut set = serde_json::Map::new();
        for i in 0..1000 {
            let n = chunk * 1000 + i;
            let tags = if n % 10 == 0 {
                json!(["tenth"])
            } else {
                json!([])
            };
            set.insert(
                format!("key/{n:05}"),
                json!({"value": n, "attributes": {"tags": tags}}),
            );
        }
        let (status, body) = w
            .api()
            .post(&batch, w.alice.auth(), json!({"set": set}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    put(&p.main, "other", &w.alice, json!({"value": "x"})).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{}?prefix=key%2F&limit=700", keys(&p.main));
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = w.api().get(&path, w.alice.auth()).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["keys"].as_object().unwrap().keys().cloned());
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..5000).map(|n| format!("key/{n:05}")).collect();
    assert_eq!(seen, expected);

    let (_, tagged) = w
        .api()
        .get(&format!("{}?tag=tenth", keys(&p.main)), w.alice.auth())
        .await;
    assert_eq!(tagged["keys"].as_object().unwrap().len(), 500);
    assert_eq!(tagged["cursor"], Value::Null);
    let (_, first) = w.api().get(&keys(&p.main), w.alice.auth()).await;
    assert_eq!(first["keys"].as_object().unwrap().len(), 1000);
    assert!(first["cursor"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_replace_import_round_trips() {
    let w = world();
    let p = project("Exported Notes").await;
    let target = w.instance(&w.alice, &p.id, "copy").await;
    let raw = r#"{"value":{ "kept" : [1, 2.50, "é"] },"attributes":{"type":"json","tags":["a"],"contentTags":["c"],"systemTags":["s"]}}"#;
    let (status, _, _) = send(
        reqwest::Method::PUT,
        &key(&p.main, "cfg"),
        &w.alice,
        &[],
        Some(raw.into()),
    )
    .await;
    assert_eq!(status, 200);
    put(
        &p.main,
        "note",
        &w.alice,
        json!({"value": "# Title\nbody", "attributes": {"type": "markdown"}}),
    )
    .await;
    put(&p.main, "pic", &w.alice, json!({"value": "iVBORw0KGgo=", "attributes": {"type": "image", "contentType": "image/png"}})).await;

    let export = |instance: &str| format!("/api/instances/{instance}/export");
    let client = reqwest::Client::new();
    let resp = client
        .get(w.server.local_url(&export(&p.main)))
        .header("Authorization", authorization(&w.alice.key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-disposition"].to_str().unwrap(),
        "attachment; filename=\"main.json\""
    );
    let exported = resp.text().await.unwrap();
    let doc: Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(doc["format"], "mindcache-export");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["instanceId"], p.main);
    assert!(
        exported.contains(r#"{ "kept" : [1, 2.50, "é"] }"#),
        "{exported}"
    );

    // Replace into another instance that holds something else.
    put(&target, "stale", &w.alice, json!({"value": 1})).await;
    let mut ws = w.join(&target, &w.alice.key).await;
    let (status, result) = w
        .api()
        .post_text(
            &format!("/api/instances/{target}/import?mode=replace"),
            w.alice.auth(),
            exported.clone(),
        )
        .await;
    assert_eq!(
        (status, result),
        (200, json!({"imported": 3, "deleted": 1}))
    );
    assert_eq!(ws.recv().await["type"], "cleared");
    for name in ["cfg", "note", "pic"] {
        assert_eq!(ws.recv_type("key_updated").await["key"], name);
    }
    let again = reqwest::Client::new()
        .get(w.server.local_url(&export(&target)))
        .header("Authorization", authorization(&w.alice.key))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let keys_of = |text: &str| -> Value {
        let mut doc: Value = serde_json::from_str(text).unwrap();
        for entry in doc["keys"].as_object_mut().unwrap().values_mut() {
            entry.as_object_mut().unwrap().remove("updatedAt");
        }
        doc["keys"].take()
    };
    assert_eq!(keys_of(&exported), keys_of(&again));
    assert!(again.contains(r#"{ "kept" : [1, 2.50, "é"] }"#));

    // Merge keeps what the document lacks.
    put(&target, "extra", &w.alice, json!({"value": 1})).await;
    let (status, result) = w
        .api()
        .post_text(
            &format!("/api/instances/{target}/import"),
            w.alice.auth(),
            exported,
        )
        .await;
    assert_eq!(
        (status, result),
        (200, json!({"imported": 3, "deleted": 0}))
    );
    assert_eq!(
        w.api().get(&key(&target, "extra"), w.alice.auth()).await.0,
        200
    );

    // The readable form.
    let md = reqwest::Client::new()
        .get(
            w.server
                .local_url(&format!("{}?format=markdown", export(&p.main))),
        )
        .header("Authorization", authorization(&w.alice.key))
        .send()
        .await
        .unwrap();
    assert!(md.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    let md = md.text().await.unwrap();
    assert!(
        md.contains("## cfg\n\n- type: json\n- tags: a\n\n```json\n"),
        "{md}"
    );
    assert!(
        md.contains("## note\n\n- type: markdown\n\n# Title\nbody\n"),
        "{md}"
    );
    assert!(md.contains("data:image/png;base64,iVBORw0KGgo="), "{md}");
}

async fn open_events(path: &str, user: Option<&User>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(world().server.local_url(path));
    if let Some(user) = user {
        req = req.header("Authorization", authorization(&user.key));
    }
    req.send().await.expect("events request")
}

#[tokio::test(flavor = "multi_thread")]
async fn event_streams_follow_changes_and_end_with_access() {
    let w = world();
    let p = project("events").await;
    put(&p.main, "before", &w.alice, json!({"value": 1})).await;
    let events = format!("/api/instances/{}/events", p.main);

    let resp = open_events(&events, Some(&w.alice)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut sse = SseClient::new(resp);
    let sync = sse.event(Duration::from_secs(10)).await;
    assert_eq!(sync.name, "sync");
    assert_eq!(sync.json()["data"]["before"]["value"], 1);
    assert_eq!(sync.json()["instanceId"], p.main);

    put(&p.main, "k", &w.alice, json!({"value": "v"})).await;
    let mut ws = w.join(&p.main, &w.alice.key).await;
    ws.send(&json!({"type": "delete", "key": "k"})).await;
    let updated = sse.event(Duration::from_secs(10)).await;
    assert_eq!(updated.name, "key_updated");
    assert_eq!(updated.json()["key"], "k");
    assert_eq!(updated.json()["updatedBy"], w.alice.id);
    let deleted = sse.event(Duration::from_secs(10)).await;
    assert_eq!(
        (deleted.name.as_str(), deleted.json()["key"].clone()),
        ("key_deleted", json!("k"))
    );
    assert!(deleted.id.is_some());

    // A stranger gets nothing; no credential is 401.
    assert_eq!(open_events(&events, Some(&w.carol)).await.status(), 404);
    assert_eq!(open_events(&events, None).await.status(), 401);

    // A one-time token, as EventSource uses: once only.
    let (status, token) = w.api().ws_token(w.alice.auth(), &p.main).await;
    assert_eq!(status, 200, "{token}");
    let with_token = format!("{events}?token={}", token["token"].as_str().unwrap());
    let resp = open_events(&with_token, None).await;
    assert_eq!(resp.status(), 200);
    let mut by_token = SseClient::new(resp);
    assert_eq!(by_token.event(Duration::from_secs(10)).await.name, "sync");
    assert_eq!(open_events(&with_token, None).await.status(), 401);

    // A stream opened with an API key ends when the key is deleted.
    let (status, created) = w
        .api()
        .post(
            "/api/keys",
            Some(&signed_in().jwt(&w.alice.id)),
            json!({"name": "reader", "scopeType": "account", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let reader = User {
        key: created["key"].as_str().unwrap().to_string(),
        ..w.alice.clone()
    };
    let resp = open_events(&events, Some(&reader)).await;
    assert_eq!(resp.status(), 200);
    let mut keyed = SseClient::new(resp);
    assert_eq!(keyed.event(Duration::from_secs(10)).await.name, "sync");
    w.api()
        .delete_ok(
            &format!("/api/keys/{}", created["id"].as_str().unwrap()),
            Some(&signed_in().jwt(&w.alice.id)),
        )
        .await;
    let last = keyed.event(Duration::from_secs(5)).await;
    assert_eq!(last.name, "closed");
    assert_eq!(
        last.json(),
        json!({"code": 4003, "reason": "Access revoked"})
    );
    assert!(matches!(
        keyed.next(Duration::from_secs(5)).await,
        Next::Ended
    ));
    // The owner's stream goes on.
    put(&p.main, "after", &w.alice, json!({"value": 2})).await;
    assert_eq!(
        sse.event(Duration::from_secs(10)).await.json()["key"],
        "after"
    );

    // Deleting the instance ends every stream.
    w.api()
        .delete_ok(&format!("/api/projects/{}", p.id), w.alice.auth())
        .await;
    let last = sse.event(Duration::from_secs(10)).await;
    assert_eq!(
        (last.name.as_str(), last.json()["reason"].clone()),
        ("closed", json!("Instance deleted"))
    );
    assert!(matches!(
        sse.next(Duration::from_secs(5)).await,
        Next::Ended
    ));
    let _ = WsClient::try_connect_to(w.server, &p.main, Some(&w.alice.key)).await;
}

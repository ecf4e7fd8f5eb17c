//! MindCache 3 (Y.js) clients and 2.0 clients on the same instances
//! (yjs.md), against the real runtime: real Y documents (`yrs`) in the test
//! process, JSON clients beside them.

mod common;

use std::time::Duration;

use common::server::{prod_server, shared, ServerOptions, TestServer};
use common::unique_id;
use common::world::{grant, Rows, World};
use common::ws::{Event, WsClient};
use common::yclient::{entry, frame, new_doc, YClient};
use serde_json::{json, Value};
use yrs::{Map, Transact, WriteTxn};

const QUIET: Duration = Duration::from_millis(700);

fn dev() -> &'static TestServer {
    shared(ServerOptions::development())
}

fn set(key: &str, value: Value, attributes: Value) -> Value {
    json!({"type":"set","key":key,"value":value,"attributes":attributes,"timestamp":1})
}

fn doc_attrs() -> Value {
    json!({"type":"document","contentTags":[],"systemTags":["LLMWrite"],"zIndex":0})
}

/// A JSON client's next `key_updated` for `key`.
async fn updated(c: &mut WsClient, key: &str) -> Value {
    loop {
        let m = c.recv_type("key_updated").await;
        if m["key"] == key {
            return m;
        }
    }
}

#[tokio::test]
async fn y_and_json_clients_see_each_other() {
    let id = unique_id("y-both");
    let (mut j, _) = WsClient::join(dev(), &id, None).await;
    let mut a = YClient::connect(dev(), &id).await;
    let mut b = YClient::connect(dev(), &id).await;

    // Y → Y and Y → JSON, with 2.0 attribute names.
    a.set(
        "note",
        json!({"n": 1}),
        json!({"type":"json","contentTags":["t"],"systemTags":["SystemPrompt","LLMWrite"],"zIndex":0}),
    )
    .await;
    b.until("a's key", |c| c.value("note") == Some(json!({"n": 1})))
        .await;
    let m = updated(&mut j, "note").await;
    assert_eq!(m["value"], json!({"n": 1}));
    assert_eq!(m["updatedBy"], "dev-user");
    let at = &m["attributes"];
    assert_eq!(
        (
            &at["type"],
            &at["tags"],
            &at["visible"],
            &at["readonly"],
            &at["template"]
        ),
        (
            &json!("json"),
            &json!(["t"]),
            &json!(true),
            &json!(false),
            &json!(false)
        )
    );

    // JSON → Y, with 3.x attribute names.
    j.send(&set(
        "plain",
        json!("hi"),
        json!({"readonly": true, "tags": ["x"]}),
    ))
    .await;
    updated(&mut j, "plain").await;
    for y in [&mut a, &mut b] {
        y.until("the JSON write", |c| c.value("plain") == Some(json!("hi")))
            .await;
        let attrs = &y.state()["plain"]["attributes"];
        assert_eq!(attrs["contentTags"], json!(["x"]));
        assert_eq!(attrs["systemTags"], json!(["SystemPrompt"]));
        assert_eq!(attrs["type"], "text");
    }

    // A fresh JSON client's sync holds the Y-written key; a fresh Y client
    // gets the JSON-written one.
    let (_, sync) = WsClient::join(dev(), &id, None).await;
    assert_eq!(sync["data"]["note"]["value"], json!({"n": 1}));
    let fresh = YClient::connect(dev(), &id).await;
    assert_eq!(fresh.value("plain"), Some(json!("hi")));
    assert_eq!(fresh.value("note"), Some(json!({"n": 1})));

    // Kinds by first frame: the JSON client (it has sent a set) gets no
    // more binary frames; the Y clients never got a JSON broadcast.
    let binary_before = j.binary_frames;
    j.send(&set("last", json!(0), json!({}))).await;
    updated(&mut j, "last").await;
    a.set("last-y", json!(1), json!({"type":"json"})).await;
    updated(&mut j, "last-y").await;
    assert_eq!(j.binary_frames, binary_before);
    a.until("the last write", |c| c.value("last") == Some(json!(0)))
        .await;
    assert!(
        a.json.iter().all(|m| m["type"] != "key_updated"),
        "{:?}",
        a.json
    );

    // HTTP writes reach Y clients too.
    let api = common::api::Api::new(dev());
    let (status, body) = api
        .put(
            &format!("/api/instances/{id}/keys/viahttp"),
            None,
            json!({"value": [1, 2]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    a.until("the HTTP write", |c| {
        c.value("viahttp") == Some(json!([1, 2]))
    })
    .await;
}

#[tokio::test]
async fn deletes_and_clear_go_both_ways() {
    let id = unique_id("y-del");
    let (mut j, _) = WsClient::join(dev(), &id, None).await;
    let mut y = YClient::connect(dev(), &id).await;
    for k in ["a", "b", "c"] {
        j.send(&set(k, json!(k), json!({}))).await;
        updated(&mut j, k).await;
    }
    y.until("three keys", |c| c.state().as_object().unwrap().len() == 3)
        .await;

    // JSON delete → gone for Y.
    j.send(&json!({"type":"delete","key":"a"})).await;
    j.recv_type("key_deleted").await;
    y.until("a deleted", |c| c.value("a").is_none()).await;

    // Y delete → key_deleted for JSON.
    y.edit(|txn, root| {
        root.remove(txn, "b");
    })
    .await;
    let m = j.recv_type("key_deleted").await;
    assert_eq!(m["key"], "b");

    // JSON clear → empty for Y.
    j.send(&json!({"type":"clear"})).await;
    j.recv_type("cleared").await;
    y.until("cleared", |c| c.state() == json!({})).await;

    // Y removing every key (two or more) → `cleared` for JSON.
    y.set("x", json!(1), json!({"type":"json"})).await;
    y.set("z", json!(2), json!({"type":"json"})).await;
    updated(&mut j, "z").await;
    y.edit(|txn, root| {
        root.clear(txn);
    })
    .await;
    j.recv_type("cleared").await;
    let (_, sync) = WsClient::join(dev(), &id, None).await;
    assert_eq!(sync["data"], json!({}));
}

#[tokio::test]
async fn concurrent_text_edits_keep_both_and_a_json_write_is_diffed_in() {
    let id = unique_id("y-text");
    let (mut j, _) = WsClient::join(dev(), &id, None).await;
    let mut a = YClient::connect(dev(), &id).await;
    let mut b = YClient::connect(dev(), &id).await;
    a.edit(|txn, root| {
        root.insert(
            txn,
            "doc",
            entry(
                yrs::In::Text(yrs::TextPrelim::new("hello world").into()),
                &doc_attrs(),
            ),
        );
    })
    .await;
    b.until("the document", |c| {
        c.text_string("doc").as_deref() == Some("hello world")
    })
    .await;
    let m = updated(&mut j, "doc").await;
    assert_eq!(
        (m["value"].clone(), m["attributes"]["type"].clone()),
        (json!("hello world"), json!("document"))
    );

    // Both edit at once, at different places.
    a.insert_text("doc", 0, ">> ").await;
    b.insert_text("doc", 11, "!").await;
    a.until("both edits", |c| {
        c.text_string("doc").as_deref() == Some(">> hello world!")
    })
    .await;
    b.until("both edits", |c| {
        c.text_string("doc").as_deref() == Some(">> hello world!")
    })
    .await;

    // A 2.0 client replaces a word while a Y client appends (its edit
    // reaches the server after the 2.0 write): both survive.
    let pending = {
        let t = a.text("doc").unwrap();
        let mut txn = a.doc.transact_mut();
        yrs::Text::insert(&t, &mut txn, 15, " :)");
        txn.encode_update_v1()
    };
    j.send(&set(
        "doc",
        json!(">> HELLO world!"),
        json!({"type":"document"}),
    ))
    .await;
    updated(&mut j, "doc").await;
    a.send(frame(2, &pending)).await;
    let want = ">> HELLO world! :)";
    a.until("the merged text", |c| {
        c.text_string("doc").as_deref() == Some(want)
    })
    .await;
    b.until("the merged text", |c| {
        c.text_string("doc").as_deref() == Some(want)
    })
    .await;
    let (_, sync) = WsClient::join(dev(), &id, None).await;
    assert_eq!(sync["data"]["doc"]["value"], want);
}

#[tokio::test]
async fn offline_edits_merge_on_reconnect() {
    let id = unique_id("y-offline");
    let (mut j, _) = WsClient::join(dev(), &id, None).await;
    let mut a = YClient::connect(dev(), &id).await;
    a.set("shared", json!("v1"), json!({"type":"text"})).await;
    assert_eq!(updated(&mut j, "shared").await["value"], "v1");
    // a goes offline and edits; meanwhile a JSON client writes another key.
    let doc = std::mem::replace(&mut a.doc, new_doc());
    a.close().await;
    {
        let mut txn = doc.transact_mut();
        let root = txn.get_or_insert_map(common::yclient::ROOT);
        root.insert(
            &mut txn,
            "offline",
            entry(
                yrs::In::Any(common::yclient::any(&json!("written offline"))),
                &json!({"type":"text"}),
            ),
        );
    }
    j.send(&set("online", json!(42), json!({"type":"json"})))
        .await;
    updated(&mut j, "online").await;
    // Back: the Step1/Step2 exchange merges both ways.
    let mut back = YClient::connect_with(dev(), &id, doc).await;
    back.until("the key written meanwhile", |c| {
        c.value("online") == Some(json!(42))
    })
    .await;
    let m = updated(&mut j, "offline").await;
    assert_eq!(m["value"], "written offline");
}

#[tokio::test]
async fn a_json_client_resending_its_state_sends_y_clients_nothing() {
    let id = unique_id("y-noop");
    let (mut j, _) = WsClient::join(dev(), &id, None).await;
    let mut y = YClient::connect(dev(), &id).await;
    y.set(
        "k",
        json!("v"),
        json!({"type":"text","contentTags":["b","a"],"systemTags":["LLMWrite","SystemPrompt"],"zIndex":3}),
    )
    .await;
    let m = updated(&mut j, "k").await;
    y.settle(QUIET).await;
    let seen = y.updates;
    // What a 2.0 client knows of the key, tags in another order and
    // without the 3.x fields: changes nothing for anyone.
    j.send(&set(
        "k",
        json!("v"),
        json!({"type":"text","readonly":false,"visible":true,"tags":["a","b"]}),
    ))
    .await;
    j.send(&set("k", json!("v"), m["attributes"].clone())).await;
    assert!(matches!(j.next_event(QUIET).await, Event::Timeout));
    y.settle(QUIET).await;
    assert_eq!(y.updates, seen, "no update may reach the Y client");
    assert_eq!(y.state()["k"]["attributes"]["zIndex"], 3);
}

#[tokio::test]
async fn a_read_socket_s_update_is_refused_whole() {
    let id = unique_id("y-read");
    let mut writer = YClient::connect(dev(), &id).await;
    writer.set("k", json!(1), json!({"type":"json"})).await;
    // A read token of a reader the instance is shared with (seeded).
    let token = unique_id("ytoken");
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 600;
    let reader_id = unique_id("yreader");
    let project = unique_id("yproject");
    Rows::default()
        .owner(&reader_id)
        .project(&reader_id, &project, "p")
        .instance(&reader_id, &project, &id, "i")
        .ws_token(&token, &reader_id, &id, "read", expires)
        .write(dev());
    let mut reader = YClient::connect(dev(), &format!("{id}?token={token}")).await;
    assert_eq!(reader.value("k"), Some(json!(1)));
    let auth = reader
        .json
        .iter()
        .find(|m| m["type"] == "auth_success")
        .cloned();
    assert_eq!(auth.unwrap()["permission"], "read");
    reader.set("k", json!(2), json!({"type":"json"})).await;
    reader.set("other", json!(3), json!({"type":"json"})).await;
    let e = reader.next_error().await;
    assert_eq!(e["code"], "NO_PERMISSION", "{e}");
    writer.settle(QUIET).await;
    assert_eq!(writer.value("k"), Some(json!(1)));
    assert_eq!(writer.value("other"), None);
    let (_, sync) = WsClient::join(dev(), &id, None).await;
    assert_eq!(sync["data"]["k"]["value"], 1);
    assert!(sync["data"].get("other").is_none());
}

#[tokio::test]
async fn an_update_breaking_a_rule_changes_nothing() {
    let id = unique_id("y-rules");
    let mut y = YClient::connect(dev(), &id).await;
    let mut other = YClient::connect(dev(), &id).await;
    // One good key and one reserved one in the same update: all refused.
    y.edit(|txn, root| {
        for key in ["good", "$date"] {
            root.insert(
                txn,
                key,
                entry(
                    yrs::In::Any(common::yclient::any(&json!(1))),
                    &json!({"type":"json"}),
                ),
            );
        }
    })
    .await;
    let e = y.next_error().await;
    assert_eq!(e["code"], "INVALID_KEY", "{e}");
    other.settle(QUIET).await;
    assert_eq!(other.state(), json!({}));
    // Not a sync message at all.
    y.send(vec![9, 9]).await;
    assert_eq!(y.next_error().await["code"], "PARSE_ERROR");
    // A value over the limit.
    y.set("big", json!("x".repeat(1_500_001)), json!({"type":"text"}))
        .await;
    assert_eq!(y.next_error().await["code"], "TOO_LARGE");
    let (_, sync) = WsClient::join(dev(), &id, None).await;
    assert_eq!(sync["data"], json!({}));
}

#[tokio::test]
async fn the_connect_sequence_ends_with_a_step1() {
    let id = unique_id("y-seq");
    let url = dev().ws_url(&format!("/sync/{id}"));
    let (mut s, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut kinds = Vec::new();
    for _ in 0..3 {
        match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                kinds.push(v["type"].as_str().unwrap().to_owned());
            }
            Ok(Some(Ok(Message::Binary(b)))) => {
                assert_eq!(b[0], 0, "a Step1");
                kinds.push("step1".into());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(kinds, ["auth_success", "sync", "step1"]);
}

#[tokio::test]
async fn a_restart_loses_nothing_and_a_long_history_compacts() {
    let mut server = TestServer::start(ServerOptions::development());
    let id = unique_id("y-restart");
    let mut y = YClient::connect(&server, &id).await;
    y.set("counter", json!(0), json!({"type":"json"})).await;
    y.edit(|txn, root| {
        root.insert(
            txn,
            "log",
            entry(yrs::In::Text(yrs::TextPrelim::new("").into()), &doc_attrs()),
        );
    })
    .await;
    // 10,000 edits: one-character inserts, sent in batches of updates.
    let text = loop {
        if let Some(t) = y.text("log") {
            break t;
        }
        y.pump_once(Duration::from_millis(50)).await;
    };
    for batch in 0..100 {
        let mut frames = Vec::new();
        for i in 0..100 {
            let mut txn = y.doc.transact_mut();
            let len = yrs::Text::len(&text, &txn);
            yrs::Text::insert(
                &text,
                &mut txn,
                len,
                if (batch + i) % 2 == 0 { "a" } else { "b" },
            );
            frames.push(frame(2, &txn.encode_update_v1()));
        }
        for f in frames {
            y.send(f).await;
        }
    }
    y.close().await;
    let expected_len = 10_000;
    // Every edit was stored before the restart.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, sync) = WsClient::join(&server, &id, None).await;
        if sync["data"]["log"]["value"].as_str().map(str::len) == Some(expected_len) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            sync["data"]["log"]["value"]
                .as_str()
                .map(str::len)
                .unwrap_or(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.restart();
    let fresh = YClient::connect(&server, &id).await;
    assert_eq!(
        fresh.text_string("log").map(|s| s.len()),
        Some(expected_len)
    );
    assert_eq!(fresh.value("counter"), Some(json!(0)));
    // 2.0 clients read the same text after the restart. (That the log was
    // compacted on the way is checked natively, in ybridge.rs.)
    let (_, sync) = WsClient::join(&server, &id, None).await;
    assert_eq!(
        sync["data"]["log"]["value"].as_str(),
        fresh.text_string("log").as_deref()
    );
}

/// The seeded users of the production-mode server (seeded once).
fn world() -> &'static World {
    static W: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    W.get_or_init(|| World::seed(prod_server(), "yjs"))
}

/// A Y client of `key`'s owner, by a one-time token as 3.x clients connect.
async fn y_by_token(w: &World, key: &str, instance: &str) -> YClient {
    let (status, token) = w
        .api()
        .post(
            "/api/ws-token",
            Some(key),
            json!({"instanceId": instance, "permission": "write"}),
        )
        .await;
    assert_eq!(status, 200, "{token}");
    let path = format!("{instance}?token={}", token["token"].as_str().unwrap());
    YClient::connect(w.server, &path).await
}

#[tokio::test]
async fn revocation_and_deletion_close_y_sockets_like_any_other() {
    let w = world();
    let (alice, bob) = (&w.alice, &w.bob);
    let project = w.project(alice, "y").await;
    let shares = format!("/api/instances/{}/shares", project.main);
    let share = w
        .share(alice, &shares, grant("user", &bob.id, "write"))
        .await;
    let mut bobs = y_by_token(w, &bob.key, &project.main).await;
    let mut alices = y_by_token(w, &alice.key, &project.main).await;
    bobs.set("from-bob", json!(1), json!({"type":"json"})).await;
    alices
        .until("bob's write", |c| c.value("from-bob") == Some(json!(1)))
        .await;

    // The share goes: bob's socket is closed as protocol.md §8 says.
    w.api()
        .delete_ok(&format!("/api/shares/{share}"), Some(&alice.key))
        .await;
    assert_eq!(bobs.wait_closed(Duration::from_secs(2)).await.0, 4003);

    // An instance goes: its Y sockets are closed too.
    let doomed = w.instance(alice, &project.id, "doomed").await;
    let mut on_doomed = y_by_token(w, &alice.key, &doomed).await;
    w.api()
        .delete_ok(&format!("/api/instances/{doomed}"), Some(&alice.key))
        .await;
    assert_eq!(
        on_doomed.wait_closed(Duration::from_secs(2)).await,
        (1000, "Instance deleted".to_string())
    );
    alices.settle(QUIET).await;
    assert!(alices.closed.is_none());
}

#[tokio::test]
async fn an_instance_too_large_to_sync_gets_no_document() {
    let small = shared(ServerOptions::development().var("MINDCACHE_TEST_MAX_SYNC_BYTES", "2000"));
    let id = unique_id("y-big");
    let (mut j, _) = WsClient::join(small, &id, None).await;
    for i in 0..3 {
        j.send(&set(&format!("k{i}"), json!("x".repeat(900)), json!({})))
            .await;
        updated(&mut j, &format!("k{i}")).await;
    }
    let url = small.ws_url(&format!("/sync/{id}"));
    let (mut s, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    s.send(Message::binary(frame(0, &[0]))).await.unwrap();
    // One TOO_LARGE in place of the `sync` (docs/faults.md), one for the
    // Step1: no document is built, no Step2 comes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut too_large = 0;
    while too_large < 2 {
        let next = tokio::time::timeout_at(deadline, s.next())
            .await
            .expect("two errors");
        match next {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "error" && v["code"] == "TOO_LARGE" {
                    too_large += 1;
                }
            }
            Some(Ok(Message::Binary(b))) => panic!("a binary frame {b:?}"),
            other => assert!(matches!(other, Some(Ok(_))), "{other:?}"),
        }
    }
    // The instance can still be cleared (docs/faults.md).
    j.send(&json!({"type":"clear"})).await;
    j.recv_type("cleared").await;
}

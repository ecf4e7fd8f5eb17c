//! protocol.md §8 against a production-mode server: revocation reaches open
//! sockets and running AI requests, a deleted instance stays deleted, the
//! read-only flag only moves forward, nothing is stored before
//! authentication; and the auth deadline closes a socket at once.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::api::{assert_refusal, Api};
use common::clerk::SignedIn;
use common::scripted::delta;
use common::scripted::{script, sse, tag, text_step, tool_arguments, tool_call, with_upstreams};
use common::server::{dev_server, ServerOptions};
use common::world::{grant, Project, User, World};
use common::ws::{upgrade_refusal, Event, WsClient};
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-for-revocation-tests";

fn signed_in() -> &'static SignedIn {
    static S: OnceLock<SignedIn> = OnceLock::new();
    S.get_or_init(|| {
        SignedIn::start(with_upstreams(ServerOptions::production()).var("ADMIN_TOKEN", ADMIN))
    })
}

/// The binary's seeded users (seeded once: writing to D1 from the command
/// line while the server runs can lock it out).
fn setup(_test: &str) -> (&'static World, Api<'static>) {
    static W: OnceLock<World> = OnceLock::new();
    let w = W.get_or_init(|| World::seed(signed_in().server, "rev"));
    (w, w.api())
}

/// The seeded world and a new project `p` of alice's.
async fn alices_project(test: &str) -> (&'static World, Api<'static>, Project) {
    let (w, api) = setup(test);
    let project = w.project(&w.alice, "p").await;
    (w, api, project)
}

fn jwt(user: &User) -> String {
    signed_in().jwt(&user.id)
}

/// Waits for the socket's close (skipping messages); its code and reason.
async fn closed(ws: &mut WsClient, limit: Duration) -> (u16, String) {
    loop {
        match ws.next_event(limit).await {
            Event::Json(_) => continue,
            Event::Closed(Some(frame)) => return frame,
            other => panic!("expected a close within {limit:?}, got {other:?}"),
        }
    }
}

/// A new API key of `user` (created as a signed-in user would); the key
/// and its id.
async fn new_key(api: &Api<'_>, user: &User, permissions: Value) -> (String, String) {
    let body = json!({"name": "agent", "scopeType": "account", "permissions": permissions});
    let (status, created) = api.post("/api/keys", Some(&jwt(user)), body).await;
    assert_eq!(status, 201, "{created}");
    (
        created["key"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn deleting_an_api_key_closes_every_socket_it_opened() {
    let (w, api, project) = alices_project("rkey").await;
    let alice = &w.alice;
    let (key, key_id) = new_key(&api, alice, json!(["read", "write"])).await;

    // Three ways in: the header, a one-time token the key obtained, and an
    // in-band `auth`.
    let mut by_header = w.join(&project.main, &key).await;
    let (_, token) = api.ws_token(Some(&key), &project.main).await;
    let path = format!(
        "{}?token={}",
        project.main,
        token["token"].as_str().unwrap()
    );
    let (mut by_token, _) = WsClient::join(w.server, &path, None).await;
    let mut in_band = WsClient::connect_to(w.server, &project.main, None).await;
    in_band.send(&json!({"type": "auth", "apiKey": key})).await;
    in_band.handshake().await;
    // The owner's own socket (signed in) is not affected.
    let mut owner = w.join(&project.main, &jwt(alice)).await;

    let started = Instant::now();
    let deleted = api
        .delete(&format!("/api/keys/{key_id}"), Some(&jwt(alice)))
        .await;
    assert_eq!(deleted.0, 200);
    for ws in [&mut by_header, &mut by_token, &mut in_band] {
        assert_eq!(
            closed(ws, Duration::from_secs(2)).await,
            (4003, "Access revoked".to_string())
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // A set the key's socket still manages to send is not applied.
    by_header
        .try_send(&json!({"type": "set", "key": "after", "value": 1}))
        .await;
    let seen = owner.set("owner", json!(2)).await;
    assert_eq!(
        seen["key"], "owner",
        "nothing from the revoked key came first"
    );
    let (_, sync) = WsClient::join(w.server, &project.main, Some(&jwt(alice))).await;
    assert!(sync["data"].get("after").is_none(), "{sync}");
}

#[tokio::test]
async fn a_token_grants_nothing_once_its_credential_is_revoked() {
    let (w, api, project) = alices_project("rtoken").await;
    let alice = &w.alice;
    let (key, key_id) = new_key(&api, alice, json!(["read", "write"])).await;
    let (_, minted) = api
        .post(
            "/api/ws-token",
            Some(&key),
            json!({"instanceId": project.main}),
        )
        .await;
    assert_eq!(
        api.delete(&format!("/api/keys/{key_id}"), Some(&jwt(alice)))
            .await
            .0,
        200
    );
    let path = format!(
        "{}?token={}",
        project.main,
        minted["token"].as_str().unwrap()
    );
    // Over plain HTTP: the token is taken on first use, so its refusal
    // cannot be asked for twice, and a WebSocket library may drop the body.
    let refused = upgrade_refusal(&w.server.local_url(&format!("/sync/{path}")), &[]).await;
    assert_eq!(
        refused,
        (403, json!({"error": "Instance not found or access denied"}))
    );
}

#[tokio::test]
async fn a_deleted_share_closes_and_a_lowered_share_lowers() {
    let (w, api) = setup("rshare");
    let (alice, bob) = (&w.alice, &w.bob);
    let bobs = w.project(bob, "bob's").await;
    let shares = format!("/api/instances/{}/shares", bobs.main);
    let share = w
        .share(bob, &shares, grant("user", &alice.id, "write"))
        .await;
    let mut ws = w.join(&bobs.main, &alice.key).await;
    let mut owner = w.join(&bobs.main, &bob.key).await;

    // Lowered to read: the socket stays open, its next set is refused.
    w.share(bob, &shares, grant("user", &alice.id, "read"))
        .await;
    assert_eq!(ws.set_refused().await, "NO_PERMISSION");

    // Deleted: closed with 4003 within a second.
    let started = Instant::now();
    api.delete_ok(&format!("/api/shares/{share}"), Some(&bob.key))
        .await;
    assert_eq!(closed(&mut ws, Duration::from_secs(2)).await.0, 4003);
    assert!(started.elapsed() < Duration::from_secs(1));
    owner.set("still", json!(true)).await;
}

#[tokio::test]
async fn group_changes_reach_the_members_sockets() {
    let (w, api) = setup("rgroup");
    let (bob, carol, eve) = (&w.bob, &w.carol, &w.eve);
    let (status, group) = api
        .post("/api/groups", Some(&carol.key), json!({"name": "g"}))
        .await;
    assert_eq!(status, 201);
    let gid = group["id"].as_str().unwrap();
    for member in [bob, eve] {
        let path = format!("/api/groups/{gid}/members");
        let (status, _) = api
            .post(&path, Some(&carol.key), json!({"userId": member.id}))
            .await;
        assert_eq!(status, 201);
    }
    let project = w.project(carol, "p").await;
    let shares = format!("/api/projects/{}/shares", project.id);
    w.share(carol, &shares, grant("group", gid, "write")).await;
    let mut bobs = w.join(&project.main, &bob.key).await;
    let mut eves = w.join(&project.main, &eve.key).await;

    // Removing bob closes bob's socket only.
    let path = format!("/api/groups/{gid}/members/{}", bob.id);
    api.delete_ok(&path, Some(&carol.key)).await;
    assert_eq!(closed(&mut bobs, Duration::from_secs(2)).await.0, 4003);
    eves.set("k", json!(1)).await;

    // Deleting the group closes the rest.
    api.delete_ok(&format!("/api/groups/{gid}"), Some(&carol.key))
        .await;
    assert_eq!(closed(&mut eves, Duration::from_secs(2)).await.0, 4003);
}

#[tokio::test]
async fn a_deleted_instance_stays_deleted_on_every_path() {
    let (w, api, project) = alices_project("rdel").await;
    let alice = &w.alice;
    let doomed = w.instance(alice, &project.id, "doomed").await;
    let mut ws = w.join(&doomed, &alice.key).await;
    ws.set("k", json!(1)).await;
    // A token obtained before the deletion.
    let (_, early) = api.ws_token(Some(&alice.key), &doomed).await;

    api.delete_ok(&format!("/api/instances/{doomed}"), Some(&alice.key))
        .await;
    assert_eq!(
        closed(&mut ws, Duration::from_secs(2)).await,
        (1000, "Instance deleted".to_string())
    );

    // The instance's pending tokens went with it.
    let path = format!("{doomed}?token={}", early["token"].as_str().unwrap());
    let late = WsClient::try_connect_to(w.server, &path, None).await;
    assert_eq!(
        late.err().as_deref(),
        Some(r#"401 {"error":"Invalid token"}"#)
    );
    assert_eq!(
        w.refusal(&doomed, &alice.key).await,
        r#"403 {"error":"Instance not found or access denied"}"#
    );
    let (status, _) = api.ws_token(Some(&alice.key), &doomed).await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post(
            "/api/transform",
            Some(&alice.key),
            json!({"instanceId": doomed, "outputKey": "o", "template": "x"}),
        )
        .await;
    assert_eq!(status, 404);
    let instances = format!("/api/projects/{}/instances", project.id);
    let copy = json!({"name": "copy", "cloneFrom": doomed});
    let answer = api.post(&instances, Some(&alice.key), copy).await;
    assert_refusal(answer, 404, "cloneFrom instance not found");
}

#[tokio::test]
async fn development_mode_cannot_revive_a_deleted_id() {
    let server = dev_server();
    let api = Api::new(server);
    let (status, project) = api
        .post("/api/projects", None, json!({"name": "dev"}))
        .await;
    assert_eq!(status, 201);
    let main = project["defaultInstanceId"].as_str().unwrap().to_string();
    let (mut ws, _) = WsClient::join(server, &main, None).await;
    api.delete_ok(&format!("/api/instances/{main}"), None).await;
    assert_eq!(closed(&mut ws, Duration::from_secs(2)).await.0, 1000);
    // dev-user may use any id, but not a deleted one.
    let mut again = WsClient::connect_to(server, &main, None).await;
    assert_eq!(
        again.expect_closed().await,
        Some((4004, "Instance not found".to_string()))
    );
    let (status, _) = api.ws_token(None, &main).await;
    assert_eq!(status, 404);
}

/// A delegate that can read, made with the signed-in `token`; its id.
async fn reader_delegate(api: &Api<'_>, token: &str, name: &str) -> String {
    let caps = json!({"can_read": true});
    let (_, d) = api
        .post(
            "/api/delegates",
            Some(token),
            json!({"name": name, "keyPermissions": caps}),
        )
        .await;
    d["delegate_id"].as_str().unwrap().to_string()
}

/// The 64-hex Durable Object id of an instance, as the delegates API
/// reports it.
async fn object_id(api: &Api<'_>, user: &User, instance: &str) -> String {
    let token = jwt(user);
    let id = reader_delegate(api, &token, "probe").await;
    let grants = format!("/api/delegates/{id}/grants");
    let body = json!({"instanceId": instance, "permission": "read"});
    assert_eq!(api.post(&grants, Some(&token), body).await.0, 200);
    let (_, listed) = api.get(&grants, Some(&token)).await;
    listed["grants"][0]["do_id"].as_str().unwrap().to_string()
}

async fn storage(object_id: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(
            signed_in()
                .server
                .local_url(&format!("/admin/do/{object_id}/storage")),
        )
        .header("X-Admin-Token", ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_connect_that_never_authenticates_stores_nothing() {
    let (w, api, project) = alices_project("rstore").await;
    let alice = &w.alice;
    let object = object_id(&api, alice, &project.main).await;

    let mut idle = WsClient::connect_to(w.server, &project.main, None).await;
    assert_eq!(idle.set_refused().await, "NOT_AUTHENTICATED");
    idle.close(1000, "bye").await;
    let report = storage(&object).await;
    assert_eq!(
        report,
        json!({"tables": [], "alarm": false, "deleted": false})
    );

    // Once someone authenticates, the object has its tables.
    let mut ok = WsClient::connect_to(w.server, &project.main, None).await;
    ok.send(&json!({"type": "auth", "apiKey": alice.key})).await;
    ok.handshake().await;
    let report = storage(&object).await;
    let tables = report["tables"].as_array().unwrap();
    assert!(
        tables.contains(&json!("keys")) && tables.contains(&json!("meta")),
        "{report}"
    );

    // And a deleted instance keeps only its tombstone.
    api.delete_ok(
        &format!("/api/instances/{}", project.main),
        Some(&alice.key),
    )
    .await;
    let report = storage(&object).await;
    assert_eq!(report["deleted"], true, "{report}");
    assert_eq!(report["tables"], json!(["tombstone"]));
}

#[tokio::test]
async fn the_auth_timeout_error_and_close_arrive_together() {
    let (w, _, project) = alices_project("rtimeout").await;
    let started = Instant::now();
    let mut ws = WsClient::connect_to(w.server, &project.main, None).await;
    let Event::Json(error) = ws.next_event(Duration::from_secs(15)).await else {
        panic!("no auth_error");
    };
    let at_error = started.elapsed();
    assert_eq!(error["code"], "AUTH_TIMEOUT");
    let (code, _) = closed(&mut ws, Duration::from_secs(5)).await;
    let at_close = started.elapsed();
    assert_eq!(code, 1008);
    assert!(at_error >= Duration::from_millis(9_500), "{at_error:?}");
    assert!(
        at_close - at_error < Duration::from_secs(1),
        "error at {at_error:?}, close at {at_close:?}"
    );
}

#[tokio::test]
async fn frames_queued_behind_a_slow_auth_are_capped() {
    // Its own server, whose first JWT verification waits 3 s for the JWKS.
    let slow = SignedIn::with_slow_jwks(
        ServerOptions::production().var("ADMIN_TOKEN", "slow-jwks"),
        Duration::from_secs(3),
    );
    let w = World::seed(slow.server, "slow");
    let project = w.project(&w.alice, "p").await;
    let mut ws = WsClient::connect_to(w.server, &project.main, None).await;
    ws.send(&json!({"type": "auth", "apiKey": slow.jwt(&w.alice.id)}))
        .await;
    // Not byte-for-byte the runtime's auto-answered ping: each reaches the
    // object and waits behind the `auth`.
    for _ in 0..1_001 {
        if !ws.try_send(&json!({"type": "ping", "n": 1})).await {
            break;
        }
    }
    let (code, _) = closed(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(code, 1009);
}

/// A tool step whose stream takes about `total` to arrive: the model
/// writes `key` = `value`.
fn slow_write(key: &str, value: &str, total: Duration) -> common::fake::FakeResponse {
    let args = json!({"key": key, "value": value}).to_string();
    let mut chunks = vec![tool_call(0, "call_slow", "write_key", "")];
    let pieces: Vec<String> = args.chars().map(String::from).collect();
    let n = pieces.len() as u32;
    chunks.extend(pieces.iter().map(|p| tool_arguments(0, p)));
    chunks.push(delta(json!({}), Some("tool_calls")));
    sse(chunks, total / n)
}

/// Posts a chat and reads its whole stream; the stream's text.
async fn chat(server_url: String, key: String, body: Value) -> String {
    let resp = reqwest::Client::new()
        .post(server_url)
        .json(&body)
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("chat");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("chat stream")
}

/// Starts an edit-mode chat on `instance`, with `key`, whose model takes
/// about 2 s to write `late` = `x`; the stream's text when it ends.
fn slow_chat(w: &World, instance: &str, key: String) -> tokio::task::JoinHandle<String> {
    let t = tag();
    script(
        &t,
        vec![
            slow_write("late", "x", Duration::from_secs(2)),
            text_step(&["done"]),
        ],
    );
    let body = json!({
        "instanceId": instance, "model": t, "mode": "edit",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "write"}]}],
    });
    tokio::spawn(chat(w.server.local_url("/api/chat"), key, body))
}

#[tokio::test]
async fn a_long_ai_request_cannot_reopen_a_read_only_instance() {
    let (w, api, project) = alices_project("rro").await;
    let alice = &w.alice;
    let running = slow_chat(w, &project.main, alice.key.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = api
        .patch(
            &format!("/api/instances/{}", project.main),
            Some(&alice.key),
            json!({"is_readonly": true}),
        )
        .await;
    assert_eq!(status, 200);
    let stream = running.await.unwrap();
    assert!(stream.contains("read-only"), "{stream}");

    // The instance stayed read-only and the late write is not there.
    let (mut ws, sync) = WsClient::join(w.server, &project.main, Some(&alice.key)).await;
    assert!(sync["data"].get("late").is_none(), "{sync}");
    assert_eq!(ws.set_refused().await, "READ_ONLY");
}

#[tokio::test]
async fn a_running_chat_stops_writing_when_its_key_is_deleted() {
    let (w, api, project) = alices_project("rchat").await;
    let alice = &w.alice;
    let (key, key_id) = new_key(&api, alice, json!(["read", "write"])).await;
    let running = slow_chat(w, &project.main, key);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deleted = api
        .delete(&format!("/api/keys/{key_id}"), Some(&jwt(alice)))
        .await;
    assert_eq!(deleted.0, 200);
    let stream = running.await.unwrap();
    assert!(stream.contains("revoked"), "{stream}");
    let (_, sync) = WsClient::join(w.server, &project.main, Some(&alice.key)).await;
    assert!(sync["data"].get("late").is_none(), "{sync}");
}

/// The cost of one revocation that reaches 1,000 objects (docs/revocation.md):
/// a delegate granted on 1,000 instances, with sockets open on `SOCKETS` of
/// them (default 100; the others' objects are cold), is deleted. Prints the
/// time until the `DELETE` answers and until the last socket is closed.
/// Run on demand: `cargo test --test revocation -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn revocation_reaching_a_thousand_objects() {
    const OBJECTS: usize = 1_000;
    let sockets: usize = std::env::var("SOCKETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let (w, api) = setup("rcost");
    let owner = &w.alice;
    let project = w.project(owner, "many").await;
    let token = jwt(owner);
    let delegate = reader_delegate(&api, &token, "wide").await;
    let (_, s) = api
        .post(
            &format!("/api/delegates/{delegate}/secrets"),
            Some(&token),
            json!({}),
        )
        .await;
    let secret = s["delegateSecret"].as_str().unwrap().to_string();

    // 1,000 instances and grants, seeded in batches (one command-line
    // argument holds at most 128 KiB).
    let ids: Vec<String> = (0..OBJECTS)
        .map(|i| format!("cost-{i:04}-{}", project.id))
        .collect();
    for chunk in ids.chunks(100) {
        let sql: String = chunk
            .iter()
            .map(|id| {
                format!(
                    "INSERT INTO instances (id, project_id, owner_id, name, created_at, updated_at) VALUES ('{id}','{p}','{o}','i',0,0);
                     INSERT INTO delegate_grants (delegate_id, instance_id, permission, granted_by_user_id, granted_at) VALUES ('{delegate}','{id}','read','{o}',0);",
                    p = project.id,
                    o = owner.id
                )
            })
            .collect();
        w.server.d1_execute(&sql);
    }

    let cred = format!("ApiKey {delegate}:{secret}");
    let mut open = Vec::new();
    let opened = Instant::now();
    for id in ids.iter().take(sockets) {
        let mut ws = WsClient::connect_to(w.server, id, Some(&cred)).await;
        ws.handshake().await;
        open.push(ws);
    }
    eprintln!(
        "opened {sockets} delegate sockets in {:?}",
        opened.elapsed()
    );

    let started = Instant::now();
    let (status, _) = api
        .delete(&format!("/api/delegates/{delegate}"), Some(&token))
        .await;
    let answered = started.elapsed();
    assert_eq!(status, 200);
    let mut last = Duration::ZERO;
    for ws in &mut open {
        assert_eq!(closed(ws, Duration::from_secs(30)).await.0, 4003);
        last = last.max(started.elapsed());
    }
    eprintln!(
        "revocation reaching {OBJECTS} objects ({sockets} with a socket): DELETE answered in {answered:?}, last socket closed after {last:?}"
    );
}

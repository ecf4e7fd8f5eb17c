//! The OpenAPI document against the real server: it is served at
//! `GET /api/openapi.json`, and a walk through every documented operation —
//! successes and the usual refusals, as the dashboard and agents call them —
//! gets responses whose status, content type and JSON body the document's
//! schemas accept (validated by the `jsonschema` crate; see
//! tests/common/openapi.rs). The walk must reach every operation.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use common::api::{authorization, header};
use common::openapi::Spec;
use common::scripted::{completion, ready, script, tag, text_step, with_upstreams};
use common::server::{shared, ServerOptions, TestServer};
use common::world::World;
use common::ws::WsClient;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "openapi-admin-token";

struct Walk {
    server: &'static TestServer,
    spec: Spec,
    client: reqwest::Client,
    reached: Mutex<BTreeSet<(String, String)>>,
}

impl Walk {
    async fn start(server: &'static TestServer) -> Walk {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let resp = client
            .get(server.local_url("/api/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let text = resp.text().await.unwrap();
        let served: Value = serde_json::from_str(&text).expect("the document is JSON");
        let file: Value = serde_json::from_str(include_str!("../src/http/openapi.json")).unwrap();
        assert_eq!(served, file, "the server serves src/http/openapi.json");
        assert_eq!(served["openapi"], "3.1.0");
        let walk = Walk {
            server,
            spec: Spec::new(&served),
            client,
            reached: Mutex::default(),
        };
        walk.note("GET", "/api/openapi.json", 200, "application/json", &served);
        walk
    }

    fn note(&self, method: &str, path: &str, status: u16, content_type: &str, body: &Value) {
        match self.spec.check(method, path, status, content_type, body) {
            Ok(op) => {
                self.reached.lock().unwrap().insert(op);
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// A request (`auth`: a credential, or none for development's
    /// `dev-user`), checked against the document; its status and body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            self.server.local_url(path),
        );
        if let Some(auth) = auth {
            req = req.header("Authorization", authorization(auth));
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(method, path, req).await
    }

    async fn send(&self, method: &str, path: &str, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let content_type = header(&resp, "content-type").unwrap_or_default();
        assert!(
            resp.headers().contains_key("x-request-id"),
            "{method} {path}"
        );
        let text = resp.text().await.unwrap();
        let body = if content_type.starts_with("application/json") {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
        } else {
            Value::String(text)
        };
        self.note(method, path, status, &content_type, &body);
        (status, body)
    }

    /// The walk as one caller: a credential, or none for `dev-user`.
    fn by<'w>(&'w self, auth: Option<&'w str>) -> As<'w> {
        As { walk: self, auth }
    }

    async fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (got, answer) = self.call(method, path, auth, body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        answer
    }
}

/// Requests of one caller, each expecting a status; the answer's body.
#[derive(Clone, Copy)]
struct As<'w> {
    walk: &'w Walk,
    auth: Option<&'w str>,
}

impl As<'_> {
    async fn send(self, status: u16, method: &str, path: &str, body: Option<Value>) -> Value {
        self.walk
            .expect(status, method, path, self.auth, body)
            .await
    }

    async fn get(self, status: u16, path: &str) -> Value {
        self.send(status, "GET", path, None).await
    }

    async fn delete(self, status: u16, path: &str) -> Value {
        self.send(status, "DELETE", path, None).await
    }

    async fn post(self, status: u16, path: &str, body: Value) -> Value {
        self.send(status, "POST", path, Some(body)).await
    }
}

fn id(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .to_string()
}

#[tokio::test]
async fn every_operation_answers_as_documented() {
    let server = shared(with_upstreams(
        ServerOptions::development().var("ADMIN_TOKEN", ADMIN_TOKEN),
    ));
    let w = World::seed(server, "oas");
    let walk = Walk::start(server).await;
    let alice = walk.by(Some(w.alice.key.as_str()));
    let dev = walk.by(None);

    walk.expect(200, "GET", "/health", None, None).await;

    // Projects and instances, as an API key of their owner.
    let body = json!({"name": "Documented", "description": "d"});
    let p = alice.post(201, "/api/projects", body).await;
    let (pid, main) = (id(&p, "id"), id(&p, "defaultInstanceId"));
    let project = format!("/api/projects/{pid}");
    alice.get(200, "/api/projects").await;
    alice.get(200, &project).await;
    let body = Some(json!({"description": null}));
    alice.send(200, "PUT", &project, body).await;
    let instances = format!("{project}/instances");
    let second = alice.post(201, &instances, json!({"name": "second"})).await;
    let second = format!("/api/instances/{}", id(&second, "id"));
    alice.get(200, &instances).await;
    alice.get(200, &format!("/api/instances/{main}")).await;
    data_api::walk_data_api(&walk, alice.auth, &main).await;

    // Shares.
    let to_bob = json!({"targetType": "user", "targetEmail": w.bob.email, "permission": "read"});
    let share = alice.post(201, &format!("{project}/shares"), to_bob).await;
    alice.get(200, &format!("{project}/shares")).await;
    let public = json!({"targetType": "public", "permission": "read"});
    alice.post(201, &format!("{second}/shares"), public).await;
    alice.get(200, &format!("{second}/shares")).await;
    alice
        .delete(200, &format!("/api/shares/{}", id(&share, "id")))
        .await;

    // Groups.
    let g = alice
        .post(201, "/api/groups", json!({"name": "team"}))
        .await;
    let group = format!("/api/groups/{}", id(&g, "id"));
    alice.get(200, "/api/groups").await;
    let carol = json!({"email": w.carol.email});
    alice.post(201, &format!("{group}/members"), carol).await;
    alice.get(200, &group).await;
    alice
        .delete(200, &format!("{group}/members/{}", w.carol.id))
        .await;
    alice.delete(200, &group).await;

    // A WebSocket token; the upgrade itself (426 without `Upgrade`).
    let token = json!({"instanceId": main, "permission": "read"});
    alice.post(200, "/api/ws-token", token).await;
    alice.get(426, &format!("/sync/{main}")).await;
    alice.get(400, "/sync/not.valid").await;

    // API keys and delegates belong to signed-in users: here `dev-user`.
    let key = json!({"name": "agent", "scopeType": "account", "permissions": ["read", "write"]});
    let key = dev.post(201, "/api/keys", key).await;
    dev.get(200, "/api/keys").await;
    dev.delete(200, &format!("/api/keys/{}", id(&key, "id")))
        .await;

    let d = dev
        .post(201, "/api/projects", json!({"name": "dev's"}))
        .await;
    let (dev_pid, dev_main) = (id(&d, "id"), id(&d, "defaultInstanceId"));
    // Keys with an attribute field the server does not know (kept as
    // sent), then a clone of them.
    let mut ws = WsClient::join(server, &dev_main, None).await.0;
    ws.send(
        &json!({"type": "set", "key": "note", "value": {"a": [1, 2]},
        "attributes": {"type": "json", "tags": ["x"], "contentTags": ["new-field"]}, "id": 1}),
    )
    .await;
    ws.recv_type("key_updated").await;
    let copy = json!({"name": "copy", "cloneFrom": dev_main});
    dev.post(201, &format!("/api/projects/{dev_pid}/instances"), copy)
        .await;
    let bot = json!({"name": "bot", "keyPermissions": {"can_read": true, "can_write": true},
        "expiresAt": "2099-01-01T00:00"});
    let d = dev.post(201, "/api/delegates", bot).await;
    let did = id(&d, "delegate_id");
    let delegate = format!("/api/delegates/{did}");
    dev.get(200, "/api/delegates").await;
    let s = dev
        .send(201, "POST", &format!("{delegate}/secrets"), None)
        .await;
    let secret = format!("ApiKey {did}:{}", id(&s, "delegateSecret"));
    dev.get(200, &format!("{delegate}/secrets")).await;
    let write = json!({"instanceId": dev_main, "permission": "write"});
    dev.post(200, &format!("{delegate}/grants"), write).await;
    let grants = dev.get(200, &format!("{delegate}/grants")).await;
    let as_delegate = walk.by(Some(&secret));
    as_delegate
        .get(200, &format!("/api/instances/{dev_main}"))
        .await;
    as_delegate.get(403, "/api/projects").await;

    // The operator's view of an object, by its Durable Object id.
    let object_id = id(&grants["grants"][0], "do_id");
    for path in [
        format!("/admin/do/{object_id}/storage"),
        format!("/admin/do/{object_id}"),
    ] {
        let wrong = walk
            .client
            .get(server.local_url(&path))
            .header("X-Admin-Token", "wrong");
        assert_eq!(walk.send("GET", &path, wrong).await.0, 401);
        let req = walk
            .client
            .get(server.local_url(&path))
            .header("X-Admin-Token", ADMIN_TOKEN);
        let (status, body) = walk.send("GET", &path, req).await;
        assert_eq!(status, 200, "{body}");
        if path.ends_with(&object_id) {
            assert_eq!(
                body["keys"]["note"]["attributes"]["contentTags"],
                json!(["new-field"])
            );
        }
    }

    dev.delete(200, &format!("{delegate}/grants/{dev_main}"))
        .await;
    let secret_id = id(&s, "secret_id");
    dev.delete(200, &format!("{delegate}/secrets/{secret_id}"))
        .await;
    dev.delete(200, &delegate).await;

    // AI, against the scripted upstream.
    let t = tag();
    script(&t, vec![completion("Short.")]);
    let transform =
        json!({"instanceId": main, "template": format!("{t} summarise"), "outputKey": "summary"});
    alice.post(200, "/api/transform", transform).await;
    let t = tag();
    script(&t, vec![completion("A greeting.")]);
    let analyze = json!({"instanceId": main, "imageBase64": "aGVsbG8=",
        "prompt": format!("{t} describe"), "outputKey": "seen"});
    alice.post(200, "/api/analyze-image", analyze).await;
    let t = tag();
    script(&t, vec![ready("aGVsbG8=")]);
    let cat = json!({"instanceId": main, "prompt": format!("{t} a cat"), "outputKey": "cat"});
    alice.post(200, "/api/generate-image", cat).await;
    let t = tag();
    script(&t, vec![text_step(&["Hello", "!"])]);
    let hi = json!({"instanceId": main, "messages": [
        {"id": "m1", "role": "user", "parts": [{"type": "text", "text": format!("{t} hi")}]}]});
    let chat = alice.post(200, "/api/chat", hi).await;
    assert!(chat.as_str().unwrap().contains("data: [DONE]"));

    // Clerk's webhook (unsigned: development without a secret).
    let event = json!({"type": "user.created", "object": "event",
        "data": {"id": "user_oas", "first_name": "O", "last_name": null,
            "primary_email_address_id": "e1", "email_addresses": [{"id": "e1", "email_address": "oas@example.com"}]}});
    dev.post(200, "/webhooks/clerk", event).await;

    // The inspector page.
    dev.get(200, &format!("/inspect/{main}")).await;

    // Outbound webhooks (a local receiver: development mode allows loopback).
    let receiver = common::fake::FakeUpstream::start();
    receiver.on("POST", "/hook", |_| {
        common::fake::FakeResponse::json(200, &json!({"ok": true}))
    });
    let hooks = format!("/api/instances/{main}/webhooks");
    let body = json!({"url": receiver.url("/hook"), "events": ["key.deleted"]});
    let hook = id(&alice.post(201, &hooks, body).await, "id");
    alice.get(200, &hooks).await;
    let at = format!("/api/webhooks/{hook}");
    alice
        .send(200, "PATCH", &at, Some(json!({"keyPrefix": "doc/"})))
        .await;
    alice.send(200, "POST", &format!("{at}/test"), None).await;
    alice.get(200, &format!("{at}/deliveries?limit=10")).await;
    alice.delete(200, &at).await;
    dev.get(200, "/api/usage?groupBy=endpoint").await;

    // Refusals share one shape.
    alice.post(400, "/api/projects", json!({})).await;
    let nobody = common::world::make_key("nobody");
    walk.by(Some(&nobody)).get(401, "/api/projects").await;
    alice.get(404, "/api/projects/no-such-project").await;
    walk.expect(405, "POST", "/health", None, None).await;
    let big = "x".repeat(1024 * 1024 + 1);
    alice.post(413, "/api/groups", json!({"name": big})).await;

    // Deletions last.
    let readonly = Some(json!({"is_readonly": true}));
    alice.send(200, "PATCH", &second, readonly).await;
    alice.delete(200, &second).await;
    alice.delete(200, &project).await;

    let reached = walk.reached.lock().unwrap().clone();
    let missed: Vec<_> = walk.spec.operations.difference(&reached).collect();
    assert!(missed.is_empty(), "the walk did not reach: {missed:?}");
}

#[test]
fn the_check_refuses_what_the_document_does_not_say() {
    let doc: Value = serde_json::from_str(include_str!("../src/http/openapi.json")).unwrap();
    let spec = Spec::new(&doc);
    let accepts = |path: &str, status: u16, body: &Value| {
        spec.check("GET", path, status, "application/json", body)
            .is_ok()
    };
    let ok = json!({"status": "ok", "environment": "development"});
    assert!(accepts("/health", 200, &ok));
    for wrong in [
        json!({"status": "ok"}),
        json!({"status": "ok", "environment": "development", "extra": 1}),
        json!({"status": "fine", "environment": "development"}),
    ] {
        assert!(!accepts("/health", 200, &wrong), "{wrong}");
    }
    let project = json!({"id": "p", "name": "n", "description": null,
        "created_at": 1, "updated_at": 2, "role": "owner"});
    assert!(accepts("/api/projects/p", 200, &project));
    let mut no_role = project.clone();
    no_role.as_object_mut().unwrap().remove("role");
    assert!(!accepts("/api/projects/p", 200, &no_role));
    // Errors anywhere have one shape; an undocumented status is refused.
    assert!(accepts("/api/projects/p", 409, &json!({"error": "x"})));
    assert!(!accepts("/api/projects/p", 409, &json!({"message": "x"})));
    assert!(!accepts("/api/projects/p", 204, &Value::Null));
    assert!(!accepts("/api/nothing", 200, &Value::Null));
}

/// The data API (data-api.md) in the walk: keys with conditional writes,
/// a missing key, pages, a batch, both exports, a merge import, deletes and
/// the first event of a stream.
mod data_api {
    use std::time::Duration;

    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    use reqwest::header::HeaderMap;
    use serde_json::{json, Value};

    use super::common::api::authorization;
    use super::common::openapi::Spec;
    use super::common::sse::{SseClient, SseEvent};
    use super::Walk;

    /// A key's URL, its name percent-encoded.
    fn key_path(instance: &str, name: &str) -> String {
        let encoded = utf8_percent_encode(name, NON_ALPHANUMERIC);
        format!("/api/instances/{instance}/keys/{encoded}")
    }

    fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    impl Walk {
        /// `call` with extra request headers, also answering the response's
        /// headers.
        async fn call_with(
            &self,
            method: &str,
            path: &str,
            auth: Option<&str>,
            headers: &[(&str, &str)],
            body: Option<Value>,
        ) -> (u16, HeaderMap, Value) {
            let mut req = self.client.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                self.server.local_url(path),
            );
            if let Some(auth) = auth {
                req = req.header("Authorization", authorization(auth));
            }
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            if let Some(body) = body {
                req = req.json(&body);
            }
            let resp = req.send().await.expect("request");
            let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
            assert!(headers.contains_key("x-request-id"), "{method} {path}");
            let content_type = headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let text = resp.text().await.unwrap();
            let body = if content_type.starts_with("application/json") {
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
            } else {
                Value::String(text)
            };
            self.note(method, path, status, &content_type, &body);
            (status, headers, body)
        }

        /// Opens an event stream, checks the response and its first event
        /// against the document, and drops the connection (the stream never
        /// ends by itself).
        async fn first_event(&self, path: &str, auth: Option<&str>) -> SseEvent {
            let mut req = self.client.get(self.server.local_url(path));
            if let Some(auth) = auth {
                req = req.header("Authorization", authorization(auth));
            }
            let resp = req.send().await.expect("events request");
            let status = resp.status().as_u16();
            assert!(resp.headers().contains_key("x-request-id"), "GET {path}");
            let content_type = header(resp.headers(), "content-type").to_string();
            if !content_type.starts_with("text/event-stream") {
                let text = resp.text().await.unwrap_or_default();
                panic!("GET {path}: {status} {content_type}: {text}");
            }
            self.note("GET", path, status, &content_type, &Value::Null);
            let event = SseClient::new(resp).event(Duration::from_secs(10)).await;
            if let Err(e) = self
                .spec
                .check_event("GET", path, status, &event.name, &event.json())
            {
                panic!("{e}");
            }
            event
        }
    }

    /// Every data-API operation on `instance` (empty, of `alice`'s), as
    /// scripts call them.
    pub async fn walk_data_api(walk: &Walk, alice: Option<&str>, instance: &str) {
        let name = "notes/today é";
        let path = key_path(instance, name);

        // A write; a conditional write at a stale version refused, then one
        // at the current version.
        let body = json!({"value": "draft", "attributes": {"type": "text", "tags": ["daily"]}});
        let (status, headers, put) = walk.call_with("PUT", &path, alice, &[], Some(body)).await;
        assert_eq!(status, 200, "{put}");
        assert_eq!(
            (put["name"].as_str(), &put["changed"]),
            (Some(name), &json!(true))
        );
        let version = header(&headers, "etag").to_string();
        assert_eq!(version, format!("\"{}\"", put["updatedAt"]));
        let stale = format!("\"{}\"", put["updatedAt"].as_i64().unwrap() - 1);
        let final_text = json!({"value": "final"});
        for condition in [("If-Match", stale.as_str()), ("If-None-Match", "*")] {
            let (status, _, refused) = walk
                .call_with("PUT", &path, alice, &[condition], Some(final_text.clone()))
                .await;
            assert_eq!(status, 412, "{condition:?}: {refused}");
        }
        let (status, headers, put) = walk
            .call_with(
                "PUT",
                &path,
                alice,
                &[("If-Match", &version)],
                Some(final_text),
            )
            .await;
        assert_eq!((status, &put["value"]), (200, &json!("final")), "{put}");
        let version = header(&headers, "etag").to_string();

        // Reads: the key with its version, a missing key.
        let (status, headers, got) = walk.call_with("GET", &path, alice, &[], None).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(header(&headers, "etag"), version);
        assert_eq!(got["attributes"]["tags"], json!(["daily"]));
        let missing = walk
            .expect(404, "GET", &key_path(instance, "no such key"), alice, None)
            .await;
        assert_eq!(missing, json!({"error": "Key not found"}));

        // A batch, then its keys a page at a time.
        let batch = json!({
            "set": {
                "list/a": {"value": 1},
                "list/b": {"value": {"x": [1]}, "attributes": {"type": "json"}},
                "list/c": {"value": "c", "attributes": {"tags": ["daily"]}},
            },
            "delete": ["list/none"],
        });
        let done = walk
            .expect(
                200,
                "POST",
                &format!("/api/instances/{instance}/batch"),
                alice,
                Some(batch),
            )
            .await;
        assert_eq!(done, json!({"applied": 4, "changed": 3}));
        let keys = format!("/api/instances/{instance}/keys");
        let page = walk
            .expect(
                200,
                "GET",
                &format!("{keys}?prefix=list/&limit=2"),
                alice,
                None,
            )
            .await;
        let names: Vec<&String> = page["keys"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["list/a", "list/b"]);
        let cursor = page["cursor"].as_str().expect("a cursor").to_string();
        let last = walk
            .expect(
                200,
                "GET",
                &format!("{keys}?prefix=list/&limit=2&cursor={cursor}"),
                alice,
                None,
            )
            .await;
        assert_eq!(last["cursor"], Value::Null);
        assert!(last["keys"].get("list/c").is_some(), "{last}");
        let tagged = walk
            .expect(200, "GET", &format!("{keys}?tag=daily"), alice, None)
            .await;
        let names: Vec<&String> = tagged["keys"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["list/c", name]);

        // Exports, and the JSON one imported back (merge).
        let export = format!("/api/instances/{instance}/export");
        let (status, headers, document) = walk.call_with("GET", &export, alice, &[], None).await;
        assert_eq!(status, 200, "{document}");
        assert!(header(&headers, "content-disposition").starts_with("attachment; filename="));
        assert_eq!(document["keys"][name]["value"], "final");
        let (status, _, markdown) = walk
            .call_with(
                "GET",
                &format!("{export}?format=markdown"),
                alice,
                &[],
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert!(markdown.as_str().unwrap().contains(&format!("## {name}")));
        let held = document["keys"].as_object().unwrap().len();
        let imported = walk
            .expect(
                200,
                "POST",
                &format!("/api/instances/{instance}/import?mode=merge"),
                alice,
                Some(document),
            )
            .await;
        assert_eq!(imported, json!({"imported": held, "deleted": 0}));

        // The first event of a stream opened with the header credential.
        let sync = walk
            .first_event(&format!("/api/instances/{instance}/events"), alice)
            .await;
        assert_eq!(sync.name, "sync");
        assert_eq!(sync.json()["data"][name]["value"], "final");

        // Deletes: at a stale version refused, then done, then a no-op.
        let (status, _, refused) = walk
            .call_with("DELETE", &path, alice, &[("If-Match", &stale)], None)
            .await;
        assert_eq!(status, 412, "{refused}");
        for deleted in [true, false] {
            let answer = walk.expect(200, "DELETE", &path, alice, None).await;
            assert_eq!(answer, json!({ "deleted": deleted }));
        }
    }

    #[test]
    fn the_event_check_refuses_what_the_document_does_not_say() {
        let doc: Value = serde_json::from_str(include_str!("../src/http/openapi.json")).unwrap();
        let spec = Spec::new(&doc);
        let events = "/api/instances/i/events?token=t";
        let closed = json!({"code": 4003, "reason": "Access revoked"});
        assert!(spec
            .check_event("GET", events, 200, "closed", &closed)
            .is_ok());
        let sync = json!({"type": "sync", "data": {}, "instanceId": "i"});
        assert!(spec.check_event("GET", events, 200, "sync", &sync).is_ok());
        for (name, wrong) in [
            ("closed", json!({"code": 4003})),
            (
                "sync",
                json!({"type": "sync", "data": {}, "instanceId": "i", "extra": 1}),
            ),
            ("key_deleted", json!({"type": "key_deleted", "key": "k"})),
            ("message", json!({})),
        ] {
            assert!(
                spec.check_event("GET", events, 200, name, &wrong).is_err(),
                "{name} {wrong}"
            );
        }
        assert!(spec
            .check_event("GET", "/api/chat", 200, "sync", &sync)
            .is_err());
    }
}

//! The OpenAPI document against the real server: it is served at
//! `GET /api/openapi.json`, and a walk through every documented operation —
//! successes and the usual refusals, as the dashboard and agents call them —
//! gets responses whose status, content type and JSON body the document's
//! schemas accept (validated by the `jsonschema` crate; see
//! tests/common/openapi.rs). The walk must reach every operation.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use common::api::authorization;
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
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
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
    let alice = Some(w.alice.key.as_str());

    walk.expect(200, "GET", "/health", None, None).await;

    // Projects and instances, as an API key of their owner.
    let p = walk
        .expect(
            201,
            "POST",
            "/api/projects",
            alice,
            Some(json!({"name": "Documented", "description": "d"})),
        )
        .await;
    let (pid, main) = (id(&p, "id"), id(&p, "defaultInstanceId"));
    walk.expect(200, "GET", "/api/projects", alice, None).await;
    walk.expect(200, "GET", &format!("/api/projects/{pid}"), alice, None)
        .await;
    walk.expect(
        200,
        "PUT",
        &format!("/api/projects/{pid}"),
        alice,
        Some(json!({"description": null})),
    )
    .await;
    let second = walk
        .expect(
            201,
            "POST",
            &format!("/api/projects/{pid}/instances"),
            alice,
            Some(json!({"name": "second"})),
        )
        .await;
    let second = id(&second, "id");
    walk.expect(
        200,
        "GET",
        &format!("/api/projects/{pid}/instances"),
        alice,
        None,
    )
    .await;
    walk.expect(200, "GET", &format!("/api/instances/{main}"), alice, None)
        .await;
    data_api::walk_data_api(&walk, alice, &main).await;

    // Shares.
    let share = walk
        .expect(
            201,
            "POST",
            &format!("/api/projects/{pid}/shares"),
            alice,
            Some(json!({"targetType": "user", "targetEmail": w.bob.email, "permission": "read"})),
        )
        .await;
    walk.expect(
        200,
        "GET",
        &format!("/api/projects/{pid}/shares"),
        alice,
        None,
    )
    .await;
    walk.expect(
        201,
        "POST",
        &format!("/api/instances/{second}/shares"),
        alice,
        Some(json!({"targetType": "public", "permission": "read"})),
    )
    .await;
    walk.expect(
        200,
        "GET",
        &format!("/api/instances/{second}/shares"),
        alice,
        None,
    )
    .await;
    walk.expect(
        200,
        "DELETE",
        &format!("/api/shares/{}", id(&share, "id")),
        alice,
        None,
    )
    .await;

    // Groups.
    let g = walk
        .expect(
            201,
            "POST",
            "/api/groups",
            alice,
            Some(json!({"name": "team"})),
        )
        .await;
    let gid = id(&g, "id");
    walk.expect(200, "GET", "/api/groups", alice, None).await;
    walk.expect(
        201,
        "POST",
        &format!("/api/groups/{gid}/members"),
        alice,
        Some(json!({"email": w.carol.email})),
    )
    .await;
    walk.expect(200, "GET", &format!("/api/groups/{gid}"), alice, None)
        .await;
    walk.expect(
        200,
        "DELETE",
        &format!("/api/groups/{gid}/members/{}", w.carol.id),
        alice,
        None,
    )
    .await;
    walk.expect(200, "DELETE", &format!("/api/groups/{gid}"), alice, None)
        .await;

    // A WebSocket token; the upgrade itself (426 without `Upgrade`).
    walk.expect(
        200,
        "POST",
        "/api/ws-token",
        alice,
        Some(json!({"instanceId": main, "permission": "read"})),
    )
    .await;
    walk.expect(426, "GET", &format!("/sync/{main}"), alice, None)
        .await;
    walk.expect(400, "GET", "/sync/not.valid", alice, None)
        .await;

    // API keys and delegates belong to signed-in users: here `dev-user`.
    let key = walk
        .expect(
            201,
            "POST",
            "/api/keys",
            None,
            Some(
                json!({"name": "agent", "scopeType": "account", "permissions": ["read", "write"]}),
            ),
        )
        .await;
    walk.expect(200, "GET", "/api/keys", None, None).await;
    walk.expect(
        200,
        "DELETE",
        &format!("/api/keys/{}", id(&key, "id")),
        None,
        None,
    )
    .await;

    let dev = walk
        .expect(
            201,
            "POST",
            "/api/projects",
            None,
            Some(json!({"name": "dev's"})),
        )
        .await;
    let (dev_pid, dev_main) = (id(&dev, "id"), id(&dev, "defaultInstanceId"));
    // Keys with an attribute field the server does not know (kept as
    // sent), then a clone of them.
    let mut ws = WsClient::join(server, &dev_main, None).await.0;
    ws.send(
        &json!({"type": "set", "key": "note", "value": {"a": [1, 2]},
        "attributes": {"type": "json", "tags": ["x"], "contentTags": ["new-field"]}, "id": 1}),
    )
    .await;
    ws.recv_type("key_updated").await;
    walk.expect(
        201,
        "POST",
        &format!("/api/projects/{dev_pid}/instances"),
        None,
        Some(json!({"name": "copy", "cloneFrom": dev_main})),
    )
    .await;
    let d = walk
        .expect(
            201,
            "POST",
            "/api/delegates",
            None,
            Some(
                json!({"name": "bot", "keyPermissions": {"can_read": true, "can_write": true},
                "expiresAt": "2099-01-01T00:00"}),
            ),
        )
        .await;
    let did = id(&d, "delegate_id");
    walk.expect(200, "GET", "/api/delegates", None, None).await;
    let s = walk
        .expect(
            201,
            "POST",
            &format!("/api/delegates/{did}/secrets"),
            None,
            None,
        )
        .await;
    let delegate = format!("ApiKey {did}:{}", id(&s, "delegateSecret"));
    walk.expect(
        200,
        "GET",
        &format!("/api/delegates/{did}/secrets"),
        None,
        None,
    )
    .await;
    walk.expect(
        200,
        "POST",
        &format!("/api/delegates/{did}/grants"),
        None,
        Some(json!({"instanceId": dev_main, "permission": "write"})),
    )
    .await;
    let grants = walk
        .expect(
            200,
            "GET",
            &format!("/api/delegates/{did}/grants"),
            None,
            None,
        )
        .await;
    walk.expect(
        200,
        "GET",
        &format!("/api/instances/{dev_main}"),
        Some(&delegate),
        None,
    )
    .await;
    walk.expect(403, "GET", "/api/projects", Some(&delegate), None)
        .await;

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

    walk.expect(
        200,
        "DELETE",
        &format!("/api/delegates/{did}/grants/{dev_main}"),
        None,
        None,
    )
    .await;
    walk.expect(
        200,
        "DELETE",
        &format!("/api/delegates/{did}/secrets/{}", id(&s, "secret_id")),
        None,
        None,
    )
    .await;
    walk.expect(200, "DELETE", &format!("/api/delegates/{did}"), None, None)
        .await;

    // AI, against the scripted upstream.
    let t = tag();
    script(&t, vec![completion("Short.")]);
    walk.expect(200, "POST", "/api/transform", alice,
        Some(json!({"instanceId": main, "template": format!("{t} summarise"), "outputKey": "summary"}))).await;
    let t = tag();
    script(&t, vec![completion("A greeting.")]);
    walk.expect(200, "POST", "/api/analyze-image", alice,
        Some(json!({"instanceId": main, "imageBase64": "aGVsbG8=", "prompt": format!("{t} describe"), "outputKey": "seen"}))).await;
    let t = tag();
    script(&t, vec![ready("aGVsbG8=")]);
    walk.expect(
        200,
        "POST",
        "/api/generate-image",
        alice,
        Some(json!({"instanceId": main, "prompt": format!("{t} a cat"), "outputKey": "cat"})),
    )
    .await;
    let t = tag();
    script(&t, vec![text_step(&["Hello", "!"])]);
    let chat = walk
        .expect(200, "POST", "/api/chat", alice,
            Some(json!({"instanceId": main, "messages": [
                {"id": "m1", "role": "user", "parts": [{"type": "text", "text": format!("{t} hi")}]}]})))
        .await;
    assert!(chat.as_str().unwrap().contains("data: [DONE]"));

    // Clerk's webhook (unsigned: development without a secret).
    walk.expect(200, "POST", "/webhooks/clerk", None, Some(json!({"type": "user.created", "object": "event",
        "data": {"id": "user_oas", "first_name": "O", "last_name": null,
            "primary_email_address_id": "e1", "email_addresses": [{"id": "e1", "email_address": "oas@example.com"}]}}))).await;

    // The inspector page.
    walk.expect(200, "GET", &format!("/inspect/{main}"), None, None)
        .await;

    // Refusals share one shape.
    walk.expect(400, "POST", "/api/projects", alice, Some(json!({})))
        .await;
    walk.expect(
        401,
        "GET",
        "/api/projects",
        Some(&common::world::make_key("nobody")),
        None,
    )
    .await;
    walk.expect(404, "GET", "/api/projects/no-such-project", alice, None)
        .await;
    walk.expect(405, "POST", "/health", None, None).await;
    let big = "x".repeat(1024 * 1024 + 1);
    walk.expect(
        413,
        "POST",
        "/api/groups",
        alice,
        Some(json!({"name": big})),
    )
    .await;

    // Deletions last.
    walk.expect(
        200,
        "PATCH",
        &format!("/api/instances/{second}"),
        alice,
        Some(json!({"is_readonly": true})),
    )
    .await;
    walk.expect(
        200,
        "DELETE",
        &format!("/api/instances/{second}"),
        alice,
        None,
    )
    .await;
    walk.expect(200, "DELETE", &format!("/api/projects/{pid}"), alice, None)
        .await;

    let reached = walk.reached.lock().unwrap().clone();
    let missed: Vec<_> = walk.spec.operations.difference(&reached).collect();
    assert!(missed.is_empty(), "the walk did not reach: {missed:?}");
}

#[test]
fn the_check_refuses_what_the_document_does_not_say() {
    let doc: Value = serde_json::from_str(include_str!("../src/http/openapi.json")).unwrap();
    let spec = Spec::new(&doc);
    let ok = json!({"status": "ok", "environment": "development"});
    assert!(spec
        .check("GET", "/health", 200, "application/json", &ok)
        .is_ok());
    for wrong in [
        json!({"status": "ok"}),
        json!({"status": "ok", "environment": "development", "extra": 1}),
        json!({"status": "fine", "environment": "development"}),
    ] {
        assert!(
            spec.check("GET", "/health", 200, "application/json", &wrong)
                .is_err(),
            "{wrong}"
        );
    }
    let project = json!({"id": "p", "name": "n", "description": null,
        "created_at": 1, "updated_at": 2, "role": "owner"});
    assert!(spec
        .check("GET", "/api/projects/p", 200, "application/json", &project)
        .is_ok());
    let mut no_role = project.clone();
    no_role.as_object_mut().unwrap().remove("role");
    assert!(spec
        .check("GET", "/api/projects/p", 200, "application/json", &no_role)
        .is_err());
    // Errors anywhere have one shape; an undocumented status is refused.
    assert!(spec
        .check(
            "GET",
            "/api/projects/p",
            409,
            "application/json",
            &json!({"error": "x"})
        )
        .is_ok());
    assert!(spec
        .check(
            "GET",
            "/api/projects/p",
            409,
            "application/json",
            &json!({"message": "x"})
        )
        .is_err());
    assert!(spec
        .check(
            "GET",
            "/api/projects/p",
            204,
            "application/json",
            &Value::Null
        )
        .is_err());
    assert!(spec
        .check("GET", "/api/nothing", 200, "application/json", &Value::Null)
        .is_err());
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

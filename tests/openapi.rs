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

    // Outbound webhooks (a local receiver: development mode allows loopback).
    let receiver = common::fake::FakeUpstream::start();
    receiver.on("POST", "/hook", |_| {
        common::fake::FakeResponse::json(200, &json!({"ok": true}))
    });
    let hook = walk
        .expect(
            201,
            "POST",
            &format!("/api/instances/{main}/webhooks"),
            alice,
            Some(json!({"url": receiver.url("/hook"), "events": ["key.deleted"]})),
        )
        .await;
    let hook = id(&hook, "id");
    walk.expect(
        200,
        "GET",
        &format!("/api/instances/{main}/webhooks"),
        alice,
        None,
    )
    .await;
    walk.expect(
        200,
        "PATCH",
        &format!("/api/webhooks/{hook}"),
        alice,
        Some(json!({"keyPrefix": "doc/"})),
    )
    .await;
    walk.expect(
        200,
        "POST",
        &format!("/api/webhooks/{hook}/test"),
        alice,
        None,
    )
    .await;
    walk.expect(
        200,
        "GET",
        &format!("/api/webhooks/{hook}/deliveries?limit=10"),
        alice,
        None,
    )
    .await;
    walk.expect(200, "DELETE", &format!("/api/webhooks/{hook}"), alice, None)
        .await;
    walk.expect(200, "GET", "/api/usage?groupBy=endpoint", None, None)
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

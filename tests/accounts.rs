//! Accounts and access (rest-api.md, auth.md, protocol.md §1/§3) against a
//! production-mode server with several real users, each with an API key
//! seeded straight into the local D1.

mod common;

use std::sync::OnceLock;

use common::api::{key_sql, make_key, seed_sql, Api, TestUser};
use common::server::{ServerOptions, TestServer};
use common::ws::{upgrade_refusal, WsClient};
use serde_json::{json, Value};

struct World {
    server: TestServer,
    alice: TestUser,
    bob: TestUser,
    carol: TestUser,
    eve: TestUser,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let server = TestServer::start(ServerOptions::production());
        let (alice, bob, carol, eve) = (
            TestUser::new("user_alice"),
            TestUser::new("user_bob"),
            TestUser::new("user_carol"),
            TestUser::new("user_eve"),
        );
        server.d1_execute(&seed_sql(&[&alice, &bob, &carol, &eve]));
        World {
            server,
            alice,
            bob,
            carol,
            eve,
        }
    })
}

fn api() -> Api<'static> {
    Api::new(&world().server)
}

/// Creates a project owned by `owner`; returns (project id, main instance id).
async fn project(owner: &TestUser, name: &str) -> (String, String) {
    let (status, body) = api()
        .post(
            "/api/projects",
            Some(&owner.key),
            json!({"name": name, "description": "d"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["defaultInstanceId"].as_str().unwrap().to_string(),
    )
}

async fn share(owner: &TestUser, path: &str, target: Value) -> String {
    let (status, body) = api().post(path, Some(&owner.key), target).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn ws(instance: &str, key: &str) -> Result<WsClient, String> {
    let url = world().server.ws_url(&format!("/sync/{instance}"));
    WsClient::try_connect(&url, &[("Authorization", &format!("Bearer {key}"))]).await
}

#[tokio::test]
async fn credentials_are_required_and_checked() {
    let api = api();
    let (s, b) = api.get("/api/projects", None).await;
    assert_eq!((s, b), (401, json!({"error": "Authorization required"})));
    let (s, b) = api.get("/api/projects", Some("not-a-credential")).await;
    assert_eq!(
        (s, b),
        (401, json!({"error": "Invalid authorization header"}))
    );
    let (s, b) = api
        .get(
            "/api/projects",
            Some("mc_live_0123456789abcdef0123456789abcdef"),
        )
        .await;
    assert_eq!((s, b), (401, json!({"error": "Invalid API key"})));
    // No JWT verification configured in production: a clear 500.
    let (s, b) = api.get("/api/projects", Some("aaa.bbb.ccc")).await;
    assert_eq!(
        (s, b),
        (500, json!({"error": "JWT verification is not configured"}))
    );
}

#[tokio::test]
async fn projects_crud_and_isolation() {
    let w = world();
    let api = api();
    let (id, main) = project(&w.alice, "Alpha").await;

    let (s, p) = api
        .get(&format!("/api/projects/{id}"), Some(&w.alice.key))
        .await;
    assert_eq!(s, 200);
    assert_eq!(p["name"], "Alpha");
    assert_eq!(p["description"], "d");
    assert_eq!(p["role"], "owner");
    assert!(p["created_at"].is_i64() && p["updated_at"].is_i64());

    let (s, list) = api.get("/api/projects", Some(&w.alice.key)).await;
    assert_eq!(s, 200);
    assert!(list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == id.as_str()));

    let (s, inst) = api
        .get(&format!("/api/projects/{id}/instances"), Some(&w.alice.key))
        .await;
    assert_eq!(s, 200);
    assert_eq!(inst["instances"][0]["id"], main.as_str());
    assert_eq!(inst["instances"][0]["name"], "main");
    assert_eq!(inst["instances"][0]["is_readonly"], false);

    // Another user sees nothing of it.
    let (s, list) = api.get("/api/projects", Some(&w.eve.key)).await;
    assert_eq!(s, 200);
    assert!(!list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == id.as_str()));
    for (method, path) in [
        ("GET", format!("/api/projects/{id}")),
        ("GET", format!("/api/projects/{id}/instances")),
        ("GET", format!("/api/projects/{id}/shares")),
        ("GET", format!("/api/instances/{main}")),
        ("DELETE", format!("/api/projects/{id}")),
        ("DELETE", format!("/api/instances/{main}")),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let (s, _) = api.call(m, &path, Some(&w.eve.key), None).await;
        assert_eq!(s, 404, "{method} {path}");
    }
    let (s, _) = api
        .put(
            &format!("/api/projects/{id}"),
            Some(&w.eve.key),
            json!({"name":"x"}),
        )
        .await;
    assert_eq!(s, 404);
    assert!(ws(&main, &w.eve.key)
        .await
        .err()
        .unwrap()
        .starts_with("403"));

    let (s, b) = api
        .put(
            &format!("/api/projects/{id}"),
            Some(&w.alice.key),
            json!({"name":"Beta"}),
        )
        .await;
    assert_eq!((s, b), (200, json!({"success": true})));
    let (_, p) = api
        .get(&format!("/api/projects/{id}"), Some(&w.alice.key))
        .await;
    assert_eq!(p["name"], "Beta");
}

#[tokio::test]
async fn bad_bodies_name_the_field() {
    let w = world();
    let api = api();
    let (id, main) = project(&w.alice, "Bodies").await;
    let cases = [
        ("/api/projects", json!({})),
        ("/api/projects", json!({"name": ""})),
        ("/api/projects", json!({"name": 5})),
        ("/api/projects", json!({"name": "x".repeat(201)})),
        (
            "/api/projects",
            json!({"name": "ok", "description": "d".repeat(2001)}),
        ),
        (
            &format!("/api/projects/{id}/instances")[..],
            json!({"nom": "x"}),
        ),
        ("/api/ws-token", json!({})),
        (
            "/api/ws-token",
            json!({"instanceId": main, "permission": "root"}),
        ),
        (
            &format!("/api/projects/{id}/shares")[..],
            json!({"targetType": "user", "permission": "read"}),
        ),
        (
            &format!("/api/projects/{id}/shares")[..],
            json!({"targetType": "robot", "permission": "read"}),
        ),
        (
            &format!("/api/projects/{id}/shares")[..],
            json!({"targetType": "public", "permission": "owner"}),
        ),
        ("/api/groups", json!({"name": ""})),
    ];
    for (path, body) in cases {
        let (s, b) = api.post(path, Some(&w.alice.key), body.clone()).await;
        assert_eq!(s, 400, "{path} {body} -> {b}");
        assert!(b["error"].as_str().is_some_and(|e| e.len() > 5), "{b}");
    }
    let (s, b) = api
        .put(
            &format!("/api/projects/{id}"),
            Some(&w.alice.key),
            json!({}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = api
        .patch(
            &format!("/api/instances/{main}"),
            Some(&w.alice.key),
            json!({"is_readonly": "yes"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].clone()),
        (400, json!("is_readonly must be a boolean"))
    );
    // Not JSON at all.
    let resp = reqwest::Client::new()
        .post(w.server.local_url("/api/projects"))
        .header("Authorization", format!("Bearer {}", w.alice.key))
        .body("{name:")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Too large.
    let resp = reqwest::Client::new()
        .post(w.server.local_url("/api/projects"))
        .header("Authorization", format!("Bearer {}", w.alice.key))
        .body(format!("{{\"name\":\"{}\"}}", "x".repeat(1_100_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Nothing was created by any of it.
    let (_, list) = api.get("/api/projects", Some(&w.alice.key)).await;
    assert!(!list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "ok"));
}

#[tokio::test]
async fn read_write_admin_and_public_shares() {
    let w = world();
    let api = api();
    let (id, main) = project(&w.alice, "Shared").await;
    let shares = format!("/api/projects/{id}/shares");

    // read: can see, cannot change, cannot share.
    let read_share = share(
        &w.alice,
        &shares,
        json!({"targetType":"user","targetEmail":w.bob.email,"permission":"read"}),
    )
    .await;
    let (s, p) = api
        .get(&format!("/api/projects/{id}"), Some(&w.bob.key))
        .await;
    assert_eq!((s, p["role"].clone()), (200, json!("read")));
    let (s, _) = api
        .put(
            &format!("/api/projects/{id}"),
            Some(&w.bob.key),
            json!({"name":"x"}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .post(
            &format!("/api/projects/{id}/instances"),
            Some(&w.bob.key),
            json!({"name":"x"}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .post(
            &shares,
            Some(&w.bob.key),
            json!({"targetType":"public","permission":"read"}),
        )
        .await;
    assert_eq!(s, 403);
    let mut bob_ws = ws(&main, &w.bob.key).await.unwrap();
    let auth = bob_ws.recv_type("auth_success").await;
    assert_eq!(auth["permission"], "read");
    assert_eq!(auth["userId"], w.bob.id.as_str());
    bob_ws.recv_type("sync").await;
    bob_ws
        .send(&json!({"type":"set","key":"k","value":1}))
        .await;
    assert_eq!(bob_ws.recv_type("error").await["code"], "NO_PERMISSION");

    // Re-granting updates the same share: write.
    let again = share(
        &w.alice,
        &shares,
        json!({"targetType":"user","targetId":w.bob.id,"permission":"write"}),
    )
    .await;
    assert_eq!(again, read_share);
    let (_, list) = api.get(&shares, Some(&w.alice.key)).await;
    let rows = list["shares"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["permission"], "write");
    assert_eq!(rows[0]["target_email"], w.bob.email.as_str());
    let mut bob_ws = ws(&main, &w.bob.key).await.unwrap();
    bob_ws.handshake().await;
    bob_ws
        .send(&json!({"type":"set","key":"k","value":1}))
        .await;
    assert_eq!(
        bob_ws.recv_type("key_updated").await["updatedBy"],
        w.bob.id.as_str()
    );
    bob_ws.send(&json!({"type":"clear"})).await;
    assert_eq!(bob_ws.recv_type("error").await["code"], "NO_PERMISSION");

    // admin: can share onwards.
    share(
        &w.alice,
        &shares,
        json!({"targetType":"user","targetId":w.bob.id,"permission":"admin"}),
    )
    .await;
    share(
        &w.bob,
        &shares,
        json!({"targetType":"user","targetId":w.carol.id,"permission":"read"}),
    )
    .await;
    let (s, _) = api
        .get(&format!("/api/projects/{id}"), Some(&w.carol.key))
        .await;
    assert_eq!(s, 200);
    // ...but cannot delete the owner's project.
    let (s, _) = api
        .delete(&format!("/api/projects/{id}"), Some(&w.bob.key))
        .await;
    assert_eq!(s, 403);

    // public: everyone can read.
    let (s, _) = api
        .get(&format!("/api/projects/{id}"), Some(&w.eve.key))
        .await;
    assert_eq!(s, 404);
    let public = share(
        &w.alice,
        &shares,
        json!({"targetType":"public","permission":"read"}),
    )
    .await;
    let (s, p) = api
        .get(&format!("/api/projects/{id}"), Some(&w.eve.key))
        .await;
    assert_eq!((s, p["role"].clone()), (200, json!("read")));

    // Revoking takes effect at once.
    let (s, _) = api
        .delete(&format!("/api/shares/{public}"), Some(&w.eve.key))
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .delete(&format!("/api/shares/{public}"), Some(&w.alice.key))
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .get(&format!("/api/projects/{id}"), Some(&w.eve.key))
        .await;
    assert_eq!(s, 404);
    let (s, _) = api
        .delete(&format!("/api/shares/{read_share}"), Some(&w.alice.key))
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .get(&format!("/api/projects/{id}"), Some(&w.bob.key))
        .await;
    assert_eq!(s, 404);
    assert!(ws(&main, &w.bob.key)
        .await
        .err()
        .unwrap()
        .starts_with("403"));
}

#[tokio::test]
async fn instance_shares_show_only_those_instances() {
    let w = world();
    let api = api();
    let (id, main) = project(&w.alice, "Partial").await;
    let (s, other) = api
        .post(
            &format!("/api/projects/{id}/instances"),
            Some(&w.alice.key),
            json!({"name":"other"}),
        )
        .await;
    assert_eq!(s, 201, "{other}");
    share(
        &w.alice,
        &format!("/api/instances/{main}/shares"),
        json!({"targetType":"user","targetId":w.carol.id,"permission":"write"}),
    )
    .await;
    let (s, list) = api
        .get(&format!("/api/projects/{id}/instances"), Some(&w.carol.key))
        .await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![main.as_str()]);
    let (s, i) = api
        .get(&format!("/api/instances/{main}"), Some(&w.carol.key))
        .await;
    assert_eq!(
        (s, i["role"].clone(), i["project_id"].clone()),
        (200, json!("write"), json!(id))
    );
    let (s, _) = api
        .get(
            &format!("/api/instances/{}", other["id"].as_str().unwrap()),
            Some(&w.carol.key),
        )
        .await;
    assert_eq!(s, 404);
    // write is not admin: no renaming, no sharing.
    let (s, _) = api
        .patch(
            &format!("/api/instances/{main}"),
            Some(&w.carol.key),
            json!({"name":"x"}),
        )
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn groups_grant_and_stop_granting_at_once() {
    let w = world();
    let api = api();
    let (id, _) = project(&w.alice, "Grouped").await;
    let (s, g) = api
        .post("/api/groups", Some(&w.alice.key), json!({"name":"team"}))
        .await;
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let (s, m) = api
        .post(
            &format!("/api/groups/{gid}/members"),
            Some(&w.alice.key),
            json!({"email": w.bob.email}),
        )
        .await;
    assert_eq!((s, m), (201, json!({"group_id": gid, "user_id": w.bob.id})));
    let (s, _) = api
        .post(
            &format!("/api/groups/{gid}/members"),
            Some(&w.alice.key),
            json!({"email":"nobody@example.com"}),
        )
        .await;
    assert_eq!(s, 404);
    // Only the owner adds members; a member sees the group.
    let (s, _) = api
        .post(
            &format!("/api/groups/{gid}/members"),
            Some(&w.bob.key),
            json!({"userId": w.carol.id}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, gv) = api
        .get(&format!("/api/groups/{gid}"), Some(&w.bob.key))
        .await;
    assert_eq!(s, 200);
    assert_eq!(gv["members"][0]["user_id"], w.bob.id.as_str());
    assert_eq!(gv["members"][0]["email"], w.bob.email.as_str());
    let (s, _) = api
        .get(&format!("/api/groups/{gid}"), Some(&w.eve.key))
        .await;
    assert_eq!(s, 404);
    let (_, gl) = api.get("/api/groups", Some(&w.bob.key)).await;
    assert!(gl["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["id"] == gid.as_str() && g["role"] == "member"));

    share(
        &w.alice,
        &format!("/api/projects/{id}/shares"),
        json!({"targetType":"group","targetId":gid,"permission":"read"}),
    )
    .await;
    let (s, _) = api
        .get(&format!("/api/projects/{id}"), Some(&w.bob.key))
        .await;
    assert_eq!(s, 200);
    let (_, list) = api.get("/api/projects", Some(&w.bob.key)).await;
    assert!(list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == id.as_str()));

    // A member may leave; then the share no longer reaches it.
    let (s, _) = api
        .delete(
            &format!("/api/groups/{gid}/members/{}", w.bob.id),
            Some(&w.bob.key),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .get(&format!("/api/projects/{id}"), Some(&w.bob.key))
        .await;
    assert_eq!(s, 404);

    // Deleting the group stops its shares too.
    api.post(
        &format!("/api/groups/{gid}/members"),
        Some(&w.alice.key),
        json!({"userId": w.carol.id}),
    )
    .await;
    let (s, _) = api
        .get(&format!("/api/projects/{id}"), Some(&w.carol.key))
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .delete(&format!("/api/groups/{gid}"), Some(&w.carol.key))
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .delete(&format!("/api/groups/{gid}"), Some(&w.alice.key))
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .get(&format!("/api/projects/{id}"), Some(&w.carol.key))
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn api_keys_are_managed_only_by_signed_in_users() {
    let w = world();
    let (s, b) = api().get("/api/keys", Some(&w.alice.key)).await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = api()
        .post(
            "/api/keys",
            Some(&w.alice.key),
            json!({"name":"k","scopeType":"account","permissions":["read"]}),
        )
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn scoped_keys_are_narrowed() {
    let w = world();
    let api = api();
    let (id, main) = project(&w.alice, "Scoped").await;
    let (_, other) = api
        .post(
            &format!("/api/projects/{id}/instances"),
            Some(&w.alice.key),
            json!({"name":"other"}),
        )
        .await;
    let other = other["id"].as_str().unwrap().to_string();
    let inst_key = make_key(&format!("instance-scope-{id}"));
    let read_key = make_key(&format!("read-only-{id}"));
    w.server.d1_execute(&format!(
        "{}{}",
        key_sql(
            &w.alice.id,
            &inst_key,
            "instance",
            Some(&main),
            "[\"write\"]"
        ),
        key_sql(&w.alice.id, &read_key, "account", None, "[\"read\"]"),
    ));
    // The instance key works on its instance, not on the other one.
    let mut c = ws(&main, &inst_key).await.unwrap();
    assert_eq!(c.recv_type("auth_success").await["permission"], "write");
    c.recv_type("sync").await;
    c.send(&json!({"type":"set","key":"a","value":1})).await;
    c.recv_type("key_updated").await;
    assert!(ws(&other, &inst_key)
        .await
        .err()
        .unwrap()
        .starts_with("403"));
    let (s, _) = api
        .get(&format!("/api/instances/{other}"), Some(&inst_key))
        .await;
    assert_eq!(s, 404);
    let (s, b) = api
        .get(&format!("/api/instances/{main}"), Some(&inst_key))
        .await;
    assert_eq!(s, 200, "{b}");
    // A narrow key cannot manage shares or delete projects.
    let (s, _) = api
        .get(&format!("/api/projects/{id}/shares"), Some(&read_key))
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .delete(&format!("/api/projects/{id}"), Some(&read_key))
        .await;
    assert_eq!(s, 403);
    // A read key cannot write over the WebSocket.
    let mut r = ws(&main, &read_key).await.unwrap();
    assert_eq!(r.recv_type("auth_success").await["permission"], "read");
    r.recv_type("sync").await;
    r.send(&json!({"type":"set","key":"b","value":1})).await;
    assert_eq!(r.recv_type("error").await["code"], "NO_PERMISSION");
}

#[tokio::test]
async fn ws_tokens_are_one_time_bound_and_capped() {
    let w = world();
    let api = api();
    let (id, main) = project(&w.alice, "Tokens").await;
    let (_, other) = api
        .post(
            &format!("/api/projects/{id}/instances"),
            Some(&w.alice.key),
            json!({"name":"other"}),
        )
        .await;
    let other = other["id"].as_str().unwrap().to_string();

    let (s, t) = api
        .post(
            "/api/ws-token",
            Some(&w.alice.key),
            json!({"instanceId": main}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["permission"], "admin");
    assert_eq!(t["instanceId"], main.as_str());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expires = t["expiresAt"].as_i64().unwrap();
    assert!(
        (now + 55..=now + 65).contains(&expires),
        "{expires} vs {now}"
    );
    let token = t["token"].as_str().unwrap();
    assert!(token.len() >= 22);
    let url = w.server.ws_url(&format!("/sync/{main}?token={token}"));
    let mut c = WsClient::connect(&url).await;
    let auth = c.recv_type("auth_success").await;
    assert_eq!(
        (auth["userId"].clone(), auth["permission"].clone()),
        (json!(w.alice.id), json!("admin"))
    );
    // Second use.
    let again = upgrade_refusal(
        &w.server.local_url(&format!("/sync/{main}?token={token}")),
        &[],
    )
    .await;
    assert_eq!(again, (401, json!({"error": "Invalid token"})));

    // Bound to its instance.
    let (_, t) = api
        .post(
            "/api/ws-token",
            Some(&w.alice.key),
            json!({"instanceId": main, "permission":"read"}),
        )
        .await;
    let err = WsClient::try_connect(
        &w.server.ws_url(&format!(
            "/sync/{other}?token={}",
            t["token"].as_str().unwrap()
        )),
        &[],
    )
    .await
    .err()
    .unwrap();
    assert!(err.starts_with("403"), "{err}");

    // A read share cannot ask for write; another user cannot ask at all.
    share(
        &w.alice,
        &format!("/api/instances/{main}/shares"),
        json!({"targetType":"user","targetId":w.carol.id,"permission":"read"}),
    )
    .await;
    let (s, _) = api
        .post(
            "/api/ws-token",
            Some(&w.carol.key),
            json!({"instanceId": main, "permission":"write"}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, t) = api
        .post(
            "/api/ws-token",
            Some(&w.carol.key),
            json!({"instanceId": main}),
        )
        .await;
    assert_eq!((s, t["permission"].clone()), (200, json!("read")));
    let (s, _) = api
        .post(
            "/api/ws-token",
            Some(&w.eve.key),
            json!({"instanceId": main}),
        )
        .await;
    assert_eq!(s, 404);

    // An expired token (seeded 2 minutes in the past).
    let expired = "expired-token-for-test-0000000000000000";
    w.server.d1_execute(&format!(
        "INSERT INTO ws_tokens (token_hash, user_id, instance_id, permission, expires_at, created_at)
         VALUES ('{}', '{}', '{main}', 'read', {}, 0);",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(expired.as_bytes())),
        w.alice.id,
        now - 120
    ));
    let refused = upgrade_refusal(
        &w.server.local_url(&format!("/sync/{main}?token={expired}")),
        &[],
    )
    .await;
    assert_eq!(refused, (401, json!({"error": "Token expired"})));
}

#[tokio::test]
async fn in_band_auth_then_queued_writes_apply_in_order() {
    let w = world();
    let (_, main) = project(&w.alice, "Burst").await;
    let mut c = WsClient::connect(&w.server.ws_url(&format!("/sync/{main}"))).await;
    // auth and the writes queued behind it, in one burst.
    c.send(&json!({"type":"auth","apiKey": w.alice.key})).await;
    for i in 0..5 {
        c.send(&json!({"type":"set","key":format!("q{i}"),"value":i,"id":i}))
            .await;
    }
    let auth = c.recv_type("auth_success").await;
    assert_eq!(auth["userId"], w.alice.id.as_str());
    c.recv_type("sync").await;
    for i in 0..5 {
        let m = c.recv_type("key_updated").await;
        assert_eq!(m["key"], format!("q{i}"));
        assert_eq!(c.recv_type("ack").await["id"], i);
    }
    // A bad key: auth_error, then closed with 1008.
    let mut bad = WsClient::connect(&w.server.ws_url(&format!("/sync/{main}"))).await;
    bad.send(&json!({"type":"auth","apiKey":"mc_live_ffffffffffffffffffffffffffffffff"}))
        .await;
    bad.send(&json!({"type":"set","key":"never","value":1}))
        .await;
    let e = bad.recv_type("auth_error").await;
    assert_eq!(e["code"], "INVALID_KEY");
    assert_eq!(bad.expect_closed().await.map(|f| f.0), Some(1008));
    // A valid key without access: NO_ACCESS.
    let mut eve = WsClient::connect(&w.server.ws_url(&format!("/sync/{main}"))).await;
    eve.send(&json!({"type":"auth","apiKey": w.eve.key})).await;
    assert_eq!(eve.recv_type("auth_error").await["code"], "NO_ACCESS");
    let (_, sync) = {
        let mut a = ws(&main, &w.alice.key).await.unwrap();
        a.recv_type("auth_success").await;
        ((), a.recv_type("sync").await)
    };
    assert!(sync["data"].get("never").is_none());
    assert_eq!(sync["data"].as_object().unwrap().len(), 5);
}

#[tokio::test]
async fn read_only_instances_refuse_writes_at_once() {
    let w = world();
    let api = api();
    let (_, main) = project(&w.alice, "Frozen").await;
    let mut c = ws(&main, &w.alice.key).await.unwrap();
    c.handshake().await;
    let (s, b) = api
        .patch(
            &format!("/api/instances/{main}"),
            Some(&w.alice.key),
            json!({"is_readonly": true}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["is_readonly"], true);
    c.send(&json!({"type":"set","key":"k","value":1})).await;
    assert_eq!(c.recv_type("error").await["code"], "READ_ONLY");
    api.patch(
        &format!("/api/instances/{main}"),
        Some(&w.alice.key),
        json!({"is_readonly": false}),
    )
    .await;
    c.send(&json!({"type":"set","key":"k","value":1})).await;
    c.recv_type("key_updated").await;
}

#[tokio::test]
async fn clone_copies_every_key() {
    let w = world();
    let api = api();
    let (id, main) = project(&w.alice, "Cloning").await;
    let mut c = ws(&main, &w.alice.key).await.unwrap();
    c.handshake().await;
    c.send(&json!({"type":"set","key":"a","value":{"x":1},"attributes":{"type":"json","tags":["t"],"contentTags":["c"]}})).await;
    c.send(&json!({"type":"set","key":"b","value":"two"})).await;
    c.recv_type("key_updated").await;
    c.recv_type("key_updated").await;
    let (s, created) = api
        .post(
            &format!("/api/projects/{id}/instances"),
            Some(&w.alice.key),
            json!({"name":"copy","cloneFrom": main}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let copy = created["id"].as_str().unwrap();
    let mut d = ws(copy, &w.alice.key).await.unwrap();
    d.recv_type("auth_success").await;
    let sync = d.recv_type("sync").await;
    assert_eq!(sync["data"]["a"]["value"], json!({"x":1}));
    assert_eq!(sync["data"]["a"]["attributes"]["contentTags"], json!(["c"]));
    assert_eq!(sync["data"]["b"]["value"], "two");
    // A source the caller cannot read is refused.
    let (s, _) = api
        .post(
            &format!("/api/projects/{id}/instances"),
            Some(&w.alice.key),
            json!({"name":"x","cloneFrom":"no-such-instance"}),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn deleting_removes_data_and_closes_sockets() {
    let w = world();
    let api = api();
    let (id, main) = project(&w.alice, "Doomed").await;
    let (_, second) = api
        .post(
            &format!("/api/projects/{id}/instances"),
            Some(&w.alice.key),
            json!({"name":"second"}),
        )
        .await;
    let second = second["id"].as_str().unwrap().to_string();
    let mut c = ws(&main, &w.alice.key).await.unwrap();
    c.handshake().await;
    c.send(&json!({"type":"set","key":"k","value":1})).await;
    c.recv_type("key_updated").await;
    let mut c2 = ws(&second, &w.alice.key).await.unwrap();
    c2.handshake().await;
    c2.send(&json!({"type":"set","key":"k2","value":2})).await;
    c2.recv_type("key_updated").await;

    // Deleting one instance closes its sockets with 1000 "Instance deleted".
    let (s, _) = api
        .delete(&format!("/api/instances/{second}"), Some(&w.alice.key))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        c2.expect_closed().await,
        Some((1000, "Instance deleted".to_string()))
    );

    let (s, b) = api
        .delete(&format!("/api/projects/{id}"), Some(&w.alice.key))
        .await;
    assert_eq!((s, b), (200, json!({"success": true})));
    assert_eq!(
        c.expect_closed().await,
        Some((1000, "Instance deleted".to_string()))
    );
    let (s, _) = api
        .get(&format!("/api/projects/{id}"), Some(&w.alice.key))
        .await;
    assert_eq!(s, 404);
    // The ids are gone from D1; re-created with the same ids (test-only
    // seeding) they start empty: the objects' storage was deleted.
    w.server.d1_execute(&format!(
        "INSERT INTO projects (id, owner_id, name, created_at, updated_at) VALUES ('{id}','{a}','again',0,0);
         INSERT INTO instances (id, project_id, owner_id, name, created_at, updated_at) VALUES ('{main}','{id}','{a}','main',0,0);
         INSERT INTO instances (id, project_id, owner_id, name, created_at, updated_at) VALUES ('{second}','{id}','{a}','second',0,0);",
        a = w.alice.id
    ));
    for inst in [&main, &second] {
        let mut again = ws(inst, &w.alice.key).await.unwrap();
        again.recv_type("auth_success").await;
        assert_eq!(again.recv_type("sync").await["data"], json!({}));
    }
}

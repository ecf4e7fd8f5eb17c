//! Accounts and access (rest-api.md, auth.md, protocol.md §1/§3) against a
//! production-mode server with several real users, each with an API key
//! seeded straight into the local D1.

mod common;

use std::sync::OnceLock;

use common::api::{ids, lists, Api};
use common::server::prod_server;
use common::world::{grant, make_key, Project, Rows, User, World};
use common::ws::{upgrade_refusal, WsClient};
use serde_json::json;

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World::seed(prod_server(), "user"))
}

fn api() -> Api<'static> {
    world().api()
}

/// The world, its API and a new project of alice's named `name`.
async fn alice_project(name: &str) -> (&'static World, Api<'static>, Project) {
    let w = world();
    (w, w.api(), w.project(&w.alice, name).await)
}

#[tokio::test]
async fn credentials_are_required_and_checked() {
    let api = api();
    for (key, status, error) in [
        (None, 401, "Authorization required"),
        (
            Some("not-a-credential"),
            401,
            "Invalid authorization header",
        ),
        (
            Some("mc_live_0123456789abcdef0123456789abcdef"),
            401,
            "Invalid API key",
        ),
        // No JWT verification configured in production: a clear 500.
        (
            Some("aaa.bbb.ccc"),
            500,
            "JWT verification is not configured",
        ),
    ] {
        let answer = api.get("/api/projects", key).await;
        assert_eq!(answer, (status, json!({ "error": error })));
    }
}

#[tokio::test]
async fn projects_crud_and_isolation() {
    let (w, api, Project { id, main }) = alice_project("Alpha").await;
    let project = format!("/api/projects/{id}");

    let (s, p) = api.get(&project, w.alice.auth()).await;
    assert_eq!(s, 200);
    assert_eq!(p["name"], "Alpha");
    assert_eq!(p["description"], "d");
    assert_eq!(p["role"], "owner");
    assert!(p["created_at"].is_i64() && p["updated_at"].is_i64());

    let (s, list) = api.get("/api/projects", w.alice.auth()).await;
    assert_eq!(s, 200);
    assert!(lists(&list, "projects", &id));

    let (s, inst) = api
        .get(&format!("{project}/instances"), w.alice.auth())
        .await;
    assert_eq!(s, 200);
    assert_eq!(inst["instances"][0]["id"], main.as_str());
    assert_eq!(inst["instances"][0]["name"], "main");
    assert_eq!(inst["instances"][0]["is_readonly"], false);

    // Another user sees nothing of it.
    let (s, list) = api.get("/api/projects", w.eve.auth()).await;
    assert_eq!(s, 200);
    assert!(!lists(&list, "projects", &id));
    for (method, path) in [
        ("GET", project.clone()),
        ("GET", format!("{project}/instances")),
        ("GET", format!("{project}/shares")),
        ("GET", format!("/api/instances/{main}")),
        ("DELETE", project.clone()),
        ("DELETE", format!("/api/instances/{main}")),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let (s, _) = api.call(m, &path, w.eve.auth(), None).await;
        assert_eq!(s, 404, "{method} {path}");
    }
    let rename = |name: &str| json!({ "name": name });
    assert_eq!(api.put(&project, w.eve.auth(), rename("x")).await.0, 404);
    assert!(w.refusal(&main, &w.eve.key).await.starts_with("403"));

    let answer = api.put(&project, w.alice.auth(), rename("Beta")).await;
    assert_eq!(answer, (200, json!({"success": true})));
    let (_, p) = api.get(&project, w.alice.auth()).await;
    assert_eq!(p["name"], "Beta");
}

#[tokio::test]
async fn bad_bodies_name_the_field() {
    let (w, api, Project { id, main }) = alice_project("Bodies").await;
    let project = format!("/api/projects/{id}");
    let (instances, shares) = (format!("{project}/instances"), format!("{project}/shares"));
    let cases = [
        ("/api/projects", json!({})),
        ("/api/projects", json!({"name": ""})),
        ("/api/projects", json!({"name": 5})),
        ("/api/projects", json!({"name": "x".repeat(201)})),
        (
            "/api/projects",
            json!({"name": "ok", "description": "d".repeat(2001)}),
        ),
        (instances.as_str(), json!({"nom": "x"})),
        ("/api/ws-token", json!({})),
        (
            "/api/ws-token",
            json!({"instanceId": main, "permission": "root"}),
        ),
        (
            shares.as_str(),
            json!({"targetType": "user", "permission": "read"}),
        ),
        (
            shares.as_str(),
            json!({"targetType": "robot", "permission": "read"}),
        ),
        (
            shares.as_str(),
            json!({"targetType": "public", "permission": "owner"}),
        ),
        ("/api/groups", json!({"name": ""})),
    ];
    for (path, body) in cases {
        let (s, b) = api.post(path, w.alice.auth(), body.clone()).await;
        assert_eq!(s, 400, "{path} {body} -> {b}");
        assert!(b["error"].as_str().is_some_and(|e| e.len() > 5), "{b}");
    }
    let (s, b) = api.put(&project, w.alice.auth(), json!({})).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = api
        .patch(
            &format!("/api/instances/{main}"),
            w.alice.auth(),
            json!({"is_readonly": "yes"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].clone()),
        (400, json!("is_readonly must be a boolean"))
    );
    // Not JSON at all, then too large.
    let too_large = format!("{{\"name\":\"{}\"}}", "x".repeat(1_100_000));
    for (body, status) in [("{name:".to_string(), 400), (too_large, 413)] {
        let got = api.post_raw("/api/projects", w.alice.auth(), None, body);
        assert_eq!(got.await, status);
    }
    // Nothing was created by any of it.
    let (_, list) = api.get("/api/projects", w.alice.auth()).await;
    assert!(!list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "ok"));
}

#[tokio::test]
async fn read_write_admin_and_public_shares() {
    let (w, api, Project { id, main }) = alice_project("Shared").await;
    let project = format!("/api/projects/{id}");
    let shares = format!("{project}/shares");

    // read: can see, cannot change, cannot share.
    let by_email = json!({"targetType":"user","targetEmail":w.bob.email,"permission":"read"});
    let read_share = w.share(&w.alice, &shares, by_email).await;
    let (s, p) = api.get(&project, w.bob.auth()).await;
    assert_eq!((s, p["role"].clone()), (200, json!("read")));
    let name = json!({"name":"x"});
    assert_eq!(api.put(&project, w.bob.auth(), name.clone()).await.0, 403);
    let instances = format!("{project}/instances");
    assert_eq!(api.post(&instances, w.bob.auth(), name).await.0, 403);
    let public = json!({"targetType":"public","permission":"read"});
    assert_eq!(api.post(&shares, w.bob.auth(), public.clone()).await.0, 403);
    let mut bob_ws = w.ws(&main, &w.bob.key).await.unwrap();
    let auth = bob_ws.recv_type("auth_success").await;
    assert_eq!(auth["permission"], "read");
    assert_eq!(auth["userId"], w.bob.id.as_str());
    bob_ws.recv_type("sync").await;
    bob_ws
        .send(&json!({"type":"set","key":"k","value":1}))
        .await;
    assert_eq!(bob_ws.recv_type("error").await["code"], "NO_PERMISSION");

    // Re-granting updates the same share: write.
    let again = w
        .share(&w.alice, &shares, grant("user", &w.bob.id, "write"))
        .await;
    assert_eq!(again, read_share);
    let (_, list) = api.get(&shares, w.alice.auth()).await;
    let rows = list["shares"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["permission"], "write");
    assert_eq!(rows[0]["target_email"], w.bob.email.as_str());
    let mut bob_ws = w.join(&main, &w.bob.key).await;
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
    w.share(&w.alice, &shares, grant("user", &w.bob.id, "admin"))
        .await;
    w.share(&w.bob, &shares, grant("user", &w.carol.id, "read"))
        .await;
    assert_eq!(api.get(&project, w.carol.auth()).await.0, 200);
    // ...but cannot delete the owner's project.
    assert_eq!(api.delete(&project, w.bob.auth()).await.0, 403);

    // public: everyone can read.
    assert_eq!(api.get(&project, w.eve.auth()).await.0, 404);
    let public = w.share(&w.alice, &shares, public).await;
    let (s, p) = api.get(&project, w.eve.auth()).await;
    assert_eq!((s, p["role"].clone()), (200, json!("read")));

    // Revoking takes effect at once.
    let (public, read_share) = (
        format!("/api/shares/{public}"),
        format!("/api/shares/{read_share}"),
    );
    assert_eq!(api.delete(&public, w.eve.auth()).await.0, 403);
    api.delete_ok(&public, w.alice.auth()).await;
    assert_eq!(api.get(&project, w.eve.auth()).await.0, 404);
    api.delete_ok(&read_share, w.alice.auth()).await;
    assert_eq!(api.get(&project, w.bob.auth()).await.0, 404);
    assert!(w.refusal(&main, &w.bob.key).await.starts_with("403"));
}

#[tokio::test]
async fn instance_shares_show_only_those_instances() {
    let (w, api, Project { id, main }) = alice_project("Partial").await;
    let other = w.instance(&w.alice, &id, "other").await;
    let shares = format!("/api/instances/{main}/shares");
    w.share(&w.alice, &shares, grant("user", &w.carol.id, "write"))
        .await;
    let (s, list) = api
        .get(&format!("/api/projects/{id}/instances"), w.carol.auth())
        .await;
    assert_eq!(s, 200);
    assert_eq!(ids(&list, "instances"), [main.as_str()]);
    let instance = |id: &str| format!("/api/instances/{id}");
    let (s, i) = api.get(&instance(&main), w.carol.auth()).await;
    assert_eq!(
        (s, i["role"].clone(), i["project_id"].clone()),
        (200, json!("write"), json!(id))
    );
    assert_eq!(api.get(&instance(&other), w.carol.auth()).await.0, 404);
    // write is not admin: no renaming, no sharing.
    let rename = json!({"name":"x"});
    let (s, _) = api.patch(&instance(&main), w.carol.auth(), rename).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn groups_grant_and_stop_granting_at_once() {
    let (w, api, Project { id, .. }) = alice_project("Grouped").await;
    let project = format!("/api/projects/{id}");
    let (s, g) = api
        .post("/api/groups", w.alice.auth(), json!({"name":"team"}))
        .await;
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let (group, members) = (
        format!("/api/groups/{gid}"),
        format!("/api/groups/{gid}/members"),
    );
    let (s, m) = api
        .post(&members, w.alice.auth(), json!({"email": w.bob.email}))
        .await;
    assert_eq!((s, m), (201, json!({"group_id": gid, "user_id": w.bob.id})));
    let nobody = json!({"email":"nobody@example.com"});
    assert_eq!(api.post(&members, w.alice.auth(), nobody).await.0, 404);
    // Only the owner adds members; a member sees the group.
    let add_carol = json!({"userId": w.carol.id});
    assert_eq!(
        api.post(&members, w.bob.auth(), add_carol.clone()).await.0,
        403
    );
    let (s, gv) = api.get(&group, w.bob.auth()).await;
    assert_eq!(s, 200);
    assert_eq!(gv["members"][0]["user_id"], w.bob.id.as_str());
    assert_eq!(gv["members"][0]["email"], w.bob.email.as_str());
    assert_eq!(api.get(&group, w.eve.auth()).await.0, 404);
    let (_, gl) = api.get("/api/groups", w.bob.auth()).await;
    assert!(gl["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["id"] == gid.as_str() && g["role"] == "member"));

    let shares = format!("{project}/shares");
    w.share(&w.alice, &shares, grant("group", &gid, "read"))
        .await;
    assert_eq!(api.get(&project, w.bob.auth()).await.0, 200);
    let (_, list) = api.get("/api/projects", w.bob.auth()).await;
    assert!(lists(&list, "projects", &id));

    // A member may leave; then the share no longer reaches it.
    let bob_membership = format!("{members}/{}", w.bob.id);
    api.delete_ok(&bob_membership, w.bob.auth()).await;
    assert_eq!(api.get(&project, w.bob.auth()).await.0, 404);

    // Deleting the group stops its shares too.
    api.post(&members, w.alice.auth(), add_carol).await;
    assert_eq!(api.get(&project, w.carol.auth()).await.0, 200);
    assert_eq!(api.delete(&group, w.carol.auth()).await.0, 403);
    api.delete_ok(&group, w.alice.auth()).await;
    assert_eq!(api.get(&project, w.carol.auth()).await.0, 404);
}

#[tokio::test]
async fn api_keys_are_managed_only_by_signed_in_users() {
    let w = world();
    let (s, b) = api().get("/api/keys", w.alice.auth()).await;
    assert_eq!(s, 403, "{b}");
    let key = json!({"name":"k","scopeType":"account","permissions":["read"]});
    assert_eq!(api().post("/api/keys", w.alice.auth(), key).await.0, 403);
}

#[tokio::test]
async fn scoped_keys_are_narrowed() {
    let (w, api, Project { id, main }) = alice_project("Scoped").await;
    let other = w.instance(&w.alice, &id, "other").await;
    let inst_key = make_key(&format!("instance-scope-{id}"));
    let read_key = make_key(&format!("read-only-{id}"));
    let alice = &w.alice.id;
    Rows::default()
        .key(alice, &inst_key, "instance", Some(&main), r#"["write"]"#)
        .key(alice, &read_key, "account", None, r#"["read"]"#)
        .write(w.server);
    // The instance key works on its instance, not on the other one.
    let mut c = w.ws(&main, &inst_key).await.unwrap();
    assert_eq!(c.recv_type("auth_success").await["permission"], "write");
    c.recv_type("sync").await;
    c.send(&json!({"type":"set","key":"a","value":1})).await;
    c.recv_type("key_updated").await;
    assert!(w.refusal(&other, &inst_key).await.starts_with("403"));
    let instance = |id: &str| format!("/api/instances/{id}");
    assert_eq!(api.get(&instance(&other), Some(&inst_key)).await.0, 404);
    let (s, b) = api.get(&instance(&main), Some(&inst_key)).await;
    assert_eq!(s, 200, "{b}");
    // A narrow key cannot manage shares or delete projects.
    let project = format!("/api/projects/{id}");
    let shares = format!("{project}/shares");
    assert_eq!(api.get(&shares, Some(&read_key)).await.0, 403);
    assert_eq!(api.delete(&project, Some(&read_key)).await.0, 403);
    // A read key cannot write over the WebSocket.
    let mut r = w.ws(&main, &read_key).await.unwrap();
    assert_eq!(r.recv_type("auth_success").await["permission"], "read");
    r.recv_type("sync").await;
    r.send(&json!({"type":"set","key":"b","value":1})).await;
    assert_eq!(r.recv_type("error").await["code"], "NO_PERMISSION");
}

#[tokio::test]
async fn ws_tokens_are_one_time_bound_and_capped() {
    let (w, api, Project { id, main }) = alice_project("Tokens").await;
    let other = w.instance(&w.alice, &id, "other").await;

    let (s, t) = api.ws_token(w.alice.auth(), &main).await;
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
    let mut c = WsClient::connect_to(w.server, &format!("{main}?token={token}"), None).await;
    let auth = c.recv_type("auth_success").await;
    assert_eq!(
        (auth["userId"].clone(), auth["permission"].clone()),
        (json!(w.alice.id), json!("admin"))
    );
    // Second use.
    let sync_url = |token: &str| w.server.local_url(&format!("/sync/{main}?token={token}"));
    let again = upgrade_refusal(&sync_url(token), &[]).await;
    assert_eq!(again, (401, json!({"error": "Invalid token"})));

    // Bound to its instance.
    let read = json!({"instanceId": main, "permission":"read"});
    let (_, t) = api.post("/api/ws-token", w.alice.auth(), read).await;
    let path = format!("{other}?token={}", t["token"].as_str().unwrap());
    let err = WsClient::try_connect_to(w.server, &path, None)
        .await
        .err()
        .unwrap();
    assert!(err.starts_with("403"), "{err}");

    // A read share cannot ask for write; another user cannot ask at all.
    let shares = format!("/api/instances/{main}/shares");
    w.share(&w.alice, &shares, grant("user", &w.carol.id, "read"))
        .await;
    let write = json!({"instanceId": main, "permission":"write"});
    assert_eq!(
        api.post("/api/ws-token", w.carol.auth(), write).await.0,
        403
    );
    let any = json!({"instanceId": main});
    let (s, t) = api.post("/api/ws-token", w.carol.auth(), any.clone()).await;
    assert_eq!((s, t["permission"].clone()), (200, json!("read")));
    assert_eq!(api.post("/api/ws-token", w.eve.auth(), any).await.0, 404);

    // An expired token (seeded 2 minutes in the past).
    let expired = "expired-token-for-test-0000000000000000";
    Rows::default()
        .ws_token(expired, &w.alice.id, &main, "read", now - 120)
        .write(w.server);
    let refused = upgrade_refusal(&sync_url(expired), &[]).await;
    assert_eq!(refused, (401, json!({"error": "Token expired"})));
}

#[tokio::test]
async fn in_band_auth_then_queued_writes_apply_in_order() {
    let w = world();
    let Project { main, .. } = w.project(&w.alice, "Burst").await;
    let mut c = WsClient::connect_to(w.server, &main, None).await;
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
    let mut bad = WsClient::connect_to(w.server, &main, None).await;
    bad.send(&json!({"type":"auth","apiKey":"mc_live_ffffffffffffffffffffffffffffffff"}))
        .await;
    bad.send(&json!({"type":"set","key":"never","value":1}))
        .await;
    let e = bad.recv_type("auth_error").await;
    assert_eq!(e["code"], "INVALID_KEY");
    assert_eq!(bad.expect_closed().await.map(|f| f.0), Some(1008));
    // A valid key without access: NO_ACCESS.
    let mut eve = WsClient::connect_to(w.server, &main, None).await;
    eve.send(&json!({"type":"auth","apiKey": w.eve.key})).await;
    assert_eq!(eve.recv_type("auth_error").await["code"], "NO_ACCESS");
    let (_, sync) = WsClient::join(w.server, &main, w.alice.auth()).await;
    assert!(sync["data"].get("never").is_none());
    assert_eq!(sync["data"].as_object().unwrap().len(), 5);
}

#[tokio::test]
async fn read_only_instances_refuse_writes_at_once() {
    let (w, api, Project { main, .. }) = alice_project("Frozen").await;
    let mut c = w.join(&main, &w.alice.key).await;
    let instance = format!("/api/instances/{main}");
    let readonly = |on: bool| json!({ "is_readonly": on });
    let (s, b) = api.patch(&instance, w.alice.auth(), readonly(true)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["is_readonly"], true);
    c.send(&json!({"type":"set","key":"k","value":1})).await;
    assert_eq!(c.recv_type("error").await["code"], "READ_ONLY");
    api.patch(&instance, w.alice.auth(), readonly(false)).await;
    c.send(&json!({"type":"set","key":"k","value":1})).await;
    c.recv_type("key_updated").await;
}

#[tokio::test]
async fn clone_copies_every_key() {
    let (w, api, Project { id, main }) = alice_project("Cloning").await;
    let mut c = w.join(&main, &w.alice.key).await;
    c.send(&json!({"type":"set","key":"a","value":{"x":1},"attributes":{"type":"json","tags":["t"],"contentTags":["c"]}})).await;
    c.send(&json!({"type":"set","key":"b","value":"two"})).await;
    c.recv_type("key_updated").await;
    c.recv_type("key_updated").await;
    let instances = format!("/api/projects/{id}/instances");
    let clone = |name: &str, source: &str| json!({"name": name, "cloneFrom": source});
    let (s, created) = api
        .post(&instances, w.alice.auth(), clone("copy", &main))
        .await;
    assert_eq!(s, 201, "{created}");
    let copy = created["id"].as_str().unwrap();
    let (_, sync) = WsClient::join(w.server, copy, w.alice.auth()).await;
    assert_eq!(sync["data"]["a"]["value"], json!({"x":1}));
    assert_eq!(sync["data"]["a"]["attributes"]["contentTags"], json!(["c"]));
    assert_eq!(sync["data"]["b"]["value"], "two");
    // A source the caller cannot read is refused.
    let refused = api.post(&instances, w.alice.auth(), clone("x", "no-such-instance"));
    assert_eq!(refused.await.0, 404);
}

#[tokio::test]
async fn deleting_removes_data_and_closes_sockets() {
    let (w, api, Project { id, main }) = alice_project("Doomed").await;
    let second = w.instance(&w.alice, &id, "second").await;
    let mut c = w.join(&main, &w.alice.key).await;
    c.send(&json!({"type":"set","key":"k","value":1})).await;
    c.recv_type("key_updated").await;
    let mut c2 = w.join(&second, &w.alice.key).await;
    c2.send(&json!({"type":"set","key":"k2","value":2})).await;
    c2.recv_type("key_updated").await;

    // Deleting one instance closes its sockets with 1000 "Instance deleted".
    let deleted = Some((1000, "Instance deleted".to_string()));
    let instance = format!("/api/instances/{second}");
    api.delete_ok(&instance, w.alice.auth()).await;
    assert_eq!(c2.expect_closed().await, deleted);

    let project = format!("/api/projects/{id}");
    let (s, b) = api.delete(&project, w.alice.auth()).await;
    assert_eq!((s, b), (200, json!({"success": true})));
    assert_eq!(c.expect_closed().await, deleted);
    assert_eq!(api.get(&project, w.alice.auth()).await.0, 404);
    // The ids are gone from D1. Even re-created with the same ids (test-only
    // seeding: ids are never reused) the objects keep only their tombstone
    // (protocol.md §8): a connect is closed with 4004 and no data comes back.
    let a = &w.alice.id;
    Rows::default()
        .project(a, &id, "again")
        .instance(a, &id, &main, "main")
        .instance(a, &id, &second, "second")
        .write(w.server);
    for inst in [&main, &second] {
        let mut again = WsClient::connect_to(w.server, inst, w.alice.auth()).await;
        assert_eq!(
            again.expect_closed().await,
            Some((4004, "Instance not found".to_string()))
        );
    }
}

#[tokio::test]
async fn shares_go_only_to_groups_the_granter_is_in() {
    let w = world();
    let api = api();
    let (s, g) = api
        .post(
            "/api/groups",
            w.alice.auth(),
            json!({"name":"alice's inner circle"}),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let members = format!("/api/groups/{gid}/members");
    let add_bob = json!({"userId": w.bob.id});
    assert_eq!(api.post(&members, w.alice.auth(), add_bob).await.0, 201);

    // Eve, in no group of Alice's, cannot share to it: the answer is the
    // one for a group that does not exist, on projects and instances.
    let eves = w.project(&w.eve, "Eve's").await;
    let not_found = (404, json!({"error":"Group not found"}));
    for shares in [
        format!("/api/projects/{}/shares", eves.id),
        format!("/api/instances/{}/shares", eves.main),
    ] {
        for group in [gid.as_str(), "no-such-group"] {
            let answer = api
                .post(&shares, w.eve.auth(), grant("group", group, "read"))
                .await;
            assert_eq!(answer, not_found, "{shares} {group}");
        }
        // Nothing was granted, so no share names the group.
        let (s, list) = api.get(&shares, w.eve.auth()).await;
        assert_eq!((s, list), (200, json!({"shares": []})));
    }
    // Alice reaches nothing of Eve's through her group.
    let eve_project = format!("/api/projects/{}", eves.id);
    assert_eq!(api.get(&eve_project, w.alice.auth()).await.0, 404);

    // A member may share to the group, and so may its owner.
    let bobs = w.project(&w.bob, "Bob's").await;
    let bob_shares = format!("/api/projects/{}/shares", bobs.id);
    w.share(&w.bob, &bob_shares, grant("group", &gid, "read"))
        .await;
    let (s, list) = api.get(&bob_shares, w.bob.auth()).await;
    assert_eq!(s, 200);
    assert_eq!(list["shares"][0]["target_name"], "alice's inner circle");
    let bob_project = format!("/api/projects/{}", bobs.id);
    let (s, p) = api.get(&bob_project, w.alice.auth()).await;
    assert_eq!((s, p["role"].clone()), (200, json!("read")));
    let alices = w.project(&w.alice, "Alice's").await;
    let alice_shares = format!("/api/instances/{}/shares", alices.main);
    w.share(&w.alice, &alice_shares, grant("group", &gid, "write"))
        .await;
    let alice_main = format!("/api/instances/{}", alices.main);
    let (s, i) = api.get(&alice_main, w.bob.auth()).await;
    assert_eq!((s, i["role"].clone()), (200, json!("write")));
}

/// `GET /api/projects` as `key`, which must answer 200.
async fn listed(api: &Api<'_>, key: &str) -> serde_json::Value {
    let (status, body) = api.get("/api/projects", Some(key)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `GET /api/projects` lists owned and shared projects newest update first,
/// each with the caller's role; an account-wide admin key gets the list
/// SQLite writes whole, narrower keys the list built row by row with their
/// caps (docs/performance.md): both must agree.
#[tokio::test]
async fn the_project_list_gives_each_role_newest_first_whoever_asks() {
    let w = world();
    let api = w.api();
    let (lister, sharer) = (User::new("acc_lister"), User::new("acc_sharer"));
    let write_key = make_key("acc_lister write key");
    let scoped_key = make_key("acc_lister project key");
    // Projects with distinct update times (the REST API stamps seconds).
    let project = |id: &str, owner: &str, description: &str, t: i64| {
        format!(
            "INSERT INTO projects (id, owner_id, name, description, created_at, updated_at) \
             VALUES ('{id}', '{owner}', 'name of {id}', {description}, {t}, {t});"
        )
    };
    Rows::default()
        .user(&lister)
        .user(&sharer)
        .key(
            &lister.id,
            &write_key,
            "account",
            None,
            r#"["read","write"]"#,
        )
        .key(
            &lister.id,
            &scoped_key,
            "project",
            Some("ls-own-a"),
            r#"["admin"]"#,
        )
        .write(w.server);
    w.server.d1_execute(
        &[
            project("ls-own-a", &lister.id, "NULL", 1000),
            project("ls-by-user", &sharer.id, "'shared \"quoted\"'", 1004),
            project("ls-own-b", &lister.id, "'mine'", 1003),
            project("ls-by-group", &sharer.id, "NULL", 1002),
            project("ls-by-instance", &sharer.id, "NULL", 1001),
            project("ls-unshared", &sharer.id, "NULL", 1005),
        ]
        .concat(),
    );
    Rows::default()
        .instance(&sharer.id, "ls-by-instance", "ls-by-instance-main", "main")
        .write(w.server);
    let by_user = "/api/projects/ls-by-user/shares";
    w.share(&sharer, by_user, grant("user", &lister.id, "write"))
        .await;
    let (s, group) = api
        .post("/api/groups", sharer.auth(), json!({"name": "listers"}))
        .await;
    assert_eq!(s, 201, "{group}");
    let gid = group["id"].as_str().unwrap();
    let members = format!("/api/groups/{gid}/members");
    let (s, _) = api
        .post(&members, sharer.auth(), json!({"userId": lister.id}))
        .await;
    assert_eq!(s, 201);
    let by_group = "/api/projects/ls-by-group/shares";
    w.share(&sharer, by_group, grant("group", gid, "read"))
        .await;
    let by_instance = "/api/instances/ls-by-instance-main/shares";
    w.share(&sharer, by_instance, grant("user", &lister.id, "admin"))
        .await;

    let entry = |id: &str, description: serde_json::Value, t: i64, role: &str| {
        json!({
            "id": id, "name": format!("name of {id}"), "description": description,
            "created_at": t, "updated_at": t, "role": role,
        })
    };
    let expected = |roles: [&str; 5]| {
        json!({ "projects": [
            entry("ls-by-user", json!("shared \"quoted\""), 1004, roles[0]),
            entry("ls-own-b", json!("mine"), 1003, roles[1]),
            entry("ls-by-group", json!(null), 1002, roles[2]),
            entry("ls-by-instance", json!(null), 1001, roles[3]),
            entry("ls-own-a", json!(null), 1000, roles[4]),
        ]})
    };
    let as_user = expected(["write", "owner", "read", "read", "owner"]);
    assert_eq!(listed(&api, &lister.key).await, as_user);
    // A write key caps every role at write.
    let capped = expected(["write", "write", "read", "read", "write"]);
    assert_eq!(listed(&api, &write_key).await, capped);
    // A project key sees its project only, an owner's role narrowed to admin.
    let own_a = entry("ls-own-a", json!(null), 1000, "admin");
    assert_eq!(
        listed(&api, &scoped_key).await,
        json!({ "projects": [own_a] })
    );
    // The sharer sees its own, not the lister's.
    let theirs = listed(&api, &sharer.key).await;
    assert_eq!(
        ids(&theirs, "projects"),
        ["ls-unshared", "ls-by-user", "ls-by-group", "ls-by-instance"]
    );
}

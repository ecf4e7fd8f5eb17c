//! Delegates (delegates.md) against a production-mode server whose users
//! sign in with JWTs the test signs, plus the development-mode `Bearer dev`
//! path the dashboard uses locally.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::api::Api;
use common::clerk::SignedIn;
use common::jwt::now;
use common::server::{dev_server, ServerOptions};
use common::world::{grant, Project, User, World};
use common::ws::{Event, WsClient};
use mindcache_server::time::format_utc;
use serde_json::{json, Value};

/// One production server per binary, trusting a JWKS this test serves.
fn clerk() -> &'static SignedIn {
    static C: OnceLock<SignedIn> = OnceLock::new();
    C.get_or_init(|| SignedIn::start(ServerOptions::production()))
}

/// A signed-in session of `user`.
fn jwt(user: &User) -> String {
    clerk().jwt(&user.id)
}

/// The `Authorization` value of a delegate credential.
fn delegate_auth(id: &str, secret: &str) -> String {
    format!("ApiKey {id}:{secret}")
}

struct Setup {
    w: &'static World,
    api: Api<'static>,
}

/// The binary's seeded users (seeded once: writing to D1 from the command
/// line while the server runs can lock it out).
fn setup(_test: &str) -> Setup {
    static W: OnceLock<World> = OnceLock::new();
    let w = W.get_or_init(|| World::seed(clerk().server, "del"));
    Setup { api: w.api(), w }
}

impl Setup {
    /// A delegate of `user` with these capabilities; its id.
    async fn delegate(&self, user: &User, caps: Value) -> String {
        self.api.new_delegate(&jwt(user), caps).await
    }

    /// A new secret of the delegate; the secret.
    async fn secret(&self, user: &User, delegate: &str) -> String {
        self.api.new_secret(&jwt(user), delegate).await
    }

    /// A signed-in session of `user` and a new project `p` of theirs.
    async fn signed_in_project(&self, user: &User) -> (String, Project) {
        (jwt(user), self.w.project(user, "p").await)
    }

    /// A new project `p` of alice's, with a read-write delegate of hers
    /// granted `permission` on its main instance; the delegate's id and secret.
    async fn delegate_on_project(&self, permission: &str) -> (Project, String, String) {
        let alice = &self.w.alice;
        let project = self.w.project(alice, "p").await;
        let caps = json!({"can_read": true, "can_write": true});
        let (id, secret) = self.granted(alice, caps, &project.main, permission).await;
        (project, id, secret)
    }

    /// A delegate of `user` with `caps`, a secret of it and a grant of
    /// `permission` on `instance`; `(id, secret)`.
    async fn granted(
        &self,
        user: &User,
        caps: Value,
        instance: &str,
        permission: &str,
    ) -> (String, String) {
        let id = self.delegate(user, caps).await;
        let secret = self.secret(user, &id).await;
        assert_eq!(self.grant(user, &id, instance, permission).await, 200);
        (id, secret)
    }

    async fn grant(&self, user: &User, delegate: &str, instance: &str, permission: &str) -> u16 {
        let jwt = jwt(user);
        self.api.grant(&jwt, delegate, instance, permission).await
    }
}

fn is_hex_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

#[tokio::test]
async fn delegate_routes_answer_with_the_dashboard_shapes() {
    let s = setup("dshape");
    // carol: no other test of this binary gives her delegates.
    let alice = &s.w.carol;
    let (token, project) = s.signed_in_project(alice).await;

    let (status, created) = s
        .api
        .post(
            "/api/delegates",
            Some(&token),
            json!({
                "name": "  ci bot  ",
                "keyPermissions": {"can_read": true, "can_write": true, "can_system": false},
                "expiresAt": "2099-12-02T15:54",
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["delegate_id"].as_str().unwrap().to_string();
    assert!(is_hex_id(&id, "del_"), "{id}");
    assert_eq!(created["name"], "ci bot");
    assert_eq!(created["can_read"], true);
    assert_eq!(created["can_write"], true);
    assert_eq!(created["can_system"], false);
    assert_eq!(created["expires_at"], 4_099_910_040_i64);
    assert!(created["created_at"].as_i64().unwrap() >= now() - 60);
    assert_eq!(
        created["keyPermissions"],
        json!({"can_read": true, "can_write": true, "can_system": false})
    );
    assert_eq!(created["expiresAt"], "2099-12-02T15:54");

    let (status, listed) = s.api.get("/api/delegates", Some(&token)).await;
    assert_eq!(status, 200);
    let mine = &listed["delegates"][0];
    assert_eq!(mine["delegate_id"], id.as_str());
    assert_eq!(mine["can_system"], false);
    assert_eq!(mine["expires_at"], 4_099_910_040_i64);

    // A secret, shown once; an empty body is fine.
    let secrets = format!("/api/delegates/{id}/secrets");
    let (status, secret) = s.api.post_text(&secrets, Some(&token), String::new()).await;
    assert_eq!(status, 201, "{secret}");
    let secret_id = secret["secret_id"].as_str().unwrap().to_string();
    assert!(is_hex_id(&secret_id, "sec_"), "{secret_id}");
    assert_eq!(secret["delegate_id"], id.as_str());
    let value = secret["delegateSecret"].as_str().unwrap();
    assert!(value.starts_with("sec_") && value.len() == 36, "{value}");
    assert!(value[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(secret["warning"].as_str().is_some_and(|w| !w.is_empty()));
    let (status, named) = s
        .api
        .post(&secrets, Some(&token), json!({"name": "laptop"}))
        .await;
    assert_eq!((status, named["name"].clone()), (201, json!("laptop")));

    let (status, listed) = s.api.get(&secrets, Some(&token)).await;
    assert_eq!(status, 200);
    let rows = listed["secrets"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "laptop", "newest first");
    assert_eq!(rows[1]["secret_id"], secret_id.as_str());
    assert!(rows[1]["last_used_at"].is_null() && rows[1]["revoked_at"].is_null());
    let text = listed.to_string();
    assert!(!text.contains(value) && !text.contains("hash"), "{text}");

    // Grants: `system` is admin; granting again replaces the permission.
    assert_eq!(s.grant(alice, &id, &project.main, "system").await, 200);
    let grants = format!("/api/delegates/{id}/grants");
    let (_, listed) = s.api.get(&grants, Some(&token)).await;
    let g = &listed["grants"][0];
    assert_eq!(g["instance_id"], project.main.as_str());
    assert_eq!(g["permission"], "admin");
    let do_id = g["do_id"].as_str().unwrap();
    assert!(do_id.len() == 64 && do_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(g["granted_at"].as_i64().is_some() && g["expires_at"].is_null());
    assert_eq!(s.grant(alice, &id, &project.main, "read").await, 200);
    let (_, listed) = s.api.get(&grants, Some(&token)).await;
    assert_eq!(listed["grants"].as_array().unwrap().len(), 1);
    assert_eq!(listed["grants"][0]["permission"], "read");

    let revoke = format!("{grants}/{}", project.main);
    assert_eq!(
        s.api.delete(&revoke, Some(&token)).await,
        (200, json!({"success": true}))
    );
    assert_eq!(s.api.delete(&revoke, Some(&token)).await.0, 404);

    let one = format!("{secrets}/{secret_id}");
    assert_eq!(
        s.api.delete(&one, Some(&token)).await,
        (200, json!({"success": true}))
    );
    let (_, listed) = s.api.get(&secrets, Some(&token)).await;
    assert!(listed["secrets"][1]["revoked_at"].as_i64().is_some());
    assert_eq!(
        s.api
            .delete(&format!("{secrets}/sec_nope"), Some(&token))
            .await
            .0,
        404
    );

    let path = format!("/api/delegates/{id}");
    assert_eq!(
        s.api.delete(&path, Some(&token)).await,
        (200, json!({"success": true}))
    );
    assert_eq!(
        s.api.delete(&path, Some(&token)).await,
        (404, json!({"error": "Delegate not found"}))
    );
    assert_eq!(s.api.get(&grants, Some(&token)).await.0, 404);
}

#[tokio::test]
async fn only_their_signed_in_creator_manages_delegates() {
    let s = setup("downer");
    let (alice, bob) = (&s.w.alice, &s.w.bob);
    let id = s.delegate(alice, json!({"can_read": true})).await;
    let secret = s.secret(alice, &id).await;
    let not_found = (404, json!({"error": "Delegate not found"}));

    // Another user: every route says the delegate does not exist.
    let bob_jwt = jwt(bob);
    let base = format!("/api/delegates/{id}");
    assert_eq!(
        s.api.get(&format!("{base}/secrets"), Some(&bob_jwt)).await,
        not_found
    );
    assert_eq!(
        s.api.get(&format!("{base}/grants"), Some(&bob_jwt)).await,
        not_found
    );
    assert_eq!(
        s.api
            .post(&format!("{base}/secrets"), Some(&bob_jwt), json!({}))
            .await,
        not_found
    );
    assert_eq!(s.api.delete(&base, Some(&bob_jwt)).await, not_found);
    let (_, listed) = s.api.get("/api/delegates", Some(&bob_jwt)).await;
    assert_eq!(listed, json!({"delegates": []}));

    // An API key, even alice's account-wide admin key: 403.
    let (status, body) = s.api.get("/api/delegates", Some(&alice.key)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = s
        .api
        .post(
            "/api/delegates",
            Some(&alice.key),
            json!({"name": "x", "keyPermissions": {}}),
        )
        .await;
    assert_eq!(status, 403);

    // The delegate itself manages nothing and reaches no account route.
    let cred = delegate_auth(&id, &secret);
    for (method, path, message) in [
        (
            "POST",
            "/api/delegates".to_string(),
            "Delegates cannot create delegates",
        ),
        (
            "GET",
            "/api/delegates".to_string(),
            "Delegates cannot list delegates",
        ),
        ("DELETE", base.clone(), "Delegates cannot delete delegates"),
        (
            "GET",
            "/api/projects".to_string(),
            "Delegates cannot list projects",
        ),
        (
            "POST",
            "/api/projects".to_string(),
            "Delegates cannot create projects",
        ),
        (
            "GET",
            "/api/keys".to_string(),
            "Delegates cannot list API keys",
        ),
        (
            "GET",
            "/api/groups".to_string(),
            "Delegates cannot list groups",
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = json!({"name": "x", "keyPermissions": {}});
        let answer = s.api.call(method, &path, Some(&cred), Some(&body)).await;
        assert_eq!(answer, (403, json!({ "error": message })), "{path}");
    }
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_field() {
    let s = setup("dbad");
    // eve: no other test of this binary gives her delegates.
    let alice = &s.w.eve;
    let token = jwt(alice);
    let caps = json!({"can_read": true});
    for (body, message) in [
        (json!({"keyPermissions": caps}), "name is required"),
        (
            json!({"name": "  ", "keyPermissions": caps}),
            "name must be 1-200 characters",
        ),
        (
            json!({"name": "x".repeat(201), "keyPermissions": caps}),
            "name must be 1-200 characters",
        ),
        (json!({"name": "a"}), "keyPermissions is required"),
        (
            json!({"name": "a", "keyPermissions": [true]}),
            "keyPermissions must be an object of can_read, can_write and can_system",
        ),
        (
            json!({"name": "a", "keyPermissions": {"can_write": "yes"}}),
            "keyPermissions.can_write must be a boolean",
        ),
        (
            json!({"name": "a", "keyPermissions": caps, "expiresAt": "2001-01-01T00:00"}),
            "expiresAt must be in the future",
        ),
        (
            json!({"name": "a", "keyPermissions": caps, "expiresAt": "next week"}),
            "expiresAt must be an ISO-8601 date-time",
        ),
        (
            json!({"name": "a", "keyPermissions": caps, "expiresAt": 5}),
            "expiresAt must be an ISO-8601 date-time string",
        ),
    ] {
        let answer = s
            .api
            .post("/api/delegates", Some(&token), body.clone())
            .await;
        assert_eq!(answer, (400, json!({ "error": message })), "{body}");
    }
    let (_, listed) = s.api.get("/api/delegates", Some(&token)).await;
    assert_eq!(listed, json!({"delegates": []}), "nothing was created");

    let id = s.delegate(alice, caps).await;
    let project = s.w.project(alice, "p").await;
    let grants = format!("/api/delegates/{id}/grants");
    for (body, status, message) in [
        (json!({"permission": "read"}), 400, "instanceId is required"),
        (
            json!({"instanceId": project.main}),
            400,
            "permission is required",
        ),
        (
            json!({"instanceId": project.main, "permission": "owner"}),
            400,
            "permission must be read, write, admin or system",
        ),
        (
            json!({"instanceId": "no-such-instance", "permission": "read"}),
            404,
            "Instance not found",
        ),
    ] {
        let answer = s.api.post(&grants, Some(&token), body.clone()).await;
        assert_eq!(answer, (status, json!({ "error": message })), "{body}");
    }
}

#[tokio::test]
async fn grants_need_admin_and_stay_within_the_granters_role() {
    let s = setup("dgrant");
    let (alice, bob) = (&s.w.alice, &s.w.bob);
    let bobs = s.w.project(bob, "bob's").await;
    let id = s
        .delegate(
            alice,
            json!({"can_read": true, "can_write": true, "can_system": true}),
        )
        .await;

    // Alice cannot see bob's instance: 404.
    assert_eq!(s.grant(alice, &id, &bobs.main, "read").await, 404);
    // With a write share she sees it but is no admin: 403.
    let shares = format!("/api/instances/{}/shares", bobs.main);
    let share =
        s.w.share(bob, &shares, grant("user", &alice.id, "write"))
            .await;
    assert_eq!(s.grant(alice, &id, &bobs.main, "read").await, 403);
    // As an admin she may grant admin, and nothing more exists to ask for.
    s.w.share(bob, &shares, grant("user", &alice.id, "admin"))
        .await;
    assert_eq!(s.grant(alice, &id, &bobs.main, "admin").await, 200);
    let _ = share;
}

#[tokio::test]
async fn a_delegate_acts_at_the_lowest_of_grant_capabilities_and_creator_role() {
    let s = setup("drole");
    let alice = &s.w.alice;
    let project = s.w.project(alice, "p").await;
    let other = s.w.instance(alice, &project.id, "other").await;
    let (id, secret) = s
        .granted(alice, json!({"can_read": true}), &project.main, "write")
        .await;
    let cred = delegate_auth(&id, &secret);

    // The read capability caps the write grant.
    let (status, token) = s.api.ws_token(Some(&cred), &project.main).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["permission"], "read");
    let (status, inst) = s
        .api
        .get(&format!("/api/instances/{}", project.main), Some(&cred))
        .await;
    assert_eq!((status, inst["role"].clone()), (200, json!("read")));
    assert_eq!(inst["project_id"], project.id.as_str());

    let url = s.w.server.ws_url(&format!(
        "/sync/{}?token={}",
        project.main,
        token["token"].as_str().unwrap()
    ));
    let mut ws = WsClient::connect_with_headers(&url, &[]).await;
    let hello = ws.recv_type("auth_success").await;
    assert_eq!(hello["permission"], "read");
    ws.recv_type("sync").await;
    ws.send(&json!({"type": "set", "key": "k", "value": 1, "id": "w1"}))
        .await;
    let refused = ws.recv_type("error").await;
    assert_eq!(refused["code"], "NO_PERMISSION");

    // An ungranted instance of the same creator does not exist for it.
    let (status, _) = s
        .api
        .get(&format!("/api/instances/{other}"), Some(&cred))
        .await;
    assert_eq!(status, 404);
    let (status, _) = s.api.ws_token(Some(&cred), &other).await;
    assert_eq!(status, 404);
    let refusal = WsClient::try_connect(
        &s.w.server.ws_url(&format!("/sync/{other}")),
        &[("Authorization", cred.as_str())],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(
        refusal,
        r#"403 {"error":"Instance not found or access denied"}"#
    );

    // A delegate connecting with its credential in the header gets its role.
    let mut ws = WsClient::connect_with_headers(
        &s.w.server.ws_url(&format!("/sync/{}", project.main)),
        &[("Authorization", cred.as_str())],
    )
    .await;
    assert_eq!(ws.recv_type("auth_success").await["permission"], "read");
}

#[tokio::test]
async fn revoked_deleted_and_expired_credentials_fail_at_once() {
    let s = setup("dfail");
    let alice = &s.w.alice;
    let (token, project) = s.signed_in_project(alice).await;
    let inst = format!("/api/instances/{}", project.main);
    let id = s.delegate(alice, json!({"can_read": true})).await;
    assert_eq!(s.grant(alice, &id, &project.main, "read").await, 200);
    let first = delegate_auth(&id, &s.secret(alice, &id).await);
    let second = delegate_auth(&id, &s.secret(alice, &id).await);
    assert_eq!(s.api.get(&inst, Some(&first)).await.0, 200);

    // A malformed credential, and a wrong secret.
    for bad in ["ApiKey nocolon", "ApiKey a:b:c", "ApiKey :x"] {
        let (status, body) = s.api.get(&inst, Some(bad)).await;
        assert_eq!(
            (status, body),
            (401, json!({"error": "Invalid delegate credential"})),
            "{bad}"
        );
    }
    let wrong = delegate_auth(&id, "sec_wrongwrongwrongwrongwrongwrongwr");
    assert_eq!(
        s.api.get(&inst, Some(&wrong)).await,
        (401, json!({"error": "Invalid delegate credential"}))
    );

    // Revoking one secret leaves the other working.
    let secrets = format!("/api/delegates/{id}/secrets");
    let (_, listed) = s.api.get(&secrets, Some(&token)).await;
    let first_id = listed["secrets"][1]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        listed["secrets"][1]["last_used_at"].as_i64().is_some(),
        "{listed}"
    );
    s.api
        .delete(&format!("{secrets}/{first_id}"), Some(&token))
        .await;
    assert_eq!(s.api.get(&inst, Some(&first)).await.0, 401);
    assert_eq!(s.api.get(&inst, Some(&second)).await.0, 200);

    // Deleting the delegate ends the other secret too.
    s.api
        .delete(&format!("/api/delegates/{id}"), Some(&token))
        .await;
    assert_eq!(s.api.get(&inst, Some(&second)).await.0, 401);

    // An expiring delegate works until its time, then says it expired.
    let expires = now() + 3;
    let at = format_utc(expires);
    let (status, created) = s
        .api
        .post(
            "/api/delegates",
            Some(&token),
            json!({"name": "short", "keyPermissions": {"can_read": true}, "expiresAt": at}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let short = created["delegate_id"].as_str().unwrap().to_string();
    assert_eq!(s.grant(alice, &short, &project.main, "read").await, 200);
    let cred = delegate_auth(&short, &s.secret(alice, &short).await);
    assert_eq!(s.api.get(&inst, Some(&cred)).await.0, 200);
    tokio::time::sleep(Duration::from_secs((expires - now() + 1).max(0) as u64)).await;
    assert_eq!(
        s.api.get(&inst, Some(&cred)).await,
        (401, json!({"error": "Delegate expired"}))
    );
}

#[tokio::test]
async fn an_expiring_delegates_open_socket_is_closed_when_it_expires() {
    let s = setup("dexpire");
    let alice = &s.w.alice;
    let project = s.w.project(alice, "p").await;
    let expires = now() + 4;
    let (status, created) = s
        .api
        .post(
            "/api/delegates",
            Some(&jwt(alice)),
            json!({"name": "brief", "keyPermissions": {"can_read": true}, "expiresAt": format_utc(expires)}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["delegate_id"].as_str().unwrap().to_string();
    assert_eq!(s.grant(alice, &id, &project.main, "read").await, 200);
    let cred = delegate_auth(&id, &s.secret(alice, &id).await);
    let url = s.w.server.ws_url(&format!("/sync/{}", project.main));
    let mut ws = WsClient::connect_with_headers(&url, &[("Authorization", cred.as_str())]).await;
    ws.handshake().await;
    // It sends nothing: the object closes it at the expiry all the same.
    let (code, reason, _) = closed_within(&mut ws, Duration::from_secs(12)).await;
    assert_eq!((code, reason.as_str()), (4003, "Access revoked"));
    assert!(now() >= expires, "closed before the delegate expired");
}

#[tokio::test]
async fn in_band_auth_accepts_a_delegate_credential() {
    let s = setup("dinband");
    let alice = &s.w.alice;
    let (project, id, secret) = s.delegate_on_project("admin").await;

    let url = s.w.server.ws_url(&format!("/sync/{}", project.main));
    let mut ws = WsClient::connect_with_headers(&url, &[]).await;
    ws.send(&json!({"type": "auth", "apiKey": format!("{id}:{secret}")}))
        .await;
    let hello = ws.recv_type("auth_success").await;
    assert_eq!(
        hello["permission"], "write",
        "capabilities cap the admin grant"
    );
    assert_eq!(hello["userId"], alice.id.as_str());
    ws.recv_type("sync").await;
    let updated = ws.set("k", json!("v")).await;
    assert_eq!(updated["updatedBy"], alice.id.as_str());

    let mut bad = WsClient::connect_with_headers(&url, &[]).await;
    bad.send(&json!({"type": "auth", "apiKey": format!("{id}:sec_not_it")}))
        .await;
    let refused = bad.recv_type("auth_error").await;
    assert_eq!(refused["code"], "INVALID_KEY");
    assert!(matches!(
        bad.next_event(Duration::from_secs(5)).await,
        Event::Closed(Some((1008, _)))
    ));
}

/// Waits for the socket to be closed; the close code and how long it took.
async fn closed_within(ws: &mut WsClient, limit: Duration) -> (u16, String, Duration) {
    let start = Instant::now();
    loop {
        match ws.next_event(limit).await {
            Event::Json(_) => continue,
            Event::Closed(Some((code, reason))) => return (code, reason, start.elapsed()),
            other => panic!("expected a close within {limit:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn revoking_a_grant_closes_the_delegates_socket_and_lowering_it_lowers() {
    let s = setup("drevoke");
    let alice = &s.w.alice;
    let (project, id, secret) = s.delegate_on_project("write").await;
    let cred = delegate_auth(&id, &secret);
    let mut ws = WsClient::connect_to(s.w.server, &project.main, Some(&cred)).await;
    assert_eq!(ws.handshake_permission().await, "write");
    // The owner's own socket is not touched by the delegate's revocation.
    let mut owner = s.w.join(&project.main, &alice.key).await;

    // Lowered to read: the socket stays, its next set is refused.
    assert_eq!(s.grant(alice, &id, &project.main, "read").await, 200);
    assert_eq!(ws.set_refused().await, "NO_PERMISSION");

    // Revoked: closed with 4003 within a second.
    let path = format!("/api/delegates/{id}/grants/{}", project.main);
    let started = Instant::now();
    s.api.delete_ok(&path, Some(&jwt(alice))).await;
    let (code, reason, _) = closed_within(&mut ws, Duration::from_secs(2)).await;
    assert_eq!((code, reason.as_str()), (4003, "Access revoked"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    owner.set("still", json!(true)).await;
}

#[tokio::test]
async fn the_creator_losing_the_instance_ends_the_delegates_access() {
    let s = setup("dcreator");
    let (alice, bob) = (&s.w.alice, &s.w.bob);
    let bobs = s.w.project(bob, "bob's").await;
    let shares = format!("/api/instances/{}/shares", bobs.main);
    let share =
        s.w.share(bob, &shares, grant("user", &alice.id, "admin"))
            .await;
    let (id, secret) = s
        .granted(
            alice,
            json!({"can_read": true, "can_write": true, "can_system": true}),
            &bobs.main,
            "admin",
        )
        .await;
    let cred = delegate_auth(&id, &secret);
    let inst = format!("/api/instances/{}", bobs.main);
    let (status, body) = s.api.get(&inst, Some(&cred)).await;
    assert_eq!((status, body["role"].clone()), (200, json!("admin")));
    let mut ws = WsClient::connect_to(s.w.server, &bobs.main, Some(&cred)).await;
    assert_eq!(ws.handshake_permission().await, "admin");

    // Bob lowers alice to read: the delegate is read at most.
    s.w.share(bob, &shares, grant("user", &alice.id, "read"))
        .await;
    assert_eq!(s.api.get(&inst, Some(&cred)).await.1["role"], "read");
    assert_eq!(ws.set_refused().await, "NO_PERMISSION");

    // Bob removes the share: the instance is gone for the delegate too.
    s.api
        .delete_ok(&format!("/api/shares/{share}"), Some(&bob.key))
        .await;
    assert_eq!(s.api.get(&inst, Some(&cred)).await.0, 404);
    let (code, _, _) = closed_within(&mut ws, Duration::from_secs(2)).await;
    assert_eq!(code, 4003);
}

#[tokio::test]
async fn the_dashboard_manages_delegates_with_bearer_dev_in_development() {
    let server = dev_server();
    let api = Api::new(server);
    let dev = Some("dev");
    let (status, project) = api
        .post("/api/projects", dev, json!({"name": "dash"}))
        .await;
    assert_eq!(status, 201, "{project}");
    let project_id = project["id"].as_str().unwrap();
    let main = project["defaultInstanceId"].as_str().unwrap();
    let (status, listed) = api
        .get(&format!("/api/projects/{project_id}/instances"), dev)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["instances"][0]["project_id"], project_id);
    let (status, patched) = api
        .patch(
            &format!("/api/instances/{main}"),
            dev,
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(
        (status, patched["project_id"].clone()),
        (200, json!(project_id))
    );

    let (status, created) = api
        .post(
            "/api/delegates",
            dev,
            json!({"name": "agent", "keyPermissions": {"can_read": true, "can_write": true, "can_system": false}, "expiresAt": null}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["expiresAt"], Value::Null);
    let id = created["delegate_id"].as_str().unwrap();
    let (status, secret) = api
        .post(&format!("/api/delegates/{id}/secrets"), dev, json!({}))
        .await;
    assert_eq!(status, 201);
    let (status, _) = api
        .post(
            &format!("/api/delegates/{id}/grants"),
            dev,
            json!({"instanceId": main, "permission": "write"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, grants) = api.get(&format!("/api/delegates/{id}/grants"), dev).await;
    assert_eq!(
        (status, grants["grants"][0]["instance_id"].clone()),
        (200, json!(main))
    );
    let (status, listed) = api.get("/api/delegates", dev).await;
    assert_eq!(status, 200);
    assert!(listed["delegates"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["delegate_id"] == id));

    // The delegate's credential is verified even in development mode.
    let cred = delegate_auth(id, secret["delegateSecret"].as_str().unwrap());
    let (status, token) = api.ws_token(Some(&cred), main).await;
    assert_eq!((status, token["permission"].clone()), (200, json!("write")));
    let (status, _) = api.get("/api/projects", Some(&cred)).await;
    assert_eq!(status, 403);
}

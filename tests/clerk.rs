//! Clerk: session JWTs verified against a JWKS the test serves itself
//! (with keys it generates and tokens it signs), and Svix-signed user
//! webhooks, against a production-mode server.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::api::{lists, Api};
use common::fake::{FakeResponse, FakeUpstream};
use common::jwt::{now, Key};
use common::server::{shared, ServerOptions, TestServer};
use common::unique_id;
use common::world::Rows;
use common::ws::WsClient;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::Sha256;

const ISSUER: &str = "https://clerk.mindcache.test";
const PARTY: &str = "https://app.mindcache.test";

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "azp": PARTY, "exp": now() + 300, "iat": now() - 5, "nbf": now() - 5})
}

struct World {
    server: &'static TestServer,
    fake: FakeUpstream,
    old: Key,
    new: Key,
    /// The keys the fake JWKS currently serves.
    served: Arc<Mutex<Vec<Value>>>,
    webhook_secret: String,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let fake = FakeUpstream::start();
        let old = Key::generate("kid-old");
        let new = Key::generate("kid-new");
        let served = Arc::new(Mutex::new(vec![old.jwk()]));
        let jwks = served.clone();
        fake.on("GET", "/jwks", move |_| {
            FakeResponse::json(200, &json!({ "keys": *jwks.lock().unwrap() }))
        });
        let webhook_secret = format!(
            "whsec_{}",
            STANDARD.encode(b"a test secret of 32 bytes length")
        );
        let server = shared(
            ServerOptions::production()
                .var("CLERK_JWKS_URL", &fake.url("/jwks"))
                .var("CLERK_ISSUER", ISSUER)
                .var(
                    "CLERK_AUTHORIZED_PARTIES",
                    &format!("https://other.test, {PARTY}"),
                )
                .var("CLERK_WEBHOOK_SECRET", &webhook_secret),
        );
        World {
            server,
            fake,
            old,
            new,
            served,
            webhook_secret,
        }
    })
}

fn api() -> Api<'static> {
    Api::new(world().server)
}

async fn status_with(token: &str) -> (u16, Value) {
    api().get("/api/projects", Some(token)).await
}

#[tokio::test]
async fn a_valid_token_is_accepted_and_users_are_isolated() {
    let w = world();
    let ann = w.old.sign(&claims("user_ann"));
    let ben = w.old.sign(&claims("user_ben"));
    let (s, p) = api()
        .post("/api/projects", Some(&ann), json!({"name":"ann's"}))
        .await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().unwrap();
    let (s, list) = status_with(&ann).await;
    assert_eq!(s, 200);
    assert!(lists(&list, "projects", id));
    let (s, list) = status_with(&ben).await;
    assert_eq!(s, 200);
    assert!(!lists(&list, "projects", id));
    let project = format!("/api/projects/{id}");
    assert_eq!(api().get(&project, Some(&ben)).await.0, 404);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_reason() {
    let w = world();
    let mut expired = claims("user_x");
    expired["exp"] = json!(now() - 60);
    let mut early = claims("user_x");
    early["nbf"] = json!(now() + 120);
    let mut wrong_iss = claims("user_x");
    wrong_iss["iss"] = json!("https://evil.test");
    let mut wrong_azp = claims("user_x");
    wrong_azp["azp"] = json!("https://evil.test");
    let mut no_azp = claims("user_x");
    no_azp.as_object_mut().unwrap().remove("azp");
    let mut pending = claims("user_x");
    pending["sts"] = json!("pending");

    let hs256 = jsonwebtoken::encode(
        &Header {
            kid: Some("kid-old".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims("user_x"),
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"kid-old"}"#),
        URL_SAFE_NO_PAD.encode(claims("user_x").to_string())
    );
    let cases = [
        (w.old.sign(&expired), "expired"),
        (w.old.sign(&early), "not yet valid"),
        (w.new.sign_as("kid-old", &claims("user_x")), "signature"),
        (
            w.old.sign_as("kid-unknown", &claims("user_x")),
            "Unknown signing key",
        ),
        (hs256, "only RS256"),
        (none, "only RS256"),
        (w.old.sign(&wrong_iss), "issuer"),
        (w.old.sign(&wrong_azp), "azp"),
        (w.old.sign(&no_azp), "azp"),
        (w.old.sign(&pending), "pending"),
        ("aaa.bbb.ccc".to_string(), "Malformed"),
    ];
    for (token, why) in cases {
        let (s, b) = status_with(&token).await;
        assert_eq!(s, 401, "{why}: {b}");
        let msg = b["error"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "expected {why:?} in {msg:?}");
    }
}

#[tokio::test]
async fn rotated_keys_are_picked_up() {
    let w = world();
    // Warm the cache with the old key, then rotate.
    assert_eq!(status_with(&w.old.sign(&claims("user_rot"))).await.0, 200);
    w.served.lock().unwrap().push(w.new.jwk());
    // Unknown kids are refetched at most once a minute.
    tokio::time::sleep(Duration::from_secs(62)).await;
    let (s, b) = status_with(&w.new.sign(&claims("user_rot"))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(status_with(&w.old.sign(&claims("user_rot"))).await.0, 200);
    assert!(w.fake.requests_to("/jwks").len() >= 2);
}

fn svix_headers(secret: &str, id: &str, ts: i64, body: &str) -> Vec<(String, String)> {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("svix-id".into(), id.into()),
        ("svix-timestamp".into(), ts.to_string()),
        ("svix-signature".into(), format!("v1,{sig}")),
    ]
}

async fn post_webhook(
    server: &TestServer,
    body: &str,
    headers: &[(String, String)],
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(server.local_url("/webhooks/clerk"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn user_event(
    kind: &str,
    id: &str,
    email: &str,
    first: Option<&str>,
    last: Option<&str>,
) -> String {
    json!({
        "type": kind, "object": "event", "timestamp": now() * 1000,
        "data": {
            "id": id, "object": "user", "first_name": first, "last_name": last,
            "primary_email_address_id": "idn_2",
            "email_addresses": [
                {"id": "idn_1", "email_address": "old@example.com"},
                {"id": "idn_2", "email_address": email}
            ]
        }
    })
    .to_string()
}

async fn send_event(body: &str) -> (u16, Value) {
    let w = world();
    let headers = svix_headers(&w.webhook_secret, &unique_id("msg"), now(), body);
    post_webhook(w.server, body, &headers).await
}

fn d1_user(id: &str) -> Option<Value> {
    let sql = format!("SELECT id, email, name FROM users WHERE id = '{id}'");
    world().server.d1_rows(&sql).into_iter().next()
}

#[tokio::test]
async fn webhook_signatures_are_checked() {
    let w = world();
    let body = user_event(
        "user.created",
        "user_sig",
        "sig@example.com",
        Some("Sig"),
        None,
    );
    let good = svix_headers(&w.webhook_secret, "msg_sig", now(), &body);
    let without = |name: &str| {
        good.iter()
            .filter(|(k, _)| k != name)
            .cloned()
            .collect::<Vec<_>>()
    };

    for missing in ["svix-id", "svix-timestamp", "svix-signature"] {
        let (s, b) = post_webhook(w.server, &body, &without(missing)).await;
        assert_eq!(s, 401, "{missing}: {b}");
    }
    let stale = svix_headers(&w.webhook_secret, "msg_sig", now() - 301, &body);
    assert_eq!(post_webhook(w.server, &body, &stale).await.0, 401);
    let future = svix_headers(&w.webhook_secret, "msg_sig", now() + 301, &body);
    assert_eq!(post_webhook(w.server, &body, &future).await.0, 401);
    let tampered = body.replace("sig@example.com", "evil@example.com");
    assert_eq!(post_webhook(w.server, &tampered, &good).await.0, 401);
    let wrong_secret = svix_headers(
        &format!("whsec_{}", STANDARD.encode(b"another secret")),
        "msg_sig",
        now(),
        &body,
    );
    assert_eq!(post_webhook(w.server, &body, &wrong_secret).await.0, 401);
    assert!(
        d1_user("user_sig").is_none(),
        "nothing may be written by a refused webhook"
    );

    // Several signatures: the second one matches.
    let mut multi = good.clone();
    let real = multi[2].1.clone();
    multi[2].1 = format!("v1,AAAAbm90IGl0 v2,ignored {real}");
    let (s, b) = post_webhook(w.server, &body, &multi).await;
    assert_eq!((s, b), (200, json!({"received": true})));
    assert_eq!(d1_user("user_sig").unwrap()["email"], "sig@example.com");

    // A signed body that is not JSON.
    let junk = "{not json";
    let h = svix_headers(&w.webhook_secret, "msg_junk", now(), junk);
    assert_eq!(post_webhook(w.server, junk, &h).await.0, 400);
    // Unknown events are acknowledged and ignored.
    let other = json!({"type":"session.created","data":{"id":"sess_1"}}).to_string();
    assert_eq!(send_event(&other).await, (200, json!({"received": true})));
}

#[tokio::test]
async fn webhooks_create_update_and_replay() {
    let body = user_event(
        "user.created",
        "user_cu",
        "cu@example.com",
        Some("Cee"),
        Some("You"),
    );
    assert_eq!(send_event(&body).await.0, 200);
    let row = d1_user("user_cu").unwrap();
    assert_eq!(
        (row["email"].clone(), row["name"].clone()),
        (json!("cu@example.com"), json!("Cee You"))
    );
    // Replaying the same event is harmless.
    assert_eq!(send_event(&body).await.0, 200);
    let updated = user_event("user.updated", "user_cu", "new@example.com", None, None);
    assert_eq!(send_event(&updated).await.0, 200);
    let row = d1_user("user_cu").unwrap();
    assert_eq!(
        (row["email"].clone(), row["name"].clone()),
        (json!("new@example.com"), Value::Null)
    );
}

#[tokio::test]
async fn a_replayed_delivery_is_acknowledged_but_not_applied() {
    let w = world();
    let event = |first: &str| {
        user_event(
            "user.updated",
            "user_replay",
            "replay@example.com",
            Some(first),
            None,
        )
    };
    let name = || d1_user("user_replay").unwrap()["name"].clone();
    let received = (200, json!({"received": true}));
    let (first, second) = (event("Ann"), event("Bea"));
    let first_headers = svix_headers(&w.webhook_secret, &unique_id("msg"), now(), &first);
    assert_eq!(
        post_webhook(w.server, &first, &first_headers).await,
        received
    );
    assert_eq!(name(), "Ann");
    assert_eq!(send_event(&second).await, received);
    assert_eq!(name(), "Bea");
    // The first delivery again, byte for byte and validly signed: it is
    // acknowledged, and the newer name stays.
    assert_eq!(
        post_webhook(w.server, &first, &first_headers).await,
        received
    );
    assert_eq!(name(), "Bea");
    // The same with the Standard Webhooks header names.
    let standard: Vec<(String, String)> = first_headers
        .iter()
        .map(|(k, v)| (k.replace("svix-", "webhook-"), v.clone()))
        .collect();
    assert_eq!(post_webhook(w.server, &first, &standard).await, received);
    assert_eq!(name(), "Bea");
    // A new delivery (its own id) of the same change is applied.
    assert_eq!(send_event(&first).await, received);
    assert_eq!(name(), "Ann");
}

#[tokio::test]
async fn a_full_journey_and_a_deleted_user_leaves_nothing() {
    let w = world();
    let api = api();
    let uid = "user_journey";
    assert_eq!(
        send_event(&user_event(
            "user.created",
            uid,
            "j@example.com",
            Some("Jo"),
            None
        ))
        .await
        .0,
        200
    );
    let jwt = w.old.sign(&claims(uid));

    let (s, p) = api
        .post("/api/projects", Some(&jwt), json!({"name":"journey"}))
        .await;
    assert_eq!(s, 201, "{p}");
    let instance = p["defaultInstanceId"].as_str().unwrap().to_string();
    let (s, t) = api.ws_token(Some(&jwt), &instance).await;
    assert_eq!(s, 200, "{t}");
    let path = format!("{instance}?token={}", t["token"].as_str().unwrap());
    let mut browser = WsClient::connect_to(w.server, &path, None).await;
    browser.handshake().await;

    let (s, k) = api.post("/api/keys", Some(&jwt), json!({"name":"agent","scopeType":"instance","scopeId":instance,"permissions":["read","write"]})).await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("mc_live_") && key.len() == 40);
    let (_, keys) = api.get("/api/keys", Some(&jwt)).await;
    assert_eq!(keys["keys"][0]["key_prefix"], &key[..12]);
    assert!(keys["keys"][0].get("key").is_none() && keys["keys"][0].get("key_hash").is_none());

    // A second key works until it is deleted, and then at once no more;
    // another user cannot delete it.
    let (s, k2) = api
        .post(
            "/api/keys",
            Some(&jwt),
            json!({"name":"temp","scopeType":"account","permissions":["read"]}),
        )
        .await;
    assert_eq!(s, 201, "{k2}");
    assert_eq!(k2["permissions"], json!(["read"]));
    let temp = k2["key"].as_str().unwrap().to_string();
    let temp_id = k2["id"].as_str().unwrap().to_string();
    assert_eq!(api.get("/api/projects", Some(&temp)).await.0, 200);
    let stranger = w.old.sign(&claims("user_stranger"));
    assert_eq!(
        api.delete(&format!("/api/keys/{temp_id}"), Some(&stranger))
            .await
            .0,
        404
    );
    assert_eq!(api.get("/api/projects", Some(&temp)).await.0, 200);
    let (s, b) = api
        .delete(&format!("/api/keys/{temp_id}"), Some(&jwt))
        .await;
    assert_eq!((s, b), (200, json!({"success": true})));
    let (s, b) = api.get("/api/projects", Some(&temp)).await;
    assert_eq!((s, b), (401, json!({"error": "Invalid API key"})));
    // Keys are managed only by a signed-in user, not with a key.
    assert_eq!(api.get("/api/keys", Some(&key)).await.0, 403);
    // Bad key requests name the field.
    for (body, field) in [
        (
            json!({"scopeType":"account","permissions":["read"]}),
            "name",
        ),
        (
            json!({"name":"x","scopeType":"galaxy","permissions":["read"]}),
            "scopeType",
        ),
        (
            json!({"name":"x","scopeType":"project","permissions":["read"]}),
            "scopeId",
        ),
        (
            json!({"name":"x","scopeType":"account","permissions":[]}),
            "permissions",
        ),
        (
            json!({"name":"x","scopeType":"account","permissions":["root"]}),
            "permissions",
        ),
    ] {
        let (s, b) = api.post("/api/keys", Some(&jwt), body).await;
        assert_eq!(s, 400, "{b}");
        assert!(b["error"].as_str().unwrap().contains(field), "{b}");
    }
    // A scope the caller does not administer is refused.
    let scoped =
        json!({"name":"x","scopeType":"instance","scopeId":instance,"permissions":["read"]});
    assert_eq!(api.post("/api/keys", Some(&stranger), scoped).await.0, 404);

    // The agent writes with its key; the user sees it live.
    let mut agent = WsClient::connect_to(w.server, &instance, None).await;
    agent.send(&json!({"type":"auth","apiKey": key})).await;
    agent
        .send(&json!({"type":"set","key":"from-agent","value":"hello"}))
        .await;
    assert_eq!(agent.recv_type("auth_success").await["permission"], "write");
    agent.recv_type("sync").await;
    let seen = browser.recv_type("key_updated").await;
    assert_eq!(
        (seen["key"].clone(), seen["updatedBy"].clone()),
        (json!("from-agent"), json!(uid))
    );

    // Deleting the user: sockets closed, everything gone.
    assert_eq!(
        send_event(
            &json!({"type":"user.deleted","data":{"id":uid,"object":"user","deleted":true}})
                .to_string()
        )
        .await
        .0,
        200
    );
    assert_eq!(browser.expect_closed().await.map(|c| c.0), Some(1000));
    assert!(d1_user(uid).is_none());
    assert_eq!(api.get("/api/projects", Some(&key)).await.0, 401);
    let counts = w.server.d1_rows(&format!(
        "SELECT (SELECT COUNT(*) FROM projects WHERE owner_id = '{uid}') AS p,
                (SELECT COUNT(*) FROM instances WHERE id = '{instance}') AS i,
                (SELECT COUNT(*) FROM api_keys WHERE user_id = '{uid}') AS k"
    ));
    assert_eq!(counts[0], json!({"p":0,"i":0,"k":0}));
    // The instance's storage went too: the same id, registered again (test
    // seeding; ids are never reused), finds only its tombstone (§8).
    assert_eq!(
        send_event(&user_event(
            "user.created",
            uid,
            "j@example.com",
            None,
            None
        ))
        .await
        .0,
        200
    );
    let project = format!("again-{uid}");
    Rows::default()
        .project(uid, &project, "p")
        .instance(uid, &project, &instance, "main")
        .write(w.server);
    let (_, t) = api.ws_token(Some(&jwt), &instance).await;
    let path = format!("{instance}?token={}", t["token"].as_str().unwrap());
    let mut again = WsClient::connect_to(w.server, &path, None).await;
    assert_eq!(
        again.expect_closed().await,
        Some((4004, "Instance not found".to_string()))
    );
    // Replaying a delete is harmless.
    assert_eq!(
        send_event(
            &json!({"type":"user.deleted","data":{"id":"user_never","deleted":true}}).to_string()
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn webhook_secret_rules_by_mode() {
    let body = user_event("user.created", "user_mode", "m@example.com", None, None);
    // Production without a secret: 500, nothing written.
    let prod = TestServer::start(ServerOptions::production());
    let (s, b) = post_webhook(&prod, &body, &[]).await;
    assert_eq!(
        (s, b),
        (500, json!({"error": "Webhook secret is not configured"}))
    );
    drop(prod);
    // Development without a secret: unsigned webhooks are accepted; with
    // JWT verification configured, a bad Bearer is refused while no header
    // still acts as dev-user.
    let fake = FakeUpstream::start();
    fake.on("GET", "/jwks", |_| {
        FakeResponse::json(200, &json!({"keys": []}))
    });
    let dev =
        TestServer::start(ServerOptions::development().var("CLERK_JWKS_URL", &fake.url("/jwks")));
    assert_eq!(post_webhook(&dev, &body, &[]).await.0, 200);
    // Unsigned, a delivery with an id is still applied once; without one
    // nothing tells a replay apart, so every delivery is applied.
    let named = |first: &str| {
        user_event(
            "user.updated",
            "user_mode",
            "m@example.com",
            Some(first),
            None,
        )
    };
    let name = || dev.d1_rows("SELECT name FROM users WHERE id = 'user_mode'")[0]["name"].clone();
    let with_id = [("svix-id".to_string(), "msg_dev_1".to_string())];
    for (first, headers, stored) in [
        ("Ann", &with_id[..], "Ann"),
        ("Bea", &[][..], "Bea"),
        ("Ann", &with_id[..], "Bea"),
        ("Ann", &[][..], "Ann"),
    ] {
        let answer = post_webhook(&dev, &named(first), headers).await;
        assert_eq!(answer, (200, json!({"received": true})));
        assert_eq!(name(), stored, "after {first} with {headers:?}");
    }
    let api = Api::new(&dev);
    assert_eq!(api.get("/api/projects", None).await.0, 200);
    assert_eq!(api.get("/api/projects", Some("aaa.bbb.ccc")).await.0, 401);
    assert_eq!(api.get("/api/projects", Some("plainbearer")).await.0, 401);
}

/// protocol.md §8: deleting a user also ends what it gave others (shares it
/// made) and its own sockets on instances it reached only publicly.
#[tokio::test]
async fn a_deleted_user_takes_the_access_it_gave_with_it() {
    let w = world();
    let api = api();
    let owner = "user_del_owner";
    let middle = "user_del_middle";
    let reader = "user_del_reader";
    for id in [owner, middle, reader] {
        let event = user_event("user.created", id, &format!("{id}@example.com"), None, None);
        assert_eq!(send_event(&event).await.0, 200);
    }
    let jwt = |id: &str| w.old.sign(&claims(id));
    let (_, p) = api
        .post("/api/projects", Some(&jwt(owner)), json!({"name": "p"}))
        .await;
    let (project, main) = (
        p["id"].as_str().unwrap(),
        p["defaultInstanceId"].as_str().unwrap(),
    );
    let shares = format!("/api/projects/{project}/shares");
    let grant = |id: &str, permission: &str| json!({"targetType": "user", "targetId": id, "permission": permission});
    assert_eq!(
        api.post(&shares, Some(&jwt(owner)), grant(middle, "admin"))
            .await
            .0,
        201
    );
    // The middle user passes access on; the reader holds it only through that.
    assert_eq!(
        api.post(&shares, Some(&jwt(middle)), grant(reader, "write"))
            .await
            .0,
        201
    );
    let mut readers = WsClient::join(w.server, main, Some(&jwt(reader))).await.0;
    // A public instance the middle user connects to as anyone may.
    let (_, other) = api
        .post(
            &format!("/api/projects/{project}/instances"),
            Some(&jwt(owner)),
            json!({"name": "pub"}),
        )
        .await;
    let public = other["id"].as_str().unwrap();
    let public_shares = format!("/api/instances/{public}/shares");
    let body = json!({"targetType": "public", "permission": "read"});
    assert_eq!(
        api.post(&public_shares, Some(&jwt(owner)), body).await.0,
        201
    );
    let mut middles = WsClient::join(w.server, public, Some(&jwt(middle))).await.0;

    let deleted =
        json!({"type":"user.deleted","data":{"id": middle,"object":"user","deleted":true}});
    assert_eq!(send_event(&deleted.to_string()).await.0, 200);
    for ws in [&mut readers, &mut middles] {
        assert_eq!(ws.expect_closed().await.map(|c| c.0), Some(4003));
    }
}

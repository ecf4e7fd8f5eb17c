//! Structured logs (docs/operations.md) against a production-mode server
//! whose users sign in with JWTs the test signs: one JSON line per request
//! with its route template and who called (by id), one per WebSocket
//! session end, error lines with the detail the response hides, the
//! request id from `cf-ray` returned as `x-request-id` — and not one
//! credential anywhere in the server's output.

mod common;

use std::sync::OnceLock;

use common::api::{header, Api};
use common::clerk::SignedIn;
use common::server::{ServerOptions, TestServer};
use common::world::{make_key, World};
use common::ws::WsClient;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "admin-token-that-must-not-be-logged";

fn clerk() -> &'static SignedIn {
    static C: OnceLock<SignedIn> = OnceLock::new();
    C.get_or_init(|| SignedIn::start(ServerOptions::production().var("ADMIN_TOKEN", ADMIN_TOKEN)))
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| World::seed(clerk().server, "log"))
}

fn server() -> &'static TestServer {
    clerk().server
}

/// A request line of this request id (waiting for it to be written).
fn request_line(request_id: &str) -> Value {
    server().wait_for_log(&format!("for request {request_id}"), |l| {
        l["event"] == "request" && l["requestId"] == request_id
    })
}

/// Sends a GET with these headers; status, `x-request-id`, body.
async fn get(path: &str, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let mut req = reqwest::Client::new().get(server().local_url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let id = header(&resp, "x-request-id").expect("every response carries x-request-id");
    (status, id, resp.json().await.unwrap_or(Value::Null))
}

/// GETs `path` with this `Authorization`, expecting `status`; its log line.
async fn logged_get(path: &str, authorization: &str, status: u16) -> Value {
    let (got, id, _) = get(path, &[("Authorization", authorization)]).await;
    assert_eq!(got, status, "GET {path}");
    request_line(&id)
}

#[tokio::test]
async fn the_request_id_comes_from_cf_ray_and_is_returned() {
    let (status, id, _) = get("/health", &[("cf-ray", "8f1c2d3e4a5b6c7d-LHR")]).await;
    assert_eq!((status, id.as_str()), (200, "8f1c2d3e4a5b6c7d-LHR"));
    let line = request_line("8f1c2d3e4a5b6c7d-LHR");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/health");
    assert_eq!(line["status"], 200);
    assert_eq!(line["level"], "info");
    assert!(
        line["durationMs"].as_i64().is_some_and(|d| d >= 0),
        "{line}"
    );
    assert!(line["ts"].as_str().unwrap().ends_with('Z'), "{line}");
    assert!(line.get("userId").is_none(), "{line}");

    // Without cf-ray (as here under wrangler dev) the server makes one up,
    // different each time; unknown routes and preflights are logged too.
    let (status, a, _) = get("/no/such/route", &[]).await;
    assert_eq!(status, 404);
    let (_, b, _) = get("/no/such/route", &[]).await;
    assert_ne!(a, b);
    assert_eq!(a.len(), 16, "{a}");
    assert_eq!(request_line(&a)["route"], Value::Null);
    // A WebSocket upgrade returns it too.
    let upgrade = reqwest::Client::new()
        .get(server().local_url("/sync/upgraded"))
        .header("cf-ray", "ray-of-an-upgrade")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(upgrade.status(), 101);
    assert_eq!(upgrade.headers()["x-request-id"], "ray-of-an-upgrade");
    assert_eq!(
        request_line("ray-of-an-upgrade")["route"],
        "/sync/:instanceId"
    );
    drop(upgrade);
    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            server().local_url("/api/projects"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let id = preflight.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let line = request_line(&id);
    assert_eq!(
        (line["method"].as_str(), line["route"].as_str()),
        (Some("OPTIONS"), Some("/api/projects"))
    );
    assert_eq!(
        preflight.headers()["access-control-expose-headers"],
        "ETag, Content-Disposition, X-Request-Id"
    );
}

#[tokio::test]
async fn request_lines_name_the_caller_by_id_and_the_route_by_template() {
    let w = world();
    let jwt = clerk().jwt(&w.alice.id);
    let project = w.project(&w.alice, "logged").await;

    // A signed-in user.
    let bearer = format!("Bearer {jwt}");
    let line = logged_get(&format!("/api/projects/{}", project.id), &bearer, 200).await;
    assert_eq!(line["route"], "/api/projects/:id");
    assert_eq!(line["userId"], w.alice.id);
    assert!(
        line.get("keyId").is_none() && line.get("delegateId").is_none(),
        "{line}"
    );

    // An API key: its user and the key's id.
    let bearer = format!("Bearer {}", w.alice.key);
    let line = logged_get("/api/projects", &bearer, 200).await;
    assert_eq!(line["userId"], w.alice.id);
    assert_eq!(line["keyId"], format!("key-{}", w.alice.id));

    // A delegate: its creator and the delegate's id.
    let api = Api::new(server());
    let delegate = api.new_delegate(&jwt, json!({"can_read": true})).await;
    let secret = api.new_secret(&jwt, &delegate).await;
    let granted = api.grant(&jwt, &delegate, &project.main, "read").await;
    assert_eq!(granted, 200);
    let api_key = format!("ApiKey {delegate}:{secret}");
    let line = logged_get(&format!("/api/instances/{}", project.main), &api_key, 200).await;
    assert_eq!(line["route"], "/api/instances/:id");
    assert_eq!(line["delegateId"], delegate);
    assert_eq!(line["userId"], w.alice.id);

    // A refused credential: a 401 and nobody.
    let wrong = make_key("nobody-at-all");
    let line = logged_get("/api/projects", &format!("Bearer {wrong}"), 401).await;
    assert_eq!(line["status"], 401);
    assert!(line.get("userId").is_none(), "{line}");

    // The admin route, with its token.
    let (_, grants) = api
        .get(&format!("/api/delegates/{delegate}/grants"), Some(&jwt))
        .await;
    let object_id = grants["grants"][0]["do_id"].as_str().unwrap().to_string();
    let (status, id, _) = get(
        &format!("/admin/do/{object_id}/storage"),
        &[("X-Admin-Token", ADMIN_TOKEN)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(request_line(&id)["route"], "/admin/do/:objectId/storage");

    assert_no_credentials(&[&jwt, &w.alice.key, &secret, &wrong, ADMIN_TOKEN]);
}

#[tokio::test]
async fn a_websocket_session_ends_with_one_line() {
    let w = world();
    let project = w.project(&w.bob, "sockets").await;
    let (status, body) = Api::new(server())
        .post(
            "/api/ws-token",
            w.bob.auth(),
            json!({"instanceId": project.main}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();

    let mut ws =
        WsClient::connect_to(server(), &format!("{}?token={token}", project.main), None).await;
    ws.handshake().await; // auth_success, sync
    ws.send(&json!({"type": "set", "key": "k", "value": 1, "id": 1}))
        .await;
    ws.recv_type("key_updated").await;
    ws.recv_type("ack").await;
    ws.send(&json!({"type": "nonsense"})).await;
    ws.recv_type("error").await;
    assert_eq!(ws.close(4000, "done").await.map(|f| f.0), Some(4000));

    let line = server().wait_for_log("for the session", |l| {
        l["event"] == "websocket" && l["instanceId"] == project.main.as_str()
    });
    assert_eq!(line["closeCode"], 4000);
    assert_eq!(line["framesIn"], 2, "{line}");
    assert_eq!(
        line["framesOut"], 6,
        "auth_success, sync, the binary Step1 (yjs.md), key_updated, ack, error: {line}"
    );
    assert!(
        line["durationMs"].as_i64().is_some_and(|d| d >= 0),
        "{line}"
    );
    assert_eq!(line["userId"], w.bob.id);
    assert_eq!(
        line["keyId"],
        format!("key-{}", w.bob.id),
        "the token's credential"
    );
    assert!(line.get("partial").is_none(), "{line}");
    // The upgrade itself is a request line with the route template.
    server().wait_for_log("for the upgrade", |l| {
        l["event"] == "request" && l["route"] == "/sync/:instanceId" && l["status"] == 101
    });
    assert_no_credentials(&[&token, &w.bob.key]);
}

#[tokio::test]
async fn an_internal_error_is_logged_with_its_detail_and_hidden_from_the_response() {
    let w = world();
    // A row no route would write: its read-only flag is not a number.
    let carol = &w.carol.id;
    server().d1_execute(&format!(
        "INSERT INTO projects (id, owner_id, name, created_at, updated_at) VALUES ('broken-project', '{carol}', 'p', 0, 0);
         INSERT INTO instances (id, project_id, owner_id, name, is_readonly, created_at, updated_at)
           VALUES ('broken-instance', 'broken-project', '{carol}', 'b', 'not-a-number', 0, 0);"
    ));
    let (status, id, body) = get(
        "/api/instances/broken-instance",
        &[("Authorization", &format!("Bearer {}", w.carol.key))],
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(body, json!({"error": "Internal server error"}));

    let error = server().wait_for_log("with the internal detail", |l| {
        l["event"] == "error" && l["requestId"] == id.as_str()
    });
    assert_eq!(error["level"], "error");
    assert_eq!(error["route"], "/api/instances/:id");
    let detail = error["message"].as_str().unwrap();
    assert!(
        !detail.is_empty() && detail != "Internal server error",
        "{error}"
    );
    let line = request_line(&id);
    assert_eq!(
        (line["status"].as_u64(), line["level"].as_str()),
        (Some(500), Some("error"))
    );
    assert_no_credentials(&[&w.carol.key]);
}

/// None of these values appears anywhere in the server's output (its own
/// lines, wrangler's and the runtime's).
fn assert_no_credentials(secrets: &[&str]) {
    let text = server().log_text();
    assert!(!text.is_empty());
    for secret in secrets {
        assert!(!secret.is_empty());
        if let Some(at) = text.find(secret) {
            let line = text[..at].lines().count();
            panic!("a credential appears in the server's output, line {line}");
        }
    }
    // Every structured line is JSON with the fields its kind promises.
    for line in server().log_lines() {
        assert!(
            line["ts"].is_string() && line["level"].is_string(),
            "{line}"
        );
        match line["event"].as_str().unwrap() {
            "request" => {
                for field in ["requestId", "method", "route", "status", "durationMs"] {
                    assert!(line.get(field).is_some(), "{field} in {line}");
                }
            }
            "websocket" => {
                for field in [
                    "instanceId",
                    "durationMs",
                    "framesIn",
                    "framesOut",
                    "closeCode",
                ] {
                    assert!(line.get(field).is_some(), "{field} in {line}");
                }
            }
            "error" | "warn" => assert!(line["message"].is_string(), "{line}"),
            other => panic!("unknown event {other}: {line}"),
        }
    }
}

//! Outbound webhooks and usage (webhooks-out.md) against a real `wrangler
//! dev`: receivers served here on 127.0.0.1 (development mode allows
//! loopback targets), signatures checked with the `svix` npm package.

mod common;

use std::sync::OnceLock;

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::api::{usage_bucket, Api};
use common::fake::{FakeResponse, FakeUpstream, RecordedRequest};
use common::scripted::{completion, delta, script, sse, tag, with_upstreams};
use common::server::{prod_server, shared, ServerOptions, TestServer};
use common::world::World;
use common::ws::WsClient;
use serde_json::{json, Value};

/// Retries every 5 ms instead of 5 s (development only; docs/webhooks.md).
fn options() -> ServerOptions {
    with_upstreams(ServerOptions::development().var("WEBHOOK_BACKOFF_SCALE", "0.001"))
}

fn server() -> &'static TestServer {
    shared(options())
}

/// How the receiver answers: these statuses in order (200 once they run
/// out), each after `delay`.
#[derive(Default)]
struct Answers {
    statuses: VecDeque<u16>,
    delay: Duration,
}

/// A webhook receiver: a fake server that records every delivery to
/// `/hook` and answers as scripted.
#[derive(Clone)]
struct Receiver {
    fake: FakeUpstream,
    answers: Arc<Mutex<Answers>>,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::start_on(0)
    }

    fn start_on(port: u16) -> Receiver {
        let fake = FakeUpstream::start_on(port);
        let answers = Arc::new(Mutex::new(Answers::default()));
        let script = answers.clone();
        fake.on("POST", "/hook", move |_| {
            let mut answers = script.lock().unwrap();
            let status = answers.statuses.pop_front().unwrap_or(200);
            FakeResponse::empty(status).after(answers.delay)
        });
        Receiver { fake, answers }
    }

    fn url(&self) -> String {
        self.fake.url("/hook")
    }

    fn answer(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().statuses = statuses.iter().copied().collect();
    }

    fn slow(&self, delay: Duration) {
        self.answers.lock().unwrap().delay = delay;
    }

    fn received(&self) -> Vec<RecordedRequest> {
        self.fake.requests_to("/hook")
    }

    /// Waits until at least `n` requests arrived (at most `secs`).
    async fn wait_for(&self, n: usize, secs: u64) -> Vec<RecordedRequest> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} requests, expected {n}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Verifies every delivery with the `svix` npm package's `Webhook.verify`,
/// as a receiver would; fails the test with what it said if one fails.
fn svix_verify(secret: &str, got: &[RecordedRequest]) {
    let items: Vec<Value> = got
        .iter()
        .map(|g| json!({"headers": g.headers, "body": String::from_utf8_lossy(&g.body)}))
        .collect();
    let script = r#"
        const { Webhook } = require('svix');
        let input = '';
        process.stdin.on('data', d => input += d);
        process.stdin.on('end', () => {
          const { secret, items } = JSON.parse(input);
          const wh = new Webhook(secret);
          for (const item of items) {
            const payload = wh.verify(item.body, item.headers);
            if (payload.id !== item.headers['webhook-id']) throw new Error('id mismatch');
          }
          process.stdout.write('verified ' + items.length);
        });
    "#;
    let input = json!({"secret": secret, "items": items}).to_string();
    let out = common::node::run(&["-e", script], &input, "svix refused a delivery");
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("verified {}", got.len())
    );
}

/// A world seeded on `s`, a client of the server, and the main instance of
/// a new project of Alice's.
/// The world is seeded once per server: writing to local D1 from the
/// command line while the server runs can make its D1 fail a request.
async fn seeded(s: &'static TestServer, prefix: &str) -> (&'static World, Api<'static>, String) {
    static DEV: OnceLock<World> = OnceLock::new();
    static PROD: OnceLock<World> = OnceLock::new();
    let once = if std::ptr::eq(s, server()) {
        &DEV
    } else {
        &PROD
    };
    let w = once.get_or_init(|| World::seed(s, prefix));
    let project = w.project(&w.alice, &common::unique_id("hooks")).await;
    (w, Api::new(s), project.main)
}

/// `POST /api/instances/:id/webhooks` as `key`.
async fn post_hook(api: &Api<'_>, key: Option<&str>, instance: &str, body: Value) -> (u16, Value) {
    api.post(&format!("/api/instances/{instance}/webhooks"), key, body)
        .await
}

/// A new webhook, as its creation answered it.
async fn create_hook(api: &Api<'_>, key: Option<&str>, instance: &str, body: Value) -> Value {
    let (status, hook) = post_hook(api, key, instance, body).await;
    assert_eq!(status, 201, "{hook}");
    hook
}

async fn set(ws: &mut WsClient, key: &str, value: Value) {
    ws.send(&json!({"type": "set", "key": key, "value": value}))
        .await;
    ws.recv_type("key_updated").await;
}

#[tokio::test]
async fn changes_arrive_signed_and_in_order() {
    let (w, api, inst) = seeded(server(), "hk1").await;
    let alice = w.alice.auth();
    let rx = Receiver::start();
    let hook = create_hook(&api, alice, &inst, json!({"url": rx.url()})).await;
    let secret = hook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(
        hook["events"],
        json!(["key.updated", "key.deleted", "instance.cleared"])
    );
    assert_eq!(hook["is_active"], true);

    let mut ws = w.join(&inst, w.alice.key.as_str()).await;
    set(&mut ws, "greeting", json!({"text": "hi"})).await;
    ws.send(&json!({"type": "delete", "key": "greeting"})).await;
    ws.recv_type("key_deleted").await;
    ws.send(&json!({"type": "clear"})).await;
    ws.recv_type("cleared").await;

    let got = rx.wait_for(3, 30).await;
    let bodies: Vec<Value> = got.iter().map(RecordedRequest::json).collect();
    assert_eq!(bodies[0]["type"], "key.updated");
    assert_eq!(bodies[0]["instanceId"], inst);
    assert_eq!(bodies[0]["data"]["key"], "greeting");
    assert_eq!(bodies[0]["data"]["value"], json!({"text": "hi"}));
    assert_eq!(bodies[0]["data"]["updatedBy"], w.alice.id);
    assert!(bodies[0]["data"]["updatedAt"].is_i64());
    assert_eq!(bodies[0]["id"], got[0].headers["webhook-id"].as_str());
    assert_eq!(bodies[1]["type"], "key.deleted");
    assert_eq!(
        bodies[1]["data"],
        json!({"key": "greeting", "updatedBy": w.alice.id})
    );
    assert_eq!(bodies[2]["type"], "instance.cleared");
    svix_verify(secret, &got);

    // The test send is signed the same way and not logged.
    let id = hook["id"].as_str().unwrap();
    let (status, tested) = api
        .post(&format!("/api/webhooks/{id}/test"), alice, json!({}))
        .await;
    assert_eq!(
        (status, tested),
        (200, json!({"status_code": 200, "ok": true}))
    );
    let got = rx.wait_for(4, 10).await;
    assert_eq!(got[3].json()["type"], "webhook.test");
    svix_verify(secret, &got[3..]);
    let (status, log) = api
        .get(&format!("/api/webhooks/{id}/deliveries"), alice)
        .await;
    assert_eq!(status, 200, "{log}");
    let log = log["deliveries"].as_array().unwrap().clone();
    assert_eq!(log.len(), 3);
    assert!(log
        .iter()
        .all(|d| d["status"] == "delivered" && d["attempts"] == 1));
    assert_eq!(log[0]["event"], "instance.cleared");

    // D1 knows how the last attempt went.
    let (_, list) = api
        .get(&format!("/api/instances/{inst}/webhooks"), alice)
        .await;
    assert_eq!(list["webhooks"][0]["last_status"], 200);
    assert!(list["webhooks"][0]["last_triggered_at"].is_i64());
    assert!(list["webhooks"][0].get("secret").is_none());

    // A deleted webhook gets nothing more.
    let (status, _) = api.delete(&format!("/api/webhooks/{id}"), alice).await;
    assert_eq!(status, 200);
    set(&mut ws, "after", json!(1)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.received().len(), 4);
}

#[tokio::test]
async fn failures_are_retried_and_logged() {
    let (w, api, inst) = seeded(server(), "hk2").await;
    let alice = w.alice.auth();
    let rx = Receiver::start();
    rx.answer(&[500, 500]);
    let hook = create_hook(
        &api,
        alice,
        &inst,
        json!({"url": rx.url(), "events": ["key.updated"], "keyPrefix": "a/"}),
    )
    .await;
    let mut ws = w.join(&inst, w.alice.key.as_str()).await;
    set(&mut ws, "b/ignored", json!(0)).await;
    set(&mut ws, "a/one", json!(1)).await;
    let got = rx.wait_for(3, 30).await;
    assert_eq!(got.len(), 3);
    let ids: Vec<&str> = got
        .iter()
        .map(|g| g.headers["webhook-id"].as_str())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one delivery, three attempts"
    );
    assert_eq!(got[2].json()["data"]["key"], "a/one");
    svix_verify(hook["secret"].as_str().unwrap(), &got);
    let id = hook["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, log) = api
            .get(&format!("/api/webhooks/{id}/deliveries?limit=5"), alice)
            .await;
        let d = &log["deliveries"][0];
        if d["status"] == "delivered" {
            assert_eq!(d["attempts"], 3);
            assert_eq!(d["last_status_code"], 200);
            assert_eq!(log["deliveries"].as_array().unwrap().len(), 1);
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = api
        .get(&format!("/api/webhooks/{id}/deliveries?limit=101"), alice)
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_hot_key_coalesces_to_its_latest_value() {
    let (w, api, inst) = seeded(server(), "hk3").await;
    let rx = Receiver::start();
    rx.slow(Duration::from_millis(300));
    create_hook(&api, w.alice.auth(), &inst, json!({"url": rx.url()})).await;
    let mut ws = w.join(&inst, w.alice.key.as_str()).await;
    for i in 0..1000 {
        ws.send(&json!({"type": "set", "key": "hot", "value": i}))
            .await;
    }
    let mut seen = 0;
    while seen < 1000 {
        if ws.recv().await["type"] == "key_updated" {
            seen += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = rx.received();
        if got.last().is_some_and(|g| g.json()["data"]["value"] == 999) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let got = rx.received();
            assert!(got.len() < 50, "{} deliveries for 1000 sets", got.len());
            assert_eq!(got.last().unwrap().json()["data"]["value"], 999);
            break;
        }
        assert!(Instant::now() < deadline, "latest value never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn deliveries_survive_a_restart_while_the_receiver_is_down() {
    // A server of its own: it is restarted.
    let mut s = TestServer::start(options());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let api = Api::new(&s);
    let (status, p) = api
        .post("/api/projects", None, json!({"name": "restart"}))
        .await;
    assert_eq!(status, 201, "{p}");
    let inst = p["defaultInstanceId"].as_str().unwrap().to_string();
    let hook = create_hook(&api, None, &inst, json!({"url": url})).await;
    let secret = hook["secret"].as_str().unwrap().to_string();
    let mut ws = WsClient::connect_to(&s, &inst, None).await;
    ws.handshake().await;
    for i in 0..3 {
        set(&mut ws, &format!("k{i}"), json!(i)).await;
    }
    drop(ws);
    drop(api);
    // Nobody listens: every attempt fails while the server restarts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.restart();
    let rx = Receiver::start_on(port);
    let got = rx.wait_for(3, 60).await;
    let keys: Vec<Value> = got
        .iter()
        .map(|g| g.json()["data"]["key"].clone())
        .collect();
    assert_eq!(keys, [json!("k0"), json!("k1"), json!("k2")]);
    svix_verify(&secret, &got);
}

#[tokio::test]
async fn who_may_manage_webhooks_and_which_urls() {
    let (w, api, inst) = seeded(server(), "hk5").await;
    let alice = w.alice.auth();
    let rx = Receiver::start();
    let path = format!("/api/instances/{inst}/webhooks");
    // Another user cannot see the instance at all.
    let (status, body) = api
        .post(&path, w.bob.auth(), json!({"url": rx.url()}))
        .await;
    assert_eq!(
        (status, body),
        (404, json!({"error": "Instance not found"}))
    );
    // A writer is not an admin.
    w.share(
        &w.alice,
        &format!("/api/instances/{inst}/shares"),
        common::world::grant("user", &w.bob.id, "write"),
    )
    .await;
    let (status, body) = api.get(&path, w.bob.auth()).await;
    assert_eq!(status, 403, "{body}");
    // Bad input names what is wrong.
    for (body, message) in [
        (json!({}), "url is required"),
        (
            json!({"url": "ftp://x.example/"}),
            "url must use https, not ftp",
        ),
        (
            json!({"url": "https://10.0.0.1/"}),
            "url must not point at a private or reserved address",
        ),
        (
            json!({"url": rx.url(), "events": []}),
            "events must not be empty",
        ),
    ] {
        let (status, answer) = api.post(&path, alice, body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(message),
            "{answer}"
        );
    }
    // At most ten.
    let mut ids = Vec::new();
    for _ in 0..10 {
        let hook = create_hook(
            &api,
            alice,
            &inst,
            json!({"url": rx.url(), "events": ["key.deleted"]}),
        )
        .await;
        ids.push(hook["id"].as_str().unwrap().to_string());
    }
    let (status, body) = api.post(&path, alice, json!({"url": rx.url()})).await;
    assert_eq!(status, 409, "{body}");
    // Bob (write) may not change or read another's webhook; a stranger sees nothing.
    let one = format!("/api/webhooks/{}", ids[0]);
    let (status, _) = api
        .patch(&one, w.bob.auth(), json!({"is_active": false}))
        .await;
    assert_eq!(status, 403);
    let (status, body) = api.delete(&one, w.carol.auth()).await;
    assert_eq!((status, body), (404, json!({"error": "Webhook not found"})));
    let (status, body) = api.patch(&one, alice, json!({})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api.patch(&one, alice, json!({"is_active": false})).await;
    assert_eq!((status, body["is_active"].clone()), (200, json!(false)));
}

#[tokio::test]
async fn delegates_are_refused() {
    let (_, api, inst) = seeded(server(), "hk6").await;
    let (status, d) = api
        .post(
            "/api/delegates",
            None,
            json!({"name": "agent", "keyPermissions": {"can_read": true, "can_write": true}}),
        )
        .await;
    assert_eq!(status, 201, "{d}");
    let did = d["delegate_id"].as_str().unwrap();
    let (_, sec) = api
        .post(&format!("/api/delegates/{did}/secrets"), None, json!({}))
        .await;
    let cred = format!("ApiKey {did}:{}", sec["delegateSecret"].as_str().unwrap());
    let (status, body) = api
        .get(&format!("/api/instances/{inst}/webhooks"), Some(&cred))
        .await;
    assert_eq!(
        (status, body),
        (403, json!({"error": "Delegates cannot read webhooks"}))
    );
    let (status, body) = api.get("/api/usage", Some(&cred)).await;
    assert_eq!(
        (status, body),
        (403, json!({"error": "Delegates cannot read usage"}))
    );
}

#[tokio::test]
async fn production_refuses_loopback_and_private_targets() {
    let (w, api, inst) = seeded(prod_server(), "hk7").await;
    for url in [
        "http://example.com/hook",
        "https://localhost/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://192.168.1.10/hook",
        "https://169.254.169.254/latest",
    ] {
        let (status, body) = post_hook(&api, w.alice.auth(), &inst, json!({"url": url})).await;
        assert_eq!(status, 400, "{url}: {body}");
    }
}

#[tokio::test]
async fn usage_rows_for_ai_calls_and_grouping() {
    let (w, api, inst) = seeded(server(), "hk8").await;
    let t = tag();
    script(&t, vec![completion("Short.")]);
    let (status, body) = api
        .post(
            "/api/transform",
            w.alice.auth(),
            json!({"instanceId": inst, "template": format!("{t} summarise"), "outputKey": "summary"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = w.server.d1_rows(&format!(
        "SELECT endpoint, instance_id, model, api_key_id FROM usage_logs WHERE user_id = '{}' AND instance_id = '{inst}'",
        w.alice.id
    ));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["endpoint"], "/api/transform");
    assert_eq!(rows[0]["instance_id"], inst);
    assert!(rows[0]["model"].is_string(), "{rows:?}");
    // Usage is for signed-in users: the API key is refused, dev-user reads its own.
    let (status, _) = api.get("/api/usage", w.alice.auth()).await;
    assert_eq!(status, 403);
    let (status, body) = api.get("/api/usage?groupBy=nope", None).await;
    assert_eq!(status, 400, "{body}");
    // Rows for the signed-in dev-user, grouped.
    let dev_project = api
        .post("/api/projects", None, json!({"name": "usage"}))
        .await
        .1;
    let dev_inst = dev_project["defaultInstanceId"].as_str().unwrap();
    for _ in 0..2 {
        let t = tag();
        script(&t, vec![completion("Short.")]);
        let (status, body) = api
            .post(
                "/api/transform",
                None,
                json!({"instanceId": dev_inst, "template": format!("{t} x"), "outputKey": "o"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = api.get("/api/usage?groupBy=endpoint", None).await;
    assert_eq!(status, 200, "{body}");
    let transform = usage_bucket(&body, "/api/transform").unwrap_or_else(|| panic!("{body}"));
    assert!(transform["count"].as_i64().unwrap() >= 2, "{body}");
    let (_, body) = api.get("/api/usage?groupBy=instance", None).await;
    assert!(
        usage_bucket(&body, dev_inst).is_some_and(|b| b["count"] == 2),
        "{body}"
    );
    let (_, body) = api.get("/api/usage", None).await;
    assert!(
        body["usage"][0]["bucket"].as_str().unwrap().len() == 10,
        "{body}"
    );
    // A chat's row carries the tokens the stream's last chunk reported.
    let t = tag();
    let used = json!({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}});
    let stream = vec![
        delta(json!({"role": "assistant", "content": "Hi"}), None),
        delta(json!({}), Some("stop")),
        used,
    ];
    script(&t, vec![sse(stream, Duration::from_millis(10))]);
    let hi = json!({"instanceId": dev_inst, "messages": [
        {"id": "m1", "role": "user", "parts": [{"type": "text", "text": format!("{t} hi")}]}]});
    let (status, answer) = api.post("/api/chat", None, hi).await;
    assert_eq!(status, 200, "{answer}");
    let (_, body) = api.get("/api/usage?groupBy=endpoint", None).await;
    let chat = usage_bucket(&body, "/api/chat").unwrap_or_else(|| panic!("{body}"));
    assert_eq!(
        (
            chat["count"].clone(),
            chat["tokens_in"].clone(),
            chat["tokens_out"].clone()
        ),
        (json!(1), json!(11), json!(7)),
        "{body}"
    );
}

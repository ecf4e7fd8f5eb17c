//! The Worker's edge against the real runtime: health in both modes, CORS,
//! JSON errors, the development-mode safety net, a restart on the same
//! state, and the production dry-run deploy.

mod common;

use common::fake::{FakeResponse, FakeUpstream};
use common::server::{dev_server, prod_server, run_wrangler, ServerOptions, TestServer};
use serde_json::{json, Value};

fn assert_cors(resp: &reqwest::Response) {
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    );
    assert_eq!(
        h["access-control-allow-headers"],
        "Content-Type, Authorization"
    );
}

#[tokio::test]
async fn health_in_development() {
    let resp = reqwest::get(dev_server().local_url("/health"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_cors(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok", "environment": "development"}));
}

#[tokio::test]
async fn health_in_production() {
    let resp = reqwest::get(prod_server().local_url("/health"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok", "environment": "production"}));
}

#[tokio::test]
async fn development_mode_only_on_loopback_hosts() {
    // The same development server, addressed by a public host name, must
    // behave as production (auth.md, safety net).
    let resp = reqwest::Client::new()
        .get(dev_server().url("/health"))
        .header("Host", "mindcache.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["environment"], "production");
}

#[tokio::test]
async fn unknown_route_is_a_json_404_with_cors() {
    let resp = reqwest::get(dev_server().local_url("/no/such/route"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_cors(&resp);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn options_is_204_with_cors_on_any_path() {
    let client = reqwest::Client::new();
    for path in ["/health", "/api/projects", "/whatever"] {
        let resp = client
            .request(reqwest::Method::OPTIONS, dev_server().local_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{path}");
        assert_cors(&resp);
        assert!(resp.bytes().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn wrong_method_on_a_known_path_is_405() {
    let resp = reqwest::Client::new()
        .post(dev_server().local_url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_cors(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "Method not allowed");
}

#[tokio::test]
async fn restarted_server_on_the_same_state_is_healthy() {
    let mut server = TestServer::start(ServerOptions::development());
    let before = reqwest::get(server.local_url("/health")).await.unwrap();
    assert_eq!(before.status(), 200);
    server.restart();
    let after = reqwest::get(server.local_url("/health")).await.unwrap();
    assert_eq!(after.status(), 200);
    let body: Value = after.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[test]
fn production_dry_run_deploy_succeeds() {
    let out = tempfile::tempdir().unwrap();
    let stdout = run_wrangler(&[
        "deploy",
        "--dry-run",
        "--env",
        "production",
        "--outdir",
        out.path().to_str().unwrap(),
    ]);
    assert!(stdout.contains("--dry-run: exiting now"), "{stdout}");
    assert!(out.path().join("index.js").exists());
}

#[tokio::test]
async fn fake_upstream_serves_and_records() {
    let fake = FakeUpstream::start();
    fake.on("POST", "/v1/echo", |req| {
        FakeResponse::json(201, &json!({"got": req.json()}))
    });
    let resp = reqwest::Client::new()
        .post(fake.url("/v1/echo"))
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"got": {"a": 1}})
    );
    assert_eq!(fake.requests_to("/v1/echo").len(), 1);
    let missing = reqwest::get(fake.url("/nope")).await.unwrap();
    assert_eq!(missing.status(), 404);
}

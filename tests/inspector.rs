//! The inspector page (`GET /inspect/:instanceId`) in a real browser:
//! headless Chromium (Debian's, driven by playwright-core through
//! tests/browser/driver.mjs) opens the page, which connects over the
//! server's own protocol. A key written by another client shows up within
//! a second; the page's own set and delete reach other clients; a
//! read-only ws-token gets no controls; the page's Content-Security-Policy
//! refuses nothing of its own. A screenshot goes to the cargo target
//! directory (`inspector.png`).

mod common;

use std::time::{Duration, Instant};

use common::browser::{output_dir, Browser};
use common::server::{dev_server, prod_server};
use common::unique_id;
use common::world::{Rows, User};
use common::ws::WsClient;
use serde_json::json;

/// The row of `key` in the page's table (keys in these tests need no
/// escaping in a CSS attribute selector).
fn row(key: &str, cell: &str) -> String {
    format!("tr[data-key=\"{key}\"] td.{cell}")
}

#[tokio::test]
async fn the_page_shows_keys_live_and_writes_through_the_protocol() {
    let server = dev_server();
    let instance = unique_id("inspect");
    let (mut writer, _) = WsClient::join(server, &instance, None).await;
    writer
        .send(&json!({"type": "set", "key": "before", "value": {"n": 1},
            "attributes": {"type": "json", "tags": ["seed"], "readonly": true}}))
        .await;
    writer.recv_type("key_updated").await;

    let mut browser = Browser::launch();
    let status = browser.open(&server.local_url(&format!("/inspect/{instance}")));
    assert_eq!(status, 200);
    browser.wait_for("body[data-state=\"live\"]", 10_000);
    assert!(browser.text("#who").contains("dev-user (admin)"));
    // What was there before the page opened, from `sync`.
    assert!(browser.text(&row("before", "value")).contains("\"n\": 1"));
    assert_eq!(browser.text(&row("before", "type")), "json");
    assert_eq!(browser.text(&row("before", "tags")), "seed");
    assert_eq!(browser.text(&row("before", "flags")), "readonly");

    // A key written over a WebSocket shows within a second.
    let written = Instant::now();
    writer
        .send(
            &json!({"type": "set", "key": "greeting", "value": "hello from the test",
            "attributes": {"type": "text", "tags": ["live", "demo"]}, "id": "w1"}),
        )
        .await;
    let waited = browser.wait_for_text(&row("greeting", "value"), "hello from the test", 1_000);
    let shown_after = written.elapsed();
    assert!(
        shown_after < Duration::from_secs(1),
        "shown after {shown_after:?} (the page waited {waited} ms)"
    );
    assert_eq!(browser.text(&row("greeting", "updated-by")), "dev-user");
    assert_eq!(browser.text(&row("greeting", "tags")), "livedemo");
    assert_eq!(next_of(&mut writer, "key_updated").await["key"], "greeting");

    // The page sets a key; the other client sees it, by the page's user.
    browser.fill("#set-key", "from-page");
    browser.fill("#set-value", "{\"typed\": true}");
    browser.run(json!({"cmd": "check", "selector": "#set-json", "value": true}));
    browser.run(json!({"cmd": "select", "selector": "#set-type", "value": "json"}));
    browser.fill("#set-tags", "a, b");
    browser.click("#set-button");
    let update = next_of(&mut writer, "key_updated").await;
    assert_eq!(update["key"], "from-page");
    assert_eq!(update["value"], json!({"typed": true}));
    assert_eq!(update["attributes"]["type"], "json");
    assert_eq!(update["attributes"]["tags"], json!(["a", "b"]));
    assert_eq!(update["updatedBy"], "dev-user");
    browser.wait_for_text("#result", "set \"from-page\": done", 2_000);

    // Editing keeps the attributes the form does not show.
    browser.click("tr[data-key=\"before\"] button.edit");
    browser.fill("#set-value", "{\"n\": 2}");
    browser.click("#set-button");
    let update = next_of(&mut writer, "key_updated").await;
    assert_eq!(
        (update["key"].as_str(), update["value"].clone()),
        (Some("before"), json!({"n": 2}))
    );
    assert_eq!(update["attributes"]["readonly"], true);
    assert_eq!(update["attributes"]["tags"], json!(["seed"]));

    browser.screenshot(&output_dir().join("inspector.png"));

    // The page deletes a key; the other client sees it go.
    browser.click("tr[data-key=\"greeting\"] button.delete");
    let deleted = next_of(&mut writer, "key_deleted").await;
    assert_eq!(deleted["key"], "greeting");
    assert_eq!(deleted["deletedBy"], "dev-user");
    browser.wait_for_text("#result", "delete \"greeting\": done", 2_000);
    assert_eq!(browser.count("tr[data-key=\"greeting\"]"), 0);

    // Nothing of the page was refused by its own policy, nothing failed.
    let problems = browser.problems();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The next message of type `kind` (others, such as acks, skipped).
async fn next_of(ws: &mut WsClient, kind: &str) -> serde_json::Value {
    loop {
        let m = ws.recv().await;
        if m["type"] == kind {
            return m;
        }
    }
}

#[tokio::test]
async fn in_production_the_page_needs_a_ws_token_and_honours_its_permission() {
    let server = prod_server();
    let owner = User::new(&unique_id("inspect-owner"));
    let (project, instance, other) = (unique_id("p"), unique_id("i"), unique_id("i"));
    let (read_token, used_token, foreign_token) = (
        unique_id("read-token"),
        unique_id("used"),
        unique_id("foreign"),
    );
    let expires = common::jwt::now() + 300;
    Rows::default()
        .user(&owner)
        .project(&owner.id, &project, "p")
        .instance(&owner.id, &project, &instance, "inspected")
        .instance(&owner.id, &project, &other, "other")
        .ws_token(&read_token, &owner.id, &instance, "read", expires)
        .ws_token(&foreign_token, &owner.id, &other, "read", expires)
        .ws_token(
            &used_token,
            &owner.id,
            &instance,
            "read",
            common::jwt::now() - 1,
        )
        .write(server);
    let (mut writer, _) = WsClient::join(server, &instance, Some(&owner.key)).await;
    writer
        .send(&json!({"type": "set", "key": "visible-to-readers", "value": "yes"}))
        .await;
    writer.recv_type("key_updated").await;

    // Without a valid token for this instance there is no page.
    let page = |query: String| {
        let url = server.local_url(&format!("/inspect/{instance}{query}"));
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(page(String::new()).await, 401);
    assert_eq!(page("?token=nonsense".into()).await, 401);
    assert_eq!(page(format!("?token={used_token}")).await, 401, "expired");
    assert_eq!(page(format!("?token={foreign_token}")).await, 403);

    let mut browser = Browser::launch();
    let status =
        browser.open(&server.local_url(&format!("/inspect/{instance}?token={read_token}")));
    assert_eq!(status, 200);
    browser.wait_for("body[data-state=\"live\"]", 10_000);
    assert!(browser
        .text(&row("visible-to-readers", "value"))
        .contains("yes"));
    assert!(browser.text("#who").contains("read-only"));
    assert!(!browser.visible("#editor"), "a reader gets no set form");
    assert_eq!(browser.count("button.delete"), 0, "nor delete buttons");
    // The one-time token leaves the address bar once read.
    assert!(!browser.url().contains(&read_token));

    // Live updates reach readers too.
    writer
        .send(&json!({"type": "set", "key": "later", "value": "still live"}))
        .await;
    browser.wait_for_text(&row("later", "value"), "still live", 1_000);
    assert_eq!(browser.text(&row("later", "updated-by")), owner.id);

    // Its socket used the token up: the same link cannot open a second one.
    assert_eq!(page(format!("?token={read_token}")).await, 401);
    let problems = browser.problems();
    assert!(problems.is_empty(), "{problems:#?}");
}

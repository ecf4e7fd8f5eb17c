//! HTTP helpers for REST tests: calls with a credential, answering
//! (status, JSON body).

use serde_json::Value;

use super::server::TestServer;

pub struct Api<'a> {
    pub server: &'a TestServer,
    client: reqwest::Client,
}

/// Whether the array `field` of a list answer holds an item with this `id`.
pub fn lists(body: &Value, field: &str, id: &str) -> bool {
    body[field]
        .as_array()
        .unwrap()
        .iter()
        .any(|item| item["id"] == id)
}

/// The `id` of every item of a list answer's `field`, in order.
pub fn ids<'a>(body: &'a Value, field: &str) -> Vec<&'a str> {
    body[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect()
}

/// The bucket named `name` in a `GET /api/usage` answer, if it lists one.
pub fn usage_bucket<'a>(usage: &'a Value, name: &str) -> Option<&'a Value> {
    usage["usage"]
        .as_array()?
        .iter()
        .find(|b| b["bucket"] == name)
}

/// The `Authorization` value for a credential: a bare API key or JWT is
/// sent as `Bearer`; a value that already names its scheme (`ApiKey id:secret`)
/// as it is.
pub fn authorization(key: &str) -> String {
    if key.contains(' ') {
        key.to_string()
    } else {
        format!("Bearer {key}")
    }
}

/// A response header's value as text, when it has that header.
pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    let value = resp.headers().get(name)?;
    Some(value.to_str().expect("a text header").to_string())
}

/// Asserts that an answer is the refusal `status` with `{"error": error}`.
pub fn assert_refusal(answer: (u16, Value), status: u16, error: &str) {
    assert_eq!(answer, (status, serde_json::json!({ "error": error })));
}

/// Sends a request; its status and body (JSON when it parses).
pub async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

impl<'a> Api<'a> {
    pub fn new(server: &'a TestServer) -> Self {
        // No pooled keep-alive connections: the local proxy may close an
        // idle one just as a request is sent on it (IncompleteMessage).
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("http client");
        Api { server, client }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, self.server.local_url(path));
        if let Some(key) = key {
            req = req.header("Authorization", authorization(key));
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        answer(req).await
    }

    /// POSTs `body` as raw text (an empty body, say); status and JSON body.
    pub async fn post_text(&self, path: &str, key: Option<&str>, body: String) -> (u16, Value) {
        let mut req = self.client.post(self.server.local_url(path)).body(body);
        if let Some(key) = key {
            req = req.header("Authorization", authorization(key));
        }
        answer(req).await
    }

    /// POSTs `body` as it is (not necessarily JSON), with `content_type`
    /// when given; the status.
    pub async fn post_raw(
        &self,
        path: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: String,
    ) -> u16 {
        let mut req = self.client.post(self.server.local_url(path)).body(body);
        if let Some(key) = key {
            req = req.header("Authorization", authorization(key));
        }
        if let Some(content_type) = content_type {
            req = req.header("content-type", content_type);
        }
        req.send().await.expect("request").status().as_u16()
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, key, None).await
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, key, Some(&body))
            .await
    }

    pub async fn put(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, key, Some(&body))
            .await
    }

    pub async fn patch(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, key, Some(&body))
            .await
    }

    pub async fn delete(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, key, None).await
    }

    /// POSTs `/api/ws-token` for `instance`.
    pub async fn ws_token(&self, key: Option<&str>, instance: &str) -> (u16, Value) {
        let body = serde_json::json!({ "instanceId": instance });
        self.post("/api/ws-token", key, body).await
    }

    /// A delegate (`name` "agent") of the user signed in as `jwt`, with
    /// these capabilities; its id.
    pub async fn new_delegate(&self, jwt: &str, caps: Value) -> String {
        let body = serde_json::json!({"name": "agent", "keyPermissions": caps});
        let (status, body) = self.post("/api/delegates", Some(jwt), body).await;
        assert_eq!(status, 201, "{body}");
        body["delegate_id"].as_str().unwrap().to_string()
    }

    /// A new secret of the delegate; the secret.
    pub async fn new_secret(&self, jwt: &str, delegate: &str) -> String {
        let path = format!("/api/delegates/{delegate}/secrets");
        let (status, body) = self.post(&path, Some(jwt), serde_json::json!({})).await;
        assert_eq!(status, 201, "{body}");
        body["delegateSecret"].as_str().unwrap().to_string()
    }

    /// Grants the delegate `permission` on `instance`; the status.
    pub async fn grant(&self, jwt: &str, delegate: &str, instance: &str, permission: &str) -> u16 {
        let path = format!("/api/delegates/{delegate}/grants");
        let body = serde_json::json!({"instanceId": instance, "permission": permission});
        self.post(&path, Some(jwt), body).await.0
    }

    /// DELETEs `path`, which must answer 200.
    pub async fn delete_ok(&self, path: &str, key: Option<&str>) {
        let (status, body) = self.delete(path, key).await;
        assert_eq!(status, 200, "DELETE {path}: {body}");
    }
}

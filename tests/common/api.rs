//! HTTP helpers for REST tests: calls with a credential, answering
//! (status, JSON body), and test-only seeding of users with API keys.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::server::TestServer;

pub struct Api<'a> {
    pub server: &'a TestServer,
    client: reqwest::Client,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A seeded user: its id, email and an account-scoped admin API key.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub key: String,
}

/// A well-formed API key derived from `seed`.
pub fn make_key(seed: &str) -> String {
    format!("mc_live_{}", &sha256_hex(seed)[..32])
}

impl TestUser {
    pub fn new(id: &str) -> TestUser {
        let key = make_key(id);
        TestUser {
            id: id.to_string(),
            email: format!("{id}@example.com"),
            key,
        }
    }
}

/// SQL that creates users and gives each an account-wide admin key
/// (test-only seeding straight into the local D1; no route does this).
pub fn seed_sql(users: &[&TestUser]) -> String {
    let mut sql = String::new();
    for u in users {
        sql.push_str(&format!(
            "INSERT INTO users (id, clerk_id, email, name, created_at) VALUES ('{id}','{id}','{email}','{id} name',0);
             INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, scope_type, scope_id, permissions, created_at)
               VALUES ('key-{id}','{id}','seed','{hash}','{prefix}','account',NULL,'[\"read\",\"write\",\"admin\"]',0);",
            id = u.id,
            email = u.email,
            hash = sha256_hex(&u.key),
            prefix = &u.key[..12],
        ));
    }
    sql
}

/// Inserts an API key row for `user` with the given scope and permissions.
pub fn key_sql(
    user: &str,
    key: &str,
    scope_type: &str,
    scope_id: Option<&str>,
    perms: &str,
) -> String {
    format!(
        "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, scope_type, scope_id, permissions, created_at)
           VALUES ('k-{h}','{user}','k','{h}','{p}','{scope_type}',{sid},'{perms}',0);",
        h = sha256_hex(key),
        p = &key[..12],
        sid = scope_id.map_or("NULL".to_string(), |s| format!("'{s}'")),
    )
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
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        if let Some(body) = body {
            req = req.json(body);
        }
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
}

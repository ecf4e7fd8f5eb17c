//! The seeded world of a test binary: users with API keys written straight
//! into a server's local D1 (no route creates them), rows with fixed ids for
//! the tests that need them, and the projects, instances and shares a test
//! creates the way a client does, through the REST API.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::api::Api;
use super::server::TestServer;
use super::ws::WsClient;

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A well-formed API key derived from `seed`.
pub fn make_key(seed: &str) -> String {
    format!("mc_live_{}", &sha256_hex(seed)[..32])
}

/// A seeded user: its id, email and account-wide admin API key (whose row
/// id is `key-{id}`).
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub email: String,
    pub key: String,
}

impl User {
    pub fn new(id: &str) -> User {
        User {
            id: id.to_string(),
            email: format!("{id}@example.com"),
            key: make_key(id),
        }
    }

    /// The user's key as a request's credential.
    pub fn auth(&self) -> Option<&str> {
        Some(&self.key)
    }
}

/// A project and the id of its default instance, `main`.
#[derive(Clone, Debug)]
pub struct Project {
    pub id: String,
    pub main: String,
}

/// What a share grants to whom: `permission` to the `target_type` ("user",
/// "group") with this id.
pub fn grant(target_type: &str, id: &str, permission: &str) -> Value {
    json!({"targetType": target_type, "targetId": id, "permission": permission})
}

/// Rows for a server's D1, written in one batch through the test build's seed
/// route (src/seed.rs; no API route writes such rows).
#[derive(Default)]
pub struct Rows(String);

impl Rows {
    /// A user with its account-wide admin key.
    pub fn user(mut self, u: &User) -> Self {
        self.0.push_str(&format!(
            "INSERT INTO users (id, clerk_id, email, name, created_at) VALUES ('{id}','{id}','{email}','{id} name',0);",
            id = u.id,
            email = u.email,
        ));
        let perms = r#"["read","write","admin"]"#;
        self.api_key(
            &format!("key-{}", u.id),
            &u.id,
            "seed",
            &u.key,
            "account",
            None,
            perms,
        )
    }

    /// A bare user row (no email, no key), unless it exists already.
    pub fn owner(mut self, id: &str) -> Self {
        self.0.push_str(&format!(
            "INSERT OR IGNORE INTO users (id, clerk_id, created_at) VALUES ('{id}','{id}',0);"
        ));
        self
    }

    pub fn project(mut self, owner: &str, id: &str, name: &str) -> Self {
        self.0.push_str(&format!(
            "INSERT INTO projects (id, owner_id, name, created_at, updated_at) VALUES ('{id}','{owner}','{name}',0,0);"
        ));
        self
    }

    pub fn instance(mut self, owner: &str, project: &str, id: &str, name: &str) -> Self {
        self.0.push_str(&format!(
            "INSERT INTO instances (id, project_id, owner_id, name, created_at, updated_at) VALUES ('{id}','{project}','{owner}','{name}',0,0);"
        ));
        self
    }

    /// An API key of `user` with the given scope and permissions (a JSON
    /// array).
    pub fn key(
        self,
        user: &str,
        key: &str,
        scope_type: &str,
        scope_id: Option<&str>,
        perms: &str,
    ) -> Self {
        let id = format!("k-{}", sha256_hex(key));
        self.api_key(&id, user, "k", key, scope_type, scope_id, perms)
    }

    /// A WebSocket token of `user` for `instance`.
    pub fn ws_token(
        mut self,
        token: &str,
        user: &str,
        instance: &str,
        permission: &str,
        expires_at: i64,
    ) -> Self {
        self.0.push_str(&format!(
            "INSERT INTO ws_tokens (token_hash, user_id, instance_id, permission, expires_at, created_at)
             VALUES ('{}', '{user}', '{instance}', '{permission}', {expires_at}, 0);",
            sha256_hex(token)
        ));
        self
    }

    #[allow(clippy::too_many_arguments)]
    fn api_key(
        mut self,
        id: &str,
        user: &str,
        name: &str,
        key: &str,
        scope_type: &str,
        scope_id: Option<&str>,
        perms: &str,
    ) -> Self {
        self.0.push_str(&format!(
            "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, scope_type, scope_id, permissions, created_at)
               VALUES ('{id}','{user}','{name}','{h}','{p}','{scope_type}',{sid},'{perms}',0);",
            h = sha256_hex(key),
            p = &key[..12],
            sid = scope_id.map_or("NULL".to_string(), |s| format!("'{s}'")),
        ));
        self
    }

    pub fn write(self, server: &TestServer) {
        server.d1_execute(&self.0);
    }
}

/// Four users seeded into a server's D1, `{prefix}_alice` to `{prefix}_eve`,
/// and what a test does as one of them.
pub struct World {
    pub server: &'static TestServer,
    pub alice: User,
    pub bob: User,
    pub carol: User,
    pub eve: User,
}

impl World {
    pub fn seed(server: &'static TestServer, prefix: &str) -> World {
        let user = |name: &str| User::new(&format!("{prefix}_{name}"));
        let (alice, bob, carol, eve) = (user("alice"), user("bob"), user("carol"), user("eve"));
        [&alice, &bob, &carol, &eve]
            .into_iter()
            .fold(Rows::default(), Rows::user)
            .write(server);
        World {
            server,
            alice,
            bob,
            carol,
            eve,
        }
    }

    pub fn api(&self) -> Api<'static> {
        Api::new(self.server)
    }

    /// Creates a project owned by `owner` (description "d").
    pub async fn project(&self, owner: &User, name: &str) -> Project {
        let body = json!({"name": name, "description": "d"});
        let created = self.created(owner, "/api/projects", body).await;
        Project {
            id: created["id"].as_str().unwrap().to_string(),
            main: created["defaultInstanceId"].as_str().unwrap().to_string(),
        }
    }

    /// Creates another instance of `project`; returns its id.
    pub async fn instance(&self, owner: &User, project: &str, name: &str) -> String {
        let path = format!("/api/projects/{project}/instances");
        let created = self.created(owner, &path, json!({ "name": name })).await;
        created["id"].as_str().unwrap().to_string()
    }

    /// Shares through `path` (a project's or an instance's shares); returns
    /// the share's id.
    pub async fn share(&self, owner: &User, path: &str, target: Value) -> String {
        let created = self.created(owner, path, target).await;
        created["id"].as_str().unwrap().to_string()
    }

    /// A POST by `owner` that must answer 201; its body.
    async fn created(&self, owner: &User, path: &str, body: Value) -> Value {
        let (status, body) = self.api().post(path, Some(&owner.key), body).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// A WebSocket to `instance` with `key` as the Bearer credential, or the
    /// status the upgrade was refused with.
    pub async fn ws(&self, instance: &str, key: &str) -> Result<WsClient, String> {
        WsClient::try_connect_to(self.server, instance, Some(key)).await
    }

    /// A WebSocket to `instance` as `key`, past `auth_success` and `sync`.
    pub async fn join(&self, instance: &str, key: &str) -> WsClient {
        WsClient::join(self.server, instance, Some(key)).await.0
    }

    /// Why the upgrade to `instance` as `key` was refused (it must be).
    pub async fn refusal(&self, instance: &str, key: &str) -> String {
        match self.ws(instance, key).await {
            Ok(_) => panic!("the upgrade to {instance} must be refused"),
            Err(e) => e,
        }
    }
}

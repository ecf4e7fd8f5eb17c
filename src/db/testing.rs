//! Native test support for the D1 statements: an in-memory SQLite with every
//! `migrations/*.sql` applied in order and foreign keys enforced (as D1
//! does). It runs the very [`Statement`]s the D1 functions run, a batch in
//! one transaction, and turns rows into the same row types through serde,
//! from objects keyed by column name as D1 returns them.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{api_keys, groups, instances, projects, shares, users, ws_tokens, Arg, Statement};
use crate::permission::Permission;

/// The time every seeded row is written at.
pub const NOW: i64 = 1_700_000_000;

/// `migrations/*.sql`, ordered by file name.
fn migrations() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations/")
        .map(|e| e.expect("migrations/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migrations in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let sql = std::fs::read_to_string(&p).expect("readable migration");
            (p.display().to_string(), sql)
        })
        .collect()
}

fn json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(_) => panic!("no D1 column holds a blob"),
    }
}

pub struct TestDb {
    pub conn: Connection,
}

impl Default for TestDb {
    fn default() -> Self {
        TestDb::new()
    }
}

impl TestDb {
    /// A fresh database with the schema of every migration.
    pub fn new() -> Self {
        let conn = Connection::open_in_memory().expect("in-memory SQLite");
        conn.pragma_update(None, "foreign_keys", true)
            .expect("foreign keys on");
        for (name, sql) in migrations() {
            conn.execute_batch(&sql)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        TestDb { conn }
    }

    /// A fresh database with [`user`](Self::user)s `ids`.
    pub fn with_users(ids: &[&str]) -> Self {
        let db = TestDb::new();
        for id in ids {
            db.user(id);
        }
        db
    }

    /// Runs a statement, returning its rows as D1 objects. Like D1, binding
    /// fails unless there is exactly one argument per `?N`; on top of that,
    /// every argument must be used by the SQL (no placeholder tricks).
    pub fn try_rows(&self, st: &Statement<'_>) -> rusqlite::Result<Vec<Map<String, Value>>> {
        let mut stmt = self.conn.prepare(st.sql)?;
        for i in 1..=stmt.parameter_count() {
            assert!(
                stmt.parameter_name(i).is_some(),
                "?{i} is bound but never used in: {}",
                st.sql
            );
        }
        let names: Vec<String> = stmt.column_names().map(String::from).collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(st.args.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut object = Map::new();
            for (i, name) in names.iter().enumerate() {
                object.insert(name.clone(), json(row.get_ref(i)?));
            }
            out.push(object);
        }
        Ok(out)
    }

    /// Every row, as D1's `all().results()`.
    pub fn all<T: DeserializeOwned>(&self, st: &Statement<'_>) -> Vec<T> {
        self.try_rows(st)
            .unwrap_or_else(|e| panic!("{e}: {}", st.sql))
            .into_iter()
            .map(|o| {
                serde_json::from_value(Value::Object(o))
                    .unwrap_or_else(|e| panic!("row type: {e}: {}", st.sql))
            })
            .collect()
    }

    /// Whether the statement returns no row (of whatever type).
    pub fn returns_nothing(&self, st: &Statement<'_>) -> bool {
        self.try_rows(st)
            .unwrap_or_else(|e| panic!("{e}: {}", st.sql))
            .is_empty()
    }

    /// The first row, as D1's `first(None)`.
    pub fn first<T: DeserializeOwned>(&self, st: &Statement<'_>) -> Option<T> {
        self.all(st).into_iter().next()
    }

    /// Runs it for its effect; returns the number of rows it changed.
    pub fn run(&self, st: &Statement<'_>) -> u64 {
        self.try_rows(st)
            .unwrap_or_else(|e| panic!("{e}: {}", st.sql));
        self.conn.changes()
    }

    /// Runs a D1 batch: the statements in order in one transaction, rolled
    /// back whole when one fails.
    pub fn try_batch(&self, statements: &[Statement<'_>]) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        for st in statements {
            self.try_rows(st)?;
        }
        tx.commit()
    }

    pub fn batch(&self, statements: &[Statement<'_>]) {
        self.try_batch(statements)
            .unwrap_or_else(|e| panic!("batch failed: {e}"));
    }

    /// The first column of a test query's rows, as text.
    pub fn column(&self, sql: &str) -> Vec<String> {
        let mut stmt = self.conn.prepare(sql).expect(sql);
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).expect(sql);
        rows.map(|r| r.expect(sql)).collect()
    }

    /// Ids left in `table`, sorted.
    pub fn ids(&self, table: &str) -> Vec<String> {
        self.column(&format!("SELECT id FROM {table} ORDER BY id"))
    }

    /// The `EXPLAIN QUERY PLAN` lines of a statement (any arguments).
    pub fn query_plan(&self, sql: &str) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut stmt = self.conn.prepare(&explain).expect(sql);
        let args = vec![Arg::Text("x"); stmt.parameter_count()];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, String>(3)
            })
            .expect(sql);
        rows.map(|r| r.expect(sql)).collect()
    }

    pub fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        self.conn.query_row(&sql, [], |r| r.get(0)).expect(&sql)
    }

    // --- Seeding, through the statements the Worker writes with ----------

    /// A user with email `<id>@example.com` and name `<id>`.
    pub fn user(&self, id: &str) {
        let email = format!("{id}@example.com");
        self.run(&users::stmt::upsert(id, Some(&email), Some(id), NOW));
    }

    /// A project named after its id, with its `main` instance `<id>-main`.
    pub fn project(&self, id: &str, owner: &str) {
        let main = format!("{id}-main");
        self.batch(&projects::stmt::create(id, &main, owner, id, None, NOW));
    }

    /// Another instance of `project`, owned (as the Worker does) by the
    /// project's owner.
    pub fn instance(&self, id: &str, project: &str, owner: &str) {
        self.run(&instances::stmt::create(id, project, owner, id, None, NOW));
    }

    /// Another instance of `project`, cloned from `parent`.
    pub fn clone_of(&self, id: &str, project: &str, owner: &str, parent: &str) {
        self.run(&instances::stmt::create(
            id,
            project,
            owner,
            id,
            Some(parent),
            NOW,
        ));
    }

    /// A group named after its id, with `members`.
    pub fn group(&self, id: &str, owner: &str, members: &[&str]) {
        self.run(&groups::stmt::create(id, id, owner, NOW));
        for user in members {
            self.member(id, user);
        }
    }

    pub fn member(&self, group: &str, user: &str) {
        self.run(&groups::stmt::add_member(group, user, NOW));
    }

    /// A share `id` on `resource` (`project:<id>` or `instance:<id>`) to
    /// `target` (`user:<id>`, `group:<id>` or `public`).
    pub fn share(&self, id: &str, resource: &str, target: &str, permission: &str, by: &str) {
        let share = new_share(id, resource, target, permission, by);
        self.run(&share.insert());
    }

    /// An API key of `user` with hash `hash-<id>`; `scope` is `account`,
    /// `project:<id>` or `instance:<id>`.
    pub fn api_key(&self, id: &str, user: &str, scope: &str) {
        let (scope_type, scope_id) = kind_and_id(scope);
        let hash = format!("hash-{id}");
        let key = api_keys::NewKey {
            id,
            user_id: user,
            name: id,
            key_hash: &hash,
            key_prefix: "mc_live_abcd",
            scope_type,
            scope_id,
            permissions_json: r#"["read"]"#,
            created_at: NOW,
        };
        self.run(&key.insert());
    }

    /// A WebSocket token with hash `hash`, valid for a minute.
    pub fn ws_token(&self, hash: &str, user: &str, instance: &str) {
        let token = new_token(hash, user, instance, "write");
        self.batch(&ws_tokens::stmt::insert(&token));
    }

    /// One row of each kind that hangs off `instance`, named after it: bob's
    /// share `on-<instance>`, his token `t-<instance>` and instance-scoped
    /// key `k-<instance>`, and alice's webhook `w-<instance>`.
    pub fn dependents_of(&self, instance: &str) {
        let resource = format!("instance:{instance}");
        let share = format!("on-{instance}");
        self.share(&share, &resource, "user:bob", "read", "alice");
        self.ws_token(&format!("t-{instance}"), "bob", instance);
        self.api_key(&format!("k-{instance}"), "bob", &resource);
        self.webhook(&format!("w-{instance}"), instance, "alice");
    }

    /// An outbound webhook (no D1 statement writes these yet; raw SQL).
    pub fn webhook(&self, id: &str, instance: &str, user: &str) {
        self.conn
            .execute(
                "INSERT INTO webhooks (id, instance_id, user_id, url, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'https://example.com/hook', ?4, ?4)",
                rusqlite::params![id, instance, user, NOW],
            )
            .expect("webhook row");
    }
}

/// `kind:id` split, or `kind` alone (`public`, `account`) with no id.
fn kind_and_id(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((kind, id)) => (kind, Some(id)),
        None => (s, None),
    }
}

/// A share `id` on `resource` (`project:<id>` or `instance:<id>`) to
/// `target` (`user:<id>`, `group:<id>` or `public`), made by `by` at `NOW`.
pub fn new_share<'a>(
    id: &'a str,
    resource: &'a str,
    target: &'a str,
    permission: &'a str,
    by: &'a str,
) -> shares::NewShare<'a> {
    let (resource_type, resource_id) = resource.split_once(':').expect("kind:id");
    let (target_type, target_id) = kind_and_id(target);
    shares::NewShare {
        id,
        resource_type,
        resource_id,
        target_type,
        target_id,
        permission: permission_named(permission),
        created_by: by,
        created_at: NOW,
    }
}

/// A WebSocket token made at `NOW` and valid for a minute, obtained
/// without an API key or delegate.
pub fn new_token<'a>(
    hash: &'a str,
    user: &'a str,
    instance: &'a str,
    permission: &'a str,
) -> ws_tokens::NewToken<'a> {
    ws_tokens::NewToken {
        token_hash: hash,
        user_id: user,
        instance_id: instance,
        permission: permission_named(permission),
        expires_at: NOW + 60,
        created_at: NOW,
        api_key_id: None,
        delegate_id: None,
        secret_id: None,
    }
}

fn permission_named(name: &str) -> Permission {
    Permission::parse_grantable(name).expect("read, write or admin")
}

#[cfg(test)]
mod upgrade {
    use super::*;

    /// A database made by the first migration only, with data in it, takes
    /// every later migration and keeps its rows (issue: "a local database
    /// created before this change keeps its data").
    #[test]
    fn later_migrations_apply_on_top_of_existing_data() {
        let conn = Connection::open_in_memory().expect("in-memory SQLite");
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        let all = migrations();
        conn.execute_batch(&all[0].1).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, clerk_id, created_at) VALUES ('u', 'u', 1);
             INSERT INTO projects (id, owner_id, name, created_at, updated_at) VALUES ('p', 'u', 'p', 1, 2);
             INSERT INTO instances (id, project_id, owner_id, name, is_readonly, created_at, updated_at)
               VALUES ('i', 'p', 'u', 'main', 1, 1, 7);
             INSERT INTO ws_tokens (token_hash, user_id, instance_id, permission, expires_at, created_at)
               VALUES ('h', 'u', 'i', 'read', 99, 1);",
        )
        .unwrap();
        for (name, sql) in &all[1..] {
            conn.execute_batch(sql)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let (read_only, version): (i64, i64) = conn
            .query_row(
                "SELECT is_readonly, readonly_version FROM instances WHERE id = 'i'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(read_only, 1);
        assert!(version > 0, "existing flags get a version above objects' 0");
        let tokens: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM ws_tokens WHERE api_key_id IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tokens, 1);
    }
}

//! Rows of the `instances` table, with the facts role resolution needs.

use serde::Deserialize;

use super::share_facts;
use crate::auth::roles::AccessFacts;
pub use crate::instance::internal::ReadOnlyFlag;

#[derive(Debug, Clone, Deserialize)]
pub struct InstanceRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub is_readonly: i64,
    /// Grows with every change of `is_readonly` (protocol.md §8).
    pub readonly_version: i64,
    pub parent_instance_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Owner of the instance's project.
    pub project_owner: String,
    pub project_level: Option<i64>,
    pub instance_level: Option<i64>,
}

impl InstanceRow {
    pub fn facts(&self, user_id: &str) -> AccessFacts {
        share_facts(
            self.project_owner == user_id,
            self.project_level,
            self.instance_level,
        )
    }

    pub fn read_only(&self) -> bool {
        self.is_readonly != 0
    }

    /// The flag with its version, as told to the instance's object.
    pub fn read_only_flag(&self) -> ReadOnlyFlag {
        ReadOnlyFlag {
            read_only: self.read_only(),
            version: self.readonly_version,
        }
    }
}

// --- SQL --------------------------------------------------------------------

/// `InstanceRow` for the caller `?2`, up to the `WHERE` keyword.
macro_rules! select_instance_rows {
    () => {
        concat!(
            "SELECT i.id, i.project_id, i.name, i.is_readonly, i.readonly_version, i.parent_instance_id, ",
            "i.created_at, i.updated_at, p.owner_id AS project_owner, ",
            share_level!("project", "i.project_id", "?2"),
            " AS project_level, ",
            share_level!("instance", "i.id", "?2"),
            " AS instance_level FROM instances i JOIN projects p ON p.id = i.project_id WHERE "
        )
    };
}

/// `?1` instance id, `?2` caller.
pub const SELECT_INSTANCE: &str = concat!(select_instance_rows!(), "i.id = ?1");

/// `?1` project id, `?2` caller; newest first.
pub const SELECT_FOR_PROJECT: &str = concat!(
    select_instance_rows!(),
    "i.project_id = ?1 ORDER BY i.created_at DESC, i.rowid DESC"
);

/// `?1` id, `?2` project id, `?3` owner id, `?4` name, `?5` parent or NULL,
/// `?6` now.
pub const INSERT_INSTANCE: &str =
    "INSERT INTO instances (id, project_id, owner_id, name, parent_instance_id, is_readonly,
                            created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6)";

/// `?1` id, `?2` new name or NULL, `?3` new read-only flag (0/1) or NULL,
/// `?4` now (s), `?5` now (ms). Setting the flag always raises its version,
/// even twice within one millisecond.
pub const UPDATE_INSTANCE: &str = "UPDATE instances SET name = COALESCE(?2, name),
        is_readonly = COALESCE(?3, is_readonly),
        readonly_version = CASE WHEN ?3 IS NULL THEN readonly_version
                                ELSE MAX(readonly_version + 1, ?5) END,
        updated_at = ?4
  WHERE id = ?1";

/// Instance deletion, in batch order; each takes `?1` instance id.
pub const DELETE_INSTANCE_SHARES: &str =
    "DELETE FROM shares WHERE resource_type = 'instance' AND resource_id = ?1";
pub const DELETE_INSTANCE_TOKENS: &str = "DELETE FROM ws_tokens WHERE instance_id = ?1";
pub const DELETE_INSTANCE_KEYS: &str =
    "DELETE FROM api_keys WHERE scope_type = 'instance' AND scope_id = ?1";
pub const DELETE_INSTANCE: &str = "DELETE FROM instances WHERE id = ?1";

/// `?1` instance id.
pub const SELECT_READ_ONLY: &str =
    "SELECT is_readonly AS read_only, readonly_version AS version FROM instances WHERE id = ?1";

stmt_module! {
    /// One instance with the caller's (`user_id`) share facts.
    fn get(instance_id: &'a str, user_id: &'a str) => SELECT_INSTANCE;
    /// The project's instances with the caller's share facts, newest first.
    fn list_for_project(project_id: &'a str, user_id: &'a str) => SELECT_FOR_PROJECT;
    fn create(
        id: &'a str, project_id: &'a str, owner_id: &'a str, name: &'a str,
        parent: Option<&'a str>, now: i64,
    ) => INSERT_INSTANCE;
    /// `now` in seconds, `now_ms` in milliseconds (the flag's version).
    fn update(
        id: &'a str, name: Option<&'a str>, read_only: Option<bool>, now: i64, now_ms: i64,
    ) => UPDATE_INSTANCE;
    /// The read-only flag with its version (`ReadOnlyFlag`), no row when
    /// no such instance exists.
    fn read_only(instance_id: &'a str) => SELECT_READ_ONLY;
    /// One batch: the instance row, its shares, its tokens and keys scoped
    /// to it.
    fn delete(id: &'a str) => [
        DELETE_INSTANCE_SHARES, DELETE_INSTANCE_TOKENS, DELETE_INSTANCE_KEYS, DELETE_INSTANCE,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::roles::instance_role;
    use crate::db::testing::{TestDb, NOW};
    use crate::permission::Permission::{self, Admin, Owner, Read, Write};

    fn role(db: &TestDb, instance: &str, user: &str) -> Option<Permission> {
        let row: InstanceRow = db.first(&stmt::get(instance, user))?;
        instance_role(&row.facts(user))
    }

    /// alice owns project `p` (instances `p-main`, `x`); bob owns `q`.
    fn seeded() -> TestDb {
        let db = TestDb::with_users(&["alice", "bob", "carol", "dave", "erin"]);
        db.project("p", "alice");
        db.instance("x", "p", "alice");
        db.project("q", "bob");
        db
    }

    #[test]
    fn role_resolution() {
        let db = seeded();
        db.share("s1", "project:p", "user:bob", "write", "alice");
        db.share("s2", "instance:x", "user:carol", "admin", "alice");
        db.group("g", "erin", &["dave"]);
        db.share("s3", "instance:x", "group:g", "read", "alice");
        // Not to anyone here: another resource, another user, an API key.
        db.share("s4", "project:q", "user:carol", "admin", "bob");
        db.share("s5", "instance:p-main", "user:erin", "admin", "alice");
        db.share("s6", "instance:x", "api_key:k", "admin", "alice");

        // (instance, user, role)
        let cases = [
            ("p-main", "alice", Some(Owner)),
            ("x", "alice", Some(Owner)),
            ("p-main", "bob", Some(Write)),   // project share
            ("x", "bob", Some(Write)),        // project share reaches its instances
            ("x", "carol", Some(Admin)),      // instance share
            ("p-main", "carol", None),        // only on x
            ("x", "dave", Some(Read)),        // group member
            ("x", "erin", Some(Read)),        // group owner
            ("p-main", "erin", Some(Admin)),  // user share
            ("p-main", "dave", None),         // no share at all
            ("q-main", "alice", None),        // someone else's project
            ("q-main", "carol", Some(Admin)), // project share on q
            ("q-main", "bob", Some(Owner)),
        ];
        for (instance, user, expected) in cases {
            assert_eq!(role(&db, instance, user), expected, "{user} on {instance}");
        }

        // The highest share wins: bob's write on p and read on x is write,
        // carol's admin on x and write on p stays admin.
        db.share("s7", "instance:x", "user:bob", "read", "alice");
        db.share("s8", "project:p", "user:carol", "write", "alice");
        assert_eq!(role(&db, "x", "bob"), Some(Write));
        assert_eq!(role(&db, "x", "carol"), Some(Admin));
        let row: InstanceRow = db.first(&stmt::get("x", "carol")).unwrap();
        assert_eq!((row.project_level, row.instance_level), (Some(2), Some(3)));
        assert_eq!(row.project_owner, "alice");
    }

    #[test]
    fn public_share_reaches_everyone_even_without_a_user_row() {
        let db = seeded();
        assert_eq!(role(&db, "x", "nobody"), None);
        db.share("pub", "instance:x", "public", "read", "alice");
        assert_eq!(role(&db, "x", "nobody"), Some(Read));
        assert_eq!(role(&db, "p-main", "nobody"), None);
        db.share("pub2", "project:p", "public", "write", "alice");
        assert_eq!(role(&db, "p-main", "nobody"), Some(Write));
        assert_eq!(role(&db, "x", "nobody"), Some(Write));
    }

    #[test]
    fn unknown_instance_is_none() {
        let db = seeded();
        assert!(db.returns_nothing(&stmt::get("nope", "alice")));
        assert_eq!(
            db.first::<ReadOnlyFlag>(&stmt::read_only("nope"))
                .map(|r| r.read_only),
            None
        );
    }

    #[test]
    fn list_for_project_newest_first_with_each_rows_levels() {
        let db = seeded();
        db.instance("y", "p", "alice");
        db.share("s", "instance:y", "user:bob", "write", "alice");
        let rows: Vec<InstanceRow> = db.all(&stmt::list_for_project("p", "bob"));
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["y", "x", "p-main"]); // same second: later insert first
        let roles: Vec<_> = rows
            .iter()
            .map(|r| instance_role(&r.facts("bob")))
            .collect();
        assert_eq!(roles, [Some(Write), None, None]);
        assert!(db.returns_nothing(&stmt::list_for_project("nope", "bob")));
    }

    #[test]
    fn create_update_and_read_only() {
        let db = seeded();
        db.run(&stmt::create("c", "p", "alice", "clone", Some("x"), NOW));
        let row: InstanceRow = db.first(&stmt::get("c", "alice")).unwrap();
        assert_eq!(row.parent_instance_id.as_deref(), Some("x"));
        assert_eq!((row.name.as_str(), row.read_only()), ("clone", false));
        assert_eq!((row.created_at, row.updated_at), (NOW, NOW));

        assert_eq!(row.readonly_version, 0);
        let ms = NOW * 1000;
        db.run(&stmt::update("c", None, Some(true), NOW + 5, ms));
        let row: InstanceRow = db.first(&stmt::get("c", "alice")).unwrap();
        assert_eq!(
            (row.name.as_str(), row.read_only(), row.updated_at),
            ("clone", true, NOW + 5)
        );
        let flag: ReadOnlyFlag = db.first(&stmt::read_only("c")).unwrap();
        assert_eq!((flag.read_only, flag.version), (true, ms));

        // A rename keeps the flag's version; a change of the flag within the
        // same millisecond still gets a larger one.
        db.run(&stmt::update("c", Some("renamed"), None, NOW + 6, ms + 9));
        let row: InstanceRow = db.first(&stmt::get("c", "alice")).unwrap();
        assert_eq!((row.name.as_str(), row.read_only()), ("renamed", true));
        assert_eq!(row.read_only_flag().version, ms);
        db.run(&stmt::update("c", None, Some(false), NOW + 7, ms));
        let flag: ReadOnlyFlag = db.first(&stmt::read_only("c")).unwrap();
        assert_eq!((flag.read_only, flag.version), (false, ms + 1));
        assert!(flag.supersedes(&row.read_only_flag()));

        // An instance needs an existing project (foreign key).
        assert!(db
            .try_rows(&stmt::create("z", "nope", "alice", "z", None, NOW))
            .is_err());
    }

    #[test]
    fn delete_removes_the_instance_its_shares_tokens_and_scoped_keys() {
        let db = seeded();
        db.clone_of("c", "p", "alice", "x");
        db.run(&stmt::update("c", None, None, NOW, NOW * 1000)); // no-op update
        db.dependents_of("x"); // go with it
        db.dependents_of("p-main");
        db.share("on-p", "project:p", "user:carol", "read", "alice");
        db.api_key("k-p", "bob", "project:p");
        db.api_key("k-acct", "bob", "account");

        db.batch(&stmt::delete("x"));

        assert_eq!(db.ids("instances"), ["c", "p-main", "q-main"]);
        assert_eq!(db.ids("shares"), ["on-p", "on-p-main"]);
        assert_eq!(db.column("SELECT token_hash FROM ws_tokens"), ["t-p-main"]);
        assert_eq!(db.ids("api_keys"), ["k-acct", "k-p", "k-p-main"]);
        assert_eq!(db.ids("webhooks"), ["w-p-main"]); // ON DELETE CASCADE
        let clone: InstanceRow = db.first(&stmt::get("c", "alice")).unwrap();
        assert_eq!(clone.parent_instance_id, None); // ON DELETE SET NULL
        assert_eq!(db.ids("projects"), ["p", "q"]);

        // Deleting again (or an unknown id) is harmless.
        db.batch(&stmt::delete("x"));
        assert_eq!(db.count("instances"), 3);
    }
}

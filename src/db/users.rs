//! Rows of the `users` table.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

// --- SQL --------------------------------------------------------------------

/// `?1` user id, `?2` now; an existing row is left alone.
pub const INSERT_IF_MISSING: &str =
    "INSERT INTO users (id, clerk_id, created_at) VALUES (?1, ?1, ?2)
     ON CONFLICT(id) DO NOTHING";

/// `?1` user id.
pub const SELECT_USER: &str = "SELECT id, email, name FROM users WHERE id = ?1";

/// `?1` email, compared case-insensitively.
pub const SELECT_BY_EMAIL: &str =
    "SELECT id, email, name FROM users WHERE email = ?1 COLLATE NOCASE LIMIT 1";

/// `?1` user id, `?2` email, `?3` name, `?4` now; a replay updates email and
/// name only.
pub const UPSERT_USER: &str =
    "INSERT INTO users (id, clerk_id, email, name, created_at) VALUES (?1, ?1, ?2, ?3, ?4)
     ON CONFLICT(id) DO UPDATE SET email = excluded.email, name = excluded.name";

/// Every instance in the projects of user `?1`.
macro_rules! owned_instances {
    () => {
        "SELECT i.id FROM instances i JOIN projects p ON p.id = i.project_id WHERE p.owner_id = ?1"
    };
}

/// `?1` user id.
pub const SELECT_OWNED_INSTANCE_IDS: &str = owned_instances!();

/// User deletion, in batch order; each takes `?1` user id.
pub const DELETE_SHARES_ON_OWNED: &str = concat!(
    "DELETE FROM shares WHERE (resource_type = 'instance' AND resource_id IN (",
    owned_instances!(),
    ")) OR (resource_type = 'project' AND resource_id IN ",
    "(SELECT id FROM projects WHERE owner_id = ?1))"
);
pub const DELETE_SHARES_TO_OWNED_GROUPS: &str =
    "DELETE FROM shares WHERE target_type = 'group' AND target_id IN
    (SELECT id FROM groups WHERE owner_id = ?1)";
pub const DELETE_SHARES_TO_AND_BY_USER: &str =
    "DELETE FROM shares WHERE (target_type = 'user' AND target_id = ?1) OR created_by = ?1";
pub const DELETE_TOKENS: &str = concat!(
    "DELETE FROM ws_tokens WHERE user_id = ?1 OR instance_id IN (",
    owned_instances!(),
    ")"
);
pub const DELETE_KEYS: &str = concat!(
    "DELETE FROM api_keys WHERE user_id = ?1 OR (scope_type = 'instance' AND scope_id IN (",
    owned_instances!(),
    ")) OR (scope_type = 'project' AND scope_id IN ",
    "(SELECT id FROM projects WHERE owner_id = ?1))"
);
pub const DELETE_MEMBERSHIPS: &str = "DELETE FROM group_members WHERE user_id = ?1 OR group_id IN
    (SELECT id FROM groups WHERE owner_id = ?1)";
pub const DELETE_OWNED_GROUPS: &str = "DELETE FROM groups WHERE owner_id = ?1";
pub const DELETE_OWNED_INSTANCES: &str = concat!(
    "DELETE FROM instances WHERE id IN (",
    owned_instances!(),
    ")"
);
pub const DELETE_OWNED_PROJECTS: &str = "DELETE FROM projects WHERE owner_id = ?1";
pub const DELETE_USER: &str = "DELETE FROM users WHERE id = ?1";

stmt_module! {
    /// Makes sure the caller has a row (every authenticated `/api/*`
    /// request).
    fn ensure(user_id: &'a str, now: i64) => INSERT_IF_MISSING;
    fn get(user_id: &'a str) => SELECT_USER;
    fn find_by_email(email: &'a str) => SELECT_BY_EMAIL;
    /// Creates or updates a user from Clerk (webhook); replays are harmless.
    fn upsert(
        user_id: &'a str, email: Option<&'a str>, name: Option<&'a str>, now: i64,
    ) => UPSERT_USER;
    /// Every instance in projects the user owns.
    fn owned_instance_ids(user_id: &'a str) => SELECT_OWNED_INSTANCE_IDS;
    /// One batch: the user and everything it owns or was given (its projects
    /// and their instances, every share on those, its groups and the shares
    /// to them, shares to the user, its keys, tokens and memberships), so a
    /// failure leaves nothing half-deleted; replaying it is harmless.
    fn delete_everything(user_id: &'a str) => [
        DELETE_SHARES_ON_OWNED, DELETE_SHARES_TO_OWNED_GROUPS, DELETE_SHARES_TO_AND_BY_USER,
        DELETE_TOKENS, DELETE_KEYS, DELETE_MEMBERSHIPS, DELETE_OWNED_GROUPS,
        DELETE_OWNED_INSTANCES, DELETE_OWNED_PROJECTS, DELETE_USER,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};
    use crate::db::IdRow;

    #[test]
    fn ensure_creates_once_and_upsert_updates_profile_only() {
        let db = TestDb::new();
        db.run(&stmt::ensure("u1", NOW));
        let row: UserRow = db.first(&stmt::get("u1")).unwrap();
        assert_eq!((row.id.as_str(), row.email, row.name), ("u1", None, None));
        assert_eq!(db.column("SELECT clerk_id FROM users"), ["u1"]);

        db.run(&stmt::upsert(
            "u1",
            Some("A@Example.com"),
            Some("A"),
            NOW + 9,
        ));
        db.run(&stmt::ensure("u1", NOW + 10)); // leaves the row alone
        let row: UserRow = db.first(&stmt::get("u1")).unwrap();
        assert_eq!(
            (row.email.as_deref(), row.name.as_deref()),
            (Some("A@Example.com"), Some("A"))
        );
        assert_eq!(
            db.column("SELECT CAST(created_at AS TEXT) FROM users"),
            [NOW.to_string()]
        );
        db.run(&stmt::upsert("u1", None, Some("B"), NOW + 11));
        let row: UserRow = db.first(&stmt::get("u1")).unwrap();
        assert_eq!((row.email, row.name.as_deref()), (None, Some("B")));
        assert!(db.returns_nothing(&stmt::get("u2")));
    }

    #[test]
    fn find_by_email_ignores_case() {
        let db = TestDb::new();
        db.run(&stmt::upsert("u1", Some("Ann@Example.com"), None, NOW));
        db.user("bob");
        let find = |e| db.first::<UserRow>(&stmt::find_by_email(e)).map(|r| r.id);
        assert_eq!(find("ann@example.com").as_deref(), Some("u1"));
        assert_eq!(find("ANN@EXAMPLE.COM").as_deref(), Some("u1"));
        assert_eq!(find("bob@example.com").as_deref(), Some("bob"));
        assert_eq!(find("ann@example.org"), None);
    }

    /// alice owns projects `a` (instances `a-main`, `a-x`) and `a2`, group
    /// `ga`; bob owns project `b` and group `gb`. They share with each other.
    fn two_accounts() -> TestDb {
        let db = TestDb::with_users(&["alice", "bob", "carol"]);
        db.project("a", "alice");
        db.instance("a-x", "a", "alice");
        db.project("a2", "alice");
        db.project("b", "bob");
        db.clone_of("b-clone", "b", "bob", "a-x");
        db.group("ga", "alice", &["bob", "carol"]);
        db.group("gb", "bob", &["alice", "carol"]);

        // On alice's things (all go).
        db.share("a-to-bob", "project:a", "user:bob", "write", "alice");
        db.share("ax-to-gb", "instance:a-x", "group:gb", "read", "alice");
        db.share("a2-public", "project:a2", "public", "read", "alice");
        // To alice or her group, on bob's things (go).
        db.share("b-to-alice", "project:b", "user:alice", "admin", "bob");
        db.share("b-to-ga", "instance:b-main", "group:ga", "read", "bob");
        // Made by alice on bob's project as its admin (go: shares by her).
        db.share(
            "b-to-carol-by-alice",
            "project:b",
            "user:carol",
            "read",
            "alice",
        );
        // Unrelated to alice (stay).
        db.share("b-to-gb", "project:b", "group:gb", "write", "bob");
        db.share("bclone-public", "instance:b-clone", "public", "read", "bob");

        db.api_key("k-alice", "alice", "account");
        db.api_key("k-alice-b", "alice", "project:b");
        db.api_key("k-bob-a", "bob", "project:a");
        db.api_key("k-bob-ax", "bob", "instance:a-x");
        db.api_key("k-bob", "bob", "instance:b-main");
        db.ws_token("t-alice-b", "alice", "b-main");
        db.ws_token("t-bob-a", "bob", "a-main");
        db.ws_token("t-bob-b", "bob", "b-main");
        db.webhook("w-alice-b", "b-main", "alice");
        db.webhook("w-bob-a", "a-x", "bob");
        db.webhook("w-bob-b", "b-main", "bob");
        db.run(&crate::db::usage::stmt::record(
            "alice",
            None,
            "/x",
            Some("a-main"),
            NOW,
        ));
        db
    }

    #[test]
    fn owned_instance_ids_are_the_instances_of_owned_projects() {
        let db = two_accounts();
        let ids = |u| {
            let mut v: Vec<String> = db
                .all::<IdRow>(&stmt::owned_instance_ids(u))
                .into_iter()
                .map(|r| r.id)
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids("alice"), ["a-main", "a-x", "a2-main"]);
        assert_eq!(ids("bob"), ["b-clone", "b-main"]);
        assert!(ids("carol").is_empty());
    }

    #[test]
    fn delete_everything_removes_what_the_user_owns_or_was_given() {
        let db = two_accounts();
        db.batch(&stmt::delete_everything("alice"));

        assert_eq!(db.ids("users"), ["bob", "carol"]);
        assert_eq!(db.ids("projects"), ["b"]);
        assert_eq!(db.ids("instances"), ["b-clone", "b-main"]);
        assert_eq!(db.ids("shares"), ["b-to-gb", "bclone-public"]);
        assert_eq!(db.ids("groups"), ["gb"]);
        assert_eq!(
            db.column("SELECT group_id || ':' || user_id FROM group_members ORDER BY 1"),
            ["gb:carol"]
        );
        assert_eq!(db.ids("api_keys"), ["k-bob"]);
        assert_eq!(
            db.column("SELECT token_hash FROM ws_tokens ORDER BY 1"),
            ["t-bob-b"]
        );
        assert_eq!(db.ids("webhooks"), ["w-bob-b"]);
        assert_eq!(
            db.column(
                "SELECT COALESCE(parent_instance_id, '-') FROM instances WHERE id = 'b-clone'"
            ),
            ["-"]
        );
        // Metering rows are kept (no foreign key; not the user's data).
        assert_eq!(db.count("usage_logs"), 1);

        // bob's account still resolves as before, minus what alice gave.
        let b: crate::db::projects::ProjectRow = db
            .first(&crate::db::projects::stmt::get("b", "bob"))
            .unwrap();
        assert_eq!(b.owner_id, "bob");
        assert!(db.returns_nothing(&stmt::owned_instance_ids("alice")));

        // A replayed webhook finds nothing left to delete.
        db.batch(&stmt::delete_everything("alice"));
        assert_eq!(db.ids("users"), ["bob", "carol"]);
        assert_eq!(db.count("shares"), 2);
    }

    #[test]
    fn delete_everything_of_an_unknown_user_changes_nothing() {
        let db = two_accounts();
        let before: Vec<i64> = ["users", "projects", "instances", "shares", "api_keys"]
            .iter()
            .map(|t| db.count(t))
            .collect();
        db.batch(&stmt::delete_everything("ghost"));
        let after: Vec<i64> = ["users", "projects", "instances", "shares", "api_keys"]
            .iter()
            .map(|t| db.count(t))
            .collect();
        assert_eq!(before, after);
    }
}

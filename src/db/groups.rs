//! Rows of the `groups` and `group_members` tables.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GroupListRow {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub created_at: i64,
    pub role: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupRow {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub created_at: i64,
    /// 1 when the caller (`?2`) is a member.
    pub is_member: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MemberRow {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

// --- SQL --------------------------------------------------------------------

/// `?1` user id: the groups it owns or belongs to, newest first.
pub const SELECT_FOR_USER: &str = "SELECT g.id, g.name, g.owner_id, g.created_at,
        CASE WHEN g.owner_id = ?1 THEN 'owner' ELSE 'member' END AS role
   FROM groups g
  WHERE g.owner_id = ?1
     OR g.id IN (SELECT group_id FROM group_members WHERE user_id = ?1)
  ORDER BY g.created_at DESC, g.rowid DESC";

/// `?1` id, `?2` name, `?3` owner id, `?4` now.
pub const INSERT_GROUP: &str =
    "INSERT INTO groups (id, name, owner_id, created_at) VALUES (?1, ?2, ?3, ?4)";

/// `?1` group id, `?2` caller (for `is_member`).
pub const SELECT_GROUP: &str = "SELECT g.id, g.name, g.owner_id, g.created_at,
        EXISTS (SELECT 1 FROM group_members m
                 WHERE m.group_id = g.id AND m.user_id = ?2) AS is_member
   FROM groups g WHERE g.id = ?1";

/// `?1` group id; oldest membership first.
pub const SELECT_MEMBERS: &str = "SELECT m.user_id, u.email, u.name FROM group_members m
   LEFT JOIN users u ON u.id = m.user_id
  WHERE m.group_id = ?1 ORDER BY m.created_at, m.rowid";

/// Group deletion, in batch order; each takes `?1` group id.
pub const DELETE_SHARES_TO_GROUP: &str =
    "DELETE FROM shares WHERE target_type = 'group' AND target_id = ?1";
pub const DELETE_GROUP_MEMBERS: &str = "DELETE FROM group_members WHERE group_id = ?1";
pub const DELETE_GROUP: &str = "DELETE FROM groups WHERE id = ?1";

/// `?1` group id, `?2` user id, `?3` now; adding a member twice is a no-op.
pub const INSERT_MEMBER: &str =
    "INSERT INTO group_members (group_id, user_id, created_at) VALUES (?1, ?2, ?3)
     ON CONFLICT(group_id, user_id) DO NOTHING";

/// `?1` group id, `?2` user id; returns the user id if there was a membership.
pub const DELETE_MEMBER: &str =
    "DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2 RETURNING user_id";

stmt_module! {
    fn list_for_user(user_id: &'a str) => SELECT_FOR_USER;
    fn create(id: &'a str, name: &'a str, owner_id: &'a str, now: i64) => INSERT_GROUP;
    fn get(id: &'a str, user_id: &'a str) => SELECT_GROUP;
    fn members(group_id: &'a str) => SELECT_MEMBERS;
    fn add_member(group_id: &'a str, user_id: &'a str, now: i64) => INSERT_MEMBER;
    /// Returns a row if there was such a membership.
    fn remove_member(group_id: &'a str, user_id: &'a str) => DELETE_MEMBER;
    /// One batch: the group, its memberships and every share to it.
    fn delete(id: &'a str) => [
        DELETE_SHARES_TO_GROUP, DELETE_GROUP_MEMBERS, DELETE_GROUP,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::roles::instance_role;
    use crate::db::instances::{self, InstanceRow};
    use crate::db::testing::{TestDb, NOW};
    use crate::permission::Permission;

    fn seeded() -> TestDb {
        TestDb::with_users(&["alice", "bob", "carol"])
    }

    // The fields the listing tests compare, borrowed.
    impl GroupListRow {
        fn id_role_owner(&self) -> (&str, &str, &str) {
            (&self.id, &self.role, &self.owner_id)
        }
    }

    impl MemberRow {
        fn who(&self) -> (&str, Option<&str>, Option<&str>) {
            (&self.user_id, self.email.as_deref(), self.name.as_deref())
        }
    }

    fn instance_role_of(db: &TestDb, instance: &str, user: &str) -> Option<Permission> {
        let row: InstanceRow = db.first(&instances::stmt::get(instance, user))?;
        instance_role(&row.facts(user))
    }

    #[test]
    fn list_for_user_owned_and_member_groups_newest_first() {
        let db = seeded();
        db.group("g1", "alice", &[]);
        db.group("g2", "bob", &[]);
        db.group("g3", "bob", &[]);
        db.run(&stmt::create("g4", "Later", "carol", NOW + 1));
        db.member("g2", "alice");
        db.member("g4", "alice");
        db.member("g1", "bob"); // bob in alice's group: not alice's business

        let rows: Vec<GroupListRow> = db.all(&stmt::list_for_user("alice"));
        let got: Vec<_> = rows.iter().map(GroupListRow::id_role_owner).collect();
        assert_eq!(
            got,
            [
                ("g4", "member", "carol"),
                ("g2", "member", "bob"),
                ("g1", "owner", "alice")
            ]
        );
        assert_eq!(rows[0].name, "Later");
        assert!(db.returns_nothing(&stmt::list_for_user("nobody")));
    }

    #[test]
    fn get_reports_membership_of_the_caller() {
        let db = seeded();
        db.group("g", "alice", &["bob"]);
        let get = |user| db.first::<GroupRow>(&stmt::get("g", user)).unwrap();
        assert_eq!(get("bob").is_member, 1);
        assert_eq!(get("carol").is_member, 0);
        assert_eq!(get("alice").is_member, 0); // the owner is not a member row
        let row = get("alice");
        assert_eq!(
            (row.name.as_str(), row.owner_id.as_str(), row.created_at),
            ("g", "alice", NOW)
        );
        assert!(db.returns_nothing(&stmt::get("nope", "alice")));
    }

    #[test]
    fn members_add_and_remove() {
        let db = seeded();
        db.group("g", "alice", &["carol", "bob"]);
        db.member("g", "carol"); // again: no-op
        let rows: Vec<MemberRow> = db.all(&stmt::members("g"));
        let got: Vec<_> = rows.iter().map(MemberRow::who).collect();
        assert_eq!(
            got,
            [
                ("carol", Some("carol@example.com"), Some("carol")),
                ("bob", Some("bob@example.com"), Some("bob"))
            ]
        );
        // Members must be users (foreign key).
        assert!(db.try_rows(&stmt::add_member("g", "ghost", NOW)).is_err());

        let removed: Option<serde_json::Value> = db.first(&stmt::remove_member("g", "carol"));
        assert_eq!(removed, Some(serde_json::json!({ "user_id": "carol" })));
        let again: Option<serde_json::Value> = db.first(&stmt::remove_member("g", "carol"));
        assert_eq!(again, None);
        assert_eq!(db.column("SELECT user_id FROM group_members"), ["bob"]);
    }

    #[test]
    fn delete_removes_memberships_and_shares_so_access_stops() {
        let db = seeded();
        db.project("p", "alice");
        db.group("g", "alice", &["bob"]);
        db.group("h", "alice", &["bob"]);
        db.share("to-g", "instance:p-main", "group:g", "write", "alice");
        db.share("to-g2", "project:p", "group:g", "read", "alice");
        db.share("to-h", "project:p", "group:h", "read", "alice");
        db.share("to-carol", "project:p", "user:carol", "read", "alice");
        assert_eq!(
            instance_role_of(&db, "p-main", "bob"),
            Some(Permission::Write)
        );

        db.batch(&stmt::delete("g"));

        assert_eq!(db.ids("groups"), ["h"]);
        assert_eq!(db.column("SELECT group_id FROM group_members"), ["h"]);
        assert_eq!(db.ids("shares"), ["to-carol", "to-h"]);
        assert_eq!(
            instance_role_of(&db, "p-main", "bob"),
            Some(Permission::Read)
        );
        db.batch(&stmt::delete("h"));
        assert_eq!(instance_role_of(&db, "p-main", "bob"), None);
        assert_eq!(db.count("group_members"), 0);
        db.batch(&stmt::delete("h")); // replay is harmless
    }
}

//! Rows of the `shares` table: a permission on a project or an instance
//! granted to a user, a group or everyone.

use serde::{Deserialize, Serialize};
use worker::D1Database;

use super::IdRow;
use crate::error::ApiError;
use crate::permission::Permission;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ShareListRow {
    pub id: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub permission: String,
    pub created_at: i64,
    pub target_email: Option<String>,
    pub target_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShareRow {
    pub id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub permission: String,
}

// --- SQL --------------------------------------------------------------------

/// `?1` resource type, `?2` resource id; oldest first, with the target's
/// email and name (a group's name for group shares).
pub const SELECT_FOR_RESOURCE: &str =
    "SELECT s.id, s.target_type, s.target_id, s.permission, s.created_at,
        u.email AS target_email,
        CASE s.target_type WHEN 'group' THEN g.name ELSE u.name END AS target_name
   FROM shares s
   LEFT JOIN users u ON s.target_type = 'user' AND u.id = s.target_id
   LEFT JOIN groups g ON s.target_type = 'group' AND g.id = s.target_id
  WHERE s.resource_type = ?1 AND s.resource_id = ?2
  ORDER BY s.created_at, s.rowid";

/// `?1` share id.
pub const SELECT_SHARE: &str =
    "SELECT id, resource_type, resource_id, target_type, target_id, permission
   FROM shares WHERE id = ?1";

/// `?1` resource type, `?2` resource id, `?3` target type, `?4` target id or
/// NULL: the share of that resource to that target (the unique index).
pub const SELECT_EXISTING: &str =
    "SELECT id FROM shares WHERE resource_type = ?1 AND resource_id = ?2
    AND target_type = ?3 AND COALESCE(target_id, '') = COALESCE(?4, '')";

/// `?1` share id, `?2` permission.
pub const UPDATE_PERMISSION: &str = "UPDATE shares SET permission = ?2 WHERE id = ?1";

/// `?1` id, `?2` resource type, `?3` resource id, `?4` target type,
/// `?5` target id or NULL, `?6` permission, `?7` created by, `?8` now
/// (`NewShare`).
pub const INSERT_SHARE: &str =
    "INSERT INTO shares (id, resource_type, resource_id, target_type, target_id, permission,
                     created_by, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// `?1` share id.
pub const DELETE_SHARE: &str = "DELETE FROM shares WHERE id = ?1";

new_row! {
    /// A new share.
    NewShare => INSERT_SHARE {
        id: &'a str, resource_type: &'a str, resource_id: &'a str,
        target_type: &'a str, target_id: Option<&'a str>,
        permission: Permission, created_by: &'a str, created_at: i64,
    }
}

stmt_module! {
    fn list(resource_type: &'a str, resource_id: &'a str) => SELECT_FOR_RESOURCE;
    fn get(id: &'a str) => SELECT_SHARE;
    /// The share of `share`'s resource to its target, if any.
    fn find_existing(share: &NewShare<'a>) => SELECT_EXISTING(
        share.resource_type, share.resource_id, share.target_type, share.target_id,
    );
    fn set_permission(id: &'a str, permission: Permission) => UPDATE_PERMISSION;
    fn delete(id: &'a str) => DELETE_SHARE;
}

// --- D1 ---------------------------------------------------------------------

/// Grants `share.permission`; granting the same target again updates the
/// existing row instead. Returns the share's id.
pub async fn grant(db: &D1Database, share: &NewShare<'_>) -> Result<String, ApiError> {
    let existing: Option<IdRow> = stmt::find_existing(share).first(db).await?;
    if let Some(IdRow { id }) = existing {
        stmt::set_permission(&id, share.permission).run(db).await?;
        return Ok(id);
    }
    share.insert().run(db).await?;
    Ok(share.id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{new_share, TestDb, NOW};

    /// `grant` over the native database, step for step.
    fn grant(db: &TestDb, share: &NewShare<'_>) -> String {
        let existing: Option<IdRow> = db.first(&stmt::find_existing(share));
        if let Some(IdRow { id }) = existing {
            assert_eq!(db.run(&stmt::set_permission(&id, share.permission)), 1);
            return id;
        }
        db.run(&share.insert());
        share.id.to_string()
    }

    /// A share by alice, made at `at`.
    fn share<'a>(
        id: &'a str,
        resource: &'a str,
        target: &'a str,
        perm: &'a str,
        at: i64,
    ) -> NewShare<'a> {
        NewShare {
            created_at: at,
            ..new_share(id, resource, target, perm, "alice")
        }
    }

    fn seeded() -> TestDb {
        let db = TestDb::with_users(&["alice", "bob"]);
        db.project("p", "alice");
        db.group("g", "alice", &[]);
        db
    }

    #[test]
    fn grant_inserts_then_updates_the_same_target() {
        let db = seeded();
        let a = grant(&db, &share("a", "project:p", "user:bob", "read", NOW));
        let b = grant(&db, &share("b", "project:p", "user:bob", "admin", NOW + 1));
        assert_eq!((a.as_str(), b.as_str()), ("a", "a"));
        let row: ShareRow = db.first(&stmt::get("a")).unwrap();
        assert_eq!(
            (row.resource_type.as_str(), row.resource_id.as_str()),
            ("project", "p")
        );
        assert_eq!(
            (
                row.target_type.as_str(),
                row.target_id.as_deref(),
                row.permission.as_str()
            ),
            ("user", Some("bob"), "admin")
        );

        // Public shares have no target id; a second one is the same share.
        let c = grant(&db, &share("c", "project:p", "public", "read", NOW));
        let d = grant(&db, &share("d", "project:p", "public", "write", NOW));
        assert_eq!((c.as_str(), d.as_str()), ("c", "c"));
        // Other targets and resources are other shares.
        grant(&db, &share("e", "project:p", "group:g", "read", NOW));
        grant(&db, &share("f", "instance:p-main", "public", "read", NOW));
        assert_eq!(db.ids("shares"), ["a", "c", "e", "f"]);
        assert!(db.returns_nothing(&stmt::get("b")));

        // The unique index backs this up for racing grants.
        let dup = share("dup", "project:p", "public", "read", NOW);
        assert!(db.try_rows(&dup.insert()).is_err());
    }

    #[test]
    fn list_names_each_target_oldest_first() {
        let db = seeded();
        grant(&db, &share("s1", "project:p", "group:g", "write", NOW + 1));
        grant(&db, &share("s2", "project:p", "user:bob", "read", NOW));
        grant(&db, &share("s3", "project:p", "public", "read", NOW + 1));
        grant(
            &db,
            &share("s4", "instance:p-main", "user:bob", "admin", NOW),
        );
        let rows: Vec<ShareListRow> = db.all(&stmt::list("project", "p"));
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.target_type.as_str(),
                    r.target_id.as_deref(),
                    r.permission.as_str(),
                    r.target_email.as_deref(),
                    r.target_name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "s2",
                    "user",
                    Some("bob"),
                    "read",
                    Some("bob@example.com"),
                    Some("bob")
                ),
                ("s1", "group", Some("g"), "write", None, Some("g")),
                ("s3", "public", None, "read", None, None),
            ]
        );
        assert_eq!(rows[0].created_at, NOW);
        let on_instance: Vec<ShareListRow> = db.all(&stmt::list("instance", "p-main"));
        assert_eq!(on_instance.len(), 1);
        assert!(db.returns_nothing(&stmt::list("instance", "p")));
    }

    #[test]
    fn delete_removes_one_share() {
        let db = seeded();
        db.share("s1", "project:p", "user:bob", "read", "alice");
        db.share("s2", "project:p", "public", "read", "alice");
        assert_eq!(db.run(&stmt::delete("s1")), 1);
        assert_eq!(db.run(&stmt::delete("s1")), 0);
        assert_eq!(db.ids("shares"), ["s2"]);
    }
}

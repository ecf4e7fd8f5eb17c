//! Rows of the `shares` table: a permission on a project or an instance
//! granted to a user, a group or everyone.

use serde::{Deserialize, Serialize};
use worker::D1Database;

use super::{now_seconds, Arg, IdRow, Statement};
use crate::error::ApiError;

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
/// `?5` target id or NULL, `?6` permission, `?7` created by, `?8` now.
pub const INSERT_SHARE: &str =
    "INSERT INTO shares (id, resource_type, resource_id, target_type, target_id, permission,
                     created_by, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// `?1` share id.
pub const DELETE_SHARE: &str = "DELETE FROM shares WHERE id = ?1";

/// The statements with their parameters bound in order.
pub mod stmt {
    use super::*;

    pub fn list<'a>(resource_type: &'a str, resource_id: &'a str) -> Statement<'a> {
        Statement::new(
            SELECT_FOR_RESOURCE,
            [Arg::Text(resource_type), Arg::Text(resource_id)],
        )
    }

    pub fn get(id: &str) -> Statement<'_> {
        Statement::new(SELECT_SHARE, [Arg::Text(id)])
    }

    pub fn find_existing<'a>(
        resource_type: &'a str,
        resource_id: &'a str,
        target_type: &'a str,
        target_id: Option<&'a str>,
    ) -> Statement<'a> {
        Statement::new(
            SELECT_EXISTING,
            [
                Arg::Text(resource_type),
                Arg::Text(resource_id),
                Arg::Text(target_type),
                Arg::opt_text(target_id),
            ],
        )
    }

    pub fn set_permission<'a>(id: &'a str, permission: &'a str) -> Statement<'a> {
        Statement::new(UPDATE_PERMISSION, [Arg::Text(id), Arg::Text(permission)])
    }

    /// The fields of a new share, in `INSERT_SHARE` order.
    pub struct NewShare<'a> {
        pub id: &'a str,
        pub resource_type: &'a str,
        pub resource_id: &'a str,
        pub target_type: &'a str,
        pub target_id: Option<&'a str>,
        pub permission: &'a str,
        pub created_by: &'a str,
    }

    pub fn insert<'a>(share: &NewShare<'a>, now: i64) -> Statement<'a> {
        Statement::new(
            INSERT_SHARE,
            [
                Arg::Text(share.id),
                Arg::Text(share.resource_type),
                Arg::Text(share.resource_id),
                Arg::Text(share.target_type),
                Arg::opt_text(share.target_id),
                Arg::Text(share.permission),
                Arg::Text(share.created_by),
                Arg::Int(now),
            ],
        )
    }

    pub fn delete(id: &str) -> Statement<'_> {
        Statement::new(DELETE_SHARE, [Arg::Text(id)])
    }
}

// --- D1 ---------------------------------------------------------------------

pub async fn list(
    db: &D1Database,
    resource_type: &str,
    resource_id: &str,
) -> Result<Vec<ShareListRow>, ApiError> {
    stmt::list(resource_type, resource_id).all(db).await
}

pub async fn get(db: &D1Database, id: &str) -> Result<Option<ShareRow>, ApiError> {
    stmt::get(id).first(db).await
}

/// Grants `permission`; granting the same target again updates the
/// existing row. Returns the share's id.
#[allow(clippy::too_many_arguments)]
pub async fn grant(
    db: &D1Database,
    new_id: &str,
    resource_type: &str,
    resource_id: &str,
    target_type: &str,
    target_id: Option<&str>,
    permission: &str,
    created_by: &str,
) -> Result<String, ApiError> {
    let existing: Option<IdRow> =
        stmt::find_existing(resource_type, resource_id, target_type, target_id)
            .first(db)
            .await?;
    if let Some(IdRow { id }) = existing {
        stmt::set_permission(&id, permission).run(db).await?;
        return Ok(id);
    }
    let share = stmt::NewShare {
        id: new_id,
        resource_type,
        resource_id,
        target_type,
        target_id,
        permission,
        created_by,
    };
    stmt::insert(&share, now_seconds()).run(db).await?;
    Ok(new_id.to_string())
}

pub async fn delete(db: &D1Database, id: &str) -> Result<(), ApiError> {
    stmt::delete(id).run(db).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{TestDb, NOW};

    /// `grant` over the native database, step for step.
    #[allow(clippy::too_many_arguments)]
    fn grant(
        db: &TestDb,
        new_id: &str,
        resource_type: &str,
        resource_id: &str,
        target_type: &str,
        target_id: Option<&str>,
        permission: &str,
        created_by: &str,
        now: i64,
    ) -> String {
        let existing: Option<IdRow> = db.first(&stmt::find_existing(
            resource_type,
            resource_id,
            target_type,
            target_id,
        ));
        if let Some(IdRow { id }) = existing {
            assert_eq!(db.run(&stmt::set_permission(&id, permission)), 1);
            return id;
        }
        let share = stmt::NewShare {
            id: new_id,
            resource_type,
            resource_id,
            target_type,
            target_id,
            permission,
            created_by,
        };
        db.run(&stmt::insert(&share, now));
        new_id.to_string()
    }

    fn seeded() -> TestDb {
        let db = TestDb::new();
        db.user("alice");
        db.user("bob");
        db.project("p", "alice");
        db.group("g", "alice");
        db
    }

    #[test]
    fn grant_inserts_then_updates_the_same_target() {
        let db = seeded();
        let a = grant(
            &db,
            "a",
            "project",
            "p",
            "user",
            Some("bob"),
            "read",
            "alice",
            NOW,
        );
        let b = grant(
            &db,
            "b",
            "project",
            "p",
            "user",
            Some("bob"),
            "admin",
            "alice",
            NOW + 1,
        );
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
        let c = grant(
            &db, "c", "project", "p", "public", None, "read", "alice", NOW,
        );
        let d = grant(
            &db, "d", "project", "p", "public", None, "write", "alice", NOW,
        );
        assert_eq!((c.as_str(), d.as_str()), ("c", "c"));
        // Other targets and resources are other shares.
        grant(
            &db,
            "e",
            "project",
            "p",
            "group",
            Some("g"),
            "read",
            "alice",
            NOW,
        );
        grant(
            &db, "f", "instance", "p-main", "public", None, "read", "alice", NOW,
        );
        assert_eq!(db.ids("shares"), ["a", "c", "e", "f"]);
        assert!(db.first::<ShareRow>(&stmt::get("b")).is_none());

        // The unique index backs this up for racing grants.
        let dup = stmt::NewShare {
            id: "dup",
            resource_type: "project",
            resource_id: "p",
            target_type: "public",
            target_id: None,
            permission: "read",
            created_by: "alice",
        };
        assert!(db.try_rows(&stmt::insert(&dup, NOW)).is_err());
    }

    #[test]
    fn list_names_each_target_oldest_first() {
        let db = seeded();
        grant(
            &db,
            "s1",
            "project",
            "p",
            "group",
            Some("g"),
            "write",
            "alice",
            NOW + 1,
        );
        grant(
            &db,
            "s2",
            "project",
            "p",
            "user",
            Some("bob"),
            "read",
            "alice",
            NOW,
        );
        grant(
            &db,
            "s3",
            "project",
            "p",
            "public",
            None,
            "read",
            "alice",
            NOW + 1,
        );
        grant(
            &db,
            "s4",
            "instance",
            "p-main",
            "user",
            Some("bob"),
            "admin",
            "alice",
            NOW,
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
        assert!(db
            .all::<ShareListRow>(&stmt::list("instance", "p"))
            .is_empty());
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

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

//! Rows of the `groups` and `group_members` tables.

use serde::{Deserialize, Serialize};
use worker::D1Database;

use super::{now_seconds, run_batch, Arg, Statement};
use crate::error::ApiError;

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

/// The statements with their parameters bound in order.
pub mod stmt {
    use super::*;

    pub fn list_for_user(user_id: &str) -> Statement<'_> {
        Statement::new(SELECT_FOR_USER, [Arg::Text(user_id)])
    }

    pub fn create<'a>(id: &'a str, name: &'a str, owner_id: &'a str, now: i64) -> Statement<'a> {
        Statement::new(
            INSERT_GROUP,
            [
                Arg::Text(id),
                Arg::Text(name),
                Arg::Text(owner_id),
                Arg::Int(now),
            ],
        )
    }

    pub fn get<'a>(id: &'a str, user_id: &'a str) -> Statement<'a> {
        Statement::new(SELECT_GROUP, [Arg::Text(id), Arg::Text(user_id)])
    }

    pub fn members(group_id: &str) -> Statement<'_> {
        Statement::new(SELECT_MEMBERS, [Arg::Text(group_id)])
    }

    /// One batch.
    pub fn delete(id: &str) -> Vec<Statement<'_>> {
        [DELETE_SHARES_TO_GROUP, DELETE_GROUP_MEMBERS, DELETE_GROUP]
            .into_iter()
            .map(|sql| Statement::new(sql, [Arg::Text(id)]))
            .collect()
    }

    pub fn add_member<'a>(group_id: &'a str, user_id: &'a str, now: i64) -> Statement<'a> {
        Statement::new(
            INSERT_MEMBER,
            [Arg::Text(group_id), Arg::Text(user_id), Arg::Int(now)],
        )
    }

    pub fn remove_member<'a>(group_id: &'a str, user_id: &'a str) -> Statement<'a> {
        Statement::new(DELETE_MEMBER, [Arg::Text(group_id), Arg::Text(user_id)])
    }
}

// --- D1 ---------------------------------------------------------------------

pub async fn list_for_user(db: &D1Database, user_id: &str) -> Result<Vec<GroupListRow>, ApiError> {
    stmt::list_for_user(user_id).all(db).await
}

pub async fn create(db: &D1Database, id: &str, name: &str, owner_id: &str) -> Result<(), ApiError> {
    stmt::create(id, name, owner_id, now_seconds())
        .run(db)
        .await
}

pub async fn get(db: &D1Database, id: &str, user_id: &str) -> Result<Option<GroupRow>, ApiError> {
    stmt::get(id, user_id).first(db).await
}

pub async fn members(db: &D1Database, group_id: &str) -> Result<Vec<MemberRow>, ApiError> {
    stmt::members(group_id).all(db).await
}

/// Deletes the group, its memberships and every share to it.
pub async fn delete(db: &D1Database, id: &str) -> Result<(), ApiError> {
    run_batch(db, &stmt::delete(id)).await
}

pub async fn add_member(db: &D1Database, group_id: &str, user_id: &str) -> Result<(), ApiError> {
    stmt::add_member(group_id, user_id, now_seconds())
        .run(db)
        .await
}

/// Removes a membership; returns whether there was one.
pub async fn remove_member(
    db: &D1Database,
    group_id: &str,
    user_id: &str,
) -> Result<bool, ApiError> {
    let removed: Option<serde_json::Value> =
        stmt::remove_member(group_id, user_id).first(db).await?;
    Ok(removed.is_some())
}

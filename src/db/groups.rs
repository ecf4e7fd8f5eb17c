//! Rows of the `groups` and `group_members` tables.

use serde::{Deserialize, Serialize};
use worker::D1Database;

use super::{int, now_seconds, text};
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

pub async fn list_for_user(db: &D1Database, user_id: &str) -> Result<Vec<GroupListRow>, ApiError> {
    Ok(db
        .prepare(
            "SELECT g.id, g.name, g.owner_id, g.created_at,
                    CASE WHEN g.owner_id = ?1 THEN 'owner' ELSE 'member' END AS role
               FROM groups g
              WHERE g.owner_id = ?1
                 OR g.id IN (SELECT group_id FROM group_members WHERE user_id = ?1)
              ORDER BY g.created_at DESC, g.rowid DESC",
        )
        .bind(&[text(user_id)])?
        .all()
        .await?
        .results()?)
}

pub async fn create(db: &D1Database, id: &str, name: &str, owner_id: &str) -> Result<(), ApiError> {
    db.prepare("INSERT INTO groups (id, name, owner_id, created_at) VALUES (?1, ?2, ?3, ?4)")
        .bind(&[text(id), text(name), text(owner_id), int(now_seconds())])?
        .run()
        .await?;
    Ok(())
}

pub async fn get(db: &D1Database, id: &str, user_id: &str) -> Result<Option<GroupRow>, ApiError> {
    Ok(db
        .prepare(
            "SELECT g.id, g.name, g.owner_id, g.created_at,
                    EXISTS (SELECT 1 FROM group_members m
                             WHERE m.group_id = g.id AND m.user_id = ?2) AS is_member
               FROM groups g WHERE g.id = ?1",
        )
        .bind(&[text(id), text(user_id)])?
        .first(None)
        .await?)
}

pub async fn members(db: &D1Database, group_id: &str) -> Result<Vec<MemberRow>, ApiError> {
    Ok(db
        .prepare(
            "SELECT m.user_id, u.email, u.name FROM group_members m
               LEFT JOIN users u ON u.id = m.user_id
              WHERE m.group_id = ?1 ORDER BY m.created_at, m.rowid",
        )
        .bind(&[text(group_id)])?
        .all()
        .await?
        .results()?)
}

/// Deletes the group, its memberships and every share to it.
pub async fn delete(db: &D1Database, id: &str) -> Result<(), ApiError> {
    db.batch(vec![
        db.prepare("DELETE FROM shares WHERE target_type = 'group' AND target_id = ?1")
            .bind(&[text(id)])?,
        db.prepare("DELETE FROM group_members WHERE group_id = ?1")
            .bind(&[text(id)])?,
        db.prepare("DELETE FROM groups WHERE id = ?1")
            .bind(&[text(id)])?,
    ])
    .await?;
    Ok(())
}

pub async fn add_member(db: &D1Database, group_id: &str, user_id: &str) -> Result<(), ApiError> {
    db.prepare(
        "INSERT INTO group_members (group_id, user_id, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(group_id, user_id) DO NOTHING",
    )
    .bind(&[text(group_id), text(user_id), int(now_seconds())])?
    .run()
    .await?;
    Ok(())
}

/// Removes a membership; returns whether there was one.
pub async fn remove_member(
    db: &D1Database,
    group_id: &str,
    user_id: &str,
) -> Result<bool, ApiError> {
    let removed: Option<serde_json::Value> = db
        .prepare("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2 RETURNING user_id")
        .bind(&[text(group_id), text(user_id)])?
        .first(None)
        .await?;
    Ok(removed.is_some())
}

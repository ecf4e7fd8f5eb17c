//! Rows of the `shares` table: a permission on a project or an instance
//! granted to a user, a group or everyone.

use serde::{Deserialize, Serialize};
use worker::D1Database;

use super::{int, now_seconds, opt_text, text};
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

pub async fn list(
    db: &D1Database,
    resource_type: &str,
    resource_id: &str,
) -> Result<Vec<ShareListRow>, ApiError> {
    Ok(db
        .prepare(
            "SELECT s.id, s.target_type, s.target_id, s.permission, s.created_at,
                    u.email AS target_email,
                    CASE s.target_type WHEN 'group' THEN g.name ELSE u.name END AS target_name
               FROM shares s
               LEFT JOIN users u ON s.target_type = 'user' AND u.id = s.target_id
               LEFT JOIN groups g ON s.target_type = 'group' AND g.id = s.target_id
              WHERE s.resource_type = ?1 AND s.resource_id = ?2
              ORDER BY s.created_at, s.rowid",
        )
        .bind(&[text(resource_type), text(resource_id)])?
        .all()
        .await?
        .results()?)
}

pub async fn get(db: &D1Database, id: &str) -> Result<Option<ShareRow>, ApiError> {
    Ok(db
        .prepare(
            "SELECT id, resource_type, resource_id, target_type, target_id, permission
               FROM shares WHERE id = ?1",
        )
        .bind(&[text(id)])?
        .first(None)
        .await?)
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
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let existing: Option<Id> = db
        .prepare(
            "SELECT id FROM shares WHERE resource_type = ?1 AND resource_id = ?2
                AND target_type = ?3 AND COALESCE(target_id, '') = COALESCE(?4, '')",
        )
        .bind(&[
            text(resource_type),
            text(resource_id),
            text(target_type),
            opt_text(target_id),
        ])?
        .first(None)
        .await?;
    if let Some(Id { id }) = existing {
        db.prepare("UPDATE shares SET permission = ?2 WHERE id = ?1")
            .bind(&[text(&id), text(permission)])?
            .run()
            .await?;
        return Ok(id);
    }
    db.prepare(
        "INSERT INTO shares (id, resource_type, resource_id, target_type, target_id, permission,
                             created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(&[
        text(new_id),
        text(resource_type),
        text(resource_id),
        text(target_type),
        opt_text(target_id),
        text(permission),
        text(created_by),
        int(now_seconds()),
    ])?
    .run()
    .await?;
    Ok(new_id.to_string())
}

pub async fn delete(db: &D1Database, id: &str) -> Result<(), ApiError> {
    db.prepare("DELETE FROM shares WHERE id = ?1")
        .bind(&[text(id)])?
        .run()
        .await?;
    Ok(())
}

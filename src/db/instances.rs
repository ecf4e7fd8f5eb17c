//! Rows of the `instances` table, with the facts role resolution needs.

use serde::Deserialize;
use worker::D1Database;

use super::{int, level_to_permission, now_seconds, opt_text, share_level_sql, text};
use crate::auth::roles::AccessFacts;
use crate::error::ApiError;

#[derive(Debug, Clone, Deserialize)]
pub struct InstanceRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub is_readonly: i64,
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
        AccessFacts {
            owns_project: self.project_owner == user_id,
            project_shares: level_to_permission(self.project_level)
                .into_iter()
                .collect(),
            instance_shares: level_to_permission(self.instance_level)
                .into_iter()
                .collect(),
        }
    }

    pub fn read_only(&self) -> bool {
        self.is_readonly != 0
    }
}

fn select_sql(filter: &str) -> String {
    format!(
        "SELECT i.id, i.project_id, i.name, i.is_readonly, i.parent_instance_id,
                i.created_at, i.updated_at, p.owner_id AS project_owner,
                {} AS project_level, {} AS instance_level
           FROM instances i JOIN projects p ON p.id = i.project_id
          WHERE {filter}",
        share_level_sql("project", "i.project_id"),
        share_level_sql("instance", "i.id"),
    )
}

/// One instance with the caller's (`user_id`) share facts.
pub async fn get(
    db: &D1Database,
    instance_id: &str,
    user_id: &str,
) -> Result<Option<InstanceRow>, ApiError> {
    Ok(db
        .prepare(select_sql("i.id = ?1"))
        .bind(&[text(instance_id), text(user_id)])?
        .first(None)
        .await?)
}

/// The project's instances with the caller's share facts, newest first.
pub async fn list_for_project(
    db: &D1Database,
    project_id: &str,
    user_id: &str,
) -> Result<Vec<InstanceRow>, ApiError> {
    Ok(db
        .prepare(select_sql(
            "i.project_id = ?1 ORDER BY i.created_at DESC, i.rowid DESC",
        ))
        .bind(&[text(project_id), text(user_id)])?
        .all()
        .await?
        .results()?)
}

pub async fn create(
    db: &D1Database,
    id: &str,
    project_id: &str,
    owner_id: &str,
    name: &str,
    parent: Option<&str>,
) -> Result<i64, ApiError> {
    let now = now_seconds();
    db.prepare(
        "INSERT INTO instances (id, project_id, owner_id, name, parent_instance_id, is_readonly,
                                created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6)",
    )
    .bind(&[
        text(id),
        text(project_id),
        text(owner_id),
        text(name),
        opt_text(parent),
        int(now),
    ])?
    .run()
    .await?;
    Ok(now)
}

pub async fn update(
    db: &D1Database,
    id: &str,
    name: Option<&str>,
    read_only: Option<bool>,
) -> Result<(), ApiError> {
    db.prepare(
        "UPDATE instances SET name = COALESCE(?2, name),
                is_readonly = COALESCE(?3, is_readonly), updated_at = ?4
          WHERE id = ?1",
    )
    .bind(&[
        text(id),
        opt_text(name),
        read_only.map_or(worker::wasm_bindgen::JsValue::NULL, |r| int(i64::from(r))),
        int(now_seconds()),
    ])?
    .run()
    .await?;
    Ok(())
}

/// Deletes the instance row, its shares, its tokens and keys scoped to it.
pub async fn delete(db: &D1Database, id: &str) -> Result<(), ApiError> {
    db.batch(vec![
        db.prepare("DELETE FROM shares WHERE resource_type = 'instance' AND resource_id = ?1")
            .bind(&[text(id)])?,
        db.prepare("DELETE FROM ws_tokens WHERE instance_id = ?1")
            .bind(&[text(id)])?,
        db.prepare("DELETE FROM api_keys WHERE scope_type = 'instance' AND scope_id = ?1")
            .bind(&[text(id)])?,
        db.prepare("DELETE FROM instances WHERE id = ?1")
            .bind(&[text(id)])?,
    ])
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReadOnlyFlag {
    pub is_readonly: i64,
}

/// The instance's read-only flag, or `None` when no such instance exists.
pub async fn read_only(db: &D1Database, instance_id: &str) -> Result<Option<bool>, ApiError> {
    let row: Option<ReadOnlyFlag> = db
        .prepare("SELECT is_readonly FROM instances WHERE id = ?1")
        .bind(&[text(instance_id)])?
        .first(None)
        .await?;
    Ok(row.map(|r| r.is_readonly != 0))
}

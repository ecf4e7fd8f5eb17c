//! Rows of the `projects` table, with the facts role resolution needs.

use serde::Deserialize;
use worker::D1Database;

use super::{int, level_to_permission, now_seconds, opt_text, share_level_sql, text};
use crate::auth::roles::AccessFacts;
use crate::error::ApiError;
use crate::permission::Permission;

#[derive(Debug, Clone, Deserialize)]
pub struct ProjectRow {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Highest project share reaching the caller (1 read … 3 admin).
    pub project_level: Option<i64>,
    /// 1 when the caller reaches some instance of the project by a share.
    pub via_instance: i64,
}

impl ProjectRow {
    pub fn facts(&self, user_id: &str) -> AccessFacts {
        AccessFacts {
            owns_project: self.owner_id == user_id,
            project_shares: level_to_permission(self.project_level)
                .into_iter()
                .collect(),
            instance_shares: Vec::new(),
        }
    }

    /// The caller's role on the project. A caller reaching the project only
    /// through instance shares sees it as `read` (it can list just those
    /// instances; see docs/decisions.md).
    pub fn role(&self, user_id: &str) -> Option<Permission> {
        crate::auth::roles::project_role(&self.facts(user_id))
            .or((self.via_instance != 0).then_some(Permission::Read))
    }
}

fn select_sql(filter: &str) -> String {
    format!(
        "SELECT p.id, p.owner_id, p.name, p.description, p.created_at, p.updated_at,
                {} AS project_level,
                EXISTS (SELECT 1 FROM instances i WHERE i.project_id = p.id
                        AND {} IS NOT NULL) AS via_instance
           FROM projects p WHERE {filter}",
        share_level_sql("project", "p.id"),
        share_level_sql("instance", "i.id"),
    )
}

/// One project with the caller's (`user_id`) share facts.
pub async fn get(
    db: &D1Database,
    project_id: &str,
    user_id: &str,
) -> Result<Option<ProjectRow>, ApiError> {
    Ok(db
        .prepare(select_sql("p.id = ?1"))
        .bind(&[text(project_id), text(user_id)])?
        .first(None)
        .await?)
}

/// Projects the caller owns or reaches by a user or group share (on the
/// project or one of its instances), newest `updated_at` first. Public
/// shares do not list a project in everyone's list; it stays reachable by id.
pub async fn list_visible(db: &D1Database, user_id: &str) -> Result<Vec<ProjectRow>, ApiError> {
    let personal = "((s.target_type = 'user' AND s.target_id = ?2)
                     OR (s.target_type = 'group' AND s.target_id IN
                          (SELECT group_id FROM group_members WHERE user_id = ?2
                           UNION SELECT id FROM groups WHERE owner_id = ?2)))";
    let filter = format!(
        "?1 = ?1 AND (p.owner_id = ?2 OR p.id IN (
            SELECT s.resource_id FROM shares s WHERE s.resource_type = 'project' AND {personal}
            UNION
            SELECT i.project_id FROM shares s JOIN instances i ON i.id = s.resource_id
             WHERE s.resource_type = 'instance' AND {personal}))
         ORDER BY p.updated_at DESC, p.created_at DESC"
    );
    Ok(db
        .prepare(select_sql(&filter))
        .bind(&[text(""), text(user_id)])?
        .all()
        .await?
        .results()?)
}

/// Creates a project and its default `main` instance in one batch.
pub async fn create(
    db: &D1Database,
    project_id: &str,
    instance_id: &str,
    owner_id: &str,
    name: &str,
    description: Option<&str>,
) -> Result<i64, ApiError> {
    let now = now_seconds();
    db.batch(vec![
        db.prepare(
            "INSERT INTO projects (id, owner_id, name, description, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(&[
            text(project_id),
            text(owner_id),
            text(name),
            opt_text(description),
            int(now),
        ])?,
        db.prepare(
            "INSERT INTO instances (id, project_id, owner_id, name, is_readonly, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'main', 0, ?4, ?4)",
        )
        .bind(&[text(instance_id), text(project_id), text(owner_id), int(now)])?,
    ])
    .await?;
    Ok(now)
}

pub async fn update(
    db: &D1Database,
    project_id: &str,
    name: Option<&str>,
    description: Option<Option<&str>>,
) -> Result<(), ApiError> {
    let keep_description = description.is_none();
    db.prepare(
        "UPDATE projects SET name = COALESCE(?2, name),
                description = CASE WHEN ?3 THEN description ELSE ?4 END,
                updated_at = ?5
          WHERE id = ?1",
    )
    .bind(&[
        text(project_id),
        opt_text(name),
        int(i64::from(keep_description)),
        opt_text(description.flatten()),
        int(now_seconds()),
    ])?
    .run()
    .await?;
    Ok(())
}

/// Ids of the project's instances (to destroy their objects).
pub async fn instance_ids(db: &D1Database, project_id: &str) -> Result<Vec<String>, ApiError> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let rows: Vec<Id> = db
        .prepare("SELECT id FROM instances WHERE project_id = ?1")
        .bind(&[text(project_id)])?
        .all()
        .await?
        .results()?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Deletes the project, its instances, every share on either, tokens and
/// keys scoped to them, in one batch.
pub async fn delete(db: &D1Database, project_id: &str) -> Result<(), ApiError> {
    let id = || text(project_id);
    db.batch(vec![
        db.prepare(
            "DELETE FROM shares WHERE (resource_type = 'project' AND resource_id = ?1)
                OR (resource_type = 'instance' AND resource_id IN
                    (SELECT id FROM instances WHERE project_id = ?1))",
        )
        .bind(&[id()])?,
        db.prepare("DELETE FROM ws_tokens WHERE instance_id IN (SELECT id FROM instances WHERE project_id = ?1)")
            .bind(&[id()])?,
        db.prepare(
            "DELETE FROM api_keys WHERE (scope_type = 'project' AND scope_id = ?1)
                OR (scope_type = 'instance' AND scope_id IN
                    (SELECT id FROM instances WHERE project_id = ?1))",
        )
        .bind(&[id()])?,
        db.prepare("DELETE FROM instances WHERE project_id = ?1").bind(&[id()])?,
        db.prepare("DELETE FROM projects WHERE id = ?1").bind(&[id()])?,
    ])
    .await?;
    Ok(())
}

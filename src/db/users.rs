//! Rows of the `users` table.

use serde::Deserialize;
use worker::D1Database;

use super::{now_seconds, opt_text, text};
use crate::error::ApiError;

#[derive(Debug, Clone, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Makes sure the caller has a row (every authenticated `/api/*` request).
pub async fn ensure(db: &D1Database, user_id: &str) -> Result<(), ApiError> {
    db.prepare(
        "INSERT INTO users (id, clerk_id, created_at) VALUES (?1, ?1, ?2)
         ON CONFLICT(id) DO NOTHING",
    )
    .bind(&[text(user_id), super::int(now_seconds())])?
    .run()
    .await?;
    Ok(())
}

pub async fn get(db: &D1Database, user_id: &str) -> Result<Option<UserRow>, ApiError> {
    Ok(db
        .prepare("SELECT id, email, name FROM users WHERE id = ?1")
        .bind(&[text(user_id)])?
        .first(None)
        .await?)
}

pub async fn find_by_email(db: &D1Database, email: &str) -> Result<Option<UserRow>, ApiError> {
    Ok(db
        .prepare("SELECT id, email, name FROM users WHERE email = ?1 COLLATE NOCASE LIMIT 1")
        .bind(&[text(email)])?
        .first(None)
        .await?)
}

/// Creates or updates a user from Clerk (webhook); replays are harmless.
pub async fn upsert(
    db: &D1Database,
    user_id: &str,
    email: Option<&str>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    db.prepare(
        "INSERT INTO users (id, clerk_id, email, name, created_at) VALUES (?1, ?1, ?2, ?3, ?4)
         ON CONFLICT(id) DO UPDATE SET email = excluded.email, name = excluded.name",
    )
    .bind(&[
        text(user_id),
        opt_text(email),
        opt_text(name),
        super::int(now_seconds()),
    ])?
    .run()
    .await?;
    Ok(())
}

/// Every instance in projects the user owns.
pub async fn owned_instance_ids(db: &D1Database, user_id: &str) -> Result<Vec<String>, ApiError> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let rows: Vec<Id> = db
        .prepare(
            "SELECT i.id FROM instances i JOIN projects p ON p.id = i.project_id
              WHERE p.owner_id = ?1",
        )
        .bind(&[text(user_id)])?
        .all()
        .await?
        .results()?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Removes the user and everything it owns or was given: its projects and
/// their instances, every share on those, its groups and the shares to
/// them, shares to the user, its keys, tokens and memberships. One batch,
/// so a failure leaves nothing half-deleted; replaying it is harmless.
pub async fn delete_everything(db: &D1Database, user_id: &str) -> Result<(), ApiError> {
    let owned_instances = "SELECT i.id FROM instances i JOIN projects p ON p.id = i.project_id
                            WHERE p.owner_id = ?1";
    let statements = [
        format!(
            "DELETE FROM shares WHERE (resource_type = 'instance' AND resource_id IN ({owned_instances}))
                OR (resource_type = 'project' AND resource_id IN
                    (SELECT id FROM projects WHERE owner_id = ?1))"
        ),
        "DELETE FROM shares WHERE target_type = 'group' AND target_id IN
            (SELECT id FROM groups WHERE owner_id = ?1)"
            .to_string(),
        "DELETE FROM shares WHERE (target_type = 'user' AND target_id = ?1) OR created_by = ?1"
            .to_string(),
        format!("DELETE FROM ws_tokens WHERE user_id = ?1 OR instance_id IN ({owned_instances})"),
        format!(
            "DELETE FROM api_keys WHERE user_id = ?1
                OR (scope_type = 'instance' AND scope_id IN ({owned_instances}))
                OR (scope_type = 'project' AND scope_id IN
                    (SELECT id FROM projects WHERE owner_id = ?1))"
        ),
        "DELETE FROM group_members WHERE user_id = ?1 OR group_id IN
            (SELECT id FROM groups WHERE owner_id = ?1)"
            .to_string(),
        "DELETE FROM groups WHERE owner_id = ?1".to_string(),
        format!("DELETE FROM instances WHERE id IN ({owned_instances})"),
        "DELETE FROM projects WHERE owner_id = ?1".to_string(),
        "DELETE FROM users WHERE id = ?1".to_string(),
    ];
    let mut batch = Vec::with_capacity(statements.len());
    for sql in statements {
        batch.push(db.prepare(sql).bind(&[text(user_id)])?);
    }
    db.batch(batch).await?;
    Ok(())
}

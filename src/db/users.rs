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

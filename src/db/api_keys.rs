//! Rows of the `api_keys` table. Keys are found by the SHA-256 of the
//! presented key (unique index); the key itself is never stored.

use serde::Deserialize;
use worker::D1Database;

use super::{int, now_seconds, opt_text, text};
use crate::error::ApiError;

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub key_prefix: String,
    pub scope_type: String,
    pub scope_id: Option<String>,
    pub permissions: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str =
    "id, user_id, name, key_prefix, scope_type, scope_id, permissions, created_at, last_used_at";

pub async fn find_by_hash(db: &D1Database, key_hash: &str) -> Result<Option<ApiKeyRow>, ApiError> {
    Ok(db
        .prepare(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE key_hash = ?1"
        ))
        .bind(&[text(key_hash)])?
        .first(None)
        .await?)
}

/// Records use, at most once a minute per key (a write per request would
/// cost more than the information is worth).
pub async fn touch(db: &D1Database, row: &ApiKeyRow) -> Result<(), ApiError> {
    let now = now_seconds();
    if row.last_used_at.is_some_and(|t| now - t < 60) {
        return Ok(());
    }
    db.prepare("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
        .bind(&[text(&row.id), int(now)])?
        .run()
        .await?;
    Ok(())
}

pub async fn list_for_user(db: &D1Database, user_id: &str) -> Result<Vec<ApiKeyRow>, ApiError> {
    Ok(db
        .prepare(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE user_id = ?1 ORDER BY created_at DESC, rowid DESC"
        ))
        .bind(&[text(user_id)])?
        .all()
        .await?
        .results()?)
}

pub struct NewKey<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub key_hash: &'a str,
    pub key_prefix: &'a str,
    pub scope_type: &'a str,
    pub scope_id: Option<&'a str>,
    pub permissions_json: &'a str,
}

pub async fn insert(db: &D1Database, key: &NewKey<'_>) -> Result<(), ApiError> {
    db.prepare(
        "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, scope_type, scope_id,
                               permissions, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .bind(&[
        text(key.id),
        text(key.user_id),
        text(key.name),
        text(key.key_hash),
        text(key.key_prefix),
        text(key.scope_type),
        opt_text(key.scope_id),
        text(key.permissions_json),
        int(now_seconds()),
    ])?
    .run()
    .await?;
    Ok(())
}

/// Deletes the key if `user_id` owns it; returns whether it did.
pub async fn delete_owned(db: &D1Database, id: &str, user_id: &str) -> Result<bool, ApiError> {
    let deleted: Option<serde_json::Value> = db
        .prepare("DELETE FROM api_keys WHERE id = ?1 AND user_id = ?2 RETURNING id")
        .bind(&[text(id), text(user_id)])?
        .first(None)
        .await?;
    Ok(deleted.is_some())
}

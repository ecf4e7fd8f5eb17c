//! Rows of the `ws_tokens` table: one-time WebSocket tokens, stored hashed.

use serde::Deserialize;
use worker::D1Database;

use super::{int, now_seconds, text};
use crate::error::ApiError;

#[derive(Debug, Clone, Deserialize)]
pub struct TokenRow {
    pub user_id: String,
    pub instance_id: String,
    pub permission: String,
    pub expires_at: i64,
}

/// Stores a token and purges expired ones (opportunistically, here).
pub async fn insert(
    db: &D1Database,
    token_hash: &str,
    user_id: &str,
    instance_id: &str,
    permission: &str,
    expires_at: i64,
) -> Result<(), ApiError> {
    let now = now_seconds();
    db.batch(vec![
        db.prepare("DELETE FROM ws_tokens WHERE expires_at < ?1")
            .bind(&[int(now)])?,
        db.prepare(
            "INSERT INTO ws_tokens (token_hash, user_id, instance_id, permission, expires_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&[
            text(token_hash),
            text(user_id),
            text(instance_id),
            text(permission),
            int(expires_at),
            int(now),
        ])?,
    ])
    .await?;
    Ok(())
}

/// Takes a token: deletes it and returns what it granted, so a second use
/// finds nothing (one statement, so two racing uses cannot both win).
pub async fn take(db: &D1Database, token_hash: &str) -> Result<Option<TokenRow>, ApiError> {
    Ok(db
        .prepare(
            "DELETE FROM ws_tokens WHERE token_hash = ?1
             RETURNING user_id, instance_id, permission, expires_at",
        )
        .bind(&[text(token_hash)])?
        .first(None)
        .await?)
}

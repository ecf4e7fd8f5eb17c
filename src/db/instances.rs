//! Rows of the `instances` table.

use serde::Deserialize;
use worker::D1Database;

use crate::error::ApiError;

#[derive(Debug, Clone, Deserialize)]
pub struct ReadOnlyFlag {
    pub is_readonly: i64,
}

/// The instance's read-only flag, or `None` when no such instance exists.
pub async fn read_only(db: &D1Database, instance_id: &str) -> Result<Option<bool>, ApiError> {
    let row: Option<ReadOnlyFlag> = db
        .prepare("SELECT is_readonly FROM instances WHERE id = ?1")
        .bind(&[instance_id.into()])?
        .first(None)
        .await?;
    Ok(row.map(|r| r.is_readonly != 0))
}

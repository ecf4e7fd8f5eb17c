//! `usage_logs`: one row per metered API call.

use worker::D1Database;

use super::{int, now_seconds, opt_text, text};
use crate::error::ApiError;

pub async fn record(
    db: &D1Database,
    user_id: &str,
    api_key_id: Option<&str>,
    endpoint: &str,
    instance_id: Option<&str>,
) -> Result<(), ApiError> {
    db.prepare(
        "INSERT INTO usage_logs (user_id, api_key_id, endpoint, instance_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&[
        text(user_id),
        opt_text(api_key_id),
        text(endpoint),
        opt_text(instance_id),
        int(now_seconds()),
    ])?
    .run()
    .await?;
    Ok(())
}

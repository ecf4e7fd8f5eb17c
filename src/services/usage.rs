//! Usage metering (webhooks-out.md, "Usage"): one `usage_logs` row per
//! metered call, written where the call is known to reach its upstream (or
//! to write data), with the model and token counts where they are known.

use crate::auth::caller::Caller;
use crate::ctx::Ctx;
use crate::db;
use crate::error::ApiError;

/// What one metered call was.
#[derive(Debug, Clone, Copy, Default)]
pub struct Call<'a> {
    /// The route, e.g. `/api/chat`.
    pub endpoint: &'a str,
    pub instance_id: Option<&'a str>,
    pub model: Option<&'a str>,
    pub tokens_in: Option<i64>,
    pub tokens_out: Option<i64>,
}

#[derive(serde::Deserialize)]
struct RowId {
    id: i64,
}

/// Writes the call's row; returns its id, for [`add_tokens`] when the
/// counts arrive later (a streamed chat). The row belongs to the user
/// acted for, with the API key or delegate that called.
pub async fn record(ctx: &Ctx, caller: &Caller, call: Call<'_>) -> Result<i64, ApiError> {
    let row: Option<RowId> = db::usage::stmt::metered(
        &caller.user_id,
        caller.basis.api_key.as_deref(),
        caller.basis.delegate.as_deref(),
        call.endpoint,
        call.instance_id,
        call.model,
        call.tokens_in,
        call.tokens_out,
        db::now_seconds(),
    )
    .first(&ctx.db()?)
    .await?;
    row.map(|r| r.id)
        .ok_or_else(|| ApiError::internal("usage insert returned no id"))
}

/// Adds token counts reported after the row was written.
pub async fn add_tokens(
    ctx: &Ctx,
    row_id: i64,
    tokens_in: i64,
    tokens_out: i64,
) -> Result<(), ApiError> {
    db::usage::stmt::add_tokens(row_id, tokens_in, tokens_out)
        .run(&ctx.db()?)
        .await
}

//! `POST /api/ws-token`: a one-time, 60-second token for one instance.

use worker::Request;

use super::body::{read_object, MAX_BODY_BYTES};
use super::{json, Answer};
use crate::auth::caller::Caller;
use crate::auth::roles::ws_token_permission;
use crate::auth::secrets::{generate_ws_token, hash_ws_token};
use crate::ctx::Ctx;
use crate::db;
use crate::db::ws_tokens::NewToken;
use crate::error::ApiError;
use crate::ids::is_valid_instance_id;
use crate::permission::Permission;
use crate::services::access::{self, denied};
use crate::services::revocation;

pub const TOKEN_LIFETIME_SECS: i64 = 60;

pub async fn create(req: &mut Request, ctx: &Ctx, caller: &Caller) -> Answer {
    let body = read_object(req, MAX_BODY_BYTES).await?;
    let instance_id = body.req_str("instanceId", 128)?;
    if !is_valid_instance_id(instance_id) {
        return Err(ApiError::bad_request(
            "instanceId is not a valid instance id",
        ));
    }
    let requested = match body.opt_str("permission", 16)? {
        None => None,
        Some(p) => Some(
            Permission::parse_grantable(p)
                .ok_or_else(|| ApiError::bad_request("permission must be read, write or admin"))?,
        ),
    };
    let access = access::instance_data(ctx, caller, instance_id).await?;
    let permission =
        ws_token_permission(Some(access.role), requested).map_err(|d| denied(d, "Instance"))?;

    revocation::note_socket(ctx, caller, instance_id).await?;
    let token =
        generate_ws_token().map_err(|e| ApiError::internal(format!("random token: {e}")))?;
    let now = db::now_seconds();
    let expires_at = now + TOKEN_LIFETIME_SECS;
    let row = NewToken {
        token_hash: &hash_ws_token(&token),
        user_id: &caller.user_id,
        instance_id,
        permission,
        expires_at,
        created_at: now,
        api_key_id: caller.basis.api_key.as_deref(),
        delegate_id: caller.basis.delegate.as_deref(),
        secret_id: caller.basis.secret.as_deref(),
    };
    db::run_batch(&ctx.db()?, &db::ws_tokens::stmt::insert(&row)).await?;
    json(
        200,
        &serde_json::json!({
            "token": token,
            "expiresAt": expires_at,
            "instanceId": instance_id,
            "permission": permission.as_str(),
        }),
    )
}

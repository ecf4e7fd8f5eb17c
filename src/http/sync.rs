//! `GET /sync/:instanceId`: authenticate (token, header, or none), then
//! hand the WebSocket upgrade to the instance's Durable Object with the
//! identity established here.

use worker::Request;

use super::Answer;
use crate::auth::caller::Caller;
use crate::auth::secrets::hash_ws_token;
use crate::auth::verify;
use crate::auth::DEV_USER;
use crate::ctx::Ctx;
use crate::db;
use crate::db::ws_tokens::TokenRow;
use crate::error::ApiError;
use crate::instance::client::{Identity, InstanceClient};
use crate::instance::internal::ReadOnlyFlag;
use crate::permission::Permission;
use crate::services::access::{self, DataAccess};
use crate::services::revocation;

use super::Trace;

pub async fn handle(req: &Request, ctx: &Ctx, instance_id: &str, trace: &mut Trace) -> Answer {
    let upgrade = req.headers().get("Upgrade")?.unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::UpgradeRequired);
    }
    let token = req
        .url()?
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let authorization = req.headers().get("Authorization")?;

    let (identity, read_only) = if let Some(token) = token {
        token_identity(ctx, &token, instance_id).await?
    } else if authorization.is_some() {
        let caller = verify::from_header(ctx, authorization.as_deref()).await?;
        trace.caller(&caller);
        let access = access::instance_data(ctx, &caller, instance_id)
            .await
            .map_err(|_| ApiError::Forbidden("Instance not found or access denied".into()))?;
        user_identity(ctx, caller, access, instance_id).await?
    } else {
        // No D1 round trip here: the object keeps the read-only flag it was
        // last told (see `InstanceClient::configure`).
        let identity = if ctx.development {
            Identity::User {
                user_id: DEV_USER.to_string(),
                permission: Permission::Admin,
                basis: Default::default(),
            }
        } else {
            Identity::Unauthenticated
        };
        (identity, None)
    };
    trace.identity(&identity);
    InstanceClient::with_read_only(&ctx.env, instance_id, read_only)?
        .connect(req, identity, ctx.development)
        .await
}

/// A signed-in caller with data access to the instance, opening a socket
/// or an event stream: noted first, so that revoking its credential (or
/// lowering its role) reaches the connection.
pub(super) async fn user_identity(
    ctx: &Ctx,
    caller: Caller,
    access: DataAccess,
    instance_id: &str,
) -> Result<(Identity, Option<ReadOnlyFlag>), ApiError> {
    revocation::note_socket(ctx, &caller, instance_id).await?;
    let identity = Identity::User {
        user_id: caller.user_id,
        permission: access.role.for_session(),
        basis: caller.basis,
    };
    Ok((identity, Some(access.flag)))
}

/// A one-time token from `POST /api/ws-token`: taken (deleted) on first use.
pub(super) async fn token_identity(
    ctx: &Ctx,
    token: &str,
    instance_id: &str,
) -> Result<(Identity, Option<ReadOnlyFlag>), ApiError> {
    let db = ctx.db()?;
    let row = usable_token(
        db::ws_tokens::stmt::take(&hash_ws_token(token))
            .first(&db)
            .await?,
        instance_id,
    )?;
    let issued = Permission::parse_grantable(&row.permission)
        .ok_or_else(|| ApiError::internal("ws token with an unknown permission"))?;
    // The credential that obtained the token may have been revoked or
    // lowered since (protocol.md §8): the token grants no more than it now.
    let refused = || ApiError::Forbidden("Instance not found or access denied".into());
    let caller = verify::from_basis(ctx, &row.user_id, &row.basis())
        .await?
        .ok_or_else(refused)?;
    let access = access::instance_data(ctx, &caller, instance_id)
        .await
        .map_err(|_| refused())?;
    Ok((
        Identity::User {
            user_id: row.user_id,
            permission: issued.min(access.role.for_session()),
            basis: caller.basis,
        },
        Some(access.flag),
    ))
}

/// A token row as found (taken, or only looked at by the inspector page):
/// it must exist, be unexpired and be for this instance (protocol.md §1).
pub fn usable_token(row: Option<TokenRow>, instance_id: &str) -> Result<TokenRow, ApiError> {
    let row = row.ok_or_else(|| ApiError::Unauthorized("Invalid token".into()))?;
    if row.expires_at < db::now_seconds() {
        return Err(ApiError::Unauthorized("Token expired".into()));
    }
    if row.instance_id != instance_id {
        return Err(ApiError::Forbidden(
            "Token was issued for another instance".into(),
        ));
    }
    Ok(row)
}

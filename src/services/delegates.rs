//! Delegates (delegates.md): machine identities a signed-in user creates,
//! with secrets shown once and grants on instances. Every change that can
//! take access away re-evaluates the live sessions it may concern.

use crate::auth::caller::Caller;
use crate::auth::roles::{authorize_delegate_management, check_grant, Action, DelegateCaps};
use crate::auth::secrets::{
    generate_delegate_id, generate_delegate_secret, generate_secret_id, hash_delegate_secret,
};
use crate::ctx::Ctx;
use crate::db;
use crate::db::delegates::{stmt, DelegateRow, NewDelegate, NewSecret};
use crate::db::reach::stmt as reach;
use crate::error::ApiError;
use crate::instance::internal::Affected;
use crate::permission::Permission;
use crate::services::access::{self, denied};
use crate::services::revocation;

fn random(e: getrandom::Error) -> ApiError {
    ApiError::internal(format!("random id: {e}"))
}

/// The caller's own delegate `delegate_id`; anyone else's does not exist.
pub async fn owned(ctx: &Ctx, caller: &Caller, delegate_id: &str) -> Result<DelegateRow, ApiError> {
    authorize_delegate_management(&caller.principal).map_err(|d| denied(d, "Delegate"))?;
    stmt::owned(delegate_id, &caller.user_id)
        .first(&ctx.db()?)
        .await?
        .ok_or_else(|| ApiError::not_found("Delegate not found"))
}

pub async fn list(ctx: &Ctx, caller: &Caller) -> Result<Vec<DelegateRow>, ApiError> {
    authorize_delegate_management(&caller.principal).map_err(|d| denied(d, "Delegate"))?;
    stmt::list_for_user(&caller.user_id).all(&ctx.db()?).await
}

pub async fn create(
    ctx: &Ctx,
    caller: &Caller,
    name: &str,
    caps: DelegateCaps,
    expires_at: Option<i64>,
) -> Result<DelegateRow, ApiError> {
    authorize_delegate_management(&caller.principal).map_err(|d| denied(d, "Delegate"))?;
    let delegate_id = generate_delegate_id().map_err(random)?;
    let created_at = db::now_seconds();
    let row = NewDelegate {
        delegate_id: &delegate_id,
        created_by_user_id: &caller.user_id,
        name,
        can_read: caps.can_read,
        can_write: caps.can_write,
        can_system: caps.can_system,
        created_at,
        expires_at,
    };
    row.insert().run(&ctx.db()?).await?;
    Ok(DelegateRow {
        delegate_id: delegate_id.clone(),
        created_by_user_id: caller.user_id.clone(),
        name: name.to_owned(),
        can_read: i64::from(caps.can_read),
        can_write: i64::from(caps.can_write),
        can_system: i64::from(caps.can_system),
        created_at,
        expires_at,
    })
}

/// Deletes the delegate with its secrets and grants; its sockets close.
pub async fn delete(ctx: &Ctx, caller: &Caller, delegate_id: &str) -> Result<(), ApiError> {
    let delegate = owned(ctx, caller, delegate_id).await?;
    let db = ctx.db()?;
    let reached = reach::used_instances(&delegate.delegate_id)
        .ids(&db)
        .await?;
    db::run_batch(&db, &stmt::delete(&delegate.delegate_id)).await?;
    reach::forget_uses(&delegate.delegate_id).run(&db).await?;
    revocation::revoke(ctx, &reached, Affected::Delegate(delegate.delegate_id)).await;
    Ok(())
}

/// A new secret: `(secret_id, secret, created_at)`; the secret is shown
/// this once and stored as its SHA-256.
pub async fn create_secret(
    ctx: &Ctx,
    caller: &Caller,
    delegate_id: &str,
    name: Option<&str>,
) -> Result<(String, String), ApiError> {
    let delegate = owned(ctx, caller, delegate_id).await?;
    let secret_id = generate_secret_id().map_err(random)?;
    let secret = generate_delegate_secret().map_err(random)?;
    let row = NewSecret {
        secret_id: &secret_id,
        delegate_id: &delegate.delegate_id,
        secret_hash: &hash_delegate_secret(&secret),
        name,
        created_at: db::now_seconds(),
    };
    row.insert().run(&ctx.db()?).await?;
    Ok((secret_id, secret))
}

/// Revokes one secret; the sockets that authenticated with it close.
pub async fn revoke_secret(
    ctx: &Ctx,
    caller: &Caller,
    delegate_id: &str,
    secret_id: &str,
) -> Result<(), ApiError> {
    let delegate = owned(ctx, caller, delegate_id).await?;
    let db = ctx.db()?;
    let revoke = stmt::revoke_secret(secret_id, &delegate.delegate_id, db::now_seconds());
    if !revoke.found(&db).await? {
        return Err(ApiError::not_found("Secret not found"));
    }
    let reached = reach::used_instances(&delegate.delegate_id)
        .ids(&db)
        .await?;
    revocation::revoke(ctx, &reached, Affected::Secret(secret_id.to_owned())).await;
    Ok(())
}

/// Grants (or re-grants, replacing the permission) an instance. The caller
/// needs `admin` there and cannot grant above its own role.
pub async fn grant(
    ctx: &Ctx,
    caller: &Caller,
    delegate_id: &str,
    instance_id: &str,
    permission: Permission,
) -> Result<(), ApiError> {
    let delegate = owned(ctx, caller, delegate_id).await?;
    let instance = access::instance(ctx, caller, instance_id, Action::GrantDelegate).await?;
    check_grant(instance.role, permission).map_err(|d| denied(d, "Instance"))?;
    stmt::upsert_grant(
        &delegate.delegate_id,
        &instance.row.id,
        permission,
        &caller.user_id,
        db::now_seconds(),
    )
    .run(&ctx.db()?)
    .await?;
    // A lower grant lowers the delegate's open sockets there.
    let reached = [instance.row.id];
    revocation::recheck(ctx, &reached, Affected::Delegate(delegate.delegate_id)).await;
    Ok(())
}

/// Removes a grant; the delegate's sockets on that instance close.
pub async fn revoke_grant(
    ctx: &Ctx,
    caller: &Caller,
    delegate_id: &str,
    instance_id: &str,
) -> Result<(), ApiError> {
    let delegate = owned(ctx, caller, delegate_id).await?;
    let delete = stmt::delete_grant(&delegate.delegate_id, instance_id);
    if !delete.found(&ctx.db()?).await? {
        return Err(ApiError::not_found("Grant not found"));
    }
    let reached = [instance_id.to_owned()];
    revocation::revoke(ctx, &reached, Affected::Delegate(delegate.delegate_id)).await;
    Ok(())
}

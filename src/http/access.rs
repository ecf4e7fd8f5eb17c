//! Loading a resource together with the caller's role on it, so every
//! handler checks access the same way: a resource the caller cannot see is
//! a 404, a visible one it may not change is a 403.

use crate::auth::caller::Caller;
use crate::auth::roles::{self, effective_role, Denied, Resource};
use crate::db;
use crate::db::instances::InstanceRow;
use crate::db::projects::ProjectRow;
use crate::error::ApiError;
use crate::http::Ctx;
use crate::permission::Permission;

/// Maps a refusal from the role rules to its response.
pub fn denied(d: Denied, what: &str) -> ApiError {
    match d {
        Denied::NotFound => ApiError::not_found(format!("{what} not found")),
        other => ApiError::Forbidden(other.to_string()),
    }
}

pub async fn project(
    ctx: &Ctx,
    caller: &Caller,
    project_id: &str,
) -> Result<(ProjectRow, Option<Permission>), ApiError> {
    let row = db::projects::get(&db::database(&ctx.env)?, project_id, &caller.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Project not found"))?;
    let role = effective_role(
        &caller.principal,
        Resource::Project { id: &row.id },
        row.role(&caller.user_id),
    );
    if role.is_none() {
        return Err(ApiError::not_found("Project not found"));
    }
    Ok((row, role))
}

/// The caller's role on an instance row. In development mode `dev-user` is
/// at least `admin` on every instance (rest-api.md, Roles).
pub fn instance_role(ctx: &Ctx, caller: &Caller, row: &InstanceRow) -> Option<Permission> {
    let role = effective_role(
        &caller.principal,
        Resource::Instance {
            id: &row.id,
            project_id: &row.project_id,
        },
        roles::instance_role(&row.facts(&caller.user_id)),
    );
    if ctx.development && caller.is_dev_user() {
        return Some(role.map_or(Permission::Admin, |r| r.max(Permission::Admin)));
    }
    role
}

pub async fn instance(
    ctx: &Ctx,
    caller: &Caller,
    instance_id: &str,
) -> Result<(InstanceRow, Option<Permission>), ApiError> {
    let row = db::instances::get(&db::database(&ctx.env)?, instance_id, &caller.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Instance not found"))?;
    let role = instance_role(ctx, caller, &row);
    if role.is_none() {
        return Err(ApiError::not_found("Instance not found"));
    }
    Ok((row, role))
}

/// Access to an instance's data (WebSocket, ws-token, AI): like
/// [`instance`], but in development mode `dev-user` may use any instance
/// id, registered or not. Returns the role and the read-only flag.
pub async fn instance_data(
    ctx: &Ctx,
    caller: &Caller,
    instance_id: &str,
) -> Result<(Permission, bool), ApiError> {
    let row = db::instances::get(&db::database(&ctx.env)?, instance_id, &caller.user_id).await?;
    match row {
        Some(row) => {
            let role = instance_role(ctx, caller, &row)
                .ok_or_else(|| ApiError::not_found("Instance not found or access denied"))?;
            Ok((role, row.read_only()))
        }
        None if ctx.development && caller.is_dev_user() => Ok((Permission::Admin, false)),
        None => Err(ApiError::not_found("Instance not found or access denied")),
    }
}

pub fn new_id() -> Result<String, ApiError> {
    crate::auth::secrets::generate_uuid_v4()
        .map_err(|e| ApiError::internal(format!("random id: {e}")))
}

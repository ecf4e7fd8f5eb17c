//! Shares on projects and instances: `/api/{projects,instances}/:id/shares`
//! and `/api/shares/:id`.

use worker::Request;

use super::body::{read_object, MAX_BODY_BYTES};
use super::{json, Answer};
use crate::auth::caller::Caller;
use crate::auth::roles::{authorize, authorize_group, check_grant, Action, GroupAction};
use crate::ctx::Ctx;
use crate::db;
use crate::db::groups::GroupRow;
use crate::db::shares::{stmt, NewShare, ShareListRow, ShareRow};
use crate::db::users::{stmt as users, UserRow};
use crate::error::ApiError;
use crate::instance::internal::Affected;
use crate::permission::Permission;
use crate::services::access::{self, denied};
use crate::services::new_id;
use crate::services::revocation;

/// A shared resource, as named in the `shares` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Project,
    Instance,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Project => "project",
            Kind::Instance => "instance",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Project => "Project",
            Kind::Instance => "Instance",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "project" => Some(Kind::Project),
            "instance" => Some(Kind::Instance),
            _ => None,
        }
    }
}

/// The caller's role on the resource if it may take `action` there; 404
/// when it cannot see it.
async fn role_on(
    ctx: &Ctx,
    caller: &Caller,
    kind: Kind,
    id: &str,
    action: Action,
) -> Result<Permission, ApiError> {
    Ok(match kind {
        Kind::Project => access::project(ctx, caller, id, action).await?.role,
        Kind::Instance => access::instance(ctx, caller, id, action).await?.role,
    })
}

pub async fn list(ctx: &Ctx, caller: &Caller, kind: Kind, id: &str) -> Answer {
    role_on(ctx, caller, kind, id, Action::ManageShares).await?;
    let shares: Vec<ShareListRow> = stmt::list(kind.as_str(), id).all(&ctx.db()?).await?;
    json(200, &serde_json::json!({ "shares": shares }))
}

pub async fn create(req: &mut Request, ctx: &Ctx, caller: &Caller, kind: Kind, id: &str) -> Answer {
    let role = role_on(ctx, caller, kind, id, Action::ManageShares).await?;
    let body = read_object(req, MAX_BODY_BYTES).await?;
    let target_type = body.req_str("targetType", 16)?;
    let permission = body.req_str("permission", 16)?;
    let permission = Permission::parse_grantable(permission)
        .ok_or_else(|| ApiError::bad_request("permission must be read, write or admin"))?;
    check_grant(role, permission).map_err(|d| denied(d, kind.label()))?;

    let db = ctx.db()?;
    let target_id = match target_type {
        "public" => None,
        "user" => {
            let user = match (
                body.opt_str("targetId", 256)?,
                body.opt_str("targetEmail", 320)?,
            ) {
                (Some(uid), _) => users::get(uid).first::<UserRow>(&db).await?,
                (None, Some(email)) => users::find_by_email(email).first(&db).await?,
                (None, None) => {
                    return Err(ApiError::bad_request(
                        "targetId or targetEmail is required for a user share",
                    ))
                }
            };
            Some(
                user.ok_or_else(|| ApiError::not_found("User not found"))?
                    .id,
            )
        }
        "group" => {
            let gid = body
                .opt_str("targetId", 256)?
                .ok_or_else(|| ApiError::bad_request("targetId is required for a group share"))?;
            let group: GroupRow = db::groups::stmt::get(gid, &caller.user_id)
                .first(&db)
                .await?
                .ok_or_else(|| ApiError::not_found("Group not found"))?;
            // Only to a group the granter may see (owns or belongs to): any
            // other answers like one that does not exist, so a share reveals
            // neither a group's existence nor its name.
            let is_owner = group.owner_id == caller.user_id;
            authorize_group(
                &caller.principal,
                GroupAction::View,
                is_owner,
                group.is_member != 0,
            )
            .map_err(|d| denied(d, "Group"))?;
            Some(group.id)
        }
        _ => {
            return Err(ApiError::bad_request(
                "targetType must be user, group or public",
            ))
        }
    };
    let fresh_id = new_id()?;
    let share = NewShare {
        id: &fresh_id,
        resource_type: kind.as_str(),
        resource_id: id,
        target_type,
        target_id: target_id.as_deref(),
        permission,
        created_by: &caller.user_id,
        created_at: db::now_seconds(),
    };
    let share_id = db::shares::grant(&db, &share).await?;
    if share_id != fresh_id {
        // An existing share changed permission: a lowered one lowers sockets.
        let reached = revocation::instances_under(ctx, kind.as_str(), id).await?;
        revocation::recheck(ctx, &reached, Affected::All).await;
    }
    json(
        201,
        &serde_json::json!({
            "id": share_id,
            "targetType": target_type,
            "targetId": target_id,
            "permission": permission.as_str(),
        }),
    )
}

pub async fn delete(ctx: &Ctx, caller: &Caller, share_id: &str) -> Answer {
    let db = ctx.db()?;
    let not_found = || ApiError::not_found("Share not found");
    let share: ShareRow = stmt::get(share_id)
        .first(&db)
        .await?
        .ok_or_else(not_found)?;
    let kind = Kind::parse(&share.resource_type).ok_or_else(not_found)?;
    // A share on a resource the caller cannot see does not exist for it.
    let role = role_on(ctx, caller, kind, &share.resource_id, Action::View)
        .await
        .map_err(|_| not_found())?;
    authorize(&caller.principal, Action::ManageShares, Some(role))
        .map_err(|d| denied(d, "Share"))?;
    stmt::delete(&share.id).run(&db).await?;
    // Whoever this share reached is re-evaluated on the resource's instances.
    let reached = revocation::instances_under(ctx, kind.as_str(), &share.resource_id).await?;
    revocation::recheck(ctx, &reached, Affected::All).await;
    json(200, &serde_json::json!({ "success": true }))
}
